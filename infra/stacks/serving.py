"""The stateless serving stack: inference Lambda + ``live`` alias behind its front door
(``api.kind``: a REST API, an HTTP API or a function URL), and its request capture."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_cloudwatch_actions as cw_actions
from constructs import Construct

from infra.constructs.artifact_store import Artifacts
from infra.constructs.drift_monitor import DriftMonitor
from infra.constructs.front_door import FrontDoor
from infra.constructs.function_url import FunctionUrlFrontDoor
from infra.constructs.http_api import HttpInferenceApi
from infra.constructs.inference_api import InferenceApi
from infra.constructs.inference_function import InferenceFunction
from infra.constructs.request_capture import RequestCapture
from infra.constructs.serving_monitoring import ServingMonitoring
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import layout


class ServingStack(Stack):
    """Inference function, its ``live`` alias, its front door, alarms and dashboard, and the
    scheduled drift check of the model it serves."""

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
        # The REST API keeps its construct id ("Api"), so its resources keep their logical ids.
        self.front_door: FrontDoor
        if config.api.kind == "http":
            self.front_door = HttpInferenceApi(self, "HttpApi", config=config, alias=self.alias)
        elif config.api.kind == "function_url":
            self.front_door = FunctionUrlFrontDoor(
                self, "FunctionUrl", config=config, alias=self.alias
            )
        else:
            self.front_door = InferenceApi(self, "Api", config=config, alias=self.alias)
        self.monitoring = ServingMonitoring(
            self,
            "Monitoring",
            config=config,
            function=self.function,
            front_door=self.front_door,
            key=artifacts.key,
        )
        # Watches what the function serves: its alarms go to the same topic, on one dashboard.
        self.drift = DriftMonitor(
            self,
            "Drift",
            config=config,
            artifacts=artifacts,
            topic=self.monitoring.topic,
            dashboard=self.monitoring.dashboard,
        )

        if config.capture.enabled:
            self.capture = RequestCapture(
                self,
                "Capture",
                config=config,
                artifacts=artifacts,
                log_group=inference.log_group,
            )
            self.capture.freshness_alarm.add_alarm_action(
                cw_actions.SnsAction(self.monitoring.topic)
            )

        CfnOutput(self, layout.API_URL_OUTPUT, value=self.front_door.url)
        CfnOutput(self, layout.FUNCTION_NAME_OUTPUT, value=self.function.function_name)
        CfnOutput(self, layout.LIVE_ALIAS_OUTPUT, value=self.alias.function_arn)
        CfnOutput(self, layout.AUTH_MODE_OUTPUT, value=config.api.auth_mode)
        CfnOutput(self, layout.API_KIND_OUTPUT, value=config.api.kind)
        CfnOutput(
            self,
            layout.DRIFT_REPORTS_OUTPUT,
            value=artifacts.uri(self, layout.DRIFT_PREFIX),
            description="Where the scheduled drift check writes its reports",
        )
