"""The OpenAPI 3.1 document of the inference API, its request schema built from the signature."""

from __future__ import annotations

from typing import Any

from onnxkit.contract.values import DEFAULT_MISSING_TOKENS

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
        schema["format"] = "float"
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
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
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
            "items": {"type": "array", "items": {"type": "number"}},
            "description": "Classification only: one row per instance, in `classes` order.",
        },
        "classes": {"type": "array", "items": {"type": ["string", "integer"]}},
    }
    if task == "classification":
        prediction["required"] += ["probabilities", "classes"]
    npy_body = npy_content((public or {}).get("signature"))
    npy = {"application/x-npy": npy_body} if npy_body else {}
    title = "onnxkit inference API"
    if public:
        title += f": {public['model_name']} {public['model_version']}"
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": (public or {}).get("model_version", "none")},
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Predict for up to max_instances instances (one model run).",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PredictRequest"}
                            },
                            "text/csv": {
                                "schema": {"type": "string"},
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
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Prediction"}
                                }
                            },
                        },
                        "400": _error_response("Invalid body or instances."),
                        "403": _error_response("Missing or wrong API key."),
                        "413": _error_response("Too many instances or body too large."),
                        "415": _error_response(
                            "Unsupported content type (or .npy for a model with categorical "
                            "features)."
                        ),
                        "503": _error_response("No model is loaded."),
                    },
                }
            },
            "/model": {
                "get": {
                    "summary": "The served model's manifest, public part.",
                    "responses": {
                        "200": {"description": "Signature, classes, metrics, variant, version."},
                        "503": _error_response("No model is loaded."),
                    },
                }
            },
            "/health": {
                "get": {"summary": "Liveness.", "responses": {"200": {"description": "OK"}}}
            },
            "/openapi.json": {
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
