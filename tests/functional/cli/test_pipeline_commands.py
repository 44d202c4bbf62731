"""``onnxkit train``, ``status`` and ``models`` against a moto server.

moto runs the state machine for real (``execute_state_machine``): it is built from
``onnxkit.contract.workflow`` with every task replaced by a Pass state whose Result is what the real
step returns, so the history, state names and ``$.evaluation`` / ``$.promotion`` paths are the
ones the CLI meets in AWS.
"""

from __future__ import annotations

import io
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from onnxkit.contract import workflow
from tests.support.aws import REGION, create_bucket, create_role, create_stub_function, deploy_stack
from tests.support.cli import invoke

BUCKET = "kit-artifacts"
GROUP = "onnxkit-dev-models"
JOB = "churn-mlp-job-1"
ROLE = "arn:aws:iam::123456789012:role/pipeline"


def _moto_config(url: str, execute: bool) -> None:
    body = json.dumps({"stepfunctions": {"execute_state_machine": execute}}).encode()
    request = urllib.request.Request(
        f"{url}/moto-api/config",
        data=body,
        method="POST",
        headers={"content-type": "application/json"},
    )
    urllib.request.urlopen(request).close()


def step_results(passed: bool) -> dict[str, Any]:
    candidate = {
        "model_name": "churn",
        "model_version": "v7",
        "artifact_uri": "s3://x/m.tar.gz",
        "task": "classification",
        "primary_metric": "accuracy",
        "metrics": {"accuracy": 0.91 if passed else 0.52},
        "serving_variant": "int8",
        "sha256": "0" * 64,
    }
    return {
        workflow.PREPARE: {"job_name": JOB},
        workflow.TRAIN: {
            "TrainingJobName": JOB,
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": "s3://x/m.tar.gz"},
        },
        workflow.EVALUATE: {
            "passed": passed,
            "reasons": ([] if passed else ["accuracy 0.52 is below the bar 0.80"]),
            "candidate": candidate,
            "production": {"model_version": "v6", "metrics": {"accuracy": 0.9}},
        },
        workflow.REGISTER: {
            "model_package_arn": "arn:aws:sagemaker:eu-west-1:123456789012:"
            "model-package/onnxkit-dev-models/7"
        },
        workflow.PROMOTE: {
            "model_version": "v7",
            "lambda_version": "3",
            "model_uri": "s3://x",
            "sha256": "0" * 64,
            "previous_lambda_version": "2",
        },
    }


def mirror_definition(passed: bool = True, fail_at: str | None = None) -> dict[str, Any]:
    """The workflow's states as Pass/Choice/Succeed/Fail states moto can run."""
    results = step_results(passed)
    states: dict[str, Any] = {}
    for step in workflow.STEPS:
        if step.name == fail_at:
            states[step.name] = {
                "Type": "Fail",
                "Error": "SageMaker.AmazonSageMakerException",
                "Cause": "AlgorithmError: target column 'churn' not found",
            }
        elif step.kind in ("task", "pass"):
            state: dict[str, Any] = {"Type": "Pass", "Next": step.next}
            if step.result_path:
                state["ResultPath"] = step.result_path
                state["Result"] = results.get(step.name, {"ok": True})
            states[step.name] = state
        elif step.kind == "choice":
            states[step.name] = {
                "Type": "Choice",
                "Default": step.otherwise,
                "Choices": [
                    {
                        "Variable": workflow.GATE_CONDITION_PATH,
                        "BooleanEquals": True,
                        "Next": step.when_true,
                    }
                ],
            }
        elif step.kind == "succeed":
            states[step.name] = {"Type": "Succeed"}
        else:
            states[step.name] = {"Type": "Fail", "Error": "Failed"}
    return {"StartAt": workflow.START_AT, "States": states}


@pytest.fixture
def kit(moto: str) -> Iterator[dict[str, str]]:
    """A deployed dev kit in moto: bucket, key, registry group, pipeline, training job."""
    _moto_config(moto, True)
    create_bucket(BUCKET, versioned=False)
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    sagemaker.create_training_job(
        TrainingJobName=JOB,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": "sklearn:1.9-0", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/training/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    outputs = {
        "ArtifactBucketName": BUCKET,
        "DataUri": f"s3://{BUCKET}/data/",
        "ModelPackageGroupName": GROUP,
        "KmsKeyArn": key,
    }
    deploy_stack("OnnxKit-dev-Artifacts", outputs)
    yield outputs
    _moto_config(moto, False)


