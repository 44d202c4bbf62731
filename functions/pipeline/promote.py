"""Promote and roll back: move the ``live`` alias to a model, and back.

Promotion runs in this order, each step idempotent, so a failure (or a retry) at any point
leaves ``live`` serving the previous model:

1. ``verify``  - re-read the artifact and check every digest against the manifest and the
   evaluated candidate (a tampered artifact is refused);
2. ``store``   - copy model.onnx, then manifest.json, to the immutable
   ``models/<name>/<version>/`` (an existing copy is reused only when its digest matches);
3. ``publish`` - configure the function's ``MODEL_URI``/``MODEL_SHA256`` and publish a
   version (an already published version with that model is reused);
4. ``approve`` - approve the registered version (the local registry; in the cloud the
   Register state creates the model package already approved);
5. ``shift``   - optional: send a share of traffic to the new version and watch the alarm,
   moving everything back on alarm;
6. ``alias``   - point ``live`` at the new version (the only step clients can see);
7. ``pointer`` - record the production pointer; if that fails, ``live`` is moved back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from onnxkit.contract.manifest import MANIFEST_FILE, SERVING_FILE

from .evaluate import digest_problems, read_artifact
from .ports import (
    ObjectStore,
    Pointer,
    Registry,
    ServingTarget,
    StepError,
    TamperedArtifactError,
    model_prefix,
    read_pointer,
    write_pointer,
)

PROMOTION_STEPS = ("verify", "store", "publish", "approve", "shift", "alias", "pointer")


class RolledBackError(StepError):
    """The gradual shift saw the alarm and moved all traffic back to the previous version."""


@dataclass(frozen=True)
class Shift:
    """A gradual shift: traffic shares to try in turn, each watched for ``wait_seconds``."""

    weights: Sequence[float]
    alarm: Callable[[], bool]
    wait_seconds: float = 0.0
    sleep: Callable[[float], None] = time.sleep


def _store_immutable(store: ObjectStore, key: str, data: bytes, content_type: str) -> str:
    """Write a versioned file once; a retry reuses it, a different file is refused."""
    existing = store.get(key)
    if existing is not None:
        if existing != data:
            raise StepError(f"{key} already exists with different content; versions are immutable")
        version_id = store.head(key)
        return store.uri(key, version_id or None)
    return store.uri(key, store.put(key, data, content_type) or None)


def promote(
    store: ObjectStore,
    serving: ServingTarget,
    registry: Registry | None,
    candidate: dict[str, Any],
    model_package_id: str,
    *,
    shift: Shift | None = None,
) -> dict[str, Any]:
    """The Promote step; returns ``{"model_version", "lambda_version", "model_uri",
    "sha256", "previous_lambda_version"}``."""
    # 1. verify
    with store.open_uri(candidate["artifact_uri"]) as stream:
        artifact = read_artifact(stream, keep={SERVING_FILE})
    manifest = artifact.manifest
    problems = digest_problems(artifact)
    if manifest.serving.sha256 != candidate["sha256"]:
        problems.append("the artifact's serving model is not the one that was evaluated")
    if (manifest.model_name, manifest.model_version) != (
        candidate["model_name"],
        candidate["model_version"],
    ):
        problems.append("the artifact's name or version is not the one that was evaluated")
    if problems:
        raise TamperedArtifactError("refusing to promote: " + "; ".join(problems))
    model_bytes = artifact.files[manifest.serving.file]
    name, version, sha = manifest.model_name, manifest.model_version, manifest.serving.sha256

    # 2. store: the model first, the manifest last, so a manifest means a complete version.
    prefix = f"{model_prefix(name)}{version}/"
    model_uri = _store_immutable(
        store, prefix + SERVING_FILE, model_bytes, "application/octet-stream"
    )
    manifest_uri = _store_immutable(
        store, prefix + MANIFEST_FILE, artifact.manifest_bytes, "application/json"
    )

    # 3. publish
    pointer = read_pointer(store, name)
    current, _ = serving.live()
    if pointer is None:
        previous = current
    elif pointer.model_version != version:
        previous = pointer.lambda_version
    else:  # a retry after the pointer was written: report what it replaced
        previous = pointer.history[0]["lambda_version"] if pointer.history else None
    lambda_version = serving.find_version(model_uri, sha) or serving.publish(
        model_uri, sha, f"{name} {version}"
    )

    # 4. approve (in the cloud, Register already created the package approved)
    if registry is not None:
        registry.approve(model_package_id)

    # 5. shift
    if shift is not None and previous is not None and previous != lambda_version:
        try:
            for weight in shift.weights:
                serving.route(previous, {lambda_version: weight})
                shift.sleep(shift.wait_seconds)
                if shift.alarm():
                    raise RolledBackError(
                        f"alarm during the shift to {version} at {weight:.0%}; "
                        f"live stays on version {previous}"
                    )
        except Exception:
            # Whatever stopped the shift, the previous version takes all traffic again.
            serving.route(previous)
            raise

    # 6. alias, 7. pointer
    serving.route(lambda_version)
    if pointer is None or pointer.model_version != version:
        history = [pointer.entry(), *pointer.history] if pointer else []
        new = Pointer(
            model_name=name,
            model_version=version,
            model_uri=model_uri,
            manifest_uri=manifest_uri,
            sha256=sha,
            lambda_version=lambda_version,
            history=history,
        )
        try:
            write_pointer(store, new)
        except Exception:
            # The alias moved but the record did not: put the previous model back.
            if previous is not None:
                serving.route(previous)
            raise
    return {
        "model_version": version,
        "lambda_version": lambda_version,
        "model_uri": model_uri,
        "sha256": sha,
        "previous_lambda_version": previous,
    }


def rollback(
    store: ObjectStore, serving: ServingTarget, model_name: str, to_version: str | None = None
) -> dict[str, Any]:
    """Move ``live`` back to the previous production version (or ``to_version``) and
    its pointer. Returns ``{"from", "to", "lambda_version"}``."""
    pointer = read_pointer(store, model_name)
    if pointer is None:
        raise StepError(f"{model_name} has no production model to roll back")
    if not pointer.history:
        raise StepError(f"{model_name} {pointer.model_version} has no previous version")
    index = 0
    if to_version is not None:
        versions = [entry.get("model_version") for entry in pointer.history]
        if to_version not in versions:
            known = ", ".join(str(v) for v in versions)
            raise StepError(
                f"{to_version} is not a previous version of {model_name} (previous: {known})"
            )
        index = versions.index(to_version)
    target = Pointer.model_validate(
        {**pointer.history[index], "history": pointer.history[index + 1 :]}
    )
    uri, sha = serving.model_of(target.lambda_version)
    if sha != target.sha256:
        raise StepError(
            f"function version {target.lambda_version} serves sha256 {sha[:12]}, "
            f"not {target.model_version}'s {target.sha256[:12]}"
        )
    serving.route(target.lambda_version)
    try:
        write_pointer(store, target)
    except Exception:
        serving.route(pointer.lambda_version)
        raise
    return {
        "from": pointer.model_version,
        "to": target.model_version,
        "lambda_version": target.lambda_version,
        "model_uri": uri,
    }
