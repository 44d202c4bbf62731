"""The training state machine built from onnxkit.contract.workflow.

Train -> Evaluate -> QualityGate -> Register -> Promote -> Notify, every task caught into
NotifyFailure -> Failed. State names, result paths and payloads come from onnxkit.contract.workflow,
the same module the local runner walks.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Size, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.constructs.artifact_store import Artifacts
from infra.constructs.lambda_common import retention
from infra.constructs.training_job import TrainingJob, sklearn_image
from infra.nag import acknowledge, acknowledge_resources, allow
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import workflow as wf
from onnxkit.contract.layout import (
    CHECKPOINT_PREFIX,
    PACKAGE_EXECUTION_KEY,
    TRAINING_PREFIX,
    state_machine_name,
)
from onnxkit.contract.metrics import metric_definitions

SCRIPT = "train.py"
# Step Functions creates this EventBridge rule to learn when a training job ends (.sync).
SYNC_RULE = "StepFunctionsGetEventsForSageMakerTrainingJobsRule"


class _UngrantedLocation(tasks.S3Location):
    """A placeholder S3 location whose binding adds no IAM statement (replaced after render)."""

    def bind(
        self,
        task: tasks.ISageMakerTask,
        *,
        for_reading: bool | None = None,
        for_writing: bool | None = None,
    ) -> tasks.S3LocationConfig:
        """Bind without granting anything."""
        return tasks.S3LocationConfig(uri="s3://replaced-after-render/")


def _jsonata(expression: str) -> str:
    return "{% " + expression + " %}"


class TrainingWorkflow(Construct):
    """The state machine of onnxkit.contract.workflow: states, transitions, catches, logs, IAM."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: OnnxKitConfig,
        artifacts: Artifacts,
        training: TrainingJob,
        evaluate_fn: lambda_.IFunction,
        promote_fn: lambda_.IFunction,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config, self.artifacts, self.stack = config, artifacts, Stack.of(self)
        self.training_role, self.source, self.image = (
            training.role,
            training.source,
            (training.image),
        )
        self.evaluate_fn, self.promote_fn, self.topic = evaluate_fn, promote_fn, topic
        removal = RemovalPolicy.RETAIN if config.retained else RemovalPolicy.DESTROY

        definition = self._definition()
        log_group = logs.LogGroup(self, "Logs", retention=retention(config), removal_policy=removal)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name(config.env),
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            logs=sfn.LogOptions(
                destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            tracing_enabled=True,
            timeout=Duration.minutes(config.training.max_wait + 60),
        )
        self._grant_training(self.state_machine)
        artifacts.grant(self.state_machine, read=(TRAINING_PREFIX,))
        # Publishing to the KMS-encrypted topic.
        allow(self.state_machine, ["kms:GenerateDataKey", "kms:Decrypt"], [artifacts.key.key_arn])
        role = self.state_machine.role
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "Tracing and execution logging of the state machine: the X-Ray actions and the "
            "CloudWatch Logs delivery actions accept no resource other than *.",
        )
        acknowledge_resources(
            role,
            [f"{fn.function_arn}:*" for fn in (evaluate_fn, promote_fn)],
            "LambdaInvoke grants the step's function and its versions "
            "(<arn>:<qualifier>); only these two functions.",
        )
        acknowledge_resources(
            role,
            [self.model_packages],
            "Register creates model packages, whose ARNs end in a version "
            "number, inside this kit's one model package group.",
        )

    def _grant_training(self, machine: sfn.StateMachine) -> None:
        """What the .sync SageMaker integration needs, scoped to this kit's jobs and role."""
        jobs = self.stack.format_arn(
            service="sagemaker",
            resource="training-job",
            resource_name=f"{self.config.model_name}-*",
        )
        allow(
            machine,
            [
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
                "sagemaker:AddTags",
            ],
            [jobs],
            reason="Each run names its training job <model_name>-<uuid>; the name prefix "
            "scopes the grant to this kit's jobs.",
        )
        allow(
            machine,
            ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            [self.stack.format_arn(service="events", resource="rule", resource_name=SYNC_RULE)],
        )
        allow(
            machine,
            ["iam:PassRole"],
            [self.training_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )

    def _definition(self) -> sfn.IChainable:
        config = self.config
        states: dict[str, Any] = {}
        states[wf.PREPARE] = sfn.Pass.jsonata(
            self,
            wf.PREPARE,
            comment=wf.step(wf.PREPARE).description,
            outputs=self._prepare_expression(),
        )
        states[wf.TRAIN] = self._train_state()
        states[wf.EVALUATE] = tasks.LambdaInvoke(
            self,
            wf.EVALUATE,
            comment=wf.step(wf.EVALUATE).description,
            lambda_function=self.evaluate_fn,
            payload=sfn.TaskInput.from_object(
                {
                    "model_name": config.model_name,
                    "candidate_artifact_uri": sfn.JsonPath.string_at(wf.TRAINED_ARTIFACT_PATH),
                    "gate": config.gate.model_dump(),
                }
            ),
            payload_response_only=True,
            result_path=wf.EVALUATION_PATH,
            retry_on_service_exceptions=True,
        )
        states[wf.QUALITY_GATE] = sfn.Choice(
            self, wf.QUALITY_GATE, comment=wf.step(wf.QUALITY_GATE).description
        )
        states[wf.REGISTER] = self._register_state()
        states[wf.PROMOTE] = tasks.LambdaInvoke(
            self,
            wf.PROMOTE,
            comment=wf.step(wf.PROMOTE).description,
            lambda_function=self.promote_fn,
            payload=sfn.TaskInput.from_object(
                {
                    key: sfn.JsonPath.object_at(path)
                    if key in wf.PROMOTE_EVENT_OBJECTS
                    else sfn.JsonPath.string_at(path)
                    for key, path in wf.PROMOTE_EVENT_PATHS.items()
                }
            ),
            payload_response_only=True,
            result_path=wf.PROMOTION_PATH,
            retry_on_service_exceptions=True,
        )
        states[wf.NOTIFY_PROMOTED] = self._notify(
            wf.NOTIFY_PROMOTED,
            "promoted",
            {
                "model_version": sfn.JsonPath.string_at(f"{wf.PROMOTION_PATH}.model_version"),
                "lambda_version": sfn.JsonPath.string_at(f"{wf.PROMOTION_PATH}.lambda_version"),
                "metrics": sfn.JsonPath.object_at(f"{wf.EVALUATION_PATH}.candidate.metrics"),
            },
        )
        states[wf.NOTIFY_REJECTED] = self._notify(
            wf.NOTIFY_REJECTED,
            "rejected",
            {
                "model_version": sfn.JsonPath.string_at(
                    f"{wf.EVALUATION_PATH}.candidate.model_version"
                ),
                "reasons": sfn.JsonPath.list_at(f"{wf.EVALUATION_PATH}.reasons"),
            },
        )
        states[wf.NOTIFY_FAILURE] = self._notify(
            wf.NOTIFY_FAILURE,
            "failed",
            {
                "error": sfn.JsonPath.object_at(wf.ERROR_PATH),
            },
        )
        states[wf.PROMOTED] = sfn.Succeed(
            self, wf.PROMOTED, comment=wf.step(wf.PROMOTED).description
        )
        states[wf.REJECTED] = sfn.Succeed(
            self, wf.REJECTED, comment=wf.step(wf.REJECTED).description
        )
        states[wf.FAILED] = sfn.Fail(
            self,
            wf.FAILED,
            comment=wf.step(wf.FAILED).description,
            error_path=f"{wf.ERROR_PATH}.Error",
            cause_path=f"{wf.ERROR_PATH}.Cause",
        )

        # Wire transitions and catches exactly as the workflow spec says.
        for step in wf.STEPS:
            state = states[step.name]
            if step.kind == "choice":
                assert step.when_true is not None and step.otherwise is not None
                state.when(
                    sfn.Condition.boolean_equals(wf.GATE_CONDITION_PATH, True),
                    states[step.when_true],
                )
                state.otherwise(states[step.otherwise])
                continue
            if step.on_error is not None:
                if step.name == wf.REGISTER:  # a JSONata state says where the error goes
                    state.add_catch(
                        states[step.on_error],
                        errors=[sfn.Errors.ALL],
                        outputs=_jsonata("$merge([$states.input, {'error': $states.errorOutput}])"),
                    )
                else:
                    # NotifyFailure keeps the original error and records its own apart.
                    path = (
                        "$.notification_error"
                        if step.name == wf.NOTIFY_FAILURE
                        else (wf.ERROR_PATH)
                    )
                    state.add_catch(
                        states[step.on_error], errors=[sfn.Errors.ALL], result_path=path
                    )
            if step.retried_errors and hasattr(state, "add_retry"):
                state.add_retry(
                    errors=list(step.retried_errors),
                    max_attempts=3,
                    interval=Duration.seconds(5),
                    backoff_rate=2,
                )
            if step.next is not None:
                state.next(states[step.next])
        start: sfn.IChainable = states[wf.START_AT]
        return start

    def _prepare_expression(self) -> str:
        config = self.config
        defaults = {
            k: v
            for k, v in config.training.job_hyperparameters(config.model_name).items()
            if k != "model_name"
        }
        fixed = {
            "model_name": config.model_name,
            "sagemaker_program": SCRIPT,
            "sagemaker_submit_directory": self.source.s3_object_url,
            "sagemaker_region": config.region,
            "sagemaker_container_log_level": "20",
        }

        def source(name: str, uri: str) -> str:
            return (
                f"{{'ChannelName': '{name}', 'DataSource': {{'S3DataSource': {{"
                f"'S3DataType': 'S3Prefix', 'S3DataDistributionType': 'FullyReplicated', "
                f"'S3Uri': {uri}}}}}}}"
            )

        checkpoint = self.artifacts.uri(self, CHECKPOINT_PREFIX)
        return _jsonata(
            "("
            "$requested := $states.input.hyperparameters;"
            "$given := $type($requested) = 'object' ? $merge([{}, $each($requested, "
            "function($v, $k) {{$k: $type($v) = 'string' ? $v : $string($v)}})]) : {};"
            f"$job := '{config.model_name}-' & $uuid();"
            "$merge([$states.input, {'prepared': {"
            "'job_name': $job,"
            f"'hyperparameters': $merge([{json.dumps(defaults)}, $given, {json.dumps(fixed)}]),"
            f"'channels': $append([{source('train', '$states.input.train_s3_uri')}], "
            "$exists($states.input.validation_s3_uri) ? "
            f"[{source('validation', '$states.input.validation_s3_uri')}] : []),"
            f"'checkpoint_uri': '{checkpoint}' & $job & '/'"
            "}}])"
            ")"
        )

    def _train_state(self) -> sfn.CustomState:
        """SageMakerCreateTrainingJob, plus what the construct cannot express.

        The construct renders the task (image, MetricDefinitions, output, resources, tags,
        .sync resource); we then add managed spot, checkpointing and whole-object paths for
        the hyperparameters and channels that Prepare computed.
        """
        config, training = self.config, self.config.training
        task = tasks.SageMakerCreateTrainingJob(
            self,
            "TrainTemplate",
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            training_job_name=sfn.JsonPath.string_at(f"{wf.PREPARED_PATH}.job_name"),
            role=self.training_role,
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=tasks.DockerImage.from_registry(self.image),
                training_input_mode=tasks.InputMode.FILE,
                metric_definitions=[
                    tasks.MetricDefinition(name=m["Name"], regex=m["Regex"])
                    for m in metric_definitions()
                ],
            ),
            # The channels come from Prepare ("InputDataConfig.$" below); the output location
            # is replaced below too. The construct's own S3 locations would grant the training
            # role s3:GetObject/ListBucket/PutObject on "*", hence a location that grants nothing.
            output_data_config=tasks.OutputDataConfig(s3_output_location=_UngrantedLocation()),
            resource_config=tasks.ResourceConfig(
                instance_count=training.instance_count,
                instance_type=ec2.InstanceType(training.instance_type.removeprefix("ml.")),
                volume_size=Size.gibibytes(training.volume_size_gb),
            ),
            stopping_condition=tasks.StoppingCondition(
                max_runtime=Duration.minutes(training.max_runtime_minutes)
            ),
            hyperparameters={"placeholder": "replaced below"},
            tags={
                "onnxkit:execution": sfn.JsonPath.string_at("$$.Execution.Name"),
                "onnxkit:env": config.env,
            },
        )
        rendered: dict[str, Any] = dict(task.to_state_json())
        for key in ("Next", "End", "Comment"):
            rendered.pop(key, None)
        parameters = dict(rendered["Parameters"])
        parameters.pop("HyperParameters")
        parameters["OutputDataConfig"] = {
            "S3OutputPath": self.artifacts.uri(self, TRAINING_PREFIX),
            "KmsKeyId": self.artifacts.key.key_arn,
        }
        parameters["HyperParameters.$"] = f"{wf.PREPARED_PATH}.hyperparameters"
        parameters["InputDataConfig.$"] = f"{wf.PREPARED_PATH}.channels"
        stopping = {"MaxRuntimeInSeconds": training.max_runtime_minutes * 60}
        if training.use_spot:
            parameters["EnableManagedSpotTraining"] = True
            stopping["MaxWaitTimeInSeconds"] = training.max_wait * 60
        parameters["StoppingCondition"] = stopping
        if training.checkpointing:
            parameters["CheckpointConfig"] = {"S3Uri.$": f"{wf.PREPARED_PATH}.checkpoint_uri"}
        rendered["Parameters"] = parameters
        rendered["ResultSelector"] = {
            "TrainingJobName.$": "$.TrainingJobName",
            "TrainingJobArn.$": "$.TrainingJobArn",
            "ModelArtifacts.$": "$.ModelArtifacts",
        }
        rendered["ResultPath"] = wf.TRAINING_PATH
        rendered["Comment"] = wf.step(wf.TRAIN).description
        return sfn.CustomState(self, wf.TRAIN, state_json=rendered)

    def _register_state(self) -> tasks.CallAwsService:
        config = self.config
        group = self.artifacts.model_package_group_name
        self.model_packages = self.stack.format_arn(
            service="sagemaker", resource="model-package", resource_name=f"{group}/*"
        )
        candidate = "$states.input.evaluation.candidate"
        # Evaluate built the version's compact card (onnxkit/contract/card.py), within
        # SageMaker's limits with one entry to spare for the execution's name.
        metadata = _jsonata(
            "$merge([$states.input.evaluation.package_metadata, "
            f"{{'{PACKAGE_EXECUTION_KEY}': $states.context.Execution.Name}}])"
        )
        inference_image = sklearn_image(
            config.region, config.training.framework_version, "inference"
        )
        return tasks.CallAwsService.jsonata(
            self,
            wf.REGISTER,
            comment=wf.step(wf.REGISTER).description,
            service="sagemaker",
            action="createModelPackage",
            iam_action="sagemaker:CreateModelPackage",
            iam_resources=[
                self.stack.format_arn(
                    service="sagemaker", resource="model-package-group", resource_name=group
                ),
                self.model_packages,
            ],
            parameters={
                "ModelPackageGroupName": group,
                "ModelPackageDescription": _jsonata(
                    f"'{config.model_name} ' & {candidate}.model_version & ' from ' & "
                    "$states.context.Execution.Name"
                ),
                "ModelApprovalStatus": "Approved",
                "InferenceSpecification": {
                    "Containers": [
                        {
                            "Image": inference_image,
                            "ModelDataUrl": _jsonata(f"{candidate}.artifact_uri"),
                        }
                    ],
                    "SupportedContentTypes": ["application/json"],
                    "SupportedResponseMIMETypes": ["application/json"],
                },
                "CustomerMetadataProperties": metadata,
            },
            outputs=_jsonata(
                "$merge([$states.input, {'registration': {'model_package_arn': "
                "$states.result.ModelPackageArn}}])"
            ),
        )

    def _notify(self, name: str, status: str, fields: dict[str, Any]) -> tasks.SnsPublish:
        return tasks.SnsPublish(
            self,
            name,
            comment=wf.step(name).description,
            topic=self.topic,
            subject=f"onnxkit {self.config.env}: training run {status}",
            message=sfn.TaskInput.from_object(
                {
                    "status": status,
                    "env": self.config.env,
                    "model_name": self.config.model_name,
                    "execution": sfn.JsonPath.execution_name,
                    **fields,
                }
            ),
            result_path=wf.NOTIFICATION_PATH,
        )
