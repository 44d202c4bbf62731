"""``onnxkit score`` on this machine: a CSV/JSONL file scored in chunks, in parallel, resumably.

The scoring itself is the inference runtime's (:mod:`functions.inference.batch`: the API's
decoding rules, the function's model loading and digest checks). This module streams the
input, hands chunks to worker processes (each loads the model once), writes their outputs in
input order and records each committed chunk.

Input: CSV with a header row, or JSON Lines (objects or arrays). It is read in binary, record by
record (a CSV record ends at a line break outside quotes), so memory stays flat whatever the
file's size and every chunk knows its byte offset. Blank lines are not rows.

Output (JSON Lines, or CSV when the name ends in ``.csv``): one record per input row, in input
order: ``row`` (0-based data row, as ``onnxkit predict`` numbers them), ``line`` (1-based line
of the input where the row starts), the ``--id-column``'s value under its own name,
``prediction``, the probabilities (JSONL: ``probabilities`` by class; CSV: ``proba_<class>``),
``model_version`` and ``error`` (null / empty when scored, else why the row was refused).

Resume: chunks are written whole, and four times a second (and when the run ends or stops)
the output is fsynced and ``<output>.progress.json`` replaced (written, fsynced, renamed) with
the input offset reached, the output's committed length and the counts. Running the same
command again checks that the record belongs to this input (size, mtime, a hash of its first
MiB), this model (digest) and these options, truncates the output to the committed length and
continues from the offset: nothing lost, nothing written twice. A finished run marks the
record ``complete``; scoring into a complete output is refused (``--overwrite`` starts
afresh), as is writing over a file that has no record.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from functions.inference import table
from onnxkit.contract import scoring as contract
from onnxkit.errors import KitError

PROGRESS_SUFFIX = ".progress.json"
PROGRESS_VERSION = 1
HEAD_BYTES = 1 << 20  # the input's first MiB is hashed to recognise it on resume
DEFAULT_BATCH_ROWS = 5000
# Chunks are written as they come and committed (output fsynced, then the progress record)
# at most this often: three fsyncs cost about 15 ms here, a 5000-row chunk about 10 ms.
COMMIT_SECONDS = 0.25
MAX_SAMPLES = table.MAX_SAMPLES  # rejected rows kept for the summary (the output lists all)


class BrokenInput(KitError):
    """The input's structure breaks (a quote that never closes): nothing after it is a row."""


InputFormat = Literal["csv", "jsonl", "parquet"]
PARQUET_SUFFIXES = (".parquet", ".pq")


def input_format(path: Path) -> InputFormat:
    """``csv``, ``jsonl`` or ``parquet``, from the input's name."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return "parquet"
    found = contract.input_format(path.name)
    if found is None:
        raise KitError(
            f"{path}: unsupported input format {path.suffix or '(none)'}; use .csv, .jsonl or "
            ".parquet"
        )
    return found


def output_format(path: Path) -> table.Format:
    """``csv`` when the output's name ends in .csv, else ``jsonl``."""
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def progress_path(output: Path) -> Path:
    """The record of committed chunks beside ``output``."""
    return output.with_name(output.name + PROGRESS_SUFFIX)


# --- model -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to load the model exactly as the main process did."""

    uri: str
    sha256: str | None = None
    manifest_sha256: str | None = None


def workdir_model(workdir: Path, name: str | None) -> ModelRef:
    """The work directory's live model (its production pointer, as ``run --serve`` serves it)."""
    from onnxkit.local.serving import production_pointer  # noqa: PLC0415  # pipeline code

    if name is None:
        pointers = sorted((workdir / "models").glob("*/production.json"))
        if not pointers:
            raise KitError(f"no promoted model in {workdir} (run `onnxkit run` first)")
        if len(pointers) > 1:
            names = ", ".join(p.parent.name for p in pointers)
            raise KitError(f"{workdir} has several promoted models ({names}): pass --name")
        name = pointers[0].parent.name
    _, path = production_pointer(workdir, name)
    return ModelRef(str(path))


