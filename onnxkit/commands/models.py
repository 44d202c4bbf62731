"""``onnxkit models``: the registry's versions, their metrics, and which one is live."""

from __future__ import annotations

from typing import Annotated

import typer

from onnxkit.cloud.errors import cli_errors

# Shown first when present; any other metric is listed after them.
_PREFERRED = ("accuracy", "f1_macro", "roc_auc", "log_loss", "r2", "rmse", "mae")


def models(
    env: Annotated[str, typer.Option(help="Deployed environment name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    limit: Annotated[int, typer.Option(help="Show at most this many versions.")] = 20,
    region: Annotated[str | None, typer.Option(help="AWS region.")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile.")] = None,
) -> None:
    """List registered model versions with their metrics; the live one is marked."""
    with cli_errors():
        from dataclasses import asdict  # noqa: PLC0415

        import orjson  # noqa: PLC0415
        from rich.console import Console  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415

        from onnxkit.cloud import registry  # noqa: PLC0415
        from onnxkit.cloud.discovery import DiscoveryError, discover  # noqa: PLC0415

        kit = discover(env, ("Artifacts",), region=region, profile=profile)
        versions = registry.list_versions(kit.client("sagemaker"), kit.model_package_group)
        notes: list[str] = []
        try:
            serving = discover(env, ("Serving",), session=kit.session)
            function = serving.get("FunctionName")
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
        console = Console()
        if not versions:
            console.print(
                f"no registered versions in {kit.model_package_group} yet: run "
                f"`onnxkit train --env {env}`",
                highlight=False,
            )
            return
        names = {m for v in shown for m in v.metrics}
        metric_cols = [m for m in _PREFERRED if m in names] + sorted(names - set(_PREFERRED))
        table = Table(title=f"{kit.model_package_group} ({kit.region})", title_justify="left")
        for column in ("", "#", "model", "version", "status", "registered", *metric_cols):
            table.add_column(column, justify="right" if column in metric_cols else "left")
        for v in shown:
            table.add_row(
                "[green]live[/]" if v.live else "",
                str(v.package_version or ""),
                v.model_name,
                v.model_version,
                v.status,
                v.created[:16].replace("T", " "),
                *(f"{v.metrics[m]:.4g}" if m in v.metrics else "-" for m in metric_cols),
            )
        console.print(table)
        if not any(v.live for v in versions):
            console.print("no version is live yet (no production pointer)", highlight=False)
        for note in notes:
            console.print(f"note: {note}", highlight=False)
        for name, pointer in sorted(pointers.items()):
            console.print(
                f"live {name}: {pointer.get('model_version')} (Lambda version "
                f"{pointer.get('lambda_version')}, promoted "
                f"{pointer.get('promoted_at')})",
                highlight=False,
            )
