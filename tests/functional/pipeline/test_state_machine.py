"""The synthesized state machine, executed by moto's Step Functions interpreter, next to the
local runner.

The definition is the CDK app's own (``infra.app.build``), tokens resolved to moto resources.
Evaluate and Promote are invoked as Lambda tasks and run the real handlers in-process against
moto's S3 and Lambda; the Notify states publish to a moto SNS topic whose messages an SQS
queue collects.

Adapted, because moto's interpreter cannot run them (said per state):

* ``Prepare`` is a JSONata Pass state and moto ships no JSONata engine: replaced by a
  JSONPath Pass state with the same name, ``Next`` and the ``$.prepared`` it would produce.
* ``Train`` is ``sagemaker:createTrainingJob.sync`` (no SageMaker jobs in moto): its resource
  becomes a scripted Lambda returning DescribeTrainingJob's fields (or failing with the job's
  FailureReason); the definition's ``ResultSelector``, ``ResultPath`` and ``Catch`` are kept.
* ``Register`` is a JSONata ``aws-sdk:sagemaker:createModelPackage`` task: replaced by a
  JSONPath task on a scripted Lambda with the same ``Next``, ``Retry`` and catch target,
  whose result lands at ``$.registration``.

Every other state (the QualityGate Choice, the SNS tasks, Succeed/Fail, every Catch and
transition) is executed as synthesized.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import boto3
import pytest

from functions.pipeline import handlers
from functions.pipeline.aws import S3Store
from functions.pipeline.ports import read_pointer
from onnxkit.config import OnnxKitConfig, load_config
from onnxkit.contract import layout, workflow
from onnxkit.local.runner import RunRequest, run_workflow
from onnxkit.local.training import TrainingFailed
from tests.support.artifacts import artifact, tarball
from tests.support.aws import create_bucket, create_role, create_stub_function, mocked

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "onnxkit-artifacts"
NAME = "cancer"
# A non-default threshold: the synthesized gate and the local gate must both carry it.
OVERRIDES = {"model_name": NAME, "gate.min_accuracy": "0.9"}

pytestmark = pytest.mark.xdist_group("pipeline-state-machine")


@pytest.fixture(scope="module")
def config() -> OnnxKitConfig:
    return load_config("dev", OVERRIDES)


@pytest.fixture(scope="module")
def template(config: OnnxKitConfig) -> dict[str, Any]:
    """The Pipeline stack's CloudFormation template, synthesized by the CDK app."""
    aws_cdk = pytest.importorskip("aws_cdk")
    from infra.app import build

    app = aws_cdk.App(context={"aws:cdk:bundling-stacks": []})
    kit = build(app, config, nag=False)
    assembly = app.synth()
    result: dict[str, Any] = assembly.get_stack_by_name(kit.pipeline.stack_name).template
    return result


def _resolve(value: Any, names: dict[str, str]) -> str:
    """One CloudFormation token of the definition, as a moto-side string."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        ref = value["Ref"]
        return {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}.get(
            ref
        ) or names.get(ref, f"ref-{ref}")
    if "Fn::GetAtt" in value:
        return names.get(value["Fn::GetAtt"][0], f"arn:aws:iam::{ACCOUNT}:role/placeholder")
    return "placeholder"  # Fn::Sub / Fn::ImportValue: asset and bucket names, unused here


def definition(template: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The synthesized ASL with its tokens resolved."""
    machines = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"
    ]
    assert len(machines) == 1
    raw = machines[0]["Properties"]["DefinitionString"]
    text = (
        "".join(_resolve(part, names) for part in raw["Fn::Join"][1])
        if isinstance(raw, dict)
        else raw
    )
    result: dict[str, Any] = json.loads(text)
    return result


def _lambda_logical_ids(template: dict[str, Any]) -> dict[str, str]:
    """Handler -> logical id of the pipeline's functions."""
    return {
        r["Properties"].get("Handler"): lid
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
    }


def _topic_logical_id(template: dict[str, Any]) -> str:
    topics = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::SNS::Topic"]
    assert len(topics) == 1
    return topics[0]


