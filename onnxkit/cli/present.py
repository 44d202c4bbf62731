"""Everything the commands show: consoles, progress bars, spinners, tables and the run views.

The commands decide what to show; this module decides how it looks (rich). It is imported by
command modules only, so ``onnxkit --help`` never loads rich.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from onnxkit.cloud import executions
from onnxkit.contract.drift import DriftCheck, DriftReport

if TYPE_CHECKING:
    from onnxkit.cloud.registry import Version
    from onnxkit.contract.pointer import Pointer
    from onnxkit.local.runner import RunResult


def console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    """A console on stdout (or stderr)."""
    return Console(stderr=stderr, soft_wrap=soft_wrap)


# --- the learning curve (onnxkit run, onnxkit status) ---------------------------------------
_BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 24


def sparkline(values: list[float], width: int = SPARK_WIDTH) -> str:
    """``values`` as at most ``width`` block characters, low to high (evenly spaced samples,
    the last value always included)."""
    if not values:
        return ""
    if len(values) > width:
        step = (len(values) - 1) / (width - 1)
        values = [values[round(i * step)] for i in range(width)]
    low, high = min(values), max(values)
    if high == low:
        return _BARS[len(_BARS) // 2] * len(values)
    scale = (len(_BARS) - 1) / (high - low)
    return "".join(_BARS[round((v - low) * scale)] for v in values)


def curve_summary(curve: dict[str, list[tuple[int, float]]]) -> list[str]:
    """One line per curve name: its sparkline, last value and iteration."""
    lines = []
    for name, points in curve.items():
        if points:
            iteration, last = points[-1]
            line = sparkline([v for _, v in points])
            lines.append(f"{name} {line} {last:.4g} (iteration {iteration})")
    return lines


# --- onnxkit run / demo ----------------------------------------------------------------------
class RunProgress:
    """One line per state, a spinner while a task runs (with the learning curve in Train)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status: Any = None
        self.started = 0.0
        self.curve: dict[str, list[tuple[int, float]]] = {}

    def close(self) -> None:
        """Stop the spinner, if one runs."""
        if self.status is not None:
            self.status.stop()
            self.status = None

    def __call__(self, state: str, phase: str, detail: dict[str, Any]) -> None:
        if phase == "progress":
            self.curve = {name: list(points) for name, points in detail["curve"].items()}
            if self.status is not None:
                self.status.update(f"{state}...  " + "  ".join(curve_summary(self.curve)))
            return
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
            if state == "Train":
                for line in curve_summary(self.curve):
                    self.console.print(f"  {'':<15}{'':>6}  {line}", highlight=False)
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


