"""Request capture in the templates: the subscription filter on the inference function's log
group, the Firehose stream to capture/ (decompressed, messages only, gzip, the kit's key), the
two roles' permissions, the lifecycle rules, and nothing of it when capture is off."""

from __future__ import annotations

import json
from typing import Any

from infra.constructs.inference_function import INFERENCE_HANDLER
from infra.nag import flatten
from onnxkit.contract import layout
from tests.infra.conftest import SYNTH_GROUP, Synthesized

pytestmark = SYNTH_GROUP

STREAM = "AWS::KinesisFirehose::DeliveryStream"
FILTER = "AWS::Logs::SubscriptionFilter"


def _policy(kit: Synthesized, role_id: str) -> list[dict[str, Any]]:
    """The statements of the role's inline policies (CDK's DefaultPolicy)."""
    statements = []
    for policy in kit.resources("Serving", "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    assert statements, role_id
    return statements


def _role_of(kit: Synthesized, arn: Any) -> str:
    assert set(arn) == {"Fn::GetAtt"}, arn
    role_id: str = arn["Fn::GetAtt"][0]
    return role_id


def _inference(kit: Synthesized) -> tuple[str, dict[str, Any]]:
    functions = kit.resources("Serving", "AWS::Lambda::Function")
    ((name, function),) = [
        (n, f) for n, f in functions.items() if f["Properties"]["Handler"] == INFERENCE_HANDLER
    ]
    return name, function["Properties"]


def test_the_function_samples_what_the_config_says(dev: Synthesized) -> None:
    _, props = _inference(dev)
    env = props["Environment"]["Variables"]
    assert env[layout.CAPTURE_SAMPLE_RATE_ENV] == str(dev.kit.config.capture.sample_rate)
    # Capture lines carry no "level": Lambda files them as INFO, which a stricter application
    # log level would drop.
    assert props["LoggingConfig"]["ApplicationLogLevel"] == "INFO"
    assert props["LoggingConfig"]["LogFormat"] == "JSON"


def test_the_subscription_filter_sends_capture_lines_to_the_stream(dev: Synthesized) -> None:
    name, props = _inference(dev)
    subscription = dev.one("Serving", FILTER)["Properties"]
    assert subscription["FilterPattern"] == layout.CAPTURE_LOG_FILTER_PATTERN
    assert subscription["LogGroupName"] == props["LoggingConfig"]["LogGroup"]
    (stream_id,) = dev.resources("Serving", STREAM)
    assert subscription["DestinationArn"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    role = _role_of(dev, subscription["RoleArn"])
    trust = dev.template("Serving")["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]
    (assume,) = trust["Statement"]
    assert assume["Principal"] == {"Service": "logs.amazonaws.com"}
    assert "aws:SourceArn" in assume["Condition"]["StringLike"]
    (statement,) = _policy(dev, role)
    assert sorted(statement["Action"]) == ["firehose:PutRecord", "firehose:PutRecordBatch"]
    assert statement["Resource"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    assert name  # the function the log group belongs to exists


def test_the_stream_writes_gzip_json_lines_under_capture_with_the_kits_key(
    dev: Synthesized,
) -> None:
    stream = dev.one("Serving", STREAM)["Properties"]
    assert stream["DeliveryStreamType"] == "DirectPut"
    key = stream["DeliveryStreamEncryptionConfigurationInput"]
    assert key["KeyType"] == "CUSTOMER_MANAGED_CMK"
    assert "Key" in json.dumps(key["KeyARN"])  # the artifacts stack's key, imported
    s3 = stream["ExtendedS3DestinationConfiguration"]
    assert s3["EncryptionConfiguration"]["KMSEncryptionConfig"]["AWSKMSKeyARN"] == key["KeyARN"]
    assert "onnxkit-dev-artifacts-" in json.dumps(s3["BucketARN"])
    # The layout's capture/YYYY/MM/DD/HH/ (Firehose's timestamp namespace is UTC).
    assert s3["Prefix"] == layout.CLOUD_CAPTURE_PREFIX + "!{timestamp:yyyy/MM/dd/HH}/"
    assert s3["ErrorOutputPrefix"].startswith(layout.CAPTURE_ERRORS_PREFIX)
    assert not s3["ErrorOutputPrefix"].startswith(layout.CLOUD_CAPTURE_PREFIX)
    assert s3["CompressionFormat"] == "GZIP"
    assert s3["BufferingHints"]["IntervalInSeconds"] == dev.kit.config.capture.buffer_seconds
    processing = s3["ProcessingConfiguration"]
    assert processing["Enabled"] is True
    kinds = [(p["Type"], {q["ParameterName"]: q["ParameterValue"] for q in p.get("Parameters", [])})
             for p in processing["Processors"]]  # fmt: skip
    assert kinds == [
        ("Decompression", {"CompressionFormat": "GZIP"}),
        ("CloudWatchLogProcessing", {"DataMessageExtraction": "true"}),
        ("AppendDelimiterToRecord", {}),
    ]
    assert s3["CloudWatchLoggingOptions"]["Enabled"] is True


def test_firehose_may_write_only_under_the_capture_prefixes(dev: Synthesized) -> None:
    stream = dev.one("Serving", STREAM)["Properties"]
    role = _role_of(dev, stream["ExtendedS3DestinationConfiguration"]["RoleARN"])
    trust = dev.template("Serving")["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]
    (assume,) = trust["Statement"]
    assert assume["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert "sts:ExternalId" in assume["Condition"]["StringEquals"]
    statements = _policy(dev, role)
    actions = {
        a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert not any("*" in action for action in actions)
    object_resources: set[str] = set()
    for statement in statements:
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        rendered = [flatten(r) for r in resources]
        assert "*" not in rendered
        if "s3:PutObject" in statement["Action"]:
            object_resources.update(rendered)
        if "kms:GenerateDataKey" in statement["Action"]:
            assert statement["Condition"]["StringEquals"]["kms:ViaService"].startswith("s3.")
    bucket = "arn:aws:s3:::onnxkit-dev-artifacts-<AWS::AccountId>-us-east-1/"
    assert object_resources == {
        f"{bucket}{layout.CLOUD_CAPTURE_PREFIX}*",
        f"{bucket}{layout.CAPTURE_ERRORS_PREFIX}*",
    }


def test_a_late_delivery_alarm_notifies_the_kits_topic(dev: Synthesized) -> None:
    alarms = dev.resources("Serving", "AWS::CloudWatch::Alarm")
    (alarm,) = [
        a["Properties"]
        for a in alarms.values()
        if a["Properties"]["MetricName"] == "DeliveryToS3.DataFreshness"
    ]
    assert alarm["Namespace"] == "AWS/Firehose"
    assert alarm["Threshold"] == 3600
    (topic,) = dev.resources("Serving", "AWS::SNS::Topic")
    assert alarm["AlarmActions"] == [{"Ref": topic}]


def test_captures_expire_after_the_retention(dev: Synthesized, prod: Synthesized) -> None:
    for kit in (dev, prod):
        (bucket,) = [
            b["Properties"]
            for b in kit.resources("Artifacts", "AWS::S3::Bucket").values()
            if "BucketName" in b["Properties"]
        ]
        rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
        days = kit.kit.config.capture.retention_days
        for rule, prefix in (
            ("capture", layout.CLOUD_CAPTURE_PREFIX),
            ("capture-errors", layout.CAPTURE_ERRORS_PREFIX),
        ):
            assert rules[rule]["Prefix"] == prefix
            assert rules[rule]["ExpirationInDays"] == days
            assert rules[rule]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    assert (dev.kit.config.capture.retention_days, prod.kit.config.capture.retention_days) == (
        30,
        90,
    )


def test_capture_off_creates_nothing(variant: Synthesized) -> None:
    assert variant.kit.config.capture.sample_rate == 0
    assert variant.resources("Serving", STREAM) == {}
    assert variant.resources("Serving", FILTER) == {}
    _, props = _inference(variant)
    assert layout.CAPTURE_SAMPLE_RATE_ENV not in props["Environment"]["Variables"]
