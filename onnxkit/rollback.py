"""Roll back: move ``live`` to the model that was live before the current one, and its pointer.

Only ``onnxkit rollback`` does this (locally over a work directory, or on a deployed
environment), so it lives in the shell rather than in the pipeline's Lambda bundle. It is built
from the promotion's own steps (:func:`~functions.pipeline.promote.reconcile`, then the same
intent, alias and pointer commit), so a crash mid-way resolves as a promotion's would.
"""

from __future__ import annotations

from typing import Any

from functions.pipeline.ports import ObjectStore, ServingTarget, StepError
from functions.pipeline.promote import commit, reconcile
from onnxkit.contract.pointer import Pointer


def rollback(
    store: ObjectStore, serving: ServingTarget, model_name: str, to_version: str | None = None
) -> dict[str, Any]:
    """Move ``live`` back to the model live before the current one (or ``to_version``) and
    its pointer. Returns ``{"from", "to", "lambda_version", "model_uri", "note"}``."""
    live = reconcile(store, serving, model_name)
    pointer = live.pointer
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
    target = Pointer.of({**pointer.history[index], "history": pointer.history[index + 1 :]})
    uri, sha = serving.model_of(target.lambda_version)
    if sha != target.sha256:
        raise StepError(
            f"function version {target.lambda_version} serves sha256 {sha[:12]}, "
            f"not {target.model_version}'s {target.sha256[:12]}"
        )
    commit(store, serving, live, target, "rollback")
    return {
        "from": pointer.model_version,
        "to": target.model_version,
        "lambda_version": target.lambda_version,
        "model_uri": uri,
        "note": live.note(),
    }
