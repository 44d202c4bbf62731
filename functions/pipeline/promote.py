"""Promote and roll back: move the ``live`` alias to a model, and back.

The ``live`` alias is the single commit point: whatever it serves is the live model. The
production pointer records it, and a write-ahead record (``promotion.json``, an
:class:`~.ports.Intent`) written just before the alias moves says which pointer holds once it
has. A crash between any two writes therefore leaves a state :func:`resolve` reads as one live
model, and :func:`reconcile` (run first by every promotion and rollback) rewrites a pointer
that fell behind. Promotion runs in this order, each step idempotent:

1. ``verify``    - re-read the artifact and check every digest against the manifest and the
   evaluated candidate (a tampered artifact is refused);
2. ``store``     - copy model.onnx (and its companion files), then manifest.json, to the
   immutable ``models/<name>/<version>/`` (an existing copy is reused only when its digest
   matches);
3. ``reconcile`` - finish the record of an interrupted promotion or rollback; then refuse a
   candidate the gate compared with another model than the live one (another promotion or a
   rollback came between, or a promotion died after moving the alias), and keep the gate's
   ``evaluation.json`` beside the version;
4. ``publish``   - configure the function's ``MODEL_URI``/``MODEL_SHA256``/
   ``MODEL_MANIFEST_SHA256`` and publish a version (one already published is reused);
5. ``approve``   - approve the registered version (the local registry; in the cloud the
   Register state creates the model package already approved);
6. ``shift``     - optional: send a share of traffic to the new version and watch the alarm,
   moving everything back on alarm;
7. ``intent``    - write the promotion record (the pointer to come);
8. ``alias``     - point ``live`` at the new version: the commit;
9. ``pointer``   - record the production pointer; if that fails, ``live`` is moved back.

The states a crash can leave, and how they resolve, are in docs/CONTRACTS.md.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from onnxkit.contract.card import EvaluationError, dump_evaluation, evaluation_record
from onnxkit.contract.layout import (
    COMPANION_FILES,
    EVALUATION_FILE,
    MANIFEST_FILE,
    SERVING_FILE,
    version_prefix,
)

from .evaluate import digest_problems, read_artifact
from .ports import (
    Intent,
    ObjectStore,
    Pointer,
    Registry,
    ServingTarget,
    StepError,
    TamperedArtifactError,
    read_intent,
    read_pointer,
    write_intent,
    write_pointer,
)

PROMOTION_STEPS = (
    "verify",
    "store",
    "reconcile",
    "publish",
    "approve",
    "shift",
    "intent",
    "alias",
    "pointer",
)


class RolledBackError(StepError):
    """The gradual shift saw the alarm and moved all traffic back to the previous version."""


class StaleEvaluationError(StepError):
    """Live changed after Evaluate compared the candidate with it (another promotion, a
    rollback, or a promotion that died after moving the alias): the gate judged the candidate
    against a model that no longer serves, so its verdict does not hold."""


def check_evaluated_against(live_version: str | None, evaluation: dict[str, Any]) -> None:
    """Refuse a promotion whose evaluation compared the candidate with another model than
    ``live_version``, the one it would replace."""
    production = evaluation.get("production")
    evaluated = production.get("model_version") if isinstance(production, dict) else None
    if evaluated != live_version:
        raise StaleEvaluationError(
            f"live serves {live_version or 'no model'}, but Evaluate compared the candidate with "
            f"{evaluated or 'no production model'}: run the pipeline again to gate it against "
            "the live model"
        )


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


def _store_evaluation(
    store: ObjectStore, key: str, evaluation: dict[str, Any], candidate: dict[str, Any]
) -> None:
    """Keep the gate's record of this version; the first one stays (a retried promotion
    carries the same record, and a version is evaluated once)."""
    try:
        record = evaluation_record(evaluation)
    except EvaluationError as error:
        raise StepError(f"bad Promote event: {error}") from None
    if (record.candidate.model_version, record.candidate.sha256) != (
        candidate["model_version"],
        candidate["sha256"],
    ):
        raise StepError("bad Promote event: the evaluation is of another candidate")
    if store.head(key) is None:
        store.put(key, dump_evaluation(record), "application/json")


@dataclass(frozen=True)
class Live:
    """What ``live`` serves, as a production pointer, and how the stored records relate to it.

    ``state``: ``none`` (nothing promoted), ``consistent``, ``abandoned`` (a promotion or
    rollback stopped before the alias moved: the pointer is right), ``committed`` (the alias
    moved but the pointer was not written: it is behind) or ``drift`` (the alias was moved
    outside onnxkit; the pointer is rebuilt from it)."""

    pointer: Pointer | None
    stored: Pointer | None
    alias: str | None
    weights: dict[str, float] = field(default_factory=dict)
    state: str = "consistent"

    @property
    def stale(self) -> bool:
        """True when the stored pointer does not record the live model."""
        return self.state in {"committed", "drift"}

    def note(self) -> str:
        """One line on an interrupted promotion or rollback, or ""."""
        if not self.stale or self.pointer is None:
            return ""
        was = self.stored.model_version if self.stored else "nothing"
        why = "an interrupted promotion or rollback" if self.state == "committed" else "drift"
        return (
            f"live served {self.pointer.model_version} while the production pointer named "
            f"{was} ({why}); the pointer now records {self.pointer.model_version}"
        )


def _same(pointer: Pointer | None, other: Pointer) -> bool:
    return pointer is not None and (pointer.lambda_version, pointer.model_version) == (
        other.lambda_version,
        other.model_version,
    )


def _version_of(uri: str, model_name: str) -> str | None:
    """The model version in a ``.../models/<name>/<version>/model.onnx`` uri."""
    parts = urlsplit(uri).path.split("/")
    for index in range(len(parts) - 3):
        if parts[index : index + 2] == ["models", model_name] and parts[index + 3] == SERVING_FILE:
            return parts[index + 2]
    return None


def _serves(serving: ServingTarget, version: str, model_name: str) -> bool:
    """True when a function version serves a promoted model of ``model_name``."""
    return _version_of(serving.model_of(version)[0], model_name) is not None


def _derive(
    store: ObjectStore, serving: ServingTarget, name: str, alias: str, stored: Pointer | None
) -> Pointer:
    """The pointer of what ``alias`` serves: popped to it when it is in the history (a rollback),
    pushed on top otherwise (a promotion)."""
    uri, sha = serving.model_of(alias)
    version = _version_of(uri, name)
    if version is None:
        raise StepError(
            f"live serves function version {alias} with {uri}, which is not a promoted model "
            f"of {name}; point live at a promoted version (onnxkit rollback --to)"
        )
    key = f"{version_prefix(name, version)}{MANIFEST_FILE}"
    manifest = store.get(key)
    history = stored.history if stored else []
    below = [entry.get("lambda_version") for entry in history]
    if alias in below:
        history = history[below.index(alias) + 1 :]
    elif stored is not None:
        history = [stored.entry(), *history]
    return Pointer(
        model_name=name,
        model_version=version,
        model_uri=uri,
        manifest_uri=store.uri(key, store.head(key) or None),
        sha256=sha,
        manifest_sha256=hashlib.sha256(manifest).hexdigest() if manifest is not None else None,
        lambda_version=alias,
        history=history,
    )


def resolve(store: ObjectStore, serving: ServingTarget, model_name: str) -> Live:
    """The one live model of ``model_name`` and the state of its records; reads only."""
    stored = read_pointer(store, model_name)
    intent = read_intent(store, model_name)
    alias, weights = serving.live()
    state = "consistent"
    if intent is not None and not _same(stored, intent.target):
        if alias == intent.target.lambda_version:
            return Live(intent.target, stored, alias, weights, "committed")
        state = "abandoned"
    # A version with no model of its own serves the pointer's; one serving another model's
    # file (the local work directory's one function serves every model name) says nothing about
    # this model: in both cases the pointer is the record.
    if alias is None or serving.follows_pointer(alias) or not _serves(serving, alias, model_name):
        return Live(stored, stored, alias, weights, state if stored else "none")
    if stored is not None and alias == stored.lambda_version:
        return Live(stored, stored, alias, weights, state)
    return Live(_derive(store, serving, model_name, alias, stored), stored, alias, weights, "drift")


def reconcile(store: ObjectStore, serving: ServingTarget, model_name: str) -> Live:
    """:func:`resolve`, then make the records say so: rewrite a pointer that fell behind and
    end a traffic split an interrupted shift left. Run it where one writer at a time runs."""
    live = resolve(store, serving, model_name)
    if live.stale and live.pointer is not None:
        write_pointer(store, live.pointer)
    if live.weights and live.alias is not None:
        serving.route(live.alias)
    return live


def commit(
    store: ObjectStore, serving: ServingTarget, live: Live, target: Pointer, action: str
) -> None:
    """Intent, alias, pointer; a failed pointer write moves ``live`` back."""
    write_intent(store, Intent(action=action, from_lambda_version=live.alias, target=target))
    serving.route(target.lambda_version)
    try:
        write_pointer(store, target)
    except Exception:
        # The alias moved but the record did not: put the previous model back. Should that fail
        # too, the intent makes the next reader see the new model as live, as it is.
        if live.alias is not None:
            with suppress(Exception):
                serving.route(live.alias)
        raise


def promote(
    store: ObjectStore,
    serving: ServingTarget,
    registry: Registry | None,
    candidate: dict[str, Any],
    model_package_id: str,
    *,
    shift: Shift | None = None,
    evaluation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Promote step; returns ``{"model_version", "lambda_version", "model_uri",
    "sha256", "previous_lambda_version"}``. ``evaluation`` (Evaluate's result) is kept beside
    the version as ``evaluation.json``: what the gate compared the candidate with."""
    # 1. verify
    with store.open_uri(candidate["artifact_uri"]) as stream:
        artifact = read_artifact(stream, keep={SERVING_FILE, *COMPANION_FILES})
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
    manifest_sha = hashlib.sha256(artifact.manifest_bytes).hexdigest()

    # 2. store: the model first, the manifest last, so a manifest means a complete version.
    prefix = version_prefix(name, version)
    model_uri = _store_immutable(
        store, prefix + SERVING_FILE, model_bytes, "application/octet-stream"
    )
    for companion in COMPANION_FILES:  # each absent in artifacts from before it
        if companion in artifact.files:
            _store_immutable(
                store, prefix + companion, artifact.files[companion], "application/json"
            )
    manifest_uri = _store_immutable(
        store, prefix + MANIFEST_FILE, artifact.manifest_bytes, "application/json"
    )

    # 3. reconcile (and check the gate judged the candidate against what it replaces), 4. publish
    live = reconcile(store, serving, name)
    current = live.pointer
    done = current is not None and current.model_version == version
    if evaluation is not None:
        if not done:
            check_evaluated_against(current.model_version if current else None, evaluation)
        # Only a verdict that holds is kept: a refused one would outlive the re-evaluation.
        _store_evaluation(store, prefix + EVALUATION_FILE, evaluation, candidate)
    if current is None:
        previous = live.alias
    elif not done:
        previous = current.lambda_version
    else:  # a retry after the promotion committed: report what it replaced
        previous = current.history[0]["lambda_version"] if current.history else None
    lambda_version = serving.find_version(model_uri, sha, manifest_sha) or serving.publish(
        model_uri, sha, manifest_sha, f"{name} {version}"
    )

    # 5. approve (in the cloud, Register already created the package approved)
    if registry is not None:
        registry.approve(model_package_id)

    if not done:
        # 6. shift
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
                serving.route(live.alias or previous)
                raise
        # 7. intent, 8. alias, 9. pointer
        target = Pointer(
            model_name=name,
            model_version=version,
            model_uri=model_uri,
            manifest_uri=manifest_uri,
            sha256=sha,
            manifest_sha256=manifest_sha,
            lambda_version=lambda_version,
            history=[current.entry(), *current.history] if current else [],
        )
        commit(store, serving, live, target, "promote")
    return {
        "model_version": version,
        "lambda_version": lambda_version,
        "model_uri": model_uri,
        "sha256": sha,
        "previous_lambda_version": previous,
    }
