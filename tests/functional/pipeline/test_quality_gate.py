"""The quality gate's default bar: a margin over the naive baseline, on any dataset."""

from __future__ import annotations

import math
from typing import Any

import pytest

from functions.pipeline import evaluate as evaluate_module
from functions.pipeline import handlers
from functions.pipeline.evaluate import gate_reasons
from onnxkit.contract.gate import QualityGate, chance_std, required_lift
from onnxkit.contract.manifest import Manifest
from onnxkit.local import runner
from tests.support.artifacts import manifest_dict

GATE = QualityGate.model_validate({})


def _manifest(
    *,
    metrics: dict[str, float],
    baseline: dict[str, Any] | None,
    classes: list[str] | None = None,
    task: str = "classification",
    **kwargs: Any,
) -> Manifest:
    data = manifest_dict(
        "v2", classes=classes, task=task, with_baseline=baseline is not None, **kwargs
    )
    for variant in ("sklearn", "fp32", "int8"):
        data["variants"][variant]["metrics"] = dict(metrics)
    if baseline is not None:
        data["baseline"] = baseline
    return Manifest.from_dict(data)


def test_the_default_bar_is_relative_and_the_absolute_bars_are_off() -> None:
    assert GATE.min_accuracy is None and GATE.min_r2 is None
    assert GATE.min_lift_over_baseline == 0.05 and GATE.chance_sigmas == 2.0


def test_the_majority_class_on_imbalanced_data_is_rejected() -> None:
    # 95/5 classes, every row answered "no": accuracy 0.95, which an accuracy bar of 0.80
    # accepts; balanced accuracy 0.5, exactly the baseline's.
    candidate = _manifest(
        metrics={"accuracy": 0.95, "balanced_accuracy": 0.5, "recall_macro": 0.5},
        baseline={
            "strategy": "prior",
            "metrics": {"accuracy": 0.95, "balanced_accuracy": 0.5},
            "class_support": {"no": 570, "yes": 30},
        },
        classes=["no", "yes"],
    )
    reasons = gate_reasons(candidate, None, GATE)
    assert len(reasons) == 1
    assert reasons[0].startswith(
        "balanced_accuracy 0.5000 (int8) lifts 0.0000 over the naive baseline (prior) at 0.5000"
    )
    assert gate_reasons(candidate, None, GATE.model_copy(update={"min_accuracy": 0.8})) == reasons


def test_modest_accuracy_on_a_hard_multiclass_problem_passes() -> None:
    # Three classes, the largest 45 % of the rows: accuracy 0.62 is a real model.
    candidate = _manifest(
        metrics={"accuracy": 0.62, "balanced_accuracy": 0.58},
        baseline={
            "strategy": "prior",
            "metrics": {"accuracy": 0.45, "balanced_accuracy": 1 / 3},
            "class_support": {"a": 40, "b": 27, "c": 22},
        },
        classes=["a", "b", "c"],
    )
    assert gate_reasons(candidate, None, GATE) == []
    strict = GATE.model_copy(update={"min_accuracy": 0.8})
    assert gate_reasons(candidate, None, strict) == [
        "accuracy 0.6200 (int8) is below the gate's minimum 0.8000"
    ]


def test_chance_std_is_the_binomial_bound_of_balanced_accuracy() -> None:
    assert chance_std({"a": 25, "b": 25}) == pytest.approx(0.5 * math.sqrt(0.25 / 25 * 2))
    assert chance_std({"a": 100}) == pytest.approx(0.05)
    assert chance_std({"a": 10, "b": 0}) == chance_std({"a": 10})  # absent classes do not count
    assert chance_std({}) == 0.0
    # Few held-out rows raise the margin above min_lift_over_baseline; many leave it.
    assert required_lift(GATE, {"0": 42, "1": 72}) == pytest.approx(0.0971, abs=1e-4)
    assert required_lift(GATE, {"0": 4420, "1": 1580}) == GATE.min_lift_over_baseline
    assert required_lift(GATE, None) == GATE.min_lift_over_baseline
    off = GATE.model_copy(update={"chance_sigmas": 0})
    assert required_lift(off, {"0": 42, "1": 72}) == GATE.min_lift_over_baseline


