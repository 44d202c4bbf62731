"""``onnxkit drift``: the table, the JSON report and the exit codes, on a trained model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from onnxkit.contract.capture import encode_records
from tests.conftest import ArtifactFactory
from tests.support.capture import population, sample
from tests.support.cli import invoke
from tests.support.drift_cloud import without_reference

DATASET = "customer_churn"


@pytest.fixture(scope="module")
def model_dir(train_artifact: ArtifactFactory) -> Path:
    return train_artifact(DATASET)


def _capture(folder: Path, model_dir: Path, **shift: float) -> Path:
    pop = population(model_dir, DATASET)
    folder.mkdir(parents=True, exist_ok=True)
    for part in range(2):  # two files, as a rotated capture has
        records = sample(pop, 300, part, shift=shift or None)
        (folder / f"capture-{part}.jsonl").write_bytes(encode_records(records))
    return folder


def test_a_capture_like_the_training_data_exits_0(
    runner: CliRunner, model_dir: Path, tmp_path: Path
) -> None:
    capture = _capture(tmp_path / "capture", model_dir)
    result = invoke(runner, "drift", "--model", model_dir, "--capture", capture)
    assert result.exit_code == 0, result.output
    assert "600 captured rows" in result.output
    assert "no drift" in result.output


def test_a_shifted_feature_exits_3_and_is_named(
    runner: CliRunner, model_dir: Path, tmp_path: Path
) -> None:
    capture = _capture(tmp_path / "capture", model_dir, monthly_charges=1.5)
    result = invoke(runner, "drift", "--model", model_dir, "--capture", capture, "--json")
    assert result.exit_code == 3, result.output
    report = json.loads(result.output)
    assert [name for name in report["drifted"] if name != "(predictions)"] == ["monthly_charges"]
    by_name = {f["name"]: f for f in report["features"]}
    assert by_name["monthly_charges"]["drifted"] == ["psi"]
    assert all(f["drifted"] == [] for name, f in by_name.items() if name != "monthly_charges")
    table = invoke(runner, "drift", "--model", model_dir, "--capture", capture / "capture-0.jsonl")
    assert table.exit_code == 3
    assert "drift: monthly_charges" in table.output


def test_thresholds_come_from_the_drift_settings(
    runner: CliRunner, model_dir: Path, tmp_path: Path
) -> None:
    capture = _capture(tmp_path / "capture", model_dir, monthly_charges=0.5)
    strict = invoke(runner, "drift", "--model", model_dir, "--capture", capture, "--json")
    lax = invoke(
        runner, "drift", "--model", model_dir, "--capture", capture, "--set", "drift.psi=5"
    )
    assert (strict.exit_code, lax.exit_code) == (3, 0), lax.output
    bad = invoke(
        runner, "drift", "--model", model_dir, "--capture", capture, "--set", "drift.psi=0"
    )
    assert bad.exit_code == 1
    assert "invalid setting drift.psi" in bad.output


def test_bad_input_is_one_line_and_exit_1(
    runner: CliRunner, model_dir: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke(runner, "drift", "--model", model_dir, "--capture", empty)
    assert result.exit_code == 1
    assert "no capture records" in result.output and "--capture DIR" in result.output
    # An artifact from before reference statistics: it serves, but cannot be compared.
    old = without_reference(model_dir, tmp_path / "old")
    capture = _capture(tmp_path / "capture", model_dir)
    result = invoke(runner, "drift", "--model", old, "--capture", capture)
    assert result.exit_code == 1
    assert "has no reference statistics" in result.output and "train it again" in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
