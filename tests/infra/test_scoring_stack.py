"""The scoring stack: a valid Distributed Map definition (asl-validator), its reader, batcher,
writer and limits from the config, the contract's shapes, least-privilege IAM and alarms."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from onnxkit.contract import layout
from onnxkit.contract import scoring as contract
from tests.infra.conftest import REPO_ROOT, SYNTH_GROUP, Synthesized, synthesize
from tests.infra.test_jsonata import evaluate

pytestmark = SYNTH_GROUP

# Deploy-time values as a deployed template would hold them, so the ARN checks see real ARNs.
_TOKENS = {
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
}
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:onnxkit-dev-scoring"


def _value(part: Any) -> str:
    if isinstance(part, str):
        return part
    if "Ref" in part and part["Ref"] in _TOKENS:
        return _TOKENS[part["Ref"]]
    if "Fn::GetAtt" in part and part["Fn::GetAtt"][1] == "Arn":
        return FUNCTION_ARN
    raise AssertionError(f"unexpected token {part}")


def definition(kit: Synthesized) -> dict[str, Any]:
    """The scoring state machine's ASL with deploy-time values filled in."""
    machine = kit.one("Scoring", "AWS::StepFunctions::StateMachine")["Properties"]
    _, pieces = machine["DefinitionString"]["Fn::Join"]
    parsed: dict[str, Any] = json.loads("".join(_value(p) for p in pieces))
    return parsed


