"""``onnxkit score --env`` in-process against moto (``mocked()``): up to the Distributed Map.

moto stores the scoring state machine and starts executions, but it cannot run a Distributed
Map (nor the Plan and Summarize functions). So these tests check everything the CLI does up to
that boundary for real (discovery, the upload and its key, the execution's name and input, the
location rules) and, past it, play the cloud's side with tests/support/scoring_run.py: while the
CLI polls, the execution ends with parts and a summary written to the letter of
onnxkit.contract.scoring (built from the local scorer's code over the uploaded input, objects in
shuffled order), and ListMapRuns / DescribeMapRun answer with the parts' counts. The merge test
compares the merged local file byte for byte with a local ``onnxkit score`` run's.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from onnxkit.datasets import bundled
from tests.support.aws import REGION, create_bucket, deploy_stack, mocked
from tests.support.cli import invoke
from tests.support.scoring_run import ScoringCloud

pytestmark = pytest.mark.xdist_group("trained-churn")

BUCKET = "kit-artifacts"
ROLE = "arn:aws:iam::123456789012:role/scoring"
INPUT = f"s3://{BUCKET}/scoring/input/"
OUTPUT = f"s3://{BUCKET}/scoring/output/"


@pytest.fixture(scope="module")
def churn_model(train_artifact: Any) -> Path:
    return train_artifact("customer_churn", model="logistic_regression")


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A deployed dev kit in moto: the Artifacts stack's bucket and the Scoring stack's state
    machine (a placeholder definition: moto does not run it)."""
    with mocked(monkeypatch):
        create_bucket(BUCKET, versioned=False)
        deploy_stack("OnnxKit-dev-Artifacts", {"ArtifactBucketName": BUCKET})
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(
            name="onnxkit-dev-scoring",
            definition=json.dumps({"StartAt": "Plan", "States": {"Plan": {"Type": "Succeed"}}}),
            roleArn=ROLE,
        )["stateMachineArn"]
        deploy_stack(
            "OnnxKit-dev-Scoring",
            {"ScoringStateMachineArn": arn, "ScoringFunctionName": "onnxkit-dev-scoring"},
        )
        yield arn


def _rows(n: int) -> tuple[list[str], list[list[str]]]:
    with bundled("customer_churn").path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [[f"c{i}", *row] for i, row in zip(range(n), reader, strict=False)]
    return ["customer", *header], rows


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _with_rejects(path: Path, n: int = 60) -> Path:
    """n rows; rows 10 and 40 are rejected (lines 12 and 43), row 20 spans two lines."""
    header, rows = _rows(n)
    rows[10][header.index("tenure_months")] = "twelve"
    rows[40] = rows[40][:3]
    rows[20][header.index("plan")] = "multi\nline"
    _write_csv(path, header, rows)
    with path.open("a") as handle:
        handle.write("\n\n")
    return path


def _executions(arn: str) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    found: list[dict[str, Any]] = sfn.list_executions(stateMachineArn=arn)["executions"]
    return found


def _sent(arn: str) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    run = _executions(arn)[0]
    sent: dict[str, Any] = json.loads(
        sfn.describe_execution(executionArn=run["executionArn"])["input"]
    )
    return sent


