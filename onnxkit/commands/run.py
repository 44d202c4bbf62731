"""``onnxkit run``: the training workflow on this machine, with nothing from AWS.

Train (training_jobs/train.py as a SageMaker-like job), evaluate, gate, register and promote
with the cloud's step code over a work directory. Exit codes: 0 promoted, 3 rejected by the
gate, 1 failed (with the readable reason).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from onnxkit.cloud.errors import CloudError, cli_errors

if TYPE_CHECKING:
    from rich.console import Console

    from onnxkit.local.runner import RunResult

DEFAULT_WORKDIR = Path("onnxkit-work")
# The manifest's model_name pattern (onnxkit.contract.manifest), checked before training.
MODEL_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
DEFAULT_DATASET = "breast_cancer"


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CloudError(f"{what} {item!r} is not key=value")
        pairs[key.strip()] = value.strip()
    return pairs


class _Progress:
    """One line per state, a spinner while a task runs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status: Any = None
        self.started = 0.0

    def close(self) -> None:
        """Stop the spinner, if one runs."""
        if self.status is not None:
            self.status.stop()
            self.status = None

    def __call__(self, state: str, phase: str, detail: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            self.status = self.console.status(f"{state}...")
            self.status.start()
            return
        if self.status is not None:
            self.status.stop()
            self.status = None
        took = f"{time.perf_counter() - self.started:5.1f}s"
        if phase == "done":
            self.console.print(
                f"[green]✓[/] {state:<15}{took}  {_detail(state, detail)}", highlight=False
            )
        elif phase == "error":
            self.console.print(
                f"[red]✗[/] {state:<15}{took}  {detail['cause']}", highlight=False, soft_wrap=True
            )
        elif phase == "end":
            colour = {"Promoted": "green", "Rejected": "yellow"}.get(state, "red")
            self.console.print(f"[bold {colour}]● {state}[/]", highlight=False)


def _detail(state: str, detail: dict[str, Any]) -> str:
    if state == "Prepare":
        hps = detail.get("hyperparameters", {})
        return f"{hps.get('model')} on {hps.get('target')}"
    if state == "Train":
        metrics = {m["MetricName"]: m["Value"] for m in detail.get("FinalMetricDataList", [])}
        shown = [f"{k}={v:.4f}" for k, v in metrics.items() if k.endswith((":accuracy", ":r2"))]
        return " ".join(shown)
    if state == "Evaluate":
        verdict = "passes the gate" if detail.get("passed") else "fails the gate"
        candidate = detail.get("candidate", {})
        return f"{candidate.get('model_version')} {verdict}"
    if state == "QualityGate":
        return f"-> {detail.get('next')}"
    if state == "Register":
        return str(detail.get("model_package_arn"))
    if state == "Promote":
        return f"live -> version {detail.get('lambda_version')} ({detail.get('model_version')})"
    return str(detail.get("subject", ""))


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1024:.1f} KiB" if value < 1 << 20 else f"{value / (1 << 20):.2f} MiB"


