"""``onnxkit serve``: the inference Lambda handler on this machine, over HTTP."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True, highlight=False)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops as gracefully as Ctrl-C


def serve(
    *,
    model: Annotated[
        str,
        typer.Option(
            help="Model directory, model.onnx (manifest.json beside it), model.tar.gz, a "
            "production pointer .json, or s3://bucket/key[?versionId=...].",
        ),
    ],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8080,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="ONNXKIT_API_KEY",
            show_envvar=True,
            help="Require this x-api-key header (403 otherwise), as API Gateway would.",
        ),
    ] = None,
    sha256: Annotated[
        str | None,
        typer.Option(help="Expected model digest (default: the manifest's); refuse on mismatch."),
    ] = None,
) -> None:
    """Serve a model with the same handler as the Lambda function: POST /predict, GET /model,
    GET /health, GET /openapi.json."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    from onnxkit.server import ServeError, create_server, load_function  # noqa: PLC0415

    try:
        server = create_server(load_function(model, sha256), host, port, api_key or None)
    except ServeError as error:
        err.print(f"[red]error:[/red] {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    info = server.model
    err.print(
        f"serving {info.model_name} {info.model_version} at [bold]{server.url}[/bold] "
        f"({'x-api-key required' if api_key else 'no auth'}); Ctrl-C stops",
        soft_wrap=True,
    )
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
    err.print("stopping")
