"""Rows of values -> ONNX Runtime feeds, or a 400 naming every bad value.

A :class:`FeatureSpec` is what serving needs of one manifest feature. :class:`FeedBuilder`
turns rows in signature order into one ``[N, 1]`` input per feature: the fast path checks whole
columns with C-level builtins (``set(map(type, column))``) and converts each column with one
``numpy.array`` call; only a column that fails the check is walked value by value, to say
exactly which instance and feature are wrong. A float64 matrix (a large numeric body, a .npy
body: :mod:`.decode` parses them) is checked and split into inputs without Python objects.

What is missing and what is a number is the contract's rule (:mod:`onnxkit.contract.values`),
with the missing tokens of the served model's manifest: a JSON string that is blank or a
missing token is a missing value, in numeric and categorical features alike.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from onnxkit.contract.api import MAX_DETAILS, detail
from onnxkit.contract.values import FLOAT32_MAX, ValueRule, number_problem

from .errors import ApiError

# What a categorical input receives for a missing value (see FeatureSpec.missing_category).
MISSING_CATEGORY = ""

DEFAULT_RULE = ValueRule()  # the contract's default tokens (a manifest before 1.1)
_NUMBER_TYPES: frozenset[type] = frozenset({int, float})
_NULLABLE_NUMBER_TYPES: frozenset[type] = frozenset({int, float, type(None)})
_STRING_TYPES: frozenset[type] = frozenset({str})
_NULLABLE_STRING_TYPES: frozenset[type] = frozenset({str, type(None)})


@dataclass(frozen=True)
class FeatureSpec:
    """What the predictor needs of one manifest feature."""

    name: str
    onnx_input: str
    numeric: bool
    nullable: bool
    # How this feature's text is read: the manifest's missing tokens (default: the contract's).
    rule: ValueRule = DEFAULT_RULE

    @property
    def allowed_types(self) -> frozenset[type]:
        """Python types (after JSON parsing) accepted as this feature's values."""
        if self.numeric:
            return _NULLABLE_NUMBER_TYPES if self.nullable else _NUMBER_TYPES
        return _NULLABLE_STRING_TYPES if self.nullable else _STRING_TYPES