def asl_validator(asl: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """npm's asl-validator (it checks JSONata expressions too) on a definition."""
    validator = REPO_ROOT / "node_modules" / ".bin" / "asl-validator"
    if not validator.exists():
        pytest.fail("asl-validator is not installed: run `make install` (npm ci)")
    path = tmp_path / "scoring.asl.json"
    path.write_text(json.dumps(asl))
    return subprocess.run(
        [str(validator), "--json-path", str(path)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_the_definition_is_valid_asl(dev: Synthesized, tmp_path: Path) -> None:
    result = asl_validator(definition(dev), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "break_it",
    [
        lambda asl: asl["States"]["Score"]["ItemReader"].pop("Resource"),
        lambda asl: asl["States"]["Score"]["ItemBatcher"].update(MaxItemsPerBatch="many"),
        lambda asl: asl["States"]["Plan"].update(Next="Nowhere"),
        lambda asl: asl["States"]["Summarize"]["Arguments"]["Payload"].update(plan="{% $plan. %}"),
    ],
)
def test_asl_validator_refuses_a_broken_definition(
    dev: Synthesized, tmp_path: Path, break_it: Any
) -> None:
    asl = definition(dev)
    break_it(asl)
    assert asl_validator(asl, tmp_path).returncode != 0


def test_plan_map_summarize_in_order_with_the_map_in_distributed_express_mode(
    dev: Synthesized,
) -> None:
    asl = definition(dev)
    assert asl["QueryLanguage"] == "JSONata"
    assert asl["StartAt"] == "Plan"
    assert asl["States"]["Plan"]["Next"] == "Score"
    assert asl["States"]["Score"]["Next"] == "Summarize"
    assert asl["States"]["Summarize"]["End"] is True
    score = asl["States"]["Score"]
    assert score["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "EXPRESS",
    }
    child = score["ItemProcessor"]["States"]["ScoreParts"]
    assert child["Arguments"]["FunctionName"] == FUNCTION_ARN
    retried = {e for r in child["Retry"] for e in r["ErrorEquals"]}
    assert "Lambda.TooManyRequestsException" in retried
    assert "ScoringError" not in retried and "States.ALL" not in retried  # bad input fails fast
    # No Catch on the map: a failed map fails the execution there, which is what redrive resumes.
    assert "Catch" not in score


def test_reader_batcher_and_writer(dev: Synthesized) -> None:
    score = definition(dev)["States"]["Score"]
    reader = score["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"] == {"InputType": "JSON"}
    plan = {"plan_key": "scoring/output/run/plan.json", "output_prefix": "scoring/output/run/"}
    assert evaluate(reader["Arguments"]["Key"], {"plan": plan}) == plan["plan_key"]
    assert reader["Arguments"]["Bucket"] == "onnxkit-dev-artifacts-123456789012-us-east-1"
    batcher = score["ItemBatcher"]
    assert batcher["MaxInputBytesPerBatch"] == 256 * 1024
    assert batcher["MaxItemsPerBatch"] == dev.kit.config.scoring.parts_per_child
    writer = score["ResultWriter"]
    assert writer["Resource"] == "arn:aws:states:::s3:putObject"
    assert writer["WriterConfig"] == {"OutputType": "JSONL", "Transformation": "FLATTEN"}
    assert evaluate(writer["Arguments"]["Prefix"], {"plan": plan}) == "scoring/output/run/map/"


def test_batch_input_built_from_a_plan_is_the_contract_s(dev: Synthesized) -> None:
    plan = contract.Plan(
        bucket="b", output_prefix="scoring/output/r/", plan_key="scoring/output/r/plan.json",
        format="csv", id_column="id", objects=1, parts=3, bytes=100,
        started_at="2026-12-06T00:00:00+00:00",
        model=contract.PinnedModel(name="m", version="v1", uri="s3://b/models/m/v1/model.onnx",
                                   sha256="0" * 64, manifest_sha256="1" * 64),
    )  # fmt: skip
    batch_input = definition(dev)["States"]["Score"]["ItemBatcher"]["BatchInput"]
    built = {key: evaluate(value, {"plan": plan.to_dict()}) for key, value in batch_input.items()}
    assert set(built) == set(contract.BatchInput.__struct_fields__)
    decoded = contract.decode(built, contract.BatchInput)
    assert decoded.model == plan.model and decoded.id_column == "id"
    summarize = definition(dev)["States"]["Summarize"]["Arguments"]["Payload"]
    request = {"input_uri": "s3://b/scoring/input/x.csv", "output_uri": "s3://b/scoring/output/r/"}
    payload = {k: evaluate(v, {"plan": plan.to_dict(), "request": request}) if "{%" in v else v
               for k, v in summarize.items()}  # fmt: skip
    assert payload == {"step": "summarize", "plan": plan.to_dict(), "request": request}
    msgspec.convert(payload["plan"], contract.Plan)


def test_concurrency_and_tolerated_failures_come_from_the_config(tmp_path: Path) -> None:
    kit = synthesize(
        tmp_path,
        "dev",
        {"scoring.max_concurrency": "7", "scoring.tolerated_failure_percentage": "2.5",
         "scoring.parts_per_child": "3"},
    )  # fmt: skip
    score = definition(kit)["States"]["Score"]
    assert score["MaxConcurrency"] == 7
    assert score["ToleratedFailurePercentage"] == 2.5
    assert score["ItemBatcher"]["MaxItemsPerBatch"] == 3
    function = kit.one("Scoring", "AWS::Lambda::Function")["Properties"]
    assert function["ReservedConcurrentExecutions"] == 7


def test_the_scoring_function_runs_the_inference_bundle_under_its_own_name(
    dev: Synthesized,
) -> None:
    function = dev.one("Scoring", "AWS::Lambda::Function")["Properties"]
    assert function["FunctionName"] == layout.scoring_function_name("dev")
    assert function["Handler"] == "functions.inference.scoring_handler.lambda_handler"
    assert function["ReservedConcurrentExecutions"] == dev.kit.config.scoring.max_concurrency
    assert function["MemorySize"] == dev.kit.config.scoring.memory_mb
    env = function["Environment"]["Variables"]
    assert set(env) >= {layout.ARTIFACT_BUCKET_ENV, layout.MODEL_NAME_ENV}
    assert int(env[layout.PART_BYTES_ENV]) == dev.kit.config.scoring.part_mb * 1024 * 1024
    serving = next(  # the inference function (the Serving stack also has the drift check's)
        f["Properties"]
        for f in dev.resources("Serving", "AWS::Lambda::Function").values()
        if f["Properties"].get("FunctionName") == layout.inference_function_name("dev")
    )
    assert function["Code"]["S3Key"] == serving["Code"]["S3Key"]  # the very same bundle
    machine = dev.one("Scoring", "AWS::StepFunctions::StateMachine")["Properties"]
    assert machine["StateMachineName"] == layout.scoring_state_machine_name("dev")
    outputs = dev.template("Scoring")["Outputs"]
    assert set(outputs) >= set(layout.STACK_OUTPUTS["Scoring"])


def _statements(kit: Synthesized, prefix: str) -> list[dict[str, Any]]:
    found = []
    for name, policy in kit.resources("Scoring", "AWS::IAM::Policy").items():
        if name.startswith(prefix):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    assert found, prefix
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _object_grants(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """S3 object actions by the key prefix they are granted on."""
    grants: dict[str, set[str]] = {}
    for statement in statements:
        actions = [a for a in _as_list(statement["Action"]) if a.startswith("s3:")]
        for resource in _as_list(statement["Resource"]):
            text = json.dumps(resource)
            if "arn:aws:s3:::" not in text or "/" not in text.split("arn:aws:s3:::", 1)[1]:
                continue
            _, key = resource["Fn::Join"][1][-1].split("/", 1)
            grants.setdefault(key, set()).update(actions)
    return grants


def test_least_privilege(dev: Synthesized) -> None:
    function = _object_grants(_statements(dev, "FunctionRole"))
    assert function == {
        "models/*": {"s3:GetObject", "s3:GetObjectVersion"},
        "scoring/input/*": {"s3:GetObject", "s3:GetObjectVersion"},
        "scoring/output/*": {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"},
    }
    machine_statements = _statements(dev, "WorkflowStateMachine")
    machine = _object_grants(machine_statements)
    assert set(machine) == {"scoring/output/*"}  # reads plan.json, writes map/ results
    assert "s3:DeleteObject" not in machine["scoring/output/*"]
    invoked = [s for s in machine_statements if "lambda:InvokeFunction" in _as_list(s["Action"])]
    for statement in invoked:
        for resource in _as_list(statement["Resource"]):
            assert "Function6B188E59" in json.dumps(resource) or "Scoring" in json.dumps(resource)
    starts = [s for s in machine_statements if "states:StartExecution" in _as_list(s["Action"])]
    assert starts and all(
        "WorkflowStateMachine" in json.dumps(s["Resource"]) for s in starts
    )  # only its own children


def test_alarms_notify_the_topic(dev: Synthesized) -> None:
    alarms = dev.resources("Scoring", "AWS::CloudWatch::Alarm")
    metrics = {a["Properties"]["MetricName"] for a in alarms.values()}
    assert {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted", "Errors"} <= metrics
    for alarm in alarms.values():
        (action,) = alarm["Properties"]["AlarmActions"]
        assert "AlarmTopic" in json.dumps(action)
    topic = dev.one("Scoring", "AWS::SNS::Topic")["Properties"]
    assert "KmsMasterKeyId" in topic
