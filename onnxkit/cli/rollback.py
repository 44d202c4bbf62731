"""``onnxkit rollback``: move ``live`` back to the previous model and production pointer.

Locally (``--workdir``) or on a deployed environment (``--env``), with the same step
(:func:`onnxkit.rollback.rollback`) over the work directory's or the cloud's ports.
``--to VERSION`` picks an older production version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from functions.pipeline.ports import StepError
from onnxkit.cli import present
from onnxkit.cli.options import pick_model
from onnxkit.cloud.discovery import discover
from onnxkit.contract.layout import (
    FUNCTION_NAME_OUTPUT,
    INTENT_FILE,
    MODELS_PREFIX,
    POINTER_FILE,
)
from onnxkit.errors import KitError
from onnxkit.local.store import LocalServing, LocalStore, workdir_lock
from onnxkit.rollback import rollback as rollback_step


def _local(workdir: Path, name: str | None, to: str | None) -> dict[str, Any]:
    if not workdir.is_dir():
        raise KitError(f"{workdir} is not a work directory")
    models = workdir / MODELS_PREFIX
    # promotion.json too: a first promotion killed before its pointer was written is live.
    records = [*models.glob(f"*/{POINTER_FILE}"), *models.glob(f"*/{INTENT_FILE}")]
    names = sorted({p.parent.name for p in records})
    model = pick_model(names, name, str(workdir))
    with workdir_lock(workdir):
        return rollback_step(LocalStore(workdir), LocalServing(workdir), model, to)


def _cloud(
    env: str, name: str | None, to: str | None, region: str | None, profile: str | None
) -> dict[str, Any]:
    # boto only for --env: a local rollback never loads it.
    from functions.pipeline.aws import LambdaServing, S3Store  # noqa: PLC0415

    kit = discover(env, ("Artifacts", "Serving"), region=region, profile=profile)
    s3 = kit.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=kit.bucket, Prefix=MODELS_PREFIX, Delimiter="/"
    )
    names = sorted(
        p["Prefix"][len(MODELS_PREFIX) :].rstrip("/")
        for page in pages
        for p in page.get("CommonPrefixes", [])
    )
    model = pick_model(names, name, f"s3://{kit.bucket}/{MODELS_PREFIX}")
    serving = LambdaServing(kit.client("lambda"), kit.get(FUNCTION_NAME_OUTPUT))
    return rollback_step(S3Store(s3, kit.bucket), serving, model, to)


def rollback(
    workdir: Annotated[Path | None, typer.Option(help="Local work directory.")] = None,
    env: Annotated[str | None, typer.Option(help="Deployed environment name.")] = None,
    to: Annotated[str | None, typer.Option(help="Model version to go back to.")] = None,
    name: Annotated[str | None, typer.Option(help="Model name (when several).")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region (--env).")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile (--env).")] = None,
) -> None:
    """Serve the previous production model again (or the one --to names)."""
    if workdir is not None and env is not None:
        raise KitError("give --workdir DIR (local) or --env ENV (deployed), not both")
    try:
        if workdir is not None:
            result = _local(workdir, name, to)
        elif env is not None:
            result = _cloud(env, name, to, region, profile)
        else:
            raise KitError("give --workdir DIR (local) or --env ENV (deployed)")
    except StepError as error:
        raise KitError(str(error)) from None
    console = present.console()
    if result.get("note"):
        console.print(f"note: {result['note']}", highlight=False)
    console.print(
        f"[green]rolled back[/] {result['from']} -> {result['to']} "
        f"(live = version {result['lambda_version']})",
        highlight=False,
    )
