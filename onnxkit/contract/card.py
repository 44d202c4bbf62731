"""What the registry keeps of a model card, and the quality gate's record beside a promoted version.

Two records, one writer each, read by ``onnxkit card`` and ``onnxkit models``:

- :func:`package_metadata`: the compact card of a registered version, as SageMaker's
  ``CustomerMetadataProperties`` of its model package (the Register state) and as the local
  registry's ``metadata``: identity, the served variant's metrics, the naive baseline's, the
  production model's at the time of the gate, the quantization decision, the data fingerprint
  and the top features by permutation importance. Evaluate builds it (it has the manifest);
  it always fits SageMaker's limits (:data:`~onnxkit.contract.layout.PACKAGE_METADATA_MAX_ENTRIES`
  entries, one of them kept for the Register state's ``execution``).
- :class:`EvaluationRecord`: the Evaluate step's decision, with the production model it compared
  the candidate with, stored by Promote as ``models/<name>/<version>/evaluation.json``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from onnxkit.contract.layout import (
    PACKAGE_EXECUTION_KEY,
    PACKAGE_METADATA_MAX_ENTRIES,
    PACKAGE_METADATA_MAX_KEY,
    PACKAGE_METADATA_MAX_VALUE,
)
from onnxkit.contract.manifest import Manifest

METRIC_KEY: Final = "metric."  # metric.<name>: the served variant's held-out metric
BASELINE_KEY: Final = "baseline."  # baseline.strategy, baseline.metric.<name>
PRODUCTION_KEY: Final = "production."  # production.model_version, production.metric.<name>
IMPORTANCE_KEY: Final = "importance."  # importance.metric, importance.<rank> = "<drop> <feature>"
TOP_FEATURES: Final = 5
# Characters SageMaker accepts in a key or value besides letters, digits and separators.
_ALLOWED: Final = frozenset("_.:/=+-@")


def _clean(text: str, limit: int) -> str:
    """``text`` with the characters SageMaker refuses replaced by ``_``, cut to ``limit``."""
    kept = (ch if ch in _ALLOWED or unicodedata.category(ch)[0] in "LNZ" else "_" for ch in text)
    return "".join(kept)[:limit]


def _number(value: float) -> str:
    return repr(float(value))


def package_metadata(manifest: Manifest, production: Mapping[str, Any] | None) -> dict[str, str]:
    """The model package's card: ``production`` is Evaluate's summary of the live model (None
    before the first promotion). Entries come in priority order and stop at SageMaker's limit."""
    served = manifest.serving_metrics
    entries: list[tuple[str, str]] = [
        ("model_name", manifest.model_name),
        ("model_version", manifest.model_version),
        ("sha256", manifest.serving.sha256),
        ("serving_variant", manifest.serving.variant),
        ("primary_metric", manifest.primary_metric),
        ("task", manifest.task),
        ("estimator", manifest.estimator),
    ]
    entries += [(f"{METRIC_KEY}{name}", _number(value)) for name, value in served.items()]
    if manifest.importance is not None:
        entries.append((f"{IMPORTANCE_KEY}metric", manifest.importance.metric))
        ranked = manifest.importance.ranked()[:TOP_FEATURES]
        entries += [
            (f"{IMPORTANCE_KEY}{rank}", f"{feature.mean:.6g} {feature.name}")
            for rank, feature in enumerate(ranked, 1)
        ]
    if production is not None:
        entries.append((f"{PRODUCTION_KEY}model_version", str(production["model_version"])))
        live = production.get("metrics") or {}
        entries += [
            (f"{PRODUCTION_KEY}{METRIC_KEY}{name}", _number(live[name]))
            for name in served
            if name in live
        ]
    if manifest.baseline is not None:
        entries.append((f"{BASELINE_KEY}strategy", manifest.baseline.strategy))
        entries += [
            (f"{BASELINE_KEY}{METRIC_KEY}{name}", _number(value))
            for name, value in manifest.baseline.metrics.items()
        ]
    entries += [
        ("quantization", manifest.quantization.decision),
        ("data.sha256", manifest.data.sha256),
        ("data.rows", str(manifest.data.rows)),
    ]
    metadata: dict[str, str] = {}
    for key, value in entries:
        if len(metadata) == PACKAGE_METADATA_MAX_ENTRIES - 1:  # one is Register's execution
            break
        cleaned = _clean(value, PACKAGE_METADATA_MAX_VALUE)
        if cleaned:  # SageMaker refuses an empty value
            metadata[_clean(key, PACKAGE_METADATA_MAX_KEY)] = cleaned
    return metadata


