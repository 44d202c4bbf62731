"""The REST API in front of the inference function's ``live`` alias (``api.kind=rest``)."""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.front_door import access_log_format, access_log_group
from infra.nag import acknowledge
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import api as contract_api

STAGE_NAME = "v1"
# JSON-schema (draft 4) of the /predict body; row-count limits stay in the function (413).
PREDICT_SCHEMA = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4,
    title="PredictBody",
    type=apigw.JsonSchemaType.OBJECT,
    required=["instances"],
    properties={
        "instances": apigw.JsonSchema(
            type=apigw.JsonSchemaType.ARRAY,
            min_items=1,
            items=apigw.JsonSchema(
                any_of=[
                    apigw.JsonSchema(type=apigw.JsonSchemaType.ARRAY),
                    apigw.JsonSchema(type=apigw.JsonSchemaType.OBJECT),
                ]
            ),
        )
    },
)


def rest_access_log_fields(*, iam: bool) -> dict[str, str]:
    """The stage's access log line ($context of REST APIs, "Variables for access logging for
    API Gateway"), in the keys of front_door.access_log_format. The caller is the SigV4 ARN,
    or the API key's id in api_key mode; ``err`` names API Gateway's own refusals
    (BAD_REQUEST_BODY, ACCESS_DENIED, THROTTLED, ...)."""
    return {
        "id": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "who": "$context.identity.userArn" if iam else "$context.identity.apiKeyId",
        "req": "$context.httpMethod $context.resourcePath",
        "st": "$context.status",
        "ms": "$context.responseLatency",
        "len": "$context.responseLength",
        "err": "$context.error.responseType",
    }


# Only the application/json request model validates bodies: other content types (CSV, and the
# binary .npy of contract_api.BINARY_MEDIA_TYPES) reach the function as they are.


class InferenceApi(Construct):
    """REST API in front of the alias (``api.kind=rest``): auth mode, throttling, body
    validation, access logs. A :class:`~infra.constructs.front_door.FrontDoor`."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: OnnxKitConfig, alias: lambda_.IAlias
    ) -> None:
        super().__init__(scope, construct_id)
        access_logs = access_log_group(self, config)
        iam_auth = config.api.auth_mode == "iam"
        api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"onnxkit-{config.env}",
            description=f"onnxkit {config.env} inference API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Passed to the function base64-encoded (isBase64Encoded), bytes intact.
            binary_media_types=list(contract_api.BINARY_MEDIA_TYPES),
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.DESTROY,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                throttling_rate_limit=config.api.throttle_rate_limit,
                throttling_burst_limit=config.api.throttle_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.custom(
                    access_log_format(rest_access_log_fields(iam=iam_auth))
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
                tracing_enabled=True,
            ),
            default_method_options=apigw.MethodOptions(
                authorization_type=apigw.AuthorizationType.IAM if iam_auth else None,
                api_key_required=None if iam_auth else True,
            ),
        )
        # Client errors keep the API's error shape even when API Gateway answers itself.
        error_template = {
            "application/json": json.dumps(
                {
                    "error": {
                        "code": "$context.error.responseType",
                        "message": "$context.error.messageString",
                        "details": [{"problem": "$context.error.validationErrorString"}],
                    }
                }
            ).replace('"$context.error.messageString"', "$context.error.messageString")
        }
        for response_type in (apigw.ResponseType.DEFAULT_4_XX, apigw.ResponseType.DEFAULT_5_XX):
            api.add_gateway_response(
                f"Gateway{response_type.response_type}",
                type=response_type,
                templates=error_template,
            )

        integration = apigw.LambdaIntegration(alias)
        validator = api.add_request_validator(
            "BodyValidator", validate_request_body=True, validate_request_parameters=True
        )
        model = api.add_model(
            "PredictBody",
            content_type="application/json",
            model_name="PredictBody",
            schema=PREDICT_SCHEMA,
        )
        # /explain takes /predict's bodies, and an optional ?class=: the same validator.
        explain_parameters = {
            f"method.request.querystring.{contract_api.EXPLAIN_CLASS_PARAMETER}": False
        }
        for path, parameters in (
            (contract_api.PREDICT_PATH, None),
            (contract_api.EXPLAIN_PATH, explain_parameters),
        ):
            api.root.add_resource(path.lstrip("/")).add_method(
                "POST",
                integration,
                request_validator=validator,
                request_models={"application/json": model},
                request_parameters=parameters,
            )
        for path in ("model", "health", "openapi.json"):
            api.root.add_resource(path).add_method("GET", integration)

        if not iam_auth:
            plan = api.add_usage_plan(
                "UsagePlan",
                name=f"onnxkit-{config.env}",
                throttle=apigw.ThrottleSettings(
                    rate_limit=config.api.throttle_rate_limit,
                    burst_limit=config.api.throttle_burst_limit,
                ),
                quota=apigw.QuotaSettings(limit=config.api.quota_per_day, period=apigw.Period.DAY)
                if config.api.quota_per_day
                else None,
            )
            plan.add_api_stage(stage=api.deployment_stage)
            plan.add_api_key(api.add_api_key("ApiKey", api_key_name=f"onnxkit-{config.env}"))
            acknowledge(
                api,
                "AwsSolutions-APIG4",
                "auth_mode=api_key was chosen in config: callers present a usage-plan "
                "API key instead of SigV4; the default mode is IAM.",
            )
        acknowledge(
            api,
            "AwsSolutions-COG4",
            "Callers authenticate with IAM SigV4 (or an API key by choice); this API has "
            "no end users, so no Cognito user pool.",
        )
        acknowledge(
            api.deployment_stage,
            "AwsSolutions-APIG3",
            "WAF costs more at rest than the whole kit; the stage is throttled and every "
            "method requires SigV4 or an API key.",
        )
        cw_role = api.node.find_child("CloudWatchRole")
        acknowledge(
            cw_role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
            "service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level logging role; this AWS managed policy is the "
            "documented way to let API Gateway write execution logs.",
        )
        self.rest_api = api

    @property
    def url(self) -> str:
        """The stage's invoke URL, ending with ``/``."""
        return self.rest_api.url

    def _metric(self, name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name=name,
            dimensions_map={"ApiName": self.rest_api.rest_api_name, "Stage": STAGE_NAME},
            statistic=statistic,
            period=period,
        )

    def metric_requests(self, period: Duration) -> cloudwatch.IMetric:
        """``Count`` of the stage."""
        return self._metric("Count", "Sum", period)

    def metric_client_errors(self, period: Duration) -> cloudwatch.IMetric:
        """``4XXError`` of the stage."""
        return self._metric("4XXError", "Sum", period)

    def metric_server_errors(self, period: Duration) -> cloudwatch.IMetric:
        """``5XXError`` of the stage."""
        return self._metric("5XXError", "Sum", period)

    def metric_latency(self, statistic: str, period: Duration) -> cloudwatch.IMetric:
        """``Latency`` of the stage (ms, API Gateway's own time included)."""
        return self._metric("Latency", statistic, period)

    def latency_graph(self, period: Duration) -> list[cloudwatch.IMetric]:
        """p99 and p50 ``Latency``."""
        return [self.metric_latency("p99", period), self.metric_latency("p50", period)]
