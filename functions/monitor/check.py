"""The scheduled drift check: the live model's reference statistics against a window of the
cloud capture, with the drift module ``onnxkit drift`` runs locally (:mod:`.drift`).

One run (:func:`run_check`):

1. follows the production pointer (``models/<name>/production.json``) to the live version's
   manifest and ``reference.json``, each checked against the digest the record above it names
   (the pointer pins the manifest, the manifest lists the reference), as the inference
   function checks what it loads;
2. reads the capture objects of the window's complete UTC hours (``capture/YYYY/MM/DD/HH/``,
   :func:`~onnxkit.contract.layout.capture_hour_prefix`), newest first, each JSON Lines of
   capture records, gzip-compressed or plain (told apart by gzip's magic bytes), and keeps the
   live version's records (at most ``max_rows``);
3. compares them when there are at least ``min_rows`` (else: not enough data, no alarm);
4. writes the :class:`~onnxkit.contract.drift.DriftCheck` to ``drift/reports/<stamp>.json``
   and ``drift/latest.json``, publishes the metrics (:func:`metric_data`) and, when drift was
   found and a trainer is given, starts the training state machine on ``data/train/``.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from onnxkit.contract.capture import CaptureError, CaptureRecord, decode_records
from onnxkit.contract.drift import PREDICTIONS, DriftCheck, DriftThresholds, encode_check
from onnxkit.contract.layout import (
    CAPTURE_ROWS_METRIC,
    DRIFT_LATEST_KEY,
    DRIFT_SCORE_METRIC,
    DRIFTED_METRIC,
    FEATURE_DIMENSION,
    MODEL_DIMENSION,
    REFERENCE_FILE,
    SCHEDULED_TRAIN_PREFIX,
    capture_hour_prefix,
    drift_report_key,
    pointer_key,
    s3_object,
    sha256_bytes,
)
from onnxkit.contract.manifest import Manifest, ManifestError, parse_manifest
from onnxkit.contract.pointer import Pointer, PointerError, parse_pointer
from onnxkit.contract.reference import Reference, ReferenceError, parse_reference

from .drift import DriftInputError, compare
from .ports import Metrics, MonitorError, Store, Trainer

GZIP_MAGIC: Final = b"\x1f\x8b"
JSON: Final = "application/json"


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The check's settings: the function's ``DRIFT_SETTINGS`` (JSON, written by the CDK app
    from the config's ``drift`` section) with ``MODEL_NAME``."""

    model_name: str
    namespace: str
    window_hours: int = 24
    min_rows: int = 100
    max_rows: int = 50_000
    thresholds: DriftThresholds = msgspec.field(default_factory=DriftThresholds)

    @classmethod
    def parse(cls, model_name: str, raw: str) -> Settings:
        """From the environment's JSON; MonitorError with one line when it is not valid."""
        try:
            data = msgspec.json.decode(raw or "{}")
            return msgspec.convert({**data, "model_name": model_name}, cls)
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as error:
            raise MonitorError(f"invalid drift settings: {error}") from None


@dataclass(frozen=True)
class LiveModel:
    """The live version's pointer, manifest and (when it has them) reference statistics."""

    pointer: Pointer
    manifest: Manifest
    reference: Reference | None


@dataclass
class Capture:
    """The live version's records of a window, and what else the window held."""

    records: list[CaptureRecord] = field(default_factory=list)
    other_rows: int = 0
    truncated: bool = False
    unreadable: list[str] = field(default_factory=list)


def window(checked_at: datetime, hours: int) -> tuple[datetime, datetime]:
    """The ``hours`` complete UTC hours before the one the check runs in: (start, end)."""
    end = checked_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(hours=hours), end


def _split(uri: str) -> tuple[str, str, str | None]:
    found = s3_object(uri)
    if found is None:
        raise MonitorError(f"not an s3 object uri: {uri}")
    return found


def _verified(data: bytes | None, what: str, expected: str | None) -> bytes:
    if data is None:
        raise MonitorError(f"{what} does not exist")
    if expected and sha256_bytes(data) != expected.lower():
        raise MonitorError(f"{what} does not match its sha256 {expected}; refusing to use it")
    return data


