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
    """Serve the production model on localhost until interrupted."""
    model_dir = production_model_dir(workdir, model_name)
    raise CloudError(f"no local server is installed to serve {model_dir} on port {port}")
