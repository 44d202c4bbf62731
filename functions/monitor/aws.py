"""The drift check's ports on AWS: the artifact bucket, CloudWatch and the training state
machine. Clients are passed in (the handler builds them; tests point them at moto)."""

from __future__ import annotations

from typing import Any, Final

from botocore.exceptions import ClientError

# PutMetricData takes up to 1000 metrics and 1 MB per request (CloudWatch API Reference,
# PutMetricData); 500 entries of a few hundred bytes stay far below both.
METRICS_PER_REQUEST: Final = 500


def _missing(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return code in {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}


class S3Store:
    """The artifact bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def get(self, key: str, version_id: str | None = None) -> bytes | None:
        """An object's bytes, or None when the key (or version) does not exist."""
        extra = {"VersionId": version_id} if version_id else {}
        try:
            data: bytes = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)["Body"].read()
        except ClientError as error:
            if _missing(error):
                return None
            raise
        return data

    def keys(self, prefix: str) -> list[str]:
        """Every key under a prefix (ListObjectsV2, page by page)."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write an object (the bucket's default encryption: the kit's key)."""
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)


class CloudWatchMetrics:
    """PutMetricData, in requests of at most :data:`METRICS_PER_REQUEST` entries."""

    def __init__(self, cloudwatch: Any) -> None:
        self.cloudwatch = cloudwatch

    def put(self, namespace: str, data: list[dict[str, Any]]) -> None:
        """Publish every entry in ``namespace``."""
        for first in range(0, len(data), METRICS_PER_REQUEST):
            self.cloudwatch.put_metric_data(
                Namespace=namespace, MetricData=data[first : first + METRICS_PER_REQUEST]
            )


class StepFunctionsTrainer:
    """The training state machine."""

    def __init__(self, sfn: Any, state_machine_arn: str) -> None:
        self.sfn, self.arn = sfn, state_machine_arn

    def running(self) -> bool:
        """Whether an execution is running."""
        found = self.sfn.list_executions(
            stateMachineArn=self.arn, statusFilter="RUNNING", maxResults=1
        )
        return bool(found.get("executions"))

    def start(self, name: str, payload: dict[str, Any]) -> str:
        """StartExecution; the same name and input again returns the same execution."""
        import json  # noqa: PLC0415 - only a check that found drift starts one

        started = self.sfn.start_execution(
            stateMachineArn=self.arn, name=name, input=json.dumps(payload, sort_keys=True)
        )
        arn: str = started["executionArn"]
        return arn
