"""The inference API: routes over one :class:`~.runtime.Runtime`, and their wiring.

:func:`routes` registers ``POST /predict``, ``POST /explain``, ``GET /model``, ``GET /health``
and ``GET /openapi.json`` on one router per event format, whose routes read only the runtime
they are given and the event they are called for; request decoding is :mod:`.decode`'s. Every
client mistake becomes a 4xx ``{"error": {...}}``; only our own faults give a 500, carrying the
request id and nothing internal. :class:`InferenceFunction` builds the runtime and the telemetry
once and is what both callers call: the Lambda entry point (:mod:`.handler`) and
``onnxkit serve``.

The three front doors (``api.kind``) send three event formats to the same handler: the REST
API's proxy events (payload 1.0, no ``version`` key), the HTTP API's payload 2.0 and a function
URL's (payload 2.0 too, from a ``*.lambda-url.*`` domain). :func:`event_format` tells them apart
with two dictionary lookups, and each format has its :class:`~.router.Router` (Powertools'
event handler until it cost more than it gave: see :mod:`.router`), built once at init with the
same routes; their responses differ only in how headers are carried.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from onnxkit.contract.api import (
    EXPLAIN_PATH,
    HEALTH_PATH,
    JSON,
    MODEL_PATH,
    OPENAPI_PATH,
    PREDICT_PATH,
    detail,
)

from . import decode
from .capture import Sink, sampler, scored
from .errors import ApiError
from .explain import Explainers, requested_class
from .observability import Handler, Telemetry
from .openapi import openapi_document
from .predictor import NON_FINITE_PROBLEM, Model, non_finite_rows
from .router import NotFoundError, Response, Router
from .runtime import Runtime, Settings
from .source import ModelLocator

ROUTES: dict[str, str] = {
    PREDICT_PATH: "POST",
    EXPLAIN_PATH: "POST",
    MODEL_PATH: "GET",
    HEALTH_PATH: "GET",
    OPENAPI_PATH: "GET",
}
_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    text = orjson.dumps(body, option=_DUMP_OPTIONS).decode()
    return Response(status_code=status, content_type=JSON, body=text, headers=headers)


def event_format(event: Any) -> str:
    """``rest`` (payload 1.0), ``http`` (HTTP API payload 2.0) or ``function_url``."""
    if not isinstance(event, dict) or event.get("version") != "2.0":
        return "rest"  # REST proxy events carry no version (an HTTP API's 1.0 says "1.0")
    context = event.get("requestContext")
    domain = context.get("domainName") if isinstance(context, dict) else None
    return "function_url" if isinstance(domain, str) and ".lambda-url." in domain else "http"


def routes(runtime: Runtime, telemetry: Telemetry, capture: Sink | None = None) -> Handler:
    """A Lambda-style handler ``(event, context) -> result`` serving the API over ``runtime``
    for every front door's event format; ``capture`` gets every answered ``/predict`` call
    (:mod:`.capture`)."""
    resolvers: dict[str, Router] = {
        "rest": Router("rest"),
        "http": Router("http"),
        "function_url": Router("function_url"),
    }
    explainers = Explainers(runtime.locator)  # one background read, whatever the format
    for app in resolvers.values():
        _register(app, runtime, telemetry, capture, explainers)
    rest = resolvers["rest"]

    def resolve(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            # The REST path pays one dict lookup for the other formats (version is absent).
            app = rest if "version" not in event else resolvers[event_format(event)]
            return app.resolve(event, context)
        except Exception:  # a malformed event that the router cannot read
            telemetry.logger.exception("unresolvable event")
            ids = event.get("requestContext") if isinstance(event, dict) else None
            request_id = ids.get("requestId") if isinstance(ids, dict) else None
            body = ApiError(500, "internal_error", "internal error").body(request_id)
            return {
                "statusCode": 500,
                "headers": {"Content-Type": JSON},
                "body": orjson.dumps(body).decode(),
                "isBase64Encoded": False,
            }

    return telemetry.wrap(resolve)


def _finite_answer(model: Model, feed: dict[str, Any]) -> dict[str, Any]:
    """The model's answer for ``feed``; a valid body with a row the model has no finite answer
    for is refused 422 (as ``onnxkit predict`` expects), naming the rows."""
    result = model.predict_feed(feed)
    withheld = non_finite_rows(result)
    if withheld:
        details = [detail(row, None, NON_FINITE_PROBLEM) for row in withheld]
        count = f"{len(withheld)} instance{'s' if len(withheld) > 1 else ''}"
        raise ApiError(422, "non_finite_output", f"no finite answer for {count}", details)
    return result


def _register(
    app: Router,
    runtime: Runtime,
    telemetry: Telemetry,
    capture: Sink | None,
    explainers: Explainers,
) -> None:
    """The API's routes and error handlers on one resolver."""
    settings = runtime.settings
    take = sampler(capture)

    @app.post(PREDICT_PATH)
    def predict() -> Response:
        """POST /predict: one session.run over every instance of the call."""
        model = runtime.require()
        feed = decode.predict_feed(
            app.current_event.raw_event,
            model.feed,
            max_body_bytes=settings.max_body_bytes,
            max_instances=settings.max_instances,
        )
        result = _finite_answer(model, feed)
        telemetry.count_instances(len(next(iter(feed.values()))))
        if capture is not None and (take is None or take()):
            # Every front door's event carries requestContext.requestId (payload 1.0 and 2.0).
            context = app.current_event.raw_event.get("requestContext") or {}
            call = scored(str(context.get("requestId", "")), time.time(), model, feed, result)
            capture(call)
        return _json(200, result)

    @app.post(EXPLAIN_PATH)
    def explain() -> Response:
        """POST /explain: /predict's bodies, each row's feature contributions (:mod:`.explain`)."""
        model = runtime.require()
        event = app.current_event.raw_event
        feed = decode.predict_feed(
            event,
            model.feed,
            max_body_bytes=settings.max_body_bytes,
            max_instances=settings.max_explain_instances,
        )
        _finite_answer(model, feed)  # a row /predict withholds has nothing to explain
        explainer = explainers.get(model, runtime.located)
        return _json(200, explainer.explain(feed, requested_class(event)))

    @app.get(MODEL_PATH)
    def model_info() -> Response:
        """GET /model: the manifest's public part."""
        return _json(200, runtime.require().public)

    @app.get(HEALTH_PATH)
    def health() -> Response:
        """GET /health: 200 while serving or waiting for a first model, 503 if one was refused."""
        model, problem = runtime.model, runtime.problem
        if model is not None:
            return _json(200, {"status": "ok", "model_version": model.model_version})
        if problem is not None and problem.code != "no_model":
            return _json(503, {"status": "unavailable", **problem.body()})
        return _json(200, {"status": "no_model", "model_version": None})

    @app.get(OPENAPI_PATH)
    def openapi() -> Response:
        """GET /openapi.json: this API, its request schema generated from the signature."""
        model = runtime.model
        document = openapi_document(
            model.public if model else None,
            settings.max_instances,
            max_explain_instances=settings.max_explain_instances,
        )
        return _json(200, document)

    @app.exception_handler(ApiError)
    def refused(error: ApiError) -> Response:
        return _json(error.status, error.body(), error.headers or None)

    @app.not_found
    def not_found(_: NotFoundError) -> Response:
        path = app.current_event.path
        allowed = ROUTES.get(path)
        if allowed is None:
            message = f"no route {path}; routes: {', '.join(ROUTES)}"
            return refused(ApiError(404, "not_found", message))
        method = app.current_event.http_method
        message = f"{method} is not allowed on {path}; use {allowed}"
        return refused(ApiError(405, "method_not_allowed", message, headers={"Allow": allowed}))

    @app.exception_handler(Exception)
    def fault(_: Exception) -> Response:
        telemetry.logger.exception("unhandled error")
        ids = app.current_event.raw_event.get("requestContext")  # requestId: every format
        request_id = ids.get("requestId") if isinstance(ids, dict) else None
        error = ApiError(500, "internal_error", "internal error; quote the request id")
        return _json(500, error.body(request_id))


class InferenceFunction:
    """The function as one object: its runtime (the model, loaded here), its telemetry and the
    handler over both, ``lambda_handler(event, context)``; with ``capture``, every answered
    ``/predict`` call goes to that sink as well."""

    def __init__(
        self,
        settings: Settings,
        telemetry: Telemetry | None = None,
        locator: ModelLocator | None = None,
        capture: Sink | None = None,
    ) -> None:
        self.telemetry = telemetry or Telemetry()
        self.runtime = Runtime(
            settings, locator, log=self.telemetry.logger, on_load=self.telemetry.use_model
        )
        self.lambda_handler = routes(self.runtime, self.telemetry, capture)

    @classmethod
    def from_env(cls, env: Mapping[str, str], capture: Sink | None = None) -> InferenceFunction:
        """The function configured by environment variables (docs/CONTRACTS.md)."""
        return cls(Settings.from_env(env), Telemetry.from_env(env), capture=capture)