def adapt(asl: dict[str, Any], fake_arn: Callable[[str], str]) -> dict[str, Any]:
    """Replace the states moto cannot run (see the module docstring)."""
    states = copy.deepcopy(asl)["States"]
    prepare = states[workflow.PREPARE]
    assert prepare.get("QueryLanguage") == "JSONata"
    states[workflow.PREPARE] = {
        "Type": "Pass",
        "Next": prepare["Next"],
        "ResultPath": workflow.PREPARED_PATH,
        "Result": {"job_name": "cancer-job-1", "hyperparameters": {"target": "target"}},
    }
    train = states[workflow.TRAIN]
    assert train["Resource"].endswith(":states:::sagemaker:createTrainingJob.sync")
    train["Resource"] = fake_arn("Train")
    train["Parameters"] = {"job_name.$": "$.prepared.job_name"}
    register = states[workflow.REGISTER]
    assert "createModelPackage" in register["Resource"]
    states[workflow.REGISTER] = {
        "Type": "Task",
        "Resource": fake_arn("Register"),
        "Next": register["Next"],
        "Parameters": {"candidate.$": "$.evaluation.candidate"},
        "ResultPath": workflow.REGISTRATION_PATH,
        "Retry": register.get("Retry", []),
        "Catch": [
            {
                "ErrorEquals": ["States.ALL"],
                "ResultPath": workflow.ERROR_PATH,
                "Next": register["Catch"][0]["Next"],
            }
        ],
    }
    return {**asl, "States": states}


class Script:
    """What the scripted tasks do, and the Lambda functions the definition invokes."""

    def __init__(self) -> None:
        self.train: Callable[[], dict[str, Any]] = lambda: {}
        self.register_hook: Callable[[], None] = lambda: None

    def dispatch(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        if function == "Evaluate":
            return handlers.evaluate(event)
        if function == "Promote":
            return handlers.promote(event)
        if function == "Train":
            return self.train()
        if function == "Register":
            self.register_hook()
            return {
                "model_package_arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{NAME}/1"
            }
        raise AssertionError(f"unexpected function {function}")


@pytest.fixture
def cloud(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto with the bucket, the inference function and alias, the topic and a queue on it,
    the pipeline functions, and the adapted state machine."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    for key, value in {
        "ARTIFACT_BUCKET": BUCKET,
        "FUNCTION_NAME": "inference",
        "ALIAS_NAME": layout.ALIAS_NAME,
    }.items():
        monkeypatch.setenv(key, value)
    script = Script()

    def invoke(
        self: Any,
        function_name: str,
        qualifier: Any,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        name = (
            function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
        )
        try:
            result = script.dispatch(name, json.loads(body or "{}"))
        except Exception as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {"errorType": type(error).__name__, "errorMessage": str(error)}
            ).encode()
        return json.dumps(result).encode()

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    settings: Any = {
        "stepfunctions": {"execute_state_machine": True},
        "lambda": {"use_docker": False},
    }
    with mocked(monkeypatch, REGION, config=settings):
        s3 = create_bucket(BUCKET, REGION)
        role = create_role("role", REGION)
        lam = boto3.client("lambda", region_name=REGION)
        arns = {
            function: create_stub_function(
                lam, function, role, {"MODEL_URI": "", "MODEL_SHA256": ""}
            )
            for function in ("inference", "Evaluate", "Promote", "Train", "Register")
        }
        lam.create_alias(
            FunctionName="inference",
            Name="live",
            FunctionVersion=lam.publish_version(FunctionName="inference")["Version"],
        )
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="notifications")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        handlers_ids = _lambda_logical_ids(template)
        names = {
            handlers_ids[workflow.EVALUATE_HANDLER]: arns["Evaluate"],
            handlers_ids[workflow.PROMOTE_HANDLER]: arns["Promote"],
            _topic_logical_id(template): topic,
        }
        asl = adapt(definition(template, names), lambda state: arns[state])
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(
            name="pipeline", definition=json.dumps(asl), roleArn=role
        )["stateMachineArn"]
        yield {
            "s3": s3,
            "lambda": lam,
            "sfn": sfn,
            "sqs": sqs,
            "queue": queue,
            "machine": machine,
            "script": script,
            "asl": asl,
        }