def live_model(store: Store, model_name: str) -> LiveModel | None:
    """What the production pointer names, each file checked against its digest; None before
    the first promotion."""
    raw = store.get(pointer_key(model_name))
    if raw is None:
        return None
    try:
        pointer = parse_pointer(raw)
    except PointerError as error:
        raise MonitorError(f"unreadable production pointer of {model_name}: {error}") from None
    bucket, key, version_id = _split(pointer.manifest_uri)
    if bucket != store.bucket:
        raise MonitorError(f"the pointer's manifest {pointer.manifest_uri} is in another bucket")
    manifest_raw = _verified(
        store.get(key, version_id), pointer.manifest_uri, pointer.manifest_sha256
    )
    try:
        manifest = parse_manifest(manifest_raw)
    except ManifestError as error:
        raise MonitorError(str(error)) from None
    if (manifest.model_name, manifest.model_version) != (model_name, pointer.model_version):
        raise MonitorError(
            f"{pointer.manifest_uri} describes {manifest.model_name} {manifest.model_version}, "
            f"not the pointer's {model_name} {pointer.model_version}"
        )
    listed = manifest.files.get(REFERENCE_FILE)
    if listed is None:  # trained before reference statistics were recorded
        return LiveModel(pointer, manifest, None)
    reference_key = key.rsplit("/", 1)[0] + "/" + REFERENCE_FILE
    raw_reference = _verified(
        store.get(reference_key), f"s3://{bucket}/{reference_key}", listed.sha256
    )
    try:
        return LiveModel(pointer, manifest, parse_reference(raw_reference))
    except ReferenceError as error:
        raise MonitorError(str(error)) from None


def decode_object(raw: bytes, source: str) -> list[CaptureRecord]:
    """The records of one capture object, gzip-compressed or plain. A stored object is whole,
    so its last line counts even without a final newline (a local file's would be skipped as
    one still being written)."""
    if raw[:2] == GZIP_MAGIC:
        raw = gzip.decompress(raw)
    if raw and not raw.endswith(b"\n"):
        raw += b"\n"
    return decode_records(raw, source)


def read_capture(
    store: Store, start: datetime, end: datetime, model_name: str, model_version: str, cap: int
) -> Capture:
    """The records of one model version in the hours ``start <= hour < end``, newest hour
    first, at most ``cap``; an object that is not gzip or JSON Lines of records is skipped
    and named."""
    found = Capture()
    hour = end - timedelta(hours=1)
    while hour >= start:
        for key in sorted(store.keys(capture_hour_prefix(hour)), reverse=True):
            raw = store.get(key)
            if raw is None:  # expired between the listing and the read
                continue
            try:
                records = decode_object(raw, key)
            except (CaptureError, OSError, EOFError, zlib.error):
                found.unreadable.append(key)
                continue
            for record in records:
                if (record.model_name, record.model_version) == (model_name, model_version):
                    found.records.append(record)
                else:
                    found.other_rows += 1
            if len(found.records) >= cap:  # older hours (or objects) stay unread
                found.truncated = True
                del found.records[cap:]
                return found
        hour -= timedelta(hours=1)
    return found


def metric_data(check: DriftCheck) -> list[dict[str, Any]]:
    """The check's CloudWatch data: ``CaptureRows`` once a model with reference statistics is
    live; with a report, also ``DriftScore`` per feature (and for the predictions, as feature
    ``(predictions)``) and ``DriftedFeatures``. Nothing else: without a report there is no
    score to alarm on."""
    if check.status == "unavailable":
        return []
    model = [{"Name": MODEL_DIMENSION, "Value": check.model_name}]

    def datum(name: str, value: float, unit: str, feature: str | None = None) -> dict[str, Any]:
        extra = [{"Name": FEATURE_DIMENSION, "Value": feature}] if feature is not None else []
        return {
            "MetricName": name,
            "Dimensions": model + extra,
            "Timestamp": check.checked_at,
            "Value": float(value),
            "Unit": unit,
        }

    data = [datum(CAPTURE_ROWS_METRIC, check.capture_rows, "Count")]
    report = check.report
    if report is not None:
        data += [datum(DRIFT_SCORE_METRIC, f.score, "None", f.name) for f in report.features]
        if report.predictions is not None:
            data.append(datum(DRIFT_SCORE_METRIC, report.predictions.score, "None", PREDICTIONS))
        data.append(datum(DRIFTED_METRIC, len(report.drifted), "Count"))
    return data


