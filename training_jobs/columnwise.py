"""scikit-learn's SimpleImputer and StandardScaler, fitted a few columns at a time.

Both compute each column's statistic from that column alone (a median, a mean and a
variance), but over the whole matrix at once, with temporaries several times its size:
SimpleImputer's median sorts a masked copy through an int64 argsort (about 18 bytes a cell,
877 MiB and 6 s for 800k x 50 float32), StandardScaler's variance takes a float64 copy
(8 bytes a cell), and SimpleImputer's transform masks the whole matrix at once (a byte a
cell). Here the same scikit-learn code runs on groups of columns whose temporaries stay near
:data:`CHUNK_BYTES`, so the statistics are the same bit for bit (each
column's numbers go through the same operations in the same order: a column slice of the
column-major block the job feeds is itself column-major). Tables whose columns fit in one
group take scikit-learn's own path unchanged. The fitted objects are instances of the
scikit-learn classes, so everything that reads them (skl2onnx, the manifest) sees the same
attributes; ``training_jobs.export`` registers the same ONNX converters for them.

:class:`ColumnwiseTransformer` is scikit-learn's ColumnTransformer handing a single dense
output over as it is, where scikit-learn's ``np.hstack`` copies it: at the job's memory peak
that copy sat beside the rows it was made from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler
from sklearn.utils._mask import _get_mask
from sklearn.utils.validation import check_is_fitted, validate_data

# Bytes of float64 per group of columns (the rows times the columns in one group, times 8).
CHUNK_BYTES = 32 << 20


def column_groups(rows: int, columns: int) -> list[slice]:
    """Slices of at most ``CHUNK_BYTES / (8 * rows)`` columns (at least one) covering all."""
    width = max(1, CHUNK_BYTES // max(8 * rows, 1))
    return [slice(start, min(start + width, columns)) for start in range(0, columns, width)]


class ColumnwiseImputer(SimpleImputer):
    """SimpleImputer whose mean and median are computed a group of columns at a time, and
    whose fit reads dense input where it is (scikit-learn copies it in fit too, though the
    statistics only read it; transform still copies as ``copy`` says)."""

    copy: bool

    def _validate_input(self, X: Any, in_fit: bool) -> Any:
        if not (in_fit and self.copy and not sp.issparse(X)):
            return super()._validate_input(X, in_fit)
        self.copy = False
        try:
            return super()._validate_input(X, in_fit)
        finally:
            self.copy = True

    def _dense_fit(self, X: Any, strategy: str, missing_values: Any, fill_value: Any) -> Any:
        groups = column_groups(X.shape[0], X.shape[1])
        if strategy not in ("mean", "median") or self.add_indicator or len(groups) == 1:
            return super()._dense_fit(X, strategy, missing_values, fill_value)
        fit = super()._dense_fit  # bound here: a comprehension has no zero-argument super()
        return np.concatenate([fit(X[:, g], strategy, missing_values, fill_value) for g in groups])

    def transform(self, X: Any) -> Any:
        """As ``SimpleImputer.transform``; the copy is filled a group of columns at a time
        (scikit-learn builds the missing-value mask of the whole matrix at once, a byte a
        cell: 0.25x the float32 data)."""
        if (
            not self.keep_empty_features
            or self.add_indicator
            or sp.issparse(X)
            or len(column_groups(*np.shape(X))) == 1
        ):
            return super().transform(X)
        check_is_fitted(self)
        X = self._validate_input(X, in_fit=False)
        if X.shape[1] != self.statistics_.shape[0]:
            raise ValueError(
                f"X has {X.shape[1]} features per sample, expected {self.statistics_.shape[0]}"
            )
        statistics = self.statistics_.astype(self._fill_dtype, copy=False)
        for group in column_groups(*X.shape):
            part = X[:, group]  # a view: filled in place
            missing = _get_mask(part, self.missing_values)
            part[missing] = np.broadcast_to(statistics[group], part.shape)[missing]
        return X


class ColumnwiseScaler(StandardScaler):
    """StandardScaler whose mean and variance are computed a group of columns at a time."""

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> ColumnwiseScaler:
        """As ``StandardScaler.fit``; dense arrays without sample weights go by column groups."""
        groups = column_groups(X.shape[0], X.shape[1])
        if sample_weight is not None or not isinstance(X, np.ndarray) or len(groups) == 1:
            return super().fit(X, y, sample_weight)
        validate_data(self, X, reset=True, skip_check_array=True)  # n_features_in_ only
        parts = [StandardScaler(**self.get_params()).fit(X[:, g]) for g in groups]
        for name in ("mean_", "var_", "scale_"):
            values = [getattr(part, name) for part in parts]
            setattr(self, name, None if values[0] is None else np.concatenate(values))
        seen = np.concatenate(
            [np.broadcast_to(part.n_samples_seen_, part.n_features_in_) for part in parts]
        )
        # As partial_fit: one count when every column has the same (no missing values).
        self.n_samples_seen_ = seen[0] if np.ptp(seen) == 0 else seen
        return self


class ColumnwiseTransformer(ColumnTransformer):
    """ColumnTransformer whose one dense output is returned as it is: ``np.hstack`` of a single
    array is a copy of it (0.8x the float32 data at 1M rows). ``_hstack`` is the hook
    scikit-learn's docstring offers subclasses for how outputs are stacked."""

    sparse_output_: bool

    def _hstack(self, Xs: list[Any], *, n_samples: int) -> Any:
        if len(Xs) == 1 and isinstance(Xs[0], np.ndarray) and not self.sparse_output_:
            return Xs[0]
        return super()._hstack(Xs, n_samples=n_samples)
