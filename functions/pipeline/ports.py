"""The interfaces the step logic runs over, the pointer's reads and writes, and the step errors.

Two implementations of each port exist: :mod:`functions.pipeline.aws` (S3, Lambda, CloudWatch)
and :mod:`onnxkit.local.store` (a work directory, in the shell). The step modules only see these.
"""

from __future__ import annotations

from typing import IO, Protocol

from onnxkit.contract.api import JSON
from onnxkit.contract.layout import intent_key, pointer_key
from onnxkit.contract.pointer import (
    Intent,
    Pointer,
    PointerError,
    dump,
    parse_intent,
    parse_pointer,
)


class StepError(RuntimeError):
    """A pipeline step cannot complete; the message is one readable line."""


class TamperedArtifactError(StepError):
    """A file's digest disagrees with the manifest or with the evaluated candidate."""


class ObjectStore(Protocol):
    """Keyed bytes under one root (an S3 bucket, a directory), addressed by URIs."""

    def uri(self, key: str, version_id: str | None = None) -> str:
        """The URI of a key in this store, pinned to a version when one is given."""
        ...

    def open_uri(self, uri: str) -> IO[bytes]:
        """A readable stream of an object; raises StepError when it does not exist."""
        ...

    def get(self, key: str) -> bytes | None:
        """The bytes at a key, or None when absent."""
        ...

    def head(self, key: str) -> str | None:
        """The version id of an existing key ("" without versioning), or None when absent."""
        ...

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Write bytes; returns the new version id ("" without versioning)."""
        ...


class ServingTarget(Protocol):
    """The inference function: published versions with a model each, and a ``live`` alias."""

    def find_version(self, model_uri: str, sha256: str, manifest_sha256: str) -> str | None:
        """A published version already configured with this model, if any."""
        ...

    def publish(self, model_uri: str, sha256: str, manifest_sha256: str, description: str) -> str:
        """Configure the function with a model (and its manifest's digest) and publish an
        immutable version."""
        ...

    def live(self) -> tuple[str | None, dict[str, float]]:
        """The live alias's version and its additional routing weights."""
        ...

    def route(self, version: str, weights: dict[str, float] | None = None) -> None:
        """Point the live alias at a version, optionally sending weights to others."""
        ...

    def model_of(self, version: str) -> tuple[str, str]:
        """(MODEL_URI, MODEL_SHA256) a published version serves."""
        ...

    def follows_pointer(self, version: str) -> bool:
        """True for a version with no model of its own, serving whatever the production pointer
        names (the CDK-managed one, whose ``MODEL_URI`` is the pointer itself, or empty)."""
        ...


class Registry(Protocol):
    """The model registry: every registered version with its metrics and approval status."""

    def approve(self, package_id: str) -> None:
        """Mark a registered version approved (idempotent)."""
        ...


def read_intent(store: ObjectStore, model_name: str) -> Intent | None:
    """The last promotion's or rollback's record, or None before the first."""
    raw = store.get(intent_key(model_name))
    if raw is None:
        return None
    try:
        return parse_intent(raw)
    except PointerError as error:
        raise StepError(f"unreadable promotion record for {model_name}: {error}") from None


def write_intent(store: ObjectStore, intent: Intent) -> None:
    """Record what is about to happen, before the alias moves."""
    store.put(intent_key(intent.target.model_name), dump(intent), JSON)


def read_pointer(store: ObjectStore, model_name: str) -> Pointer | None:
    """The production pointer of a model, or None before its first promotion."""
    raw = store.get(pointer_key(model_name))
    if raw is None:
        return None
    try:
        return parse_pointer(raw)
    except PointerError as error:
        raise StepError(f"unreadable production pointer for {model_name}: {error}") from None


def write_pointer(store: ObjectStore, pointer: Pointer) -> None:
    """Replace a model's production pointer."""
    store.put(pointer_key(pointer.model_name), dump(pointer), JSON)
