"""The stateful stack: key, bucket, registry; retained and protected in prod."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import SYNTH_GROUP, Synthesized

pytestmark = SYNTH_GROUP


def _bucket(kit: Synthesized) -> dict[str, Any]:
    buckets = kit.resources("Artifacts", "AWS::S3::Bucket")
    (artifact,) = [b for b in buckets.values() if "VersioningConfiguration" in b["Properties"]]
    return artifact


def test_key_is_customer_managed_and_rotated(dev: Synthesized) -> None:
    key = dev.one("Artifacts", "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True


def test_artifact_bucket_is_kms_encrypted_versioned_private(dev: Synthesized) -> None:
    props = _bucket(dev)["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "Fn::GetAtt" in rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert "DestinationBucketName" in props["LoggingConfiguration"]
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["old-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30


def test_every_bucket_denies_plain_http(dev: Synthesized) -> None:
    policies = dev.resources("Artifacts", "AWS::S3::BucketPolicy")
    buckets = dev.resources("Artifacts", "AWS::S3::Bucket")
    assert len(policies) == len(buckets) == 2
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


def test_model_registry_and_outputs(dev: Synthesized) -> None:
    group = dev.one("Artifacts", "AWS::SageMaker::ModelPackageGroup")
    assert group["Properties"]["ModelPackageGroupName"] == "onnxkit-dev-onnxkit-model"
    outputs = dev.template("Artifacts")["Outputs"]
    assert {"ArtifactBucketName", "DataUri", "ModelPackageGroupName", "KmsKeyArn"} <= set(outputs)


def test_dev_is_disposable_prod_is_retained(dev: Synthesized, prod: Synthesized) -> None:
    assert _bucket(dev)["DeletionPolicy"] == "Delete"
    assert not dev.kit.artifacts.termination_protection
    assert _bucket(prod)["DeletionPolicy"] == "Retain"
    assert prod.one("Artifacts", "AWS::KMS::Key")["DeletionPolicy"] == "Retain"
    assert prod.one("Artifacts", "AWS::SageMaker::ModelPackageGroup")["DeletionPolicy"] == (
        "Retain"
    )
    assert prod.kit.artifacts.termination_protection
    # prod keeps old object versions longer, and has no auto-delete custom resource.
    assert not prod.resources("Artifacts", "Custom::S3AutoDeleteObjects")
    assert dev.resources("Artifacts", "Custom::S3AutoDeleteObjects")
