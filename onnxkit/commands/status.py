"""``onnxkit status``: a pipeline execution's steps, training job, gate decision and promotion."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from onnxkit.cloud.errors import cli_errors

_STEP_STYLE = {
    "succeeded": "green",
    "running": "yellow",
    "failed": "red",
    "pending": "dim",
    "skipped": "dim",
}
_MARK = {"succeeded": "✓", "running": "…", "failed": "✗", "pending": "·", "skipped": "-"}
# Exit codes when following a run to its end (documented in docs/cli.md).
EXIT_CODES = {"promoted": 0, "running": 0, "rejected": 3, "failed": 1}


def status(
    execution: Annotated[
        str | None, typer.Argument(help="Execution name or ARN (default: the latest).")
    ] = None,
    env: Annotated[str, typer.Option(envvar="ONNXKIT_ENV", help="Deployed environment.")] = "dev",
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Refresh until the run ends; exit 0 promoted, 3 rejected, 1 failed.",
        ),
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 10.0,
    region: Annotated[str | None, typer.Option(help="AWS region.")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile.")] = None,
) -> None:
    """Show a training run: steps, training job status and metrics, gate, promoted version."""
    with cli_errors():
        from onnxkit.cloud.discovery import discover  # noqa: PLC0415
        from onnxkit.cloud.executions import execution_arn, latest_execution  # noqa: PLC0415

        kit = discover(env, ("Pipeline",), region=region, profile=profile)
        sfn = kit.client("stepfunctions")
        arn = (
            execution_arn(kit.state_machine_arn, execution)
            if execution
            else latest_execution(sfn, kit.state_machine_arn)
        )
        outcome = watch(kit, arn, follow=follow, interval=interval)
        for line in live_lines(env, kit, arn):
            typer.echo(line)
    if follow and EXIT_CODES[outcome]:
        raise typer.Exit(EXIT_CODES[outcome])


def live_lines(env: str, kit: Any, arn: str) -> list[str]:
    """What ``live`` serves now for the run's model (the execution shows what the run did),
    resolved as every reader resolves it (docs/CONTRACTS.md, promotion states); nothing when
    the Artifacts or Serving stack cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from functions.pipeline.aws import LambdaServing, S3Store  # noqa: PLC0415
    from functions.pipeline.ports import StepError  # noqa: PLC0415
    from functions.pipeline.promote import resolve  # noqa: PLC0415
    from onnxkit.cloud.discovery import DiscoveryError, discover  # noqa: PLC0415
    from onnxkit.cloud.errors import describe_aws_error  # noqa: PLC0415
    from onnxkit.cloud.executions import describe_run  # noqa: PLC0415

    try:
        run = describe_run(kit.client("stepfunctions"), arn)
        name = ((run.evaluation or {}).get("candidate") or {}).get("model_name")
        if not name:
            return []
        found = discover(env, ("Artifacts", "Serving"), session=kit.session)
        live = resolve(
            S3Store(found.client("s3"), found.bucket),
            LambdaServing(found.client("lambda"), found.get("FunctionName")),
            str(name),
        )
    except DiscoveryError:
        return []
    except (BotoCoreError, ClientError) as error:
        return [f"live: not readable: {describe_aws_error(error)}"]
    except StepError as error:
        return [f"live: {error}"]
    if live.pointer is None:
        return [f"live {name}: none (nothing promoted yet)"]
    lines = [
        f"live {name}: {live.pointer.model_version} (Lambda version {live.pointer.lambda_version})"
    ]
    if live.note():
        lines.append(f"note: {live.note().replace('now records', 'will record')}")
    return lines


def watch(kit: Any, arn: str, *, follow: bool, interval: float) -> str:
    """Render the run once, or live until it ends; returns its outcome."""
    from rich.console import Console  # noqa: PLC0415
    from rich.live import Live  # noqa: PLC0415

    from onnxkit.cloud.executions import describe_run  # noqa: PLC0415

    sfn = kit.client("stepfunctions")
    console = Console(soft_wrap=True)  # links stay whole in logs
    run = describe_run(sfn, arn)
    view = render(kit, run)
    if follow and run.outcome == "running":
        # Live crops every line at the console width (80 columns when piped), console links
        # included, so it only shows progress and is cleared; the last view is printed whole
        # below, also when the wait ends with Ctrl-C or an AWS error.
        try:
            with Live(view, console=console, refresh_per_second=2, transient=True) as live:
                while run.outcome == "running":
                    time.sleep(max(interval, 0.0))
                    run = describe_run(sfn, arn)
                    view = render(kit, run)
                    live.update(view)
        finally:
            console.print(view)
    else:
        console.print(view)
    return run.outcome


