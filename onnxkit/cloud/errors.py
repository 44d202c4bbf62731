"""One-line, non-zero-exit errors for the commands that talk to AWS or to an inference API."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click


class CloudError(click.ClickException):
    """A readable failure: the message is one line, the exit code non-zero, no traceback."""

    exit_code = 1


def _one_line(text: str) -> str:
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
        return f"cannot reach AWS: {_one_line(str(error))}"
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
            return f"AWS rejected the credentials ({code}): {_one_line(message)}"
        return f"{operation} failed ({code}): {_one_line(message)}"
    return _one_line(str(error)) or type(error).__name__


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn CloudError, AWS errors and Ctrl-C into one stderr line and a non-zero exit.

    typer renders ClickExceptions as a multi-line panel; operators asked for one line that a
    script can grep, so the commands print it themselves.
    """
    from boto3.exceptions import Boto3Error  # noqa: PLC0415
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        yield
    except CloudError as error:
        _fail(error.format_message(), error.exit_code)
    except (BotoCoreError, ClientError) as error:
        _fail(describe_aws_error(error), 1)
    except Boto3Error as error:  # e.g. S3UploadFailedError wraps the ClientError as text
        _fail(str(error), 1)
    except KeyboardInterrupt as error:
        from onnxkit import stopping  # noqa: PLC0415

        _fail(*stopping.outcome(error))  # 130 for SIGINT, 143 for SIGTERM


def _fail(message: str, code: int) -> None:
    import typer  # noqa: PLC0415

    click.echo(f"error: {_one_line(message)}", err=True)
    sys.stderr.flush()
    raise typer.Exit(code)
