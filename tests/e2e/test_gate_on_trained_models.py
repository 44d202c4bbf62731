"""The default quality gate on real training jobs: ``onnxkit run`` trains with
training_jobs/train.py, and Evaluate (the cloud step's code) judges the manifest it wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from onnxkit.cli import app
from onnxkit.contract.manifest import Manifest, load_manifest
from onnxkit.datasets import bundled

FAST = ["--model", "logistic_regression", "--hp", "latency_runs=0"]


def _run(workdir: Path, data: Path, target: str, *args: str) -> tuple[Any, Manifest]:
    result = CliRunner().invoke(
        app,
        ["run", "--workdir", str(workdir), "--data", str(data), "--target", target, *FAST, *args],
        catch_exceptions=False,
        env={"COLUMNS": "200", "ORT_DISABLE_TELEMETRY": "1"},
    )
    (job,) = (workdir / "jobs").iterdir()
    return result, load_manifest(job / "model")


def _reasons(workdir: Path) -> list[str]:
    last = (workdir / "notifications.jsonl").read_text().splitlines()[-1]
    reasons: list[str] = json.loads(last)["message"]["reasons"]
    return reasons


def _csv(tmp_path: Path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_model_trained_on_shuffled_labels_is_rejected(tmp_path: Path) -> None:
    data = bundled("breast_cancer")
    frame = pd.read_csv(data.path)
    frame[data.target] = np.random.default_rng(0).permutation(frame[data.target].to_numpy())
    # An absolute bar this model clears (accuracy about 0.65) does not let it through.
    result, manifest = _run(
        tmp_path, _csv(tmp_path, "shuffled", frame), data.target, "--set", "gate.min_accuracy=0.5"
    )
    assert result.exit_code == 3, result.output
    assert manifest.serving_metrics["accuracy"] > 0.5
    assert manifest.baseline is not None and manifest.baseline.strategy == "prior"
    assert manifest.baseline.metrics["balanced_accuracy"] == 0.5
    assert manifest.baseline.class_support == {"0": 42, "1": 72}
    (reason,) = _reasons(tmp_path)
    assert "over the naive baseline (prior) at 0.5000" in reason
    assert "2 standard deviations of chance on 114 held-out rows" in reason
    assert not (tmp_path / "models").exists()


def test_the_majority_class_on_imbalanced_data_is_rejected(tmp_path: Path) -> None:
    data = bundled("customer_churn")
    frame = pd.read_csv(data.path)
    # 5 % positives that no feature predicts: the model answers "no" for every row.
    rare = np.random.default_rng(1).random(len(frame)) < 0.05
    frame[data.target] = np.where(rare, "yes", "no")
    result, manifest = _run(tmp_path, _csv(tmp_path, "imbalanced", frame), data.target)
    assert result.exit_code == 3, result.output
    assert manifest.serving_metrics["accuracy"] >= 0.94
    assert manifest.serving_metrics["balanced_accuracy"] <= 0.51
    (reason,) = _reasons(tmp_path)
    assert reason.startswith("balanced_accuracy ") and "naive baseline (prior)" in reason


def test_modest_accuracy_on_a_hard_three_class_problem_passes(tmp_path: Path) -> None:
    # The bundled diabetes table, disease progression cut into three bands (45/30/25 %).
    data = bundled("diabetes")
    frame = pd.read_csv(data.path)
    cuts = frame[data.target].quantile([0, 0.45, 0.75, 1]).to_numpy()
    frame[data.target] = pd.cut(
        frame[data.target], cuts, include_lowest=True, labels=["low", "mid", "high"]
    )
    result, manifest = _run(tmp_path, _csv(tmp_path, "bands", frame), data.target)
    assert result.exit_code == 0, result.output
    assert "gate: passed" in result.output
    assert manifest.baseline is not None
    assert 0.44 < manifest.baseline.metrics["accuracy"] < 0.46  # the majority band
    assert manifest.serving_metrics["accuracy"] < 0.75
    assert (tmp_path / "models" / "bands" / "production.json").exists()
