"""The batch scoring stack: the scoring function, its state machine and their alarms."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.constructs.artifact_store import Artifacts
from infra.constructs.scoring_function import ScoringFunction
from infra.constructs.scoring_monitoring import ScoringMonitoring
from infra.constructs.scoring_workflow import ScoringWorkflow
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import layout


class ScoringStack(Stack):
    """``onnxkit-<env>-scoring``: Plan -> Distributed Map -> Summarize over the artifact bucket."""

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
        self.function = ScoringFunction(
            self, "Function", config=config, artifacts=artifacts
        ).function
        self.workflow = ScoringWorkflow(
            self, "Workflow", config=config, artifacts=artifacts, function=self.function
        )
        self.state_machine = self.workflow.state_machine
        self.monitoring = ScoringMonitoring(
            self,
            "Monitoring",
            config=config,
            state_machine=self.state_machine,
            function=self.function,
            key=artifacts.key,
        )
        CfnOutput(
            self, layout.SCORING_STATE_MACHINE_OUTPUT, value=self.state_machine.state_machine_arn
        )
        CfnOutput(self, layout.SCORING_FUNCTION_OUTPUT, value=self.function.function_name)
