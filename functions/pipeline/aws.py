"""The ports on AWS: an S3 bucket, the inference function's versions and ``live`` alias,
and a CloudWatch alarm. Clients are passed in (tests wrap them)."""

from __future__ import annotations

import io
from typing import IO, Any

from botocore.exceptions import ClientError

from onnxkit.contract.layout import (
    ALIAS_NAME,
    MODEL_MANIFEST_SHA256_ENV,
    MODEL_SHA256_ENV,
    MODEL_URI_ENV,
    POINTER_FILE,
    s3_object,
)

from .ports import StepError


def split_s3_uri(uri: str) -> tuple[str, str, str | None]:
    """(bucket, key, version id) of ``s3://bucket/key[?versionId=...]``."""
    found = s3_object(uri)
    if found is None:
        raise StepError(f"not an s3 object uri: {uri}")
    return found


def _missing(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return code in {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}


class S3Store:
    """An S3 bucket (versioned, so every write of a key gets its own version id)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def uri(self, key: str, version_id: str | None = None) -> str:
        """``s3://bucket/key``, with ``?versionId=`` when pinned."""
        base = f"s3://{self.bucket}/{key}"
        return f"{base}?versionId={version_id}" if version_id else base

    def open_uri(self, uri: str) -> IO[bytes]:
        """Stream an object (any bucket the function may read)."""
        bucket, key, version = split_s3_uri(uri)
        extra = {"VersionId": version} if version else {}
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key, **extra)["Body"]
        except ClientError as error:
            if _missing(error):
                raise StepError(f"{uri} does not exist") from None
            raise
        # StreamingBody is file-like but not a context manager on every botocore.
        return io.BufferedReader(_Raw(body))

    def get(self, key: str) -> bytes | None:
        """Object bytes, or None when the key does not exist."""
        try:
            data: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if _missing(error):
                return None
            raise
        return data

    def head(self, key: str) -> str | None:
        """The current version id of a key, or None when it does not exist."""
        try:
            found = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _missing(error):
                return None
            raise
        version: str = found.get("VersionId") or ""
        return "" if version == "null" else version

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Write an object; returns its version id."""
        result = self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
        )
        version: str = result.get("VersionId") or ""
        return "" if version == "null" else version


class _Raw(io.RawIOBase):
    """Adapts botocore's StreamingBody to io.RawIOBase for buffered, closable reading."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self.body.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self.body.close()
        super().close()


class LambdaServing:
    """The inference function: ``MODEL_URI``/``MODEL_SHA256``/``MODEL_MANIFEST_SHA256`` per
    published version."""

    def __init__(
        self, lambda_client: Any, function_name: str, alias_name: str = ALIAS_NAME
    ) -> None:
        self.client, self.function, self.alias = lambda_client, function_name, alias_name

    def _versions(self) -> list[dict[str, Any]]:
        pages = self.client.get_paginator("list_versions_by_function").paginate(
            FunctionName=self.function
        )
        return [v for page in pages for v in page["Versions"] if v["Version"] != "$LATEST"]

    def find_version(self, model_uri: str, sha256: str, manifest_sha256: str) -> str | None:
        """The newest published version that already serves this model."""
        wanted = {
            MODEL_URI_ENV: model_uri,
            MODEL_SHA256_ENV: sha256,
            MODEL_MANIFEST_SHA256_ENV: manifest_sha256,
        }
        for version in sorted(self._versions(), key=lambda v: int(v["Version"]), reverse=True):
            env = version.get("Environment", {}).get("Variables", {})
            if all(env.get(key) == value for key, value in wanted.items()):
                return str(version["Version"])
        return None

    def publish(self, model_uri: str, sha256: str, manifest_sha256: str, description: str) -> str:
        """Set the model on $LATEST (other variables kept) and publish that configuration."""
        config = self.client.get_function_configuration(FunctionName=self.function)
        env = dict(config.get("Environment", {}).get("Variables", {}))
        env.update(
            {
                MODEL_URI_ENV: model_uri,
                MODEL_SHA256_ENV: sha256,
                MODEL_MANIFEST_SHA256_ENV: manifest_sha256,
            }
        )
        updated = self.client.update_function_configuration(
            FunctionName=self.function, Environment={"Variables": env}
        )
        self.client.get_waiter("function_updated").wait(FunctionName=self.function)
        # RevisionId makes Lambda refuse to publish if someone changed $LATEST meanwhile.
        extra = {"RevisionId": updated["RevisionId"]} if updated.get("RevisionId") else {}
        published = self.client.publish_version(
            FunctionName=self.function, Description=description[:256], **extra
        )
        version = str(published["Version"])
        served = published.get("Environment", {}).get("Variables", {})
        if (served.get(MODEL_SHA256_ENV), served.get(MODEL_MANIFEST_SHA256_ENV)) != (
            sha256,
            manifest_sha256,
        ):
            raise StepError(f"published version {version} does not carry the new model")
        return version

    def live(self) -> tuple[str | None, dict[str, float]]:
        """The alias's version and routing weights (None when the alias does not exist)."""
        try:
            alias = self.client.get_alias(FunctionName=self.function, Name=self.alias)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None, {}
            raise
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return str(alias["FunctionVersion"]), {str(k): float(v) for k, v in weights.items()}

    def route(self, version: str, weights: dict[str, float] | None = None) -> None:
        """Point the alias at a version, with optional weighted extra versions."""
        routing = {"AdditionalVersionWeights": weights or {}}
        current, _ = self.live()
        if current is None:
            self.client.create_alias(
                FunctionName=self.function,
                Name=self.alias,
                FunctionVersion=version,
                RoutingConfig=routing,
            )
        else:
            self.client.update_alias(
                FunctionName=self.function,
                Name=self.alias,
                FunctionVersion=version,
                RoutingConfig=routing,
            )

    def model_of(self, version: str) -> tuple[str, str]:
        """(MODEL_URI, MODEL_SHA256) of a published version."""
        config = self.client.get_function_configuration(
            FunctionName=self.function, Qualifier=version
        )
        env = config.get("Environment", {}).get("Variables", {})
        return env.get(MODEL_URI_ENV, ""), env.get(MODEL_SHA256_ENV, "")

    def follows_pointer(self, version: str) -> bool:
        """True for a version with no model of its own: the CDK-managed one, whose
        ``MODEL_URI`` is the production pointer (or empty)."""
        uri = self.model_of(version)[0].split("?")[0]
        return not uri or uri.endswith("/" + POINTER_FILE)


def alarm_check(cloudwatch: Any, alarm_name: str) -> bool:
    """True when the named CloudWatch alarm is in ALARM."""
    alarms = cloudwatch.describe_alarms(AlarmNames=[alarm_name]).get("MetricAlarms", [])
    return any(alarm.get("StateValue") == "ALARM" for alarm in alarms)