def pipeline(definition: dict[str, Any]) -> str:
    """Create the state machine and the Pipeline stack pointing at it."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(
        name="onnxkit-dev", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    deploy_stack("OnnxKit-dev-Pipeline", {"StateMachineArn": arn, "NotificationTopicArn": "t"})
    return arn


def register(properties: dict[str, str]) -> None:
    """An approved model package in the kit's group, with these metadata properties."""
    boto3.client("sagemaker", region_name=REGION).create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus="Approved",
        CustomerMetadataProperties=properties,
        InferenceSpecification={
            "Containers": [{"Image": "onnx"}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )


def test_train_uploads_multipart_with_kms_and_starts_a_named_execution(tmp_path, runner, kit):
    machine = pipeline(mirror_definition())
    data = tmp_path / "churn.csv"
    data.write_bytes(b"a,b,churned\n" + b"1,2,yes\n" * (11 * 1024 * 1024 // 8))  # ~11 MiB
    result = invoke(
        runner,
        "train",
        "--env",
        "dev",
        "--data",
        data,
        "--model",
        "mlp",
        "--target",
        "churned",
        "--set",
        "max_iter=200",
        "--set",
        "seed=7",
    )
    assert result.exit_code == 0, result.output
    sfn = boto3.client("stepfunctions", region_name=REGION)
    execution = sfn.list_executions(stateMachineArn=machine)["executions"][0]
    name = execution["name"]
    assert name.startswith("churn-mlp-20") and len(name) <= 80
    sent = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert sent == {
        "train_s3_uri": f"s3://{BUCKET}/data/{name}/train/",
        "hyperparameters": {"max_iter": "200", "seed": "7", "model": "mlp", "target": "churned"},
    }
    head = boto3.client("s3", region_name=REGION).head_object(
        Bucket=BUCKET, Key=f"data/{name}/train/churn.csv"
    )
    assert head["ContentLength"] == data.stat().st_size
    assert head["ETag"].strip('"').endswith("-2")  # two 8 MiB parts: a multipart upload
    assert head["ServerSideEncryption"] == "aws:kms"
    assert f"onnxkit status {name} --env dev --follow" in result.stdout


def test_train_passes_s3_data_and_validation_through(tmp_path, runner, kit):
    machine = pipeline(mirror_definition())
    result = invoke(
        runner,
        "train",
        "--env",
        "dev",
        "--data",
        "s3://elsewhere/train/",
        "--validation",
        "s3://elsewhere/val.csv",
        "--name",
        "nightly run #4",
    )
    assert result.exit_code == 0, result.output
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.list_executions(stateMachineArn=machine)["executions"][0]["executionArn"]
    assert arn.endswith(":nightly-run-4")
    sent = json.loads(sfn.describe_execution(executionArn=arn)["input"])
    assert sent == {
        "train_s3_uri": "s3://elsewhere/train/",
        "validation_s3_uri": "s3://elsewhere/val.csv",
        "hyperparameters": {},
    }


def test_train_wait_follows_a_promoted_run(tmp_path, runner, kit):
    pipeline(mirror_definition(passed=True))
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    result = invoke(
        runner, "train", "--env", "dev", "--data", tmp_path / "d.csv", "--wait", "--interval", 0
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    for name in workflow.happy_path():
        assert name in out
    assert "SUCCEEDED (promoted)" in out
    assert f"training job {JOB}" in out and "Completed" in out
    assert "quality gate passed" in out
    assert "candidate accuracy=0.91 vs production v6 accuracy=0.9" in out
    assert "promoted v7 -> Lambda version 3 (was 2)" in out
    assert f"sagemaker/home?region={REGION}#/jobs/{JOB}" in out
    assert "states/home" in out and "executions/details/arn:aws:states" in out


class FirstLookRunning:
    """A Step Functions client whose first DescribeExecution answer predates the run's end.

    On AWS the first poll of ``train --wait`` finds the run running; moto's Pass states often
    finish before it, which hid the live-view path from the test above except on a busy machine.
    """

    def __init__(self, real: Any) -> None:
        self.real = real
        self.looks = 0

    def describe_execution(self, **kwargs: Any) -> dict[str, Any]:
        answer = dict(self.real.describe_execution(**kwargs))
        self.looks += 1
        if self.looks == 1:
            answer["status"] = "RUNNING"
            answer.pop("stopDate", None)
            answer.pop("output", None)
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class LateSession(boto3.Session):
    """A boto3 session handing out :class:`FirstLookRunning` for Step Functions."""

    def __init__(self) -> None:
        super().__init__(region_name=REGION)
        self.sfn: FirstLookRunning | None = None

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = super().client(service_name, *args, **kwargs)
        if service_name != "stepfunctions":
            return client
        self.sfn = FirstLookRunning(client)
        return self.sfn


def test_following_a_running_run_prints_the_final_view_with_whole_links(kit, capsys, monkeypatch):
    from onnxkit.cli.status import watch
    from onnxkit.cloud.discovery import discover

    monkeypatch.setenv("COLUMNS", "80")  # what rich assumes for a pipe; the links are longer
    machine = pipeline(mirror_definition(passed=True))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.start_execution(stateMachineArn=machine, name="run-live")["executionArn"]
    session = LateSession()
    found = discover("dev", ("Pipeline",), session=session)
    assert watch(found, arn, follow=True, interval=0) == "promoted"
    assert session.sfn is not None and session.sfn.looks >= 2  # the live view did run
    out = capsys.readouterr().out
    assert f"training job {JOB}  Completed" in out
    assert f"sagemaker/home?region={REGION}#/jobs/{JOB}" in out
    assert f"executions/details/{arn}" in out
    assert out.count("quality gate passed") == 1  # the live frames are not left in the log


def test_status_notes_an_unreadable_training_job_and_shows_the_rest(runner, kit, monkeypatch):
    # SageMaker unreachable while Step Functions answers: a closed port on this machine.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no retry backoff against the closed port
    machine = pipeline(mirror_definition(passed=True))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    sfn.start_execution(stateMachineArn=machine, name="run-3")
    result = invoke(runner, "status", "run-3", "--env", "dev", "--follow", "--interval", 0)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stdout.splitlines() if line.startswith("training job ")]
    assert len(notes) == 1, result.stdout
    assert notes[0].startswith(f"training job {JOB}: not readable: cannot reach AWS: ")
    assert f"sagemaker/home?region={REGION}#/jobs/{JOB}" in result.stdout
    assert "quality gate passed" in result.stdout
    assert "promoted v7 -> Lambda version 3 (was 2)" in result.stdout


def test_status_notes_a_training_job_read_that_fails_for_any_reason(kit):
    from rich.console import Console

    from onnxkit.cli.status import render
    from onnxkit.cloud.discovery import discover
    from onnxkit.cloud.executions import summarize

    class NoSageMakerSession(LateSession):
        """Credentials whose SageMaker client cannot be built (say, a crashing helper)."""

        def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
            if service_name.startswith("sagemaker"):
                raise RuntimeError("credential helper exited with status 1")
            return super().client(service_name, *args, **kwargs)

    found = discover("dev", ("Artifacts",), session=NoSageMakerSession())
    run = summarize(
        {"executionArn": "arn:aws:states:eu-west-1:1:execution:m:r", "status": "RUNNING"},
        [],
    )
    run.training_job_name = JOB
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render(found, run))
    text = console.export_text()
    assert (
        f"training job {JOB}: not readable: RuntimeError: credential helper exited with status 1"
    ) in text
    assert f"#/jobs/{JOB}" in text


def training_log(job: str, lines: list[str]) -> None:
    """A training job's CloudWatch log stream as SageMaker names it, holding ``lines``."""
    logs = boto3.client("logs", region_name=REGION)
    group = "/aws/sagemaker/TrainingJobs"
    if not logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
        logs.create_log_group(logGroupName=group)
    stream = f"{job}/algo-1-1700000000"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    start = int(time.time() * 1000)  # CloudWatch refuses events older than 14 days
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": start + i, "message": line} for i, line in enumerate(lines)],
    )


def test_status_shows_the_learning_curve_in_the_training_jobs_log(runner, kit):
    from onnxkit.cli.present import sparkline
    from onnxkit.contract.metrics import curve_line, metric_line

    losses = [0.9 / (i + 1) for i in range(40)]
    scores = [min(0.95, 0.6 + 0.01 * i) for i in range(40)]
    lines = ["task=classification model=mlp rows train=4000 validation=1000"]
    for i, (loss, score) in enumerate(zip(losses, scores, strict=True), start=1):
        lines += [curve_line(i, "train_loss", loss), curve_line(i, "validation_score", score)]
    lines += ["Validation score did not improve ...", metric_line("fp32", "accuracy", 0.9)]
    training_log(JOB, lines)
    # A job whose name starts with this one's: its stream is not this job's.
    training_log(JOB + "0", [curve_line(1, "train_loss", 777.5)])
    machine = pipeline(mirror_definition(passed=True))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    sfn.start_execution(stateMachineArn=machine, name="run-curve")
    result = invoke(runner, "status", "run-curve", "--env", "dev", "--follow", "--interval", 0)
    assert result.exit_code == 0, result.output
    shown = [line.strip() for line in result.stdout.splitlines()]
    printed = [float(f"{v:.6g}") for v in losses]  # what the log holds
    assert f"train_loss {sparkline(printed)} 0.0225 (iteration 40)" in shown, result.stdout
    assert f"validation_score {sparkline(scores)} 0.95 (iteration 40)" in shown
    assert "777.5" not in result.stdout


def test_status_notes_an_unreadable_training_log_and_shows_the_rest(runner, kit, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    machine = pipeline(mirror_definition(passed=True))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    sfn.start_execution(stateMachineArn=machine, name="run-nolog")
    result = invoke(runner, "status", "run-nolog", "--env", "dev")
    assert result.exit_code == 0, result.output
    assert f"training job {JOB}  Completed" in result.stdout
    assert "learning curve: not readable: cannot reach AWS: " in result.stdout
    assert "quality gate passed" in result.stdout


def test_status_without_a_training_log_yet_shows_no_curve(runner, kit):
    machine = pipeline(mirror_definition(passed=True))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    sfn.start_execution(stateMachineArn=machine, name="run-early")
    result = invoke(runner, "status", "run-early", "--env", "dev")
    assert result.exit_code == 0, result.output
    assert "learning curve" not in result.stdout and "train_loss" not in result.stdout


def test_status_shows_a_rejected_run_and_exits_3_when_following(runner, kit):
    machine = pipeline(mirror_definition(passed=False))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    sfn.start_execution(stateMachineArn=machine, name="run-1", input='{"train_s3_uri": "s3://b/"}')
    shown = invoke(runner, "status", "--env", "dev")  # latest execution, no follow
    assert shown.exit_code == 0, shown.output
    assert "quality gate not passed" in shown.stdout
    assert "accuracy 0.52 is below the bar 0.80" in shown.stdout
    assert workflow.NOTIFY_REJECTED in shown.stdout and "promoted v7" not in shown.stdout
    followed = invoke(runner, "status", "run-1", "--env", "dev", "--follow", "--interval", 0)
    assert followed.exit_code == 3


def test_status_of_a_failed_run(runner, kit):
    machine = pipeline(mirror_definition(fail_at=workflow.TRAIN))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    sfn.start_execution(stateMachineArn=machine, name="run-2", input="{}")
    result = invoke(runner, "status", "run-2", "--env", "dev", "--follow", "--interval", 0)
    assert result.exit_code == 1
    assert "FAILED (failed)" in result.stdout
    assert "AlgorithmError: target column 'churn' not found" in result.stdout


def test_status_unknown_execution_is_one_line(runner, kit):
    pipeline(mirror_definition())
    result = invoke(runner, "status", "nope", "--env", "dev")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: DescribeExecution failed (ExecutionDoesNotExist)")
    assert len(result.stderr.strip().splitlines()) == 1


def test_models_lists_versions_and_marks_the_live_one(runner, kit):
    for version, accuracy in (("v1", "0.88"), ("v2", "0.91")):
        # What the Register state writes (infra/constructs/training_workflow.py).
        register(
            {
                "model_version": version,
                "sha256": "0" * 64,
                "serving_variant": "int8",
                "primary_metric": "accuracy",
                "execution": f"run-{version}",
                "metric.accuracy": accuracy,
                "metric.f1_macro": "0.8",
            }
        )
    pointer = {
        "model_name": "churn",
        "model_version": "v1",
        "model_uri": f"s3://{BUCKET}/models/churn/v1/model.onnx",
        "manifest_uri": f"s3://{BUCKET}/models/churn/v1/manifest.json",
        "sha256": "0" * 64,
        "lambda_version": "4",
        "promoted_at": "2026-11-28T12:00:00+00:00",
        "history": [],
    }
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=BUCKET, Key="models/churn/production.json", Body=json.dumps(pointer)
    )
    table = invoke(runner, "models", "--env", "dev")
    assert table.exit_code == 0, table.output
    rows = [line for line in table.stdout.splitlines() if line.startswith("│")]
    live_lines = [line for line in rows if line.split("│")[1].strip() == "live"]
    assert len(live_lines) == 1 and "v1" in live_lines[0] and "0.88" in live_lines[0]
    assert "live churn: v1 (Lambda version 4" in table.stdout
    listed = json.loads(invoke(runner, "models", "--env", "dev", "--json").stdout)
    assert [(v["model_version"], v["live"]) for v in listed] == [("v2", False), ("v1", True)]
    assert listed[0]["metrics"] == {"accuracy": 0.91, "f1_macro": 0.8}
    # Register writes no model_name: the one promoted model names the group's versions.
    assert {v["model_name"] for v in listed} == {"churn"}


def test_models_with_an_empty_registry(runner, kit):
    result = invoke(runner, "models", "--env", "dev")
    assert result.exit_code == 0
    assert "no registered versions" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "missing.csv"], "data missing.csv not found"),
        (["--data", "s3://b/", "--set", "oops"], "--set 'oops': expected key=value"),
    ],
)
def test_train_bad_input_is_one_line(runner, kit, args, message):
    pipeline(mirror_definition())
    result = invoke(runner, "train", "--env", "dev", *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_without_a_pipeline_stack(runner, moto, tmp_path: Path):
    deploy_stack("OnnxKit-dev-Artifacts", {"DataUri": "s3://b/data/"})
    result = invoke(runner, "train", "--env", "dev", "--data", "s3://b/x/")
    assert result.exit_code == 1
    assert "stack OnnxKit-dev-Pipeline not found in region" in result.stderr


def _pointer_behind_live() -> dict[str, str]:
    """A promotion killed after moving ``live`` to v2 but before the pointer (still v1)."""
    for version in ("v1", "v2"):
        register({"model_version": version, "metric.accuracy": "0.9"})
    s3 = boto3.client("s3", region_name=REGION)
    lam = boto3.client("lambda", region_name=REGION)
    function = "onnxkit-dev-inference"
    create_stub_function(lam, function, create_role("inference"))
    published = {}
    for version in ("v1", "v2"):
        lam.update_function_configuration(
            FunctionName=function,
            Environment={
                "Variables": {
                    "MODEL_URI": f"s3://{BUCKET}/models/churn/{version}/model.onnx",
                    "MODEL_SHA256": version * 32,
                }
            },
        )
        published[version] = lam.publish_version(FunctionName=function)["Version"]
        s3.put_object(Bucket=BUCKET, Key=f"models/churn/{version}/manifest.json", Body=b"{}")
    lam.create_alias(FunctionName=function, Name="live", FunctionVersion=published["v2"])
    pointer = {
        "model_name": "churn",
        "model_version": "v1",
        "model_uri": f"s3://{BUCKET}/models/churn/v1/model.onnx",
        "manifest_uri": f"s3://{BUCKET}/models/churn/v1/manifest.json",
        "sha256": "v1" * 32,
        "lambda_version": published["v1"],
        "history": [],
    }
    s3.put_object(Bucket=BUCKET, Key="models/churn/production.json", Body=json.dumps(pointer))
    deploy_stack("OnnxKit-dev-Serving", {"FunctionName": function})
    return published


def test_models_marks_what_live_serves_when_the_pointer_fell_behind(runner, kit):
    published = _pointer_behind_live()
    table = invoke(runner, "models", "--env", "dev")
    assert table.exit_code == 0, table.output
    assert f"live churn: v2 (Lambda version {published['v2']}" in table.stdout
    assert "note: churn: live served v2 while the production pointer named v1" in table.stdout
    listed = json.loads(invoke(runner, "models", "--env", "dev", "--json").stdout)
    assert [(v["model_version"], v["live"]) for v in listed] == [("v2", True), ("v1", False)]


def test_status_says_what_live_serves_for_the_runs_model(runner, kit):
    published = _pointer_behind_live()
    machine = pipeline(mirror_definition(passed=False))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    sfn.start_execution(stateMachineArn=machine, name="run-9", input='{"train_s3_uri": "s3://b/"}')
    shown = invoke(runner, "status", "run-9", "--env", "dev", "--follow", "--interval", 0)
    assert shown.exit_code == 3, shown.output
    assert f"live churn: v2 (Lambda version {published['v2']})" in shown.stdout
    assert "note: live served v2 while the production pointer named v1" in shown.stdout
