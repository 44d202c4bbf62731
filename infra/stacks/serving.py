"""The stateless serving stack: inference Lambda + ``live`` alias behind a REST API."""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.bundling import FunctionBundle, function_code
from infra.nag import acknowledge, allow
from infra.stacks.artifacts import MODELS_PREFIX, Artifacts
from onnxkit.config import OnnxKitConfig
from onnxkit.workflow import ALIAS_NAME

PYTHON_VERSION = "3.14"
RUNTIME = lambda_.Runtime.PYTHON_3_14
INFERENCE_HANDLER = "functions.inference.handler.lambda_handler"
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


_RETENTION = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS",
    30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS",
    150: "FIVE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR", 400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1827: "FIVE_YEARS", 3653: "TEN_YEARS",
}  # fmt: skip


def retention(config: OnnxKitConfig) -> logs.RetentionDays:
    """The config's log retention as CDK's enum (config validated the number)."""
    return logs.RetentionDays[_RETENTION[config.log_retention_days]]


def inference_function_name(config: OnnxKitConfig) -> str:
    """Fixed, so the pipeline's Promote role is scoped to it without a cross-stack export."""
    return f"onnxkit-{config.env}-inference"


def architecture(config: OnnxKitConfig) -> lambda_.Architecture:
    """The config's Lambda architecture."""
    return (
        lambda_.Architecture.ARM_64
        if config.function.architecture == "arm64"
        else (lambda_.Architecture.X86_64)
    )


def function_role(scope: Construct, construct_id: str, log_group: logs.ILogGroup) -> iam.Role:
    """A Lambda role that may write only to its own log group (no managed policy)."""
    role = iam.Role(scope, construct_id, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    allow(
        role,
        ["logs:CreateLogStream", "logs:PutLogEvents"],
        [log_group.log_group_arn, f"{log_group.log_group_arn}:log-stream:*"],
        reason="Lambda names the log streams it creates inside the function's own log group.",
    )
    return role


def acknowledge_function_role(role: iam.Role) -> None:
    """X-Ray tracing (added by the Function construct) needs Resource ``*``."""
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "X-Ray PutTraceSegments/PutTelemetryRecords accept no resource other than *.",
    )


