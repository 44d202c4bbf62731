"""Serve the production model of a work directory (``onnxkit run --serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from functions.pipeline.local import LocalServing, LocalStore, workdir_lock
from functions.pipeline.ports import Pointer, StepError, pointer_key
from functions.pipeline.promote import reconcile, resolve
from onnxkit.cloud.errors import CloudError

if TYPE_CHECKING:
    from rich.console import Console


def live_pointer(workdir: Path, model_name: str, *, record: bool = False) -> Pointer:
    """The live model of a work directory (what ``live`` serves, docs/CONTRACTS.md); with
    ``record``, a production pointer left behind by an interrupted promotion is rewritten."""
    store, serving = LocalStore(workdir), LocalServing(workdir)
    try:
        if record:
            with workdir_lock(workdir):
                live = reconcile(store, serving, model_name)
        else:
            live = resolve(store, serving, model_name)
    except StepError as error:
        raise CloudError(str(error)) from None
    if live.pointer is None:
        raise CloudError(f"{model_name} has no production model in {workdir}")
    return live.pointer


def production_model_dir(workdir: Path, model_name: str) -> Path:
    """The immutable folder (model.onnx, manifest.json) of the live model."""
    return LocalStore(workdir).path(live_pointer(workdir, model_name).model_uri).parent


def serve_production(console: Console, workdir: Path, model_name: str, port: int) -> None:
    """Serve the production model with ``onnxkit serve`` until interrupted."""
    pointer = live_pointer(workdir, model_name, record=True)
    try:
        from onnxkit.commands.serve import serve  # noqa: PLC0415 - loads onnxruntime
    except ImportError:
        raise CloudError("onnxkit serve is not installed; cannot --serve") from None
    console.print(f"serving {model_name} {pointer.model_version}", highlight=False)
    # The pointer pins the model's and the manifest's digests; its paths are the workdir's.
    serve(model=str(LocalStore(workdir).path(pointer_key(model_name))), port=port)
