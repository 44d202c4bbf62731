"""The OpenAPI 3.1 document of the inference API, its request schema built from the signature."""

from __future__ import annotations

import re
from typing import Any

from onnxkit.contract.api import (
    CSV,
    HEALTH_PATH,
    JSON,
    MODEL_PATH,
    NPY,
    OPENAPI_PATH,
    PREDICT_PATH,
)
from onnxkit.contract.values import DEFAULT_MISSING_TOKENS, FLOAT32_MAX

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["instance", "feature", "problem"],
                        "properties": {
                            "instance": {"type": ["integer", "null"]},
                            "feature": {"type": ["string", "null"]},
                            "problem": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}


def missing_pattern(tokens: list[str] | None) -> str:
    """The strings the API reads as missing: blank, or a token with blanks around it (None:
    a signature from before manifest 1.1, the contract's default tokens)."""
    tokens = list(DEFAULT_MISSING_TOKENS if tokens is None else tokens)
    # Escapes valid in ECMA 262 and Python regexes alike (re.escape also escapes "#").
    alternatives = "|".join(
        "".join(f"\\{c}" if c in r"\^$.|?*+()[]{}" else c for c in token) for token in tokens
    )
    return f"^[ \\t]*(?:{alternatives})?[ \\t]*$" if alternatives else "^[ \\t]*$"


def _feature_schema(feature: dict[str, Any], missing: str) -> dict[str, Any]:
    numeric = feature["kind"] == "numeric"
    base = "number" if numeric else "string"
    schema: dict[str, Any] = {
        "type": [base, "null"] if feature["nullable"] else base,
        "description": f"{feature['kind']} feature"
        + ("; null when missing (the model imputes it)" if feature["nullable"] else ""),
    }
    if numeric:
        # float32, as the model reads it: a larger magnitude is refused, not rounded to inf.
        schema.update(format="float", minimum=-FLOAT32_MAX, maximum=FLOAT32_MAX)
    elif feature.get("categories"):
        # Not an enum: an unseen category is accepted and encoded as all zeros.
        schema["examples"] = feature["categories"]
    if not feature["nullable"]:
        if not numeric:
            schema["not"] = {"pattern": missing}  # blank or a token is a missing value
        return schema
    if numeric:
        # A string that is blank or a missing token is a missing value too (the contract's
        # rule, which CSV bodies follow); any other string is refused.
        description = schema.pop("description")
        missing_text = {
            "type": "string",
            "pattern": missing,
            "description": "a missing value written as text: blank or a missing token",
        }
        return {"anyOf": [schema, missing_text], "description": description}
    return schema


def instance_schema(signature: dict[str, Any] | None) -> dict[str, Any]:
    """JSON Schema of one instance: a positional list or an object keyed by feature name."""
    if not signature:
        return {"oneOf": [{"type": "array"}, {"type": "object"}]}
    features = signature["features"]
    missing = missing_pattern(signature.get("missing_values"))
    items = [_feature_schema(feature, missing) for feature in features]
    return {
        "oneOf": [
            {
                "type": "array",
                "description": "Values in signature order: "
                + ", ".join(f["name"] for f in features),
                "prefixItems": items,
                "items": False,
                "minItems": len(items),
                "maxItems": len(items),
            },
            {
                "type": "object",
                "properties": {f["name"]: s for f, s in zip(features, items, strict=True)},
                "required": [f["name"] for f in features],
                "additionalProperties": False,
            },
        ]
    }


# A plain decimal: what any CSV writer emits. The API reads more (exponents, spaces, the
# missing tokens); the pattern describes a body that is surely valid, not every one.
_CSV_NUMBER = r"-?(?:0|[1-9][0-9]{0,6})(?:\.[0-9]{1,6})?"


def csv_schema(signature: dict[str, Any] | None, max_instances: int) -> dict[str, Any]:
    """The ``text/csv`` body: 1 to max_instances rows of the signature's cells."""
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    features = (signature or {}).get("features") or []
    if not features:
        return schema
    cells = []
    for feature in features:
        if feature["kind"] == "numeric":
            cell = _CSV_NUMBER
        else:
            # Seen categories (an unseen one is accepted too); a comma or quote needs quoting.
            names = [c for c in feature.get("categories") or [] if not set(c) & set(',"\r\n')]
            cell = "|".join(re.escape(name) for name in names) or "[A-Za-z0-9_]*[0-9_][A-Za-z0-9_]*"
        cells.append(f"(?:{cell})?" if feature["nullable"] else f"(?:{cell})")
    row = ",".join(cells)
    schema["pattern"] = f"^{row}(?:\\r?\\n{row}){{0,{max_instances - 1}}}(?:\\r?\\n)?$"
    return schema


