"""The state machine's JSONata expressions, evaluated with the JSONata engine (npm ``jsonata``).

Step Functions adds ``$states`` and functions such as ``$uuid()``; the harness binds the same
names, so Prepare's and Register's expressions run here exactly as written in the template.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from onnxkit.contract import workflow as wf
from tests.infra.conftest import SYNTH_GROUP, Synthesized
from tests.infra.test_pipeline_stack import definition

pytestmark = SYNTH_GROUP
REPO_ROOT = Path(__file__).resolve().parents[2]
HARNESS = """
const jsonata = require('jsonata');
let raw = '';
process.stdin.on('data', c => raw += c).on('end', async () => {
  const {expression, states, variables} = JSON.parse(raw);
  const expr = jsonata(expression.replace(/^\\{% /, '').replace(/ %\\}$/, ''));
  expr.registerFunction('uuid', () => '123e4567-e89b-42d3-a456-426614174000', '<:s>');
  try {
    const value = await expr.evaluate({}, {...variables, states});
    process.stdout.write(JSON.stringify({value}));
  } catch (error) {
    process.stdout.write(JSON.stringify({error: error.message}));
  }
});
"""
CONTEXT = {"Execution": {"Name": "run-1"}}


def evaluate(expression: str, variables: dict[str, Any] | None = None, **states: Any) -> Any:
    """Evaluate a ``{% ... %}`` expression with ``$states`` and workflow ``variables`` bound."""
    if not (REPO_ROOT / "node_modules" / "jsonata").exists():
        pytest.fail("the JSONata engine is not installed: run `make install` (npm ci)")
    result = subprocess.run(
        ["node", "-e", HARNESS],
        input=json.dumps({"expression": expression, "states": {"context": CONTEXT, **states},
                          "variables": variables or {}}),
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    outcome = json.loads(result.stdout)
    assert "error" not in outcome, outcome.get("error")
    return outcome["value"]


def test_prepare_merges_hyperparameters_as_strings(dev: Synthesized) -> None:
    output = definition(dev)["States"][wf.PREPARE]["Output"]
    run = {"train_s3_uri": "s3://b/data/train/",
           "hyperparameters": {"target": "churn", "model": "mlp", "max_iter": 50,
                               "model_name": "sneaky"}}  # fmt: skip
    state = evaluate(output, input=run)
    assert state["train_s3_uri"] == run["train_s3_uri"]  # the input is kept
    prepared = state["prepared"]
    hp = prepared["hyperparameters"]
    assert hp["model"] == "mlp" and hp["target"] == "churn"
    assert hp["max_iter"] == "50"  # SageMaker takes strings only
    assert hp["model_name"] == "onnxkit-model"  # the pipeline's own keys win
    assert hp["sagemaker_program"] == "train.py"
    assert hp["sagemaker_submit_directory"].startswith("s3://")
    assert all(isinstance(v, str) for v in hp.values())
    assert prepared["job_name"] == "onnxkit-model-123e4567-e89b-42d3-a456-426614174000"
    assert len(prepared["job_name"]) <= 63
    assert prepared["checkpoint_uri"].endswith(f"/checkpoints/{prepared['job_name']}/")
    (channel,) = prepared["channels"]
    assert channel == {"ChannelName": "train", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3DataDistributionType": "FullyReplicated",
        "S3Uri": "s3://b/data/train/"}}}  # fmt: skip


def test_prepare_adds_the_validation_channel_and_defaults(dev: Synthesized) -> None:
    output = definition(dev)["States"][wf.PREPARE]["Output"]
    prepared = evaluate(
        output, input={"train_s3_uri": "s3://b/t/", "validation_s3_uri": "s3://b/v/"}
    )["prepared"]
    assert [c["ChannelName"] for c in prepared["channels"]] == ["train", "validation"]
    assert prepared["channels"][1]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://b/v/"
    # No hyperparameters in the run: the configured ones.
    assert prepared["hyperparameters"]["model"] == "random_forest"


@pytest.mark.parametrize("metrics", [{"accuracy": 0.95, "f1_macro": 0.9}, {"r2": 0.5}])
def test_register_records_the_card_evaluate_built(
    dev: Synthesized, metrics: dict[str, float]
) -> None:
    register = definition(dev)["States"][wf.REGISTER]
    candidate = {"model_name": "onnxkit-model", "model_version": "20260101-abc",
                 "artifact_uri": "s3://b/training/j/output/model.tar.gz", "task": "x",
                 "primary_metric": next(iter(metrics)), "metrics": metrics,
                 "serving_variant": "int8", "sha256": "0" * 64}  # fmt: skip
    card = {"model_version": "20260101-abc", "importance.1": "0.2 tenure",
            **{f"metric.{k}": repr(v) for k, v in metrics.items()}}  # fmt: skip
    state = {"evaluation": {"passed": True, "candidate": candidate, "package_metadata": card}}
    properties = evaluate(register["Arguments"]["CustomerMetadataProperties"], input=state)
    # Evaluate's card, as it built it (within SageMaker's limits), plus the execution's name.
    assert properties == {**card, "execution": "run-1"}
    url = evaluate(
        register["Arguments"]["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
        input=state,
    )
    assert url == candidate["artifact_uri"]
    after = evaluate(
        register["Output"],
        input=state,
        result={"ModelPackageArn": "arn:aws:sagemaker:r:1:model-package/g/1"},
    )
    assert after["registration"] == {"model_package_arn": "arn:aws:sagemaker:r:1:model-package/g/1"}
    assert after["evaluation"] == state["evaluation"]
    caught = evaluate(
        register["Catch"][0]["Output"], input=state, errorOutput={"Error": "X", "Cause": "y"}
    )
    assert caught["error"] == {"Error": "X", "Cause": "y"}
