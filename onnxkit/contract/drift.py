"""Drift: the thresholds a comparison of captured requests with the reference statistics uses,
and the report it writes (``onnxkit drift --json`` prints it), and the record of one run of the
cloud's scheduled check (:class:`DriftCheck`, which holds the report).

Each measure has a threshold from config (``onnxkit/config.py``, section ``drift``, whose defaults
are :class:`DriftThresholds`'). A measure also has to exceed what chance alone gives at the two
sample sizes with probability ``significance``; the larger of the two is the measure's ``limit``
in the report, so a small capture cannot raise an alarm by sampling noise and a large one is
held to the configured bar. The measures (``functions/monitor/drift.py``):

* ``psi``: population stability index of a feature's non-missing values, over the reference's
  quantile bins (numeric) or its listed categories plus one bin for every other category
  (categorical): ``sum((q - p) * ln(q / p))`` with capture shares ``q`` and reference shares
  ``p``, each bin's count plus 0.5 so an empty bin stays finite;
* ``missing_rate``: the absolute change of the share of rows missing the feature;
* ``unseen_rate``: the share of a categorical feature's captured values outside the reference's
  listed categories, above the reference's own share of such values (its ``other``);
* ``prediction_psi``: the index of the predictions over the reference's classes or value bins.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from msgspec import Meta

Measure = Literal["psi", "missing_rate", "unseen_rate"]
PREDICTIONS: Final = "(predictions)"  # the name the prediction shift goes by in ``drifted``

Unit = Annotated[float, Meta(ge=0, le=1)]


class _Struct(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


def ratio(value: float, limit: float | None) -> float:
    """A measure over its limit (0 for a decrease, and where no limit applies: an empty side)."""
    if limit is None or not math.isfinite(limit) or limit <= 0:
        return 0.0
    return max(0.0, value) / limit


class DriftThresholds(_Struct, kw_only=True, frozen=True):
    """When a measure counts as drift (the defaults keep false alarms under 1%: README)."""

    psi: Annotated[float, Meta(gt=0)] = 0.2
    missing_rate: Annotated[float, Meta(gt=0, le=1)] = 0.1
    unseen_rate: Annotated[float, Meta(gt=0, le=1)] = 0.05
    prediction_psi: Annotated[float, Meta(gt=0)] = 0.2
    significance: Annotated[float, Meta(gt=0, lt=0.5)] = 1e-4


class FeatureDrift(_Struct, kw_only=True, frozen=True):
    """One feature's measures, their limits, and which of them drifted."""

    name: str
    kind: Literal["numeric", "categorical"]
    rows: int  # captured rows compared
    psi: float
    psi_limit: float
    missing_rate: Unit
    reference_missing_rate: Unit
    missing_limit: float
    unseen_rate: Unit | None = None  # categorical only
    reference_other_rate: Unit | None = None
    unseen_limit: float | None = None
    drifted: list[Measure] = msgspec.field(default_factory=list)

    @property
    def score(self) -> float:
        """The largest of the measures over their limits: above 1 exactly when one drifted
        (the cloud publishes it as the feature's metric)."""
        ratios = [
            ratio(self.psi, self.psi_limit),
            ratio(abs(self.missing_rate - self.reference_missing_rate), self.missing_limit),
        ]
        if self.unseen_rate is not None:
            ratios.append(
                ratio(self.unseen_rate - (self.reference_other_rate or 0.0), self.unseen_limit)
            )
        return max(ratios)


class PredictionDrift(_Struct, kw_only=True, frozen=True):
    """The shift of the predictions: over classes, or over the reference's value bins."""

    kind: Literal["classes", "values"]
    rows: int
    psi: float
    limit: float
    shares: dict[str, float]  # per class, or per bin ("< edge", "edge..edge", ">= edge")
    reference_shares: dict[str, float]
    drifted: bool

    @property
    def score(self) -> float:
        """The index over its limit: above 1 exactly when the predictions shifted."""
        return ratio(self.psi, self.limit)


class DriftReport(_Struct, kw_only=True, frozen=True):
    """What a capture looks like against a model's reference statistics."""

    model_name: str
    model_version: str
    created_at: datetime
    capture_rows: int
    reference_rows: int
    thresholds: DriftThresholds
    features: list[FeatureDrift]
    predictions: PredictionDrift | None
    drifted: list[str]  # feature names, and PREDICTIONS when the predictions shifted

    @property
    def any_drift(self) -> bool:
        """Whether anything drifted."""
        return bool(self.drifted)


_Parsed = TypeVar("_Parsed", "DriftReport", "DriftCheck")
CheckStatus = Literal["drift", "no_drift", "not_enough_data", "unavailable"]


class DriftCheck(_Struct, kw_only=True, frozen=True):
    """One run of the cloud's scheduled drift check (``drift/reports/<stamp>.json`` and
    ``drift/latest.json``): which capture it read, and the report when there was enough.

    ``status``: ``drift`` or ``no_drift`` (``report`` holds the comparison), ``not_enough_data``
    (fewer than ``min_rows`` rows of the live version in the window: no report, no alarm) or
    ``unavailable`` (nothing promoted, or a model without reference statistics). ``detail`` says
    why in one line.
    """

    checked_at: datetime
    model_name: str
    model_version: str | None  # the live version the check compared; None before a promotion
    window_start: datetime  # the capture hours read: window_start <= hour < window_end
    window_end: datetime
    status: CheckStatus
    detail: str
    capture_rows: int = 0  # rows of the live version read from the window
    other_rows: int = 0  # rows of other versions or models in the window, left out
    min_rows: int
    truncated: bool = False  # stopped at the row cap; the newest hours were read first
    unreadable_objects: list[str] = msgspec.field(default_factory=list)  # keys skipped
    report: DriftReport | None = None
    training_execution: str | None = None  # the retraining this check started, if any

    @property
    def any_drift(self) -> bool:
        """Whether the check found drift."""
        return self.status == "drift"


def encode_check(check: DriftCheck) -> bytes:
    """The check as indented JSON."""
    return _encode(check)


def parse_check(raw: bytes | str) -> DriftCheck:
    """A check from its JSON (ValueError with one line when it is not one)."""
    return _decode(raw, DriftCheck, "drift check")


def _encode(value: _Struct) -> bytes:
    return msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"


def _decode(raw: bytes | str, kind: type[_Parsed], what: str) -> _Parsed:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError as error:
        raise ValueError(f"invalid {what}: {error}") from None


def encode_report(report: DriftReport) -> bytes:
    """The report as indented JSON."""
    return _encode(report)


def parse_report(raw: bytes | str) -> DriftReport:
    """A report from its JSON (ValueError with one line when it is not one)."""
    return _decode(raw, DriftReport, "drift report")
