"""Capture in the inference function: what the sink gets per answered call, and the records
it becomes; an artifact from before reference statistics still serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec
import numpy as np
import pytest

from functions.inference.app import InferenceFunction
from functions.inference.capture import Scored, kept, records
from functions.inference.runtime import Settings
from functions.inference.source import ModelLocator
from onnxkit.contract.layout import REFERENCE_FILE
from onnxkit.contract.manifest import load_manifest, write_manifest
from tests.conftest import ArtifactFactory
from tests.support.inference import call, event_with

ROW = {
    "tenure_months": 25,
    "monthly_charges": 53.43,
    "plan": "standard",
    "region": None,
    "support_calls": "NA",
    "payment_method": "bank",
    "age": 55,
}


@pytest.fixture(scope="module")
def model_dir(train_artifact: ArtifactFactory) -> Path:
    return train_artifact("customer_churn")


def _function(model: Path, tmp_path: Path, sink: list[Scored] | None) -> InferenceFunction:
    return InferenceFunction(
        Settings(model_uri=str(model)),
        locator=ModelLocator(cache_dir=tmp_path / "cache"),
        capture=None if sink is None else sink.append,
    )


def _predict(function: InferenceFunction, instances: list[object], request_id: str) -> object:
    event = event_with(body=json.dumps({"instances": instances}))
    event["requestContext"]["requestId"] = request_id
    status, _, body = call(function, event)
    assert status == 200, body
    return body


def test_each_answered_call_becomes_one_record_per_row(model_dir: Path, tmp_path: Path) -> None:
    sink: list[Scored] = []
    function = _function(model_dir, tmp_path, sink)
    body = _predict(function, [ROW, {**ROW, "plan": "never-seen", "age": 30}], "req-1")
    assert isinstance(body, dict)
    (scored,) = sink
    captured = records(scored)
    assert [r.row for r in captured] == [0, 1]
    assert {r.request_id for r in captured} == {"req-1"}
    first = captured[0]
    assert first.model_version == body["model_version"]
    assert first.features == {
        "tenure_months": 25.0,
        "monthly_charges": pytest.approx(53.43, rel=1e-6),  # as float32 read it
        "plan": "standard",
        "region": None,
        "support_calls": None,  # the token NA is missing
        "payment_method": "bank",
        "age": 55.0,
    }
    assert captured[1].features["plan"] == "never-seen"
    assert [r.prediction for r in captured] == body["predictions"]
    assert np.allclose([r.probabilities for r in captured], body["probabilities"])
    assert "headers" not in msgspec.json.encode(first).decode()


def test_refused_calls_are_not_captured(model_dir: Path, tmp_path: Path) -> None:
    sink: list[Scored] = []
    function = _function(model_dir, tmp_path, sink)
    status, _, _ = call(function, event_with(body=json.dumps({"instances": [{"age": "x"}]})))
    assert status == 400
    assert sink == []


def test_a_one_row_call_keeps_its_own_values(
    train_artifact: ArtifactFactory, tmp_path: Path
) -> None:
    # An all-numeric model reuses one buffer for every one-row call: a sink that keeps calls
    # keeps copies.
    sink: list[Scored] = []
    function = InferenceFunction(
        Settings(model_uri=str(train_artifact("breast_cancer"))),
        locator=ModelLocator(cache_dir=tmp_path / "cache"),
        capture=lambda call: sink.append(kept(call)),
    )
    width = len(function.runtime.require().features)
    _predict(function, [[1.0] * width], "a")
    _predict(function, [[2.0] * width], "b")
    first, second = (records(s)[0] for s in sink)
    assert set(first.features.values()) == {1.0}
    assert set(second.features.values()) == {2.0}


def test_an_artifact_without_reference_statistics_still_serves(
    model_dir: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    manifest = load_manifest(old)
    files = {k: v for k, v in manifest.files.items() if k != REFERENCE_FILE}
    write_manifest(msgspec.structs.replace(manifest, files=files), old)
    (old / REFERENCE_FILE).unlink()
    function = _function(old, tmp_path, None)
    assert function.runtime.problem is None
    _predict(function, [ROW], "req")
