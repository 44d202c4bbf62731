"""The pipeline's ports on a laptop: a work directory laid out like the artifact bucket.

``models/<name>/<version>/``, ``models/<name>/production.json`` and
``models/<name>/promotion.json`` as in S3; ``serving/function.json`` plays the inference
function (numbered versions, each with its ``MODEL_URI``/``MODEL_SHA256``/
``MODEL_MANIFEST_SHA256``, and the ``live`` alias); ``registry/<name>/<version>.json`` keeps
every registered version with its metrics, status and the model package's card ``metadata``.
Uris of the store are paths relative to the work directory, so a copied or moved work directory
serves its own files. Writers hold
:func:`workdir_lock` (a file lock), so only this machine's shell uses these adapters: they are
not part of the pipeline's Lambda bundle.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from functions.pipeline.ports import StepError
from onnxkit.contract.card import package_metadata
from onnxkit.contract.layout import (
    MANIFEST_FILE,
    MODEL_MANIFEST_SHA256_ENV,
    MODEL_SHA256_ENV,
    MODEL_URI_ENV,
    MODELS_PREFIX,
    POINTER_FILE,
    SERVING_FILE,
)

FUNCTION_FILE = "serving/function.json"
REGISTRY_DIR = "registry"
LOCK_FILE = ".onnxkit.lock"
TEMP_SUFFIX = ".partial"
# The folders the store and the local function write into (what a crash can leave behind in).
_WRITTEN = (MODELS_PREFIX.rstrip("/"), "serving", REGISTRY_DIR)


@contextmanager
def workdir_lock(root: Path) -> Iterator[None]:
    """Hold the work directory's exclusive lock: one promotion or rollback at a time, as
    the state machine runs one execution's Promote at a time. Holding it, the leftovers of a
    crashed writer are removed (see :func:`clean_leftovers`)."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = (root / LOCK_FILE).open("a")
    except OSError as error:
        raise StepError(f"cannot lock the work directory {root}: {error.strerror}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            clean_leftovers(root)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clean_leftovers(root: Path) -> list[Path]:
    """Remove what a writer killed mid-way leaves: temporary files, and a version folder with
    a model.onnx but no manifest.json that no function version serves (promotion copies the
    manifest last, so such a folder never held a complete version). Call with the lock held."""
    root = Path(root)
    removed = [
        path
        for folder in _WRITTEN
        for path in (root / folder).rglob(f".*{TEMP_SUFFIX}")
        if path.is_file()
    ]
    served = " ".join(env.get(MODEL_URI_ENV, "") for env in LocalServing(root).all_versions())
    for model in (root / MODELS_PREFIX).glob(f"*/*/{SERVING_FILE}"):
        folder = model.parent
        relative = folder.relative_to(root).as_posix()
        if not (folder / MANIFEST_FILE).is_file() and f"{relative}/" not in served:
            removed += [p for p in folder.iterdir() if p.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    for path in {p.parent for p in removed}:
        with suppress(OSError):  # only empties
            models = MODELS_PREFIX.rstrip("/")
            if path.name != models and path.parent.parent.name == models:
                path.rmdir()
    return removed


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def uri_to_path(uri: str, root: Path | None = None) -> Path:
    """The local path of a ``file://`` uri or a plain path; a relative one is relative to
    ``root`` (the work directory) when given."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme:
        raise StepError(f"not a local uri: {uri}")
    path = Path(uri)
    return path if root is None or path.is_absolute() else Path(root) / path


class LocalStore:
    """A directory standing in for the artifact bucket (no object versioning)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def uri(self, key: str, version_id: str | None = None) -> str:
        """The key itself: a path relative to the work directory."""
        return key

    def path(self, uri: str) -> Path:
        """The file a uri of this store (or an absolute ``file://`` uri) names."""
        return uri_to_path(uri, self.root)

    def open_uri(self, uri: str) -> IO[bytes]:
        """Open a local file by uri."""
        path = self.path(uri)
        try:
            return path.open("rb")
        except OSError as error:
            raise StepError(f"cannot read {path}: {error.strerror}") from None

    def get(self, key: str) -> bytes | None:
        """File bytes, or None when absent."""
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def head(self, key: str) -> str | None:
        """ "" for an existing key (no versioning), None when absent."""
        return "" if (self.root / key).is_file() else None

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Write a file atomically."""
        _atomic_write(self.root / key, data)
        return ""


class LocalServing:
    """The inference function's published versions and ``live`` alias, in one JSON file."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root).resolve() / FUNCTION_FILE

    def _load(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"versions": {}, "alias": None}
        try:
            state: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError) as error:
            raise StepError(f"unreadable {self.path}: {error}") from None
        return state

    def all_versions(self) -> list[dict[str, str]]:
        """Every published version's environment."""
        return list(self._load()["versions"].values())

    def _save(self, state: dict[str, Any]) -> None:
        _atomic_write(self.path, json.dumps(state, indent=2, sort_keys=True).encode())

    def find_version(self, model_uri: str, sha256: str, manifest_sha256: str) -> str | None:
        """A version already published with this model."""
        wanted = {
            MODEL_URI_ENV: model_uri,
            MODEL_SHA256_ENV: sha256,
            MODEL_MANIFEST_SHA256_ENV: manifest_sha256,
        }
        for number, env in sorted(self._load()["versions"].items(), key=lambda v: -int(v[0])):
            if all(env.get(key) == value for key, value in wanted.items()):
                return str(number)
        return None

    def publish(self, model_uri: str, sha256: str, manifest_sha256: str, description: str) -> str:
        """Record a new numbered version serving this model."""
        state = self._load()
        number = str(len(state["versions"]) + 1)
        state["versions"][number] = {
            MODEL_URI_ENV: model_uri,
            MODEL_SHA256_ENV: sha256,
            MODEL_MANIFEST_SHA256_ENV: manifest_sha256,
            "description": description,
        }
        self._save(state)
        return number

    def live(self) -> tuple[str | None, dict[str, float]]:
        """The live version and its routing weights."""
        alias = self._load()["alias"]
        if not alias:
            return None, {}
        return str(alias["version"]), dict(alias.get("weights") or {})

    def route(self, version: str, weights: dict[str, float] | None = None) -> None:
        """Point live at a published version."""
        state = self._load()
        if version not in state["versions"]:
            raise StepError(f"version {version} is not published")
        state["alias"] = {"version": version, "weights": dict(weights or {})}
        self._save(state)

    def model_of(self, version: str) -> tuple[str, str]:
        """(MODEL_URI, MODEL_SHA256) of a published version."""
        env = self._load()["versions"].get(version)
        if env is None:
            raise StepError(f"version {version} is not published")
        return env[MODEL_URI_ENV], env[MODEL_SHA256_ENV]

    def follows_pointer(self, version: str) -> bool:
        """True for a version whose ``MODEL_URI`` is a production pointer (or empty)."""
        uri = self.model_of(version)[0]
        return not uri or uri.endswith(POINTER_FILE)


class LocalRegistry:
    """Every registered version with its metrics: ``registry/<name>/<version>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve() / REGISTRY_DIR

    def _path(self, package_id: str) -> Path:
        name, _, version = package_id.partition("/")
        return self.root / name / f"{version}.json"

    def register(
        self, manifest: Any, artifact_uri: str, evaluation: dict[str, Any], status: str
    ) -> str:
        """Record a version (idempotent); returns its package id ``<name>/<version>``."""
        package_id = f"{manifest.model_name}/{manifest.model_version}"
        record = {
            "package_id": package_id,
            "model_name": manifest.model_name,
            "model_version": manifest.model_version,
            "registered_at": datetime.now(UTC).isoformat(),
            "status": status,
            "artifact_uri": artifact_uri,
            "sha256": manifest.serving.sha256,
            "task": manifest.task,
            "estimator": manifest.estimator,
            "serving_variant": manifest.serving.variant,
            "metrics": {name: report.metrics for name, report in manifest.variants.items()},
            "gate": {"passed": evaluation["passed"], "reasons": evaluation["reasons"]},
            # What the cloud's Register puts on the model package (CustomerMetadataProperties).
            "metadata": evaluation.get("package_metadata")
            or package_metadata(manifest, evaluation.get("production")),
        }
        _atomic_write(self._path(package_id), json.dumps(record, indent=2).encode())
        return package_id

    def approve(self, package_id: str) -> None:
        """Mark a registered version approved."""
        path = self._path(package_id)
        if not path.is_file():
            raise StepError(f"{package_id} is not registered")
        record = json.loads(path.read_text())
        if record.get("status") != "Approved":
            record["status"] = "Approved"
            _atomic_write(path, json.dumps(record, indent=2).encode())

    def versions(self, model_name: str) -> list[dict[str, Any]]:
        """Every registered version of a model, oldest first."""
        folder = self.root / model_name
        records = [json.loads(p.read_text()) for p in folder.glob("*.json")]
        return sorted(records, key=lambda r: r["registered_at"])
