"""A Lambda function URL on the ``live`` alias (``api.kind=function_url``).

The cheapest front door: no gateway, no per-request fee beyond Lambda's own. ``AWS_IAM`` auth
(callers sign with SigV4 for service ``lambda``), buffered responses (6 MB each way). It has no
throttling of its own: the function's reserved concurrency bounds it (config requires one), and
Lambda answers 429 above it. The URL serves the alias, so a promotion or a rollback moves it too.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from onnxkit.config import OnnxKitConfig
from onnxkit.contract import layout


class FunctionUrlFrontDoor(Construct):
    """A function URL (``AWS_IAM``) on the alias, and its invocation metrics.
    A :class:`~infra.constructs.front_door.FrontDoor`."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: OnnxKitConfig, alias: lambda_.IAlias
    ) -> None:
        super().__init__(scope, construct_id)
        self.function_url = lambda_.FunctionUrl(
            self,
            "Url",
            function=alias,
            auth_type=lambda_.FunctionUrlAuthType.AWS_IAM,
            invoke_mode=lambda_.InvokeMode.BUFFERED,
        )
        # Lambda publishes a URL's metrics per function and per Resource (function:alias).
        function_name = layout.inference_function_name(config.env)
        self._dimensions = {
            "FunctionName": function_name,
            "Resource": f"{function_name}:{layout.ALIAS_NAME}",
        }

    @property
    def url(self) -> str:
        """``https://<url-id>.lambda-url.<region>.on.aws/``."""
        return self.function_url.url

    def _metric(self, name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name=name,
            dimensions_map=self._dimensions,
            statistic=statistic,
            period=period,
        )

    def metric_requests(self, period: Duration) -> cloudwatch.IMetric:
        """``UrlRequestCount`` of the alias's URL."""
        return self._metric("UrlRequestCount", "Sum", period)

    def metric_client_errors(self, period: Duration) -> cloudwatch.IMetric:
        """``Url4xxCount`` of the alias's URL."""
        return self._metric("Url4xxCount", "Sum", period)

    def metric_server_errors(self, period: Duration) -> cloudwatch.IMetric:
        """``Url5xxCount`` of the alias's URL."""
        return self._metric("Url5xxCount", "Sum", period)

    def metric_latency(self, statistic: str, period: Duration) -> cloudwatch.IMetric:
        """The alias's ``Duration``: Lambda documents ``UrlRequestLatency`` for the Average and
        Maximum statistics only, and percentiles are what the alarm needs; the dashboard shows
        ``UrlRequestLatency`` beside it (:meth:`latency_graph`)."""
        return self._metric("Duration", statistic, period)

    def latency_graph(self, period: Duration) -> list[cloudwatch.IMetric]:
        """``UrlRequestLatency`` (Average and Maximum) and the alias's p99 ``Duration``."""
        return [
            self._metric("UrlRequestLatency", "Average", period),
            self._metric("UrlRequestLatency", "Maximum", period),
            self.metric_latency("p99", period),
        ]
