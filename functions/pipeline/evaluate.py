"""Evaluate: read a candidate's manifest out of model.tar.gz and decide whether it may ship.

The artifact is streamed (no scikit-learn, no extraction to disk): every file's digest is
checked against the manifest, then the quality gate (:func:`gate_reasons`, the one
implementation: the local workflow calls this module too) compares the candidate with its
naive baseline, the optional absolute bars, its own scikit-learn metrics, the production model
and the live API's signature. Every reason is reported, not only the first.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from onnxkit.contract.card import now, package_metadata
from onnxkit.contract.gate import GATE_METRIC, QualityGate, required_lift
from onnxkit.contract.layout import MANIFEST_FILE
from onnxkit.contract.manifest import Manifest, ManifestError, parse_manifest

from .ports import ObjectStore, Pointer, StepError, read_pointer


@dataclass
class Artifact:
    """What a model.tar.gz holds: its manifest, each file's digest, and the files kept."""

    manifest: Manifest
    manifest_bytes: bytes
    digests: dict[str, tuple[str, int]]
    files: dict[str, bytes] = field(default_factory=dict)


def read_artifact(stream: IO[bytes], keep: Collection[str] = ()) -> Artifact:
    """Stream a model.tar.gz once: hash every file, keep the manifest and the named files."""
    digests: dict[str, tuple[str, int]] = {}
    kept: dict[str, bytes] = {}
    manifest_bytes: bytes | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                name = member.name.removeprefix("./")
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                data = handle.read()
                digests[name] = (hashlib.sha256(data).hexdigest(), len(data))
                if name == MANIFEST_FILE:
                    manifest_bytes = data
                elif name in keep:
                    kept[name] = data
    except (tarfile.TarError, OSError, EOFError) as error:
        raise StepError(f"the model artifact is not a readable tar.gz: {error}") from None
    if manifest_bytes is None:
        raise StepError(f"the model artifact has no {MANIFEST_FILE}")
    try:
        manifest = parse_manifest(manifest_bytes)
    except ManifestError as error:
        raise StepError(str(error)) from None
    return Artifact(manifest, manifest_bytes, digests, kept)


def digest_problems(artifact: Artifact) -> list[str]:
    """Files the manifest lists that are missing from the archive or differ from it."""
    problems = []
    for name, info in sorted(artifact.manifest.files.items()):
        found = artifact.digests.get(name)
        if found is None:
            problems.append(f"artifact is missing {name}, listed in the manifest")
        elif found != (info.sha256, info.size_bytes):
            problems.append(
                f"digest mismatch for {name}: the artifact was modified after "
                "training (sha256 differs from the manifest)"
            )
    return problems


def signature_changes(live: Manifest, candidate: Manifest) -> list[str]:
    """Ways the candidate would break clients of the live API."""
    changes = []
    if live.task != candidate.task:
        changes.append(f"task changed from {live.task} to {candidate.task}")
    new = {f.name: f for f in candidate.signature.features}
    old_names = set(live.signature.feature_names)
    for old in live.signature.features:
        now = new.get(old.name)
        if now is None:
            changes.append(f"feature {old.name!r} removed or renamed")
        elif (now.kind, now.dtype) != (old.kind, old.dtype):
            changes.append(
                f"feature {old.name!r} changed type from {old.kind}/{old.dtype} "
                f"to {now.kind}/{now.dtype}"
            )
    for name, feature in new.items():
        # Clients of the live API do not send a new feature; only imputed ones are safe.
        if name not in old_names and not feature.nullable:
            changes.append(f"feature {name!r} added and required")
    if live.task == candidate.task == "classification" and live.classes != candidate.classes:
        changes.append(f"classes changed from {live.classes} to {candidate.classes}")
    return changes


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def _metric(metrics: Mapping[str, float], name: str) -> float | None:
    """A metric; balanced accuracy is read from recall_macro (the same quantity: the mean of
    per-class recall) in manifests written before it was recorded."""
    value = metrics.get(name)
    if value is None and name == "balanced_accuracy":
        value = metrics.get("recall_macro")
    return value


def _baseline(candidate: Manifest) -> tuple[float, Mapping[str, float] | None, str]:
    """The baseline's gate metric, the held-out class counts, and what the baseline is.

    A manifest without a measured baseline (written before onnxkit recorded one) is judged
    against the value a naive baseline has by construction: balanced accuracy 1/n_classes
    (any constant answer recalls one class fully and no other), with the held-out rows taken
    as evenly split across the classes for the chance allowance; R² 0 (the mean).
    """
    metric = GATE_METRIC[candidate.task]
    if candidate.baseline is not None:
        value = _metric(candidate.baseline.metrics, metric)
        if value is not None:
            return (
                value,
                candidate.baseline.class_support,
                (f"naive baseline ({candidate.baseline.strategy})"),
            )
    if candidate.task == "classification" and candidate.classes:
        k = len(candidate.classes)
        rows = candidate.data.validation_rows
        support = {str(label): rows / k for label in candidate.classes}
        return 1 / k, support, f"chance level 1/{k} (the manifest records no baseline)"
    return 0.0, None, "chance level (the manifest records no baseline)"


