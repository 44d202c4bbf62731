"""The scheduled drift check: function, schedule, metrics' alarm and dashboard widgets.

Every ``drift.interval_hours`` an EventBridge rule invokes ``functions/monitor/handler.py``,
which compares the last ``drift.window_hours`` of the cloud capture with the live model's
reference statistics, writes ``drift/reports/<stamp>.json`` and ``drift/latest.json`` and
publishes ``DriftScore`` per feature, ``DriftedFeatures`` and ``CaptureRows`` with
PutMetricData in the environment's own namespace. The alarm on ``DriftedFeatures`` notifies the
serving alarm topic.
"""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.bundling import FunctionBundle, function_code
from infra.constructs.artifact_store import Artifacts
from infra.constructs.lambda_common import (
    PYTHON_VERSION,
    RUNTIME,
    acknowledge_function_role,
    architecture,
    function_role,
    log_options,
    retention,
)
from infra.nag import allow
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import layout

DRIFT_HANDLER = "functions.monitor.handler.lambda_handler"


def drift_settings(config: OnnxKitConfig) -> dict[str, object]:
    """The function's ``DRIFT_SETTINGS``: what ``functions.monitor.check.Settings`` reads."""
    drift = config.drift
    return {
        "namespace": layout.drift_metric_namespace(config.env),
        "window_hours": drift.window_hours,
        "min_rows": drift.min_rows,
        "max_rows": drift.max_rows,
        "thresholds": drift.thresholds().to_dict(),
    }


class DriftMonitor(Construct):
    """The drift function on a schedule, least privilege, an alarm and two dashboard widgets."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: OnnxKitConfig,
        artifacts: Artifacts,
        topic: sns.ITopic,
        dashboard: cloudwatch.Dashboard,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.drift
        namespace = layout.drift_metric_namespace(config.env)
        removal = RemovalPolicy.RETAIN if config.retained else RemovalPolicy.DESTROY
        log_group = logs.LogGroup(self, "Logs", retention=retention(config), removal_policy=removal)
        role = function_role(self, "Role", log_group)
        # The capture to read, the live model's pointer and files; its reports to write.
        artifacts.grant(
            role,
            read=(layout.CLOUD_CAPTURE_PREFIX, layout.model_prefix(config.model_name)),
            write=(layout.DRIFT_PREFIX,),
        )
        allow(
            role,
            ["cloudwatch:PutMetricData"],
            ["*"],
            reason="PutMetricData has no resource type; the condition limits the role to the "
            "drift namespace of this environment.",
            conditions={"StringEquals": {"cloudwatch:namespace": namespace}},
        )
        environment = {
            layout.ARTIFACT_BUCKET_ENV: artifacts.bucket_name(self),
            layout.MODEL_NAME_ENV: config.model_name,
            layout.DRIFT_SETTINGS_ENV: json.dumps(drift_settings(config), sort_keys=True),
        }
        if settings.retrain_on_drift:
            machine = Stack.of(self).format_arn(
                service="states",
                resource="stateMachine",
                resource_name=layout.state_machine_name(config.env),
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            # Built from the name, not referenced: the pipeline stack depends on this one.
            allow(role, ["states:StartExecution", "states:ListExecutions"], [machine])
            environment[layout.TRAINING_STATE_MACHINE_ENV] = machine
        bundle = FunctionBundle("monitor", PYTHON_VERSION, config.function.architecture)
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=layout.drift_function_name(config.env),
            description=f"onnxkit {config.env} scheduled drift check ({config.model_name})",
            runtime=RUNTIME,
            architecture=architecture(config),
            handler=DRIFT_HANDLER,
            code=function_code(self, bundle),
            # 50,000 records of a few dozen features decode to a few hundred MB of objects.
            memory_size=1024,
            timeout=Duration.minutes(5),
            role=role,
            log_group=log_group,
            # One run per interval: its REPORT line (duration, memory) is worth keeping.
            **log_options("INFO"),
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
        )
        acknowledge_function_role(role)

        period = Duration.hours(settings.interval_hours)
        self.rule = events.Rule(
            self,
            "Schedule",
            description=f"onnxkit {config.env}: drift check every {settings.interval_hours} h",
            schedule=events.Schedule.rate(period),
        )
        # The scheduled event's "time" is the check's time: a retry writes the same report.
        self.rule.add_target(targets.LambdaFunction(self.function, retry_attempts=2))

        # One data point per check: its period is the interval, any statistic reads it.
        drifted, rows = (
            cloudwatch.Metric(
                namespace=namespace,
                metric_name=name,
                dimensions_map={layout.MODEL_DIMENSION: config.model_name},
                statistic="Maximum",
                period=period,
            )
            for name in (layout.DRIFTED_METRIC, layout.CAPTURE_ROWS_METRIC)
        )
        # A check without enough data publishes no DriftedFeatures: missing is not breaching.
        watched = {
            "DriftAlarm": (
                drifted,
                f"captured requests of {config.model_name} drifted from its training data "
                f"(onnxkit drift --env {config.env})",
            ),
            "ErrorsAlarm": (
                self.function.metric_errors(period=period, statistic="Sum"),
                "the drift check failed (its log group has the one-line reason)",
            ),
        }
        alarms = []
        for name, (metric, what) in watched.items():
            alarm = metric.create_alarm(
                self,
                name,
                alarm_description=f"onnxkit {config.env}: {what}",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(cw_actions.SnsAction(topic))
            alarms.append(alarm)
        self.alarm, self.errors_alarm = alarms

        seconds = int(period.to_seconds())
        scores = cloudwatch.MathExpression(
            # One line per feature, however many the live model has.
            expression=(
                f"SEARCH('{{{namespace},{layout.MODEL_DIMENSION},{layout.FEATURE_DIMENSION}}} "
                f'MetricName="{layout.DRIFT_SCORE_METRIC}" '
                f"{layout.MODEL_DIMENSION}=\"{config.model_name}\"', 'Maximum', {seconds})"
            ),
            using_metrics={},
            label="",
            period=period,
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Drift score per feature (above 1: drifted)",
                left=[scores],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=1, label="limit")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Drifted features and captured rows per check",
                left=[drifted],
                right=[rows],
                width=8,
            ),
            cloudwatch.AlarmStatusWidget(title="Drift alarms", alarms=alarms, width=4),
        )
