"""The OpenAPI 3.1 document of the inference API, its request schema built from the signature."""

from __future__ import annotations

import re
from typing import Any

from onnxkit.contract.api import (
    CSV,
    EXPLAIN_CLASS_PARAMETER,
    EXPLAIN_PATH,
    HEALTH_PATH,
    JSON,
    MODEL_PATH,
    NPY,
    OPENAPI_PATH,
    PREDICT_PATH,
)
from onnxkit.contract.layout import MAX_EXPLAIN_INSTANCES
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


def _request_body(public: dict[str, Any] | None, max_instances: int, schema: str) -> dict[str, Any]:
    """The request body of /predict and /explain: JSON, CSV, and .npy for numeric models."""
    npy_body = npy_content((public or {}).get("signature"))
    npy = {NPY: npy_body} if npy_body else {}
    return {
        "required": True,
        "content": {
            JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}},
            CSV: {
                "schema": csv_schema((public or {}).get("signature"), max_instances),
                "description": "Rows in signature order, optionally after a header line of the "
                "feature names; an empty field or a missing token (signature.missing_values) "
                "is a missing value. A leading UTF-8 byte-order mark is dropped.",
            },
            **npy,
        },
    }


def _instances_request(public: dict[str, Any] | None, max_instances: int) -> dict[str, Any]:
    return {
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
    }


def explanation_schema(public: dict[str, Any] | None) -> dict[str, Any]:
    """The body ``POST /explain`` answers (functions/inference/explain.py)."""
    names = [f["name"] for f in ((public or {}).get("signature") or {}).get("features") or []]
    number = {"type": ["number", "null"]}  # null where the model's output is not finite
    contributions: dict[str, Any] = {"type": "object", "additionalProperties": number}
    if names:
        contributions.update(properties={name: number for name in names}, required=names)
    row: dict[str, Any] = {
        "type": "object",
        "required": ["output", "base_value", "contributions"],
        "properties": {
            "class": {
                "type": ["string", "integer"],
                "description": "Classification: the class whose probability is explained.",
            },
            "output": {**number, "description": "The explained output for this row."},
            "base_value": {**number, "description": "The mean output over the background."},
            "contributions": {
                **contributions,
                "description": "Per feature, its Shapley value: base_value plus their sum is "
                "output (within 1e-4 x (1 + |output|)).",
            },
        },
    }
    return {
        "type": "object",
        "required": ["model_version", "method", "output", "features", "explanations"],
        "properties": {
            "model_version": {"type": "string"},
            "method": {"enum": ["exact_additive", "exact_shapley", "kernel_shap"]},
            "output": {"enum": ["value", "probability"]},
            "background_rows": {"type": "integer"},
            "coalitions": {"type": "integer"},
            "features": {"type": "array", "items": {"type": "string"}},
            "explanations": {"type": "array", "items": row},
        },
    }


def _explain_operation(
    public: dict[str, Any] | None, max_instances: int, errors: dict[str, Any]
) -> dict[str, Any]:
    classes = (public or {}).get("classes")
    parameter: dict[str, Any] = {
        "name": EXPLAIN_CLASS_PARAMETER,
        "in": "query",
        "required": False,
        "description": "Classification only: the class whose probability is explained "
        "(default: each row's predicted class).",
        "schema": {"type": "string"},
    }
    if classes:
        parameter["schema"] = {"type": "string", "enum": [str(c) for c in classes]}
    return {
        "summary": f"Explain up to {max_instances} instances: each feature's contribution "
        "(Shapley value) to the predicted value or a class's probability, and the base value.",
        "parameters": [parameter],
        "requestBody": _request_body(public, max_instances, "ExplainRequest"),
        "responses": {
            "200": {
                "description": "One explanation per instance, in instance order.",
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/Explanation"}}},
            },
            **errors,
            "400": _error_response("Invalid body, instances or class."),
            "409": _error_response(
                "The model's artifact has no explanation background (trained before it)."
            ),
            "503": _error_response("No model is loaded, or its background cannot be read."),
        },
    }


def openapi_document(
    public: dict[str, Any] | None,
    max_instances: int,
    server_url: str | None = None,
    max_explain_instances: int = MAX_EXPLAIN_INSTANCES,
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
    errors = {
        "400": _error_response("Invalid body or instances."),
        "403": _error_response("Missing or wrong API key."),
        "413": _error_response("Too many instances or body too large."),
        "415": _error_response(
            "Unsupported content type (or .npy for a model with categorical features)."
        ),
        "422": _error_response(
            "Valid instances the model has no finite answer for (values that overflow its "
            "float32 arithmetic), named in details."
        ),
        "503": _error_response("No model is loaded."),
    }
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
                    "requestBody": _request_body(public, max_instances, "PredictRequest"),
                    "responses": {
                        "200": {
                            "description": "Predictions, in instance order.",
                            "content": {
                                JSON: {"schema": {"$ref": "#/components/schemas/Prediction"}}
                            },
                        },
                        **errors,
                    },
                }
            },
            EXPLAIN_PATH: {"post": _explain_operation(public, max_explain_instances, errors)},
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
                "PredictRequest": _instances_request(public, max_instances),
                "ExplainRequest": _instances_request(public, max_explain_instances),
                "Explanation": explanation_schema(public),
                "Prediction": prediction,
                "Error": ERROR_SCHEMA,
            }
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document