def load(ref: ModelRef, threads: int | None = None) -> Any:
    """The model (functions.inference.predictor.Model); KitError when it cannot be served."""
    from functions.inference.batch import open_model  # noqa: PLC0415  # loads onnxruntime
    from functions.inference.source import ModelSourceError  # noqa: PLC0415

    try:
        return open_model(
            ref.uri,
            ref.sha256,
            ref.manifest_sha256,
            cache_dir=Path.home() / ".cache" / "onnxkit" / "models",
            threads=threads,
        )
    except ModelSourceError as error:
        raise KitError(f"cannot load the model: {error}") from None
    except OSError as error:
        raise KitError(f"cannot load the model {ref.uri}: {error}") from None


# --- reading ---------------------------------------------------------------------------------
@dataclass
class Chunk:
    """Consecutive records of the input: their bytes, first lines and data row numbers.

    A run of one-line CSV records comes as one ``block`` (a record a line, no record list):
    the worker scores it whole when it can and splits it into records when it cannot."""

    index: int
    first_row: int
    records: list[bytes]
    lines: Sequence[int]
    end_offset: int  # input byte offset after the chunk
    next_line: int  # the line number the next record would start on
    block: bytes = b""
    columns: Any = None  # a Parquet input's rows: a pyarrow RecordBatch

    @property
    def size(self) -> int:
        """How many records (rows) the chunk holds."""
        return len(self.lines)

    def split(self) -> list[bytes]:
        """The chunk's records, one bytes object each."""
        return self.block.splitlines(keepends=True) if self.block else self.records  # \n only


def read_header(path: Path) -> tuple[list[str], int, int]:
    """A CSV input's header (BOM dropped), the byte offset after it and the next line."""
    with open_input(path) as handle:
        try:
            record, start, offset = next(_records(handle, "csv", 1))
        except StopIteration:
            raise KitError(f"{path} is empty: a CSV input needs a header row") from None
    try:
        header = table.parse_header(record)
    except ValueError as error:
        raise KitError(f"{path}: {error}") from None
    return header, offset, table.line_after(record, start)


def _records(handle: IO[bytes], fmt: table.Format, line: int) -> Iterator[tuple[bytes, int, int]]:
    """(record, its first line, offset after it) from the handle's position on."""
    base = handle.tell()
    try:
        for record, start, consumed in table.records(iter(handle.readline, b""), fmt, line):
            yield record, start, base + consumed
    except table.BrokenRecord as error:
        raise BrokenInput(str(error)) from None


def open_input(path: Path) -> IO[bytes]:
    """The input opened for reading bytes; KitError when it cannot be."""
    try:
        return path.open("rb")
    except OSError as error:
        raise KitError(f"cannot read {path}: {error.strerror or error}") from None


def chunks(
    handle: IO[bytes],
    fmt: table.Format,
    *,
    batch_rows: int,
    first_row: int,
    line: int,
    index: int = 0,
) -> Iterator[Chunk]:
    """The input from the handle's position, ``batch_rows`` records at a time."""
    records: list[bytes] = []
    lines: list[int] = []
    row = first_row
    offset = handle.tell()
    next_line = line
    if fmt == "csv":
        # Blocks of one-line records first (no per-line Python); the rest, if any, below.
        row_bytes = 64.0  # a guess, then what the blocks so far held
        while (piece := _plain_block(handle, batch_rows, row_bytes)) is not None:
            block, count, offset = piece
            row_bytes = len(block) / count
            yield Chunk(
                index, row, [], range(next_line, next_line + count), offset, next_line + count,
                block,
            )  # fmt: skip
            index, row, next_line = index + 1, row + count, next_line + count
        handle.seek(offset)
        line = next_line
    try:
        for raw, start, offset in _records(handle, fmt, line):
            record = raw.removeprefix(table.UTF8_BOM) if fmt == "jsonl" and row == 0 else raw
            records.append(record)
            lines.append(start)
            next_line = table.line_after(record, start)
            if len(records) == batch_rows:
                yield Chunk(index, row, records, lines, offset, next_line)
                index, row = index + 1, row + len(records)
                records, lines = [], []
    except BrokenInput:
        if records:  # the rows before the break are still scored and written
            yield Chunk(index, row, records, lines, offset, next_line)
        raise
    if records:
        yield Chunk(index, row, records, lines, offset, next_line)


