"""Drift: the thresholds a comparison of captured requests with the reference statistics uses,
and the report it writes (``onnxkit drift --json`` prints it; the cloud's drift function will
store it).

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

from datetime import datetime
from typing import Annotated, Any, Final, Literal

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


class PredictionDrift(_Struct, kw_only=True, frozen=True):
    """The shift of the predictions: over classes, or over the reference's value bins."""

    kind: Literal["classes", "values"]
    rows: int
    psi: float
    limit: float
    shares: dict[str, float]  # per class, or per bin ("< edge", "edge..edge", ">= edge")
    reference_shares: dict[str, float]
    drifted: bool


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


def encode_report(report: DriftReport) -> bytes:
    """The report as indented JSON."""
    return msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n"


def parse_report(raw: bytes | str) -> DriftReport:
    """A report from its JSON (ValueError with one line when it is not one)."""
    try:
        return msgspec.json.decode(raw, type=DriftReport)
    except msgspec.DecodeError as error:
        raise ValueError(f"invalid drift report: {error}") from None
