"""The workflow spec itself: a closed graph, one happy path, every task with an error route."""

from __future__ import annotations

import pytest

from onnxkit.contract import workflow as wf
from onnxkit.contract.gate import QualityGate


def test_graph_is_closed_and_terminates() -> None:
    names = {step.name for step in wf.STEPS}
    assert len(names) == len(wf.STEPS)
    for step in wf.STEPS:
        assert set(step.successors()) <= names, step.name
        if step.kind in ("succeed", "fail"):
            assert step.successors() == ()
            assert step.name in wf.TERMINAL_STATES


def test_every_task_can_fail_into_a_notification_or_fail_state() -> None:
    for step in wf.STEPS:
        assert step.can_fail == (step.kind == "task")
        if step.can_fail:
            assert step.on_error in (wf.NOTIFY_FAILURE, wf.FAILED), step.name
    assert wf.step(wf.NOTIFY_FAILURE).next == wf.FAILED


def test_routes() -> None:
    passed = {"passed": True, "reasons": [], "candidate": {}, "production": None}
    rejected = {**passed, "passed": False, "reasons": ["accuracy 0.5 < 0.8"]}
    assert wf.next_state(wf.QUALITY_GATE, evaluation=passed) == wf.REGISTER  # type: ignore[arg-type]
    assert wf.next_state(wf.QUALITY_GATE, evaluation=rejected) == wf.NOTIFY_REJECTED  # type: ignore[arg-type]
    assert wf.next_state(wf.PROMOTE, error=True) == wf.NOTIFY_FAILURE
    assert wf.next_state(wf.NOTIFY_REJECTED) == wf.REJECTED
    with pytest.raises(ValueError, match="cannot fail"):
        wf.next_state(wf.QUALITY_GATE, error=True)


def test_payloads() -> None:
    gate = QualityGate(min_accuracy=0.9)  # type: ignore[call-arg]
    event = wf.evaluate_event("churn", "s3://b/training/job/output/model.tar.gz", gate)
    assert event["gate"]["min_accuracy"] == 0.9
    evaluation = {
        "passed": True,
        "reasons": [],
        "candidate": {"model_version": "v1"},
        "production": None,
    }
    assert wf.promote_event(evaluation, "arn:pkg") == {  # type: ignore[arg-type]
        "candidate": {"model_version": "v1"}, "model_package_arn": "arn:pkg",
        "evaluation": evaluation,
    }  # fmt: skip
    merged = wf.merge_hyperparameters({"model": "mlp", "target": "y"}, {"model": "ridge"})
    assert merged == {"model": "ridge", "target": "y"}
    with pytest.raises(ValueError, match="must be strings"):
        wf.merge_hyperparameters({}, {"max_iter": 5})  # type: ignore[dict-item]
