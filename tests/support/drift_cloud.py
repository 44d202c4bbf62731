"""The cloud drift check's side of the world in tests: a promoted model and capture objects in
an artifact bucket (moto's or a fake's), laid out as the Promote step and the cloud capture write
them (onnxkit/contract/layout.py), and fakes of the check's ports."""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from onnxkit.contract.capture import CaptureRecord, encode_records
from onnxkit.contract.layout import (
    MANIFEST_FILE,
    REFERENCE_FILE,
    SERVING_FILE,
    capture_hour_prefix,
    pointer_key,
    sha256_bytes,
    version_prefix,
)
from onnxkit.contract.manifest import load_manifest, write_manifest
from onnxkit.contract.pointer import Pointer, dump


class FakeStore:
    """An in-memory bucket: the check's Store port (every write is a new version)."""

    def __init__(self, bucket: str = "kit-artifacts") -> None:
        self.bucket = bucket
        self.objects: dict[str, list[bytes]] = {}

    def get(self, key: str, version_id: str | None = None) -> bytes | None:
        versions = self.objects.get(key)
        if not versions:
            return None
        return versions[int(version_id) - 1] if version_id else versions[-1]

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.write(key, data)

    def write(self, key: str, data: bytes) -> str:
        """Store a new version; its id."""
        self.objects.setdefault(key, []).append(data)
        return str(len(self.objects[key]))


@dataclass
class FakeMetrics:
    """Records what PutMetricData would have received."""

    calls: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)

    def put(self, namespace: str, data: list[dict[str, Any]]) -> None:
        self.calls.append((namespace, data))


@dataclass
class FakeTrainer:
    """A training state machine that is running or not, and the executions started."""

    busy: bool = False
    started: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def running(self) -> bool:
        return self.busy

    def start(self, name: str, payload: dict[str, Any]) -> str:
        self.started.append((name, payload))
        return f"arn:aws:states:eu-west-1:123456789012:execution:onnxkit-dev-training:{name}"


class S3Writer:
    """write(key, data) -> version id, on a boto3 S3 client's bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def write(self, key: str, data: bytes) -> str:
        """Put an object; its version id ("" without versioning)."""
        written = self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        return str(written.get("VersionId") or "")


def without_reference(model_dir: Path, destination: Path) -> Path:
    """A copy of a model as artifacts from before reference statistics were: no
    ``reference.json``, none listed in the manifest."""
    shutil.copytree(model_dir, destination)
    manifest = load_manifest(destination)
    files = {k: v for k, v in manifest.files.items() if k != REFERENCE_FILE}
    write_manifest(msgspec.structs.replace(manifest, files=files), destination)
    (destination / REFERENCE_FILE).unlink()
    return destination


def promote_files(store: Any, model_dir: Path, *, reference: bool = True) -> Pointer:
    """A trained model's files under ``models/<name>/<version>/`` and its production pointer,
    as the Promote step leaves them (the pointer pins the manifest by version and digest)."""
    manifest = load_manifest(model_dir)
    name, version = manifest.model_name, manifest.model_version
    prefix = version_prefix(name, version)
    model_bytes = (model_dir / SERVING_FILE).read_bytes()
    store.write(prefix + SERVING_FILE, model_bytes)
    if reference:
        store.write(prefix + REFERENCE_FILE, (model_dir / REFERENCE_FILE).read_bytes())
    manifest_bytes = (model_dir / MANIFEST_FILE).read_bytes()
    manifest_version = store.write(prefix + MANIFEST_FILE, manifest_bytes)
    where = f"s3://{store.bucket}/{prefix}"
    pointer = Pointer(
        model_name=name,
        model_version=version,
        model_uri=where + SERVING_FILE,
        manifest_uri=f"{where}{MANIFEST_FILE}"
        + (f"?versionId={manifest_version}" if manifest_version else ""),
        sha256=sha256_bytes(model_bytes),
        manifest_sha256=sha256_bytes(manifest_bytes),
        lambda_version="1",
    )
    store.write(pointer_key(name), dump(pointer))
    return pointer


def put_capture(
    store: Any,
    hour: datetime,
    records: list[CaptureRecord],
    *,
    compressed: bool = True,
    name: str = "part",
) -> str:
    """One capture object of ``records`` delivered in ``hour`` (gzip or plain JSON Lines)."""
    data = encode_records(records)
    if compressed:
        data = gzip.compress(data)
    key = f"{capture_hour_prefix(hour)}{name}{'.gz' if compressed else '.jsonl'}"
    store.write(key, data)
    return key
