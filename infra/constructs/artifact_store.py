"""The kit's stateful storage: KMS key, artifact bucket (with its access-log bucket), registry."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.nag import acknowledge, allow
from onnxkit.config import OnnxKitConfig
from onnxkit.contract.layout import (
    CAPTURE_ERRORS_PREFIX,
    CHECKPOINT_PREFIX,
    CLOUD_CAPTURE_PREFIX,
    SCORING_PREFIX,
    bucket_name,
    model_package_group_name,
)


def artifact_bucket_name(config: OnnxKitConfig, stack: Stack) -> str:
    """Deterministic, so other stacks derive ARNs without cross-stack references."""
    return bucket_name(config.env, stack.account, config.region)


@dataclass(frozen=True)
class Artifacts:
    """What the other stacks use of the artifacts stack."""

    config: OnnxKitConfig
    key: kms.IKey
    model_package_group_name: str
    stack: Stack

    def bucket_name(self, scope: Construct) -> str:
        """The artifact bucket's name, rendered in ``scope``'s stack."""
        return artifact_bucket_name(self.config, Stack.of(scope))

    def uri(self, scope: Construct, key: str = "") -> str:
        """``s3://<bucket>/<key>``."""
        return f"s3://{self.bucket_name(scope)}/{key}"

    def arn(self, scope: Construct, key: str | None = None) -> str:
        """The bucket's ARN, or of the objects under a key prefix (``prefix*``)."""
        stack = Stack.of(scope)
        base = f"arn:{stack.partition}:s3:::{self.bucket_name(scope)}"
        return base if key is None else f"{base}/{key}*"

    def grant(
        self, principal: iam.IGrantable, *, read: tuple[str, ...] = (), write: tuple[str, ...] = ()
    ) -> None:
        """Exact S3 and KMS actions on key prefixes (no ``s3:Get*``-style action wildcards).

        ListBucket comes with any read so that a missing key answers 404, not 403.
        """
        scope = principal.grant_principal
        assert isinstance(scope, Construct)
        why = (
            "Objects under one key prefix of the kit's artifact bucket; their names are "
            "model versions and training job names only known at run time."
        )
        if read:
            allow(
                principal,
                ["s3:GetObject", "s3:GetObjectVersion"],
                [self.arn(scope, p) for p in read],
                reason=why,
            )
            allow(principal, ["s3:ListBucket"], [self.arn(scope)])
            allow(principal, ["kms:Decrypt"], [self.key.key_arn])
        if write:
            allow(principal, ["s3:PutObject"], [self.arn(scope, p) for p in write], reason=why)
            allow(principal, ["kms:Encrypt", "kms:GenerateDataKey"], [self.key.key_arn])


@dataclass(frozen=True)
class ArtifactStore:
    """The key, the buckets and the model package group, and the handle other stacks use."""

    key: kms.Key
    access_logs: s3.Bucket
    bucket: s3.Bucket
    model_package_group: sagemaker.CfnModelPackageGroup
    artifacts: Artifacts


def artifact_store(stack: Stack, config: OnnxKitConfig) -> ArtifactStore:
    """Create the stateful resources directly in ``stack``.

    Not a Construct subclass on purpose: CDK derives logical ids from the construct path, so
    nesting these under a new construct would rename them, and CloudFormation would replace
    the (retained, in prod) KMS key and artifact bucket of an existing deployment. Created
    with the stack as their scope, their ids stay what they have always been.
    """
    removal = RemovalPolicy.RETAIN if config.retained else RemovalPolicy.DESTROY

    key = kms.Key(
        stack,
        "Key",
        alias=f"alias/onnxkit-{config.env}",
        description=f"onnxkit {config.env}: artifacts, training output, notifications",
        enable_key_rotation=True,
        removal_policy=removal,
    )
    # CloudWatch alarms publish to the KMS-encrypted alarm topic, which needs the key.
    key.add_to_resource_policy(
        iam.PolicyStatement(
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
        )
    )

    access_logs = s3.Bucket(
        stack,
        "AccessLogs",
        # S3 server access logging only delivers to SSE-S3 buckets.
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=False,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
        lifecycle_rules=[
            s3.LifecycleRule(id="expire-logs", expiration=Duration.days(config.log_retention_days))
        ],
        removal_policy=removal,
        auto_delete_objects=not config.retained,
    )
    acknowledge(
        access_logs,
        "AwsSolutions-S1",
        "This is the access-log bucket itself; logging it to itself would loop.",
    )

    bucket = s3.Bucket(
        stack,
        "ArtifactBucket",
        bucket_name=artifact_bucket_name(config, stack),
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix="artifacts/",
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="old-versions",
                noncurrent_version_expiration=Duration.days(config.noncurrent_version_days),
                abort_incomplete_multipart_upload_after=Duration.days(7),
            ),
            s3.LifecycleRule(
                id="checkpoints", prefix=CHECKPOINT_PREFIX, expiration=Duration.days(14)
            ),
            # Batch scoring inputs the CLI uploaded and the runs' outputs are working copies.
            s3.LifecycleRule(
                id="scoring",
                prefix=SCORING_PREFIX,
                expiration=Duration.days(config.scoring.output_retention_days),
            ),
            # Captured requests (and the records Firehose could not deliver) are personal
            # data at worst: gone after the retention, their old versions a day later.
            *(
                s3.LifecycleRule(
                    id=rule,
                    prefix=prefix,
                    expiration=Duration.days(config.capture.retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                )
                for rule, prefix in (
                    ("capture", CLOUD_CAPTURE_PREFIX),
                    ("capture-errors", CAPTURE_ERRORS_PREFIX),
                )
            ),
        ],
        removal_policy=removal,
        auto_delete_objects=not config.retained,
    )

    group_name = model_package_group_name(config.env, config.model_name)
    group = sagemaker.CfnModelPackageGroup(
        stack,
        "ModelPackageGroup",
        model_package_group_name=group_name,
        model_package_group_description=f"onnxkit {config.env}: {config.model_name} versions "
        "that passed the quality gate",
    )
    group.apply_removal_policy(removal)

    return ArtifactStore(
        key=key,
        access_logs=access_logs,
        bucket=bucket,
        model_package_group=group,
        artifacts=Artifacts(
            config=config, key=key, model_package_group_name=group_name, stack=stack
        ),
    )
