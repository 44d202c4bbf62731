"""``onnxkit score --env``: batch scoring on the kit's scoring state machine, the CLI's side.

The contract is :mod:`onnxkit.contract.scoring`. This module checks where the input and the
output live (the scoring role may read only ``scoring/input/`` and write only
``scoring/output/`` of the artifact bucket), starts an execution with a
:class:`~onnxkit.contract.scoring.ScoringRequest`, follows it (the execution, and its
Distributed Map's parts through ListMapRuns / DescribeMapRun), reads ``summary.json`` and
merges the parts into a local file byte-identical to the one ``onnxkit score --model`` writes
over the same model and input: the records are formatted by the same code
(:func:`functions.inference.table.format_records`), one part at a time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

import numpy as np
import orjson

from functions.inference import table
from functions.inference.batch import RowResult
from onnxkit.cloud.errors import CloudError, one_line
from onnxkit.cloud.executions import TERMINAL, execution_arn, execution_name
from onnxkit.contract import scoring as contract
from onnxkit.contract.layout import MANIFEST_FILE, sha256_bytes, version_prefix
from onnxkit.contract.manifest import ManifestError, parse_manifest

_NAME_LIMIT = 80  # Step Functions execution names
MERGE_BATCH = 4096  # records formatted at once: memory stays flat whatever a part holds
READ_CHUNK = 1 << 20
WHY_INPUT = "the scoring state machine may read only that prefix of the kit's bucket"
WHY_OUTPUT = "the scoring state machine may write only under that prefix of the kit's bucket"


# --- where things go ---------------------------------------------------------------------------
def run_name(source: str, now: datetime | None = None) -> str:
    """``score-<input stem>-<UTC time>``: a valid execution name of at most 80 characters."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    stem = PurePosixPath(source.rstrip("/")).stem or "input"
    # Shorten the stem, not the whole name: the prefix says what it is, the stamp makes it unique.
    room = _NAME_LIMIT - len("score--") - len(stamp)
    return execution_name(f"score-{stem[:room]}-{stamp}")


@dataclass(frozen=True)
class Input:
    """The run's input: its s3 uri, and the local file to upload there first (if any)."""

    uri: str
    format: contract.Format
    upload: Path | None = None


def _s3_location(uri: str, option: str) -> tuple[str, str]:
    try:
        return contract.parse_s3_uri(uri)
    except contract.ScoringError as error:
        raise CloudError(f"{option} {error}") from None


def locate_input(s3: Any, bucket: str, source: str, run: str) -> Input:
    """Where the run reads: an object or ``/``-ended prefix under ``scoring/input/`` of the
    kit's bucket, or a local file to upload to ``scoring/input/<run>/<name>``."""
    allowed = f"s3://{bucket}/{contract.SCORING_INPUT_PREFIX}"
    if not source.startswith("s3://"):
        path = Path(source)
        if not path.is_file():
            raise CloudError(f"input file {source} not found (a local file, or {allowed}...)")
        return Input(f"{allowed}{run}/{path.name}", _format(path.name, source), path)
    found, key = _s3_location(source, "--input")
    if found != bucket or not key.startswith(contract.SCORING_INPUT_PREFIX):
        raise CloudError(
            f"--input {source} is outside {allowed}: copy it there ({WHY_INPUT}, least "
            "privilege), or pass a local file and it is uploaded there"
        )
    if key == contract.SCORING_INPUT_PREFIX:
        raise CloudError(f"--input {source} is every input there is: name a file or folder in it")
    if key.endswith("/"):
        return Input(source, _prefix_format(s3, bucket, key, source))
    fmt = _format(key, source)
    if not _exists(s3, bucket, key):
        raise CloudError(f"--input {source} does not exist")
    return Input(source, fmt)


def _format(name: str, source: str) -> contract.Format:
    found = contract.input_format(name)
    if found is None:
        raise CloudError(f"{source}: unsupported input format; use .csv or .jsonl")
    return found


def _prefix_format(s3: Any, bucket: str, prefix: str, source: str) -> contract.Format:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1000).get("Contents", [])
    formats = {contract.input_format(item["Key"]) for item in listed} - {None}
    if not formats:
        raise CloudError(f"--input {source} holds no .csv or .jsonl objects")
    if len(formats) > 1:
        raise CloudError(f"--input {source} mixes CSV and JSON Lines objects: one format a run")
    return cast("contract.Format", formats.pop())


