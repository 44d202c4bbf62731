"""Lambda entry point: API Gateway REST proxy events (payload 1.0) routed by Powertools.

The model loads once, at import (Lambda init; SnapStart snapshots the warmed session). Every
client mistake becomes a 4xx ``{"error": {...}}``; only our own faults give a 500, carrying the
request id and nothing internal.
"""

from __future__ import annotations

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "onnxkit-inference")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "onnxkit")

import base64
import binascii
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.metrics import MetricUnit

from .emf import FastEMFProvider
from .errors import ApiError
from .instances import (
    SIMDJSON_MIN_BYTES,
    npy_matrix,
    npy_problems,
    numbers_only,
    numeric_csv_rows,
    rows_from_csv,
    rows_from_instances,
)
from .openapi import openapi_document
from .predictor import Model, load_model
from .source import FetchFailed, ModelLocator, ModelSourceError, NoModelYet

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"  # binary: API Gateway passes it base64-encoded (binaryMediaTypes)
UTF8_BOM = b"\xef\xbb\xbf"
ROUTES: dict[str, str] = {
    "/predict": "POST",
    "/model": "GET",
    "/health": "GET",
    "/openapi.json": "GET",
}
# A missing pointer (docs/CONTRACTS.md) or an S3 read failure is retried at most this often.
POINTER_RECHECK_SECONDS = 10.0
_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _tracing_possible() -> bool:
    """Only inside Lambda, unless switched off: creating a Tracer imports aws_xray_sdk and
    botocore (~300 ms of cold start) even when it then disables itself."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in {"1", "true", "yes"}
    return bool(os.environ.get("LAMBDA_TASK_ROOT")) and not disabled


logger = Logger()
metrics = Metrics(provider=FastEMFProvider())
tracer: Tracer | None = Tracer(patch_modules=["botocore"]) if _tracing_possible() else None
app = APIGatewayRestResolver()


@dataclass(frozen=True)
class Settings:
    """The function's configuration, from its environment."""

    model_uri: str = ""
    model_sha256: str = ""
    model_manifest_sha256: str = ""  # pins manifest.json as MODEL_SHA256 pins model.onnx
    max_instances: int = 1000
    max_body_bytes: int = 5 * 1024 * 1024

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Settings from environment variables (``MODEL_URI``, ``MODEL_SHA256``, ...)."""
        env = dict(os.environ) if env is None else env
        return cls(
            model_uri=env.get("MODEL_URI", ""),
            model_sha256=env.get("MODEL_SHA256", ""),
            model_manifest_sha256=env.get("MODEL_MANIFEST_SHA256", ""),
            max_instances=int(env.get("MAX_INSTANCES") or cls.max_instances),
            max_body_bytes=int(env.get("MAX_BODY_BYTES") or cls.max_body_bytes),
        )


class Runtime:
    """The loaded model, or why there is none; a missing pointer is re-checked later."""

    def __init__(self, settings: Settings, locator: ModelLocator | None = None) -> None:
        self.settings = settings
        self.locator = locator or ModelLocator()
        self.model: Model | None = None
        self.problem: ApiError | None = None
        self._checked_at = 0.0
        self._retry = False  # a missing pointer or an S3 hiccup, never a refused model
        self.reason = ""  # why there is no model, for logs and the local CLI
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        self._checked_at = time.monotonic()
        try:
            located = self.locator.locate(
                self.settings.model_uri,
                self.settings.model_sha256,
                self.settings.model_manifest_sha256,
            )
            self.model = load_model(located)
        except NoModelYet as error:
            logger.warning("no model yet: %s", error)
            self.reason = str(error)
            self.problem = ApiError(503, "no_model", "no model has been promoted yet")
            self._retry = True
            return
        except ModelSourceError as error:
            # Refuse loudly: never serve a different model than the deployment names. The
            # details (paths, buckets, digests) go to the log, not to clients.
            logger.error("refusing to serve: %s", error)
            self.reason = str(error)
            self.problem = ApiError(
                503,
                "model_unavailable",
                "the configured model is not served (it failed to load or did not match its "
                "digest); the function's log says why",
            )
            self._retry = isinstance(error, FetchFailed)
            return
        self.problem = None
        self.reason = ""
        self.activate()

    def activate(self) -> None:
        """Make this the module's runtime, its model version the metrics' dimension."""
        global runtime  # noqa: PLW0603  # one model per process, as in Lambda
        runtime = self
        metrics.clear_default_dimensions()
        metrics.clear_metrics()
        metrics.set_default_dimensions(
            model_version=self.model.model_version if self.model else "none"
        )

    def require(self) -> Model:
        """The model, or the 503 that explains why there is none."""
        if self.model is not None:
            return self.model
        if self._retry:
            with self._lock:
                if time.monotonic() - self._checked_at >= POINTER_RECHECK_SECONDS:
                    self._load()
            if self.model is not None:
                return self.model
        raise self.problem or ApiError(503, "no_model", "no model has been promoted yet")


runtime: Runtime
runtime = Runtime(Settings.from_env())


def configure(settings: Settings, locator: ModelLocator | None = None) -> Runtime:
    """Replace the module's runtime (the local server and tests load a model this way)."""
    fresh = Runtime(settings, locator)
    fresh.activate()
    return fresh


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    text = orjson.dumps(body, option=_DUMP_OPTIONS).decode()
    return Response(status_code=status, content_type=JSON, body=text, headers=headers)


