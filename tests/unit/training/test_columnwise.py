"""The columnwise imputer and scaler fit the same statistics as scikit-learn's, bit for bit,
with less memory, and the job's Pipeline copies no rows it need not (training_jobs/columnwise.py,
training_jobs/estimators.py)."""

from __future__ import annotations

import gc
import tracemalloc
import types
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from onnxkit.datasets import bundled
from training_jobs import columnwise
from training_jobs.columnwise import (
    ColumnwiseImputer,
    ColumnwiseScaler,
    ColumnwiseTransformer,
    column_groups,
)
from training_jobs.data import Schema
from training_jobs.estimators import build_pipeline, fit
from training_jobs.hyperparameters import parse_args
from training_jobs.job import read_inputs


def awkward(rows: int, columns: int, seed: int) -> np.ndarray:
    """float32 columns with missing values, signed zeros, ties, huge values and an
    all-missing column, so medians hit every case (even and odd counts, empty)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, columns)).astype(np.float32)
    X[:, 1] = rng.choice(np.array([0.0, -0.0, 1.0, -1.0], dtype=np.float32), size=rows)
    X[:, 2] = rng.integers(0, 3, size=rows).astype(np.float32)
    X[:, 3] = np.float32(3.0e38) * rng.choice(np.array([1, -1], dtype=np.float32), size=rows)
    X[:, 4] = np.nan
    X[rng.random(size=(rows, columns)) < 0.1] = np.nan
    X[: rows // 2, 5] = np.nan
    return X


@pytest.fixture
def small_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups of three columns on 101 rows: several groups, and a last one narrower."""
    monkeypatch.setattr(columnwise, "CHUNK_BYTES", 8 * 101 * 3)


def test_column_groups_cover_every_column_once() -> None:
    groups = column_groups(rows=1_000_000, columns=50)
    assert [i for g in groups for i in range(50)[g]] == list(range(50))
    assert max(g.stop - g.start for g in groups) == columnwise.CHUNK_BYTES // 8_000_000
    assert column_groups(rows=10**9, columns=2) == [slice(0, 1), slice(1, 2)]
    assert column_groups(rows=10, columns=7) == [slice(0, 7)]


@pytest.mark.usefixtures("small_groups")
@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("strategy", ["median", "mean"])
@pytest.mark.parametrize("rows", [101, 100])
def test_imputer_statistics_are_scikit_learns(order: str, strategy: str, rows: int) -> None:
    X = np.asarray(awkward(rows, 11, seed=rows), order=order)
    frame = pd.DataFrame(X, columns=[f"c{i}" for i in range(11)])
    assert len(column_groups(*X.shape)) > 1
    for data in (X, frame):
        ours = ColumnwiseImputer(strategy=strategy, keep_empty_features=True).fit(data)
        theirs = SimpleImputer(strategy=strategy, keep_empty_features=True).fit(data)
        assert ours.statistics_.dtype == theirs.statistics_.dtype
        assert ours.statistics_.tobytes() == theirs.statistics_.tobytes()
        assert ours.transform(data).tobytes() == theirs.transform(data).tobytes()
    assert not np.isnan(X).all() and np.isnan(X[:, 4]).all()  # the input is left as it was


@pytest.mark.usefixtures("small_groups")
@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("missing", [True, False])
def test_scaler_statistics_are_scikit_learns(order: str, missing: bool) -> None:
    X = awkward(101, 11, seed=3)
    X[:, 3] /= np.float32(1e30)  # finite sums: the scaler takes squares
    if not missing:
        X = SimpleImputer(strategy="median", keep_empty_features=True).fit_transform(X)
    X = np.asarray(X, order=order)
    ours = ColumnwiseScaler().fit(X)
    theirs = StandardScaler().fit(X)
    for name in ("mean_", "var_", "scale_", "n_samples_seen_"):
        mine, reference = np.asarray(getattr(ours, name)), np.asarray(getattr(theirs, name))
        assert (mine.dtype, mine.shape) == (reference.dtype, reference.shape), name
        assert mine.tobytes() == reference.tobytes(), name
    assert ours.n_features_in_ == 11
    assert ours.transform(X).tobytes() == theirs.transform(X).tobytes()


def test_imputer_fit_does_not_copy_the_data() -> None:
    """One group: scikit-learn's median, without the copy of the data its fit makes first."""
    X = np.asfortranarray(awkward(20_000, 40, seed=1))
    tracemalloc.start()
    try:
        ColumnwiseImputer(strategy="median", keep_empty_features=True).fit(X)
        _, ours = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        SimpleImputer(strategy="median", keep_empty_features=True).fit(X)
        _, theirs = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(column_groups(*X.shape)) == 1  # scikit-learn's own path, without the copy
    assert theirs - ours > 0.9 * X.nbytes


