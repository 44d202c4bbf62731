"""The served model's manifest: validated by the contract, reduced to what serving needs.

There is one rule set, :func:`onnxkit.contract.manifest.parse_manifest` (msgspec structs, no
pydantic, so the cold start pays a few milliseconds for it); this module only keeps the facts
the request path reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxkit.contract.manifest import Manifest, ManifestError, parse_manifest
from onnxkit.contract.values import ValueRule

from .feed import FeatureSpec
from .source import ModelSourceError


@dataclass(frozen=True)
class ServingManifest:
    """The validated manifest's serving facts."""

    model_name: str
    model_version: str
    task: str
    features: tuple[FeatureSpec, ...]
    classes: list[Any] | None
    output_names: list[str]
    serving_sha256: str
    public: dict[str, Any]
    # The tokens read as missing (signature.missing_values); None: a pre-1.1 manifest, which
    # means the contract's default tokens. Each FeatureSpec's rule applies them.
    missing_values: tuple[str, ...] | None = None
    # Every file the manifest lists, by name: its sha256 (the companions /explain reads).
    files: dict[str, str] | None = None


def serving_manifest(manifest: Manifest) -> ServingManifest:
    """Serving facts from a validated manifest."""
    tokens = manifest.signature.missing_values
    missing_values = None if tokens is None else tuple(tokens)
    rule = ValueRule.of(missing_values)  # one rule object, shared by every feature
    features = tuple(
        FeatureSpec(f.name, f.onnx_input, f.kind == "numeric", f.nullable, rule)
        for f in manifest.signature.features
    )
    outputs = manifest.outputs
    if manifest.task == "classification":
        names = [outputs.label or "", outputs.probabilities or ""]
    else:
        names = [outputs.value or ""]
    return ServingManifest(
        model_name=manifest.model_name,
        model_version=manifest.model_version,
        task=manifest.task,
        features=features,
        classes=manifest.classes,
        output_names=names,
        serving_sha256=manifest.serving.sha256,
        public=manifest.public(),
        missing_values=missing_values,
        files={name: info.sha256 for name, info in manifest.files.items()},
    )


def read_serving_manifest(path: Path) -> ServingManifest:
    """Read, validate and reduce ``manifest.json``; any problem is one ModelSourceError line."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ModelSourceError(f"cannot read {path}: {error.strerror}") from None
    try:
        return serving_manifest(parse_manifest(raw))
    except ManifestError as error:
        raise ModelSourceError(f"{path}: {error}") from None
