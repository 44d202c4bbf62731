"""Read and validate the manifest with the contract's pydantic model; keep what serving needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxkit.contract.manifest import ManifestError, parse_manifest

from .instances import FeatureSpec
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


def read_serving_manifest(path: Path) -> ServingManifest:
    """Parse and validate ``manifest.json``; any problem is one ModelSourceError line."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ModelSourceError(f"cannot read {path}: {error.strerror}") from None
    try:
        manifest = parse_manifest(raw)
    except ManifestError as error:
        raise ModelSourceError(f"{path}: {error}") from None
    features = tuple(
        FeatureSpec(f.name, f.onnx_input, f.kind == "numeric", f.nullable)
        for f in manifest.signature.features
    )
    outputs = manifest.outputs
    if manifest.task == "classification":
        names = [outputs.label, outputs.probabilities]
    else:
        names = [outputs.value]
    return ServingManifest(
        model_name=manifest.model_name,
        model_version=manifest.model_version,
        task=manifest.task,
        features=features,
        classes=list(manifest.classes) if manifest.classes is not None else None,
        output_names=[name for name in names if name],
        serving_sha256=manifest.serving.sha256,
        public=manifest.public(),
    )
