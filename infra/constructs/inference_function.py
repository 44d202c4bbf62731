"""The inference Lambda and its ``live`` alias."""

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
    acknowledge_function_role,
    architecture,
    function_role,
    log_options,
    retention,
)
from infra.nag import acknowledge
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import layout
from onnxkit.contract.layout import ALIAS_NAME, MODELS_PREFIX

INFERENCE_HANDLER = "functions.inference.handler.lambda_handler"


def inference_function_name(config: OnnxKitConfig) -> str:
    """Fixed, so the pipeline's Promote role is scoped to it without a cross-stack export."""
    return layout.inference_function_name(config.env)


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
        self.log_group = log_group
        role = function_role(self, "Role", log_group)
        artifacts.grant(role, read=(MODELS_PREFIX,))
        pointer_uri = artifacts.uri(self, layout.pointer_key(config.model_name))
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
            # One request, one log line: WARN drops Lambda's START, END and REPORT lines (about
            # half the bytes a one-row request logged); the EMF line stays (docs/deploy.md).
            **log_options(config.function.system_log_level),
            tracing=lambda_.Tracing.ACTIVE,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS
            if config.function.snapstart
            else None,
            environment={
                # Unset when capture is off (config.capture.sample_rate 0).
                **(
                    {layout.CAPTURE_SAMPLE_RATE_ENV: str(config.capture.sample_rate)}
                    if config.capture.enabled
                    else {}
                ),
                # Before the first promotion this is the production pointer (see CONTRACTS.md).
                layout.MODEL_URI_ENV: pointer_uri,
                layout.MODEL_SHA256_ENV: "",
                layout.MAX_INSTANCES_ENV: str(config.function.max_instances),
                layout.MAX_EXPLAIN_INSTANCES_ENV: str(config.function.max_explain_instances),
                layout.MODEL_NAME_ENV: config.model_name,
                "ORT_DISABLE_TELEMETRY": "1",
                "POWERTOOLS_SERVICE_NAME": "onnxkit-inference",
                "POWERTOOLS_METRICS_NAMESPACE": "onnxkit",
                # One EMF line a request is most of what a cheap front door's request costs.
                "POWERTOOLS_METRICS_DISABLED": "false" if config.request_metrics else "true",
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
