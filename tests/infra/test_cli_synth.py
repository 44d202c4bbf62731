"""The real CLI: ``npx cdk synth`` from the repository root, as a user runs it.

This is the one synth with CDK's built-in CloudFormation validation left on.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from onnxkit.contract.layout import STACK_PARTS, stack_name

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK = REPO_ROOT / "node_modules" / ".bin" / "cdk"
pytestmark = pytest.mark.xdist_group("cdk-cli")


def _cli(*args: str, outdir: Path) -> subprocess.CompletedProcess[str]:
    if not CDK.exists():
        pytest.fail("the pinned CDK CLI is not installed: run `make install` (npm ci)")
    # A user's shell, not pytest's: no PYTEST_* variables reach the app.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        {
            "CDK_DISABLE_CLI_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "ORT_DISABLE_TELEMETRY": "1",
        }
    )
    env.pop("CDK_VALIDATION", None)
    command = ["npx", "--no-install", "cdk", "synth", "--no-notices", "--quiet",
               "--output", str(outdir), *args]  # fmt: skip
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False, timeout=600
    )


def test_npx_cdk_synth_builds_the_cloud_assembly(tmp_path: Path) -> None:
    outdir = tmp_path / "cdk.out"
    result = _cli("-c", "env=dev", outdir=outdir)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((outdir / "manifest.json").read_text())
    stacks = {
        name
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    assert stacks == {stack_name("dev", part) for part in STACK_PARTS}
    for stack in stacks:
        template = json.loads((outdir / f"{stack}.template.json").read_text())
        assert template["Resources"]
        assert manifest["artifacts"][stack]["environment"] == "aws://unknown-account/us-east-1"
    serving = manifest["artifacts"]["OnnxKit-dev-Serving"]
    assert "OnnxKit-dev-Artifacts" in serving["dependencies"]
    report = json.loads((outdir / "validation-report.json").read_text())
    assert [v for r in report["pluginReports"] for v in r["violations"]] == []
    # Assets were bundled locally: the inference code is a staged directory, no Docker.
    assets = json.loads((outdir / "OnnxKit-dev-Serving.assets.json").read_text())
    packaging = {a["source"]["packaging"] for a in assets["files"].values()}
    assert "zip" in packaging
    assert "NOTICES" not in result.stdout + result.stderr
    # CDK's own template validation ran (it is on here) and found nothing to warn about.
    assert "Template validation found issues" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        (
            "api.auth_mode=cognito",
            "invalid setting api.auth_mode='cognito': Input should be 'iam' or 'api_key'",
        ),
        (
            "training.instance_count=2",
            "invalid setting training.instance_count='2': SageMaker's scikit-learn container "
            "trains on one instance; choose a larger training.instance_type instead",
        ),
    ],
)
def test_npx_cdk_synth_rejects_a_bad_setting_in_one_line(
    tmp_path: Path, setting: str, line: str
) -> None:
    result = _cli("-c", "env=dev", "-c", setting, outdir=tmp_path / "bad")
    assert result.returncode != 0
    ours = [out for out in result.stderr.splitlines() if out.startswith("onnxkit:")]
    assert ours == [f"onnxkit: {line}"], result.stderr
    assert not (tmp_path / "bad" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("settings", "resource"),
    [
        (("-c", "api.kind=http"), "AWS::ApiGatewayV2::Api"),
        (
            ("-c", "api.kind=function_url", "-c", "lambda.reserved_concurrency=10"),
            "AWS::Lambda::Url",
        ),
    ],
)
def test_npx_cdk_synth_builds_each_front_door(
    tmp_path: Path, settings: tuple[str, ...], resource: str
) -> None:
    """The cheaper front doors synthesize through the real CLI, CDK's validation on."""
    outdir = tmp_path / "cdk.out"
    result = _cli("-c", "env=dev", *settings, outdir=outdir)
    assert result.returncode == 0, result.stdout + result.stderr
    serving = json.loads((outdir / "OnnxKit-dev-Serving.template.json").read_text())
    assert any(r["Type"] == resource for r in serving["Resources"].values())
    assert not any(r["Type"].startswith("AWS::ApiGateway::") for r in serving["Resources"].values())
    assert serving["Outputs"]["ApiKind"]["Value"] == settings[1].removeprefix("api.kind=")
    report = json.loads((outdir / "validation-report.json").read_text())
    assert [v for r in report["pluginReports"] for v in r["violations"]] == []
    assert "Template validation found issues" not in result.stderr, result.stderr


def test_npx_cdk_synth_rejects_api_keys_on_a_function_url_in_one_line(tmp_path: Path) -> None:
    settings = ("-c", "api.kind=function_url", "-c", "api.auth_mode=api_key")
    result = _cli("-c", "env=prod", *settings, outdir=tmp_path / "bad")
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("onnxkit:")]
    assert ours == [
        "onnxkit: invalid setting api.kind='function_url': auth_mode=api_key needs kind=rest "
        "(HTTP APIs and function URLs have no API keys or usage plans); use auth_mode=iam"
    ], result.stderr
