"""The batch scoring state machine: Plan -> Score (a Distributed Map over parts) -> Summarize.

JSONata throughout. ``Plan`` pins the live model and writes the parts (``plan.json``); the map
reads them with an ``ItemReader``, batches ``parts_per_child`` of them (under Step Functions'
256 KB input limit) with the pinned model in ``BatchInput``, runs Express children that invoke
the scoring function, and writes the children's answers with a ``ResultWriter`` into the run's
``map/`` folder. A map that fails beyond its tolerated failure percentage fails the execution
at the map, so ``RedriveExecution`` re-runs just the failed children and then summarizes.
The shapes are :mod:`onnxkit.contract.scoring`'s.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.constructs.artifact_store import Artifacts
from infra.constructs.lambda_common import retention
from infra.nag import acknowledge, acknowledge_resources, allow, flatten
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import layout
from onnxkit.contract import scoring as contract

# Step Functions' limit on a state's input: the batch of parts plus BatchInput.
MAX_INPUT_BYTES_PER_BATCH = 256 * 1024
# Throttled or briefly failing invocations are retried; a ScoringError (bad input) is not.
RETRIED_ERRORS = (
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
)


def _jsonata(expression: str) -> str:
    return "{% " + expression + " %}"


class _RunFolderReader(sfn.S3JsonItemReader):
    """The plan's ItemReader, without CDK's ``s3:GetObject`` on the whole bucket.

    The state machine's read grant is its run folders' (``scoring/output/``), added below."""

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        """No bucket-wide statement."""
        return []


class _RunFolderWriter(sfn.ResultWriterV2):
    """The map's ResultWriter, without CDK's ``s3:PutObject`` on the whole bucket."""

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        """No bucket-wide statement."""
        return []


class ScoringWorkflow(Construct):
    """The scoring state machine, its log group and its (prefix-scoped) permissions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: OnnxKitConfig,
        artifacts: Artifacts,
        function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.scoring
        bucket = s3.Bucket.from_bucket_name(self, "Bucket", artifacts.bucket_name(self))

        plan = tasks.LambdaInvoke.jsonata(
            self,
            "Plan",
            comment="Pin the live model, check the input's columns, write the parts.",
            lambda_function=function,
            payload=sfn.TaskInput.from_object(
                {"step": "plan", "request": _jsonata("$states.input")}
            ),
            assign={
                "request": _jsonata("$states.input"),
                "plan": _jsonata("$states.result.Payload"),
            },
            outputs=_jsonata("$states.result.Payload"),
            retry_on_service_exceptions=False,
        )
        score_part = tasks.LambdaInvoke.jsonata(
            self,
            "ScoreParts",
            comment="Score this child's parts into parts/<part>.jsonl and parts/<part>.json.",
            lambda_function=function,
            payload=sfn.TaskInput.from_text(_jsonata("$states.input")),
            outputs=_jsonata("$states.result.Payload"),
            retry_on_service_exceptions=False,
        )
        score = sfn.DistributedMap.jsonata(
            self,
            "Score",
            comment="Every part of the plan, at most max_concurrency children at once.",
            item_reader=_RunFolderReader(bucket=bucket, key=_jsonata("$plan.plan_key")),
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=settings.parts_per_child,
                max_input_bytes_per_batch=MAX_INPUT_BYTES_PER_BATCH,
                batch_input={
                    "bucket": _jsonata("$plan.bucket"),
                    "output_prefix": _jsonata("$plan.output_prefix"),
                    "format": _jsonata("$plan.format"),
                    "model": _jsonata("$plan.model"),
                    "id_column": _jsonata("$plan.id_column"),
                },
            ),
            max_concurrency=settings.max_concurrency,
            tolerated_failure_percentage=settings.tolerated_failure_percentage,
            map_execution_type=sfn.StateMachineType.EXPRESS,
            result_writer_v2=_RunFolderWriter(
                bucket=bucket,
                prefix=_jsonata(f"$plan.output_prefix & '{contract.MAP_RESULTS_FOLDER}'"),
                writer_config=sfn.WriterConfig(
                    output_type=sfn.OutputType.JSONL, transformation=sfn.Transformation.FLATTEN
                ),
            ),
            outputs={},
        )
        score.item_processor(
            score_part.add_retry(
                errors=list(RETRIED_ERRORS),
                interval=Duration.seconds(2),
                max_attempts=6,
                backoff_rate=2,
                jitter_strategy=sfn.JitterType.FULL,
            ),
            mode=sfn.ProcessorMode.DISTRIBUTED,
            execution_type=sfn.ProcessorType.EXPRESS,
        )
        summarize = tasks.LambdaInvoke.jsonata(
            self,
            "Summarize",
            comment="Account for every row: summary.json beside the parts.",
            lambda_function=function,
            payload=sfn.TaskInput.from_object(
                {"step": "summarize", "plan": _jsonata("$plan"), "request": _jsonata("$request")}
            ),
            outputs=_jsonata("$states.result.Payload"),
            retry_on_service_exceptions=False,
        )
        for task in (plan, summarize):
            task.add_retry(
                errors=list(RETRIED_ERRORS), max_attempts=3, interval=Duration.seconds(2)
            )

        removal = RemovalPolicy.RETAIN if config.retained else RemovalPolicy.DESTROY
        log_group = logs.LogGroup(self, "Logs", retention=retention(config), removal_policy=removal)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=layout.scoring_state_machine_name(config.env),
            query_language=sfn.QueryLanguage.JSONATA,
            definition_body=sfn.DefinitionBody.from_chainable(plan.next(score).next(summarize)),
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL),
            tracing_enabled=True,
            timeout=Duration.hours(24),
        )
        self._permissions(artifacts, function)

    def _permissions(self, artifacts: Artifacts, function: lambda_.IFunction) -> None:
        machine = self.state_machine
        # The ItemReader reads plan.json and the ResultWriter writes map/, both in run folders.
        artifacts.grant(
            machine, read=(contract.SCORING_OUTPUT_PREFIX,), write=(contract.SCORING_OUTPUT_PREFIX,)
        )
        allow(
            machine,
            ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            [artifacts.arn(self, contract.SCORING_OUTPUT_PREFIX)],
            reason="The ResultWriter uploads its result files in parts into the run folders.",
        )
        role = machine.role
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "Tracing and execution logging of the state machine: the X-Ray actions and the "
            "CloudWatch Logs delivery actions accept no resource other than *.",
        )
        # CDK's policy for running the map's children: this state machine's own executions.
        children = machine.node.find_child("DistributedMapPolicy")
        document = Stack.of(self).resolve(cast(iam.Policy, children).document.to_json())
        for statement in document["Statement"]:
            for resource in (
                statement["Resource"]
                if isinstance(statement["Resource"], list)
                else [statement["Resource"]]
            ):
                if "*" in flatten(resource):
                    acknowledge(
                        children,
                        f"AwsSolutions-IAM5[Resource::{flatten(resource)}]",
                        "The Distributed Map starts, describes and stops child executions of "
                        "this one state machine; their names are made at run time.",
                    )
        acknowledge_resources(
            role,
            [f"{function.function_arn}:*"],
            "LambdaInvoke grants the scoring function and its versions (<arn>:<qualifier>); "
            "only this one function.",
        )
