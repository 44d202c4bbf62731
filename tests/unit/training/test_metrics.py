"""Held-out metrics computed on the classes' positions equal scikit-learn's on the labels."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from training_jobs.evaluation import (
    class_positions,
    compute_metrics,
    primary_metric,
    primary_score,
)


def _on_labels(
    y_true: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray, classes: list[Any]
) -> dict[str, float]:
    """Every metric by scikit-learn on the labels themselves (the oracle)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        balanced = float(balanced_accuracy_score(y_true, predicted))
    clipped = np.clip(probabilities.astype(np.float64), 1e-15, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    scores = {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "balanced_accuracy": balanced,
        "f1_macro": float(f1_score(y_true, predicted, average="macro", zero_division=0)),
        "precision_macro": float(
            precision_score(y_true, predicted, average="macro", zero_division=0)
        ),
        "recall_macro": float(recall_score(y_true, predicted, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y_true, clipped, labels=classes)),
    }
    if len(classes) == 2 and len(set(y_true.tolist())) == 2:
        scores["roc_auc"] = float(roc_auc_score(y_true == classes[1], clipped[:, 1]))
    return scores


NAMES = ["no", "yes", "maybe", "Z", "a b"]


@settings(max_examples=150, deadline=None)
@given(
    k=st.integers(2, 4),
    rows=st.integers(2, 60),
    seed=st.integers(0, 2**32 - 1),
    truth_classes=st.integers(1, 4),
    text=st.booleans(),
)
def test_metrics_on_positions_or_pair_counts_are_scikit_learns_on_the_labels(
    k: int, rows: int, seed: int, truth_classes: int, text: bool
) -> None:
    # Text labels are scored as positions, and the label metrics on counted (true, predicted)
    # pairs: every number must be scikit-learn's on the labels, row by row, bit for bit.
    rng = np.random.default_rng(seed)
    classes: list[Any] = sorted(NAMES[:k]) if text else sorted(rng.choice(50, k, replace=False))
    # The held-out rows may lack classes the model predicts, and the reverse.
    y_true = np.array(classes)[rng.integers(0, min(truth_classes, k), rows)]
    predicted = np.array(classes, dtype=object if text else None)[rng.integers(0, k, rows)]
    probabilities = rng.random((rows, k)).astype(np.float32)
    if text:
        assert class_positions(classes, y_true, predicted) is not None
    served = compute_metrics("classification", y_true, predicted, probabilities, classes)
    assert served == _on_labels(y_true, predicted, probabilities, classes)


def test_labels_outside_the_classes_or_unsorted_classes_use_the_labels() -> None:
    y_true = np.array(["no", "yes", "later"])  # a held-out class the model never saw
    predicted = np.array(["no", "yes", "yes"], dtype=object)
    assert class_positions(["no", "yes"], y_true, predicted) is None
    assert class_positions(["yes", "no"], predicted, predicted) is None
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]], np.float32)
    classes = ["no", "yes"]
    kept = np.array(["no", "yes", "yes"])
    assert compute_metrics("classification", kept, predicted, probabilities, classes) == (
        _on_labels(kept, predicted, probabilities, classes)
    )


@settings(max_examples=100, deadline=None)
@given(
    k=st.integers(2, 4),
    rows=st.integers(2, 60),
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["text", "integer", "regression"]),
)
def test_the_primary_score_is_the_primary_metric_computed_alone(
    k: int, rows: int, seed: int, kind: str
) -> None:
    # A tolerance reads primary_score; the record reads compute_metrics: they must agree.
    rng = np.random.default_rng(seed)
    task = "regression" if kind == "regression" else "classification"
    if task == "regression":
        y_true, predicted = rng.normal(size=rows), rng.normal(size=rows).astype(np.float32)
        probabilities, classes = None, []
    else:
        classes = sorted(NAMES[:k]) if kind == "text" else list(range(k))
        y_true = np.array(classes)[rng.integers(0, k, rows)]
        predicted = np.array(classes)[rng.integers(0, k, rows)]
        probabilities = rng.random((rows, k)).astype(np.float32)
    every = compute_metrics(task, y_true, predicted, probabilities, classes)
    assert primary_score(task, y_true, predicted, classes) == every[primary_metric(task)]
