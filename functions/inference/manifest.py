"""Validate the manifest at cold start without pydantic, and keep what serving needs.

Importing pydantic and building the contract's models costs ~100-250 ms here, more than the
whole cold-start budget above the numpy + onnxruntime floor. So the function validates
``manifest.json`` against the contract's own JSON Schema (``manifest.schema.json``, generated
from :class:`onnxkit.contract.manifest.Manifest`; a unit test fails if it drifts) with the
small validator below, then applies the model's cross-field rules. The tests check the
direction that matters on real artifacts and on random mutations of them: whatever this
accepts, the pydantic model accepts too (it may be stricter, never laxer).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from onnxkit.contract.values import ValueRule

from .feed import FeatureSpec
from .source import ModelSourceError

SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")
SCHEMA_MAJOR = "1"
# RFC 3339 date-times, a subset of what pydantic parses (stricter is the safe direction).
_DATE_TIME = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d{1,6})?)?(Z|z|[+-]\d\d:?\d\d)?", re.ASCII
)


class ManifestInvalid(ModelSourceError):
    """manifest.json does not satisfy the contract."""


@cache
def manifest_schema() -> dict[str, Any]:
    """The contract's JSON Schema, as shipped beside this module."""
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return schema


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "null":
        return value is None
    raise ManifestInvalid(f"manifest schema uses an unknown type {expected!r}")


def _pattern_ok(pattern: str, value: str) -> bool:
    # JSON Schema patterns are searches; an anchored one must match the whole string (Python's
    # `$` would also accept a trailing newline, which pydantic's regex engine does not).
    if pattern.startswith("^") and pattern.endswith("$"):
        return re.fullmatch(pattern[1:-1], value) is not None
    return re.search(pattern, value) is not None


def _date_time_ok(value: str) -> bool:
    if not _DATE_TIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return False
    return True


_HANDLED = frozenset(
    {
        "$ref", "anyOf", "type", "enum", "const", "properties", "required",
        "additionalProperties", "propertyNames", "items", "minItems", "maxItems", "minLength",
        "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "format", "title", "description", "default", "$defs", "examples",
    }
)  # fmt: skip


