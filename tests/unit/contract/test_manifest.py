"""The manifest's one rule set: what it accepts, what it refuses, and what serving keeps of it."""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.inference.manifest import serving_manifest
from onnxkit.contract.manifest import (
    FeatureImportance,
    Manifest,
    ManifestError,
    encode_manifest,
    json_schema,
    parse_manifest,
    validated,
)

SHA = "ab" * 32
OTHER = "cd" * 32


def valid_manifest() -> dict[str, Any]:
    """A small manifest that the contract accepts."""
    return {
        "schema_version": "1.0",
        "model_name": "churn",
        "model_version": "20261128-abc",
        "created_at": "2026-11-28T18:00:00.123456Z",
        "task": "classification",
        "estimator": "logistic_regression",
        "signature": {
            "features": [
                {"name": "tenure months", "onnx_input": "tenure_months", "kind": "numeric",
                 "dtype": "float32", "nullable": True},
                {"name": "plan", "onnx_input": "plan", "kind": "categorical", "dtype": "string",
                 "nullable": True, "categories": ["basic", "premium"]},
            ],
            "target": "churned",
        },
        "classes": ["no", "yes"],
        "outputs": {"label": "label", "probabilities": "probabilities"},
        "serving": {"file": "model.onnx", "variant": "int8", "sha256": SHA, "size_bytes": 10},
        "files": {
            "model.onnx": {"size_bytes": 10, "sha256": SHA},
            "model.fp32.onnx": {"size_bytes": 20, "sha256": OTHER},
        },
        "variants": {
            "sklearn": {"metrics": {"accuracy": 0.9}},
            "int8": {"metrics": {"accuracy": 0.89}, "size_bytes": 10,
                     "parity": {"rows": 5, "label_agreement": 1.0, "max_abs_diff": 0.01},
                     "single_row_latency_us": 12.5},
        },
        "quantization": {"method": "dynamic", "quantized_operators": {"MatMul": 2},
                         "decision": "int8", "reason": "within tolerance",
                         "tolerance": {"accuracy": 0.01}},
        "hyperparameters": {"model": "logistic_regression", "C": 1.0, "seed": 7, "flag": True,
                            "none": None},
        "library_versions": {"scikit-learn": "1.9.0"},
        "data": {"rows": 100, "columns": 3, "files": {"train.csv": OTHER}, "sha256": OTHER,
                 "train_rows": 80, "validation_rows": 20, "validation_source": "split"},
    }  # fmt: skip


def accepts(doc: Any) -> bool:
    try:
        parse_manifest(json.dumps(doc))
    except ManifestError:
        return False
    return True


def test_a_valid_manifest_is_accepted_and_reduced_for_serving() -> None:
    doc = valid_manifest()
    assert accepts(doc)
    manifest = parse_manifest(json.dumps(doc))
    assert Manifest.from_dict(doc) == manifest
    served = serving_manifest(manifest)
    assert [f.onnx_input for f in served.features] == ["tenure_months", "plan"]
    assert [f.numeric for f in served.features] == [True, False]
    assert served.output_names == ["label", "probabilities"]
    assert served.serving_sha256 == SHA
    assert served.public == manifest.public()
    assert served.public["created_at"] == "2026-11-28T18:00:00.123456+00:00"


