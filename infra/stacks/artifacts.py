"""The stateful stack: KMS key, artifact bucket (with its access-log bucket), model registry."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.constructs.artifact_store import artifact_store
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import layout
from onnxkit.contract.layout import DATA_PREFIX


class ArtifactsStack(Stack):
    """Encrypted, versioned, TLS-only storage for data, training outputs and promoted models."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: OnnxKitConfig, **kwargs: object
    ) -> None:
        super().__init__(scope, construct_id, termination_protection=config.retained, **kwargs)  # type: ignore[arg-type]
        # Built in this stack's own scope so the retained resources keep their logical ids.
        store = artifact_store(self, config)
        self.artifacts = store.artifacts
        CfnOutput(self, layout.BUCKET_OUTPUT, value=store.bucket.bucket_name)
        CfnOutput(
            self,
            layout.DATA_URI_OUTPUT,
            value=self.artifacts.uri(self, DATA_PREFIX),
            description="S3 prefix for training data",
        )
        CfnOutput(
            self, layout.MODEL_PACKAGE_GROUP_OUTPUT, value=self.artifacts.model_package_group_name
        )
        CfnOutput(self, layout.KMS_KEY_OUTPUT, value=store.key.key_arn)
