"""``onnxkit rollback``: move ``live`` back to the previous model and production pointer.

Locally (``--workdir``) or on a deployed environment (``--env``), with the same step code the
pipeline promotes with. ``--to VERSION`` picks an older production version.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from onnxkit.cloud.errors import CloudError, cli_errors


def _pick_model(names: list[str], given: str | None, where: str) -> str:
    if given:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", given):
            raise CloudError(f"invalid --name {given!r}")
        return given
    if len(names) == 1:
        return names[0]
    if not names:
        raise CloudError(f"no model has been promoted in {where}")
    raise CloudError(f"{where} has several models ({', '.join(names)}); pass --name")


def _local(workdir: Path, name: str | None, to: str | None) -> dict[str, Any]:
    from functions.pipeline.local import LocalServing, LocalStore, workdir_lock  # noqa: PLC0415
    from functions.pipeline.promote import rollback as rollback_step  # noqa: PLC0415

    if not workdir.is_dir():
        raise CloudError(f"{workdir} is not a work directory")
    models = workdir / "models"
    # promotion.json too: a first promotion killed before its pointer was written is live.
    records = [*models.glob("*/production.json"), *models.glob("*/promotion.json")]
    names = sorted({p.parent.name for p in records})
    model = _pick_model(names, name, str(workdir))
    with workdir_lock(workdir):
        return rollback_step(LocalStore(workdir), LocalServing(workdir), model, to)


def _cloud(
    env: str, name: str | None, to: str | None, region: str | None, profile: str | None
) -> dict[str, Any]:
    from functions.pipeline.aws import LambdaServing, S3Store  # noqa: PLC0415
    from functions.pipeline.promote import rollback as rollback_step  # noqa: PLC0415
    from onnxkit.cloud.discovery import discover  # noqa: PLC0415

    kit = discover(env, ("Artifacts", "Serving"), region=region, profile=profile)
    s3 = kit.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=kit.bucket, Prefix="models/", Delimiter="/"
    )
    names = sorted(
        p["Prefix"].split("/")[1] for page in pages for p in page.get("CommonPrefixes", [])
    )
    model = _pick_model(names, name, f"s3://{kit.bucket}/models/")
    serving = LambdaServing(kit.client("lambda"), kit.get("FunctionName"))
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
    with cli_errors():
        from rich.console import Console  # noqa: PLC0415

        from functions.pipeline.ports import StepError  # noqa: PLC0415

        if workdir is not None and env is not None:
            raise CloudError("give --workdir DIR (local) or --env ENV (deployed), not both")
        if workdir is None and env is None:
            raise CloudError("give --workdir DIR (local) or --env ENV (deployed)")
        try:
            if workdir is not None:
                result = _local(workdir, name, to)
            else:
                assert env is not None
                result = _cloud(env, name, to, region, profile)
        except StepError as error:
            raise CloudError(str(error)) from None
        console = Console()
        if result.get("note"):
            console.print(f"note: {result['note']}", highlight=False)
        console.print(
            f"[green]rolled back[/] {result['from']} -> {result['to']} "
            f"(live = version {result['lambda_version']})",
            highlight=False,
        )