class InferenceFunction(Construct):
    """The inference Lambda (bundled without Docker) and its ``live`` alias."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: OnnxKitConfig, artifacts: Artifacts
    ) -> None:
        super().__init__(scope, construct_id)
        log_removal = RemovalPolicy.RETAIN if config.retained else RemovalPolicy.DESTROY
        retention_days = retention(config)

        log_group = logs.LogGroup(
            self, "Logs", retention=retention_days, removal_policy=log_removal
        )
        role = function_role(self, "Role", log_group)
        artifacts.grant(role, read=(MODELS_PREFIX,))
        pointer_uri = artifacts.uri(self, f"{MODELS_PREFIX}{config.model_name}/production.json")
        bundle = FunctionBundle("inference", PYTHON_VERSION, config.function.architecture)
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=inference_function_name(config),
            description=f"onnxkit {config.env} inference ({config.model_name})",
            runtime=RUNTIME,
            architecture=architecture(config),
            handler=INFERENCE_HANDLER,
            code=function_code(self, bundle),
            memory_size=config.function.memory_mb,
            timeout=Duration.seconds(config.function.timeout_seconds),
            reserved_concurrent_executions=config.function.reserved_concurrency,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS
            if config.function.snapstart
            else None,
            environment={
                # Before the first promotion this is the production pointer (see CONTRACTS.md).
                "MODEL_URI": pointer_uri,
                "MODEL_SHA256": "",
                "MAX_INSTANCES": str(config.function.max_instances),
                "MODEL_NAME": config.model_name,
                "ORT_DISABLE_TELEMETRY": "1",
                "POWERTOOLS_SERVICE_NAME": "onnxkit-inference",
                "POWERTOOLS_METRICS_NAMESPACE": "onnxkit",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
        )
        acknowledge_function_role(role)
        acknowledge(
            self.function,
            "Annotation::@aws-cdk/aws-lambda:snapStartRequirePublish",
            "The live alias below serves a published version (current_version), and "
            "Promote publishes every later one.",
        )
        self.alias = lambda_.Alias(
            self, "LiveAlias", alias_name=ALIAS_NAME, version=self.function.current_version
        )


# The .npy body (functions/inference/handler.py NPY); onnxkit serve mirrors this list. Only the
# application/json request model validates bodies: other content types reach the function.
BINARY_MEDIA_TYPES = ("application/x-npy",)


class InferenceApi(Construct):
    """REST API in front of the alias: auth mode, throttling, body validation, access logs."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: OnnxKitConfig, alias: lambda_.IAlias
    ) -> None:
        super().__init__(scope, construct_id)
        access_logs = logs.LogGroup(
            self,
            "ApiAccessLogs",
            retention=retention(config),
            removal_policy=RemovalPolicy.RETAIN if config.retained else RemovalPolicy.DESTROY,
        )
        iam_auth = config.api.auth_mode == "iam"
        api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"onnxkit-{config.env}",
            description=f"onnxkit {config.env} inference API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Passed to the function base64-encoded (isBase64Encoded), bytes intact.
            binary_media_types=list(BINARY_MEDIA_TYPES),
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.DESTROY,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                throttling_rate_limit=config.api.throttle_rate_limit,
                throttling_burst_limit=config.api.throttle_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
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
        predict = api.root.add_resource("predict")
        predict.add_method(
            "POST",
            integration,
            request_validator=validator,
            request_models={"application/json": model},
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


class ServingMonitoring(Construct):
    """Alarms on 5xx, p99 latency, throttles and errors (to an SNS topic), and a dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: OnnxKitConfig,
        function: lambda_.IFunction,
        api: apigw.RestApi,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.alarms
        period = Duration.minutes(settings.period_minutes)
        # Encrypted with the kit's key, whose policy lets CloudWatch publish (artifacts stack).
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"onnxkit {config.env} alarms",
            enforce_ssl=True,
            master_key=key,
        )
        if settings.email:
            topic.add_subscription(subscriptions.EmailSubscription(settings.email))
        api_name = api.rest_api_name
        stage_dims = {"ApiName": api_name, "Stage": STAGE_NAME}
        api_5xx = cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name="5XXError",
            dimensions_map=stage_dims,
            statistic="Sum",
            period=period,
        )
        latency = cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name="Latency",
            dimensions_map=stage_dims,
            statistic="p99",
            period=period,
        )
        throttles = function.metric_throttles(period=period, statistic="Sum")
        errors = function.metric_errors(period=period, statistic="Sum")
        alarms = [
            ("Api5xx", api_5xx, settings.api_5xx_count, "5xx responses from the API"),
            ("ApiLatencyP99", latency, settings.p99_latency_ms, "p99 API latency (ms)"),
            ("LambdaThrottles", throttles, settings.throttle_count, "throttled invocations"),
            ("LambdaErrors", errors, settings.lambda_error_count, "function errors"),
        ]
        created = []
        for name, metric, threshold, what in alarms:
            alarm = cloudwatch.Alarm(
                self,
                name,
                metric=metric,
                threshold=threshold,
                evaluation_periods=settings.evaluation_periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=f"onnxkit {config.env}: {what} at or above {threshold}",
            )
            alarm.add_alarm_action(cw_actions.SnsAction(topic))
            created.append(alarm)
        self.alarms = created

        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"onnxkit-{config.env}")
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Requests and errors",
                left=[
                    cloudwatch.Metric(
                        namespace="AWS/ApiGateway",
                        metric_name="Count",
                        dimensions_map=stage_dims,
                        statistic="Sum",
                        period=period,
                    ),
                    api_5xx,
                    cloudwatch.Metric(
                        namespace="AWS/ApiGateway",
                        metric_name="4XXError",
                        dimensions_map=stage_dims,
                        statistic="Sum",
                        period=period,
                    ),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Latency (ms)",
                left=[
                    latency,
                    cloudwatch.Metric(
                        namespace="AWS/ApiGateway",
                        metric_name="Latency",
                        dimensions_map=stage_dims,
                        statistic="p50",
                        period=period,
                    ),
                    function.metric_duration(period=period, statistic="p99"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Lambda",
                left=[
                    function.metric_invocations(period=period, statistic="Sum"),
                    errors,
                    throttles,
                ],
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=created),
        )


class ServingStack(Stack):
    """Inference function, its ``live`` alias, the REST API, alarms and dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: OnnxKitConfig,
        artifacts: Artifacts,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.add_stack_dependency(artifacts.stack)
        inference = InferenceFunction(self, "Inference", config=config, artifacts=artifacts)
        self.function, self.alias = inference.function, inference.alias
        self.api = InferenceApi(self, "Api", config=config, alias=self.alias).rest_api
        self.monitoring = ServingMonitoring(
            self,
            "Monitoring",
            config=config,
            function=self.function,
            api=self.api,
            key=artifacts.key,
        )

        CfnOutput(self, "ApiUrl", value=self.api.url)
        CfnOutput(self, "FunctionName", value=self.function.function_name)
        CfnOutput(self, "LiveAliasArn", value=self.alias.function_arn)
        CfnOutput(self, "AuthMode", value=config.api.auth_mode)
