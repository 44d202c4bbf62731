"""``onnxkit card --env`` and ``onnxkit models --env`` against moto: a trained model promoted
twice by the pipeline's own Evaluate and Promote handlers, its versions registered with the
card Evaluate built, and the card of the live model read back through the production pointer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from typer.testing import CliRunner

from functions.pipeline import handlers
from onnxkit.contract import workflow
from onnxkit.contract.gate import QualityGate
from onnxkit.contract.layout import MANIFEST_FILE, pointer_key
from tests.conftest import ArtifactFactory
from tests.support.artifacts import tarball
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
GROUP = "kit-models"
NAME = "customer-churn"

pytestmark = pytest.mark.xdist_group("pipeline-moto")


@pytest.fixture(scope="module")
def model_dir(train_artifact: ArtifactFactory) -> Path:
    # The card and drift tests' artifact: one training per session for all.
    return train_artifact("customer_churn")


def _archive(model_dir: Path, version: str) -> bytes:
    """The trained model as model.tar.gz, under another model version."""
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    manifest["model_name"], manifest["model_version"] = NAME, version
    extra = {
        name: (model_dir / name).read_bytes()
        for name in manifest["files"]
        if name != manifest["serving"]["file"]
    }
    return tarball(manifest, (model_dir / manifest["serving"]["file"]).read_bytes(), extra)


@pytest.fixture
def kit(monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> Iterator[dict[str, Any]]:
    """A deployed "test" environment: v1 promoted, then v2 gated against it and promoted, each
    registered with the package metadata Evaluate built (as the Register state sends it)."""
    pipeline_function_env(monkeypatch, BUCKET, FUNCTION)
    with mocked(monkeypatch, REGION):
        s3, _, _ = moto_serving(REGION, BUCKET, FUNCTION)
        deploy_kit_stacks("test", BUCKET, GROUP, FUNCTION)
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        decisions = []
        for version in ("v1", "v2"):
            key = f"training/{version}/model.tar.gz"
            s3.put_object(Bucket=BUCKET, Key=key, Body=_archive(model_dir, version))
            gate = QualityGate.model_validate({})
            decision = handlers.evaluate(
                dict(workflow.evaluate_event(NAME, f"s3://{BUCKET}/{key}", gate))
            )
            assert decision["passed"], decision["reasons"]
            sagemaker.create_model_package(
                ModelPackageGroupName=GROUP,
                ModelApprovalStatus="Approved",
                CustomerMetadataProperties={**decision["package_metadata"], "execution": version},
                InferenceSpecification={
                    "Containers": [{"Image": "sklearn", "ModelDataUrl": f"s3://{BUCKET}/{key}"}],
                    "SupportedContentTypes": ["application/json"],
                    "SupportedResponseMIMETypes": ["application/json"],
                },
            )
            event = workflow.promote_event(cast(workflow.EvaluateResult, decision), "arn:pkg")
            handlers.promote(dict(event))
            decisions.append(decision)
        yield {"s3": s3, "decisions": decisions}


def _invoke(*args: str) -> Any:
    return invoke(CliRunner(env={"COLUMNS": "200"}), *args)


def test_the_card_of_the_live_model_compares_it_with_production_at_the_gate(
    kit: dict[str, Any],
) -> None:
    result = _invoke("card", "--env", "test")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(f"# Model card: {NAME} v2\n")
    assert "\n## Quality gate\n" in out
    assert "The quality gate passed on " in out and "production was v1 (balanced_accuracy" in out
    assert "| production v1 (at gate) |" in out and "lift over production |" in out
    card = json.loads(_invoke("card", "--env", "test", "--json").output)
    served = kit["decisions"][1]["candidate"]["metrics"]
    production = kit["decisions"][0]["candidate"]["metrics"]
    assert card["gate"]["production"]["model_version"] == "v1"
    assert card["metrics"]["production_at_gate"]["metrics"] == production
    # The same training: no lift over itself, and a real one over the naive baseline.
    assert card["metrics"]["lift_over_production"]["accuracy"] == 0.0
    assert card["metrics"]["lift_over_baseline"]["accuracy"] > 0
    assert card["model"]["version"] == "v2" and served == card["metrics"]["variants"]["int8"]


def test_the_models_table_shows_top_features_and_production_at_the_gate(
    kit: dict[str, Any],
) -> None:
    listed = json.loads(_invoke("models", "--env", "test", "--json").output)
    newest, oldest = listed
    assert (newest["model_version"], newest["live"]) == ("v2", True)
    importance = kit["decisions"][1]["package_metadata"]
    top = [f["name"] for f in newest["top_features"]]
    assert len(top) == 5 and top[0] == importance["importance.1"].split(" ", 1)[1]
    assert newest["production_at_gate"]["model_version"] == "v1"
    assert oldest["production_at_gate"] is None
    table = _invoke("models", "--env", "test")
    assert table.exit_code == 0, table.output
    assert "top features" in table.output and f"{top[0]}, {top[1]}," in table.output


@pytest.mark.parametrize("field", ["manifest_sha256", "sha256"])
def test_a_live_model_that_is_not_what_the_pointer_pins_is_refused(
    kit: dict[str, Any], field: str
) -> None:
    s3 = kit["s3"]
    pointer = json.loads(s3.get_object(Bucket=BUCKET, Key=pointer_key(NAME))["Body"].read())
    pointer[field] = "f" * 64
    s3.put_object(Bucket=BUCKET, Key=pointer_key(NAME), Body=json.dumps(pointer))
    # Without the Serving stack the pointer is the record of what is live.
    boto3.client("cloudformation", region_name=REGION).delete_stack(
        StackName="OnnxKit-test-Serving"
    )
    result = _invoke("card", "--env", "test")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "sha256" in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "nope"], "OnnxKit-nope-Artifacts not found"),
        (["--env", "test", "--name", "other"], "other has no model in production"),
        (["--env", "test", "--model", "x"], "one of them"),
        (["--name", "x", "--model", "y"], "--name goes with --env"),
    ],
)
def test_bad_card_arguments_are_one_line(
    kit: dict[str, Any], args: list[str], message: str
) -> None:
    result = _invoke("card", *args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
