"""Batch scoring in the cloud: the Plan, Score and Summarize steps of the scoring state machine.

The contract (requests, parts, results, the summary, where each object lives) is
:mod:`onnxkit.contract.scoring`'s. Scoring itself is :mod:`.table`'s and :mod:`.batch`'s, the
code ``onnxkit score`` runs on a laptop, with the function's model loading and digest checks
(:func:`.batch.open_model`). Storage is a small port (:class:`Store`); :class:`S3Store` is its
boto3 adapter, and tests run the steps over moto's S3 through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from onnxkit.contract import layout
from onnxkit.contract import scoring as contract
from onnxkit.contract.manifest import ManifestError, parse_manifest
from onnxkit.contract.pointer import PointerError, parse_pointer

from . import table
from .batch import MissingColumns, feature_positions, open_model
from .predictor import Model
from .runtime import DEFAULT_CACHE
from .source import S3Fetcher, S3Location

CHUNK_ROWS = 10_000  # rows scored per session.run inside a part (memory stays bounded)
READ_BYTES = 1 << 20


class Store(Protocol):
    """The object storage the steps read and write (the artifact bucket)."""

    def read(self, bucket: str, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""

    def listing(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under ``prefix``, in key order."""

    def size(self, bucket: str, key: str) -> int | None:
        """The object's size, or None when it does not exist."""

    def lines(self, bucket: str, key: str, start: int) -> Iterator[bytes]:
        """The object's lines (each with its line break) from byte ``start`` on, streamed."""

    def write(self, bucket: str, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (the bucket's default encryption applies)."""


class S3Store:
    """:class:`Store` over a boto3 S3 client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._fetcher = S3Fetcher(client)

    def read(self, bucket: str, key: str) -> bytes | None:
        """GetObject, as the model loader reads (None when missing, FetchFailed otherwise)."""
        return self._fetcher.read(S3Location(bucket, key))

    def listing(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        """ListObjectsV2, every page."""
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            found += [(item["Key"], item["Size"]) for item in page.get("Contents", [])]
        return sorted(found)

    def size(self, bucket: str, key: str) -> int | None:
        """HeadObject's ContentLength; None when there is no such object."""
        from botocore.exceptions import ClientError  # noqa: PLC0415  # Lambda's runtime has it

        try:
            return int(self.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    def lines(self, bucket: str, key: str, start: int) -> Iterator[bytes]:
        """A ranged GetObject from ``start``, read 1 MiB at a time (closed when dropped)."""
        body = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-")["Body"]
        try:
            yield from _split_lines(iter(lambda: body.read(READ_BYTES), b""))
        finally:
            body.close()

    def write(self, bucket: str, key: str, data: bytes) -> None:
        """PutObject."""
        self.client.put_object(Bucket=bucket, Key=key, Body=data)


def _split_lines(blocks: Iterator[bytes]) -> Iterator[bytes]:
    tail = b""
    for block in blocks:
        pieces = (tail + block).split(b"\n")
        tail = pieces.pop()
        for piece in pieces:
            yield piece + b"\n"
    if tail:
        yield tail


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --- Plan ------------------------------------------------------------------------------------
def plan(
    request: contract.ScoringRequest,
    *,
    bucket: str,
    model_name: str,
    store: Store,
    part_bytes: int = contract.DEFAULT_PART_BYTES,
) -> contract.Plan:
    """Pin the live model, check the input against it, write the parts (``plan.json``).

    ScoringError (one line) when the request or the input cannot be scored."""
    started_at = _now()
    in_bucket, in_key = contract.parse_s3_uri(request.input_uri)
    out_bucket, out_prefix = contract.parse_s3_uri(request.output_uri)
    out_prefix = out_prefix if out_prefix.endswith("/") else out_prefix + "/"
    for where, found, key, prefix in (
        (request.input_uri, in_bucket, in_key, contract.SCORING_INPUT_PREFIX),
        (request.output_uri, out_bucket, out_prefix, contract.SCORING_OUTPUT_PREFIX),
    ):
        if found != bucket or not key.startswith(prefix) or key == prefix:
            raise contract.ScoringError(
                f"{where} is outside s3://{bucket}/{prefix}: the scoring function may read and "
                "write only there"
            )
    part_bytes = request.part_bytes or part_bytes
    if part_bytes < 1:
        raise contract.ScoringError("part_bytes must be at least 1")
    model, features = pin_model(store, bucket, model_name)
    objects = _input_objects(store, bucket, in_key)
    formats = {contract.input_format(key) for key, _ in objects}
    if len(formats) != 1:
        raise contract.ScoringError(
            f"{request.input_uri} mixes CSV and JSON Lines objects: score them separately"
        )
    fmt = formats.pop()
    assert fmt is not None  # _input_objects keeps only .csv/.jsonl keys
    parts: list[contract.Part] = []
    for key, size in objects:
        header, data_start, first_line = None, 0, 1
        if fmt == "csv":
            header, data_start, first_line = _csv_header(store, bucket, key)
            try:
                feature_positions(features, header)
            except MissingColumns as error:
                raise contract.ScoringError(f"s3://{bucket}/{key}: {error}") from None
            if request.id_column is not None and request.id_column not in header:
                raise contract.ScoringError(
                    f"s3://{bucket}/{key} has no id column {request.id_column!r}"
                )
        offsets = list(range(data_start, size, part_bytes)) or [data_start]
        for index, start in enumerate(offsets):
            parts.append(
                contract.Part(
                    part=len(parts),
                    key=key,
                    start=start,
                    end=min(start + part_bytes, size),
                    size=size,
                    header=header,
                    data_start=data_start,
                    first_line=first_line if index == 0 else None,
                )
            )
    plan_key = out_prefix + contract.PLAN_FILE
    store.write(bucket, plan_key, contract.encode(parts))
    return contract.Plan(
        bucket=bucket,
        output_prefix=out_prefix,
        plan_key=plan_key,
        format=fmt,
        model=model,
        id_column=request.id_column,
        objects=len(objects),
        parts=len(parts),
        bytes=sum(size for _, size in objects),
        started_at=started_at,
    )


def pin_model(store: Store, bucket: str, model_name: str) -> tuple[contract.PinnedModel, list[str]]:
    """The production pointer's model now, and its feature names (from its pinned manifest)."""
    raw = store.read(bucket, layout.pointer_key(model_name))
    if raw is None:
        raise contract.ScoringError(f"no {model_name} model has been promoted yet")
    try:
        pointer = parse_pointer(raw)
    except PointerError as error:
        raise contract.ScoringError(f"the production pointer is invalid: {error}") from None
    manifest_bucket, manifest_key = contract.parse_s3_uri(pointer.manifest_uri)
    manifest_raw = store.read(manifest_bucket, manifest_key)
    if manifest_raw is None:
        raise contract.ScoringError(f"the live model's manifest {pointer.manifest_uri} is missing")
    if pointer.manifest_sha256 and layout.sha256_bytes(manifest_raw) != pointer.manifest_sha256:
        raise contract.ScoringError(
            f"the live model's manifest {pointer.manifest_uri} does not match the pointer's digest"
        )
    try:
        manifest = parse_manifest(manifest_raw)
    except ManifestError as error:
        raise contract.ScoringError(f"the live model's manifest is invalid: {error}") from None
    pinned = contract.PinnedModel(
        name=pointer.model_name,
        version=pointer.model_version,
        uri=pointer.model_uri,
        sha256=pointer.sha256,
        manifest_sha256=pointer.manifest_sha256,
    )
    return pinned, manifest.signature.feature_names


def _input_objects(store: Store, bucket: str, key: str) -> list[tuple[str, int]]:
    if key.endswith("/"):
        found = [(k, s) for k, s in store.listing(bucket, key) if contract.input_format(k)]
        if not found:
            raise contract.ScoringError(f"no .csv or .jsonl objects under s3://{bucket}/{key}")
        return found
    if contract.input_format(key) is None:
        raise contract.ScoringError(f"s3://{bucket}/{key}: name a .csv or .jsonl object")
    size = store.size(bucket, key)
    if size is None:
        raise contract.ScoringError(f"s3://{bucket}/{key} does not exist")
    return [(key, size)]


def _csv_header(store: Store, bucket: str, key: str) -> tuple[list[str], int, int]:
    """A CSV object's header, where its first record starts, and that record's line."""
    try:
        first = next(table.records(store.lines(bucket, key, 0), "csv", 1), None)
    except table.BrokenRecord as error:
        raise contract.ScoringError(f"s3://{bucket}/{key} {error}") from None
    if first is None:
        raise contract.ScoringError(f"s3://{bucket}/{key} is empty: a CSV input needs a header")
    record, start, consumed = first
    try:
        header = table.parse_header(record)
    except ValueError as error:
        raise contract.ScoringError(f"s3://{bucket}/{key}: {error}") from None
    return header, consumed, table.line_after(record, start)


# --- Score (one child of the map) ------------------------------------------------------------
@dataclass
class Models:
    """Models loaded in this execution environment, by digest: a warm function loads once."""

    cache_dir: Path = DEFAULT_CACHE
    threads: int | None = None
    loaded: dict[str, Model] = field(default_factory=dict)

    def get(self, pinned: contract.PinnedModel) -> Model:
        """The pinned model, loaded with the function's digest checks."""
        model = self.loaded.get(pinned.sha256)
        if model is None:
            model = open_model(
                pinned.uri,
                pinned.sha256,
                pinned.manifest_sha256,
                cache_dir=self.cache_dir,
                threads=self.threads,
            )
            self.loaded = {pinned.sha256: model}  # one run, one model: drop any older one
        return model


def score_parts(
    parts: Sequence[contract.Part],
    batch_input: contract.BatchInput,
    *,
    store: Store,
    models: Models,
    clock: Callable[[], float] = time.perf_counter,
) -> list[contract.PartResult]:
    """Score each part into ``parts/<part>.jsonl`` and then its result ``parts/<part>.json``."""
    model = models.get(batch_input.model)
    return [score_part(part, batch_input, model, store=store, clock=clock) for part in parts]


def score_part(
    part: contract.Part,
    batch_input: contract.BatchInput,
    model: Model,
    *,
    store: Store,
    clock: Callable[[], float] = time.perf_counter,
) -> contract.PartResult:
    """One part: its records scored in chunks, the records object, then the result object."""
    started = clock()
    job = table.Job(
        batch_input.format,
        "jsonl",
        tuple(part.header) if part.header is not None else None,
        batch_input.id_column,
    )
    # Inputs and outputs live in the one artifact bucket (the scoring role's only grant).
    bucket = batch_input.bucket
    counted = _CountedLines(part, store.lines(bucket, part.key, _read_from(part)))
    stop = part.end - counted.first_start
    out: list[bytes] = []
    scored = rejected = rows = 0
    rejections: list[contract.Rejection] = []
    pending = table.records(counted, batch_input.format, 1, stop=stop)
    # A part's records say where they are within the part (the summary places the part).
    fields: dict[str, Any] = {
        "lead": {"part": part.part},
        "row_field": "part_row",
        "line_field": "part_line",
    }
    while batch := list(islice(pending, CHUNK_ROWS)):
        chunk = [
            record.removeprefix(table.UTF8_BOM) if part.start == 0 and rows + i == 0 else record
            for i, (record, _, _) in enumerate(batch)
        ]
        lines = [line for _, line, _ in batch]
        done = None
        if lines[-1] - lines[0] == len(lines) - 1:  # one line a record, no blank line between
            done = table.score_plain_block(
                model, job, b"".join(chunk), first_row=rows, first_line=lines[0], **fields
            )
        if done is None:
            results, ids = table.score_records(model, job, chunk)
            done = table.format_records(
                model, job, results, ids, first_row=rows, lines=lines,
                keep_rejections=contract.MAX_REJECTED_IN_SUMMARY - len(rejections), **fields,
            )  # fmt: skip
        out.append(done.data)
        scored, rejected, rows = scored + done.scored, rejected + done.rejected, rows + len(batch)
        rejections += [
            contract.Rejection(part_row=row, part_line=line, reason=reason)
            for row, line, reason in done.rejections
        ]
    data_key, result_key = contract.part_keys(batch_input.output_prefix, part.part)
    store.write(bucket, data_key, b"".join(out))
    result = contract.PartResult(
        part=part.part,
        key=part.key,
        rows=rows,
        scored=scored,
        rejected=rejected,
        lines=counted.own,
        rejections=rejections,
        model_version=model.model_version,
        seconds=round(clock() - started, 6),
    )
    store.write(bucket, result_key, contract.encode(result))
    return result


def _read_from(part: contract.Part) -> int:
    # A later part starts one byte early and drops the line it lands in: that line started
    # before the part (or is the line break just before it) and belongs to the part before.
    return part.start if part.start <= part.data_start else part.start - 1


class _CountedLines:
    """A part's lines (the partial first one dropped), counting those that start in it."""

    def __init__(self, part: contract.Part, lines: Iterator[bytes]) -> None:
        self._lines = lines
        self._offset = _read_from(part)
        if self._offset < part.start:
            dropped = next(self._lines, b"")
            self._offset += len(dropped)
        self.first_start = self._offset  # absolute offset of the part's first line
        self._end = part.end
        self.own = 0  # lines read that start before the part's end: the part's own lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._lines:
            self.own += self._offset < self._end
            self._offset += len(line)
            yield line


# --- Summarize -------------------------------------------------------------------------------
def summarize(
    plan_result: contract.Plan, request: contract.ScoringRequest, *, store: Store
) -> contract.Summary:
    """Account for every row from the plan and the part results; write ``summary.json``."""
    bucket = plan_result.bucket
    raw = store.read(bucket, plan_result.plan_key)
    if raw is None:
        raise contract.ScoringError(f"the plan s3://{bucket}/{plan_result.plan_key} is missing")
    parts = contract.decode(raw, list[contract.Part])
    summaries: list[contract.PartSummary] = []
    failed: list[contract.Part] = []
    rejected_rows: list[contract.RejectedRow] = []
    row = 0
    line: int | None = None
    for part in parts:
        if part.first_line is not None:
            line = part.first_line
        result_raw = store.read(bucket, contract.part_keys(plan_result.output_prefix, part.part)[1])
        if result_raw is None:
            failed.append(part)
            line = None  # how many lines the failed part holds is unknown
            continue
        result = contract.decode(result_raw, contract.PartResult)
        summaries.append(
            contract.PartSummary(
                part=part.part,
                key=part.key,
                start=part.start,
                end=part.end,
                first_row=row,
                first_line=line,
                rows=result.rows,
                scored=result.scored,
                rejected=result.rejected,
            )
        )
        for rejection in result.rejections:
            if len(rejected_rows) < contract.MAX_REJECTED_IN_SUMMARY:
                rejected_rows.append(
                    contract.RejectedRow(
                        row=row + rejection.part_row,
                        line=None if line is None else line + rejection.part_line - 1,
                        key=part.key,
                        reason=rejection.reason,
                    )
                )
        row += result.rows
        line = None if line is None else line + result.lines
    finished_at = _now()
    started = datetime.fromisoformat(plan_result.started_at)
    summary = contract.Summary(
        input_uri=request.input_uri,
        output_uri=f"s3://{bucket}/{plan_result.output_prefix}",
        format=plan_result.format,
        model=plan_result.model,
        rows=sum(s.rows for s in summaries),
        scored=sum(s.scored for s in summaries),
        rejected=sum(s.rejected for s in summaries),
        rejected_rows=rejected_rows,
        failed_parts=failed,
        parts=summaries,
        started_at=plan_result.started_at,
        finished_at=finished_at,
        seconds=round((datetime.fromisoformat(finished_at) - started).total_seconds(), 3),
    )
    store.write(bucket, plan_result.output_prefix + contract.SUMMARY_FILE, contract.encode(summary))
    return summary
