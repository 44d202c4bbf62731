"""What the function tells operators: structured logs, EMF metrics, X-Ray traces.

:class:`Telemetry` holds the function's Powertools Logger, Metrics and Tracer, configured from
a mapping passed in (Lambda passes ``os.environ``), and wraps the routes' resolver with what
every request needs: the correlation ids in the log keys, the ``Latency``, ``ClientErrors`` and
``ServerErrors`` metrics (the routes add ``Instances``), one access-log line for each refusal
(successes at DEBUG), one EMF blob flushed per request, and the Lambda trace where X-Ray works.

:class:`FastEMFProvider` is Powertools' CloudWatch EMF provider made cheap enough for that
per-request flush. Powertools' own path validates the same name and unit again on every
``add_metric`` (and formats a debug message it then drops), and its flush re-reads two
environment variables, encodes with the stdlib ``json`` module and rebuilds the unchanged
default dimensions: together ~45 us, most of a one-row model run. This provider keeps
Powertools' metric set, its validation (the first time a name, unit and resolution are seen)
and its EMF document (``serialize_metric_set``), and changes only what is repeated per request.
Anything unusual (metadata, extra dimension sets, metrics switched off, a full metric set)
takes Powertools' own path.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.constants import MAX_METRICS

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
SERVICE = "onnxkit-inference"
NAMESPACE = "onnxkit"
_TRUE = frozenset({"1", "y", "yes", "t", "true", "on"})  # Powertools' truthy values


class Telemetry:
    """The function's logger, metrics (None: switched off) and tracer (None: no X-Ray here)."""

    def __init__(
        self,
        *,
        service: str = SERVICE,
        namespace: str = NAMESPACE,
        log_level: str | None = None,
        metrics: bool = True,
        tracing: bool = False,
    ) -> None:
        # Without a level, Powertools reads POWERTOOLS_LOG_LEVEL (default INFO); one Logger per
        # service and process: a second keeps the first one's handler and level. In Lambda the
        # function's application log level (AWS_LAMBDA_LOG_LEVEL) wins over both.
        # RFC 3339 timestamps: with the JSON log format Lambda reads a line's "level" only when
        # its "timestamp" is RFC 3339, and files any other line as INFO ("Log-level filtering",
        # docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html), so an
        # ERROR line would be dropped by an application log level of WARN or ERROR.
        self.logger = Logger(service=service, level=log_level, use_rfc3339=True)
        self.metrics = (
            Metrics(provider=FastEMFProvider(namespace=namespace, service=service))
            if metrics
            else None
        )
        self.tracer: Any = None
        if tracing:
            from aws_lambda_powertools import Tracer  # noqa: PLC0415  # aws_xray_sdk, botocore

            self.tracer = Tracer(service=service, patch_modules=["botocore"])
        self.invocations = 0  # per execution environment: cold_start is the first

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Telemetry:
        """Telemetry as Powertools' environment variables say (the service and namespace
        default to onnxkit's)."""
        return cls(
            service=env.get("POWERTOOLS_SERVICE_NAME") or SERVICE,
            namespace=env.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE,
            log_level=env.get("POWERTOOLS_LOG_LEVEL") or None,
            metrics=env.get("POWERTOOLS_METRICS_DISABLED", "").lower() not in _TRUE,
            # Only inside Lambda, unless switched off: creating a Tracer imports aws_xray_sdk
            # and botocore (~300 ms of cold start) even when it then disables itself.
            tracing=bool(env.get("LAMBDA_TASK_ROOT"))
            and env.get("POWERTOOLS_TRACE_DISABLED", "").lower() not in {"1", "true", "yes"},
        )

    def use_model(self, model: Any) -> None:
        """A model was loaded: its version becomes the metrics' dimension."""
        if self.metrics is not None:
            self.metrics.clear_default_dimensions()
            self.metrics.clear_metrics()
            self.metrics.set_default_dimensions(model_version=model.model_version)

    def count_instances(self, count: int) -> None:
        """The ``Instances`` metric of a served call."""
        if self.metrics is not None:
            self.metrics.add_metric(name="Instances", unit=MetricUnit.Count, value=count)

    def wrap(self, resolve: Handler) -> Handler:
        """``resolve`` with request ids, metrics, the access log and (in Lambda) the trace."""

        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            self._request_ids(event, context)
            started = time.perf_counter()
            response = resolve(event, context)
            self._record(event, response, (time.perf_counter() - started) * 1000)
            return response

        if self.metrics is not None:
            handle = self.metrics.log_metrics(handle)
        # X-Ray only where it can work; a disabled Tracer's wrapper would only cost time.
        if self.tracer is not None and not self.tracer.disabled:
            handle = self.tracer.capture_lambda_handler(handle)
        return handle

    def _request_ids(self, event: dict[str, Any], context: Any) -> None:
        # What inject_lambda_context(correlation_id_path=API_GATEWAY_REST) adds, without its
        # per-call jmespath search and context model (a third of a one-row request's overhead).
        self.invocations += 1
        if self.invocations <= 2:  # the static keys once, cold_start flips on the second call
            self.logger.append_keys(
                cold_start=self.invocations == 1,
                function_name=getattr(context, "function_name", None),
                function_memory_size=getattr(context, "memory_limit_in_mb", None),
                function_arn=getattr(context, "invoked_function_arn", None),
            )
        request_context = event.get("requestContext") if isinstance(event, dict) else None
        self.logger.append_keys(
            function_request_id=getattr(context, "aws_request_id", None),
            correlation_id=request_context.get("requestId")
            if isinstance(request_context, dict)
            else None,
        )

    def _record(self, event: dict[str, Any], response: dict[str, Any], elapsed_ms: float) -> None:
        status = int(response.get("statusCode", 500))
        metrics = self.metrics
        if metrics is not None:
            # Microseconds are the clock's useful resolution here; the float's other ~12 digits
            # were 14 of the EMF line's bytes, paid for on every request (docs/deploy.md).
            latency = round(elapsed_ms, 3)
            metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=latency)
            if status >= 500:
                metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
            elif status >= 400:
                metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
        # Successes log at DEBUG: a JSON line per request costs as much as the model run, and
        # even a suppressed call builds its keyword arguments, so ask the level first.
        logger = self.logger
        if status >= 400 or logger.log_level <= logging.DEBUG:
            log = logger.info if status >= 400 else logger.debug
            method, path = _method_and_path(event)
            log("request", method=method, path=path, status=status, latency_ms=round(elapsed_ms, 3))