def describe(value: Any) -> str:
    """A JSON value's kind, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _value_problem(spec: FeatureSpec, value: Any) -> str | None:
    """Why one value cannot feed this feature, or None when it can."""
    kind = type(value)
    if kind is str and spec.rule.is_missing(value):
        if spec.nullable:
            return None
        return f"missing value ({value!r}), and the model does not impute this feature"
    if kind in spec.allowed_types:
        if spec.numeric and value is not None:
            return number_problem(value)
        return None
    if value is None:
        return "missing value (null), and the model does not impute this feature"
    if spec.numeric:
        return f"expected a number, got {describe(value)}"
    return f"expected a category (string), got {describe(value)}"


def read_missing(
    spec: FeatureSpec, values: Sequence[Any], kinds: set[type] | None = None
) -> tuple[Sequence[Any], set[type]]:
    """``values`` with every string the rule reads as missing (blank, a token) made None, or
    MISSING_CATEGORY for a categorical feature the model imputes; and their types."""
    if kinds is None:
        kinds = set(map(type, values))
    if str not in kinds:
        return values, kinds
    is_missing = spec.rule.is_missing
    if kinds <= _NULLABLE_STRING_TYPES:
        # Per distinct value: a categorical column holds few, and set() runs in C.
        imputed = not spec.numeric and spec.nullable
        # "" already is what such a feature receives for a missing value: no copy for it.
        missing = {v for v in set(values) if (v or not imputed) and v is not None and is_missing(v)}
        if not missing:
            return values, kinds
        if imputed:
            return [MISSING_CATEGORY if v in missing else v for v in values], kinds
        values = [None if v in missing else v for v in values]
        return values, set(map(type, values))
    values = [None if type(v) is str and is_missing(v) else v for v in values]
    return values, set(map(type, values))


def too_many(details: list[dict[str, Any]]) -> bool:
    """Whether problem collection should stop (MAX_DETAILS reached)."""
    return len(details) >= MAX_DETAILS


def invalid(details: list[dict[str, Any]]) -> ApiError:
    """The 400 ``invalid_instances`` listing ``details`` (summarised past MAX_DETAILS)."""
    # Collection stops at MAX_DETAILS: a 1000-row body of garbage is not walked to the end.
    if len(details) >= MAX_DETAILS:
        message = f"at least {MAX_DETAILS} problems in instances (first {MAX_DETAILS} listed)"
    else:
        message = f"{len(details)} problem{'s' if len(details) > 1 else ''} in instances"
    return ApiError(400, "invalid_instances", message, details[:MAX_DETAILS])


def _numeric_column(values: Sequence[Any]) -> np.ndarray | None:
    """The ``[N, 1]`` float32 input of numbers and nulls (NaN), or None when a value is beyond
    float32's range. Checked in float64: a value just above FLOAT32_MAX rounds to it, not to
    infinity, so a check after the cast would let through what the contract refuses."""
    wide = np.array(values, dtype=np.float64)
    if (np.abs(wide) > FLOAT32_MAX).any():  # NaN compares False; infinity is caught
        return None
    return wide.astype(np.float32).reshape(-1, 1)


def string_column(values: Sequence[Any]) -> np.ndarray:
    """A categorical input ``[N, 1]`` (object), a missing value (None) as MISSING_CATEGORY."""
    column = np.array(values, dtype=object).reshape(-1, 1)
    if None in values:
        column[column == None] = MISSING_CATEGORY  # noqa: E711  # elementwise comparison
    return column


class FeedBuilder:
    """Builds ONNX Runtime inputs for one signature; what the rows do not change is computed once.

    One ``[N, 1]`` array per feature from rows in signature order. ``numbers_only`` promises
    that every value is a number or null (see :func:`.decode.numbers_only`), which lets an
    all-numeric signature skip the per-value type check.
    """

    def __init__(self, features: Sequence[FeatureSpec]) -> None:
        self.features = tuple(features)
        self.inputs = [spec.onnx_input for spec in self.features]
        self.all_numeric = all(spec.numeric for spec in self.features)
        self.all_nullable = all(spec.nullable for spec in self.features)
        self.allowed = _NULLABLE_NUMBER_TYPES if self.all_nullable else _NUMBER_TYPES
        self.required = np.array([not spec.nullable for spec in self.features])
        self._local = threading.local()  # per-thread one-row buffers (see _one_row)

    def __call__(
        self, rows: Sequence[Sequence[Any]], numbers_only: bool = False
    ) -> dict[str, np.ndarray]:
        """The feed, or an ApiError naming every bad value (up to MAX_DETAILS)."""
        feed = self.numeric_feed(rows, numbers_only)
        return feed if feed is not None else self._by_column(rows)

    def numeric_feed(
        self, rows: Sequence[Sequence[Any]], numbers_only: bool = False
    ) -> dict[str, np.ndarray] | None:
        """The feed of an all-numeric signature's rows when every value passes, else None
        (nothing to name: the caller's careful path does that)."""
        if not self.all_numeric:
            return None
        matrix = self._matrix(rows, numbers_only)
        return None if matrix is None else self.from_matrix(matrix)

    def _matrix(self, rows: Sequence[Sequence[Any]], numbers_only: bool) -> np.ndarray | None:
        """One type check and one conversion for the whole matrix; None -> the careful path."""
        if not numbers_only and not set(map(type, chain.from_iterable(rows))) <= self.allowed:
            return None
        try:
            matrix = np.array(rows, dtype=np.float64)  # null -> NaN
        except (ValueError, TypeError):  # ragged or nested rows
            return None
        if matrix.ndim != 2 or matrix.shape[1] != len(self.features):
            return None
        return matrix

    def from_matrix(self, matrix: np.ndarray) -> dict[str, np.ndarray] | None:
        """The feed of a float64 ``[N, F]`` matrix (NaN = null) whose values all pass, or None
        (the careful path then names each bad value)."""
        # Elementwise: NaN (a null) compares False, where max() would turn NaN and hide the rest.
        if (np.abs(matrix) > FLOAT32_MAX).any():
            return None
        if not self.all_nullable and np.isnan(matrix[:, self.required]).any():
            return None
        n_rows, n_features = matrix.shape
        if n_rows == 1:
            return self._one_row(matrix[0])
        # Transposed and C-ordered, so every input is a contiguous [N, 1] view: no copies.
        columns = matrix.T.astype(np.float32, order="C").reshape(n_features, n_rows, 1)
        return dict(zip(self.inputs, columns, strict=True))

    def _one_row(self, row: np.ndarray) -> dict[str, np.ndarray]:
        """A one-row feed in this thread's buffer, whose [1, 1] views are made once: making F
        views costs more than a one-row request's checks. Valid until the thread's next one."""
        try:
            buffer, feed = self._local.one_row
        except AttributeError:
            buffer = np.empty((len(self.inputs), 1, 1), dtype=np.float32)
            feed = dict(zip(self.inputs, buffer, strict=True))
            self._local.one_row = (buffer, feed)
        buffer[:, 0, 0] = row  # float64 -> float32, rounding as astype does
        return feed

    def is_one_row_feed(self, feed: dict[str, np.ndarray]) -> bool:
        """Whether ``feed`` is this thread's one-row buffer (which a session may bind once)."""
        cached = getattr(self._local, "one_row", None)
        return cached is not None and feed is cached[1]

    def _by_column(self, rows: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
        features = self.features
        columns = list(zip(*rows, strict=True)) if len(features) > 1 else [[r[0] for r in rows]]
        feed = {}
        details: list[dict[str, Any]] = []
        for spec, sent in zip(features, columns, strict=True):
            values, kinds = read_missing(spec, sent)
            if kinds <= spec.allowed_types:
                if not spec.numeric:
                    feed[spec.onnx_input] = string_column(values)
                    continue
                array = _numeric_column(values)
                if array is not None:
                    feed[spec.onnx_input] = array
                    continue
            for index, value in enumerate(sent):
                problem = _value_problem(spec, value)
                if problem:
                    details.append(detail(index, spec.name, problem))
                    if too_many(details):
                        raise invalid(details)
        if details:
            raise invalid(details)
        return feed


def row_problems(features: Sequence[FeatureSpec], rows: Sequence[Sequence[Any]]) -> dict[int, str]:
    """Every bad value of ``rows`` (no MAX_DETAILS cap), as ``{row index: "feature: problem;
    ..."}``: what :class:`FeedBuilder` would name for each row, so a batch can refuse just
    those rows and feed the rest."""
    found: dict[int, list[str]] = {}
    for column, spec in enumerate(features):
        for index, row in enumerate(rows):
            problem = _value_problem(spec, row[column])
            if problem:
                found.setdefault(index, []).append(f"{spec.name}: {problem}")
    return {index: "; ".join(problems) for index, problems in sorted(found.items())}


def build_feed(
    rows: Sequence[Sequence[Any]], features: Sequence[FeatureSpec], numbers_only: bool = False
) -> dict[str, np.ndarray]:
    """ONNX Runtime inputs for rows in signature order (see :class:`FeedBuilder`)."""
    return FeedBuilder(features)(rows, numbers_only)


def npy_problems(matrix: np.ndarray, features: Sequence[FeatureSpec]) -> ApiError:
    """The 400 naming each value of a .npy matrix that :meth:`FeedBuilder.from_matrix` refused
    (infinite, beyond float32, or NaN where the model does not impute), up to MAX_DETAILS."""
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(matrix)
        too_big = ~infinite & (np.abs(matrix) > FLOAT32_MAX)
    required = np.array([not spec.nullable for spec in features])
    missing = np.isnan(matrix) & required
    details: list[dict[str, Any]] = []
    # Row-major, so details come in instance order, as for JSON bodies.
    for index, column in np.argwhere(infinite | too_big | missing)[:MAX_DETAILS].tolist():
        if infinite[index, column]:
            problem = "number must be finite"
        elif too_big[index, column]:
            problem = f"number out of range (|x| <= {FLOAT32_MAX:.4g})"
        else:
            problem = "missing value (NaN), and the model does not impute this feature"
        details.append(detail(index, features[column].name, problem))
    if not details:  # from_matrix refuses nothing else; never a silent 200 if that changes
        raise AssertionError("a refused .npy matrix without a problem")
    return invalid(details)
