"""``onnxkit run`` and ``onnxkit rollback`` end to end: real training jobs in subprocesses,
the pipeline's step code over a work directory, exit codes a CI script relies on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from onnxkit.cli import app

# Fast, deterministic estimators; latency_runs=0 skips the training job's latency benchmark.
FAST = ["--hp", "latency_runs=0"]
GOOD = ["--model", "logistic_regression", *FAST]
WORSE = ["--model", "random_forest", "--hp", "n_estimators=1", "--hp", "max_depth=1", *FAST]
NAME = "breast-cancer"


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(
        app,
        list(args),
        catch_exceptions=False,
        env={"COLUMNS": "120", "ORT_DISABLE_TELEMETRY": "1"},
    )


def _pointer(workdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / "models" / NAME / "production.json").read_text())
    return data


def _live(workdir: Path) -> tuple[str, str]:
    state = json.loads((workdir / "serving" / "function.json").read_text())
    version = state["alias"]["version"]
    return version, state["versions"][version]["MODEL_SHA256"]


def test_promote_reject_promote_and_roll_back(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    first = _invoke("run", "--workdir", str(workdir), *GOOD)
    assert first.exit_code == 0, first.output
    assert "Promoted" in first.output and "gate: passed" in first.output
    v1 = _pointer(workdir)
    assert v1["lambda_version"] == "1" and v1["history"] == []
    assert Path(v1["model_uri"].removeprefix("file://")).is_file()
    assert _live(workdir) == ("1", v1["sha256"])

    worse = _invoke("run", "--workdir", str(workdir), *WORSE)
    assert worse.exit_code == 3, worse.output
    assert "worse than production" in worse.output
    assert f"production unchanged: {v1['model_version']}" in worse.output
    assert _pointer(workdir) == v1
    assert _live(workdir) == ("1", v1["sha256"])

    second = _invoke("run", "--workdir", str(workdir), "--hp", "c=0.5", *GOOD)
    assert second.exit_code == 0, second.output
    v2 = _pointer(workdir)
    assert v2["model_version"] != v1["model_version"]
    assert [h["model_version"] for h in v2["history"]] == [v1["model_version"]]
    assert _live(workdir) == ("2", v2["sha256"])
    registry = sorted((workdir / "registry" / NAME).glob("*.json"))
    assert len(registry) == 2  # the rejected candidate was never registered
    assert all(json.loads(p.read_text())["metrics"]["sklearn"] for p in registry)

    back = _invoke("rollback", "--workdir", str(workdir))
    assert back.exit_code == 0, back.output
    assert f"{v2['model_version']} -> {v1['model_version']}" in back.output
    restored = _pointer(workdir)
    assert {k: restored[k] for k in ("model_version", "sha256", "lambda_version")} == {
        k: v1[k] for k in ("model_version", "sha256", "lambda_version")
    }
    assert _live(workdir) == ("1", v1["sha256"])

    again = _invoke("rollback", "--workdir", str(workdir))
    assert again.exit_code == 1
    assert again.output.strip() == (f"error: {NAME} {v1['model_version']} has no previous version")


def test_a_bad_csv_fails_with_the_training_jobs_failure_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n1,x,0\n2,y,1\n3,z\n")
    workdir = tmp_path / "work"
    result = _invoke(
        "run", "--workdir", str(workdir), "--data", str(bad), "--target", "missing", *FAST
    )
    assert result.exit_code == 1, result.output
    failures = list(workdir.glob("jobs/*/output/failure"))
    assert len(failures) == 1
    reason = failures[0].read_text().strip()
    assert "missing" in reason
    assert f"failed: {reason}" in result.output
    assert "Traceback" not in result.output
    assert not (workdir / "models").exists()
    notes = [
        json.loads(line) for line in (workdir / "notifications.jsonl").read_text().splitlines()
    ]
    assert notes[-1]["message"] == {"Error": "TrainingFailed", "Cause": reason}


def test_the_gate_threshold_comes_from_config(tmp_path: Path) -> None:
    result = _invoke("run", "--workdir", str(tmp_path), "--set", "gate.min_accuracy=0.999", *GOOD)
    assert result.exit_code == 3, result.output
    assert "below the gate's minimum 0.9990" in result.output
    assert not (tmp_path / "models" / NAME / "production.json").exists()


def test_regression_and_mixed_categorical_datasets(tmp_path: Path) -> None:
    regression = _invoke(
        "run", "--workdir", str(tmp_path), "--dataset", "diabetes", "--model", "ridge", *FAST
    )
    assert regression.exit_code == 0, regression.output
    assert "r2" in regression.output
    churn = _invoke(
        "run",
        "--workdir",
        str(tmp_path),
        "--dataset",
        "customer_churn",
        "--model",
        "logistic_regression",
        "--set",
        "gate.min_accuracy=0.5",
        *FAST,
    )
    assert churn.exit_code == 0, churn.output
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["customer-churn", "diabetes"]
    two = _invoke("rollback", "--workdir", str(tmp_path))
    assert two.exit_code == 1 and "several models" in two.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "x.csv", "--dataset", "iris"], "not both"),
        (["--data", "/no/such.csv", "--target", "y"], "does not exist"),
        (["--dataset", "nope"], "unknown dataset"),
        (["--set", "gate.min_accuracy=2"], "invalid setting gate.min_accuracy"),
        (["--set", "nonsense"], "is not key=value"),
        (["--hp", "model_name=x"], "set by the pipeline"),
        (["--name", "../escape"], "invalid --name"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = _invoke("run", "--workdir", str(tmp_path), *args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "jobs").exists()
