"""``onnxkit rollback --env``: discovery by stack outputs, then the pipeline's rollback step,
against moto (CloudFormation stacks carrying the outputs docs/CONTRACTS.md names)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from functions.pipeline import handlers
from functions.pipeline.aws import S3Store
from functions.pipeline.ports import read_pointer
from onnxkit.contract import workflow
from onnxkit.contract.gate import QualityGate
from tests.support.artifacts import artifact
from tests.support.aws import (
    REGION,
    deploy_kit_stacks,
    mocked,
    moto_serving,
    pipeline_function_env,
)
from tests.support.cli import invoke

BUCKET = "kit-artifacts"
FUNCTION = "kit-inference"

pytestmark = pytest.mark.xdist_group("pipeline-moto")


@pytest.fixture
def kit(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A deployed "test" environment in moto with two promoted versions of ``cancer``."""
    pipeline_function_env(monkeypatch, BUCKET, FUNCTION)
    with mocked(monkeypatch, REGION):
        s3, lam, _ = moto_serving(REGION, BUCKET, FUNCTION)
        deploy_kit_stacks("test", BUCKET, "cancer", FUNCTION)
        promoted = []
        for version in ("v1", "v2"):
            _, data = artifact(version)
            key = f"training/{version}/model.tar.gz"
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)
            decision = handlers.evaluate(
                dict(
                    workflow.evaluate_event(
                        "cancer", f"s3://{BUCKET}/{key}", QualityGate.model_validate({})
                    )
                )
            )
            event = workflow.promote_event(cast(workflow.EvaluateResult, decision), "arn:pkg")
            promoted.append(handlers.promote(dict(event)))
        yield {"s3": s3, "lambda": lam, "promoted": promoted}


def _invoke(*args: str) -> Any:
    return invoke(CliRunner(env={"COLUMNS": "120"}), "rollback", *args)


def test_rollback_on_a_deployed_environment(kit: dict[str, Any]) -> None:
    first, _ = kit["promoted"]
    result = _invoke("--env", "test", "--region", REGION)
    assert result.exit_code == 0, result.output
    assert "v2 -> v1" in result.output
    alias = kit["lambda"].get_alias(FunctionName=FUNCTION, Name="live")
    assert alias["FunctionVersion"] == first["lambda_version"]
    pointer = read_pointer(S3Store(kit["s3"], BUCKET), "cancer")
    assert pointer is not None and pointer.model_version == "v1"


def test_rollback_to_an_unknown_version_is_one_line(kit: dict[str, Any]) -> None:
    result = _invoke("--env", "test", "--to", "v9")
    assert result.exit_code == 1
    assert result.output.strip() == ("error: v9 is not a previous version of cancer (previous: v1)")


def test_rollback_on_a_missing_environment_is_one_line(kit: dict[str, Any]) -> None:
    result = _invoke("--env", "nope")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "OnnxKit-nope-Artifacts not found" in lines[0]