@pytest.mark.parametrize(
    ("support", "passed"), [({"0": 42, "1": 72}, False), ({"0": 420, "1": 720}, True)]
)
def test_a_lucky_lift_on_a_small_held_out_set_is_rejected(
    support: dict[str, int], passed: bool
) -> None:
    # 0.58 on 114 rows is what a model trained on shuffled labels can reach by chance.
    candidate = _manifest(
        metrics={"accuracy": 0.65, "balanced_accuracy": 0.58},
        baseline={
            "strategy": "prior",
            "metrics": {"balanced_accuracy": 0.5},
            "class_support": support,
        },
    )
    reasons = gate_reasons(candidate, None, GATE)
    assert (reasons == []) is passed
    if not passed:
        assert (
            "the gate needs 0.0971 (2 standard deviations of chance on 114 held-out rows)"
            in (reasons[0])
        )


def test_regression_needs_r2_above_the_mean_baseline() -> None:
    def regression(r2: float) -> Manifest:
        return _manifest(
            metrics={"r2": r2, "rmse": 1.0},
            baseline={"strategy": "mean", "metrics": {"r2": -0.01}},
            task="regression",
        )

    assert gate_reasons(regression(0.30), None, GATE) == []
    assert gate_reasons(regression(0.03), None, GATE) == [
        "r2 0.0300 (int8) lifts 0.0400 over the naive baseline (mean) at -0.0100; "
        "the gate needs 0.0500 (min_lift_over_baseline)"
    ]


def test_a_manifest_without_a_baseline_is_judged_against_the_chance_level() -> None:
    # Older manifests: 1/n_classes, the held-out rows taken as evenly split (50 here, 25 a
    # class: a margin of 0.1414); balanced accuracy read from recall_macro where absent.
    old = _manifest(metrics={"accuracy": 0.95, "recall_macro": 0.62}, baseline=None)
    assert old.baseline is None
    assert gate_reasons(old, None, GATE) == [
        "balanced_accuracy 0.6200 (int8) lifts 0.1200 over the chance level 1/2 (the manifest "
        "records no baseline) at 0.5000; the gate needs 0.1414 (2 standard deviations of "
        "chance on 50 held-out rows)"
    ]
    good = _manifest(metrics={"accuracy": 0.95, "recall_macro": 0.93}, baseline=None)
    assert gate_reasons(good, None, GATE) == []
    neither = _manifest(metrics={"accuracy": 0.95}, baseline=None)
    assert gate_reasons(neither, None, GATE) == ["the int8 variant reports no balanced_accuracy"]
    regression = _manifest(metrics={"r2": 0.02}, baseline=None, task="regression")
    assert gate_reasons(regression, None, GATE) == [
        "r2 0.0200 (int8) lifts 0.0200 over the chance level (the manifest records no "
        "baseline) at 0.0000; the gate needs 0.0500 (min_lift_over_baseline)"
    ]


def test_production_is_compared_on_balanced_accuracy() -> None:
    live = Manifest.from_dict(manifest_dict("v1", accuracy=0.96, balanced_accuracy=0.90))
    # Higher accuracy, bought by answering the majority class more often.
    candidate = Manifest.from_dict(manifest_dict("v2", accuracy=0.97, balanced_accuracy=0.80))
    assert gate_reasons(candidate, live, GATE) == [
        "balanced_accuracy 0.8000 is worse than production v1 (0.9000) by more than 0.0100"
    ]
    assert gate_reasons(live, candidate, GATE) == []


def test_the_cloud_step_and_the_local_workflow_share_one_gate() -> None:
    assert handlers.evaluate_step is evaluate_module.evaluate
    assert runner.evaluate is evaluate_module.evaluate
