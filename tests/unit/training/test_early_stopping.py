"""HistGradientBoosting's early-stopping split, made by the job (less memory): the same model
as scikit-learn's own split, bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.neural_network import MLPClassifier

from onnxkit.contract.values import ValueRule
from training_jobs.data import infer_schema, prepare
from training_jobs.estimators import (
    EstimatorSettings,
    build_pipeline,
    early_stopping_split,
    fit,
    make_estimator,
)
from training_jobs.table import Table

ROWS = 12_000  # the split's training part (10,800) is above "auto"'s 10,000


def _table(labels: str, rows: int = ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 6)).astype(np.float32)
    X = np.asfortranarray(X)  # the layout the Pipeline hands over
    score = X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + rng.normal(scale=0.8, size=rows)
    if labels == "regression":
        return X, score.astype(np.float64)
    if labels == "text":
        return X, np.array(["low", "mid", "high"])[np.digitize(score, [-0.5, 0.7])]
    return X, (score > 0).astype(np.int64)


def _answers(model: Any, X: np.ndarray) -> list[np.ndarray]:
    answers = [model.predict(X), np.asarray(model.train_score_), model.validation_score_]
    if hasattr(model, "predict_proba"):
        answers.append(model.predict_proba(X))
    return answers


@pytest.mark.parametrize("labels", ["binary", "text", "regression"])
def test_the_split_made_here_fits_scikit_learns_model_bit_for_bit(labels: str) -> None:
    X, y = _table(labels)
    kind = (
        HistGradientBoostingRegressor
        if labels == "regression"
        else (HistGradientBoostingClassifier)
    )
    theirs = kind(random_state=7).fit(X, y)
    ours = kind(random_state=7)
    parts = early_stopping_split(ours, X, y)
    assert parts is not None
    X_fit, y_fit, X_val, y_val = parts
    assert X_fit.dtype == X_val.dtype == np.float64
    assert len(X_fit) + len(X_val) == ROWS and len(X_val) == ROWS // 10
    ours.fit(X_fit, y_fit, X_val=X_val, y_val=y_val)
    assert ours.n_iter_ == theirs.n_iter_ < 100  # it did stop early
    probe, _ = _table(labels, rows=2_000, seed=1)
    for mine, reference in zip(_answers(ours, probe), _answers(theirs, probe), strict=True):
        assert np.array_equal(mine, reference)
    # Another seed is another split (the seed is scikit-learn's, drawn the same way).
    other = early_stopping_split(kind(random_state=8), X, y)
    assert other is not None and not np.array_equal(other[1], y_fit)


def test_the_job_fits_the_same_pipeline_as_scikit_learn() -> None:
    X, y = _table("text")
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame.iloc[::9, 2] = np.nan
    frame["label"] = y
    table = Table.of_frame(frame)
    schema = infer_schema(table, "label", "auto", [], ValueRule.of(None))
    features, labels = prepare(table, schema, "label")
    estimator = make_estimator(schema.task, "hist_gradient_boosting", EstimatorSettings(), 5)
    ours = fit(build_pipeline(schema, estimator), features, labels, curve=False)
    theirs = clone(build_pipeline(schema, clone(estimator))).fit(features, labels)
    assert ours[-1].n_iter_ == theirs[-1].n_iter_
    assert np.array_equal(ours.predict_proba(features), theirs.predict_proba(features))


@pytest.mark.parametrize(
    ("model", "rows"),
    [
        (HistGradientBoostingClassifier(random_state=1), 10_000),  # no early stopping
        (HistGradientBoostingClassifier(random_state=1), 11_000),  # its part would not
        (HistGradientBoostingClassifier(random_state=None), ROWS),  # unseeded
        (HistGradientBoostingClassifier(random_state=1, early_stopping=True), ROWS),
        (HistGradientBoostingClassifier(random_state=1, validation_fraction=None), ROWS),
        (MLPClassifier(random_state=1), ROWS),
    ],
)
def test_scikit_learns_own_path_everywhere_else(model: Any, rows: int) -> None:
    X, y = _table("binary", rows=rows)
    assert early_stopping_split(model, X, y) is None