def _method_and_path(event: Any) -> tuple[Any, Any]:
    """The request's method and path: REST proxy events (1.0) carry them at the top, payload
    2.0 events (HTTP API, function URL) in ``requestContext.http`` and ``rawPath``."""
    if not isinstance(event, dict):
        return None, None
    if "httpMethod" in event:
        return event.get("httpMethod"), event.get("path")
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    return (http.get("method") if isinstance(http, dict) else None), event.get("rawPath")


class FastEMFProvider(AmazonCloudWatchEMFProvider):
    """``AmazonCloudWatchEMFProvider`` that validates a metric's name and unit once and flushes
    with orjson, clearing only the metrics when the dimensions are the defaults."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # (name, unit, resolution) as passed -> (name, unit, resolution) as Powertools stores them
        self._validated: dict[tuple[Any, Any, Any], tuple[str, str, int]] = {}
        self._steady: dict[str, str] | None = None  # dimensions as flushed after a full reset
        self._service_added = False  # whether serialize adds "service" to those defaults

    def add_metric(self, name: str, unit: Any, value: float, resolution: Any = 60) -> None:
        """Powertools' ``add_metric``; a known metric's first value per flush skips checks."""
        known = self._validated.get((name, unit, resolution))
        kind = type(value)
        if (
            known is None
            or (kind is not float and kind is not int)
            or known[0] in self.metric_set
            or len(self.metric_set) >= MAX_METRICS - 1
        ):
            super().add_metric(name=name, unit=unit, value=value, resolution=resolution)
            stored = name.strip()
            metric = self.metric_set.get(stored)
            if metric is not None:
                key = (stored, metric["Unit"], metric["StorageResolution"])
                self._validated[(name, unit, resolution)] = key
            return
        stored_name, stored_unit, stored_resolution = known
        self.metric_set[stored_name] = {
            "Unit": stored_unit,
            "StorageResolution": stored_resolution,
            "Value": [float(value)],
        }

    def add_dimension(self, name: str, value: str) -> None:
        """Powertools' ``add_dimension``, after dropping a service dimension kept from the last
        flush: Powertools' reset would have dropped it, and serialize re-adds it last."""
        if self._service_added and self.dimension_set == self._steady:
            del self.dimension_set["service"]
        super().add_dimension(name=name, value=value)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        """Print the EMF blob, as Powertools does, then drop the metrics (dimensions stay)."""
        environ = os.environ  # either switch set (to anything): Powertools' flush decides
        if (
            not self.metric_set
            or self.metadata_set
            or self.dimension_sets
            or "POWERTOOLS_METRICS_DISABLED" in environ
            or "POWERTOOLS_DEV" in environ
        ):
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)
            if self.metric_set and is_metrics_disabled():
                # Powertools' switched-off flush keeps the metrics, and add_metric prints the
                # set anyway once a metric holds 100 values (then the next flush warns of none).
                self.clear_metrics()
            self._steady = None
            return
        print(orjson.dumps(self.serialize_metric_set()).decode())
        if self._steady is not None and self.dimension_set == self._steady:
            # What clear_metrics leaves: the defaults. A service dimension that serialize added
            # stays until a dimension is added (see add_dimension), sparing its re-adding.
            self.metric_set.clear()
            return
        self.clear_metrics()
        self._steady = dict(self.dimension_set)
        self._service_added = bool(self.service) and not self._steady.get("service")
        if self._service_added:
            self._steady["service"] = str(self.service)
