"""The reference statistics a training job records, checked against direct counts of the
bundled datasets' training rows (the job's own split, recomputed from its hyperparameters)."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from onnxkit.contract.layout import REFERENCE_FILE, sha256_file
from onnxkit.contract.manifest import load_manifest
from onnxkit.contract.reference import (
    CategoricalStats,
    ClassPredictions,
    NumericStats,
    ValuePredictions,
    load_reference,
)
from onnxkit.contract.values import ValueRule
from onnxkit.datasets import bundled
from onnxkit.local.training import arguments
from tests.conftest import ArtifactFactory
from tests.support import legacy_data
from training_jobs.hyperparameters import parse_args
from training_jobs.job import read_inputs


def _training_rows(dataset: str) -> tuple[list[str], dict[str, list[str]]]:
    """The raw texts of every feature over the rows the job trained on."""
    data = bundled(dataset)
    hp = parse_args(arguments({"target": data.target, "model": "mlp", "train": str(data.path)}))
    inputs = read_inputs(hp)
    # The texts as the job's reader before the columnar one read them (the oracle).
    frame = legacy_data.read_channel(str(data.path), "train").frame.loc[inputs.X_train.index]
    features = inputs.schema.features
    return features, {name: frame[name].tolist() for name in features}


@pytest.mark.parametrize("dataset", ["breast_cancer", "customer_churn"])
def test_reference_counts_match_a_direct_count(
    train_artifact: ArtifactFactory, dataset: str
) -> None:
    model_dir = train_artifact(dataset)
    manifest = load_manifest(model_dir)
    reference = load_reference(model_dir)
    rule = ValueRule.of(manifest.signature.missing_values)
    names, texts = _training_rows(dataset)
    assert [f.name for f in reference.features] == names == manifest.signature.feature_names
    for stats in reference.features:
        cells = texts[stats.name]
        assert stats.rows == len(cells) == manifest.data.train_rows
        assert stats.missing == sum(rule.is_missing(cell) for cell in cells), stats.name
        present = [cell for cell in cells if not rule.is_missing(cell)]
        if isinstance(stats, NumericStats):
            values = np.array([rule.number(c) for c in present], dtype=np.float32)
            edges = [-np.inf, *stats.edges, np.inf]
            direct = [
                int(np.sum((values >= low) & (values < high)))
                for low, high in itertools.pairwise(edges)
            ]
            assert stats.counts == direct, stats.name
            assert sum(stats.counts) == stats.rows - stats.missing
        else:
            assert isinstance(stats, CategoricalStats)
            counted = Counter(present)
            assert stats.frequencies == {c: counted[c] for c in stats.frequencies}
            assert stats.other + sum(stats.frequencies.values()) == len(present)
    predictions = reference.predictions
    assert isinstance(predictions, ClassPredictions)
    assert predictions.rows == manifest.data.validation_rows
    assert list(predictions.counts) == [str(c) for c in manifest.classes or []]


def test_customer_churn_has_missing_values_and_categories(train_artifact: ArtifactFactory) -> None:
    reference = load_reference(train_artifact("customer_churn"))
    kinds = {type(f).__name__ for f in reference.features}
    assert kinds == {"NumericStats", "CategoricalStats"}
    assert any(f.missing for f in reference.features if isinstance(f, CategoricalStats))


def test_the_manifest_pins_the_reference_file(train_artifact: ArtifactFactory) -> None:
    model_dir = Path(train_artifact("customer_churn"))
    listed = load_manifest(model_dir).files[REFERENCE_FILE]
    assert listed.sha256 == sha256_file(model_dir / REFERENCE_FILE)


def test_a_regressor_records_bins_of_its_predictions(train_artifact: ArtifactFactory) -> None:
    model_dir = train_artifact("diabetes")
    predictions = load_reference(model_dir).predictions
    assert isinstance(predictions, ValuePredictions)
    assert predictions.rows == load_manifest(model_dir).data.validation_rows
    assert len(predictions.edges) >= 5