def _execute(cloud: dict[str, Any]) -> dict[str, Any]:
    sfn = cloud["sfn"]
    cloud["runs"] = cloud.get("runs", 0) + 1
    run = sfn.start_execution(
        stateMachineArn=cloud["machine"],
        name=f"run-{cloud['runs']}",
        input=json.dumps({"train_s3_uri": f"s3://{BUCKET}/data/"}),
    )
    for _ in range(600):
        found = sfn.describe_execution(executionArn=run["executionArn"])
        if found["status"] != "RUNNING":
            break
        time.sleep(0.05)
    events = sfn.get_execution_history(executionArn=run["executionArn"])["events"]
    path = [
        e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")
    ]
    output = json.loads(found.get("output") or "null")
    return {
        "status": found["status"],
        "path": path,
        "output": output,
        "error": found.get("error"),
        "cause": found.get("cause"),
    }


def _messages(cloud: dict[str, Any]) -> list[dict[str, Any]]:
    got = cloud["sqs"].receive_message(QueueUrl=cloud["queue"], MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def _stage(cloud: dict[str, Any], version: str, data: bytes | None = None, **kwargs: Any) -> None:
    """Put a candidate in the bucket and script Train to report it."""
    data = data or artifact(version, name=NAME, **kwargs)[1]
    key = f"jobs/{version}/output/model.tar.gz"
    cloud["s3"].put_object(Bucket=BUCKET, Key=key, Body=data)
    cloud["script"].train = lambda: {
        "TrainingJobName": f"job-{version}",
        "TrainingJobStatus": "Completed",
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/job-{version}",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/{key}"},
    }


def _live_sha(cloud: dict[str, Any]) -> str:
    lam = cloud["lambda"]
    alias = lam.get_alias(FunctionName="inference", Name="live")
    config = lam.get_function_configuration(
        FunctionName="inference", Qualifier=alias["FunctionVersion"]
    )
    sha: str = config["Environment"]["Variables"]["MODEL_SHA256"]
    return sha


def _expected_path(*, passed: bool | None, failing: str | None = None) -> list[str]:
    """The states onnxkit.contract.workflow (the local runner's source) says a run goes through."""
    path: list[str] = []
    current: str | None = workflow.START_AT
    while current is not None:
        path.append(current)
        if current == failing:
            current = workflow.next_state(current, error=True)
            failing = None
        elif workflow.step(current).kind == "choice":
            evaluation = cast(workflow.EvaluateResult, {"passed": bool(passed)})
            current = workflow.next_state(current, evaluation=evaluation)
        elif workflow.step(current).kind in ("succeed", "fail"):
            current = None
        else:
            current = workflow.next_state(current)
    return path


def test_the_synthesized_gate_is_the_configured_gate(
    template: dict[str, Any], config: OnnxKitConfig
) -> None:
    asl = definition(template, {})
    gate = asl["States"][workflow.EVALUATE]["Parameters"]["gate"]
    # The CDK leaves unset (None) thresholds out of the payload; the Evaluate Lambda reads
    # them back as their defaults (off).
    assert gate == config.gate.model_dump(exclude_none=True)
    assert type(config.gate).model_validate(gate) == config.gate
    assert gate["min_accuracy"] == 0.9
    assert asl["States"][workflow.EVALUATE]["Parameters"]["model_name"] == NAME


def test_pass_then_reject(cloud: dict[str, Any]) -> None:
    _stage(cloud, "v1", accuracy=0.97)
    first = _execute(cloud)
    assert first["status"] == "SUCCEEDED", first
    assert first["path"] == _expected_path(passed=True)
    assert first["path"][-1] == workflow.PROMOTED
    promotion = first["output"]["promotion"]
    assert _live_sha(cloud) == promotion["sha256"]
    pointer = read_pointer(S3Store(cloud["s3"], BUCKET), NAME)
    assert pointer is not None and pointer.model_version == "v1"
    (note,) = _messages(cloud)
    assert note["status"] == "promoted" and note["model_version"] == "v1"

    _stage(cloud, "v2", accuracy=0.93)  # above the 0.9 floor, but worse than production
    second = _execute(cloud)
    assert second["status"] == "SUCCEEDED", second
    assert second["path"] == _expected_path(passed=False)
    assert second["path"][-1] == workflow.REJECTED
    assert second["output"]["evaluation"]["reasons"] == [
        "balanced_accuracy 0.9300 is worse than production v1 (0.9700) by more than 0.0100"
    ]
    assert _live_sha(cloud) == promotion["sha256"]
    (note,) = _messages(cloud)
    assert note["status"] == "rejected"
    assert note["reasons"] == second["output"]["evaluation"]["reasons"]


