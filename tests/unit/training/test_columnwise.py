"""The columnwise imputer and scaler fit the same statistics as scikit-learn's, bit for bit,
with less memory (training_jobs/columnwise.py)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler

from training_jobs import columnwise
from training_jobs.columnwise import ColumnwiseImputer, ColumnwiseScaler, column_groups


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
