"""Scoring on the held-out rows: metrics, the naive baseline, predictions and latency."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline

from onnxkit.contract.manifest import Baseline, Importance
from training_jobs.artifact import make_baseline, make_importance

# Permutation importance costs features x repeats predictions of the sampled rows: a seeded
# sample of at most this many held-out rows bounds it (a few seconds even for wide data).
IMPORTANCE_ROWS = 2000
IMPORTANCE_REPEATS = 5


def primary_metric(task: str) -> str:
    """The metric the int8 tolerance and the quality gate look at first."""
    return "accuracy" if task == "classification" else "r2"


def compute_metrics(
    task: str,
    y_true: np.ndarray,
    predicted: np.ndarray,
    probabilities: np.ndarray | None,
    classes: Sequence[Any],
) -> dict[str, float]:
    """Held-out metrics: classification or regression."""
    if task == "regression":
        return {
            "rmse": float(np.sqrt(mean_squared_error(y_true, predicted))),
            "mae": float(mean_absolute_error(y_true, predicted)),
            "r2": float(r2_score(y_true, predicted)),
        }
    labels: Sequence[Any] = classes
    text = np.asarray(y_true).dtype.kind not in "iub"  # integer labels are checked fast
    encoded = class_positions(classes, y_true, predicted) if text else None
    if encoded is not None:
        # The same metrics of the classes' positions: scikit-learn checks and sorts labels
        # in every call, which for 200,000 text labels cost 6x the metrics themselves.
        (y_true, predicted), labels = encoded, range(len(classes))
    with warnings.catch_warnings():
        # Predicted classes absent from the held-out rows do not count; that is the intent.
        warnings.simplefilter("ignore", category=UserWarning)
        balanced = float(balanced_accuracy_score(y_true, predicted))
    # One call for the three: f1_score, precision_score and recall_score each make this same
    # call (f1 with beta=1) and keep one of its answers.
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, predicted, beta=1, average="macro", zero_division=0
    )
    scores = {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "balanced_accuracy": balanced,
        "f1_macro": float(f1),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
    }
    if probabilities is not None:
        clipped = np.clip(probabilities.astype(np.float64), 1e-15, 1.0)
        clipped /= clipped.sum(axis=1, keepdims=True)
        scores["log_loss"] = float(log_loss(y_true, clipped, labels=list(labels)))
        if len(classes) == 2 and len(set(y_true.tolist())) == 2:
            scores["roc_auc"] = float(roc_auc_score(y_true == labels[1], clipped[:, 1]))
    return scores


def class_positions(classes: Sequence[Any], *label_arrays: np.ndarray) -> list[np.ndarray] | None:
    """Each array's labels as their positions in ``classes``, or None when the classes are not
    in sorted order or an array holds a label outside them. Sorted classes (scikit-learn's
    ``classes_``) keep the labels' order, so every metric of the positions is the metric of
    the labels, bit for bit (the same classes in the same order)."""
    if len(classes) < 2 or list(classes) != sorted(classes):
        return None
    positions = []
    for labels in label_arrays:
        codes = pd.Categorical(np.asarray(labels), categories=list(classes)).codes
        if (codes < 0).any():
            return None
        positions.append(codes.astype(np.int64))
    return positions


def measure_baseline(
    task: str,
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_valid: pd.DataFrame,
    y_valid: np.ndarray,
) -> Baseline:
    """The naive model the quality gate measures lift from, on the same rows: the training
    class prior (it answers the majority class) or the training mean."""
    if task == "regression":
        regressor = DummyRegressor(strategy="mean").fit(X_train, y_train)
        predicted = regressor.predict(X_valid)
        return make_baseline(
            strategy="mean", metrics=compute_metrics(task, y_valid, predicted, None, [])
        )
    classifier = DummyClassifier(strategy="prior").fit(X_train, y_train)
    labels, counts = np.unique(y_valid, return_counts=True)
    return make_baseline(
        strategy="prior",
        metrics=compute_metrics(
            task,
            y_valid,
            classifier.predict(X_valid),
            classifier.predict_proba(X_valid),
            list(classifier.classes_),
        ),
        class_support={str(_plain(label)): int(n) for label, n in zip(labels, counts, strict=True)},
    )


def measure_importance(
    pipeline: Pipeline, X_valid: pd.DataFrame, y_valid: np.ndarray, task: str, seed: int
) -> Importance:
    """Permutation importance of the fitted Pipeline on at most ``IMPORTANCE_ROWS`` held-out
    rows (a seeded sample), scored with the primary metric: how much it drops, per feature,
    when that column is shuffled."""
    rows = min(len(X_valid), IMPORTANCE_ROWS)
    sample = np.random.default_rng(seed).permutation(len(X_valid))[:rows]
    sample.sort()  # the held-out order, so a sample of every row is the rows themselves
    metric = primary_metric(task)
    result = permutation_importance(
        pipeline,
        X_valid.iloc[sample],
        y_valid[sample],
        scoring=metric,
        n_repeats=IMPORTANCE_REPEATS,
        random_state=seed,
        n_jobs=1,  # the job's cores are the estimator's; joblib workers would copy the data
    )
    drops = {
        str(name): (float(mean), float(std))
        for name, mean, std in zip(
            X_valid.columns, result.importances_mean, result.importances_std, strict=True
        )
    }
    return make_importance(
        metric=metric,
        rows=rows,
        held_out_rows=len(X_valid),
        repeats=IMPORTANCE_REPEATS,
        random_state=seed,
        drops=drops,
    )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


@dataclass
class Prediction:
    """Predicted labels (or values) and class probabilities."""

    labels: np.ndarray
    probabilities: np.ndarray | None


def predict_onnx(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], task: str) -> Prediction:
    """Run a graph; classification graphs return (label, probabilities)."""
    outputs = sess.run(None, feeds)
    if task == "classification":
        return Prediction(np.asarray(outputs[0]).ravel(), np.asarray(outputs[1]))
    return Prediction(np.asarray(outputs[0]).ravel(), None)


def predict_sklearn(pipeline: Pipeline, X: pd.DataFrame, task: str) -> Prediction:
    """Predictions of the fitted Pipeline itself."""
    if task == "classification":
        return Prediction(pipeline.predict(X), pipeline.predict_proba(X))
    return Prediction(pipeline.predict(X), None)


def median_latency_us(call: Callable[[], Any], runs: int) -> float | None:
    """Median wall time of a call in microseconds (after one warm-up); None when runs is 0."""
    if runs <= 0:
        return None
    call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return float(np.median(samples) / 1000)
