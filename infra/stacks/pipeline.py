"""The pipeline stack: notification topic, training job, Lambda steps, state machine, schedule."""

from __future__ import annotations

from aws_cdk import ArnFormat, CfnOutput, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.constructs.artifact_store import Artifacts
from infra.constructs.inference_function import inference_function_name
from infra.constructs.pipeline_step import PipelineStep
from infra.constructs.training_job import TrainingJob
from infra.constructs.training_workflow import TrainingWorkflow
from infra.nag import allow
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import layout
from onnxkit.contract import workflow as wf
from onnxkit.contract.layout import MODELS_PREFIX, SCHEDULED_TRAIN_PREFIX, TRAINING_PREFIX


class PipelineStack(Stack):
    """The training pipeline: topic, training job setup, Lambda steps, workflow, schedule."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: OnnxKitConfig,
        artifacts: Artifacts,
        inference_function: lambda_.IFunction,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.config, self.artifacts = config, artifacts
        self.add_stack_dependency(artifacts.stack)

        self.topic = sns.Topic(
            self,
            "NotificationTopic",
            display_name=f"onnxkit {config.env} pipeline",
            master_key=artifacts.key,
            enforce_ssl=True,
        )
        if config.alarms.email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarms.email))

        self.training = TrainingJob(self, "Training", config=config, artifacts=artifacts)
        bucket = artifacts.bucket_name(self)
        self.evaluate_fn = PipelineStep(
            self,
            "Evaluate",
            config=config,
            handler=wf.EVALUATE_HANDLER,
            environment={layout.ARTIFACT_BUCKET_ENV: bucket},
        ).function
        artifacts.grant(self.evaluate_fn, read=(TRAINING_PREFIX, MODELS_PREFIX))
        self.promote_fn = PipelineStep(
            self,
            "Promote",
            config=config,
            handler=wf.PROMOTE_HANDLER,
            environment={
                layout.ARTIFACT_BUCKET_ENV: bucket,
                layout.FUNCTION_NAME_ENV: inference_function.function_name,
                layout.ALIAS_NAME_ENV: layout.ALIAS_NAME,
            },
            timeout=Duration.minutes(5),
        ).function
        artifacts.grant(
            self.promote_fn, read=(TRAINING_PREFIX, MODELS_PREFIX), write=(MODELS_PREFIX,)
        )
        served = self.format_arn(
            service="lambda",
            resource="function",
            resource_name=inference_function_name(config),
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        allow(
            self.promote_fn,
            [
                "lambda:GetFunctionConfiguration",
                "lambda:UpdateFunctionConfiguration",
                "lambda:PublishVersion",
                "lambda:ListVersionsByFunction",
                "lambda:GetAlias",
                "lambda:UpdateAlias",
                "lambda:CreateAlias",
            ],
            [served, f"{served}:*"],
            reason="Versions and the live alias of the one inference function are addressed "
            "as <function-arn>:<qualifier>.",
        )

        self.workflow = TrainingWorkflow(
            self,
            "Workflow",
            config=config,
            artifacts=artifacts,
            training=self.training,
            evaluate_fn=self.evaluate_fn,
            promote_fn=self.promote_fn,
            topic=self.topic,
        )
        self.state_machine = self.workflow.state_machine
        self._schedule(config)

        CfnOutput(self, layout.STATE_MACHINE_OUTPUT, value=self.state_machine.state_machine_arn)
        CfnOutput(self, layout.TOPIC_OUTPUT, value=self.topic.topic_arn)

    def _schedule(self, config: OnnxKitConfig) -> None:
        if not config.retraining_schedule:
            return
        rule = events.Rule(
            self,
            "RetrainingSchedule",
            description=f"onnxkit {config.env}: scheduled retraining",
            schedule=events.Schedule.expression(config.retraining_schedule),
        )
        rule.add_target(
            targets.SfnStateMachine(
                self.state_machine,
                input=events.RuleTargetInput.from_object(
                    {
                        "train_s3_uri": self.artifacts.uri(self, SCHEDULED_TRAIN_PREFIX),
                        "hyperparameters": {},
                    }
                ),
            )
        )
