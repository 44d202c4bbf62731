"""The training job's naive baseline and balanced accuracy, and their metric lines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from onnxkit.contract.metrics import METRIC_DEFINITIONS, metric_line, parse_metric_lines
from training_jobs.evaluation import compute_metrics, measure_baseline


def test_balanced_accuracy_is_the_mean_recall_of_the_held_out_classes() -> None:
    y = np.array(["no"] * 18 + ["yes"] * 2)
    always_no = np.array(["no"] * 20)
    scores = compute_metrics("classification", y, always_no, None, ["no", "yes"])
    assert scores["accuracy"] == 0.9
    assert scores["balanced_accuracy"] == 0.5
    # A predicted class absent from the held-out rows does not count as a class.
    y3 = np.array(["a", "a", "b", "b"])
    scores = compute_metrics("classification", y3, np.array(["a", "c", "b", "b"]), None, [])
    assert scores["balanced_accuracy"] == pytest.approx(0.75)


def test_the_classification_baseline_is_the_training_prior_on_the_held_out_rows() -> None:
    X_train = pd.DataFrame({"x": range(10)})
    y_train = np.array(["a"] * 6 + ["b"] * 3 + ["c"])
    X_valid = pd.DataFrame({"x": range(5)})
    y_valid = np.array(["b", "b", "b", "a", "c"])
    baseline = measure_baseline("classification", X_train, y_train, X_valid, y_valid)
    assert baseline.strategy == "prior"
    # It answers the training majority "a", whatever the held-out majority is.
    assert baseline.metrics["accuracy"] == pytest.approx(0.2)
    assert baseline.metrics["balanced_accuracy"] == pytest.approx(1 / 3)
    assert baseline.metrics["log_loss"] == pytest.approx(
        -(3 * np.log(0.3) + np.log(0.6) + np.log(0.1)) / 5
    )
    assert baseline.class_support == {"a": 1, "b": 3, "c": 1}


def test_the_regression_baseline_is_the_training_mean() -> None:
    X_train = pd.DataFrame({"x": range(4)})
    baseline = measure_baseline(
        "regression",
        X_train,
        np.array([1.0, 2.0, 3.0, 6.0]),
        X_train.iloc[:2],
        np.array([2.0, 4.0]),
    )
    assert baseline.strategy == "mean" and baseline.class_support is None
    # Predicting 3.0 for [2, 4]: residuals -1, 1; total sum of squares 2.
    assert baseline.metrics == {"rmse": 1.0, "mae": 1.0, "r2": 0.0}


def test_integer_classes_key_the_support_as_the_manifest_writes_them() -> None:
    X = pd.DataFrame({"x": range(6)})
    y = np.array([0, 1, 1, 0, 1, 1])
    baseline = measure_baseline("classification", X, y, X, y)
    assert baseline.class_support == {"0": 2, "1": 4}


def test_baseline_and_balanced_accuracy_lines_are_scraped() -> None:
    names = {name for name, _ in METRIC_DEFINITIONS}
    assert {"int8:balanced_accuracy", "baseline:balanced_accuracy", "baseline:r2"} <= names
    assert len(METRIC_DEFINITIONS) <= 40  # SageMaker's limit per job
    log = "\n".join(
        [metric_line("baseline", "balanced_accuracy", 0.5), metric_line("fp32", "r2", 0.25)]
    )
    assert parse_metric_lines(log) == {"baseline:balanced_accuracy": 0.5, "fp32:r2": 0.25}