def _baseline_reasons(candidate: Manifest, gate: QualityGate) -> list[str]:
    metric = GATE_METRIC[candidate.task]
    variant = candidate.serving.variant
    served = _metric(candidate.serving_metrics, metric)
    if served is None:
        return [f"the {variant} variant reports no {metric}"]
    base, support, source = _baseline(candidate)
    needed = required_lift(gate, support)
    if served - base >= needed:
        return []
    if support and needed > gate.min_lift_over_baseline:
        rows = round(sum(support.values()))
        why = f"{gate.chance_sigmas:g} standard deviations of chance on {rows} held-out rows"
    else:
        why = "min_lift_over_baseline"
    return [
        f"{metric} {_fmt(served)} ({variant}) lifts {_fmt(served - base)} over the {source} "
        f"at {_fmt(base)}; the gate needs {_fmt(needed)} ({why})"
    ]


def gate_reasons(
    candidate: Manifest,
    production: Manifest | None,
    gate: QualityGate,
) -> list[str]:
    """Every reason the candidate fails the gate; empty when it passes.

    The lift over the naive baseline; the absolute bars when set; parity of accuracy and
    balanced accuracy (or R²) from scikit-learn to the served variant; no drop of the gate
    metric against production beyond the margin; a compatible signature.
    """
    reasons: list[str] = []
    metric = candidate.primary_metric
    served = candidate.serving_metrics.get(metric)
    variant = candidate.serving.variant
    if served is None:
        return [f"the {variant} variant reports no {metric}"]
    reasons.extend(_baseline_reasons(candidate, gate))
    floor = gate.min_accuracy if candidate.task == "classification" else gate.min_r2
    if floor is not None and served < floor:
        reasons.append(
            f"{metric} {_fmt(served)} ({variant}) is below the gate's minimum {_fmt(floor)}"
        )
    gate_metric = GATE_METRIC[candidate.task]
    sklearn = candidate.variants.get("sklearn")
    for name in dict.fromkeys((metric, gate_metric)):
        sk_value = _metric(sklearn.metrics, name) if sklearn else None
        value = _metric(candidate.serving_metrics, name)
        if (
            sk_value is not None
            and value is not None
            and sk_value - value > (gate.max_parity_metric_drop)
        ):
            reasons.append(
                f"parity: {name} drops {_fmt(sk_value - value)} from scikit-learn to "
                f"{variant} (allowed {_fmt(gate.max_parity_metric_drop)})"
            )
    parity = candidate.variants[variant].parity
    if (
        candidate.task == "classification"
        and parity is not None
        and parity.label_agreement is not None
        and parity.label_agreement < gate.min_label_agreement
    ):
        reasons.append(
            f"parity: {variant} agrees with scikit-learn on "
            f"{_fmt(parity.label_agreement)} of labels (minimum "
            f"{_fmt(gate.min_label_agreement)})"
        )
    if production is not None:
        live = _metric(production.serving_metrics, gate_metric)
        now = _metric(candidate.serving_metrics, gate_metric)
        if (
            live is not None
            and now is not None
            and production.task == candidate.task
            and live - now > gate.max_regression_vs_production
        ):
            reasons.append(
                f"{gate_metric} {_fmt(now)} is worse than production "
                f"{production.model_version} ({_fmt(live)}) by more than "
                f"{_fmt(gate.max_regression_vs_production)}"
            )
        reasons.extend(
            f"signature: {change}" for change in signature_changes(production, candidate)
        )
    return reasons


def summary(manifest: Manifest, artifact_uri: str, sha256: str | None = None) -> dict[str, Any]:
    """The candidate / production record of the evaluation payload."""
    return {
        "model_name": manifest.model_name,
        "model_version": manifest.model_version,
        "artifact_uri": artifact_uri,
        "task": manifest.task,
        "primary_metric": manifest.primary_metric,
        "metrics": dict(manifest.serving_metrics),
        "serving_variant": manifest.serving.variant,
        "sha256": sha256 or manifest.serving.sha256,
    }


def production_manifest(store: ObjectStore, pointer: Pointer) -> Manifest:
    """The manifest of the model the pointer names."""
    with store.open_uri(pointer.manifest_uri) as handle:
        raw = handle.read()
    try:
        return parse_manifest(raw)
    except ManifestError as error:
        raise StepError(f"production manifest of {pointer.model_version}: {error}") from None


def evaluate(
    store: ObjectStore, model_name: str, artifact_uri: str, gate: QualityGate
) -> dict[str, Any]:
    """The Evaluate step: the decision record ``{"passed", "reasons", "candidate",
    "production", "gate_metric", "evaluated_at", "package_metadata"}``."""
    with store.open_uri(artifact_uri) as stream:
        artifact = read_artifact(stream)
    manifest = artifact.manifest
    reasons = digest_problems(artifact)
    if manifest.model_name != model_name:
        reasons.append(f"the artifact is model {manifest.model_name!r}, not {model_name!r}")
    pointer = read_pointer(store, model_name)
    production = production_manifest(store, pointer) if pointer else None
    if pointer is not None and pointer.model_version == manifest.model_version:
        reasons.append(f"version {manifest.model_version} is already in production")
    reasons.extend(gate_reasons(manifest, production, gate))
    live: dict[str, Any] | None = None
    if pointer is not None and production is not None:
        live = summary(production, pointer.model_uri, pointer.sha256)
        live["lambda_version"] = pointer.lambda_version
    return {
        "passed": not reasons,
        "reasons": reasons,
        "candidate": summary(manifest, artifact_uri),
        "production": live,
        "gate_metric": GATE_METRIC[manifest.task],
        "evaluated_at": now(),
        # The registered version's compact card (Register's CustomerMetadataProperties).
        "package_metadata": package_metadata(manifest, live),
    }
