"""Reference statistics: what the training rows and the held-out predictions looked like.

The training job writes them as ``reference.json`` (:data:`~onnxkit.contract.layout.REFERENCE_FILE`)
beside the model, and the manifest lists that file in ``files`` with its sha256, so it is under
the artifact's digests like the graphs. The drift module (``functions/monitor/drift.py``) compares
captured requests (:mod:`onnxkit.contract.capture`) with them. Readable with msgspec and numpy
alone: no scikit-learn, no pandas.

Per feature, over the training rows as the contract's value rule reads them
(:mod:`onnxkit.contract.values`; numeric values as float32, what the graph is fed):

* numeric: :data:`NUMERIC_BINS` quantile bins. ``edges`` are the distinct quantiles (values of
  the data), ``counts`` has one more entry than ``edges``: bin ``i`` holds the values ``x`` with
  ``edges[i-1] <= x < edges[i]`` (the first bin is open below, the last open above), which is
  :func:`bin_counts`, the one binning rule for the job and every reader;
* categorical: the :data:`LISTED_CATEGORIES` most frequent categories with their counts and the
  count of every other category (``other``);
* both: the rows and the missing ones.

Predictions of the served graph on the held-out rows: rows per class (classification), or
quantile bins of the predicted values as above (regression).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
import numpy as np
from msgspec import Meta

from onnxkit.contract.layout import REFERENCE_FILE

REFERENCE_SCHEMA_VERSION: Final = "1.0"
NUMERIC_BINS: Final = 10
LISTED_CATEGORIES: Final = 50

NonNegative = Annotated[int, Meta(ge=0)]


class ReferenceError(ValueError):
    """Reference statistics are missing, unreadable or invalid."""


class _Strict(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


def _check_bins(what: str, edges: list[float], counts: list[int], total: int) -> None:
    if len(counts) != len(edges) + 1:
        raise ValueError(f"{what}: {len(counts)} counts for {len(edges)} edges (want edges + 1)")
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"{what}: edges must increase strictly")
    if sum(counts) != total:
        raise ValueError(f"{what}: counts sum to {sum(counts)}, not {total}")


class NumericStats(_Strict, kw_only=True, frozen=True, tag_field="kind", tag="numeric"):
    """A numeric feature: quantile bins of its non-missing training values."""

    name: str
    rows: NonNegative
    missing: NonNegative
    edges: list[float]
    counts: list[NonNegative]

    def __post_init__(self) -> None:
        if self.missing > self.rows:
            raise ValueError(f"feature {self.name!r}: more missing values than rows")
        _check_bins(f"feature {self.name!r}", self.edges, self.counts, self.rows - self.missing)

    @property
    def missing_rate(self) -> float:
        """Share of training rows missing this feature."""
        return self.missing / self.rows if self.rows else 0.0


class CategoricalStats(_Strict, kw_only=True, frozen=True, tag_field="kind", tag="categorical"):
    """A categorical feature: its most frequent training categories and the rest as other."""

    name: str
    rows: NonNegative
    missing: NonNegative
    frequencies: dict[str, NonNegative]
    other: NonNegative
    distinct: NonNegative

    def __post_init__(self) -> None:
        present = self.rows - self.missing
        if self.missing > self.rows:
            raise ValueError(f"feature {self.name!r}: more missing values than rows")
        if sum(self.frequencies.values()) + self.other != present:
            raise ValueError(
                f"feature {self.name!r}: frequencies and other do not sum to the "
                f"{present} non-missing rows"
            )

    @property
    def missing_rate(self) -> float:
        """Share of training rows missing this feature."""
        return self.missing / self.rows if self.rows else 0.0


FeatureStats = NumericStats | CategoricalStats


class ClassPredictions(_Strict, kw_only=True, frozen=True, tag_field="kind", tag="classes"):
    """How many held-out rows the served graph put in each class (keyed by ``str(class)``)."""

    rows: NonNegative
    counts: dict[str, NonNegative]

    def __post_init__(self) -> None:
        if sum(self.counts.values()) != self.rows:
            raise ValueError("prediction counts do not sum to the rows")


class ValuePredictions(_Strict, kw_only=True, frozen=True, tag_field="kind", tag="values"):
    """Quantile bins of the served graph's predicted values on the held-out rows."""

    rows: NonNegative
    edges: list[float]
    counts: list[NonNegative]

    def __post_init__(self) -> None:
        _check_bins("predictions", self.edges, self.counts, self.rows)


