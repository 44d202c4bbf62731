"""Alarms on batch scoring: failed or timed-out runs, and scoring function errors."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from onnxkit.config import OnnxKitConfig


class ScoringMonitoring(Construct):
    """An SNS topic (the kit's key) told when a run fails, times out or the function errs.

    A Distributed Map that fails beyond its tolerated percentage fails its execution, so the
    failed-executions alarm is also the failed-map-run alarm.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: OnnxKitConfig,
        state_machine: sfn.StateMachine,
        function: lambda_.IFunction,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        period = Duration.minutes(config.alarms.period_minutes)
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"onnxkit {config.env} batch scoring alarms",
            enforce_ssl=True,
            master_key=key,
        )
        if config.alarms.email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarms.email))
        metrics = {
            "RunsFailed": state_machine.metric_failed(period=period, statistic="Sum"),
            "RunsTimedOut": state_machine.metric_timed_out(period=period, statistic="Sum"),
            "RunsAborted": state_machine.metric_aborted(period=period, statistic="Sum"),
            "FunctionErrors": function.metric_errors(period=period, statistic="Sum"),
        }
        action = cw_actions.SnsAction(self.topic)
        self.alarms = {}
        for name, metric in metrics.items():
            alarm = metric.create_alarm(
                self,
                name,
                alarm_description=f"onnxkit {config.env} batch scoring: {name}",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(action)
            self.alarms[name] = alarm