def _training(kit: Any, name: str) -> Any:
    """The job's TrainingView, or one line saying why it could not be read."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from onnxkit.cloud.errors import CloudError, describe_aws_error  # noqa: PLC0415
    from onnxkit.cloud.executions import training_job  # noqa: PLC0415

    try:
        return training_job(kit.session, kit.region, name)
    except Exception as error:  # noqa: BLE001
        # The job is one section of the run view: its name is known a moment before the job
        # exists, and the SDK can fail to reach, sign or parse DescribeTrainingJob. Whatever
        # happened, the steps, gate and promotion still show, with this note in the job's place.
        if isinstance(error, CloudError):
            note = error.format_message()
        elif isinstance(error, BotoCoreError | ClientError):
            note = describe_aws_error(error)
        else:
            note = f"{type(error).__name__}: {error}"
        return "not readable: " + " ".join(note.split())[:300]


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _link(text: str) -> Any:
    from rich.text import Text  # noqa: PLC0415

    # Never wrapped: a console URL broken over two lines cannot be clicked or copied.
    return Text(text, style="dim", no_wrap=True, overflow="ignore")


def render(kit: Any, run: Any) -> Any:
    """The status view: a rich renderable."""
    from rich.console import Group  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    from onnxkit.cloud import executions  # noqa: PLC0415

    parts: list[Any] = []
    colour = {"promoted": "green", "rejected": "yellow", "failed": "red", "running": "cyan"}
    parts.append(
        Text.assemble(
            ("execution ", "bold"),
            run.name,
            "  ",
            (f"{run.status} ({run.outcome})", colour[run.outcome]),
        )
    )
    train_uri = run.input.get("train_s3_uri")
    if train_uri:
        hyper = run.input.get("hyperparameters") or {}
        extra = " ".join(f"{k}={v}" for k, v in sorted(hyper.items()))
        parts.append(Text(f"data {train_uri}" + (f"  {extra}" if extra else "")))
    steps = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("", "step", "status", "took", "error"):
        steps.add_column(column)
    for step in run.steps:
        style = _STEP_STYLE.get(step.status, "")
        steps.add_row(
            Text(_MARK.get(step.status, "?"), style=style),
            step.name,
            Text(step.status, style=style),
            _seconds(step.seconds),
            step.error,
        )
    parts.append(steps)

    if run.training_job_name:
        training = _training(kit, run.training_job_name)
        if isinstance(training, str):
            parts.append(Text(f"training job {run.training_job_name}: {training}"))
        else:
            parts.append(
                Text.assemble(
                    ("training job ", "bold"),
                    training.name,
                    "  ",
                    f"{training.status} / {training.secondary_status}",
                )
            )
            for state, message, start, _end in training.transitions:
                when = start.strftime("%H:%M:%S") if start else ""
                parts.append(Text(f"  {when} {state}: {message}"))
            if training.failure_reason:
                parts.append(Text(f"  failure: {training.failure_reason}", style="red"))
            if training.metrics:
                metrics = Table("metric", "value", box=None, pad_edge=False, header_style="bold")
                for name, value in sorted(training.metrics.items()):
                    metrics.add_row(name, f"{value:.4g}")
                parts.append(metrics)
        link = executions.training_job_link(kit.region, run.training_job_name)
        parts.append(_link(f"  console: {link}"))

    evaluation = run.evaluation
    if evaluation is not None:
        passed = evaluation.get("passed")
        parts.append(
            Text.assemble(
                ("quality gate ", "bold"),
                ("passed", "green") if passed else ("not passed", "yellow"),
            )
        )
        for reason in evaluation.get("reasons") or []:
            parts.append(Text(f"  - {reason}"))
        candidate = evaluation.get("candidate") or {}
        production = evaluation.get("production") or {}
        primary = candidate.get("primary_metric")
        if primary and primary in (candidate.get("metrics") or {}):
            line = f"  candidate {primary}={candidate['metrics'][primary]:.4g}"
            prod_metrics = production.get("metrics") or {}
            if primary in prod_metrics:
                line += (
                    f" vs production {production.get('model_version', '')} "
                    f"{primary}={prod_metrics[primary]:.4g}"
                )
            parts.append(Text(line))
    promotion = run.promotion
    if promotion is not None:
        parts.append(
            Text.assemble(
                ("promoted ", "bold green"),
                f"{promotion.get('model_version')} -> Lambda version "
                f"{promotion.get('lambda_version')} (was "
                f"{promotion.get('previous_lambda_version') or 'none'})",
            )
        )
    if run.error and run.outcome == "failed":
        cause = " ".join(str(run.error.get("cause", "")).split())[:300]
        parts.append(Text(f"error {run.error.get('error')}: {cause}", style="red"))
    parts.append(_link("console: " + executions.execution_link(kit.region, run.arn)))
    return Group(*parts)
