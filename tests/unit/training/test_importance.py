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
from onnxkit.datasets import bundled
from onnxkit.local.training import arguments
from training_jobs import evaluation, train

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
