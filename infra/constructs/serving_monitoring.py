"""Alarms and a dashboard for the inference function and its API."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.constructs.inference_api import STAGE_NAME
from onnxkit.config import OnnxKitConfig


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