def test_regression_manifest() -> None:
    doc = valid_manifest()
    doc.update(task="regression", classes=None, outputs={"value": "variable"})
    assert accepts(doc)
    assert serving_manifest(parse_manifest(json.dumps(doc))).output_names == ["variable"]


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("signature"),
        lambda d: d.update(extra=1),
        lambda d: d.update(schema_version="2.0"),
        lambda d: d.update(created_at="yesterday"),
        lambda d: d.update(model_name="bad name"),
        lambda d: d.update(model_name="churn\n"),
        lambda d: d.update(model_version="v1\n"),
        lambda d: d.update(classes=["only"]),
        lambda d: d.update(classes=["no", 1]),
        lambda d: d["serving"].update(sha256=SHA.upper()),
        lambda d: d["serving"].update(sha256=SHA + "\n"),
        lambda d: d["serving"].update(variant="fp32"),
        lambda d: d["serving"].update(size_bytes=11),
        lambda d: d["serving"].update(file="missing.onnx"),
        lambda d: d["variants"].update(int16={"metrics": {}}),
        lambda d: d["signature"]["features"][0].update(dtype="string"),
        lambda d: d["signature"]["features"][1].update(onnx_input="tenure_months"),
        lambda d: d["signature"].update(features=[]),
        lambda d: d["outputs"].pop("label"),
        lambda d: d["data"].update(rows=0),
        lambda d: d["variants"]["int8"]["parity"].update(label_agreement=1.5),
        # Strict types: the training job never writes these, so a reader never guesses.
        lambda d: d["data"].update(rows=True),
        lambda d: d["data"].update(rows="100"),
    ],
)
def test_contract_violations_are_rejected(change: Any) -> None:
    doc = valid_manifest()
    change(doc)
    assert not accepts(doc)
    with pytest.raises(ManifestError, match=r"^invalid manifest: "):
        Manifest.from_dict(doc)


def test_errors_are_one_line_naming_the_place() -> None:
    doc = valid_manifest()
    doc["signature"]["features"][0]["nullable"] = "yes"
    with pytest.raises(ManifestError) as caught:
        parse_manifest(json.dumps(doc))
    assert "$.signature.features[0].nullable" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_manifest_built_in_python_is_checked_before_it_is_written() -> None:
    manifest = parse_manifest(json.dumps(valid_manifest()))
    broken = msgspec.structs.replace(manifest, estimator=7)  # a struct skips type checks
    with pytest.raises(ManifestError):
        encode_manifest(broken)
    with pytest.raises(ManifestError):
        validated(broken)
    assert parse_manifest(encode_manifest(manifest)) == manifest


def test_cross_field_rules_run_on_construction_too() -> None:
    manifest = parse_manifest(json.dumps(valid_manifest()))
    with pytest.raises(ValueError, match="at least two classes"):
        msgspec.structs.replace(manifest, classes=["only"])


def test_json_schema_describes_the_definition() -> None:
    schema = json_schema()
    assert schema["title"].startswith("onnxkit model manifest")
    manifest = schema["$defs"]["Manifest"]
    assert {"model_name", "signature", "serving", "data"} <= set(manifest["required"])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.sampled_from(["", "x", "1.0", "2.0", SHA, "int8", "fp32", "numeric", "string",
                       "2026-11-28T18:00:00Z", "model.onnx", "classification", "regression"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "label", "value", "metrics", "rows"]), children,
                      max_size=3),
    max_leaves=6,
)  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


