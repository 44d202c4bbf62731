"""Reading a channel's CSV files column by column: numbers straight to float32, the rest as text.

pyarrow's streaming CSV reader parses each file in blocks (on one core) into columns of cell
texts, verbatim (no NA handling, no trimming, no type guessing: every column is read as a
string). Each block's numeric columns are judged by the contract's rule
(``training_jobs.cells``) and written as float32 into one column-major block, on the other
cores while the next blocks are parsed, and their texts dropped; the other columns (the
target, categorical ones) keep their texts. So memory holds the float32 data, a few blocks of
text and the text columns, never the whole table as text.

Which columns are numeric is decided on the first block (the sample) and checked on every
block after it: a column whose sample is all numbers but with a non-number (or an
out-of-range number) further down is read again as text, and the job then judges it by its
full column exactly as before (categorical below 90% numbers, else an error naming the cell).
A file the columnar reader refuses (rows of varying length, bad UTF-8, an empty file) is read
by pandas' reader, the job's reader before this one, whose result or error stands.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from onnxkit.contract.layout import sha256_file
from onnxkit.contract.values import ValueRule
from training_jobs.cells import BLANK, clean_numbers, texts
from training_jobs.errors import TrainingError

# Bytes of CSV per block. pyarrow's streaming reader parses ahead of its consumer, holding
# about 40 blocks as text (measured on 547 MB of CSV: a pool peak of 585 MiB with 16 MiB
# blocks, 42 MiB with 1 MiB blocks, and no slower), so the block is small.
BLOCK_SIZE = 1 << 20
# Bytes of cells (Arrow's nbytes) the column kinds are decided on: the first file's first
# blocks together, ~20k rows of 50 numeric columns.
SAMPLE_SIZE = 16 << 20
# Blocks are written a group of this many bytes of cells at a time (fewer, larger calls of
# the value rule), and at most IN_FLIGHT groups are being written while pyarrow parses on.
GROUP_BYTES = 8 << 20
IN_FLIGHT = 2


@dataclass
class Table:
    """A channel as read: numeric columns as float32 (NaN for missing), the others as text."""

    columns: list[str]  # the header, in CSV order
    rows: int
    # The numeric columns' values, views into one C-contiguous (columns, rows) float32 block:
    # the layout pandas gives a float32 frame, so the fitted model is the same bit for bit.
    numbers: dict[str, np.ndarray]
    texts: dict[str, pa.ChunkedArray]  # every other column's cell texts, verbatim
    block: np.ndarray | None = None  # what ``numbers`` are views of
    files: dict[str, str] = field(default_factory=dict)  # relative file name -> sha256
    # Where each file's rows start (several files only), so that errors name file and line.
    sources: list[tuple[str, int, int]] = field(default_factory=list)

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> Table:
        """A table built in code: every column as its text (None/NaN as "")."""
        columns = [str(c) for c in frame.columns]
        cells = {c: texts(frame[c]) for c in columns}
        return cls(columns, len(frame), {}, cells)

    def where(self, position: int) -> str:
        """``row N`` (the file's line, header = 1), with the file's name when there are
        several."""
        for label, start, rows in self.sources:
            if start <= position < start + rows:
                return f"{label} row {position - start + 2}"
        return self.row(position)

    def release(self) -> None:
        """Drop the cells (the frames made from them keep what they use); the shape and
        the file digests stay for the manifest."""
        self.numbers, self.texts, self.block = {}, {}, None

    @staticmethod
    def row(position: int) -> str:
        """``row N`` for the row at ``position`` of a single file (header = 1)."""
        return f"row {position + 2}"


def read_table(
    channel: str | None,
    name: str,
    rule: ValueRule,
    *,
    text: Collection[str] = (),
    numeric: Collection[str] | None = None,
) -> Table:
    """Read every CSV file of a channel (recursively, sorted by name; headers must match).

    ``text`` columns keep their texts; ``numeric`` ones are read as numbers (None: every
    other column whose sample is all numbers). A numeric column with a cell that is not a
    valid number is read as text instead (the caller judges it).
    """
    root, paths = channel_files(channel, name)
    labels = [path.name if root.is_file() else str(path.relative_to(root)) for path in paths]
    total = sum(csv_size(path) for path in paths)
    # The files are hashed while they are parsed: hashlib lets go of the GIL, and pyarrow's
    # streaming reader parses on one core (1M rows under load: 14% off the read; idle, less,
    # the other core being busy converting the parsed blocks).
    with ThreadPoolExecutor(max_workers=1) as hasher:
        digests = hasher.submit(
            lambda: {label: sha256_file(path) for label, path in zip(labels, paths, strict=True)}
        )
        try:
            header = _header(paths[0], name, labels[0])
            reading = _Reading(header, total, set(text), None if numeric is None else set(numeric))
            dropped = reading.run(paths, labels, name, rule)
            if dropped:  # numbers in the sample, not further down: read those columns as text
                reading = _Reading(header, total, set(text) | dropped, set(reading.numeric))
                reading.run(paths, labels, name, rule)
            table = reading.table()
        except _Refused:
            table = _pandas_table(paths, labels, name)
        files = digests.result()
    # The texts parsed are gone; give the pool's cached pages back (mimalloc keeps them).
    pa.default_memory_pool().release_unused()
    if table.rows == 0:
        raise TrainingError(f"{name} channel {root} has a header but no rows")
    table.files = files
    return table


def channel_files(channel: str | None, name: str) -> tuple[Path, list[Path]]:
    """A channel's root and its CSV files (recursively, sorted by name)."""
    if not channel:
        raise TrainingError(f"no {name} channel: set SM_CHANNEL_{name.upper()} or --{name}")
    root = Path(channel)
    if not root.exists():
        raise TrainingError(f"{name} channel {root} does not exist")
    paths = (
        [root]
        if root.is_file()
        else sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in {".csv", ".gz"} and not p.name.startswith(".")
        )
    )
    if not paths:
        raise TrainingError(f"{name} channel {root} has no CSV files")
    return root, paths