def metadata_problems(properties: Mapping[str, str]) -> list[str]:
    """Why SageMaker would refuse these CustomerMetadataProperties; empty when it accepts them."""
    problems = []
    if not 1 <= len(properties) <= PACKAGE_METADATA_MAX_ENTRIES:
        problems.append(f"{len(properties)} entries (1 to {PACKAGE_METADATA_MAX_ENTRIES})")
    for key, value in properties.items():
        for what, text, limit in (
            ("key", key, PACKAGE_METADATA_MAX_KEY),
            ("value", value, PACKAGE_METADATA_MAX_VALUE),
        ):
            if not isinstance(text, str) or not 1 <= len(text) <= limit:
                problems.append(f"{what} {text!r} is not 1 to {limit} characters")
            elif _clean(text, limit) != text:
                problems.append(f"{what} {text!r} has characters SageMaker refuses")
    return problems


class RankedFeature(msgspec.Struct, frozen=True):
    """A feature and the metric's drop when its values are shuffled."""

    name: str
    mean: float


def top_features(properties: Mapping[str, str]) -> list[RankedFeature]:
    """The ranked features of a package's metadata (empty when it recorded none)."""
    ranked = []
    for key, value in properties.items():
        rank = key.removeprefix(IMPORTANCE_KEY)
        if not key.startswith(IMPORTANCE_KEY) or not rank.isdigit():
            continue
        mean, _, name = value.partition(" ")
        try:
            ranked.append((int(rank), RankedFeature(name, float(mean))))
        except ValueError:
            continue  # not written by onnxkit
    return [feature for _, feature in sorted(ranked, key=lambda item: item[0])]


def production_at_gate(properties: Mapping[str, str]) -> dict[str, Any] | None:
    """``{"model_version", "metrics"}`` of the model a package was gated against, or None."""
    version = properties.get(f"{PRODUCTION_KEY}model_version")
    if version is None:
        return None
    prefix = f"{PRODUCTION_KEY}{METRIC_KEY}"
    metrics = {}
    for key, value in properties.items():
        if key.startswith(prefix):
            try:
                metrics[key.removeprefix(prefix)] = float(value)
            except ValueError:
                continue
    return {"model_version": version, "metrics": metrics}


def is_card_key(key: str) -> bool:
    """Whether a metadata key is part of the card rather than a plain metric of the version."""
    return key.startswith((IMPORTANCE_KEY, PRODUCTION_KEY, BASELINE_KEY)) or key in {
        PACKAGE_EXECUTION_KEY,
        "data.sha256",
        "data.rows",
    }


# --- The gate's record beside a promoted version ---------------------------------------------


class EvaluationError(ValueError):
    """An evaluation record that is not JSON or breaks the contract."""


class GatedModel(msgspec.Struct, kw_only=True, frozen=True):
    """A model as the gate saw it (Evaluate's summary; other keys are ignored)."""

    model_version: str
    metrics: dict[str, float]
    sha256: str | None = None
    serving_variant: str | None = None
    lambda_version: str | None = None


class EvaluationRecord(msgspec.Struct, kw_only=True, frozen=True):
    """The quality gate's decision on a candidate and the production model it compared it with
    (None: nothing was in production)."""

    passed: bool
    reasons: list[str] = msgspec.field(default_factory=list)
    candidate: GatedModel
    production: GatedModel | None = None
    gate_metric: str | None = None
    evaluated_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return msgspec.to_builtins(self)


def now() -> str:
    """The time Evaluate records, in UTC."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def evaluation_record(evaluation: Mapping[str, Any]) -> EvaluationRecord:
    """The record of Evaluate's result (``$.evaluation``); EvaluationError when it is not one."""
    try:
        return msgspec.convert(evaluation, EvaluationRecord)
    except msgspec.ValidationError as error:
        raise EvaluationError(f"not an evaluation record: {error}") from None


def dump_evaluation(record: EvaluationRecord) -> bytes:
    """The bytes stored as ``evaluation.json``."""
    return msgspec.json.format(msgspec.json.encode(record), indent=2)


def parse_evaluation(raw: bytes) -> EvaluationRecord:
    """An ``evaluation.json``; EvaluationError with one line otherwise."""
    try:
        return msgspec.json.decode(raw, type=EvaluationRecord)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise EvaluationError(f"unreadable evaluation record: {error}") from None