def test_imputer_fit_by_groups_stays_small(monkeypatch: pytest.MonkeyPatch) -> None:
    X = np.asfortranarray(awkward(20_000, 40, seed=2))
    monkeypatch.setattr(columnwise, "CHUNK_BYTES", 8 * 20_000 * 2)
    tracemalloc.start()
    try:
        ColumnwiseImputer(strategy="median", keep_empty_features=True).fit(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 2


# --- the job's Pipeline: no copy of the rows it need not make, the same model --------------


def _table(rows: int, seed: int, categorical: bool) -> tuple[pd.DataFrame, np.ndarray, Schema]:
    """Numeric columns with missing values (and a categorical one), a binary label."""
    X = pd.DataFrame(awkward(rows, 7, seed)[:, [0, 1, 2, 5, 6]], columns=list("abcde"))
    y = (np.nan_to_num(X["a"].to_numpy()) > 0).astype(np.int64)
    numeric = list(X.columns)
    if categorical:
        X["colour"] = np.random.default_rng(seed).choice(["red", "blue", ""], size=rows)
    kinds = (numeric, ["colour"] if categorical else [])
    return X, y, Schema(*kinds, features=list(X.columns), task="classification")


def _mlp() -> MLPClassifier:
    return MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0)


@pytest.mark.parametrize("categorical", [False, True])
def test_the_pipeline_fits_and_predicts_without_changing_its_input(categorical: bool) -> None:
    """The imputer and scaler work in place on the transformer's own selection of columns: the
    caller's rows stay as they were, missing values included."""
    X, y, schema = _table(300, seed=4, categorical=categorical)
    before = X.copy()
    pipeline = fit(build_pipeline(schema, _mlp()), X, y, curve=False)
    pipeline.predict_proba(X)
    pd.testing.assert_frame_equal(X, before)


@pytest.mark.parametrize("categorical", [False, True])
def test_the_pipeline_is_scikit_learns_column_transformer_bit_for_bit(categorical: bool) -> None:
    X, y, schema = _table(300, seed=5, categorical=categorical)
    ours = fit(build_pipeline(schema, _mlp()), X, y, curve=False)
    preprocess = ours.named_steps["preprocess"]
    assert isinstance(preprocess, ColumnwiseTransformer)
    # The same steps inside scikit-learn's own ColumnTransformer, copying as it does.
    theirs_steps = clone(preprocess).get_params()["transformers"]
    theirs = Pipeline([("preprocess", ColumnTransformer(theirs_steps)), ("model", _mlp())]).fit(
        X, y
    )
    ours_out, theirs_out = preprocess.transform(X), theirs.named_steps["preprocess"].transform(X)
    if hasattr(ours_out, "toarray"):
        ours_out, theirs_out = ours_out.toarray(), theirs_out.toarray()
    assert ours_out.tobytes(order="A") == theirs_out.tobytes(order="A")
    assert ours_out.flags.f_contiguous == theirs_out.flags.f_contiguous
    for mine, reference in zip(
        ours.named_steps["model"].coefs_, theirs.named_steps["model"].coefs_, strict=True
    ):
        assert mine.tobytes() == reference.tobytes()


def test_one_dense_output_is_handed_over_without_a_copy() -> None:
    X, y, schema = _table(300, seed=6, categorical=False)
    preprocess = build_pipeline(schema, _mlp()).named_steps["preprocess"]
    stacked = []
    original = ColumnTransformer._hstack

    def spy(self: ColumnTransformer, Xs: list[Any], *, n_samples: int) -> Any:
        out = ColumnwiseTransformer._hstack(self, Xs, n_samples=n_samples)
        stacked.append(out is Xs[0])
        return out

    assert original is not ColumnwiseTransformer._hstack
    preprocess._hstack = types.MethodType(spy, preprocess)
    preprocess.fit_transform(X, y)
    assert stacked == [True]


class _RowsGone(BaseEstimator, ClassifierMixin):
    """A fake model that records whether the training rows were still alive when it fitted."""

    def __init__(self, watched: weakref.ref[pd.DataFrame] | None = None) -> None:
        self.watched = watched

    def fit(self, X: Any, y: Any) -> _RowsGone:
        gc.collect()
        self.rows_alive_ = self.watched is not None and self.watched() is not None
        self.classes_ = np.unique(y)
        return self


def test_fit_lets_handed_over_rows_go_before_the_model_fits() -> None:
    X, y, schema = _table(300, seed=7, categorical=True)
    holder = {"rows": X}
    model = _RowsGone(weakref.ref(X))
    del X
    fit(build_pipeline(schema, model), lambda: holder.pop("rows"), y, curve=False)
    assert model.rows_alive_ is False
    # A frame passed as it is stays the caller's.
    kept, _, _ = _table(300, seed=7, categorical=True)
    model = _RowsGone(weakref.ref(kept))
    fit(build_pipeline(schema, model), kept, y, curve=False)
    assert model.rows_alive_ is True


def test_inputs_hand_their_training_rows_over_once(tmp_path: Path) -> None:
    data = bundled("breast_cancer")
    argv = ["--target", data.target, "--train", str(data.path), "--model-dir", str(tmp_path)]
    inputs = read_inputs(parse_args(argv))
    rows = inputs.take_training_rows()
    assert len(rows) == len(inputs.y_train)
    with pytest.raises(AttributeError):
        _ = inputs.X_train