def print_run_summary(console: Console, result: RunResult, workdir: Path) -> None:
    """Metrics per variant, sizes, the gate's decision and the promoted version."""
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
        compression = manifest.compression
        if compression is not None:
            chosen = next(v for v in compression.variants if v.chosen)
            console.print(
                f"compression: {compression.chosen}, {_size(chosen.size_bytes)} "
                f"({compression.reason}; {len(compression.variants)} variants tried in "
                f"{compression.seconds:.1f} s)",
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


# --- onnxkit status / train --wait ---------------------------------------------------------
_STEP_STYLE = {
    "succeeded": "green",
    "running": "yellow",
    "failed": "red",
    "pending": "dim",
    "skipped": "dim",
}
_MARK = {"succeeded": "✓", "running": "…", "failed": "✗", "pending": "·", "skipped": "-"}


def show_run(view: Any, updates: Iterator[Any] | None = None) -> None:
    """Print a run's view; with ``updates``, show each newer view live until they end, then
    print the last one whole."""
    out = Console(soft_wrap=True)  # links stay whole in logs
    if updates is None:
        out.print(view)
        return
    # Live crops every line at the console width (80 columns when piped), console links
    # included, so it only shows progress and is cleared; the last view is printed whole
    # below, also when the wait ends with Ctrl-C or an AWS error.
    last = view
    try:
        with Live(view, console=out, refresh_per_second=2, transient=True) as live:
            for last in updates:
                live.update(last)
    finally:
        out.print(last)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _link(text: str) -> Any:
    # Never wrapped: a console URL broken over two lines cannot be clicked or copied.
    return Text(text, style="dim", no_wrap=True, overflow="ignore")


def run_view(region: str, run: Any, training: Any, curve: Any = None) -> Any:
    """The status view of a pipeline run, a rich renderable; ``training`` is the training
    job's view, or one line saying why it could not be read; ``curve`` the learning curve in
    the job's log so far (name -> (iteration, value) points), or why it could not be read."""
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
            if isinstance(curve, str):
                parts.append(Text(f"  learning curve: {curve}"))
            elif curve:
                parts.extend(Text(f"  {line}") for line in curve_summary(curve))
            if training.metrics:
                metrics = Table("metric", "value", box=None, pad_edge=False, header_style="bold")
                for name, value in sorted(training.metrics.items()):
                    metrics.add_row(name, f"{value:.4g}")
                parts.append(metrics)
        link = executions.training_job_link(region, run.training_job_name)
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
    parts.append(_link("console: " + executions.execution_link(region, run.arn)))
    return Group(*parts)


# --- onnxkit train -------------------------------------------------------------------------
@contextmanager
def upload_progress(total: int) -> Iterator[Callable[[int], None]]:
    """A bytes-uploaded progress bar on stderr; yields the function that advances it."""
    with Progress(
        TextColumn("uploading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
    ) as progress:
        task = progress.add_task("upload", total=total)
        yield lambda n: progress.advance(task, n)


# --- onnxkit predict -----------------------------------------------------------------------
MAX_REJECTED_SHOWN = 10


@contextmanager
def scoring_progress(
    console: Console, total: int, completed: int
) -> Iterator[Callable[[int], None]]:
    """A rows-scored progress bar; yields the function that advances it."""
    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("scoring", total=total, completed=completed)
        yield lambda n: progress.advance(task, n)


def print_scoring_summary(console: Console, report: Any, output: Path | None) -> None:
    """Rows in, scored, rejected and skipped; retries and batches."""
    where = f" -> {output}" if output else ""
    rejected = len(report.rejected)
    console.print(
        f"rows in {report.read} = {report.scored} scored + {rejected} rejected; skipped "
        f"{report.skipped} already written, {report.retries} retries, "
        f"{report.batches} batches{where}",
        highlight=False,
    )


def print_rejected(console: Console, report: Any) -> None:
    """The first rejected rows and why (the output's error column lists all)."""
    table = Table("row", "line", "why it was rejected", title="rejected rows", title_justify="left")
    for outcome in report.rejected[:MAX_REJECTED_SHOWN]:
        table.add_row(str(outcome.row), str(outcome.line or ""), outcome.error)
    console.print(table)
    more = len(report.rejected) - MAX_REJECTED_SHOWN
    if more > 0:
        console.print(f"... and {more} more (the error column of the output lists all)")


# --- onnxkit score --------------------------------------------------------------------------
def batch_scoring_started(console: Console, model: Any, input_path: Path, resumed: int) -> None:
    """Which model scores which file (and where a resumed run picks up)."""
    console.print(
        f"scoring {input_path} with {model.model_name} {model.model_version}"
        + (f"; resuming after row {resumed}" if resumed else ""),
        highlight=False,
    )


@contextmanager
def bytes_progress(
    console: Console, total: int, completed: int, label: str = "scoring"
) -> Iterator[Callable[[int], None]]:
    """A progress bar over bytes (the input's, or downloaded ones); yields its advance."""
    with Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=total, completed=completed)
        yield lambda n: progress.advance(task, n)


def print_batch_summary(console: Console, summary: Any) -> None:
    """Rows in, scored, rejected, model version, seconds; then the first rejected rows."""
    resumed = f" ({summary.resumed_rows} before resuming)" if summary.resumed_rows else ""
    console.print(
        f"rows in {summary.rows}{resumed} = {summary.scored} scored + {summary.rejected} "
        f"rejected; model {summary.model_name} {summary.model_version}; "
        f"{summary.seconds:.1f}s -> {summary.output}",
        highlight=False,
    )
    if not summary.rejected:
        return
    table = Table("line", "why it was rejected", title="rejected rows", title_justify="left")
    for line, reason in summary.samples[:MAX_REJECTED_SHOWN]:
        table.add_row(str(line), reason)
    console.print(table)
    more = summary.rejected - min(len(summary.samples), MAX_REJECTED_SHOWN)
    if more > 0:
        console.print(f"... and {more} more (the error field of the output lists all)")


# --- onnxkit score --env ------------------------------------------------------------------
def scoring_run_started(name: str, arn: str, request: Any, local: Path | None) -> None:
    """The execution just started, where it reads and writes (stdout: a script may want it)."""
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"started {name}")
    out.print(f"  input   {request.input_uri}")
    out.print(f"  output  {request.output_uri}" + (f" -> {local}" if local else ""))
    out.print(f"  arn     {arn}")