def _plain_block(handle: IO[bytes], most: int, row_bytes: float) -> tuple[bytes, int, int] | None:
    """Up to ``most`` one-line records of a CSV input from the handle's position, the number of
    them and the offset after them, when every line read is a record: no quote (a record may
    span lines), no blank line (not a row), no carriage return. None at the end, at a line
    without a line break or longer than a block, or at a block that breaks the rule:
    :func:`table.records` reads on from there (the caller seeks back to the offset last
    returned)."""
    start = handle.tell()
    block = handle.read(max(int(most * row_bytes), 1 << 16))  # about ``most`` records
    end = block.rfind(b"\n") + 1
    if not end:
        return None
    block = block[:end]
    if b'"' in block or b"\r" in block or b"\n\n" in block or block.startswith(b"\n"):
        return None
    count = block.count(b"\n")
    if count > most:  # at most ``most``: the unit of work and of resume, as --batch-rows says
        block, count = block[: len(block) - len(block.split(b"\n", most)[-1])], most
    handle.seek(start + len(block))
    return block, count, start + len(block)


def parquet_header(path: Path) -> tuple[str, ...]:
    """A Parquet input's column names (from its footer); KitError when it is not Parquet."""
    from onnxkit.local import columnar  # noqa: PLC0415  # pyarrow, for Parquet only

    try:
        return columnar.parquet_input(path).header
    except columnar.ParquetProblem as error:
        raise KitError(f"{path}: {error}") from None


def parquet_pieces(
    path: Path, job: Job, progress: Progress, *, features: Sequence[str], batch_rows: int
) -> Iterator[Chunk]:
    """A Parquet input's chunks from the progress record's next row: the columns the model and
    the id need, ``batch_rows`` rows at a time. Rows, not bytes, locate a resume; a chunk's
    ``end_offset`` is the bytes' share of the rows read, for the progress bar."""
    from onnxkit.local import columnar  # noqa: PLC0415

    wanted = [*features, *([job.table.id_column] if job.table.id_column else [])]
    total = columnar.parquet_input(path).rows
    size = progress.input["size"]
    row, index = progress.next_row, progress.chunks
    try:
        for rows in columnar.parquet_chunks(path, wanted, batch_rows=batch_rows, first_row=row):
            count = rows.num_rows
            end = size if row + count >= total else size * (row + count) // max(total, 1)
            lines = range(row + 2, row + 2 + count)  # the table's CSV: the header is line 1
            yield Chunk(index, row, [], lines, end, row + 2 + count, columns=rows)
            index, row = index + 1, row + count
    except columnar.ParquetProblem as error:
        raise BrokenInput(f"{error}") from None


# --- one chunk, in a worker ------------------------------------------------------------------
@dataclass
class ChunkResult:
    """A chunk's output bytes and counts."""

    index: int
    data: bytes
    scored: int
    rejected: int
    samples: list[tuple[int, str]]  # (line, reason) of the first rejected rows


@dataclass(frozen=True)
class Job:
    """What every chunk of a run shares: the model to load, the table's shape and the input's
    format (a Parquet input's table is read as the CSV of the same table: ``table`` says csv)."""

    model: ModelRef
    table: table.Job
    input_format: InputFormat = "csv"


_worker: dict[str, Any] = {}


