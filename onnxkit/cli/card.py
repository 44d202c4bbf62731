"""``onnxkit card``: a model card from a model's manifest and reference statistics."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

from onnxkit.cli.options import local_config


def card(
    model: Annotated[
        str,
        typer.Option(
            help="A model folder, model.onnx, model.tar.gz, production pointer or s3:// uri."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the card as JSON.")] = False,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Config override, e.g. card.intended_use='Triage, not diagnosis' (repeatable).",
        ),
    ] = None,
) -> None:
    """Render a model card: data, metrics against the baseline, quantization, importance, drift.

    Everything comes from what the training job recorded (the manifest and reference.json);
    the intended use and limitations are the `card` settings of the local config. Markdown on
    stdout, JSON with --json; exit 1 on a missing or unreadable model.
    """
    from onnxkit.local.card import build_card, render_markdown  # noqa: PLC0415
    from onnxkit.local.drift import load_model_files  # noqa: PLC0415 - loads the model source

    settings = local_config(setting).card
    found = load_model_files(model)
    content = build_card(
        found.manifest,
        found.reference,
        intended_use=settings.intended_use,
        limitations=settings.limitations,
    )
    if as_json:
        typer.echo(orjson.dumps(content, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(render_markdown(content), nl=False)
