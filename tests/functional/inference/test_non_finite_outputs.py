"""An answer computed from overflowed float32 arithmetic is withheld, never served.

A value near float32's range passes validation (it is a float32) but makes an MLP's logits
infinite and its softmax NaN: the label it returns is arbitrary. The API refuses such a call
(422 ``non_finite_output``) naming the row, so ``onnxkit predict`` reports it rejected and scores
the rest; batch scoring reports it rejected and scores its neighbours, on both the row path and
the block path.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from onnxkit.datasets import bundled
from tests.support.inference import call, event_with

pytestmark = pytest.mark.xdist_group("inference")

HUGE = "3e38"  # a float32 (max 3.4e38) that overflows the MLP's first layer


@pytest.fixture(scope="module")
def artifact(train_artifact: Callable[..., Path]) -> Path:
    return train_artifact("breast_cancer", model="mlp")


def _rows(n: int) -> tuple[list[str], list[list[str]]]:
    with bundled("breast_cancer").path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [row for _, row in zip(range(n), reader, strict=False)]


def test_non_finite_rows_names_the_rows_with_nan_or_infinite_answers() -> None:
    from functions.inference.predictor import non_finite_rows

    probabilities = np.array([[0.2, 0.8], [np.nan, np.nan], [1.0, 0.0]], dtype=np.float32)
    labels = np.array([1, 0, 0])
    assert non_finite_rows({"predictions": labels, "probabilities": probabilities}) == [1]
    values = np.array([1.5, np.inf, -np.inf, 2.0], dtype=np.float32)
    assert non_finite_rows({"predictions": values}) == [1, 2]
    assert non_finite_rows({"predictions": ["a", "b"], "probabilities": None}) == []


def test_the_api_refuses_an_overflowing_row_by_instance(artifact: Path) -> None:
    from functions.inference.app import InferenceFunction
    from functions.inference.runtime import Settings

    handler = InferenceFunction(Settings(model_uri=str(artifact)))
    header, rows = _rows(3)
    features = [name for name in header if name != bundled("breast_cancer").target]
    at = [header.index(name) for name in features]
    instances = [[float(row[i]) for i in at] for row in rows]
    huge = [float(HUGE)] * len(features)
    status, _, body = call(handler, event_with(body=json.dumps({"instances": instances})))
    assert status == 200
    status, _, refused = call(
        handler, event_with(body=json.dumps({"instances": [instances[0], huge, instances[2]]}))
    )
    assert status == 422, refused
    assert refused["error"]["code"] == "non_finite_output"
    [detail] = refused["error"]["details"]
    assert detail["instance"] == 1 and "not finite" in detail["problem"]
    assert None not in body["probabilities"][0]
    explain = event_with(body=json.dumps({"instances": [huge]}), path="/explain")
    status, _, refused = call(handler, explain)
    assert status == 422 and refused["error"]["code"] == "non_finite_output", refused


def test_batch_scoring_rejects_the_row_and_scores_its_neighbours(artifact: Path) -> None:
    from functions.inference import table
    from functions.inference.batch import open_model
    from functions.inference.predictor import NON_FINITE_PROBLEM

    model = open_model(str(artifact))
    header, rows = _rows(40)
    target = header.index(bundled("breast_cancer").target)
    rows[17] = [cell if i == target else HUGE for i, cell in enumerate(rows[17])]
    block = "".join(",".join(row) + "\n" for row in rows).encode()
    job = table.Job("csv", "jsonl", tuple(header), None)
    assert table.score_plain_block(model, job, block, first_row=0, first_line=2) is None
    from onnxkit.local import columnar  # the local score's Arrow path declines it too

    assert columnar.score_csv_block(model, job, block, first_row=0, first_line=2) is None
    results, _ = table.score_records(model, job, block.splitlines(keepends=True))
    assert [i for i, r in enumerate(results) if r.reason] == [17]
    assert results[17].reason == NON_FINITE_PROBLEM and results[17].prediction is None
    assert all(np.isfinite(r.probabilities).all() for i, r in enumerate(results) if i != 17)