ALL_PATHS = _paths(valid_manifest())


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(valid_manifest())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        if not path:
            continue
        parent: Any = doc
        try:
            for step in path[:-1]:
                parent = parent[step]
            last = path[-1]
            parent[last]  # the path may be gone after an earlier mutation
        except (KeyError, IndexError, TypeError):
            continue
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[last] = draw(json_values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[last]
        elif isinstance(parent[last], dict):
            parent[last][draw(st.sampled_from(["extra", "label", "value"]))] = draw(json_values)
    return doc


@settings(max_examples=500, deadline=None)
@given(doc=mutated())
def test_any_document_is_accepted_whole_or_refused_in_one_line(doc: dict[str, Any]) -> None:
    # Whatever a reader is handed, it gets a valid manifest that serving can reduce, or a
    # ManifestError: never another exception, never a half-checked object.
    try:
        manifest = parse_manifest(json.dumps(doc))
    except ManifestError as error:
        assert "\n" not in str(error)
        return
    assert parse_manifest(encode_manifest(manifest)) == manifest
    assert serving_manifest(manifest).public == manifest.public()


def test_not_json_is_one_clear_error() -> None:
    with pytest.raises(ManifestError, match=r"^invalid manifest: "):
        parse_manifest(b"{nope")


def with_importance(doc: dict[str, Any]) -> dict[str, Any]:
    doc["importance"] = {
        "method": "permutation", "metric": "accuracy", "rows": 20, "held_out_rows": 20,
        "repeats": 5, "random_state": 7,
        "features": [{"name": "tenure months", "mean": 0.01, "std": 0.002},
                     {"name": "plan", "mean": 0.12, "std": 0.01}],
    }  # fmt: skip
    return doc


def test_importance_is_optional_and_public() -> None:
    older = parse_manifest(json.dumps(valid_manifest()))
    assert older.importance is None
    assert older.public()["importance"] is None
    manifest = parse_manifest(json.dumps(with_importance(valid_manifest())))
    assert manifest.importance is not None
    assert [f.name for f in manifest.importance.ranked()] == ["plan", "tenure months"]
    assert manifest.public()["importance"]["features"][1] == {
        "name": "plan",
        "mean": 0.12,
        "std": 0.01,
    }
    assert parse_manifest(encode_manifest(manifest)) == manifest


@pytest.mark.parametrize(
    "change",
    [
        lambda i: i["features"].reverse(),  # not the signature's order
        lambda i: i["features"].pop(),
        lambda i: i["features"][0].update(name="other"),
        lambda i: i["features"][0].update(std=-0.1),
        lambda i: i["features"][0].update(mean=None),
        lambda i: i.update(rows=21),
        lambda i: i.update(rows=0),
        lambda i: i.update(method="shap"),
    ],
)
def test_bad_importance_is_rejected(change: Any) -> None:
    doc = with_importance(valid_manifest())
    change(doc["importance"])
    assert not accepts(doc)


def test_importance_must_be_finite() -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        FeatureImportance(name="x", mean=float("nan"), std=0.0)


def _variant(name: str, chosen: bool, size: int) -> dict[str, Any]:
    return {
        "name": name, "description": f"{name} variant", "size_bytes": size, "load_ms": 1.5,
        "single_row_latency_us": 20.0, "batch_rows": 1000, "batch_latency_us": 900.0,
        "metrics": {"accuracy": 0.9}, "chosen": chosen, "reason": "chosen" if chosen else "no",
        "parity": {"rows": 20, "label_agreement": 1.0, "max_abs_diff": 0.01},
    }  # fmt: skip


def with_compression(doc: dict[str, Any]) -> dict[str, Any]:
    doc["compression"] = {
        "optimize_for": "size", "chosen": "ml5", "reason": "smallest within tolerance",
        "seconds": 2.5, "variants": [_variant("original", False, 900), _variant("ml5", True, 300)],
    }  # fmt: skip
    return doc


def test_compression_is_optional_and_round_trips() -> None:
    older = parse_manifest(json.dumps(valid_manifest()))  # schema 1.0, no compression
    assert older.compression is None
    manifest = parse_manifest(json.dumps(with_compression(valid_manifest())))
    assert manifest.compression is not None
    assert [v.name for v in manifest.compression.variants if v.chosen] == ["ml5"]
    assert parse_manifest(encode_manifest(manifest)) == manifest
    assert serving_manifest(manifest).model_name == "churn"  # serving reads it


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.update(chosen="original"),  # the record marks another as chosen
        lambda c: c["variants"][0].update(chosen=True),  # two chosen
        lambda c: c["variants"][1].update(name="original"),  # names repeat
        lambda c: c.update(optimize_for="memory"),
        lambda c: c["variants"][0].update(size_bytes=0),
        lambda c: c["variants"][0].update(load_ms=-1.0),
        lambda c: c["variants"][0].pop("parity"),
        lambda c: c.update(seconds=-1),
    ],
)
def test_bad_compression_records_are_rejected(change: Any) -> None:
    doc = with_compression(valid_manifest())
    change(doc["compression"])
    assert not accepts(doc)


def test_the_baseline_is_public_when_measured() -> None:
    older = parse_manifest(json.dumps(valid_manifest()))
    assert older.baseline is None and older.public()["baseline"] is None
    doc = valid_manifest()
    doc["baseline"] = {
        "strategy": "prior",
        "metrics": {"accuracy": 0.62},
        "class_support": {"no": 62, "yes": 38},
    }
    manifest = parse_manifest(json.dumps(doc))
    assert manifest.public()["baseline"] == doc["baseline"]
