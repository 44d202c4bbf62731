"""``onnxkit models``: the registry's versions, their metrics and top features, and which one is
live; on a deployed environment (``--env``) or in a local work directory (``--workdir``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import orjson
import typer

from onnxkit.cli import present
from onnxkit.cloud import registry
from onnxkit.contract.pointer import Pointer
from onnxkit.errors import KitError


def _local(workdir: Path) -> tuple[list[registry.Version], dict[str, Pointer], list[str]]:
    """The work directory's registry as versions (newest first) and what live serves."""
    from onnxkit.local.store import LocalRegistry, LocalServing, LocalStore  # noqa: PLC0415

    if not workdir.is_dir():
        raise KitError(f"{workdir} is not a work directory")
    local = LocalRegistry(workdir)
    names = sorted(p.name for p in local.root.glob("*") if p.is_dir())
    versions = [registry.local_version(r) for name in names for r in local.versions(name)]
    versions.sort(key=lambda v: v.created, reverse=True)
    pointers, notes = registry.resolve_pointers(LocalStore(workdir), LocalServing(workdir), names)
    return versions, pointers, notes


def models(
    env: Annotated[str | None, typer.Option(help="Deployed environment name.")] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="Local work directory (`onnxkit run --workdir`).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    limit: Annotated[int, typer.Option(help="Show at most this many versions.")] = 20,
    region: Annotated[str | None, typer.Option(help="AWS region (--env).")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile (--env).")] = None,
) -> None:
    """List registered model versions with their metrics; the live one is marked."""
    if (env is None) == (workdir is None):
        raise KitError("give --env ENV (deployed) or --workdir DIR (local), one of them")
    if workdir is not None:
        versions, pointers, notes = _local(workdir)
        title, empty = str(workdir), f"no registered versions in {workdir} yet: run `onnxkit run`"
    else:
        from onnxkit.cloud.discovery import discover  # noqa: PLC0415

        assert env is not None
        kit = discover(env, ("Artifacts",), region=region, profile=profile)
        versions = registry.list_versions(kit.client("sagemaker"), kit.model_package_group)
        pointers, notes = registry.current_pointers(kit)
        title = f"{kit.model_package_group} ({kit.region})"
        empty = (
            f"no registered versions in {kit.model_package_group} yet: run "
            f"`onnxkit train --env {env}`"
        )
    registry.mark_live(versions, pointers)
    shown = versions[: max(limit, 0)]
    if as_json:
        typer.echo(orjson.dumps([asdict(v) for v in shown], option=orjson.OPT_INDENT_2))
        return
    if not versions:
        present.console().print(empty, highlight=False)
        return
    present.print_models(title, versions, shown, pointers, notes)