def npy_content(signature: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``application/x-npy`` request body, or None for a model with categorical features
    (which the API refuses in that format with a 415)."""
    features = (signature or {}).get("features") or []
    if any(feature["kind"] != "numeric" for feature in features):
        return None
    order = ", ".join(feature["name"] for feature in features) or "signature order"
    return {
        "schema": {"type": "string", "format": "binary"},
        "description": "A NumPy .npy file (np.save, no pickle): a 2-D float32 or float64 array "
        f"[instances, features] with columns in signature order ({order}); NaN is a missing "
        "value. Integer arrays are accepted and cast; object, structured and other dtypes are "
        "refused (400). All-numeric models only.",
    }


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_document(
    public: dict[str, Any] | None, max_instances: int, server_url: str | None = None
) -> dict[str, Any]:
    """The API's OpenAPI document; without a model the instance schema is generic."""
    task = (public or {}).get("task")
    prediction: dict[str, Any] = {"type": "object", "required": ["model_version", "predictions"]}
    prediction["properties"] = {
        "model_version": {"type": "string"},
        "predictions": {"type": "array", "items": {"type": ["string", "number", "integer"]}},
        "probabilities": {
            "type": "array",
            # null where the model's output is not a finite number (inputs far outside the
            # training data can overflow a network): JSON has no NaN.
            "items": {"type": "array", "items": {"type": ["number", "null"]}},
            "description": "Classification only: one row per instance, in `classes` order; "
            "null where the model's output is not finite.",
        },
        "classes": {"type": "array", "items": {"type": ["string", "integer"]}},
    }
    if task == "classification":
        prediction["required"] += ["probabilities", "classes"]
    npy_body = npy_content((public or {}).get("signature"))
    npy = {NPY: npy_body} if npy_body else {}
    title = "onnxkit inference API"
    if public:
        title += f": {public['model_name']} {public['model_version']}"
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": (public or {}).get("model_version", "none")},
        "paths": {
            PREDICT_PATH: {
                "post": {
                    "summary": "Predict for up to max_instances instances (one model run).",
                    "requestBody": {
                        "required": True,
                        "content": {
                            JSON: {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
                            CSV: {
                                "schema": csv_schema(
                                    (public or {}).get("signature"), max_instances
                                ),
                                "description": "Rows in signature order, optionally after a "
                                "header line of the feature names; an empty field or a missing "
                                "token (signature.missing_values) is a missing value. A leading "
                                "UTF-8 byte-order mark is dropped.",
                            },
                            **npy,
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Predictions, in instance order.",
                            "content": {
                                JSON: {"schema": {"$ref": "#/components/schemas/Prediction"}}
                            },
                        },
                        "400": _error_response("Invalid body or instances."),
                        "403": _error_response("Missing or wrong API key."),
                        "413": _error_response("Too many instances or body too large."),
                        "422": _error_response(
                            "Valid instances the model has no finite answer for (values that "
                            "overflow its float32 arithmetic), named in details."
                        ),
                        "415": _error_response(
                            "Unsupported content type (or .npy for a model with categorical "
                            "features)."
                        ),
                        "503": _error_response("No model is loaded."),
                    },
                }
            },
            MODEL_PATH: {
                "get": {
                    "summary": "The served model's manifest, public part.",
                    "responses": {
                        "200": {"description": "Signature, classes, metrics, variant, version."},
                        "503": _error_response("No model is loaded."),
                    },
                }
            },
            HEALTH_PATH: {
                "get": {"summary": "Liveness.", "responses": {"200": {"description": "OK"}}}
            },
            OPENAPI_PATH: {
                "get": {"summary": "This document.", "responses": {"200": {"description": "OK"}}}
            },
        },
        "components": {
            "schemas": {
                "PredictRequest": {
                    "type": "object",
                    "required": ["instances"],
                    "additionalProperties": False,
                    "properties": {
                        "instances": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": max_instances,
                            "items": instance_schema((public or {}).get("signature")),
                        }
                    },
                },
                "Prediction": prediction,
                "Error": ERROR_SCHEMA,
            }
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document
