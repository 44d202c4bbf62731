"""Alarms and a dashboard for the inference function and its front door.

The front door's own metrics (requests, 4xx, 5xx, latency) are whichever ``api.kind`` serves:
the REST API's stage, the HTTP API's, or the function URL's invocation metrics
(:class:`~infra.constructs.front_door.FrontDoor`); throttles and errors are the function's.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.constructs.front_door import FrontDoor
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
        front_door: FrontDoor,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.alarms
        period = Duration.minutes(settings.period_minutes)
        # Encrypted with the kit's key, whose policy lets CloudWatch publish (artifacts stack).
        self.topic = topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"onnxkit {config.env} alarms",
            enforce_ssl=True,
            master_key=key,
        )
        self.topic = topic
        if settings.email:
            topic.add_subscription(subscriptions.EmailSubscription(settings.email))
        api_5xx = front_door.metric_server_errors(period)
        latency = front_door.metric_latency("p99", period)
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

        self.dashboard = dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"onnxkit-{config.env}"
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Requests and errors",
                left=[
                    front_door.metric_requests(period),
                    api_5xx,
                    front_door.metric_client_errors(period),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Latency (ms)",
                left=[
                    *front_door.latency_graph(period),
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
