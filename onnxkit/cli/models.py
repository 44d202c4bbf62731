"""``onnxkit models``: the registry's versions, their metrics, and which one is live."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import orjson
import typer

from onnxkit.cli import present
from onnxkit.cloud import registry
from onnxkit.cloud.discovery import DiscoveryError, discover
from onnxkit.contract.layout import FUNCTION_NAME_OUTPUT


def models(
    env: Annotated[str, typer.Option(help="Deployed environment name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    limit: Annotated[int, typer.Option(help="Show at most this many versions.")] = 20,
    region: Annotated[str | None, typer.Option(help="AWS region.")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile.")] = None,
) -> None:
    """List registered model versions with their metrics; the live one is marked."""
    kit = discover(env, ("Artifacts",), region=region, profile=profile)
    versions = registry.list_versions(kit.client("sagemaker"), kit.model_package_group)
    notes: list[str] = []
    try:
        serving = discover(env, ("Serving",), session=kit.session)
        function = serving.get(FUNCTION_NAME_OUTPUT)
    except DiscoveryError:
        # Without the Serving stack, the pointers alone say what is live.
        pointers = registry.production_pointers(kit.client("s3"), kit.bucket)
    else:
        # The live alias is the commit point: what it serves is live, whatever a pointer
        # left behind by an interrupted promotion says.
        pointers, notes = registry.live_pointers(
            kit.client("s3"), kit.bucket, serving.client("lambda"), function
        )
    registry.mark_live(versions, pointers)
    shown = versions[: max(limit, 0)]
    if as_json:
        typer.echo(orjson.dumps([asdict(v) for v in shown], option=orjson.OPT_INDENT_2))
        return
    if not versions:
        present.console().print(
            f"no registered versions in {kit.model_package_group} yet: run "
            f"`onnxkit train --env {env}`",
            highlight=False,
        )
        return
    title = f"{kit.model_package_group} ({kit.region})"
    present.print_models(title, versions, shown, pointers, notes)
