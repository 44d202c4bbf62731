"""Drift of captured requests from a model's reference statistics: one computation for the
cloud and for ``onnxkit drift``.

:func:`compare` takes the reference (``reference.json``, :mod:`onnxkit.contract.reference`), the
capture records of the model's version (:mod:`onnxkit.contract.capture`) and the thresholds, and
returns the report (:mod:`onnxkit.contract.drift`, which defines every measure). A measure
drifts when it exceeds both its threshold and what chance gives at the two sample sizes
(``significance``): the index of two samples of one population is about
``(1/n + 1/m) * chi2(bins - 1)``, and a difference of two shares about normal.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from statistics import NormalDist
from typing import Any

import msgspec
import numpy as np

from onnxkit.contract.capture import CaptureRecord
from onnxkit.contract.drift import (
    PREDICTIONS,
    DriftReport,
    DriftThresholds,
    FeatureDrift,
    Measure,
    PredictionDrift,
)
from onnxkit.contract.reference import (
    CategoricalStats,
    ClassPredictions,
    NumericStats,
    Reference,
    as_read,
    bin_counts,
)

SMOOTHING = 0.5  # added to every bin's count, so an empty bin keeps the index finite


class DriftInputError(ValueError):
    """The capture cannot be compared with the reference; ``str()`` is one line."""


def psi(reference: Sequence[int], captured: Sequence[int]) -> float:
    """Population stability index of two histograms over the same bins (smoothed counts)."""
    p = np.asarray(reference, dtype=np.float64) + SMOOTHING
    q = np.asarray(captured, dtype=np.float64) + SMOOTHING
    p /= p.sum()
    q /= q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def chi2_quantile(df: int, probability: float) -> float:
    """The chi-square quantile (Wilson-Hilferty: within a few percent from df 1 on)."""
    if df <= 0:
        return 0.0
    z = NormalDist().inv_cdf(probability)
    h = 2.0 / (9.0 * df)
    return float(df * max(0.0, 1.0 - h + z * math.sqrt(h)) ** 3)


def psi_limit(threshold: float, bins: int, n: int, m: int, significance: float) -> float:
    """The larger of the threshold and the index two samples of sizes n and m of one
    population exceed with probability ``significance``."""
    if n == 0 or m == 0:
        return math.inf
    return max(threshold, (1.0 / n + 1.0 / m) * chi2_quantile(bins - 1, 1.0 - significance))


def share_limit(threshold: float, pooled: float, n: int, m: int, z: float) -> float:
    """The larger of the threshold and ``z`` standard errors of a difference of two shares."""
    if n == 0 or m == 0:
        return math.inf
    return max(threshold, z * math.sqrt(pooled * (1 - pooled) * (1.0 / n + 1.0 / m)))


def select(records: Sequence[CaptureRecord], model_version: str) -> list[CaptureRecord]:
    """The records a model version answered; DriftInputError naming the versions otherwise."""
    mine = [r for r in records if r.model_version == model_version]
    if records and not mine:
        found = sorted({r.model_version for r in records})
        raise DriftInputError(
            f"no capture records of model version {model_version} (the capture holds "
            f"{', '.join(found[:5])}{' ...' if len(found) > 5 else ''})"
        )
    return mine


def _values(records: Sequence[CaptureRecord], name: str) -> list[Any]:
    try:
        return [record.features[name] for record in records]
    except KeyError:
        raise DriftInputError(f"capture records lack feature {name!r}") from None


def _numeric(stats: NumericStats, values: list[Any], limits: DriftThresholds) -> FeatureDrift:
    if any(isinstance(v, str) for v in values):
        raise DriftInputError(f"capture records hold text for numeric feature {stats.name!r}")
    read = as_read(values)
    counts = bin_counts(stats.edges, read)
    present = sum(counts)
    score = psi(stats.counts, counts) if present else 0.0
    limit = psi_limit(
        limits.psi, len(stats.counts), sum(stats.counts), present, limits.significance
    )
    return _feature(stats, "numeric", len(values), present, score, limit, limits)


def _categorical(
    stats: CategoricalStats, values: list[Any], limits: DriftThresholds
) -> FeatureDrift:
    listed = list(stats.frequencies)
    index = {category: i for i, category in enumerate(listed)}
    counts = [0] * (len(listed) + 1)  # the last bin: every other category
    for value in values:
        if value is None:
            continue
        if not isinstance(value, str):
            raise DriftInputError(f"capture records hold a number for categorical {stats.name!r}")
        counts[index.get(value, len(listed))] += 1
    reference = [*stats.frequencies.values(), stats.other]
    n, m = sum(reference), sum(counts)
    score = psi(reference, counts) if m else 0.0
    limit = psi_limit(limits.psi, len(reference), n, m, limits.significance)
    drift = _feature(stats, "categorical", len(values), m, score, limit, limits)
    unseen = counts[-1] / m if m else 0.0
    other = stats.other / n if n else 0.0
    pooled = (counts[-1] + stats.other) / (n + m) if n + m else 0.0
    z = NormalDist().inv_cdf(1.0 - limits.significance)  # one-sided: only an increase alarms
    unseen_limit = share_limit(limits.unseen_rate, pooled, n, m, z)
    drifted = list(drift.drifted)
    if unseen - other > unseen_limit:
        drifted.append("unseen_rate")
    return msgspec.structs.replace(
        drift,
        drifted=drifted,
        unseen_rate=unseen,
        reference_other_rate=other,
        unseen_limit=unseen_limit,
    )


def _feature(
    stats: NumericStats | CategoricalStats,
    kind: Any,
    rows: int,
    present: int,
    score: float,
    limit: float,
    limits: DriftThresholds,
) -> FeatureDrift:
    missing = (rows - present) / rows if rows else 0.0
    reference_missing = stats.missing_rate
    pooled = (stats.missing + rows - present) / (stats.rows + rows) if stats.rows + rows else 0.0
    z = NormalDist().inv_cdf(1.0 - limits.significance / 2)  # two-sided: either way alarms
    missing_limit = share_limit(limits.missing_rate, pooled, stats.rows, rows, z)
    drifted: list[Measure] = []
    if score > limit:
        drifted.append("psi")
    if abs(missing - reference_missing) > missing_limit:
        drifted.append("missing_rate")
    return FeatureDrift(
        name=stats.name,
        kind=kind,
        rows=rows,
        psi=score,
        psi_limit=limit,
        missing_rate=missing,
        reference_missing_rate=reference_missing,
        missing_limit=missing_limit,
        drifted=drifted,
    )


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    inner = [f"{a:.4g}..{b:.4g}" for a, b in itertools.pairwise(edges)]
    return [f"< {edges[0]:.4g}", *inner, f">= {edges[-1]:.4g}"]


def _predictions(
    reference: Reference, records: Sequence[CaptureRecord], limits: DriftThresholds
) -> PredictionDrift:
    expected = reference.predictions
    if isinstance(expected, ClassPredictions):
        labels = list(expected.counts)
        index = {label: i for i, label in enumerate(labels)}
        counts = [0] * len(labels)
        for record in records:
            slot = index.get(str(record.prediction))
            if slot is None:
                raise DriftInputError(
                    f"captured prediction {record.prediction!r} is not a class of the model"
                )
            counts[slot] += 1
        reference_counts = list(expected.counts.values())
        kind = "classes"
    else:
        if any(isinstance(r.prediction, str) for r in records):
            raise DriftInputError("captured predictions are text; the model predicts values")
        counts = bin_counts(expected.edges, as_read([float(r.prediction) for r in records]))
        reference_counts, labels, kind = expected.counts, _bin_labels(expected.edges), "values"
    n, m = sum(reference_counts), sum(counts)
    score = psi(reference_counts, counts) if m else 0.0
    limit = psi_limit(limits.prediction_psi, len(counts), n, m, limits.significance)
    return PredictionDrift(
        kind=kind,  # type: ignore[arg-type]
        rows=m,
        psi=score,
        limit=limit,
        shares={label: c / m if m else 0.0 for label, c in zip(labels, counts, strict=True)},
        reference_shares={
            label: c / n if n else 0.0 for label, c in zip(labels, reference_counts, strict=True)
        },
        drifted=score > limit,
    )


def compare(
    reference: Reference,
    records: Sequence[CaptureRecord],
    *,
    model_name: str,
    model_version: str,
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """The drift report of ``records`` (one model version's) against ``reference``."""
    limits = thresholds or DriftThresholds()
    if not records:
        raise DriftInputError("no capture records to compare")
    features = []
    for stats in reference.features:
        values = _values(records, stats.name)
        if isinstance(stats, NumericStats):
            features.append(_numeric(stats, values, limits))
        else:
            features.append(_categorical(stats, values, limits))
    predictions = _predictions(reference, records, limits)
    drifted = [f.name for f in features if f.drifted]
    if predictions.drifted:
        drifted.append(PREDICTIONS)
    return DriftReport(
        model_name=model_name,
        model_version=model_version,
        created_at=datetime.now(UTC).replace(microsecond=0),
        capture_rows=len(records),
        reference_rows=max((f.rows for f in reference.features), default=0),
        thresholds=limits,
        features=features,
        predictions=predictions,
        drifted=drifted,
    )
