"""Serve the production model of a work directory (``onnxkit run --serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from functions.pipeline.local import LocalStore, uri_to_path
from functions.pipeline.ports import read_pointer
from onnxkit.cloud.errors import CloudError

if TYPE_CHECKING:
    from rich.console import Console


def production_model_dir(workdir: Path, model_name: str) -> Path:
    """The immutable folder (model.onnx, manifest.json) the production pointer names."""
    pointer = read_pointer(LocalStore(workdir), model_name)
    if pointer is None:
        raise CloudError(f"{model_name} has no production model in {workdir}")
    return uri_to_path(pointer.model_uri).parent


def serve_production(console: Console, workdir: Path, model_name: str, port: int) -> None:
    """Serve the production model with ``onnxkit serve`` until interrupted."""
    pointer = read_pointer(LocalStore(workdir), model_name)
    if pointer is None:
        raise CloudError(f"{model_name} has no production model in {workdir}")
    try:
        from onnxkit.commands.serve import serve  # noqa: PLC0415 - loads onnxruntime
    except ImportError:
        raise CloudError("onnxkit serve is not installed; cannot --serve") from None
    console.print(f"serving {model_name} {pointer.model_version}", highlight=False)
    serve(model=str(uri_to_path(pointer.model_uri)), port=port, sha256=pointer.sha256)
