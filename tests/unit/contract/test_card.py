"""The registry's compact card (CustomerMetadataProperties) and the gate's record."""

from __future__ import annotations

import pytest

from onnxkit.contract.card import (
    EvaluationError,
    dump_evaluation,
    evaluation_record,
    metadata_problems,
    package_metadata,
    parse_evaluation,
    production_at_gate,
    top_features,
)
from onnxkit.contract.layout import PACKAGE_EXECUTION_KEY, PACKAGE_METADATA_MAX_ENTRIES
from onnxkit.contract.manifest import Manifest
from tests.support.artifacts import manifest_dict

FEATURES = [
    {"name": name, "onnx_input": f"f{i}", "kind": "numeric", "dtype": "float32", "nullable": True}
    for i, name in enumerate(["petal length (cm)", "sepal width", "x" * 300, "a", "b", "c", "d"])
]
MEANS = [0.3, -0.01, 0.2, 0, 0.1, 0.05, 0.04]
IMPORTANCE = {f["name"]: mean for f, mean in zip(FEATURES, MEANS, strict=True)}
PRODUCTION = {"model_version": "v1", "metrics": {"accuracy": 0.9, "balanced_accuracy": 0.88}}


def _manifest(**kwargs: object) -> Manifest:
    return Manifest.from_dict(
        manifest_dict("v2", features=FEATURES, importance=IMPORTANCE, **kwargs)  # type: ignore[arg-type]
    )


def test_the_card_fits_sagemaker_and_reads_back() -> None:
    manifest = _manifest(accuracy=0.93)
    metadata = package_metadata(manifest, PRODUCTION)
    # Register adds the execution's name: still within every limit.
    assert metadata_problems({**metadata, PACKAGE_EXECUTION_KEY: "run-1"}) == []
    assert metadata["model_name"] == "cancer" and metadata["model_version"] == "v2"
    assert float(metadata["metric.accuracy"]) == 0.93
    assert metadata["baseline.strategy"] == "prior"
    assert float(metadata["baseline.metric.balanced_accuracy"]) == 0.5
    assert metadata["quantization"] == "int8"
    ranked = top_features(metadata)
    # The five largest drops, in order; "(" and ")" are not allowed by SageMaker, and a name
    # longer than a value may be is cut.
    assert [f.mean for f in ranked] == [0.3, 0.2, 0.1, 0.05, 0.04]
    assert ranked[0].name == "petal length _cm_"
    assert ranked[1].name.startswith("xxx") and len(metadata["importance.2"]) == 256
    assert metadata["importance.metric"] == "accuracy"
    assert production_at_gate(metadata) == PRODUCTION


def test_without_production_baseline_or_importance_the_card_says_less() -> None:
    manifest = Manifest.from_dict(manifest_dict("v1", with_baseline=False))
    metadata = package_metadata(manifest, None)
    assert metadata_problems(metadata) == []
    assert production_at_gate(metadata) is None
    assert top_features(metadata) == []
    assert not any(k.startswith("baseline.") for k in metadata)


def test_the_card_stops_at_the_entry_limit_keeping_one_for_the_execution() -> None:
    data = manifest_dict("v2", features=FEATURES, importance=IMPORTANCE)
    data["baseline"]["metrics"] = {f"m{i}": 0.5 for i in range(80)}
    metadata = package_metadata(Manifest.from_dict(data), PRODUCTION)
    assert len(metadata) == PACKAGE_METADATA_MAX_ENTRIES - 1
    assert metadata_problems({**metadata, PACKAGE_EXECUTION_KEY: "run-1"}) == []
    # What matters most comes first: identity, metrics, importance, production.
    assert len(top_features(metadata)) == 5 and production_at_gate(metadata) is not None


def test_metadata_problems_names_what_sagemaker_refuses() -> None:
    assert metadata_problems({}) == ["0 entries (1 to 50)"]
    problems = metadata_problems({"a": "", "b(": "x", "c": "y" * 257})
    assert len(problems) == 3


def test_the_gate_record_round_trips_and_rejects_garbage() -> None:
    evaluation = {
        "passed": True,
        "reasons": [],
        "candidate": {"model_version": "v2", "metrics": {"accuracy": 0.93}, "sha256": "a" * 64},
        "production": {**PRODUCTION, "artifact_uri": "s3://b/k", "lambda_version": "3"},
        "gate_metric": "balanced_accuracy",
        "evaluated_at": "2026-12-06T22:00:00+00:00",
        "package_metadata": {"model_version": "v2"},
    }
    record = evaluation_record(evaluation)
    assert record.production is not None and record.production.lambda_version == "3"
    assert parse_evaluation(dump_evaluation(record)) == record
    with pytest.raises(EvaluationError):
        parse_evaluation(b"{not json")
    with pytest.raises(EvaluationError):
        evaluation_record({"passed": True})
