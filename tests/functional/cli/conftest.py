"""Fixtures for the CLI tier: isolated AWS settings, the fake inference API, a CliRunner.

The moto server (``moto``, ``moto_url``) comes from tests/support/aws.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from onnxkit.cloud import api as api_mod
from tests.support.aws import REGION, isolate
from tests.support.fake_api import FakeApi, serve


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, and no shared config from the machine running tests."""
    isolate(monkeypatch)
    # The region as the AWS CLI users set it: AWS_REGION, which botocore alone does not read
    # (onnxkit.cloud.discovery does).
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("ORT_DISABLE_TELEMETRY", "1")
    # Retries still happen and are counted; they just do not wait.
    monkeypatch.setattr(api_mod, "DEFAULT_POLICY", api_mod.RetryPolicy(base=0.0, cap=0.0))


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in the credential chain."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")


@pytest.fixture
def fake_api() -> Iterator[tuple[FakeApi, str]]:
    """The fake inference API without auth; tests set ``secret`` / ``api_key`` as needed."""
    api = FakeApi()
    server, url = serve(api)
    yield api, url
    server.shutdown()
    server.server_close()


@pytest.fixture
def runner() -> CliRunner:
    """A CliRunner that keeps stderr apart from stdout."""
    return CliRunner()
