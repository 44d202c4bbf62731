"""``onnxkit score``: score a CSV/JSONL file on this machine with the inference runtime's code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from onnxkit.cli import present
from onnxkit.errors import KitError
from onnxkit.local import scoring


def score(
    *,
    input_path: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            help="rows.csv (header row; extra columns are ignored) or rows.jsonl (objects or "
            "arrays).",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="preds.jsonl, or preds.csv for CSV; resumed if a run into it was interrupted.",
        ),
    ],
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
        int, typer.Option(help="Rows per chunk (the unit of work and of resume).")
    ] = scoring.DEFAULT_BATCH_ROWS,
    overwrite: Annotated[
        bool, typer.Option(help="Start the output afresh (a finished one, or any file).")
    ] = False,
) -> None:
    """Score a CSV/JSONL file locally: chunked, parallel, streaming, resumable.

    The same decoding rules, model loading and digest checks as POST /predict. Every row is
    scored or rejected with its line and reason (the output's ``error`` field); exit code 0 when
    all rows are scored, 2 when some were rejected, 1 on failure. An interrupted run resumes
    where its last committed chunk ended when run again with the same arguments.
    """
    if (model is None) == (workdir is None):
        raise KitError("pass exactly one of --model or --workdir")
    ref = (
        scoring.ModelRef(model) if model is not None else scoring.workdir_model(workdir, name)  # type: ignore[arg-type]  # checked above
    )
    console = present.console(stderr=True, soft_wrap=True)

    def on_start(loaded: object, resumed: int) -> None:
        present.batch_scoring_started(console, loaded, input_path, resumed)

    try:
        summary = scoring.score_file(
            model_ref=ref,
            input_path=input_path,
            output=output,
            id_column=id_column,
            workers=workers or _cpus(),
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


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