def init_worker(job: Job) -> None:
    """A worker process's start: load the model once (one ONNX Runtime thread: one core)."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    _worker["job"] = job
    _worker["model"] = load(job.model, threads=1)


def work(chunk: Chunk) -> ChunkResult:
    """Score one chunk in this worker."""
    return score_chunk(_worker["model"], _worker["job"], chunk)


def score_chunk(model: Any, job: Job, chunk: Chunk) -> ChunkResult:
    """Parse, score and format one chunk (the cloud scoring function's code)."""
    from onnxkit.local import columnar  # noqa: PLC0415  # pyarrow: in the workers only

    if chunk.columns is not None:
        try:
            done = columnar.score_parquet_batch(
                model, job.table, chunk.columns, first_row=chunk.first_row
            )
        except columnar.ParquetProblem as error:
            raise KitError(f"cannot score the Parquet input: {error}") from None
        return ChunkResult(chunk.index, done.data, done.scored, done.rejected, done.samples)
    records = chunk.records
    if chunk.block:
        whole = columnar.score_csv_block(
            model, job.table, chunk.block, first_row=chunk.first_row, first_line=chunk.lines[0]
        )
        if whole is not None:
            return ChunkResult(chunk.index, whole.data, whole.scored, 0, [])
        records = chunk.split()
    results, ids = table.score_records(model, job.table, records)
    out = table.format_records(
        model, job.table, results, ids, first_row=chunk.first_row, lines=chunk.lines
    )
    return ChunkResult(chunk.index, out.data, out.scored, out.rejected, out.samples)


# --- progress record -------------------------------------------------------------------------
@dataclass
class Progress:
    """The committed state of one output: where in the input, how much output, the counts."""

    input: dict[str, Any]
    model: dict[str, Any]
    options: dict[str, Any]
    input_offset: int
    output_bytes: int
    next_row: int = 0
    next_line: int = 1
    chunks: int = 0
    scored: int = 0
    rejected: int = 0
    samples: list[list[Any]] = field(default_factory=list)
    complete: bool = False
    version: int = PROGRESS_VERSION


def input_identity(path: Path) -> dict[str, Any]:
    """What recognises the input again: size, mtime and a hash of its first MiB."""
    stat = path.stat()
    with open_input(path) as handle:
        head = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_sha256": head}


def read_progress(path: Path) -> Progress | None:
    """The progress record, or None when there is none; KitError when it is unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise KitError(f"cannot read {path}: {error.strerror}") from None
    try:
        data = orjson.loads(raw)
        if data.get("version") != PROGRESS_VERSION:
            raise ValueError("unknown version")
        return Progress(**data)
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        raise KitError(
            f"{path} is not an onnxkit score progress record; remove it or pass --overwrite"
        ) from None


def write_progress(path: Path, progress: Progress) -> None:
    """Replace the record atomically and durably (write, fsync, rename, fsync the folder)."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as handle:
        handle.write(orjson.dumps(asdict(progress)))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# --- a run -----------------------------------------------------------------------------------
@dataclass
class Summary:
    """What a run did (counts include the rows committed before a resume)."""

    rows: int
    scored: int
    rejected: int
    model_name: str
    model_version: str
    seconds: float
    resumed_rows: int
    output: Path
    samples: list[list[Any]]


def score_file(
    *,
    model_ref: ModelRef,
    input_path: Path,
    output: Path,
    id_column: str | None = None,
    workers: int = 1,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    overwrite: bool = False,
    progress_bar: Callable[[int, int], Any] | None = None,
    on_start: Callable[[Any, int], None] | None = None,
) -> Summary:
    """Score ``input_path`` into ``output`` (see the module's docstring); KitError on bad input.

    ``progress_bar(total_bytes, done_bytes)`` is a context manager yielding ``advance(bytes)``;
    ``on_start(model, resumed_rows)`` is told what is about to run."""
    started = time.perf_counter()
    if workers < 1:
        raise KitError("--workers must be at least 1")
    if batch_rows < 1:
        raise KitError("--batch-rows must be at least 1")
    if not input_path.is_file():
        raise KitError(f"input file {input_path} not found")
    in_fmt, out_fmt = input_format(input_path), output_format(output)
    if output.resolve() == input_path.resolve():
        raise KitError("--output must not be the input file")
    model = load(model_ref)
    header: list[str] | None = None
    start_offset, start_line = 0, 1
    if in_fmt == "parquet":
        header, start_line = list(parquet_header(input_path)), 2
    elif in_fmt == "csv":
        header, start_offset, start_line = read_header(input_path)
    if header is not None:
        from functions.inference.batch import MissingColumns, feature_positions  # noqa: PLC0415

        try:
            feature_positions([spec.name for spec in model.features], header)
        except MissingColumns as error:
            raise KitError(f"{input_path}: {error}") from None
        if id_column is not None and id_column not in header:
            raise KitError(f"{input_path} has no id column {id_column!r}")
    classes = model.classes if model.task == "classification" else None
    identity = input_identity(input_path)
    model_facts = {"name": model.model_name, "version": model.model_version, "sha256": model.sha256}
    options = {"id_column": id_column, "output_format": out_fmt, "input_format": in_fmt}
    record_path = progress_path(output)
    progress = None if overwrite else read_progress(record_path)
    if progress is not None:
        _check_resumable(progress, record_path, identity, model_facts, options, output)
    elif output.exists() and not overwrite and output.stat().st_size > 0:
        raise KitError(
            f"{output} exists and has no progress record ({record_path.name}): pass --overwrite "
            "or another --output"
        )
    resumed = progress.next_row if progress is not None else 0
    try:
        handle = output.open("r+b" if progress is not None else "wb")
    except OSError as error:
        raise KitError(f"cannot write {output}: {error.strerror}") from None
    with handle:
        if progress is None:
            if out_fmt == "csv":
                handle.write(table.csv_header(classes, id_column))
            handle.flush()
            os.fsync(handle.fileno())
            progress = Progress(
                input=identity,
                model=model_facts,
                options=options,
                input_offset=start_offset,
                output_bytes=handle.tell(),
                next_line=start_line,
            )
            write_progress(record_path, progress)
        else:
            handle.truncate(progress.output_bytes)
        handle.seek(progress.output_bytes)
        if on_start is not None:
            on_start(model, resumed)
        cells: table.Format = "csv" if in_fmt == "parquet" else in_fmt
        shape = table.Job(cells, out_fmt, tuple(header) if header else None, id_column)
        job = Job(model_ref, shape, in_fmt)
        try:
            _run(
                job=job,
                model=model,
                input_path=input_path,
                handle=handle,
                progress=progress,
                record_path=record_path,
                workers=workers,
                batch_rows=batch_rows,
                progress_bar=progress_bar,
            )
        except BrokenInput as error:
            raise BrokenInput(
                f"{input_path} {error}; stopped there: the {progress.next_row} rows before it "
                f"are in {output}"
            ) from None
    progress.complete = True
    write_progress(record_path, progress)
    return Summary(
        rows=progress.next_row,
        scored=progress.scored,
        rejected=progress.rejected,
        model_name=model.model_name,
        model_version=model.model_version,
        seconds=time.perf_counter() - started,
        resumed_rows=resumed,
        output=output,
        samples=progress.samples,
    )


def _check_resumable(
    progress: Progress,
    record_path: Path,
    identity: dict[str, Any],
    model_facts: dict[str, Any],
    options: dict[str, Any],
    output: Path,
) -> None:
    if progress.complete:
        raise KitError(
            f"{output} is already complete ({progress.next_row} rows, model "
            f"{progress.model.get('version')}); pass --overwrite or another --output"
        )
    if progress.input != identity:
        raise KitError(
            f"{record_path.name} records a run over another input (or the input changed since): "
            "pass --overwrite or another --output"
        )
    if progress.model.get("sha256") != model_facts["sha256"]:
        raise KitError(
            f"{output} was started with model {progress.model.get('version')} "
            f"(sha256 {progress.model.get('sha256')}), not {model_facts['version']}: pass "
            "--overwrite or another --output"
        )
    if progress.options != options:
        raise KitError(
            f"{output} was started with other options ({progress.options}): pass --overwrite "
            "or another --output"
        )
    try:
        size = output.stat().st_size
    except FileNotFoundError:
        size = -1
    if size < progress.output_bytes:
        raise KitError(
            f"{output} is shorter than its progress record says ({size} < "
            f"{progress.output_bytes} bytes): pass --overwrite"
        )


def _run(
    *,
    job: Job,
    model: Any,
    input_path: Path,
    handle: IO[bytes],
    progress: Progress,
    record_path: Path,
    workers: int,
    batch_rows: int,
    progress_bar: Callable[[int, int], Any] | None,
) -> None:
    total = progress.input["size"]
    with contextlib.ExitStack() as stack:
        if job.input_format == "parquet":
            names = [spec.name for spec in model.features]
            pieces = parquet_pieces(
                input_path, job, progress, features=names, batch_rows=batch_rows
            )
        else:
            source = stack.enter_context(open_input(input_path))
            source.seek(progress.input_offset)
            pieces = chunks(
                source,
                job.table.input_format,
                batch_rows=batch_rows,
                first_row=progress.next_row,
                line=progress.next_line,
                index=progress.chunks,
            )
        bar = progress_bar(total, progress.input_offset) if progress_bar else None
        advance = bar.__enter__() if bar is not None else (lambda n: None)
        committed_at = time.monotonic()
        uncommitted = False
        try:
            for chunk, result in _results(job, model, pieces, workers):
                handle.write(result.data)
                done = progress.input_offset
                progress.input_offset = chunk.end_offset
                progress.output_bytes = handle.tell()
                progress.next_row = chunk.first_row + chunk.size
                progress.next_line = chunk.next_line
                progress.chunks = chunk.index + 1
                progress.scored += result.scored
                progress.rejected += result.rejected
                room = MAX_SAMPLES - len(progress.samples)
                progress.samples.extend([list(s) for s in result.samples[: max(room, 0)]])
                uncommitted = True
                if time.monotonic() - committed_at >= COMMIT_SECONDS:
                    _commit(handle, record_path, progress)
                    committed_at, uncommitted = time.monotonic(), False
                advance(chunk.end_offset - done)
        finally:
            # Whole chunks only are ever written before progress moves, so what is written
            # can be committed however the loop ends (a broken input, an interrupt).
            if uncommitted:
                _commit(handle, record_path, progress)
            if bar is not None:
                bar.__exit__(None, None, None)


def _commit(handle: IO[bytes], record_path: Path, progress: Progress) -> None:
    """Make the output durable up to ``progress.output_bytes``, then record that."""
    handle.flush()
    os.fsync(handle.fileno())
    write_progress(record_path, progress)


def _results(
    job: Job, model: Any, pieces: Iterator[Chunk], workers: int
) -> Iterator[tuple[Chunk, ChunkResult]]:
    """Each chunk with its result, in input order; ``workers`` processes score ahead."""
    if workers == 1:
        for chunk in pieces:
            yield chunk, score_chunk(model, job, chunk)
        return
    context = multiprocessing.get_context("spawn")  # no forked onnxruntime threads
    pool = futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=init_worker, initargs=(job,)
    )
    pending: deque[tuple[Chunk, futures.Future[ChunkResult]]] = deque()
    try:
        broken: BrokenInput | None = None
        while True:
            while broken is None and len(pending) < 2 * workers:
                try:
                    chunk = next(pieces)
                except StopIteration:
                    break
                except BrokenInput as error:
                    broken = error  # the chunks before it are still written
                    break
                pending.append((chunk, pool.submit(work, chunk)))
            if not pending:
                break
            chunk, future = pending.popleft()
            try:
                result = future.result()
            except futures.process.BrokenProcessPool:
                raise KitError(
                    "a scoring worker process died; run the same command again to resume"
                ) from None
            yield chunk, result
        if broken is not None:
            raise broken
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
