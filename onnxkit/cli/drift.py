"""``onnxkit drift``: captured requests against a model's reference statistics, here
(``--model`` and ``--capture``) or as the deployed kit's scheduled check found them (``--env``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onnxkit.cli import present
from onnxkit.cli.options import local_config
from onnxkit.errors import KitError

DRIFTED_EXIT = 3


def drift(
    model: Annotated[
        str | None,
        typer.Option(
            help="A model folder, model.onnx, model.tar.gz, production pointer or s3:// uri "
            "(its reference.json holds the training statistics)."
        ),
    ] = None,
    capture: Annotated[
        Path | None,
        typer.Option(help="A capture folder (`onnxkit serve --capture DIR`) or one .jsonl file."),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(help="Show the deployed environment's scheduled drift check instead."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="With --env: every check since a time (2026-12-01, 2026-12-01T06:00, UTC) or "
            "an age (12h, 7d), instead of the latest."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", help="Config override, e.g. drift.psi=0.25 (repeatable)."),
    ] = None,
    region: Annotated[str | None, typer.Option(help="With --env: AWS region.")] = None,
    profile: Annotated[str | None, typer.Option(help="With --env: AWS profile.")] = None,
) -> None:
    """Compare captured requests with the model's training data; exit 3 when something drifted.

    Per feature: the population stability index over the training quantile bins or categories,
    the change of its missing share and, for categories, the share never seen in training; and
    the shift of the predictions. Here (--model, --capture) the thresholds are the `drift`
    settings of the local config; with --env the deployed kit's scheduled check already ran
    with its own, and its latest report (or every one --since a time) is shown.
    Exit 0 when nothing drifted, 3 when something did, 1 on bad input or no report.
    """
    if env is not None:
        given = [name for name, value in (("--model", model), ("--capture", capture)) if value]
        if given or setting:
            raise KitError(
                f"{', '.join(given) or '--set'}: for a local comparison only, not with --env"
            )
        _cloud(env, since, as_json, region, profile)
        return
    if model is None or capture is None:
        raise KitError("pass --model and --capture (compare here) or --env (the cloud's check)")
    if since is not None:
        raise KitError("--since reads the cloud's reports: pass --env")
    from onnxkit.local.drift import drift_report  # noqa: PLC0415 - loads numpy

    thresholds = local_config(setting).drift.thresholds()
    report = drift_report(model, capture, thresholds)
    if as_json:
        from onnxkit.contract.drift import encode_report  # noqa: PLC0415

        typer.echo(encode_report(report).decode(), nl=False)
    else:
        present.print_drift(report)
    if report.any_drift:
        raise typer.Exit(DRIFTED_EXIT)


def _cloud(
    env: str, since: str | None, as_json: bool, region: str | None, profile: str | None
) -> None:
    import msgspec  # noqa: PLC0415

    from onnxkit.cloud.discovery import discover  # noqa: PLC0415 - loads boto3
    from onnxkit.cloud.drift import (  # noqa: PLC0415
        checks_since,
        latest_check,
        parse_since,
        reports_location,
    )

    start = parse_since(since) if since is not None else None
    kit = discover(env, ("Serving",), region=region, profile=profile)
    bucket, _ = reports_location(kit)
    s3 = kit.client("s3")
    checks = [latest_check(s3, bucket)] if start is None else checks_since(s3, bucket, start)
    if as_json:
        shown = checks[0] if start is None else checks
        typer.echo(msgspec.json.format(msgspec.json.encode(shown), indent=2).decode())
    else:
        for check in checks:
            present.print_drift_check(check)
    if any(check.any_drift for check in checks):
        raise typer.Exit(DRIFTED_EXIT)