def _exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError  # noqa: PLC0415 - boto is heavy, import on use

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


def locate_output(bucket: str, destination: str | None, run: str) -> tuple[str, Path | None]:
    """The run's output prefix, and the local file to merge it into (if any): ``s3://`` under
    ``scoring/output/``, or a local path (the run writes ``scoring/output/<run>/`` first)."""
    allowed = f"s3://{bucket}/{contract.SCORING_OUTPUT_PREFIX}"
    if destination is None or not destination.startswith("s3://"):
        return f"{allowed}{run}/", None if destination is None else Path(destination)
    found, key = _s3_location(destination, "--output")
    if found != bucket or not key.startswith(contract.SCORING_OUTPUT_PREFIX):
        raise CloudError(
            f"--output {destination} is outside {allowed}: name a folder there ({WHY_OUTPUT}, "
            "least privilege), or a local file"
        )
    if key.rstrip("/") + "/" == contract.SCORING_OUTPUT_PREFIX:
        raise CloudError(f"--output {destination}: name a folder for this run inside it")
    return destination.rstrip("/") + "/", None


def check_output_free(s3: Any, output_uri: str) -> None:
    """Refuse an output folder that holds anything: two runs' parts must never mix."""
    bucket, prefix = contract.parse_s3_uri(output_uri)
    if s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0):
        raise CloudError(f"--output {output_uri} already holds results: name another folder")


# --- the execution -----------------------------------------------------------------------------
def execution_input(request: contract.ScoringRequest) -> str:
    """The execution's input JSON; the part size is left to the deployment's config."""
    body = request.to_dict()
    del body["part_bytes"]
    return json.dumps(body)


