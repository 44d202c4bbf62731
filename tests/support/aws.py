"""Fake AWS for every tier: one isolated environment, moto in this process or as a server, and
the resources several tests create (a bucket, stub functions, a stack that only carries outputs).

``isolate`` is the one place that decides what a test's AWS environment is. ``mocked`` runs moto
in-process (``mock_aws``) inside it; the ``moto_url`` / ``moto`` fixtures (registered for all
tests by tests/conftest.py) run moto as a server on 127.0.0.1, for code that must reach AWS over
HTTP the way the CLI does.
"""

from __future__ import annotations

import io
import json
import os
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

REGION = "eu-west-1"
ACCESS_KEY_ID = "AKIDEXAMPLE"
SECRET_ACCESS_KEY = "fake-secret-key"  # the fake inference API verifies SigV4 with it
# What the machine running the tests may set that would select other credentials, a region,
# or another endpoint (AWS_ENDPOINT_URL_<SERVICE> variables are removed as well).
_MACHINE_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


def isolate(monkeypatch: pytest.MonkeyPatch, region: str = REGION) -> None:
    """Fake credentials and ``region`` in AWS_DEFAULT_REGION (the variable botocore reads), and
    nothing of the machine running the tests: no profile, session token, endpoint override,
    shared config or credentials file, or instance metadata."""
    for name in (*_MACHINE_VARIABLES, *(n for n in os.environ if n.startswith("AWS_ENDPOINT_URL"))):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@contextmanager
def mocked(
    monkeypatch: pytest.MonkeyPatch, region: str = REGION, config: Any = None
) -> Iterator[None]:
    """moto in this process (``mock_aws`` with ``config``) in the isolated environment; every
    resource is gone when the block ends."""
    from moto import mock_aws

    isolate(monkeypatch, region)
    with mock_aws(config=config):
        yield


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server on 127.0.0.1 for this test process."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point every boto3 client at the moto server, and empty it afterwards.

    The credentials and region are the test's own (the CLI tier's ``aws_env`` isolates them).
    """
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    yield moto_url
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()


def create_bucket(name: str, region: str = REGION, *, versioned: bool = True) -> Any:
    """A bucket in ``region`` (versioned, as the artifact bucket is, unless told otherwise);
    returns an S3 client of that region."""
    import boto3

    s3 = boto3.client("s3", region_name=region)
    # us-east-1 is the one region that takes no location constraint.
    where = {} if region == "us-east-1" else {"LocationConstraint": region}
    s3.create_bucket(Bucket=name, **({"CreateBucketConfiguration": where} if where else {}))
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return s3


def create_role(name: str, region: str = REGION) -> str:
    """An IAM role any function may be created with; its ARN."""
    import boto3

    role = boto3.client("iam", region_name=region).create_role(
        RoleName=name, AssumeRolePolicyDocument="{}"
    )
    arn: str = role["Role"]["Arn"]
    return arn


def create_stub_function(
    lam: Any, name: str, role: str, environment: dict[str, str] | None = None
) -> str:
    """A Python function whose code answers ``{}`` (the tests read its configuration, versions
    and aliases, or replace how it is invoked); its ARN."""
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return {}\n")
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": code.getvalue()},
        **({"Environment": {"Variables": environment}} if environment else {}),
    )
    arn: str = created["FunctionArn"]
    return arn


def moto_serving(
    region: str, bucket: str, function: str, environment: dict[str, str] | None = None
) -> tuple[Any, Any, str]:
    """Inside moto: a versioned artifact bucket and a stub inference function whose ``live``
    alias points at its first published version.

    Returns the S3 client, the Lambda client and that version.
    """
    import boto3

    s3 = create_bucket(bucket, region)
    lam = boto3.client("lambda", region_name=region)
    create_stub_function(lam, function, create_role("fn", region), environment)
    version = lam.publish_version(FunctionName=function)["Version"]
    lam.create_alias(FunctionName=function, Name="live", FunctionVersion=version)
    return s3, lam, version


def deploy_stack(name: str, outputs: dict[str, str], region: str = REGION) -> None:
    """Create a stack whose only job is to carry these outputs."""
    import boto3

    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=region).create_stack(
        StackName=name, TemplateBody=json.dumps(template)
    )


def pipeline_function_env(monkeypatch: pytest.MonkeyPatch, bucket: str, function: str) -> None:
    """The environment the Evaluate and Promote functions are deployed with."""
    for key, value in {
        "ARTIFACT_BUCKET": bucket,
        "FUNCTION_NAME": function,
        "ALIAS_NAME": "live",
    }.items():
        monkeypatch.setenv(key, value)


def deploy_kit_stacks(
    env: str, bucket: str, group: str, function: str, region: str = REGION
) -> None:
    """The Artifacts and Serving stacks of a deployed environment, carrying their outputs."""
    deploy_stack(
        f"OnnxKit-{env}-Artifacts",
        {
            "ArtifactBucketName": bucket,
            "DataUri": f"s3://{bucket}/data/",
            "ModelPackageGroupName": group,
            "KmsKeyArn": f"arn:aws:kms:{region}:1:key/x",
        },
        region,
    )
    deploy_stack(
        f"OnnxKit-{env}-Serving",
        {
            "ApiUrl": "https://example.invalid/",
            "FunctionName": function,
            "LiveAliasArn": f"arn:aws:lambda:{region}:1:function:{function}:live",
            "AuthMode": "iam",
        },
        region,
    )
