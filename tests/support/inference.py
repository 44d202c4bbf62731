"""Helpers for the inference function's tests: fixture events, a Lambda context, one call of
the handler, and the API's error shape.

The ``inference_*.json`` fixtures are REST API proxy events (payload 1.0). :func:`as_format`
carries one into the HTTP API's payload 2.0 or a function URL's, using the documented
examples ``http_api_predict.json`` and ``function_url_predict.json`` as the envelope: the same
request (method, path, headers, body, base64 flag, request id) in the other front door's shape.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any, Literal

import orjson

from tests.support.paths import EVENTS


@cache
def _event(name: str) -> str:
    return (EVENTS / f"inference_{name}.json").read_text()


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``tests/events/inference_<name>.json`` (a REST API proxy event)."""
    return copy.deepcopy(json.loads(_event(name)))


Format = Literal["rest", "http", "function_url"]
FORMATS: tuple[Format, ...] = ("rest", "http", "function_url")
# The HTTP API's routes (infra/constructs/http_api.py); anything else takes its $default route.
HTTP_API_ROUTES = {
    ("POST", "/predict"), ("POST", "/explain"), ("GET", "/model"), ("GET", "/health"),
    ("GET", "/openapi.json"),
}  # fmt: skip


@cache
def _envelope(fmt: Format) -> str:
    name = {"http": "http_api_predict", "function_url": "function_url_predict"}[fmt]
    return (EVENTS / f"{name}.json").read_text()


def _v2_headers(event: dict[str, Any]) -> dict[str, str]:
    """Payload 2.0 headers: lower-case names, repeated headers joined with commas."""
    multi = event.get("multiValueHeaders")
    if not isinstance(multi, dict) or not multi:
        multi = {name: [value] for name, value in (event.get("headers") or {}).items()}
    headers: dict[str, str] = {}
    for name, values in multi.items():
        key = str(name).lower()
        joined = ",".join(str(value) for value in values)
        headers[key] = f"{headers[key]},{joined}" if key in headers else joined
    return headers


def as_format(event: dict[str, Any], fmt: Format) -> dict[str, Any]:
    """A REST proxy event as the front door ``fmt`` would deliver the same request."""
    if fmt == "rest":
        return event
    out: dict[str, Any] = json.loads(_envelope(fmt))
    method, path = event.get("httpMethod"), event.get("path")
    context = out["requestContext"]
    headers = _v2_headers(event)
    headers["host"] = context["domainName"]  # the front door's own host
    route = "$default"
    if fmt == "http" and (method, path) in HTTP_API_ROUTES:
        route = f"{method} {path}"
    out.update(
        routeKey=route, rawPath=path, headers=headers, isBase64Encoded=event.get("isBase64Encoded")
    )
    context.update(routeKey=route, requestId=(event.get("requestContext") or {}).get("requestId"))
    context["http"].update(method=method, path=path)
    if event.get("body") is None:
        out.pop("body")  # payload 2.0 leaves the key out when there is no body
    else:
        out["body"] = event["body"]
    return out


def event_with(base: str = "predict_list", fmt: Format = "rest", **changes: Any) -> dict[str, Any]:
    """A fixture event with top-level REST fields replaced (``body``, ``httpMethod``,
    ``path``...), in the front door ``fmt``'s format."""
    event = load_event(base)
    event.update(changes)
    return as_format(event, fmt)


class FakeContext:
    """The Lambda context attributes Powertools reads."""

    function_name = "onnxkit-inference-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:onnxkit-inference-test"
    aws_request_id = "11111111-2222-3333-4444-555555555555"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def call(handler: Any, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """Invoke the handler; status, flattened headers and the parsed JSON body."""
    result = handler.lambda_handler(event, FakeContext())
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = values[-1]
    assert result["isBase64Encoded"] is False
    return result["statusCode"], headers, orjson.loads(result["body"])


def assert_error(body: Any, code: str | None = None) -> None:
    """The API's error shape: {"error": {"code", "message", "details": [...]}}."""
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) <= {"code", "message", "details", "request_id"}
    for entry in error.get("details", []):
        assert set(entry) == {"instance", "feature", "problem"}
        assert isinstance(entry["problem"], str) and entry["problem"]
    if code is not None:
        assert error["code"] == code, body
