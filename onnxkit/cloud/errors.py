"""Errors of the commands that talk to AWS or to an inference API, and AWS errors as one line."""

from __future__ import annotations

from onnxkit.errors import KitError


class CloudError(KitError):
    """A deployed kit or its API could not do what was asked (one readable line)."""


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


def describe_aws_error(error: Exception) -> str:
    """A short, single-line description of a botocore/boto3 failure."""
    from botocore.exceptions import (  # noqa: PLC0415 - boto is heavy, import on use
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(error, NoRegionError):
        return "no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION) or pass --region"
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found: configure a profile (AWS_PROFILE) or set "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(error, EndpointConnectionError):
        return f"cannot reach AWS: {one_line(str(error))}"
    if isinstance(error, ClientError):
        err = error.response.get("Error", {})
        code = err.get("Code", "Error")
        message = err.get("Message", "")
        operation = getattr(error, "operation_name", "")
        if code in {
            "ExpiredToken",
            "ExpiredTokenException",
            "InvalidClientTokenId",
            "UnrecognizedClientException",
            "SignatureDoesNotMatch",
        }:
            return f"AWS rejected the credentials ({code}): {one_line(message)}"
        return f"{operation} failed ({code}): {one_line(message)}"
    return one_line(str(error)) or type(error).__name__
