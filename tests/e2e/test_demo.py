"""`onnxkit demo` (what `make demo` runs): train, gate, promote, serve, call, stop."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from onnxkit.cli import app


def test_demo_promotes_serves_and_answers_a_valid_and_a_bad_request(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--workdir", str(workdir)], terminal_width=200)
    assert result.exit_code == 0, result.output
    output = result.output
    assert "Promoted" in output and "gate: passed" in output
    assert output.count("-> HTTP 200") == 1 and output.count("-> HTTP 400") == 1
    assert '"predictions": [' in output and '"probabilities"' in output
    assert '"feature": "mean radius"' in output and "expected a number" in output
    assert (workdir / "models" / "breast-cancer" / "production.json").exists()


def test_demo_rejects_an_unknown_dataset_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--dataset", "nope", "--workdir", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown dataset 'nope'" in result.output
    assert "Traceback" not in result.output