def test_the_configured_threshold_rejects(cloud: dict[str, Any]) -> None:
    _stage(cloud, "v1", accuracy=0.85)  # passes the default 0.8, not the configured 0.9
    result = _execute(cloud)
    assert result["path"][-1] == workflow.REJECTED
    assert result["output"]["evaluation"]["reasons"] == [
        "accuracy 0.8500 (int8) is below the gate's minimum 0.9000"
    ]


def test_failed_training(cloud: dict[str, Any]) -> None:
    def fail() -> dict[str, Any]:
        raise TrainingFailed("target column 'label' not found; columns are a, b")

    cloud["script"].train = fail
    result = _execute(cloud)
    assert result["status"] == "FAILED"
    assert result["path"] == _expected_path(passed=None, failing=workflow.TRAIN)
    assert result["path"][-2:] == [workflow.NOTIFY_FAILURE, workflow.FAILED]
    assert result["error"] == "TrainingFailed"
    assert "target column 'label' not found" in result["cause"]
    (note,) = _messages(cloud)
    assert note["status"] == "failed"
    assert note["error"]["Error"] == "TrainingFailed"


def test_failed_promotion_leaves_the_previous_model_live(cloud: dict[str, Any]) -> None:
    _stage(cloud, "v1")
    assert _execute(cloud)["status"] == "SUCCEEDED"
    served = _live_sha(cloud)
    _messages(cloud)
    manifest, _ = artifact("v2", name=NAME)
    _stage(cloud, "v2")
    key = "jobs/v2/output/model.tar.gz"
    # Between Evaluate and Promote someone swaps the model in the bucket.
    cloud["script"].register_hook = lambda: cloud["s3"].put_object(
        Bucket=BUCKET, Key=key, Body=tarball(manifest, b"onnx-graph-EVIL")
    )
    result = _execute(cloud)
    assert result["status"] == "FAILED"
    assert result["path"] == _expected_path(passed=True, failing=workflow.PROMOTE)
    assert result["error"] == "TamperedArtifactError"
    assert _live_sha(cloud) == served
    pointer = read_pointer(S3Store(cloud["s3"], BUCKET), NAME)
    assert pointer is not None and pointer.model_version == "v1"
    (note,) = _messages(cloud)
    assert note["status"] == "failed" and note["error"]["Error"] == "TamperedArtifactError"


def test_the_local_runner_walks_the_same_states(
    cloud: dict[str, Any], config: OnnxKitConfig, tmp_path: Path
) -> None:
    """Same scripted training results, same config: same states, same decisions."""
    outcomes = []
    for version, accuracy in (("v1", 0.97), ("v2", 0.93), ("v3", 0.85), ("v4", 0.975)):
        _, data = artifact(version, name=NAME, accuracy=accuracy)
        _stage(cloud, version, data)
        cloud_run = _execute(cloud)
        local_file = tmp_path / "jobs" / version / "model.tar.gz"
        local_file.parent.mkdir(parents=True)
        local_file.write_bytes(data)
        train: dict[str, Any] = {"ModelArtifacts": {"S3ModelArtifacts": local_file.as_uri()}}

        def trained(state: dict[str, Any], result: dict[str, Any] = train) -> dict[str, Any]:
            return result

        local = run_workflow(
            RunRequest(
                workdir=tmp_path,
                train=local_file,
                model_name=NAME,
                config=config,
                mocked_tasks={workflow.TRAIN: trained},
            )
        )
        assert local.path == cloud_run["path"], version
        cloud_eval, local_eval = cloud_run["output"]["evaluation"], local.state["evaluation"]
        assert (local_eval["passed"], local_eval["reasons"]) == (
            cloud_eval["passed"],
            cloud_eval["reasons"],
        )
        outcomes.append(local.final_state)
        _messages(cloud)
    assert outcomes == [workflow.PROMOTED, workflow.REJECTED, workflow.REJECTED, workflow.PROMOTED]

    def fail(state: dict[str, Any]) -> dict[str, Any]:
        raise TrainingFailed("bad csv")

    cloud["script"].train = lambda: fail({})
    failed = run_workflow(
        RunRequest(
            workdir=tmp_path,
            train=tmp_path,
            model_name=NAME,
            config=config,
            mocked_tasks={workflow.TRAIN: fail},
        )
    )
    assert failed.path == _execute(cloud)["path"]
    assert failed.exit_code == 1 and failed.error == "bad csv"
