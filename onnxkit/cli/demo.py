"""``onnxkit demo``: the whole local workflow in one command (what ``make demo`` runs).

Train, quantize, evaluate, gate, register and promote a model from a bundled dataset, serve
it with the Lambda handler on 127.0.0.1, send one valid and one invalid prediction request,
print both exchanges, and stop the server.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from onnxkit.cli import present
from onnxkit.config import load_config
from onnxkit.datasets import bundled
from onnxkit.errors import KitError
from onnxkit.local.gateway import serving
from onnxkit.local.runner import RunRequest, model_name_for, run_workflow
from onnxkit.local.serving import production_model_dir

DEFAULT_WORKDIR = Path("onnxkit-work/demo")


def sample_requests(manifest: Any, rows: list[dict[str, str]]) -> list[tuple[str, dict[str, Any]]]:
    """A valid request (two rows keyed by feature name) and a bad one (text in a number)."""

    def typed(row: dict[str, str]) -> dict[str, Any]:
        instance: dict[str, Any] = {}
        for feature in manifest.signature.features:
            raw = row.get(feature.name, "")
            if raw == "":
                instance[feature.name] = None
            elif feature.kind == "numeric":
                instance[feature.name] = float(raw)
            else:
                instance[feature.name] = raw
        return instance

    valid = {"instances": [typed(row) for row in rows[:2]]}
    bad_instance = typed(rows[0])
    first_numeric = next(f.name for f in manifest.signature.features if f.kind == "numeric")
    bad_instance[first_numeric] = "twelve"
    return [("valid request", valid), ("bad request", {"instances": [bad_instance]})]


def _abridged(body: dict[str, Any], shown: int = 3) -> str:
    """A request body with each instance cut to its first features (the rest counted)."""
    instances = []
    for instance in body["instances"]:
        head = json.dumps(dict(list(instance.items())[:shown]))[:-1]
        instances.append(f"{head}, ...{len(instance) - shown} more features}}")
    return '{"instances": [' + ", ".join(instances) + "]}"


def demo(
    dataset: Annotated[str, typer.Option(help="Bundled dataset.")] = "breast_cancer",
    model: Annotated[str, typer.Option(help="Estimator.")] = "mlp",
    workdir: Annotated[
        Path, typer.Option(help="Work directory (emptied first).")
    ] = DEFAULT_WORKDIR,
) -> None:
    """Train, gate, promote, serve and call a model locally, end to end."""
    try:
        data = bundled(dataset)
    except ValueError as error:
        raise KitError(str(error)) from None
    if workdir.exists():
        shutil.rmtree(workdir)
    console = present.console()
    console.rule(f"1. onnxkit run: {model} on the bundled {dataset} dataset")
    request = RunRequest(
        workdir=workdir,
        train=data.path,
        model_name=model_name_for(dataset),
        hyperparameters={"target": data.target, "model": model},
        config=load_config("local"),
    )
    result = run_workflow(request, on_event=present.RunProgress(console))
    console.print()
    present.print_run_summary(console, result, workdir)
    if result.exit_code != 0 or result.manifest is None:
        raise typer.Exit(result.exit_code)

    model_dir = production_model_dir(workdir, request.model_name)
    with data.path.open(newline="") as handle:
        rows = [row for _, row in zip(range(2), csv.DictReader(handle), strict=False)]
    console.rule("2. onnxkit serve: the Lambda handler on 127.0.0.1")
    with serving(str(model_dir), sha256=result.manifest.serving.sha256) as url:
        console.print(f"serving {model_dir} at {url}", highlight=False, soft_wrap=True)
        for title, body in sample_requests(result.manifest, rows):
            response = httpx.post(f"{url}/predict", json=body, timeout=10)
            console.print(f"\n[bold]{title}[/]: POST {url}/predict", highlight=False)
            console.print(_abridged(body), soft_wrap=True)
            console.print(f"-> HTTP {response.status_code}", highlight=False)
            console.print(json.dumps(response.json()), soft_wrap=True)
    console.rule("3. stopped the server")
    console.print(
        f"Serve it again: onnxkit serve --model {model_dir}", highlight=False, soft_wrap=True
    )
