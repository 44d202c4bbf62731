"""``onnxkit card``: a model card from a model's manifest, reference statistics and gate record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from onnxkit.cli.options import local_config, pick_model
from onnxkit.errors import KitError

if TYPE_CHECKING:
    from onnxkit.local.drift import ModelFiles


def _live(env: str, name: str | None, region: str | None, profile: str | None) -> ModelFiles:
    """The files of the model a deployed environment serves, checked against the digests its
    production pointer pins."""
    from onnxkit.cloud import registry  # noqa: PLC0415 - boto only for --env
    from onnxkit.cloud.discovery import discover  # noqa: PLC0415
    from onnxkit.local.drift import load_model_files  # noqa: PLC0415

    kit = discover(env, ("Artifacts",), region=region, profile=profile)
    pointers, _ = registry.current_pointers(kit)
    model = pick_model(sorted(pointers), name, f"the {env} environment (s3://{kit.bucket})")
    pointer = pointers.get(model)
    if pointer is None:
        raise KitError(f"{model} has no model in production in the {env} environment")
    return load_model_files(
        pointer.model_uri,
        s3_client=kit.client("s3"),
        expected_sha256=pointer.sha256,
        expected_manifest_sha256=pointer.manifest_sha256,
    )


def card(
    model: Annotated[
        str | None,
        typer.Option(
            help="A model folder, model.onnx, model.tar.gz, production pointer or s3:// uri."
        ),
    ] = None,
    env: Annotated[
        str | None, typer.Option(help="Deployed environment: the card of its live model.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Model name, with --env (when several are promoted).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the card as JSON.")] = False,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Config override, e.g. card.intended_use='Triage, not diagnosis' (repeatable).",
        ),
    ] = None,
    region: Annotated[str | None, typer.Option(help="AWS region (--env).")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile (--env).")] = None,
) -> None:
    """Render a model card: data, metrics against the baseline, quantization, importance, drift.

    Everything comes from what the training job recorded (the manifest and reference.json) and,
    for a promoted version, the quality gate's record beside it (evaluation.json: production's
    metrics when it was gated); the intended use and limitations are the `card` settings of the
    local config. `--env` describes the live model of a deployed environment, its files checked
    against the digests of the production pointer. Markdown on stdout, JSON with --json; exit 1
    on a missing or unreadable model.
    """
    from onnxkit.local.card import build_card, render_markdown  # noqa: PLC0415
    from onnxkit.local.drift import load_model_files  # noqa: PLC0415 - loads the model source

    if (model is None) == (env is None):
        raise KitError("give --model PATH_OR_URI or --env ENV (its live model), one of them")
    if name is not None and env is None:
        raise KitError("--name goes with --env")
    settings = local_config(setting).card
    if model is not None:
        found = load_model_files(model)
    else:
        found = _live(env or "", name, region, profile)
    content = build_card(
        found.manifest,
        found.reference,
        intended_use=settings.intended_use,
        limitations=settings.limitations,
        evaluation=found.evaluation,
    )
    if as_json:
        typer.echo(orjson.dumps(content, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(render_markdown(content), nl=False)
