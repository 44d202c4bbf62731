"""The learning curve as ``onnxkit run`` and ``onnxkit status`` show it."""

from __future__ import annotations

import io

from rich.console import Console

from onnxkit.cli.present import RunProgress, curve_summary, sparkline


def test_sparkline_spans_low_to_high_and_keeps_the_last_value() -> None:
    assert sparkline([]) == ""
    assert sparkline([3.0, 3.0]) == "▅▅"
    assert sparkline([1.0, 0.5, 0.0]) == "█▅▁"
    long = [float(i) for i in range(100)]
    line = sparkline(long, width=10)
    assert len(line) == 10 and line[0] == "▁" and line[-1] == "█"
    assert list(line) == sorted(line)


def test_curve_summary_is_one_line_per_name() -> None:
    curve = {"train_loss": [(1, 0.9), (2, 0.4), (3, 0.1)], "validation_score": [(1, 0.7)]}
    assert curve_summary(curve) == [
        "train_loss █▄▁ 0.1 (iteration 3)",
        "validation_score ▅ 0.7 (iteration 1)",
    ]


def test_the_run_progress_prints_the_curve_under_train() -> None:
    out = io.StringIO()
    progress = RunProgress(Console(file=out, width=120, force_terminal=False))
    progress("Train", "start", {})
    progress("Train", "progress", {"curve": {"train_loss": [(1, 0.9)]}})
    progress("Train", "progress", {"curve": {"train_loss": [(1, 0.9), (2, 0.3)]}})
    final = [{"MetricName": "fp32:accuracy", "Value": 1}]
    progress("Train", "done", {"FinalMetricDataList": final})
    progress("Evaluate", "start", {})
    progress("Evaluate", "done", {"passed": True, "candidate": {"model_version": "v1"}})
    progress.close()
    lines = [line.strip() for line in out.getvalue().splitlines()]
    train = next(i for i, line in enumerate(lines) if "Train" in line)
    assert "fp32:accuracy=1.0000" in lines[train]
    assert lines[train + 1] == "train_loss █▁ 0.3 (iteration 2)"
    assert "Evaluate" in lines[train + 2]
