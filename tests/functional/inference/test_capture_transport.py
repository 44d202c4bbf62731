"""The cloud capture's transport over moto: the function's capture lines, put into its log group
as Lambda delivers stdout, reach the artifact bucket's capture/YYYY/MM/DD/HH/ through the
subscription filter and the Firehose stream, every record once.

moto runs the subscription (log group -> Firehose, each PutLogEvents batch one gzip'd
CloudWatch Logs payload) and Firehose's S3 write (one object per record, under the prefix and
the UTC hour); it neither applies filter patterns nor Firehose's processors, so
:func:`tests.support.capture.firehose_processed` applies the three processors the stream is
configured with, as AWS documents them (decompression, message extraction, a newline per
record), and gzip, the stream's output compression.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from functions.inference.app import InferenceFunction
from functions.inference.capture import LogCapture
from functions.inference.runtime import Settings
from onnxkit.contract import layout
from onnxkit.contract.capture import decode_records
from tests.support.aws import create_bucket, create_role, mocked
from tests.support.capture import firehose_processed
from tests.support.inference import call, event_with

pytestmark = pytest.mark.xdist_group("inference")

BUCKET = "onnxkit-test-artifacts"
LOG_GROUP = "/aws/lambda/onnxkit-test-inference"
# What CloudWatch Logs takes in one PutLogEvents call (the Lambda platform batches like this).
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576


def _put_as_lambda_does(logs: object, lines: list[str]) -> int:
    """Put stdout lines into the log group in PutLogEvents batches; the number of batches."""
    now = int(datetime.now(UTC).timestamp() * 1000)
    batches, size = 0, 0
    batch: list[dict[str, object]] = []
    for line in [*lines, None]:
        cost = 0 if line is None else len(line.encode()) + 26  # CloudWatch's per-event overhead
        if batch and (
            line is None or len(batch) == MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES
        ):
            logs.put_log_events(  # type: ignore[attr-defined]
                logGroupName=LOG_GROUP, logStreamName="2026/12/06/[$LATEST]abc", logEvents=batch
            )
            batches, batch, size = batches + 1, [], 0
        if line is not None:
            batch.append({"timestamp": now, "message": line})
            size += cost
    return batches


def test_every_captured_record_lands_once_under_its_hour(
    train_artifact: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    model = train_artifact("breast_cancer", model="mlp")
    stdout = io.StringIO()
    sink = LogCapture(1.0, stdout)
    function = InferenceFunction(Settings(model_uri=str(model)), capture=sink)
    width = len(function.runtime.require().features)
    expected: dict[str, int] = {}
    for index in range(2000):
        rows = 1 + index % 5
        event = event_with(body=json.dumps({"instances": [[index / 7] * width] * rows}))
        event["requestContext"]["requestId"] = f"call-{index}"
        status, _, _ = call(function, event)
        assert status == 200
        expected[f"call-{index}"] = rows
    lines = stdout.getvalue().splitlines()
    assert len(lines) == sum(expected.values()) == sink.records

    with mocked(monkeypatch):
        s3 = create_bucket(BUCKET)
        role = create_role("capture-delivery")
        firehose = boto3.client("firehose")
        stream = firehose.create_delivery_stream(
            DeliveryStreamName="onnxkit-test-capture",
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "BucketARN": f"arn:aws:s3:::{BUCKET}",
                "RoleARN": role,
                # Without expressions Firehose appends the UTC YYYY/MM/dd/HH/ itself, as the
                # deployed !{timestamp:yyyy/MM/dd/HH} does; moto understands only this form.
                "Prefix": layout.CLOUD_CAPTURE_PREFIX,
                "CompressionFormat": "GZIP",
            },
        )["DeliveryStreamARN"]
        logs = boto3.client("logs")
        logs.create_log_group(logGroupName=LOG_GROUP)
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="2026/12/06/[$LATEST]abc")
        logs.put_subscription_filter(
            logGroupName=LOG_GROUP,
            filterName="onnxkit-capture",
            filterPattern=layout.CAPTURE_LOG_FILTER_PATTERN,
            destinationArn=stream,
            roleArn=create_role("capture-subscription"),
        )
        hour = datetime.now(UTC)
        batches = _put_as_lambda_does(logs, lines)
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=layout.CLOUD_CAPTURE_PREFIX)
        keys = [item["Key"] for item in listed.get("Contents", [])]
        objects = [s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys]

    assert batches >= 2  # the lines did not fit one PutLogEvents call
    assert len(keys) == batches  # one Firehose record (one object in moto) per batch
    assert all(key.startswith(layout.capture_hour_prefix(hour)) for key in keys), keys[:3]
    captured = []
    for raw in objects:
        delivered = firehose_processed(raw)
        assert delivered[:2] == b"\x1f\x8b"  # gzip, as the drift check expects
        text = gzip.decompress(delivered)
        assert text.endswith(b"\n")  # no unterminated last line for a reader to skip
        captured += decode_records(text)
    seen: dict[str, list[int]] = {}
    for record in captured:
        seen.setdefault(record.request_id, []).append(record.row)
    assert {rid: sorted(rows) for rid, rows in seen.items()} == {
        rid: list(range(rows)) for rid, rows in expected.items()
    }
