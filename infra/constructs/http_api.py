"""The HTTP API in front of the inference function's ``live`` alias (``api.kind=http``).

API Gateway's cheaper API type: payload format 2.0 to the function, IAM authorization on every
route, throttling on the ``$default`` stage's routes and JSON access logs. It has no API keys,
usage plans or request validation: the function checks every body itself (4xx), as it does
behind the REST API. Besides the five routes, the ``$default`` route (IAM too) sends any other
method or path to the function, so a wrong one gets the API's own 404/405 error body rather
than API Gateway's ``{"message": "Not Found"}``.
"""

from __future__ import annotations

import jsii
from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.front_door import access_log_format, access_log_group
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import api as contract_api

# One JSON line per request: who called what, and what came back ($context of HTTP APIs,
# "Customize HTTP API access logs" in the API Gateway developer guide). Short keys (see
# front_door.access_log_format): this line is half of what an `http` request logs.
# `req` is method and path rather than $context.routeKey: the same text for the four routes,
# and what was asked for when the $default route answers 404/405.
ACCESS_LOG_FIELDS = {
    "id": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "who": "$context.identity.userArn",
    "req": "$context.httpMethod $context.path",
    "st": "$context.status",
    "ms": "$context.responseLatency",
    "len": "$context.responseLength",
    "err": "$context.integrationErrorMessage",  # why a 5xx was API Gateway's, not ours
}
ROUTES: dict[str, apigwv2.HttpMethod] = {
    contract_api.PREDICT_PATH: apigwv2.HttpMethod.POST,
    contract_api.EXPLAIN_PATH: apigwv2.HttpMethod.POST,
    contract_api.MODEL_PATH: apigwv2.HttpMethod.GET,
    contract_api.HEALTH_PATH: apigwv2.HttpMethod.GET,
    contract_api.OPENAPI_PATH: apigwv2.HttpMethod.GET,
}


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogs:
    """Where and in which format the stage writes its access logs."""

    def __init__(self, destination: apigwv2.IAccessLogDestination) -> None:
        self._destination = destination

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(access_log_format(ACCESS_LOG_FIELDS))


class HttpInferenceApi(Construct):
    """An HTTP API (payload 2.0, IAM auth, route throttling, access logs) in front of the alias.
    A :class:`~infra.constructs.front_door.FrontDoor`."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: OnnxKitConfig, alias: lambda_.IAlias
    ) -> None:
        super().__init__(scope, construct_id)
        integration = integrations.HttpLambdaIntegration(
            "Live",
            alias,
            payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
            timeout=Duration.seconds(min(config.function.timeout_seconds + 1, 30)),
        )
        api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"onnxkit-{config.env}",
            description=f"onnxkit {config.env} inference API (HTTP API)",
            create_default_stage=False,
            default_authorizer=authorizers.HttpIamAuthorizer(),
            default_integration=integration,  # the $default route: our 404/405 bodies
        )
        for path, method in ROUTES.items():
            api.add_routes(path=path, methods=[method], integration=integration)
        access_logs = access_log_group(self, config)
        self.stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.api.throttle_rate_limit,
                burst_limit=config.api.throttle_burst_limit,
            ),
            access_log_settings=_AccessLogs(apigwv2.LogGroupLogDestination(access_logs)),
        )
        self.http_api = api

    @property
    def url(self) -> str:
        """``https://<api-id>.execute-api.<region>.amazonaws.com/`` (the ``$default`` stage)."""
        return f"{self.http_api.api_endpoint}/"

    def metric_requests(self, period: Duration) -> cloudwatch.IMetric:
        """``Count`` of the API."""
        return self.http_api.metric_count(period=period, statistic="Sum")

    def metric_client_errors(self, period: Duration) -> cloudwatch.IMetric:
        """``4xx`` of the API."""
        return self.http_api.metric_client_error(period=period, statistic="Sum")

    def metric_server_errors(self, period: Duration) -> cloudwatch.IMetric:
        """``5xx`` of the API."""
        return self.http_api.metric_server_error(period=period, statistic="Sum")

    def metric_latency(self, statistic: str, period: Duration) -> cloudwatch.IMetric:
        """``Latency`` of the API (ms, API Gateway's own time included)."""
        return self.http_api.metric_latency(period=period, statistic=statistic)

    def latency_graph(self, period: Duration) -> list[cloudwatch.IMetric]:
        """p99 and p50 ``Latency``."""
        return [self.metric_latency("p99", period), self.metric_latency("p50", period)]