def scoring_run_follow_hint(env: str, name: str, arn: str) -> None:
    """How to follow an execution without waiting here, and without the console."""
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"follow it with: onnxkit score --env {env} --execution {name} [--output FILE]")
    out.print(f"  or: aws stepfunctions describe-execution --execution-arn {arn}")


@contextmanager
def scoring_run_progress(console: Console) -> Iterator[Callable[[Any], None]]:
    """The execution's status and its parts done of all; yields the function given each new
    :class:`onnxkit.cloud.batch.RunState`."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("parts{task.fields[failed]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("starting", total=None, failed="")

        def update(state: Any) -> None:
            parts = state.parts
            description = state.status.lower().replace("_", " ")
            if parts is None:
                progress.update(task, description=description)
                return
            failed = f", {parts.failed} failed" if parts.failed else ""
            progress.update(
                task,
                description=description,
                total=parts.total or None,
                completed=parts.done,
                failed=failed,
            )

        yield update


def print_scoring_run(console: Console, summary: Any, parts: int, output: Any) -> None:
    """Rows in, scored, rejected, model, duration; the first rejected rows; failed parts."""
    console.print(
        f"rows in {summary.rows} = {summary.scored} scored + {summary.rejected} rejected; "
        f"model {summary.model.name} {summary.model.version}; {summary.seconds:.1f}s; "
        f"{parts} parts -> {output}",
        highlight=False,
    )
    if summary.rejected:
        table = Table(
            "row", "line", "why it was rejected", title="rejected rows", title_justify="left"
        )
        for row in summary.rejected_rows[:MAX_REJECTED_SHOWN]:
            table.add_row(str(row.row), "" if row.line is None else str(row.line), row.reason)
        console.print(table)
        more = summary.rejected - min(len(summary.rejected_rows), MAX_REJECTED_SHOWN)
        if more > 0:
            console.print(f"... and {more} more (the error field of the output lists all)")
    if summary.failed_parts:
        table = Table(
            "part", "object", "bytes", title="failed parts (not scored)", title_justify="left"
        )
        for part in summary.failed_parts:
            table.add_row(str(part.part), part.key, f"{part.start}-{part.end}")
        console.print(table)


# --- onnxkit models ------------------------------------------------------------------------
# Shown first when present; any other metric is listed after them.
# The models table names this many features per version (--json has every recorded one).
TOP_FEATURES_SHOWN = 3
_PREFERRED = ("accuracy", "f1_macro", "roc_auc", "log_loss", "r2", "rmse", "mae")


def print_models(
    title: str,
    versions: list[Version],
    shown: list[Version],
    pointers: dict[str, Pointer],
    notes: list[str],
) -> None:
    """The registered versions as a table (the live one marked), then what is live."""
    out = Console()
    names = {m for v in shown for m in v.metrics}
    metric_cols = [m for m in _PREFERRED if m in names] + sorted(names - set(_PREFERRED))
    table = Table(title=title, title_justify="left")
    columns = ("", "#", "model", "version", "status", "registered", *metric_cols, "top features")
    for column in columns:
        table.add_column(column, justify="right" if column in metric_cols else "left")
    for v in shown:
        table.add_row(
            "[green]live[/]" if v.live else "",
            str(v.package_version or ""),
            v.model_name,
            v.model_version,
            v.status,
            v.created[:16].replace("T", " "),
            *(f"{v.metrics[m]:.4g}" if m in v.metrics else "-" for m in metric_cols),
            ", ".join(f["name"] for f in v.top_features[:TOP_FEATURES_SHOWN]) or "-",
        )
    out.print(table)
    if not any(v.live for v in versions):
        out.print("no version is live yet (no production pointer)", highlight=False)
    for note in notes:
        out.print(f"note: {note}", highlight=False)
    for name, pointer in sorted(pointers.items()):
        out.print(
            f"live {name}: {pointer.model_version} (Lambda version "
            f"{pointer.lambda_version}, promoted {pointer.promoted_at})",
            highlight=False,
        )


# --- onnxkit drift -------------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def print_drift(report: DriftReport) -> None:
    """Each feature's scores against their limits (drifted ones in red), then the predictions'
    shift and a one-line verdict."""
    out = Console()
    table = Table(
        title=f"{report.model_name} {report.model_version}: {report.capture_rows} captured rows "
        f"vs {report.reference_rows} training rows",
        title_justify="left",
    )
    for column in ("feature", "kind", "PSI", "limit", "missing", "train", "unseen", "drifted"):
        table.add_column(
            column, justify="left" if column in {"feature", "kind", "drifted"} else "right"
        )
    for feature in report.features:
        flagged = set(feature.drifted)
        table.add_row(
            f"[red]{feature.name}[/]" if flagged else feature.name,
            "num" if feature.kind == "numeric" else "cat",
            f"[red]{feature.psi:.3f}[/]" if "psi" in flagged else f"{feature.psi:.3f}",
            "-" if math.isinf(feature.psi_limit) else f"{feature.psi_limit:.3f}",
            _percent(feature.missing_rate),
            _percent(feature.reference_missing_rate),
            _percent(feature.unseen_rate),
            ", ".join(feature.drifted) or "-",
        )
    out.print(table)
    predictions = report.predictions
    if predictions is not None:
        verdict = "[red]shifted[/]" if predictions.drifted else "stable"
        shares = ", ".join(
            f"{label} {_percent(share)} (train {_percent(predictions.reference_shares[label])})"
            for label, share in list(predictions.shares.items())[:6]
        )
        out.print(
            f"predictions: PSI {predictions.psi:.3f} (limit {predictions.limit:.3f}) {verdict}; "
            f"{shares}",
            highlight=False,
        )
    if report.drifted:
        out.print(f"[red]drift[/]: {', '.join(report.drifted)}", highlight=False)
    else:
        out.print("no drift", highlight=False)


def print_drift_check(check: DriftCheck) -> None:
    """One scheduled check: what it read, then the same table as a local ``onnxkit drift``
    (or why there is none)."""
    out = Console(highlight=False)
    version = check.model_version or "(nothing promoted)"
    out.print(
        f"check at {check.checked_at:%Y-%m-%d %H:%M} UTC of {check.model_name} {version}: "
        f"capture {check.window_start:%Y-%m-%d %H:%M} to {check.window_end:%Y-%m-%d %H:%M} UTC, "
        f"{check.capture_rows} rows of this version, {check.other_rows} of others left out",
        soft_wrap=True,
    )
    if check.truncated:
        out.print(f"read the newest {check.capture_rows} rows only (drift.max_rows)")
    if check.unreadable_objects:
        out.print(
            f"skipped {len(check.unreadable_objects)} unreadable capture object(s), first "
            f"{check.unreadable_objects[0]}",
            soft_wrap=True,
        )
    if check.report is not None:
        print_drift(check.report)
    else:
        out.print(check.detail, soft_wrap=True)
    if check.training_execution:
        out.print(f"retraining started: {check.training_execution}", soft_wrap=True)


# --- onnxkit serve -------------------------------------------------------------------------
_err = Console(stderr=True, highlight=False)


def serving_started(server: Any, api_key: str | None, capture: Path | None = None) -> None:
    """Where the server listens and what it serves."""
    info = server.model
    captured = f"; capturing to {capture}" if capture is not None else ""
    _err.print(
        f"serving {info.model_name} {info.model_version} at [bold]{server.url}[/bold] "
        f"({'x-api-key required' if api_key else 'no auth'}{captured}); Ctrl-C stops",
        soft_wrap=True,
        highlight=False,
    )


def serving_failed(error: Exception) -> None:
    """Why the server could not start."""
    _err.print(f"[red]error:[/red] {error}", soft_wrap=True)


def serving_stopped(capture: Any = None) -> None:
    """The server has stopped (and, with ``--capture``, what it captured)."""
    _err.print("stopping")
    if capture is not None:
        lost = f", [red]{capture.lost} lost[/red] (write errors)" if capture.lost else ""
        _err.print(
            f"captured {capture.records} rows of {capture.calls} calls in "
            f"{len(capture.files)} file{'s' if len(capture.files) != 1 else ''}{lost}",
            highlight=False,
        )
