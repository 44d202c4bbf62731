"""The SageMaker training job's role, scikit-learn image and source tarball."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct
from sagemaker.core import image_uris

from infra.bundling import training_source
from infra.constructs.artifact_store import (
    Artifacts,
)
from infra.nag import allow
from onnxkit.config import OnnxKitConfig
from onnxkit.contract.layout import CHECKPOINT_PREFIX, DATA_PREFIX, TRAINING_PREFIX

SKLEARN_REPOSITORY = "sagemaker-scikit-learn"


def sklearn_image(region: str, version: str, scope: str) -> str:
    """The prebuilt SageMaker scikit-learn image for a region (SageMaker SDK lookup)."""
    uri: str = image_uris.retrieve(
        framework="sklearn", region=region, version=version, image_scope=scope
    )
    return uri


class TrainingJob(Construct):
    """What a SageMaker training job runs as and with: its role, image and source tarball."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: OnnxKitConfig, artifacts: Artifacts
    ) -> None:
        super().__init__(scope, construct_id)
        self.config, self.artifacts, self.stack = config, artifacts, Stack.of(self)
        self.role = self._training_role()
        self.source = training_source(self, "Source")
        allow(
            self.role,
            ["s3:GetObject"],
            [self.source.bucket.arn_for_objects(self.source.s3_object_key)],
        )

    def _training_role(self) -> iam.Role:
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker training jobs of the onnxkit pipeline",
        )
        self.artifacts.grant(
            role, read=(DATA_PREFIX, CHECKPOINT_PREFIX), write=(TRAINING_PREFIX, CHECKPOINT_PREFIX)
        )
        log_group = self.stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/sagemaker/TrainingJobs",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        allow(
            role,
            [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            [log_group, f"{log_group}:log-stream:*"],
            reason="SageMaker writes one log stream per training job, named after the job, "
            "in its fixed log group.",
        )
        allow(
            role,
            ["cloudwatch:PutMetricData"],
            ["*"],
            conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            reason="PutMetricData has no resource type; a namespace condition scopes it to "
            "SageMaker's metrics.",
        )
        image = sklearn_image(
            self.config.region, self.config.training.framework_version, "training"
        )
        registry_account = image.split(".", 1)[0]
        allow(
            role,
            ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            [
                f"arn:{self.stack.partition}:ecr:{self.config.region}:{registry_account}:"
                f"repository/{SKLEARN_REPOSITORY}"
            ],
        )
        allow(
            role,
            ["ecr:GetAuthorizationToken"],
            ["*"],
            reason="ecr:GetAuthorizationToken has no resource type; it only returns a token "
            "for pulls that the repository-scoped statement allows.",
        )
        self.image = image
        return role