def check_name_free(sfn: Any, machine_arn: str, name: str) -> None:
    """Refuse a name in use: its input would be uploaded over the running one's."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        sfn.describe_execution(executionArn=execution_arn(machine_arn, name))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return
        raise
    raise CloudError(f"an execution named {name} exists already: run again in a second")


def start(sfn: Any, machine_arn: str, name: str, request: contract.ScoringRequest) -> str:
    """Start the execution; its ARN."""
    started = sfn.start_execution(
        stateMachineArn=machine_arn, name=name, input=execution_input(request)
    )
    return str(started["executionArn"])


@dataclass(frozen=True)
class Parts:
    """The Distributed Map's items (parts) by state, from DescribeMapRun's ``itemCounts``."""

    total: int
    succeeded: int
    failed: int  # failed, timed out or aborted
    running: int

    @property
    def done(self) -> int:
        """Parts that ended, either way."""
        return self.succeeded + self.failed


@dataclass(frozen=True)
class RunState:
    """A scoring execution as DescribeExecution (and its map run) tell it."""

    arn: str
    name: str
    status: str
    request: contract.ScoringRequest
    started: datetime | None = None
    stopped: datetime | None = None
    error: str | None = None
    cause: str | None = None
    parts: Parts | None = None

    @property
    def ended(self) -> bool:
        """Succeeded, failed, timed out or aborted."""
        return self.status in TERMINAL

    @property
    def seconds(self) -> float | None:
        """How long it ran (or has run so far)."""
        if self.started is None:
            return None
        end = self.stopped or datetime.now(self.started.tzinfo)
        return max(0.0, (end - self.started).total_seconds())

    def failure(self) -> str:
        """Why it did not succeed, in one line (a Lambda error's message, not its JSON)."""
        cause = self.cause or ""
        try:
            parsed = json.loads(cause)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("errorMessage"):
            cause = str(parsed["errorMessage"])
        detail = ": ".join(p for p in (self.error, one_line(cause)[:500]) if p)
        return f"execution {self.name} {self.status}" + (f": {detail}" if detail else "")


def describe(sfn: Any, arn: str) -> RunState:
    """The execution's state, with its map run's part counts when there is one."""
    found = sfn.describe_execution(executionArn=arn)
    try:
        request = contract.decode(found.get("input") or "{}", contract.ScoringRequest)
    except contract.ScoringError as error:
        raise CloudError(f"{arn} is not a scoring execution: its input is {error}") from None
    status = str(found.get("status", "RUNNING"))
    return RunState(
        arn=arn,
        name=str(found.get("name", arn.rsplit(":", 1)[-1])),
        status=status,
        request=request,
        started=found.get("startDate"),
        stopped=found.get("stopDate"),
        error=found.get("error"),
        cause=found.get("cause"),
        parts=map_parts(sfn, arn),
    )


def map_parts(sfn: Any, arn: str) -> Parts | None:
    """The latest map run's part counts; None before the map starts or when they cannot be
    read (progress is a nicety: a role without ListMapRuns still follows the execution)."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        runs = sfn.list_map_runs(executionArn=arn).get("mapRuns") or []
        if not runs:
            return None
        latest = max(runs, key=lambda run: str(run.get("startDate", "")))
        counts = sfn.describe_map_run(mapRunArn=latest["mapRunArn"]).get("itemCounts") or {}
    except ClientError:
        return None
    return Parts(
        total=int(counts.get("total", 0)),
        succeeded=int(counts.get("succeeded", 0)),
        failed=sum(int(counts.get(k, 0)) for k in ("failed", "timedOut", "aborted")),
        running=int(counts.get("running", 0)),
    )


def follow(
    sfn: Any,
    arn: str,
    *,
    interval: float,
    on_update: Callable[[RunState], None],
    sleep: Callable[[float], None] = time.sleep,
) -> RunState:
    """Poll the execution until it ends, telling ``on_update`` each state; the last one."""
    while True:
        state = describe(sfn, arn)
        on_update(state)
        if state.ended:
            return state
        sleep(max(interval, 0.0))


# --- results -----------------------------------------------------------------------------------
def read_summary(s3: Any, output_uri: str) -> contract.Summary | None:
    """``<output>summary.json``; None when the run wrote none."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    bucket, prefix = contract.parse_s3_uri(output_uri)
    key = prefix + contract.SUMMARY_FILE
    try:
        raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise
    try:
        summary: contract.Summary = contract.decode(raw, contract.Summary)
    except contract.ScoringError as error:
        raise CloudError(f"s3://{bucket}/{key}: {error}") from None
    return summary


def part_count(summary: contract.Summary) -> int:
    """The run's parts, scored or failed (a failed part may be in ``parts`` too, or not)."""
    return len({p.part for p in summary.parts} | {p.part for p in summary.failed_parts})


@dataclass(frozen=True)
class OutputModel:
    """What the output format needs of the run's model (what format_records reads of one)."""

    model_name: str
    model_version: str
    task: str
    classes: list[Any] | None


def output_model(s3: Any, bucket: str, pinned: contract.PinnedModel) -> OutputModel:
    """The pinned model's task and classes, from its promoted manifest (checked against the
    digest the run pinned): the CSV header needs the classes before the first record."""
    key = version_prefix(pinned.name, pinned.version) + MANIFEST_FILE
    raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if pinned.manifest_sha256 and sha256_bytes(raw) != pinned.manifest_sha256:
        raise CloudError(f"s3://{bucket}/{key} is not the manifest the run pinned (sha256)")
    try:
        manifest = parse_manifest(raw)
    except ManifestError as error:
        raise CloudError(f"s3://{bucket}/{key}: {error}") from None
    return OutputModel(manifest.model_name, pinned.version, manifest.task, manifest.classes)


def records_bytes(s3: Any, summary: contract.Summary) -> int:
    """The size of the parts' records objects (one listing, for the merge's progress)."""
    bucket, prefix = contract.parse_s3_uri(summary.output_uri)
    wanted = {contract.part_keys(prefix, p.part)[0] for p in summary.parts}
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix + contract.PARTS_FOLDER
    )
    return sum(
        int(item["Size"])
        for page in pages
        for item in page.get("Contents", [])
        if item["Key"] in wanted
    )