class Reference(_Strict, kw_only=True, frozen=True):
    """Every feature's training statistics, in signature order, and the predictions'."""

    schema_version: str = REFERENCE_SCHEMA_VERSION
    features: list[FeatureStats]
    predictions: ClassPredictions | ValuePredictions

    def __post_init__(self) -> None:
        if self.schema_version.split(".")[0] != REFERENCE_SCHEMA_VERSION.split(".")[0]:
            raise ValueError(
                f"unsupported reference schema {self.schema_version}; this reader knows "
                f"{REFERENCE_SCHEMA_VERSION}"
            )
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")

    def feature(self, name: str) -> FeatureStats | None:
        """One feature's statistics, or None."""
        return next((f for f in self.features if f.name == name), None)


_DECODER: Final = msgspec.json.Decoder(Reference)


def parse_reference(raw: bytes | str) -> Reference:
    """Validate reference JSON; any problem is one ReferenceError line."""
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError as error:
        raise ReferenceError(f"invalid reference statistics: {error}") from None


def encode_reference(reference: Reference) -> bytes:
    """The reference's JSON bytes, validated first (a struct built in Python skipped types)."""
    raw = msgspec.json.encode(reference)
    parse_reference(raw)
    return msgspec.json.format(raw, indent=2) + b"\n"


def load_reference(model_dir: Path) -> Reference:
    """Read and validate ``reference.json`` from a model directory."""
    path = Path(model_dir) / REFERENCE_FILE
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ReferenceError(f"cannot read {path}: {error.strerror}") from None
    return parse_reference(raw)


# --------------------------------------------------------------------------- the bin rule


def as_read(values: Iterable[float | None] | np.ndarray) -> np.ndarray:
    """Numbers as the graph reads them: float32 (None -> NaN), returned as float64."""
    if not isinstance(values, np.ndarray):
        values = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


def quantile_edges(values: np.ndarray, bins: int = NUMERIC_BINS) -> list[float]:
    """Distinct quantile edges of the non-missing values (values of the data itself)."""
    # Sorted first: the same order statistics, and numpy's (SIMD) sort and a quantile of
    # sorted values take 0.43x the time of np.quantile's selection (800k values).
    present = np.sort(values[~np.isnan(values)])
    if present.size == 0:
        return []
    levels = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.quantile(present, levels, method="inverted_cdf")
    return [float(edge) for edge in np.unique(edges)]


def bin_counts(edges: list[float], values: np.ndarray) -> list[int]:
    """How many non-missing values fall in each bin: bin ``i`` holds ``edges[i-1] <= x <
    edges[i]``, the first bin open below and the last open above."""
    present = values[~np.isnan(values)]
    # How many reach each edge, one vectorised comparison an edge (a few edges, each a pass
    # over the values: ten times faster than searchsorted's binary search per value).
    reaching = [int(np.count_nonzero(present >= edge)) for edge in edges]
    above = [present.size, *reaching, 0]
    return [above[i] - above[i + 1] for i in range(len(edges) + 1)]


def numeric_stats(name: str, values: np.ndarray, bins: int = NUMERIC_BINS) -> NumericStats:
    """A numeric feature's statistics from its values (NaN = missing)."""
    values = as_read(values)
    edges = quantile_edges(values, bins)
    return NumericStats(
        name=name,
        rows=int(values.size),
        missing=int(np.isnan(values).sum()),
        edges=edges,
        counts=bin_counts(edges, values),
    )


def categorical_stats(
    name: str, values: Iterable[str | None], listed: int = LISTED_CATEGORIES
) -> CategoricalStats:
    """A categorical feature's statistics from its values (None = missing)."""
    counts: dict[str, int] = {}
    rows = missing = 0
    for value in values:
        rows += 1
        if value is None:
            missing += 1
        else:
            counts[value] = counts.get(value, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return CategoricalStats(
        name=name,
        rows=rows,
        missing=missing,
        frequencies=dict(ranked[:listed]),
        other=sum(n for _, n in ranked[listed:]),
        distinct=len(ranked),
    )


def class_predictions(classes: list[Any], predicted: Iterable[Any]) -> ClassPredictions:
    """Held-out rows per class (every class of the model listed, in its order)."""
    counts = {str(c): 0 for c in classes}
    rows = 0
    for label in predicted:
        key = str(label)
        if key not in counts:
            raise ValueError(f"predicted class {key!r} is not among the model's classes")
        counts[key] += 1
        rows += 1
    return ClassPredictions(rows=rows, counts=counts)


def value_predictions(values: np.ndarray, bins: int = NUMERIC_BINS) -> ValuePredictions:
    """Quantile bins of predicted values."""
    values = as_read(values)
    edges = quantile_edges(values, bins)
    return ValuePredictions(rows=int(values.size), edges=edges, counts=bin_counts(edges, values))
