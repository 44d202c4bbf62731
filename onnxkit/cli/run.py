"""``onnxkit run``: the training workflow on this machine, with nothing from AWS.

Train (training_jobs/train.py as a SageMaker-like job), evaluate, gate, register and promote
with the cloud's step code over a work directory. Exit codes: 0 promoted, 3 rejected by the
gate, 1 failed (with the readable reason).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onnxkit.cli import present
from onnxkit.cli.options import local_config, pairs
from onnxkit.config import RESERVED_HYPERPARAMETERS
from onnxkit.contract.layout import model_name_problem
from onnxkit.datasets import bundled
from onnxkit.errors import KitError
from onnxkit.local.runner import RunRequest, model_name_for, run_workflow
from onnxkit.local.serving import production_pointer

DEFAULT_WORKDIR = Path("onnxkit-work")
DEFAULT_DATASET = "breast_cancer"


def run(
    data: Annotated[Path | None, typer.Option(help="Training CSV (or a folder of CSVs).")] = None,
    dataset: Annotated[
        str | None, typer.Option(help=f"A bundled dataset (default {DEFAULT_DATASET}).")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Label column.")] = None,
    model: Annotated[str | None, typer.Option(help="Estimator (train.py's --model).")] = None,
    name: Annotated[
        str | None, typer.Option(help="Model name (default: from the dataset or CSV name).")
    ] = None,
    validation: Annotated[Path | None, typer.Option(help="Validation CSV.")] = None,
    workdir: Annotated[Path, typer.Option(help="Work directory.")] = DEFAULT_WORKDIR,
    hp: Annotated[
        list[str] | None, typer.Option("--hp", help="Hyperparameter name=value (repeatable).")
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", help="Config override, e.g. gate.min_accuracy=0.9 (repeatable)."),
    ] = None,
    serve: Annotated[bool, typer.Option(help="Serve the promoted model afterwards.")] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8080,
) -> None:
    """Train, evaluate, gate, register and promote a model on this machine."""
    if data is not None and dataset is not None:
        raise KitError("give --data or --dataset, not both")
    hyperparameters = pairs(hp, "--hp")
    reserved = sorted(set(hyperparameters) & RESERVED_HYPERPARAMETERS)
    if reserved:
        raise KitError(f"hyperparameter {reserved[0]} is set by the pipeline (use --name)")
    config = local_config(setting)
    if data is None:
        try:
            bundle = bundled(dataset or DEFAULT_DATASET)
        except ValueError as error:
            raise KitError(str(error)) from None
        train, source = bundle.path, bundle.name
        target = target or bundle.target
    else:
        if not data.exists():
            raise KitError(f"{data} does not exist")
        train, source = data, data.stem
    target = target or config.training.target
    if not target:
        raise KitError("which column is the label? pass --target")
    if validation is not None and not validation.exists():
        raise KitError(f"{validation} does not exist")
    hyperparameters["target"] = target
    if model:
        hyperparameters["model"] = model
    model_name = name or model_name_for(source)
    problem = model_name_problem(model_name)
    if problem:
        raise KitError(f"invalid --name: {problem}")
    request = RunRequest(
        workdir=workdir,
        train=train,
        validation=validation,
        config=config,
        model_name=model_name,
        hyperparameters=hyperparameters,
    )
    console = present.console()
    progress = present.RunProgress(console)
    try:
        result = run_workflow(request, on_event=progress)
    finally:  # Ctrl-C or SIGTERM: the spinner's thread must not outlive the command
        progress.close()
    console.print()
    present.print_run_summary(console, result, workdir)
    if result.exit_code != 0:
        raise typer.Exit(result.exit_code)
    if serve:
        _serve(workdir, request.model_name, port)


def _serve(workdir: Path, model_name: str, port: int) -> None:
    """Serve the production model of the work directory until interrupted."""
    # Only --serve loads the server (uvicorn, and onnxruntime once it serves).
    from onnxkit.cli.serve import serve_model  # noqa: PLC0415

    pointer, path = production_pointer(workdir, model_name)
    present.console().print(f"serving {model_name} {pointer.model_version}", highlight=False)
    serve_model(str(path), port=port)