def merge(
    s3: Any,
    summary: contract.Summary,
    model: OutputModel,
    destination: Path,
    *,
    id_column: str | None,
    advance: Callable[[int], None] = lambda n: None,
) -> int:
    """Merge the run's parts into ``destination`` in input order, in the local scorer's format
    (JSONL, or CSV by the name), part by part; the rows written. The file appears whole or not
    at all: it is written beside it under a temporary name and renamed at the end."""
    if summary.failed_parts:
        raise CloudError("the run has failed parts: its output is incomplete")
    fmt: table.Format = "csv" if destination.suffix.lower() == ".csv" else "jsonl"
    job = table.Job(summary.format, fmt, None, id_column)
    bucket, prefix = contract.parse_s3_uri(summary.output_uri)
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as handle:
            if fmt == "csv":
                classes = model.classes if model.task == "classification" else None
                handle.write(table.csv_header(classes, id_column))
            rows = 0
            for part in sorted(summary.parts, key=lambda p: p.part):
                if part.first_row != rows:
                    raise CloudError(
                        f"summary.json: part {part.part} starts at row {part.first_row}, "
                        f"after {rows} rows: the parts do not follow each other"
                    )
                if part.rows:
                    body = _part_body(s3, bucket, prefix, part.part)
                    try:
                        rows += merge_part(part, body, model, job, handle, advance)
                    finally:
                        body.close()
            if rows != summary.rows:
                raise CloudError(f"the parts hold {rows} rows, summary.json says {summary.rows}")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, destination)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return rows


def _part_body(s3: Any, bucket: str, prefix: str, part: int) -> IO[bytes]:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    key, _ = contract.part_keys(prefix, part)
    try:
        return cast("IO[bytes]", s3.get_object(Bucket=bucket, Key=key)["Body"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            raise CloudError(
                f"s3://{bucket}/{key} is missing, but summary.json counts its rows"
            ) from None
        raise


def _lines(body: IO[bytes], advance: Callable[[int], None]) -> Iterator[bytes]:
    """The body's non-empty lines, read a MiB at a time."""
    rest = b""
    while chunk := body.read(READ_CHUNK):
        advance(len(chunk))
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from (line for line in lines if line.strip())
    if rest.strip():
        yield rest


def merge_part(
    part: contract.PartSummary,
    body: IO[bytes],
    model: OutputModel,
    job: table.Job,
    out: IO[bytes],
    advance: Callable[[int], None],
) -> int:
    """Write one part's records renumbered into input rows and lines; how many there were."""
    if part.first_line is None:
        raise CloudError(f"summary.json does not know on which line part {part.part} starts")
    where = f"part {part.part:06d}"
    results: list[RowResult] = []
    ids: list[Any] = []
    lines: list[int] = []
    written = 0

    def flush() -> None:
        nonlocal written
        # The local scorer's formatter, fed what the part recorded: identical bytes.
        formatted = table.format_records(
            cast("Any", model), job, results, ids, first_row=part.first_row + written, lines=lines
        )
        out.write(formatted.data)
        written += len(results)
        results.clear()
        ids.clear()
        lines.clear()

    for raw in _lines(body, advance):
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise CloudError(f"{where}: record {written + len(results)} is not JSON") from None
        expected = written + len(results)
        if not isinstance(record, dict) or record.get("part") != part.part:
            raise CloudError(f"{where}: record {expected} is not one of this part's")
        if record.get("part_row") != expected:
            raise CloudError(f"{where}: record {expected} has part_row {record.get('part_row')}")
        if record.get("model_version") != model.model_version:
            raise CloudError(
                f"{where}: record {expected} was scored by {record.get('model_version')}, "
                f"not the run's {model.model_version}"
            )
        results.append(_result(record, model, where))
        ids.append(record.get(job.id_column) if job.id_column else None)
        lines.append(part.first_line + int(record["part_line"]) - 1)
        if len(results) == MERGE_BATCH:
            flush()
    if results:
        flush()
    if written != part.rows:
        raise CloudError(f"{where} holds {written} records, summary.json says {part.rows}")
    return written


def _result(record: dict[str, Any], model: OutputModel, where: str) -> RowResult:
    """The row's result as the scorer had it: float32 scores, labels as they are."""
    prediction = record.get("prediction")
    if model.task != "classification" and prediction is not None:
        prediction = np.float32(prediction)  # a regressor's output is float32, as in the scorer
    probabilities = record.get("probabilities")
    if probabilities is not None and model.classes:
        try:
            probabilities = np.array(
                [probabilities[str(c)] for c in model.classes], dtype=np.float32
            )
        except (KeyError, TypeError):
            raise CloudError(f"{where}: probabilities not by the model's classes") from None
    return RowResult(prediction=prediction, probabilities=probabilities, reason=record.get("error"))
