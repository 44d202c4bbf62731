"""One Lambda task of the training state machine."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.bundling import FunctionBundle, function_code
from infra.constructs.lambda_common import (
    PYTHON_VERSION,
    RUNTIME,
    acknowledge_function_role,
    architecture,
    function_role,
    log_options,
    retention,
)
from onnxkit.config import OnnxKitConfig


class PipelineStep(Construct):
    """One Lambda task of the state machine, with its own log group and role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: OnnxKitConfig,
        handler: str,
        environment: dict[str, str],
        timeout: Duration | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.retained else RemovalPolicy.DESTROY
        log_group = logs.LogGroup(self, "Logs", retention=retention(config), removal_policy=removal)
        role = function_role(self, "Role", log_group)
        bundle = FunctionBundle("pipeline", PYTHON_VERSION, config.function.architecture)
        self.function = lambda_.Function(
            self,
            "Function",
            description=f"onnxkit {config.env} pipeline step {construct_id}",
            runtime=RUNTIME,
            architecture=architecture(config),
            handler=handler,
            code=function_code(self, bundle),
            memory_size=512,
            timeout=timeout or Duration.minutes(2),
            role=role,
            log_group=log_group,
            # A few calls per training run: their REPORT lines (duration, memory) cost nothing.
            **log_options("INFO"),
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                **environment,
                "POWERTOOLS_SERVICE_NAME": f"onnxkit-{construct_id.lower()}",
            },
        )
        acknowledge_function_role(role)