def print_summary(console: Console, result: RunResult, workdir: Path) -> None:
    """Metrics per variant, sizes, the gate's decision and the promoted version."""
    from rich.table import Table  # noqa: PLC0415

    manifest = result.manifest
    if manifest is not None:
        names = sorted({m for v in manifest.variants.values() for m in v.metrics})
        primary = manifest.primary_metric
        names = [primary, *[n for n in names if n != primary]]
        table = Table(
            title=f"{manifest.model_name} {manifest.model_version} "
            f"({manifest.estimator}, {manifest.task})",
            title_justify="left",
        )
        variants = list(manifest.variants)
        table.add_column("")
        for variant in variants:
            served = " (served)" if variant == manifest.serving.variant else ""
            table.add_column(f"{variant}{served}", justify="right")
        for metric in names:
            table.add_row(
                metric,
                *[
                    f"{manifest.variants[v].metrics[metric]:.4f}"
                    if metric in manifest.variants[v].metrics
                    else "-"
                    for v in variants
                ],
            )
        table.add_row("size", *[_size(manifest.variants[v].size_bytes) for v in variants])
        agreements = []
        for v in variants:
            parity = manifest.variants[v].parity
            agreement = parity.label_agreement if parity else None
            agreements.append("-" if agreement is None else f"{agreement:.4f}")
        if manifest.task == "classification":
            table.add_row("label agreement", *agreements)
        console.print(table)
        console.print(
            f"quantization: {manifest.quantization.decision} ({manifest.quantization.reason})",
            highlight=False,
        )
    evaluation = result.state.get("evaluation")
    if evaluation is not None:
        if evaluation["passed"]:
            console.print("gate: [green]passed[/]", highlight=False)
        else:
            console.print("gate: [yellow]rejected[/]", highlight=False)
            for reason in evaluation["reasons"]:
                console.print(f"  - {reason}", highlight=False)
    promotion = result.state.get("promotion")
    if promotion is not None:
        console.print(
            f"promoted: {promotion['model_version']} (local version "
            f"{promotion['lambda_version']}, previous "
            f"{promotion['previous_lambda_version'] or 'none'})",
            highlight=False,
        )
    elif evaluation is not None and evaluation.get("production"):
        production = evaluation["production"]
        console.print(f"production unchanged: {production['model_version']}", highlight=False)
    if result.error:
        # One line however long (a path, a reason): scripts grep it.
        console.print(f"[red]failed:[/] {result.error}", highlight=False, soft_wrap=True)
    console.print(f"workdir: {workdir}", highlight=False)


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
    with cli_errors():
        from rich.console import Console  # noqa: PLC0415

        from onnxkit.config import RESERVED_HYPERPARAMETERS, ConfigError, load_config  # noqa: PLC0415
        from onnxkit.datasets import bundled  # noqa: PLC0415
        from onnxkit.local.runner import RunRequest, model_name_for, run_workflow  # noqa: PLC0415

        if data is not None and dataset is not None:
            raise CloudError("give --data or --dataset, not both")
        hyperparameters = _pairs(hp, "--hp")
        reserved = sorted(set(hyperparameters) & RESERVED_HYPERPARAMETERS)
        if reserved:
            raise CloudError(f"hyperparameter {reserved[0]} is set by the pipeline (use --name)")
        try:
            config = load_config("local", _pairs(setting, "--set"))
        except ConfigError as error:
            raise CloudError(str(error)) from None
        if data is None:
            try:
                bundle = bundled(dataset or DEFAULT_DATASET)
            except ValueError as error:
                raise CloudError(str(error)) from None
            train, source = bundle.path, bundle.name
            target = target or bundle.target
        else:
            if not data.exists():
                raise CloudError(f"{data} does not exist")
            train, source = data, data.stem
        target = target or config.training.target
        if not target:
            raise CloudError("which column is the label? pass --target")
        if validation is not None and not validation.exists():
            raise CloudError(f"{validation} does not exist")
        hyperparameters["target"] = target
        if model:
            hyperparameters["model"] = model
        model_name = name or model_name_for(source)
        if not re.fullmatch(MODEL_NAME_PATTERN, model_name):
            raise CloudError(
                f"invalid --name {model_name!r}: letters, digits, '.', '_' and '-' (at most 63)"
            )
        request = RunRequest(
            workdir=workdir,
            train=train,
            validation=validation,
            config=config,
            model_name=model_name,
            hyperparameters=hyperparameters,
        )
        console = Console()
        progress = _Progress(console)
        try:
            result = run_workflow(request, on_event=progress)
        finally:  # Ctrl-C or SIGTERM: the spinner's thread must not outlive the command
            progress.close()
        console.print()
        print_summary(console, result, workdir)
        if result.exit_code != 0:
            raise typer.Exit(result.exit_code)
        if serve:
            _serve(console, workdir, request.model_name, port)


def _serve(console: Console, workdir: Path, model_name: str, port: int) -> None:
    """Serve the production model of the work directory until interrupted."""
    from onnxkit.local.serving import serve_production  # noqa: PLC0415

    serve_production(console, workdir, model_name, port)
