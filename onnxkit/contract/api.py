"""The inference API's wire contract: media types, routes and the error body.

``POST /predict`` takes JSON, CSV or NumPy ``.npy`` bodies; every refusal is a JSON body
``{"error": {"code", "message", "details": [{"instance", "feature", "problem"}], "request_id"}}``
with a 4xx status for the client's mistakes and 503 while no model can be served
(docs/CONTRACTS.md). The inference function writes it, the CLI and clients read it.
"""

from __future__ import annotations

from typing import Any, Final

JSON: Final = "application/json"
CSV: Final = "text/csv"
NPY: Final = "application/x-npy"  # binary: API Gateway passes it base64-encoded
BINARY_MEDIA_TYPES: Final = (NPY,)  # the REST API's binaryMediaTypes

PREDICT_PATH: Final = "/predict"
EXPLAIN_PATH: Final = "/explain"  # the same bodies as /predict; ?class= picks the class
EXPLAIN_CLASS_PARAMETER: Final = "class"
MODEL_PATH: Final = "/model"
HEALTH_PATH: Final = "/health"
OPENAPI_PATH: Final = "/openapi.json"

# More details than this are summarised: a 1000-row body of garbage must not echo 30000 lines.
MAX_DETAILS: Final = 20


def detail(instance: int | None, feature: str | None, problem: str) -> dict[str, Any]:
    """One entry of an error's details list: which row, which feature, what is wrong."""
    return {"instance": instance, "feature": feature, "problem": problem}


def error_body(
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The JSON error body (at most MAX_DETAILS details)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details[:MAX_DETAILS]
    if request_id:
        error["request_id"] = request_id
    return {"error": error}


def error_message(body: Any) -> str | None:
    """A readable line from an error body (its message, else its code), or None if it is not
    one."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    text = error.get("message") or error.get("code")
    return str(text) if text else None
