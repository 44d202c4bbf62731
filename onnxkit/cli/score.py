"""``onnxkit score``: score a CSV/JSONL file on this machine with the inference runtime's code, or
in the cloud on the kit's scoring state machine (``--env``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from onnxkit.cli import present
from onnxkit.errors import KitError
from onnxkit.local import scoring


def score(
    *,
    input_path: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="rows.csv (header row; extra columns are ignored), rows.jsonl (objects or "
            "arrays) or rows.parquet (here only). With --env also "
            "s3://<bucket>/scoring/input/... (an object or a folder).",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="preds.jsonl, or preds.csv for CSV; resumed if a run into it was interrupted. "
            "With --env: a local file (waits, then merges the results into it) or "
            "s3://<bucket>/scoring/output/<folder>/ (default: a folder named after the run).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="A model folder, model.onnx, model.tar.gz, production pointer or s3:// uri."
        ),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(help="Score with this work directory's promoted model instead of --model."),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(help="Score in this deployed environment, with its live model."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="With --workdir: the model name (needed when it holds several)."),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option(help="Copy this input column into every output record.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Scoring processes (default: one per CPU).")
    ] = None,
    batch_rows: Annotated[
        int | None,
        typer.Option(
            help=f"Rows per chunk (the unit of work and of resume; {scoring.DEFAULT_BATCH_ROWS})."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Start the output afresh (a finished one, or any file).")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(help="With --env: follow the run to its end (implied by a local --output)."),
    ] = False,
    execution: Annotated[
        str | None,
        typer.Option(
            help="With --env: follow this scoring execution (name or ARN) instead of starting one."
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option(help="With --env: seconds between refreshes while waiting.")
    ] = 5.0,
    region: Annotated[str | None, typer.Option(help="With --env: AWS region.")] = None,
    profile: Annotated[str | None, typer.Option(help="With --env: AWS profile.")] = None,
) -> None:
    """Score a CSV/JSONL/Parquet file here, or a CSV/JSONL file in the cloud with --env.

    Here: chunked, parallel, streaming, resumable, with the same decoding rules, model loading
    and digest checks as POST /predict. Every row is scored or rejected with its line and reason
    (the output's ``error`` field); exit code 0 when all rows are scored, 2 when some were
    rejected, 1 on failure. An interrupted run resumes where its last committed chunk ended when
    run again with the same arguments. With --env the scoring state machine scores the file with
    the live model; a local --output gets the same file a local run writes.
    """
    if sum(x is not None for x in (model, workdir, env)) != 1:
        raise KitError(
            "pass exactly one of --model or --workdir (score here) or --env (score in the cloud)"
        )
    if env is not None:
        local_only = {"--workers": workers, "--batch-rows": batch_rows, "--name": name}
        given = [option for option, value in local_only.items() if value is not None]
        if given:
            raise KitError(f"{', '.join(given)}: for local scoring only, not with --env")
        _cloud(
            env=env,
            source=input_path,
            destination=output,
            execution=execution,
            id_column=id_column,
            overwrite=overwrite,
            wait=wait,
            interval=interval,
            region=region,
            profile=profile,
        )
        return
    if execution is not None:
        raise KitError("--execution follows a cloud run: pass --env")
    if input_path is None or output is None or output.startswith("s3://"):
        raise KitError("local scoring needs --input FILE and --output FILE")
    _local(
        model=model,
        workdir=workdir,
        name=name,
        input_path=Path(input_path),
        output=Path(output),
        id_column=id_column,
        workers=workers or _cpus(),
        batch_rows=batch_rows or scoring.DEFAULT_BATCH_ROWS,
        overwrite=overwrite,
    )


def _local(
    *,
    model: str | None,
    workdir: Path | None,
    name: str | None,
    input_path: Path,
    output: Path,
    id_column: str | None,
    workers: int,
    batch_rows: int,
    overwrite: bool,
) -> None:
    ref = scoring.ModelRef(model) if model is not None else scoring.workdir_model(workdir, name)  # type: ignore[arg-type]  # one of them is given
    console = present.console(stderr=True, soft_wrap=True)

    def on_start(loaded: object, resumed: int) -> None:
        present.batch_scoring_started(console, loaded, input_path, resumed)

    try:
        summary = scoring.score_file(
            model_ref=ref,
            input_path=input_path,
            output=output,
            id_column=id_column,
            workers=workers,
            batch_rows=batch_rows,
            overwrite=overwrite,
            progress_bar=lambda total, done: present.bytes_progress(console, total, done),
            on_start=on_start,
        )
    except KeyboardInterrupt:
        console.print(
            f"interrupted: committed chunks are in {output}; run the same command again to resume",
            highlight=False,
        )
        raise
    present.print_batch_summary(console, summary)
    if summary.rejected:
        raise typer.Exit(2)


def _cloud(
    *,
    env: str,
    source: str | None,
    destination: str | None,
    execution: str | None,
    id_column: str | None,
    overwrite: bool,
    wait: bool,
    interval: float,
    region: str | None,
    profile: str | None,
) -> None:
    from onnxkit.cloud import batch  # noqa: PLC0415 - boto3 and numpy, for --env only
    from onnxkit.cloud.discovery import discover  # noqa: PLC0415
    from onnxkit.cloud.executions import execution_arn  # noqa: PLC0415
    from onnxkit.contract.layout import SCORING_STATE_MACHINE_OUTPUT  # noqa: PLC0415
    from onnxkit.contract.scoring import ScoringRequest  # noqa: PLC0415

    if execution is not None:
        if source is not None or id_column is not None:
            raise KitError("--execution follows a run that has its input: drop --input/--id-column")
        if destination is not None and destination.startswith("s3://"):
            raise KitError("--execution: the run's output folder is its own; --output is a file")
    elif source is None:
        raise KitError("--env needs --input (a local file or s3://...) or --execution")
    elif source.lower().endswith(scoring.PARQUET_SUFFIXES):
        # pyarrow (~170 MB unpacked) does not fit the scoring function's 250 MB bundle beside
        # onnxruntime and numpy; README, "Batch scoring".
        raise KitError(
            f"--env scores CSV and JSON Lines inputs, not Parquet ({source}): score it on this "
            "machine with --model or --workdir, or convert it to CSV"
        )
    local = None if destination is None or destination.startswith("s3://") else Path(destination)
    if local is not None:
        _check_local_output(local, overwrite)
    if source is not None and not source.startswith("s3://"):
        _check_id_column(Path(source), id_column)

    kit = discover(env, ("Artifacts", "Scoring"), region=region, profile=profile)
    machine = kit.get(SCORING_STATE_MACHINE_OUTPUT)
    s3, sfn = kit.client("s3"), kit.client("stepfunctions")
    if execution is not None:
        arn = execution_arn(machine, execution)
        name = arn.rsplit(":", 1)[-1]
    else:
        assert source is not None  # checked above
        name = batch.run_name(source)
        batch.check_name_free(sfn, machine, name)
        where = batch.locate_input(s3, kit.bucket, source, name)
        output_uri, _ = batch.locate_output(kit.bucket, destination, name)
        batch.check_output_free(s3, output_uri)
        if where.upload is not None:
            from onnxkit.cli.train import upload  # noqa: PLC0415 - the one upload, with KMS

            upload(kit, [(where.upload, where.uri)])
        request = ScoringRequest(input_uri=where.uri, output_uri=output_uri, id_column=id_column)
        arn = batch.start(sfn, machine, name, request)
        present.scoring_run_started(name, arn, request, local)
        if not wait and local is None:
            present.scoring_run_follow_hint(env, name, arn)
            return

    console = present.console(stderr=True, soft_wrap=True)
    try:
        with present.scoring_run_progress(console) as update:
            state = batch.follow(sfn, arn, interval=interval, on_update=update)
    except KeyboardInterrupt:
        console.print(f"stopped waiting; {name} runs on", highlight=False)
        present.scoring_run_follow_hint(env, name, arn)
        raise
    _finish(env, kit, state, local, console)


def _finish(env: str, kit: Any, state: Any, local: Path | None, console: Any) -> None:
    """Report the ended run from its summary; merge it into ``local``; the exit code."""
    from onnxkit.cloud import batch  # noqa: PLC0415
    from onnxkit.cloud.errors import CloudError  # noqa: PLC0415

    s3 = kit.client("s3")
    summary = batch.read_summary(s3, state.request.output_uri)
    if summary is None:
        if state.status == "SUCCEEDED":
            raise CloudError(
                f"execution {state.name} succeeded but wrote no "
                f"{state.request.output_uri}summary.json"
            )
        raise CloudError(state.failure())
    parts = batch.part_count(summary)
    present.print_scoring_run(console, summary, parts, local or summary.output_uri)
    if summary.failed_parts:
        numbers = ", ".join(str(p.part) for p in summary.failed_parts)
        then = f"; then: onnxkit score --env {env} --execution {state.name}" + (
            f" --output {local}" if local else ""
        )
        # Step Functions redrives failed, timed-out and aborted executions, never succeeded ones.
        fix = (
            "start a new run for their rows (a succeeded execution cannot be redriven)"
            if state.status == "SUCCEEDED"
            else "redriving the execution scores them: aws stepfunctions redrive-execution "
            f"--execution-arn {state.arn}{then}"
        )
        missing = f"; {local} was not written" if local else ""
        raise CloudError(
            f"{len(summary.failed_parts)} of {parts} parts failed (part "
            f"{numbers}): their rows are not in the output{missing}; {fix}"
        )
    if state.status != "SUCCEEDED":
        raise CloudError(state.failure())
    if local is not None:
        model = batch.output_model(s3, kit.bucket, summary.model)
        total = batch.records_bytes(s3, summary)
        with present.bytes_progress(console, total, 0, label="merging") as advance:
            rows = batch.merge(
                s3, summary, model, local, id_column=state.request.id_column, advance=advance
            )
        # A local run's progress record beside it would describe another file.
        scoring.progress_path(local).unlink(missing_ok=True)
        console.print(f"{rows} rows in input order -> {local}", highlight=False)
    if summary.rejected:
        raise typer.Exit(2)


def _check_local_output(path: Path, overwrite: bool) -> None:
    """Before any upload or run: the merged file can be written there."""
    if not path.parent.is_dir():
        raise KitError(f"--output {path}: folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise KitError(f"{path} exists: pass --overwrite or another --output")


def _check_id_column(path: Path, id_column: str | None) -> None:
    """A local CSV's header has the id column: found now, not after the upload."""
    if id_column is None or not path.is_file() or scoring.input_format(path) != "csv":
        return
    header, _, _ = scoring.read_header(path)
    if id_column not in header:
        raise KitError(f"{path} has no id column {id_column!r}")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
