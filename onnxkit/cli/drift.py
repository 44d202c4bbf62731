"""``onnxkit drift``: captured requests against a model's reference statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onnxkit.cli import present
from onnxkit.cli.options import local_config

DRIFTED_EXIT = 3


def drift(
    model: Annotated[
        str,
        typer.Option(
            help="A model folder, model.onnx, model.tar.gz, production pointer or s3:// uri "
            "(its reference.json holds the training statistics)."
        ),
    ],
    capture: Annotated[
        Path,
        typer.Option(help="A capture folder (`onnxkit serve --capture DIR`) or one .jsonl file."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", help="Config override, e.g. drift.psi=0.25 (repeatable)."),
    ] = None,
) -> None:
    """Compare captured requests with the model's training data; exit 3 when something drifted.

    Per feature: the population stability index over the training quantile bins or categories,
    the change of its missing share and, for categories, the share never seen in training; and
    the shift of the predictions. Thresholds are the `drift` settings of the local config.
    Exit 0 when nothing drifted, 3 when something did, 1 on bad input.
    """
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
