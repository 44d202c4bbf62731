"""Global feature importance: permutation importance of the fitted Pipeline on held-out rows,
recorded in the manifest by the training job."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from onnxkit.contract.manifest import load_manifest
from onnxkit.contract.values import ValueRule
from onnxkit.datasets import bundled
from onnxkit.local.training import arguments
from training_jobs import evaluation, train
from training_jobs.data import infer_schema, prepare
from training_jobs.estimators import EstimatorSettings, build_pipeline, fit, make_estimator
from training_jobs.table import Table

NOISE = "noise"


def train_with_noise(tmp_path: Path, dataset: str, model: str) -> Path:
    """Train on a bundled dataset with one more column of pure noise; the model directory."""
    data = bundled(dataset)
    frame = pd.read_csv(data.path)
    frame.insert(1, NOISE, np.random.default_rng(3).normal(size=len(frame)))
    csv = tmp_path / "train.csv"
    frame.to_csv(csv, index=False)
    argv = arguments(
        {
            "target": data.target,
            "model": model,
            "train": str(csv),
            "model-dir": str(tmp_path / "model"),
            "output-dir": str(tmp_path / "output"),
            "latency-runs": "0",
            "quantization": "none",
        }
    )
    assert train.main(argv) == 0
    return tmp_path / "model"


@pytest.mark.parametrize(
    ("dataset", "model"),
    [("diabetes", "ridge"), ("customer_churn", "logistic_regression")],
)
def test_a_noise_feature_ranks_near_the_bottom(tmp_path: Path, dataset: str, model: str) -> None:
    manifest = load_manifest(train_with_noise(tmp_path, dataset, model))
    importance = manifest.importance
    assert importance is not None
    # One finite mean and std per feature, in signature order, on every held-out row here.
    assert [f.name for f in importance.features] == manifest.signature.feature_names
    assert all(math.isfinite(f.mean) and math.isfinite(f.std) for f in importance.features)
    assert importance.metric == manifest.primary_metric
    assert importance.rows == importance.held_out_rows == manifest.data.validation_rows
    ranked = [f.name for f in importance.ranked()]
    # Noise is in the bottom third, and far below the feature that matters most.
    assert ranked.index(NOISE) >= len(ranked) - max(3, len(ranked) // 3), ranked
    noise = next(f for f in importance.features if f.name == NOISE)
    assert noise.mean < 0.2 * importance.ranked()[0].mean
    assert manifest.public()["importance"] == importance.to_dict()


def test_importance_samples_at_most_the_row_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "IMPORTANCE_ROWS", 40)
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"signal": rng.normal(size=200), "other": rng.normal(size=200)})
    y = (X["signal"] > 0).astype(int).to_numpy()
    pipeline = Pipeline([("model", LogisticRegression())]).fit(X, y)
    first = evaluation.measure_importance(pipeline, X, y, "classification", seed=5)
    assert (first.rows, first.held_out_rows, first.repeats) == (40, 200, 5)
    assert first.ranked()[0].name == "signal"
    # Seeded: the same job gives the same numbers.
    assert evaluation.measure_importance(pipeline, X, y, "classification", seed=5) == first


@pytest.mark.parametrize(
    ("dataset", "model"),
    [
        ("breast_cancer", "mlp"),
        ("breast_cancer", "random_forest"),
        ("iris", "hist_gradient_boosting"),
        ("diabetes", "ridge"),
        ("diabetes", "mlp"),
        ("customer_churn", "logistic_regression"),  # a categorical column: the whole Pipeline
    ],
)
def test_importance_is_the_whole_pipelines_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, dataset: str, model: str
) -> None:
    # Numeric-only preprocessing runs once and the model is shuffled on its output; that must
    # be scikit-learn's permutation importance of the whole Pipeline, number for number.
    data = bundled(dataset)
    frame = pd.read_csv(data.path)
    frame.iloc[::7, 1] = np.nan  # missing values for the imputer to fill
    schema = infer_schema(Table.of_frame(frame), data.target, "auto", [], ValueRule.of(None))
    X, y = prepare(Table.of_frame(frame), schema, data.target)
    estimator = make_estimator(schema.task, model, EstimatorSettings(), seed=0, rows=len(X))
    pipeline = fit(build_pipeline(schema, estimator), X, y)
    numeric = not schema.categorical
    assert evaluation._shuffled_alike(pipeline, list(X.columns)) is numeric
    fast = evaluation.measure_importance(pipeline, X, y, schema.task, seed=3)
    monkeypatch.setattr(evaluation, "_shuffled_alike", lambda *_: False)
    assert evaluation.measure_importance(pipeline, X, y, schema.task, seed=3) == fast
