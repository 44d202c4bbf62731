"""The stateless serving stack: inference Lambda + ``live`` alias behind a REST API."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.constructs.artifact_store import Artifacts
from infra.constructs.inference_api import InferenceApi
from infra.constructs.inference_function import InferenceFunction
from infra.constructs.serving_monitoring import ServingMonitoring
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import layout


class ServingStack(Stack):
    """Inference function, its ``live`` alias, the REST API, alarms and dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: OnnxKitConfig,
        artifacts: Artifacts,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.add_stack_dependency(artifacts.stack)
        inference = InferenceFunction(self, "Inference", config=config, artifacts=artifacts)
        self.function, self.alias = inference.function, inference.alias
        self.api = InferenceApi(self, "Api", config=config, alias=self.alias).rest_api
        self.monitoring = ServingMonitoring(
            self,
            "Monitoring",
            config=config,
            function=self.function,
            api=self.api,
            key=artifacts.key,
        )

        CfnOutput(self, layout.API_URL_OUTPUT, value=self.api.url)
        CfnOutput(self, layout.FUNCTION_NAME_OUTPUT, value=self.function.function_name)
        CfnOutput(self, layout.LIVE_ALIAS_OUTPUT, value=self.alias.function_arn)
        CfnOutput(self, layout.AUTH_MODE_OUTPUT, value=config.api.auth_mode)