def _one_error_line(result: Any, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip().endswith(errors[0])
    return errors[0]


def _local(runner: Any, model: Path, data: Path, out: Path, *args: Any) -> None:
    result = invoke(runner, "score", "--model", model, "-i", data, "-o", out, *args)
    assert result.exit_code in (0, 2), result.output


def test_a_local_input_is_uploaded_multipart_and_the_run_starts_without_waiting(
    tmp_path, runner, machine
):
    header, rows = _rows(1)
    data = _write_csv(tmp_path / "my rows.csv", header, rows * 240_000)  # ~11 MiB
    result = invoke(runner, "score", "--env", "dev", "-i", data, "--id-column", "customer")
    assert result.exit_code == 0, result.output
    (run,) = _executions(machine)
    name = run["name"]
    assert re.fullmatch(r"score-my-rows-\d{8}-\d{6}", name), name
    assert run["status"] == "RUNNING"  # nothing waited for it
    key = f"scoring/input/{name}/my rows.csv"
    head = boto3.client("s3", region_name=REGION).head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == data.stat().st_size
    assert head["ETag"].strip('"').endswith("-2")  # two 8 MiB parts: a multipart upload
    assert _sent(machine) == {
        "input_uri": f"{INPUT}{name}/my rows.csv",
        "output_uri": f"{OUTPUT}{name}/",
        "id_column": "customer",
    }
    assert f"started {name}" in result.stdout
    assert f"arn     {run['executionArn']}" in result.stdout
    assert f"follow it with: onnxkit score --env dev --execution {name}" in result.stdout
    assert f"aws stepfunctions describe-execution --execution-arn {run['executionArn']}" in (
        result.stdout
    )


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_wait_merges_the_parts_into_the_local_scorers_file_in_input_order(
    tmp_path, runner, machine, churn_model, monkeypatch, suffix
):
    data = _with_rejects(tmp_path / "rows.csv")
    expected = tmp_path / f"local.{suffix}"
    _local(runner, churn_model, data, expected, "--id-column", "customer", "--workers", 1)
    cloud = ScoringCloud(monkeypatch, churn_model, rows_per_part=7)
    merged = tmp_path / f"cloud.{suffix}"
    result = invoke(
        runner, "score", "--env", "dev", "-i", data, "-o", merged, "--id-column", "customer",
        "--interval", 0,
    )  # fmt: skip
    assert result.exit_code == 2, result.output  # two rows rejected
    assert merged.read_bytes() == expected.read_bytes()
    written = [k for k in cloud.written if k.endswith(".jsonl")]
    assert len(written) == 9 and written != sorted(written)  # children end in any order
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    assert "rows in 60 = 58 scored + 2 rejected; model onnxkit-model" in result.stderr
    assert "│ 10  │ 12   │ tenure_months: expected a number, got 'twelve'" in result.stderr
    assert "│ 40  │ 43   │ expected 9 fields (the header's), got 3" in result.stderr
    assert "9/9 parts" in result.stderr
    assert f"60 rows in input order -> {merged}" in result.stderr


def test_a_regressors_float32_scores_merge_identically(
    tmp_path, runner, machine, train_artifact, monkeypatch
):
    model = train_artifact("diabetes", model="ridge")
    source = bundled("diabetes")
    data = tmp_path / "rows.jsonl"
    with source.path.open(newline="") as handle:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    expected = tmp_path / "local.csv"
    _local(runner, model, data, expected, "--workers", 1)
    ScoringCloud(monkeypatch, model, rows_per_part=100)
    merged = tmp_path / "cloud.csv"
    result = invoke(runner, "score", "--env", "dev", "-i", data, "-o", merged, "--interval", 0)
    assert result.exit_code == 0, result.output
    assert merged.read_bytes() == expected.read_bytes()


def test_an_s3_input_and_output_with_wait_reports_the_summary(
    tmp_path, runner, machine, churn_model, monkeypatch
):
    header, rows = _rows(30)
    data = _write_csv(tmp_path / "rows.csv", header, rows)
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key="scoring/input/batch/rows.csv", Body=data.read_bytes())
    ScoringCloud(monkeypatch, churn_model, rows_per_part=10)
    result = invoke(
        runner, "score", "--env", "dev", "-i", f"{INPUT}batch/rows.csv", "-o", f"{OUTPUT}mine",
        "--wait", "--interval", 0,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _sent(machine)["output_uri"] == f"{OUTPUT}mine/"
    assert "rows in 30 = 30 scored + 0 rejected; model onnxkit-model" in result.stderr
    assert f"3 parts -> {OUTPUT}mine/" in result.stderr
    assert "rejected rows" not in result.stderr
    assert not list(tmp_path.glob("*.jsonl"))


def test_failed_parts_exit_1_naming_them_with_the_redrive_and_no_local_file(
    tmp_path, runner, machine, churn_model, monkeypatch
):
    header, rows = _rows(40)
    data = _write_csv(tmp_path / "rows.csv", header, rows)
    ScoringCloud(monkeypatch, churn_model, outcome="failed_parts", failed=(1, 3), rows_per_part=8)
    out = tmp_path / "preds.jsonl"
    result = invoke(runner, "score", "--env", "dev", "-i", data, "-o", out, "--interval", 0)
    line = _one_error_line(result)
    arn = _executions(machine)[0]["executionArn"]
    name = arn.rsplit(":", 1)[-1]
    assert line == (
        "error: 2 of 5 parts failed (part 1, 3): their rows are not in the output; "
        f"{out} was not written; redriving the execution scores them: aws stepfunctions "
        f"redrive-execution --execution-arn {arn}; then: onnxkit score --env dev --execution "
        f"{name} --output {out}"
    )
    assert "failed parts (not scored)" in result.stderr
    assert "rows in 24 = 24 scored + 0 rejected" in result.stderr
    assert "5/5 parts, 2 failed" in result.stderr  # ended, either way
    assert list(tmp_path.iterdir()) == [data]


def test_a_failed_execution_is_one_line_with_its_error_and_cause(
    tmp_path, runner, machine, churn_model, monkeypatch
):
    header, rows = _rows(5)
    data = _write_csv(tmp_path / "rows.csv", header, rows)
    cause = json.dumps({"errorType": "PlanError", "errorMessage": "rows.csv lacks tenure_months"})
    ScoringCloud(monkeypatch, churn_model, outcome="fail", error="PlanError", cause=cause)
    result = invoke(runner, "score", "--env", "dev", "-i", data, "--wait", "--interval", 0)
    name = _executions(machine)[0]["name"]
    assert _one_error_line(result) == (
        f"error: execution {name} FAILED: PlanError: rows.csv lacks tenure_months"
    )


def test_a_merge_that_fails_leaves_no_file_behind(
    tmp_path, runner, machine, churn_model, monkeypatch
):
    header, rows = _rows(30)
    data = _write_csv(tmp_path / "rows.csv", header, rows)
    ScoringCloud(monkeypatch, churn_model, rows_per_part=10, drop=["parts/000002.jsonl"])
    out = tmp_path / "preds.csv"
    result = invoke(runner, "score", "--env", "dev", "-i", data, "-o", out, "--interval", 0)
    name = _executions(machine)[0]["name"]
    assert _one_error_line(result) == (
        f"error: {OUTPUT}{name}/parts/000002.jsonl is missing, but summary.json counts its rows"
    )
    assert list(tmp_path.iterdir()) == [data]  # neither preds.csv nor a partial file


def test_execution_follows_an_existing_run_into_a_local_file(
    tmp_path, runner, machine, churn_model, monkeypatch
):
    data = _with_rejects(tmp_path / "rows.csv", 45)
    started = invoke(runner, "score", "--env", "dev", "-i", data)
    assert started.exit_code == 0, started.output
    name = _executions(machine)[0]["name"]
    expected = tmp_path / "local.jsonl"
    _local(runner, churn_model, data, expected, "--workers", 1)
    ScoringCloud(monkeypatch, churn_model, rows_per_part=6)
    out = tmp_path / "cloud.jsonl"
    result = invoke(
        runner, "score", "--env", "dev", "--execution", name, "-o", out, "--interval", 0
    )
    assert result.exit_code == 2, result.output
    assert out.read_bytes() == expected.read_bytes()
    assert [r["row"] for r in map(orjson.loads, out.read_bytes().splitlines())] == list(range(45))


E = ["--env", "dev"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [*E, "--model", "m.onnx", "-i", "rows.csv"],
            "pass exactly one of --model or --workdir (score here) or --env (score in the cloud)",
        ),
        (["-i", "rows.csv", "-o", "p.jsonl"], "pass exactly one of --model or --workdir"),
        ([*E, "--workers", 2, "-i", "rows.csv"], "--workers: for local scoring only, not with"),
        (E, "--env needs --input (a local file or s3://...) or --execution"),
        (["--model", "m.onnx", "--execution", "x"], "--execution follows a cloud run: pass --env"),
        ([*E, "-i", "missing.csv"], "input file missing.csv not found"),
        (
            [*E, "-i", "rows.parquet"],
            "--env scores CSV and JSON Lines inputs, not Parquet (rows.parquet): score it on "
            "this machine with --model or --workdir, or convert it to CSV",
        ),
        (
            [*E, "-i", "s3://elsewhere/rows.csv"],
            f"--input s3://elsewhere/rows.csv is outside {INPUT}: copy it there (the scoring "
            "state machine may read only that prefix of the kit's bucket, least privilege), or "
            "pass a local file and it is uploaded there",
        ),
        ([*E, "-i", f"s3://{BUCKET}/data/rows.csv"], "is outside"),
        ([*E, "-i", INPUT], "is every input there is: name a file or folder in it"),
        ([*E, "-i", f"{INPUT}none.csv"], f"--input {INPUT}none.csv does not exist"),
        ([*E, "-i", f"{INPUT}old/"], f"--input {INPUT}old/ holds no .csv or .jsonl objects"),
        ([*E, "-i", "s3://"], "--input 's3://' is not an s3://bucket/key uri"),
        (
            [*E, "-i", "rows.csv", "-o", f"s3://{BUCKET}/out/"],
            f"--output s3://{BUCKET}/out/ is outside {OUTPUT}: name a folder there (the scoring "
            "state machine may write only under that prefix of the kit's bucket, least "
            "privilege), or a local file",
        ),
        ([*E, "-i", "rows.csv", "-o", OUTPUT], f"--output {OUTPUT}: name a folder for this run"),
        ([*E, "-i", "rows.csv", "-o", f"{OUTPUT}taken/"], "already holds results: name another"),
        ([*E, "-i", "rows.csv", "-o", "exists.jsonl"], "exists.jsonl exists: pass --overwrite"),
        ([*E, "-i", "rows.csv", "-o", "nowhere/p.csv"], "folder nowhere does not exist"),
        ([*E, "-i", "rows.csv", "--id-column", "who"], "rows.csv has no id column 'who'"),
        ([*E, "--execution", "x", "-i", "rows.csv"], "--execution follows a run that has its"),
    ],
)
def test_bad_locations_and_options_are_one_line_and_start_nothing(
    tmp_path, runner, machine, monkeypatch, args, message
):
    monkeypatch.chdir(tmp_path)
    header, rows = _rows(3)
    _write_csv(tmp_path / "rows.csv", header, rows)
    (tmp_path / "rows.parquet").write_bytes(b"PAR1")
    (tmp_path / "exists.jsonl").write_text("{}\n")
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key="scoring/input/old/notes.txt.gz", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="scoring/output/taken/summary.json", Body=b"{}")
    result = invoke(runner, "score", *args)
    assert message in _one_error_line(result)
    assert _executions(machine) == []
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="scoring/input/")["Contents"]
    assert [o["Key"] for o in listed] == ["scoring/input/old/notes.txt.gz"]


def test_a_parquet_object_in_s3_is_refused_in_one_line_before_anything_starts(runner, machine):
    result = invoke(runner, "score", "--env", "dev", "-i", f"{INPUT}batch/rows.parquet")
    error = _one_error_line(result)
    assert "not Parquet" in error and "score it on this machine with --model" in error
    assert _executions(machine) == []