def csv_size(path: Path) -> int:
    """The bytes of CSV text in a file: its size, or a gzip file's uncompressed size (ISIZE,
    the last 4 bytes: exact below 4 GiB, which is where it matters least)."""
    size = path.stat().st_size
    if path.suffix.lower() != ".gz" or size < 4:
        return size
    with path.open("rb") as handle:
        handle.seek(-4, 2)
        return max(size, int.from_bytes(handle.read(4), "little"))


def read_csv_text(path: Path, name: str, label: str) -> pd.DataFrame:
    """One CSV file through pandas' reader, header and cells as text (the reader for files
    pyarrow refuses: its result, or its error, is the job's as before pyarrow read CSV).

    No NA handling by pandas (the contract's rule decides what is missing), no stripping
    (a category is its text verbatim), and no renaming of duplicate names to ``x.1``.
    """
    try:
        raw = pd.read_csv(
            path, dtype=str, header=None, keep_default_na=False, na_filter=False, encoding="utf-8"
        )
    except pd.errors.EmptyDataError:
        raise TrainingError(f"{name} file {label} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[-1]
        raise TrainingError(f"{name} file {label} is not a readable CSV: {reason}") from None
    header = [str(cell) for cell in raw.iloc[0]]
    check_header(header, name, label)
    frame = raw.iloc[1:].reset_index(drop=True)
    frame.columns = pd.Index(header, dtype=object)
    return frame.fillna("")


class _Refused(Exception):
    """pyarrow refused a file that pandas' reader may still read (or refuse in its words)."""


def _header(path: Path, name: str, label: str) -> list[str]:
    """The first row's names, with the job's rules: unique and non-empty."""
    try:
        header = [str(c) for c in pacsv.open_csv(path, **_options(None)).schema.names]
    except (pa.ArrowInvalid, UnicodeDecodeError):
        raise _Refused from None
    if len(header) < 2:
        # pandas skips whitespace-only lines, pyarrow reads them as a row; with two or more
        # columns pyarrow refuses such a line (so pandas reads the file), with one it would not.
        # A single column cannot train anyway; pandas' reader gives the usual error.
        raise _Refused
    check_header(header, name, label)
    return header


def check_header(header: list[str], name: str, label: str) -> None:
    """Column names must be unique and non-empty."""
    for column in dict.fromkeys(header):
        count = header.count(column)
        if count > 1:
            raise TrainingError(
                f"{name} file {label}: column name {column!r} appears {count} times in the "
                "header; column names must be unique"
            )
    if any(not column.strip(BLANK) for column in header):
        raise TrainingError(f"{name} file {label} needs a header row with non-empty names")


def _options(header: list[str] | None) -> dict[str, Any]:
    """Every cell as its text: no NA handling, no trimming, quoted newlines kept."""
    convert = pacsv.ConvertOptions(
        column_types={column: pa.string() for column in header or []},
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return {
        "read_options": pacsv.ReadOptions(block_size=BLOCK_SIZE if header else 1 << 20),
        "parse_options": pacsv.ParseOptions(newlines_in_values=True),
        "convert_options": convert,
    }


class _Reading:
    """One pass over a channel's files."""

    def __init__(
        self, header: list[str], total_bytes: int, text: set[str], numeric: set[str] | None
    ) -> None:
        self.header = header
        self.total_bytes = total_bytes
        self.text = [c for c in header if c in text or (numeric is not None and c not in numeric)]
        self.numeric = [c for c in header if c not in self.text]
        self.chunks: dict[str, list[pa.Array]] = {c: [] for c in self.text}
        self.block = np.empty((len(self.numeric), 0), dtype=np.float32)
        self.rows = 0
        self.sampled = False
        self.sources: list[tuple[str, int, int]] = []

    def run(self, paths: list[Path], labels: list[str], name: str, rule: ValueRule) -> set[str]:
        """Read every file; returns the numeric columns found not to be (after the sample).

        pyarrow parses the next blocks (on this thread) while the workers write the last
        ones' numbers: at most ``IN_FLIGHT`` groups of blocks are being written at once."""
        dropped: set[str] = set()
        in_flight: deque[list[Future[str | None]]] = deque()

        def settle(keep: int) -> None:
            while len(in_flight) > keep:
                dropped.update(c for c in (f.result() for f in in_flight.popleft()) if c)

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as workers:
            try:
                for path, label in zip(paths, labels, strict=True):
                    start = self.rows
                    pending: list[pa.RecordBatch] = []  # the sample's blocks, until it is full
                    pending_bytes = 0
                    for batch in _grouped(self._batches(path, name, label), GROUP_BYTES):
                        if not self.sampled:
                            pending.append(batch)
                            pending_bytes += batch.nbytes
                            if pending_bytes >= SAMPLE_SIZE:
                                self._sample(pa.concat_batches(pending), rule, workers)
                                pending.clear()  # not held through the rest of the file
                            continue
                        if self.rows + batch.num_rows > self.block.shape[1]:
                            settle(0)  # the block may move: nothing may write into it now
                            self._reserve(self.rows + batch.num_rows, batch)
                        in_flight.append(
                            [
                                workers.submit(self._write, index, batch, self.rows, rule, dropped)
                                for index in range(len(self.numeric))
                            ]
                        )
                        self._keep_texts(batch)
                        settle(IN_FLIGHT)
                    if not self.sampled and pending:  # a first file smaller than the sample
                        self._sample(pa.concat_batches(pending), rule, workers)
                    self.sources.append((label, start, self.rows - start))
            finally:
                settle(0)
        return dropped

    def _write(
        self, index: int, batch: pa.RecordBatch, row: int, rule: ValueRule, dropped: set[str]
    ) -> str | None:
        """A block's numbers of column ``index`` from ``row`` on; the column's name when a cell
        is not a number."""
        column = self.numeric[index]
        if column in dropped:  # already known (a read set is not changed while it is read)
            return None
        values = clean_numbers(batch[column], rule)
        if values is None:
            return column
        self.block[index, row : row + batch.num_rows] = values
        return None

    def _sample(self, batch: pa.RecordBatch, rule: ValueRule, workers: ThreadPoolExecutor) -> None:
        """The first blocks (``batch``, SAMPLE_SIZE of cells together) decide which columns
        are numbers: those all numbers in them."""
        values = list(workers.map(lambda c: clean_numbers(batch[c], rule), self.numeric))
        kept = [v for v in values if v is not None]
        failed = {c for c, v in zip(self.numeric, values, strict=True) if v is None}
        self.text = [c for c in self.header if c in self.text or c in failed]
        self.numeric = [c for c in self.header if c not in self.text]
        self.chunks.update({c: [] for c in failed})
        self.block = np.empty((len(self.numeric), 0), dtype=np.float32)
        self._reserve(batch.num_rows, batch)
        for index, column_values in enumerate(kept):
            self.block[index, : batch.num_rows] = column_values
        self._keep_texts(batch)
        self.sampled = True

    def _batches(self, path: Path, name: str, label: str) -> Iterator[pa.RecordBatch]:
        try:
            reader = pacsv.open_csv(path, **_options(self.header))
            if reader.schema.names != self.header:
                raise TrainingError(
                    f"{name} file {label} has columns {reader.schema.names}, "
                    f"expected {self.header} as in the first file"
                )
            yield from reader
        except pa.ArrowInvalid:
            raise _Refused from None

    def _keep_texts(self, batch: pa.RecordBatch) -> None:
        for column in self.text:
            self.chunks[column].append(batch[column])
        self.rows += batch.num_rows

    def _reserve(self, rows: int, batch: pa.RecordBatch) -> None:
        """Room for ``rows`` rows: at first, an estimate of the whole channel's rows from its
        bytes (pages never written cost no memory); more only when that was short."""
        capacity = self.block.shape[1]
        if rows <= capacity:
            return
        if capacity == 0:
            cells = sum(pc.sum(pc.binary_length(c)).as_py() or 0 for c in batch.columns)
            # Text plus one separator per cell: at most the CSV's bytes, so rows are not under-
            # estimated (quotes and \r only make the estimate larger).
            per_row = (cells + batch.num_columns * batch.num_rows) / batch.num_rows
            capacity = int(self.total_bytes / max(per_row, 1.0) * 1.05) + 1024
        grown = np.empty((len(self.numeric), max(capacity, int(rows * 1.5))), dtype=np.float32)
        grown[:, : self.rows] = self.block[:, : self.rows]
        self.block = grown

    def table(self) -> Table:
        """The columns read, the float32 block trimmed to the rows in place."""
        k, rows, capacity = len(self.numeric), self.rows, self.block.shape[1]
        flat = self.block.reshape(-1)
        for index in range(1, k):  # left to right: a column never overwrites one not yet moved
            flat[index * rows : (index + 1) * rows] = flat[
                index * capacity : index * capacity + rows
            ]
        block = flat[: k * rows].reshape(k, rows)
        numbers = {column: block[index] for index, column in enumerate(self.numeric)}
        cells = {c: pa.chunked_array(self.chunks[c], type=pa.string()) for c in self.text}
        sources = self.sources if len(self.sources) > 1 else []
        return Table(list(self.header), rows, numbers, cells, block, sources=sources)


def _grouped(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Consecutive non-empty blocks joined until they hold ``size`` bytes of cells."""
    group: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        group.append(batch)
        held += batch.nbytes
        if held >= size:
            yield pa.concat_batches(group) if len(group) > 1 else group[0]
            group, held = [], 0
    if group:
        yield pa.concat_batches(group) if len(group) > 1 else group[0]


def _pandas_table(paths: list[Path], labels: list[str], name: str) -> Table:
    """Every file through pandas' reader (every cell as text); its errors are the job's."""
    frames: list[pd.DataFrame] = []
    header: list[str] | None = None
    sources: list[tuple[str, int, int]] = []
    for path, label in zip(paths, labels, strict=True):
        frame = read_csv_text(path, name, label)
        if header is None:
            header = list(frame.columns)
        elif list(frame.columns) != header:
            raise TrainingError(
                f"{name} file {label} has columns {list(frame.columns)}, "
                f"expected {header} as in the first file"
            )
        sources.append((label, sum(len(f) for f in frames), len(frame)))
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    table = Table.of_frame(data)
    table.sources = sources if len(sources) > 1 else []
    return table
