"""``onnxkit drift`` on this machine: a model's reference statistics against a capture folder or
file, with the drift module the cloud will run (``functions/monitor/drift.py``)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions.inference.source import (
    LocatedModel,
    ModelLocator,
    ModelSourceError,
    S3Fetcher,
    S3Location,
)
from functions.monitor.drift import DriftInputError, compare, select
from onnxkit.contract.capture import CaptureError, CaptureRecord, decode_records
from onnxkit.contract.card import EvaluationError, EvaluationRecord, parse_evaluation
from onnxkit.contract.drift import DriftReport, DriftThresholds
from onnxkit.contract.layout import (
    CAPTURE_SUFFIX,
    EVALUATION_FILE,
    REFERENCE_FILE,
    sha256_bytes,
    sha256_file,
)
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
    """A model's manifest and, when it lists them, its reference statistics; for a promoted
    version, the quality gate's record kept beside it."""

    manifest: Manifest
    reference: Reference | None
    evaluation: EvaluationRecord | None = None


def _beside(locator: ModelLocator, located: LocatedModel, uri: str, name: str) -> bytes | None:
    """The file called ``name`` beside a located model's manifest (a folder or S3), or None."""
    path = located.manifest_path.parent / name
    try:
        if path.is_file():
            return path.read_bytes()
        if uri.startswith("s3://"):
            where = S3Location.parse(located.uri if located.uri.startswith("s3://") else uri)
            return locator.s3.read(where.sibling(name))
    except ModelSourceError as error:
        raise KitError(str(error)) from None
    except OSError as error:
        raise KitError(f"cannot read {path}: {error.strerror}") from None
    return None


def load_model_files(
    uri: str,
    cache_dir: Path | None = None,
    *,
    s3_client: Any = None,
    expected_sha256: str | None = None,
    expected_manifest_sha256: str | None = None,
) -> ModelFiles:
    """The manifest, (when listed) ``reference.json`` and (when kept) ``evaluation.json`` of a
    model folder, model.onnx, model.tar.gz, production pointer or s3 uri; KitError with one line
    otherwise. Given the digests a production pointer pins, the model and its manifest must have
    them."""
    cache = cache_dir or Path(tempfile.gettempdir()) / "onnxkit-models"
    locator = ModelLocator(cache, S3Fetcher(s3_client) if s3_client is not None else None)
    try:
        located = locator.locate(uri, expected_sha256, expected_manifest_sha256)
        manifest = parse_manifest(located.manifest_path.read_bytes())
        pinned = located.expected_sha256
        if pinned and sha256_file(located.model_path) != pinned:
            raise KitError(
                f"{uri}: {manifest.serving.file} does not have the sha256 the production "
                "pointer names; refusing to describe it"
            )
    except (ModelSourceError, ManifestError) as error:
        raise KitError(str(error)) from None
    except OSError as error:
        raise KitError(f"cannot read the manifest of {uri}: {error.strerror}") from None
    return ModelFiles(
        manifest,
        _reference(locator, located, uri, manifest),
        _evaluation(locator, located, uri, manifest),
    )


def _reference(
    locator: ModelLocator, located: LocatedModel, uri: str, manifest: Manifest
) -> Reference | None:
    listed = manifest.files.get(REFERENCE_FILE)
    if listed is None:
        return None
    raw = _beside(locator, located, uri, REFERENCE_FILE)
    if not raw:
        raise KitError(f"{REFERENCE_FILE} is listed in the manifest but not beside it ({uri})")
    if sha256_bytes(raw) != listed.sha256:
        raise KitError(f"{REFERENCE_FILE} of {uri} does not match the manifest's sha256")
    try:
        return parse_reference(raw)
    except ReferenceError as error:
        raise KitError(str(error)) from None


def _evaluation(
    locator: ModelLocator, located: LocatedModel, uri: str, manifest: Manifest
) -> EvaluationRecord | None:
    """The gate's record beside a promoted version (None for an unpromoted model, or one
    promoted before onnxkit kept it); it must be of this very model."""
    raw = _beside(locator, located, uri, EVALUATION_FILE)
    if raw is None:
        return None
    try:
        record = parse_evaluation(raw)
    except EvaluationError as error:
        raise KitError(f"{EVALUATION_FILE} of {uri}: {error}") from None
    if (record.candidate.model_version, record.candidate.sha256) != (
        manifest.model_version,
        manifest.serving.sha256,
    ):
        raise KitError(f"{EVALUATION_FILE} of {uri} is the record of another model")
    return record


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
