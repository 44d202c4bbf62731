"""CDK tier fixtures: each environment is synthesized once per session and shared.

Synthesis here skips CDK's built-in CloudFormation validation (about 14 s per synth);
test_cli_synth.py runs the real ``npx cdk synth`` with it on. Tests that use these fixtures
share one xdist group, so a session synthesizes each environment once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Before the jsii kernel (node) starts: no end-of-life banner, no telemetry.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")

REPO_ROOT = Path(__file__).resolve().parents[2]
SYNTH_GROUP = pytest.mark.xdist_group("cdk-synth")
# An environment that exercises the non-default branches: API keys, a schedule, x86_64,
# Lambda's START/END/REPORT lines back on, a 6-hourly drift check that may retrain, and no
# request capture.
VARIANT = {
    "api.auth_mode": "api_key",
    "api.quota_per_day": "100000",
    "retraining_schedule": "rate(7 days)",
    "training.target": "label",
    "training.use_spot": "false",
    "training.checkpointing": "false",
    "lambda.architecture": "x86_64",
    "lambda.reserved_concurrency": "20",
    "lambda.system_log_level": "INFO",
    "drift.interval_hours": "6",
    "drift.retrain_on_drift": "true",
    "capture.sample_rate": "0",
}

# The cheaper front doors (api.kind), on dev otherwise.
HTTP_API = {"api.kind": "http"}
FUNCTION_URL = {"api.kind": "function_url", "lambda.reserved_concurrency": "10"}


def cdk_json_context() -> dict[str, Any]:
    """The feature flags and defaults the CLI passes to the app from cdk.json."""
    context: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return context


@dataclass
class Synthesized:
    """One environment's synthesized app."""

    kit: Any  # infra.app.Kit
    outdir: Path
    templates: dict[str, dict[str, Any]]

    def template(self, part: str) -> dict[str, Any]:
        """The template of ``OnnxKit-<env>-<part>``."""
        return self.templates[self.kit.config.stack_name(part)]

    def resources(self, part: str, kind: str) -> dict[str, dict[str, Any]]:
        """Resources of one CloudFormation type in a stack, by logical id."""
        return {
            name: resource
            for name, resource in self.template(part)["Resources"].items()
            if resource["Type"] == kind
        }

    def one(self, part: str, kind: str) -> dict[str, Any]:
        """The only resource of a type in a stack."""
        found = list(self.resources(part, kind).values())
        assert len(found) == 1, f"{len(found)} {kind} in {part}"
        return found[0]


def synthesize(outdir: Path, env: str, overrides: dict[str, str] | None = None) -> Synthesized:
    """Build and synthesize the app (with cdk-nag) into ``outdir``."""
    from aws_cdk import App

    from infra.app import build
    from onnxkit.config import load_config

    context = {**cdk_json_context(), "env": env}
    app = App(outdir=str(outdir), context=context, builtin_cloud_formation_validation=False)
    kit = build(app, load_config(env, overrides or {}))
    assembly = app.synth()
    return Synthesized(kit, outdir, {s.stack_name: s.template for s in assembly.stacks})


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The dev environment, as ``cdk synth -c env=dev`` builds it."""
    return synthesize(tmp_path_factory.mktemp("cdk-dev"), "dev")


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The prod environment (retained, termination-protected)."""
    return synthesize(tmp_path_factory.mktemp("cdk-prod"), "prod")


@pytest.fixture(scope="session")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """dev with API keys, a retraining schedule, on-demand training and x86_64."""
    return synthesize(tmp_path_factory.mktemp("cdk-variant"), "dev", VARIANT)


@pytest.fixture(scope="session")
def http_kit(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """dev behind an HTTP API (``api.kind=http``)."""
    return synthesize(tmp_path_factory.mktemp("cdk-http"), "dev", HTTP_API)


@pytest.fixture(scope="session")
def url_kit(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """dev behind a function URL (``api.kind=function_url``, 10 reserved executions)."""
    return synthesize(tmp_path_factory.mktemp("cdk-url"), "dev", FUNCTION_URL)
