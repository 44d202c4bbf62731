"""Helpers for the inference function's tests: fixture events, a Lambda context, one call of
the handler, and the API's error shape."""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

import orjson

from tests.support.paths import EVENTS


@cache
def _event(name: str) -> str:
    return (EVENTS / f"inference_{name}.json").read_text()


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``tests/events/inference_<name>.json`` (a REST API proxy event)."""
    return copy.deepcopy(json.loads(_event(name)))


def event_with(base: str = "predict_list", **changes: Any) -> dict[str, Any]:
    """A fixture event with top-level fields replaced (``body``, ``httpMethod``, ``path``...)."""
    event = load_event(base)
    event.update(changes)
    return event


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
