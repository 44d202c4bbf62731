"""Serve a work directory's production model on this machine (``onnxkit run --serve``,
``onnxkit demo``), and run a local server in the foreground (``onnxkit serve``)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from functions.pipeline.ports import Pointer, StepError
from functions.pipeline.promote import reconcile, resolve
from onnxkit.contract.layout import pointer_key
from onnxkit.errors import KitError
from onnxkit.local.store import LocalServing, LocalStore, workdir_lock

if TYPE_CHECKING:
    from onnxkit.local.capture import CaptureStats


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
        raise KitError(str(error)) from None
    if live.pointer is None:
        raise KitError(f"{model_name} has no production model in {workdir}")
    return live.pointer


def production_model_dir(workdir: Path, model_name: str) -> Path:
    """The immutable folder (model.onnx, manifest.json) of the live model."""
    return LocalStore(workdir).path(live_pointer(workdir, model_name).model_uri).parent


def production_pointer(workdir: Path, model_name: str) -> tuple[Pointer, Path]:
    """The live model's pointer, recorded (see :func:`live_pointer`), and the pointer file to
    serve: it pins the model's and the manifest's digests; its paths are the work directory's."""
    pointer = live_pointer(workdir, model_name, record=True)
    return pointer, LocalStore(workdir).path(pointer_key(model_name))


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops as gracefully as Ctrl-C


def run_server(
    model: str,
    *,
    host: str,
    port: int,
    api_key: str | None,
    sha256: str | None,
    on_start: Callable[[Any], None],
    capture: Path | None = None,
    on_stop: Callable[[CaptureStats | None], None] | None = None,
) -> None:
    """Serve ``model`` with the inference handler until SIGINT or SIGTERM; ``on_start`` gets
    the server (its ``url`` and ``model``) once it listens. ServeError when it cannot start.
    With ``capture``, every scored row is written there as a capture record, the last ones
    when the server stops; ``on_stop`` then gets what was written."""
    from onnxkit.local.capture import CaptureWriter  # noqa: PLC0415 - loads onnxruntime
    from onnxkit.local.gateway import create_server, load_function  # noqa: PLC0415 - loads onnxruntime

    writer = CaptureWriter(capture) if capture is not None else None
    try:
        server = create_server(
            load_function(model, sha256, capture=writer), host, port, api_key or None
        )
    except BaseException:
        if writer is not None:
            writer.close()
        raise
    on_start(server)
    # uvicorn catches SIGINT and SIGTERM while serving (a shell's background job inherits
    # SIGINT ignored: it still stops), finishes the requests in flight, then raises the
    # signal again: these handlers turn that into a clean exit.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        stats = None
        if writer is not None:
            # After the server: the requests in flight have finished and queued their rows. A
            # second Ctrl-C must not cut the last write short (SIGKILL still can).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            stats = writer.close()
    if on_stop is not None:
        on_stop(stats)