def validate(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "") -> None:
    """Raise ManifestInvalid unless ``value`` satisfies ``schema`` (the keywords pydantic
    emits for the manifest; an unknown keyword is an error, never silently ignored)."""
    unknown = set(schema) - _HANDLED
    if unknown:
        raise ManifestInvalid(f"manifest schema keyword(s) not supported: {sorted(unknown)}")
    here = where or "manifest"
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        validate(value, root["$defs"][name], root, where)
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            try:
                validate(value, option, root, where)
                break
            except ManifestInvalid:
                continue
        else:
            raise ManifestInvalid(f"{here}: matches none of the allowed forms")
    if "type" in schema and not _type_ok(value, schema["type"]):
        raise ManifestInvalid(f"{here}: expected {schema['type']}")
    if "enum" in schema and value not in schema["enum"]:
        raise ManifestInvalid(f"{here}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        raise ManifestInvalid(f"{here}: must be {schema['const']!r}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise ManifestInvalid(f"{here}: too short")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise ManifestInvalid(f"{here}: too long")
        if "pattern" in schema and not _pattern_ok(schema["pattern"], value):
            raise ManifestInvalid(f"{here}: does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and not _date_time_ok(value):
            raise ManifestInvalid(f"{here}: not an RFC 3339 date-time")
    if _type_ok(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            raise ManifestInvalid(f"{here}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ManifestInvalid(f"{here}: above {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            raise ManifestInvalid(f"{here}: must be above {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            raise ManifestInvalid(f"{here}: must be below {schema['exclusiveMaximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise ManifestInvalid(f"{here}: needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise ManifestInvalid(f"{here}: at most {schema['maxItems']} items")
        if "items" in schema:
            for index, item in enumerate(value):
                validate(item, schema["items"], root, f"{here}[{index}]")
    if isinstance(value, dict):
        _validate_object(value, schema, root, here)


def _validate_object(
    value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], here: str
) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            raise ManifestInvalid(f"{here}: missing {name!r}")
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if "propertyNames" in schema:
            validate(key, schema["propertyNames"], root, f"{here} key {key!r}")
        if key in properties:
            validate(item, properties[key], root, f"{here}.{key}")
        elif extra is False:
            raise ManifestInvalid(f"{here}: unknown field {key!r}")
        elif isinstance(extra, dict):
            validate(item, extra, root, f"{here}.{key}")


def check_rules(doc: dict[str, Any]) -> None:
    """The Manifest model's cross-field validators, on a schema-valid document."""
    version = doc.get("schema_version", f"{SCHEMA_MAJOR}.0")
    if version.split(".")[0] != SCHEMA_MAJOR:
        raise ManifestInvalid(f"unsupported manifest schema {version}")
    features = doc["signature"]["features"]
    for feature in features:
        expected = "float32" if feature["kind"] == "numeric" else "string"
        if feature["dtype"] != expected:
            raise ManifestInvalid(f"feature {feature['name']!r}: dtype must be {expected}")
    for attribute in ("name", "onnx_input"):
        names = [feature[attribute] for feature in features]
        if len(set(names)) != len(names):
            raise ManifestInvalid(f"feature {attribute}s must be unique")
    outputs = doc["outputs"]
    if doc["task"] == "classification":
        classes = doc.get("classes")
        if not classes or len(classes) < 2:
            raise ManifestInvalid("a classification manifest lists at least two classes")
        if not (outputs.get("label") and outputs.get("probabilities")):
            raise ManifestInvalid("a classification manifest names label and probabilities")
    elif not outputs.get("value"):
        raise ManifestInvalid("a regression manifest names the value output")
    serving, files = doc["serving"], doc["files"]
    if serving["file"] not in files:
        raise ManifestInvalid(f"serving file {serving['file']!r} is not among the files")
    listed = files[serving["file"]]
    if (listed["sha256"], listed["size_bytes"]) != (serving["sha256"], serving["size_bytes"]):
        raise ManifestInvalid("serving digest or size disagrees with the file list")
    if serving["variant"] != doc["quantization"]["decision"]:
        raise ManifestInvalid("serving variant disagrees with the quantization decision")


def validate_manifest(raw: bytes) -> dict[str, Any]:
    """The parsed manifest if it satisfies the contract; ManifestInvalid otherwise."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ManifestInvalid(f"invalid manifest: not JSON ({error})") from None
    schema = manifest_schema()
    try:
        validate(doc, schema, schema)
        check_rules(doc)
    except ManifestInvalid as error:
        raise ManifestInvalid(f"invalid manifest: {error}") from None
    return doc


def public_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What ``Manifest.public()`` returns, from a validated document."""
    created = datetime.fromisoformat(doc["created_at"].replace("z", "Z"))
    features = [{"categories": None, **feature} for feature in doc["signature"]["features"]]
    return {
        "model_name": doc["model_name"],
        "model_version": doc["model_version"],
        "created_at": created.isoformat(),
        "task": doc["task"],
        "estimator": doc["estimator"],
        "signature": {
            "features": features,
            "target": doc["signature"]["target"],
            "missing_values": doc["signature"].get("missing_values"),
        },
        "classes": doc.get("classes"),
        "serving": doc["serving"],
        "metrics": {name: report["metrics"] for name, report in doc["variants"].items()},
        "quantization": {
            "decision": doc["quantization"]["decision"],
            "reason": doc["quantization"]["reason"],
        },
    }


@dataclass(frozen=True)
class ServingManifest:
    """The validated manifest's serving facts."""

    model_name: str
    model_version: str
    task: str
    features: tuple[FeatureSpec, ...]
    classes: list[Any] | None
    output_names: list[str]
    serving_sha256: str
    public: dict[str, Any]
    # The tokens read as missing (signature.missing_values); None: a pre-1.1 manifest, which
    # means the contract's default tokens. Each FeatureSpec's rule applies them.
    missing_values: tuple[str, ...] | None = None


def serving_manifest(doc: dict[str, Any]) -> ServingManifest:
    """Serving facts from a validated document."""
    tokens = doc["signature"].get("missing_values")
    missing_values = None if tokens is None else tuple(tokens)
    rule = ValueRule.of(missing_values)  # one rule object, shared by every feature
    features = tuple(
        FeatureSpec(f["name"], f["onnx_input"], f["kind"] == "numeric", f["nullable"], rule)
        for f in doc["signature"]["features"]
    )
    outputs = doc["outputs"]
    if doc["task"] == "classification":
        names = [outputs["label"], outputs["probabilities"]]
    else:
        names = [outputs["value"]]
    return ServingManifest(
        model_name=doc["model_name"],
        model_version=doc["model_version"],
        task=doc["task"],
        features=features,
        classes=doc.get("classes"),
        output_names=names,
        serving_sha256=doc["serving"]["sha256"],
        public=public_view(doc),
        missing_values=missing_values,
    )


def read_serving_manifest(path: Path) -> ServingManifest:
    """Read, validate and reduce ``manifest.json``; any problem is one ModelSourceError line."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ModelSourceError(f"cannot read {path}: {error.strerror}") from None
    try:
        return serving_manifest(validate_manifest(raw))
    except ManifestInvalid as error:
        raise ModelSourceError(f"{path}: {error}") from None
