"""``onnxkit drift`` on this machine: a model's reference statistics against a capture folder or
file, with the drift module the cloud will run (``functions/monitor/drift.py``)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from functions.inference.source import ModelLocator, ModelSourceError, S3Location
from functions.monitor.drift import DriftInputError, compare, select
from onnxkit.contract.capture import CaptureError, CaptureRecord, decode_records
from onnxkit.contract.drift import DriftReport, DriftThresholds
from onnxkit.contract.layout import CAPTURE_SUFFIX, REFERENCE_FILE, sha256_bytes
from onnxkit.contract.manifest import Manifest, ManifestError, parse_manifest
from onnxkit.contract.reference import Reference, ReferenceError, parse_reference
from onnxkit.errors import KitError

HOW_TO_CAPTURE = "record some with `onnxkit serve --model ... --capture DIR`"


@dataclass(frozen=True)
class ModelReference:
    """A model's manifest and its reference statistics."""

    manifest: Manifest
    reference: Reference


@dataclass(frozen=True)
class ModelFiles:
    """A model's manifest and, when it lists them, its reference statistics."""

    manifest: Manifest
    reference: Reference | None


def load_model_files(uri: str, cache_dir: Path | None = None) -> ModelFiles:
    """The manifest and (when listed) ``reference.json`` of a model folder, model.onnx,
    model.tar.gz, production pointer or s3 uri; KitError with one line otherwise."""
    cache = cache_dir or Path(tempfile.gettempdir()) / "onnxkit-models"
    locator = ModelLocator(cache)
    try:
        located = locator.locate(uri)
        manifest = parse_manifest(located.manifest_path.read_bytes())
    except (ModelSourceError, ManifestError) as error:
        raise KitError(str(error)) from None
    except OSError as error:
        raise KitError(f"cannot read the manifest of {uri}: {error.strerror}") from None
    listed = manifest.files.get(REFERENCE_FILE)
    if listed is None:
        return ModelFiles(manifest, None)
    path = located.manifest_path.parent / REFERENCE_FILE
    try:
        if path.is_file():
            raw = path.read_bytes()
        elif uri.startswith("s3://"):
            where = S3Location.parse(located.uri if located.uri.startswith("s3://") else uri)
            raw = locator.s3.read(where.sibling(REFERENCE_FILE)) or b""
        else:
            raw = b""
    except ModelSourceError as error:
        raise KitError(str(error)) from None
    if not raw:
        raise KitError(f"{REFERENCE_FILE} is listed in the manifest but not beside it ({uri})")
    if sha256_bytes(raw) != listed.sha256:
        raise KitError(f"{REFERENCE_FILE} of {uri} does not match the manifest's sha256")
    try:
        return ModelFiles(manifest, parse_reference(raw))
    except ReferenceError as error:
        raise KitError(str(error)) from None


def load_model_reference(uri: str, cache_dir: Path | None = None) -> ModelReference:
    """The manifest and ``reference.json`` of a model; KitError when it has none."""
    found = load_model_files(uri, cache_dir)
    if found.reference is None:
        manifest = found.manifest
        raise KitError(
            f"{manifest.model_name} {manifest.model_version} has no reference statistics (it "
            f"was trained before onnxkit recorded {REFERENCE_FILE}); train it again with "
            "`onnxkit run` or `onnxkit train` to get them"
        )
    return ModelReference(found.manifest, found.reference)


def capture_files(source: Path) -> list[Path]:
    """A capture file, or every ``*.jsonl`` under a folder (sorted: by start time)."""
    if source.is_file():
        return [source]
    if source.is_dir():
        return sorted(p for p in source.rglob(f"*{CAPTURE_SUFFIX}") if p.is_file())
    raise KitError(f"no capture at {source}: {HOW_TO_CAPTURE}")


def read_capture(source: Path) -> list[CaptureRecord]:
    """Every record of a capture file or folder; KitError when there is none or a line is bad."""
    records: list[CaptureRecord] = []
    for path in capture_files(source):
        try:
            records.extend(decode_records(path.read_bytes(), str(path)))
        except CaptureError as error:
            raise KitError(str(error)) from None
        except OSError as error:
            raise KitError(f"cannot read {path}: {error.strerror}") from None
    if not records:
        raise KitError(f"no capture records in {source}: {HOW_TO_CAPTURE}")
    return records


def drift_report(model: str, capture: Path, thresholds: DriftThresholds) -> DriftReport:
    """The drift of a capture against a model's reference statistics."""
    found = load_model_reference(model)
    manifest = found.manifest
    try:
        records = select(read_capture(capture), manifest.model_version)
        return compare(
            found.reference,
            records,
            model_name=manifest.model_name,
            model_version=manifest.model_version,
            thresholds=thresholds,
        )
    except DriftInputError as error:
        raise KitError(str(error)) from None
