"""The batch scoring function: the inference bundle under its own name and concurrency."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.bundling import FunctionBundle, function_code
from infra.constructs.artifact_store import Artifacts
from infra.constructs.lambda_common import (
    PYTHON_VERSION,
    RUNTIME,
    architecture,
    function_role,
    log_options,
    retention,
)
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import layout
from onnxkit.contract.scoring import SCORING_INPUT_PREFIX, SCORING_OUTPUT_PREFIX

SCORING_HANDLER = "functions.inference.scoring_handler.lambda_handler"


class ScoringFunction(Construct):
    """Plan, Score and Summarize of the scoring state machine, in one function.

    The same code and bundle as the inference function (its decoding rules, model loading and
    digest checks), but a separate function: its reserved concurrency (the map's
    ``max_concurrency``) is all a batch run can take, so online traffic keeps the rest.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, config: OnnxKitConfig, artifacts: Artifacts
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.scoring
        removal = RemovalPolicy.RETAIN if config.retained else RemovalPolicy.DESTROY
        log_group = logs.LogGroup(self, "Logs", retention=retention(config), removal_policy=removal)
        role = function_role(self, "Role", log_group)
        # Models to score with, the inputs to read; the run folders to write.
        artifacts.grant(
            role,
            read=(layout.MODELS_PREFIX, SCORING_INPUT_PREFIX, SCORING_OUTPUT_PREFIX),
            write=(SCORING_OUTPUT_PREFIX,),
        )
        bundle = FunctionBundle("inference", PYTHON_VERSION, config.function.architecture)
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=layout.scoring_function_name(config.env),
            description=f"onnxkit {config.env} batch scoring ({config.model_name})",
            runtime=RUNTIME,
            architecture=architecture(config),
            handler=SCORING_HANDLER,
            code=function_code(self, bundle),
            memory_size=settings.memory_mb,
            timeout=Duration.seconds(settings.timeout_seconds),
            reserved_concurrent_executions=settings.max_concurrency,
            role=role,
            log_group=log_group,
            # One call per 16 MB part: the REPORT lines cost nothing at that rate and their
            # "Max Memory Used" is what sizes scoring.memory_mb.
            **log_options("INFO"),
            environment={
                layout.ARTIFACT_BUCKET_ENV: artifacts.bucket_name(self),
                layout.MODEL_NAME_ENV: config.model_name,
                layout.PART_BYTES_ENV: str(settings.part_mb * 1024 * 1024),
                "ORT_DISABLE_TELEMETRY": "1",
            },
        )
