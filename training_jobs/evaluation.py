"""Scoring on the held-out rows: metrics, the naive baseline, predictions and latency."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import onnxruntime as ort
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.impute import SimpleImputer
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
from sklearn.preprocessing import StandardScaler

from onnxkit.contract.manifest import Baseline, Importance
from training_jobs.artifact import make_baseline, make_importance

# Permutation importance costs features x repeats predictions of the sampled rows: a seeded
# sample of at most this many held-out rows bounds it (a few seconds even for wide data).
IMPORTANCE_ROWS = 2000
IMPORTANCE_REPEATS = 5
# Rows per onnxruntime call when a graph scores many rows (:func:`predict_onnx`).
SCORING_ROWS = 16_384


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
    y_true, predicted, labels = _encoded(classes, y_true, predicted)
    # The label metrics depend on the rows only through how often each (true, predicted)
    # pair occurs: scikit-learn computes them on the distinct pairs, each weighted by its
    # count, with integer sums, so the same numbers (3.4x faster at 200,000 rows).
    pairs, weights = _pair_counts(y_true, predicted)
    with warnings.catch_warnings():
        # Predicted classes absent from the held-out rows do not count; that is the intent.
        warnings.simplefilter("ignore", category=UserWarning)
        balanced = float(balanced_accuracy_score(*pairs, sample_weight=weights))
    # One call for the three: f1_score, precision_score and recall_score each make this same
    # call (f1 with beta=1) and keep one of its answers.
    precision, recall, f1, _ = precision_recall_fscore_support(
        *pairs, beta=1, average="macro", zero_division=0, sample_weight=weights
    )
    scores = {
        "accuracy": _accuracy(*pairs, weights),
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


def primary_score(
    task: str, y_true: np.ndarray, predicted: np.ndarray, classes: Sequence[Any]
) -> float:
    """``compute_metrics(...)[primary_metric(task)]`` alone, computed the same way: what a
    tolerance reads, where the other metrics are only recorded."""
    if task == "regression":
        return float(r2_score(y_true, predicted))
    y_true, predicted, _ = _encoded(classes, y_true, predicted)
    return _accuracy(y_true, predicted)


def _accuracy(y_true: np.ndarray, predicted: np.ndarray, weights: Any = None) -> float:
    return float(accuracy_score(y_true, predicted, sample_weight=weights))


def _pair_counts(
    y_true: np.ndarray, predicted: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None]:
    """The distinct (true, predicted) label pairs and how many rows have each (integer
    labels); other labels as they are, unweighted."""
    if np.asarray(y_true).dtype.kind not in "iub" or np.asarray(predicted).dtype.kind not in "iub":
        return (y_true, predicted), None
    labels = np.union1d(y_true, predicted)  # sorted, so a pair's code orders like the pair
    width = len(labels)
    if width * width > len(y_true):  # more possible pairs than rows: counting gains nothing
        return (y_true, predicted), None
    codes = np.searchsorted(labels, y_true) * width + np.searchsorted(labels, predicted)
    counts = np.bincount(codes, minlength=width * width)
    present = np.flatnonzero(counts)
    return (labels[present // width], labels[present % width]), counts[present].astype(np.int64)


def _encoded(
    classes: Sequence[Any], y_true: np.ndarray, predicted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Sequence[Any]]:
    """Text labels as their classes' positions (with the positions as the labels), when that
    keeps every metric the same; integer labels as they are."""
    if np.asarray(y_true).dtype.kind in "iub":  # integer labels are checked fast
        return y_true, predicted, classes
    encoded = class_positions(classes, y_true, predicted)
    if encoded is None:
        return y_true, predicted, classes
    # The same metrics of the classes' positions: scikit-learn checks and sorts labels in
    # every call, which for 200,000 text labels cost 6x the metrics themselves.
    return encoded[0], encoded[1], range(len(classes))


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
    estimator, rows_taken = pipeline, X_valid.iloc[sample]
    if _shuffled_alike(pipeline, list(X_valid.columns)):
        # Each feature is one column of the transformed rows, computed from it alone, row by
        # row: shuffling it there is shuffling it here, and the model answers the same. The
        # transformation then runs once, not once a shuffle (features x repeats times).
        # A frame, as the rows were: shuffled in place the same way, its values reach the
        # model in the memory layout the Pipeline hands over (a float sum's order follows it).
        estimator, rows_taken = pipeline[-1], pd.DataFrame(pipeline[:-1].transform(rows_taken))
    result = permutation_importance(
        estimator,
        rows_taken,
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


def _shuffled_alike(pipeline: Pipeline, columns: list[Any]) -> bool:
    """Whether the Pipeline's preprocessing turns the ``columns``, in order, into as many
    output columns, each by imputation and scaling of its own column alone."""
    preprocess = pipeline.steps[0][1] if len(pipeline.steps) == 2 else None
    if not isinstance(preprocess, ColumnTransformer):
        return False
    widths = {name: part.stop - part.start for name, part in preprocess.output_indices_.items()}
    used = [(steps, taken) for name, steps, taken in preprocess.transformers_ if widths[name]]
    if len(used) != 1 or list(used[0][1]) != columns or sum(widths.values()) != len(columns):
        return False
    steps = used[0][0].steps if isinstance(used[0][0], Pipeline) else [("", used[0][0])]
    return all(
        isinstance(step, StandardScaler)
        or (isinstance(step, SimpleImputer) and not step.add_indicator)
        for _, step in steps
    )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


@dataclass
class Prediction:
    """Predicted labels (or values) and class probabilities."""

    labels: np.ndarray
    probabilities: np.ndarray | None


def predict_onnx(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], task: str) -> Prediction:
    """Run a graph on many rows; classification graphs return (label, probabilities).

    More than ``SCORING_ROWS`` rows go in blocks of that many, the blocks on every core (a
    session runs calls from several threads at once): onnxruntime's arena then keeps one
    block's tensors per thread instead of growing to the whole hold-out's, and a block
    answers 2.6x faster a row than 200,000 rows at once without the arena (measured on the
    1M-row MLP's graph, one thread). A row's answer does not depend on the other rows of its
    call (the row-independence probe refuses a graph whose does)."""
    rows = len(next(iter(feeds.values()))) if feeds else 0
    if rows <= SCORING_ROWS:
        outputs = sess.run(None, feeds)
    else:

        def block(start: int) -> list[Any]:
            end = start + SCORING_ROWS
            return cast(list[Any], sess.run(None, {n: v[start:end] for n, v in feeds.items()}))

        starts = range(0, rows, SCORING_ROWS)
        with ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, len(starts))) as workers:
            parts = list(workers.map(block, starts))
        outputs = [np.concatenate([part[i] for part in parts]) for i in range(len(parts[0]))]
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
