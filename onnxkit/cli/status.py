"""``onnxkit status``: a pipeline execution's steps, training job, gate decision and promotion."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from botocore.exceptions import BotoCoreError, ClientError

from functions.pipeline.aws import LambdaServing, S3Store
from functions.pipeline.ports import StepError
from functions.pipeline.promote import resolve
from onnxkit.cli import present
from onnxkit.cloud.discovery import DiscoveryError, discover
from onnxkit.cloud.errors import CloudError, describe_aws_error
from onnxkit.cloud.executions import (
    describe_run,
    execution_arn,
    latest_execution,
    training_curve,
    training_job,
)
from onnxkit.contract.layout import FUNCTION_NAME_OUTPUT

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
    try:
        run = describe_run(kit.client("stepfunctions"), arn)
        name = ((run.evaluation or {}).get("candidate") or {}).get("model_name")
        if not name:
            return []
        found = discover(env, ("Artifacts", "Serving"), session=kit.session)
        live = resolve(
            S3Store(found.client("s3"), found.bucket),
            LambdaServing(found.client("lambda"), found.get(FUNCTION_NAME_OUTPUT)),
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
    sfn = kit.client("stepfunctions")
    run = describe_run(sfn, arn)

    def updates() -> Iterator[Any]:
        nonlocal run
        while run.outcome == "running":
            time.sleep(max(interval, 0.0))
            run = describe_run(sfn, arn)
            yield render(kit, run)

    view = render(kit, run)
    present.show_run(view, updates() if follow and run.outcome == "running" else None)
    return run.outcome


def render(kit: Any, run: Any) -> Any:
    """The status view of a run (a rich renderable), with its training job and the learning
    curve in the job's log read now."""
    name = run.training_job_name
    training = _training(kit, name) if name else None
    curve = _curve(kit, name) if name else None
    return present.run_view(kit.region, run, training, curve)


def _curve(kit: Any, name: str) -> Any:
    """The job's learning curve so far, or one line saying why its log could not be read."""
    try:
        return training_curve(kit.client("logs"), name)
    except (BotoCoreError, ClientError) as error:
        return "not readable: " + " ".join(describe_aws_error(error).split())[:300]


def _training(kit: Any, name: str) -> Any:
    """The job's TrainingView, or one line saying why it could not be read."""
    try:
        return training_job(kit.session, kit.region, name)
    except Exception as error:  # noqa: BLE001
        # The job is one section of the run view: its name is known a moment before the job
        # exists, and the SDK can fail to reach, sign or parse DescribeTrainingJob. Whatever
        # happened, the steps, gate and promotion still show, with this note in the job's place.
        if isinstance(error, CloudError):
            note = str(error)
        elif isinstance(error, BotoCoreError | ClientError):
            note = describe_aws_error(error)
        else:
            note = f"{type(error).__name__}: {error}"
        return "not readable: " + " ".join(note.split())[:300]