def _header(name: str) -> str | None:
    headers = app.current_event.raw_event.get("headers") or {}
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value if isinstance(value, str) else None
    return None


def _body_bytes() -> bytes:
    event = app.current_event.raw_event
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise ApiError(400, "invalid_body", "the request body is not text")
    limit = runtime.settings.max_body_bytes
    if len(body) > (limit * 4 // 3 + 4 if event.get("isBase64Encoded") else limit):
        raise ApiError(413, "body_too_large", f"the body exceeds {limit} bytes")
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_body", "the body is not valid base64") from None
    else:
        raw = body.encode()
    if len(raw) > limit:
        raise ApiError(413, "body_too_large", f"the body exceeds {limit} bytes")
    return raw


def _media_type() -> str:
    content_type = _header("content-type")
    if content_type is None:
        return JSON  # curl and many clients omit it for JSON; anything explicit must match
    media = content_type.split(";", 1)[0].strip().lower()
    if media in (JSON, CSV, NPY):
        return media
    if media.startswith("application/") and media.endswith("+json"):
        return JSON
    raise ApiError(
        415,
        "unsupported_media_type",
        f"unsupported content type {media!r}; send application/json, text/csv or {NPY}",
    )


def _instances_from_json(raw: bytes) -> list[Any]:
    if not raw.strip():
        raise ApiError(400, "invalid_json", 'empty body; send {"instances": [...]}')
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        # orjson, unlike the json module, rejects NaN/Infinity literals and out-of-range numbers.
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", 'the body must be a JSON object {"instances": [...]}')
    unknown = sorted(str(key) for key in body if key != "instances")
    if unknown:
        raise ApiError(
            400,
            "invalid_body",
            f'unknown field(s) {", ".join(unknown)}; the body is {{"instances": [...]}}',
        )
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise ApiError(400, "invalid_body", '"instances" must be a list of instances')
    return instances


def _check_count(count: int) -> None:
    if count == 0:
        raise ApiError(400, "invalid_body", "no instances: send at least one")
    limit = runtime.settings.max_instances
    if count > limit:
        raise ApiError(413, "too_many_instances", f"{count} instances; at most {limit} per call")


@app.post("/predict")
def predict() -> Response:
    """POST /predict: one session.run over every instance of the call."""
    model = runtime.require()
    media = _media_type()
    raw = _body_bytes()
    if media == CSV:
        # Spreadsheets save CSV with a byte-order mark; every CSV reader drops it (pandas too).
        raw = raw.removeprefix(UTF8_BOM)
    if media == NPY:
        feed: dict[str, np.ndarray] | None = _npy_feed(model, raw)
    else:
        feed = _fast_feed(model, media, raw) if len(raw) >= SIMDJSON_MIN_BYTES else None
    if feed is not None:
        result = model.predict_feed(feed)
        count = len(next(iter(feed.values())))
    else:
        rows, plain = _rows(model, media, raw)
        result = model.predict(rows, plain)
        count = len(rows)
    metrics.add_metric(name="Instances", unit=MetricUnit.Count, value=count)
    return _json_response(200, result)


def _fast_feed(model: Model, media: str, raw: bytes) -> dict[str, np.ndarray] | None:
    """The feed of a large all-numeric body with nothing to explain, parsed without a Python
    object per value; None sends the body down the path that names every problem."""
    builder = model.feed
    matrix = builder.csv_matrix(raw) if media == CSV else builder.json_matrix(raw)
    if matrix is None:
        return None
    _check_count(len(matrix))  # the same 413 the careful path gives
    return builder.from_matrix(matrix)


def _npy_feed(model: Model, raw: bytes) -> dict[str, np.ndarray]:
    """The feed of an ``application/x-npy`` body: a header parse and a buffer view, then the
    same limits and value checks as a numeric JSON body."""
    builder = model.feed
    if not builder.all_numeric:
        categorical = [spec.name for spec in model.features if not spec.numeric]
        raise ApiError(
            415,
            "unsupported_media_type",
            f"{NPY} needs an all-numeric model; this one has categorical features "
            f"({', '.join(categorical)}): send application/json or text/csv",
        )
    encoded = bool(app.current_event.raw_event.get("isBase64Encoded"))
    matrix = npy_matrix(raw, len(model.features), base64_hint=not encoded)
    if matrix.dtype not in (np.float32, np.float64):  # a tuple: dtypes compare by ==
        # Integers, float16 (whose own range would hide a too-large value), other byte orders.
        matrix = matrix.astype(np.float64)
    _check_count(len(matrix))
    feed = builder.from_matrix(matrix)
    if feed is None:
        raise npy_problems(matrix, model.features)
    return feed


def _rows(model: Model, media: str, raw: bytes) -> tuple[Sequence[Sequence[Any]], bool]:
    """Rows in signature order, and whether the body holds only numbers and nulls."""
    if media == CSV:
        fast = numeric_csv_rows(raw, model.features)
        if fast is not None:
            _check_count(len(fast))
            return fast, True
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_body", "the CSV body is not UTF-8") from None
        rows = rows_from_csv(text, model.features)
        _check_count(len(rows))
        return rows, False
    instances = _instances_from_json(raw)
    _check_count(len(instances))
    return rows_from_instances(instances, model.features), numbers_only(raw)


@app.get("/model")
def model_info() -> Response:
    """GET /model: the manifest's public part."""
    return _json_response(200, runtime.require().public)


@app.get("/health")
def health() -> Response:
    """GET /health: 200 while serving or waiting for a first model, 503 if a model was refused."""
    model, problem = runtime.model, runtime.problem
    if model is not None:
        return _json_response(200, {"status": "ok", "model_version": model.model_version})
    if problem is not None and problem.code != "no_model":
        return _json_response(503, {"status": "unavailable", **problem.body()})
    return _json_response(200, {"status": "no_model", "model_version": None})


@app.get("/openapi.json")
def openapi() -> Response:
    """GET /openapi.json: this API, its request schema generated from the signature."""
    model = runtime.model
    return _json_response(
        200, openapi_document(model.public if model else None, runtime.settings.max_instances)
    )


def _request_id() -> str | None:
    try:
        return app.current_event.request_context.request_id
    except (AttributeError, KeyError, TypeError):
        return None


@app.exception_handler(ApiError)
def _api_error(error: ApiError) -> Response:
    return _json_response(error.status, error.body(), error.headers or None)


@app.not_found
def _not_found(_: NotFoundError) -> Response:
    path = app.current_event.path
    allowed = ROUTES.get(path)
    if allowed is not None:
        error = ApiError(
            405,
            "method_not_allowed",
            f"{app.current_event.http_method} is not allowed on {path}; use {allowed}",
            headers={"Allow": allowed},
        )
    else:
        error = ApiError(404, "not_found", f"no route {path}; routes: {', '.join(ROUTES)}")
    return _json_response(error.status, error.body(), error.headers)


@app.exception_handler(Exception)
def _fault(error: Exception) -> Response:
    logger.exception("unhandled error")
    return _internal_error(_request_id())


def _internal_error(request_id: str | None) -> Response:
    body = ApiError(500, "internal_error", "internal error; quote the request id").body(request_id)
    return _json_response(500, body)


def _route(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        response = app.resolve(event, context)
    except Exception:  # a malformed event that Powertools itself cannot wrap
        logger.exception("unresolvable event")
        request_id = (
            (event.get("requestContext") or {}).get("requestId")
            if isinstance(event, dict)
            else None
        )
        body = ApiError(500, "internal_error", "internal error").body(request_id)
        response = {
            "statusCode": 500,
            "headers": {"Content-Type": JSON},
            "body": orjson.dumps(body).decode(),
            "isBase64Encoded": False,
        }
    elapsed_ms = (time.perf_counter() - started) * 1000
    status = int(response.get("statusCode", 500))
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=elapsed_ms)
    if status >= 500:
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
    elif status >= 400:
        metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
    # Successes log at DEBUG: a JSON line per request costs as much as the model run, and
    # even a suppressed call builds its keyword arguments, so ask the level first.
    if status >= 400 or logger.log_level <= logging.DEBUG:
        log = logger.info if status >= 400 else logger.debug
        log(
            "request",
            method=event.get("httpMethod"),
            path=event.get("path"),
            status=status,
            latency_ms=round(elapsed_ms, 3),
        )
    return response


_invocations = 0


def _with_request_ids(event: dict[str, Any], context: Any) -> None:
    # What inject_lambda_context(correlation_id_path=API_GATEWAY_REST) adds, without its
    # per-call jmespath search and context model (a third of a one-row request's overhead).
    global _invocations  # noqa: PLW0603  # per execution environment, as cold_start is
    _invocations += 1
    if _invocations <= 2:  # the static keys once, cold_start flips on the second call
        logger.append_keys(
            cold_start=_invocations == 1,
            function_name=getattr(context, "function_name", None),
            function_memory_size=getattr(context, "memory_limit_in_mb", None),
            function_arn=getattr(context, "invoked_function_arn", None),
        )
    request_context = event.get("requestContext") if isinstance(event, dict) else None
    logger.append_keys(
        function_request_id=getattr(context, "aws_request_id", None),
        correlation_id=request_context.get("requestId")
        if isinstance(request_context, dict)
        else None,
    )


@metrics.log_metrics
def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _with_request_ids(event, context)
    return _route(event, context)


# X-Ray only where it can work; a disabled Tracer's wrapper would only cost time.
_traced = _handle if tracer is None or tracer.disabled else tracer.capture_lambda_handler(_handle)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The function's handler (``functions.inference.handler.lambda_handler``)."""
    return _traced(event, context)
