"""``onnxkit card``: Markdown and JSON cards of a trained model, older artifacts, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from onnxkit.config import UNSET_INTENDED_USE, UNSET_LIMITATIONS
from onnxkit.contract.layout import MANIFEST_FILE, REFERENCE_FILE
from onnxkit.contract.manifest import load_manifest, write_manifest
from tests.conftest import ArtifactFactory
from tests.support.cli import invoke


@pytest.fixture(scope="module")
def model_dir(train_artifact: ArtifactFactory) -> Path:
    # The drift tests' artifact: one training per session for both.
    return train_artifact("customer_churn")


def test_the_markdown_card_has_every_section(runner: CliRunner, model_dir: Path) -> None:
    manifest = load_manifest(model_dir)
    result = invoke(
        runner,
        "card",
        "--model",
        model_dir,
        "--set",
        "card.intended_use=Ranking accounts for a retention call.",
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(f"# Model card: {manifest.model_name} {manifest.model_version}\n")
    for heading in (
        "## Intended use",
        "## Limitations",
        "## Training data",
        "## Metrics on the held-out rows",
        "## Parity and quantization",
        "## Global feature importance",
        "## Drift references",
    ):
        assert f"\n{heading}\n" in out
    assert "Ranking accounts for a retention call." in out
    assert UNSET_LIMITATIONS in out
    assert manifest.data.sha256 in out
    assert f"Serves **{manifest.quantization.decision}**" in out
    # The top feature by importance heads its table; the baseline has its own column.
    assert manifest.importance is not None
    top = manifest.importance.ranked()[0]
    assert f"| 1 | {top.name} | {top.mean:.4f} |" in out
    assert "| metric | baseline (prior) |" in out
    assert manifest.baseline is not None
    assert f"| **accuracy** | {manifest.baseline.metrics['accuracy']:.4f} |" in out


def test_the_json_card_carries_the_manifest_s_records(runner: CliRunner, model_dir: Path) -> None:
    manifest = load_manifest(model_dir)
    result = invoke(runner, "card", "--model", model_dir / "model.onnx", "--json")
    assert result.exit_code == 0, result.output
    card = json.loads(result.output)
    assert card["model"]["version"] == manifest.model_version
    assert card["intended_use"] == UNSET_INTENDED_USE
    assert card["data"]["rows"] == manifest.data.rows
    served = manifest.serving_metrics["accuracy"]
    assert manifest.baseline is not None
    assert card["metrics"]["lift_over_baseline"]["accuracy"] == pytest.approx(
        served - manifest.baseline.metrics["accuracy"]
    )
    # log_loss is a loss: a lower one is a positive lift.
    assert card["metrics"]["lift_over_baseline"]["log_loss"] == pytest.approx(
        manifest.baseline.metrics["log_loss"] - manifest.serving_metrics["log_loss"]
    )
    assert card["quantization"]["decision"] == manifest.quantization.decision
    assert [f["name"] for f in card["importance"]["features"]] == (manifest.signature.feature_names)
    drift = card["drift_reference"]
    assert drift["sha256"] == manifest.files[REFERENCE_FILE].sha256
    assert [f["name"] for f in drift["features"]] == manifest.signature.feature_names


def test_an_older_artifact_gets_a_card_that_says_what_it_lacks(
    runner: CliRunner, model_dir: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    manifest = load_manifest(old)
    files = {k: v for k, v in manifest.files.items() if k != REFERENCE_FILE}
    older = msgspec.structs.replace(manifest, files=files, importance=None, baseline=None)
    write_manifest(older, old)
    (old / REFERENCE_FILE).unlink()
    result = invoke(runner, "card", "--model", old)
    assert result.exit_code == 0, result.output
    assert "Not recorded: this model was trained before" in result.output
    assert f"None: this model has no {REFERENCE_FILE}" in result.output
    assert "baseline (" not in result.output
    card = json.loads(invoke(runner, "card", "--model", old, "--json").output)
    assert card["importance"] is None and card["drift_reference"] is None


def test_bad_input_is_one_line_and_exit_1(
    runner: CliRunner, model_dir: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / MANIFEST_FILE).write_text("{not json")
    for model in (empty, tmp_path / "absent", broken):
        result = invoke(runner, "card", "--model", model)
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    bad = invoke(runner, "card", "--model", model_dir, "--set", "card.intended_use=")
    assert bad.exit_code == 1
    assert "invalid setting card.intended_use" in bad.output