def execution_name(checked_at: datetime) -> str:
    """The retraining execution a check starts: one per check, so a retried check reuses it."""
    return f"drift-{checked_at.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def _retrain(store: Store, trainer: Trainer, checked_at: datetime) -> tuple[str | None, str]:
    if trainer.running():
        return None, "; a training run is already in progress, none started"
    payload = {
        "train_s3_uri": f"s3://{store.bucket}/{SCHEDULED_TRAIN_PREFIX}",
        "hyperparameters": {},
    }
    arn = trainer.start(execution_name(checked_at), payload)
    return arn, f"; started retraining on {payload['train_s3_uri']}"


def evaluate(
    store: Store, settings: Settings, checked_at: datetime, trainer: Trainer | None = None
) -> DriftCheck:
    """The check's result (and, on drift with a trainer, the retraining it starts)."""
    start, end = window(checked_at, settings.window_hours)
    name = settings.model_name
    base: dict[str, Any] = {
        "checked_at": checked_at.astimezone(UTC).replace(microsecond=0),
        "model_name": name,
        "window_start": start,
        "window_end": end,
        "min_rows": settings.min_rows,
    }
    live = live_model(store, name)
    if live is None:
        detail = f"no model of {name} has been promoted yet"
        return DriftCheck(**base, model_version=None, status="unavailable", detail=detail)
    version = live.pointer.model_version
    if live.reference is None:
        detail = (
            f"{name} {version} has no reference statistics (trained before onnxkit recorded "
            f"{REFERENCE_FILE}); train it again to monitor its drift"
        )
        return DriftCheck(**base, model_version=version, status="unavailable", detail=detail)
    capture = read_capture(store, start, end, name, version, settings.max_rows)
    base.update(
        model_version=version,
        capture_rows=len(capture.records),
        other_rows=capture.other_rows,
        truncated=capture.truncated,
        unreadable_objects=capture.unreadable,
    )
    if len(capture.records) < settings.min_rows:
        detail = (
            f"not enough data: {len(capture.records)} captured rows of {version} in the "
            f"{settings.window_hours} h window, at least {settings.min_rows} needed"
        )
        return DriftCheck(**base, status="not_enough_data", detail=detail)
    try:
        report = compare(
            live.reference,
            capture.records,
            model_name=name,
            model_version=version,
            thresholds=settings.thresholds,
        )
    except DriftInputError as error:
        raise MonitorError(f"the capture does not fit {name} {version}: {error}") from None
    if not report.any_drift:
        return DriftCheck(**base, status="no_drift", detail="no drift", report=report)
    detail, started = f"drift: {', '.join(report.drifted)}", None
    if trainer is not None:
        started, note = _retrain(store, trainer, checked_at)
        detail += note
    return DriftCheck(
        **base, status="drift", detail=detail, report=report, training_execution=started
    )


def run_check(
    store: Store,
    metrics: Metrics,
    settings: Settings,
    checked_at: datetime,
    trainer: Trainer | None = None,
) -> DriftCheck:
    """Evaluate, write the check (its own key, then ``drift/latest.json``), publish metrics."""
    check = evaluate(store, settings, checked_at, trainer)
    encoded = encode_check(check)
    store.put(drift_report_key(check.checked_at), encoded, JSON)
    store.put(DRIFT_LATEST_KEY, encoded, JSON)
    data = metric_data(check)
    if data:
        metrics.put(settings.namespace, data)
    return check
