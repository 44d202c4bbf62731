"""``onnxkit serve``: the inference Lambda handler on this machine, over HTTP."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from onnxkit.cli import present
from onnxkit.local.gateway import ServeError
from onnxkit.local.serving import run_server


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
    capture: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            help="Write every scored row of POST /predict to this folder as JSON Lines capture "
            "records (what `onnxkit drift --capture` reads); files rotate by size and age.",
        ),
    ] = None,
) -> None:
    """Serve a model with the same handler as the Lambda function: POST /predict, POST /explain,
    GET /model, GET /health, GET /openapi.json."""
    serve_model(model, host=host, port=port, api_key=api_key, sha256=sha256, capture=capture)


def serve_model(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int,
    api_key: str | None = None,
    sha256: str | None = None,
    capture: Path | None = None,
) -> None:
    """Serve ``model`` in the foreground until Ctrl-C or SIGTERM (``serve``, ``run --serve``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        run_server(
            model,
            host=host,
            port=port,
            api_key=api_key,
            sha256=sha256,
            on_start=lambda server: present.serving_started(server, api_key, capture),
            capture=capture,
            on_stop=present.serving_stopped,
        )
    except ServeError as error:
        present.serving_failed(error)
        raise typer.Exit(1) from None
