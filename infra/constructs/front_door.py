"""What the serving stack needs of a front door, whichever ``api.kind`` it is.

Each kind is its own construct: :class:`~infra.constructs.inference_api.InferenceApi` (REST
API), :class:`~infra.constructs.http_api.HttpInferenceApi` (HTTP API) and
:class:`~infra.constructs.function_url.FunctionUrlFrontDoor` (a Lambda function URL). Each
gives the URL clients call and its request metrics, which the alarms and the dashboard read
(:class:`~infra.constructs.serving_monitoring.ServingMonitoring`).
"""

from __future__ import annotations

import json
from typing import Protocol

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.lambda_common import retention
from onnxkit.config import OnnxKitConfig


class FrontDoor(Protocol):
    """A front door of the ``live`` alias: its URL (ending with ``/``) and its metrics."""

    @property
    def url(self) -> str:
        """The base URL clients call (the ``ApiUrl`` output)."""
        ...

    def metric_requests(self, period: Duration) -> cloudwatch.IMetric:
        """Requests received, summed per period."""
        ...

    def metric_client_errors(self, period: Duration) -> cloudwatch.IMetric:
        """4xx answers, summed per period."""
        ...

    def metric_server_errors(self, period: Duration) -> cloudwatch.IMetric:
        """5xx answers, summed per period."""
        ...

    def metric_latency(self, statistic: str, period: Duration) -> cloudwatch.IMetric:
        """Request latency in milliseconds (``p99``, ``p50``...): what the latency alarm reads."""
        ...

    def latency_graph(self, period: Duration) -> list[cloudwatch.IMetric]:
        """The latency lines of the dashboard."""
        ...


def access_log_group(scope: Construct, config: OnnxKitConfig) -> logs.LogGroup:
    """The API Gateway front doors' access-log group (``ApiAccessLogs``), kept as logs are."""
    return logs.LogGroup(
        scope,
        "ApiAccessLogs",
        retention=retention(config),
        removal_policy=RemovalPolicy.RETAIN if config.retained else RemovalPolicy.DESTROY,
    )


def access_log_format(fields: dict[str, str]) -> str:
    """One compact JSON line per request (no spaces: every byte is paid for per request).

    The API Gateway kinds log the same short keys: ``id`` the request id, ``ip`` the caller's
    address, ``who`` the SigV4 caller's IAM ARN, ``req`` method and path, ``st`` the status,
    ``ms`` the latency API Gateway saw, ``len`` the response's bytes, ``err`` why it failed.
    No time field: CloudWatch Logs stores a timestamp with every event (``@timestamp``).
    Values stay quoted: API Gateway writes ``-`` for an empty variable, which would break an
    unquoted number.
    """
    return json.dumps(fields, separators=(",", ":"))
