"""Drift on trained models: a capture drawn from the dataset raises no alarm (the false-alarm
rate over many seeds), one with a feature shifted flags that feature and no other."""

from __future__ import annotations

from functools import cache

import pytest

from functions.monitor.drift import compare
from onnxkit.contract.drift import PREDICTIONS
from onnxkit.contract.reference import Reference, load_reference
from tests.conftest import ArtifactFactory
from tests.support.capture import Population, population, sample

SEEDS = 200
CAPTURE_ROWS = 200


@cache
def _model(model_dir: str, dataset: str) -> tuple[Population, Reference]:
    return population(model_dir, dataset), load_reference(model_dir)  # type: ignore[arg-type]


@pytest.mark.parametrize("dataset", ["breast_cancer", "customer_churn"])
def test_captures_of_the_training_distribution_raise_no_alarm(
    train_artifact: ArtifactFactory, dataset: str
) -> None:
    pop, reference = _model(str(train_artifact(dataset)), dataset)
    alarms = [
        seed
        for seed in range(SEEDS)
        if compare(
            reference, sample(pop, CAPTURE_ROWS, seed), model_name="m", model_version="v"
        ).drifted
    ]
    # Measured with the default thresholds: 0 of 200 at 200 rows on both datasets (and at 50,
    # 1000 and 5000 rows: 1 of 200 on breast_cancer at 50 rows, README "Monitoring a model").
    assert len(alarms) / SEEDS < 0.01, alarms


@pytest.mark.parametrize(
    ("dataset", "feature"), [("breast_cancer", "mean texture"), ("customer_churn", "age")]
)
def test_a_shifted_feature_is_flagged_and_no_other(
    train_artifact: ArtifactFactory, dataset: str, feature: str
) -> None:
    pop, reference = _model(str(train_artifact(dataset)), dataset)
    for seed in range(5):
        records = sample(pop, 500, seed, shift={feature: 1.0})
        report = compare(reference, records, model_name="m", model_version="v")
        assert set(report.drifted) - {PREDICTIONS} == {feature}, report.drifted
        flagged = next(f for f in report.features if f.name == feature)
        assert flagged.drifted == ["psi"]
        assert flagged.psi > 2 * flagged.psi_limit
