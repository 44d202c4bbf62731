"""The explanation background the training job stores: a seeded sample of training rows as the
graph reads them, pinned by the manifest."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from onnxkit.contract.background import (
    BACKGROUND_ROWS,
    Background,
    BackgroundError,
    encode_background,
    load_background,
    parse_background,
)
from onnxkit.contract.layout import BACKGROUND_FILE, sha256_file
from onnxkit.contract.manifest import load_manifest
from onnxkit.datasets import bundled

ArtifactFactory = Callable[..., Path]


def test_the_manifest_pins_a_background_of_training_rows(train_artifact: ArtifactFactory) -> None:
    model_dir = Path(train_artifact("customer_churn"))
    manifest = load_manifest(model_dir)
    assert manifest.files[BACKGROUND_FILE].sha256 == sha256_file(model_dir / BACKGROUND_FILE)
    background = load_background(model_dir)
    assert background.features == manifest.signature.feature_names
    assert len(background.rows) == BACKGROUND_ROWS
    assert background.source_rows == manifest.data.train_rows
    # Every row is a row of the file, read as the graph reads it (float32, "" for a missing
    # category, null for a missing number).
    with bundled("customer_churn").path.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    numeric = {f.name for f in manifest.signature.features if f.kind == "numeric"}

    def as_read(record: dict[str, str]) -> list[object]:
        return [
            (float(np.float32(record[name])) if record[name] else None)
            if name in numeric
            else record[name]
            for name in background.features
        ]

    known = [as_read(record) for record in records]
    assert all(row in known for row in background.rows)
    assert any(value is None for row in background.rows for value in row) or any(
        value == "" for row in background.rows for value in row
    )


def test_the_sample_is_seeded(train_artifact: ArtifactFactory) -> None:
    first = load_background(Path(train_artifact("customer_churn")))
    again = load_background(Path(train_artifact("customer_churn", seed=first.seed)))
    assert again.rows == first.rows


def test_a_background_round_trips_and_refuses_ragged_rows() -> None:
    background = Background(
        features=["a", "b"], rows=[[1.5, "x"], [None, ""]], seed=1, source_rows=9
    )
    assert parse_background(encode_background(background)) == background
    with pytest.raises(BackgroundError, match="row 1 has 1 values for 2 features"):
        parse_background(
            b'{"features": ["a", "b"], "rows": [[1, "x"], [2]], "seed": 1, "source_rows": 2}'
        )
    with pytest.raises(BackgroundError, match="no rows"):
        parse_background(b'{"features": ["a"], "rows": [], "seed": 1, "source_rows": 0}')
