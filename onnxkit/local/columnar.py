"""``onnxkit score``'s columnar paths on this machine, with pyarrow: CSV blocks and Parquet.

The inference runtime (``functions/inference``) reads and writes rows by one rule
(:mod:`onnxkit.contract.values`); this module only reads faster, and answers nothing the
runtime would not: every path here either writes the very bytes the runtime's row-by-row path
(:func:`table.score_records` + :func:`table.format_records`) writes for the same rows, or
declines (None) and leaves the rows to it. pyarrow is a dependency of the shell only: the
Lambda bundles never carry it, and ``functions/`` never imports this module.

- :func:`score_csv_block`: a block of one-line CSV records (no quote, CR, NUL or blank line
  anywhere, no BOM at its start, UTF-8) under an all-numeric model whose missing tokens are
  not numbers, parsed by Arrow's CSV reader into float64 columns (a correctly rounded parse,
  as ``float()``'s), checked (widths, NaN, float32's range: :meth:`FeedBuilder.from_matrix`)
  and scored by one ``session.run``. Arrow never reads a cell as a finite number other than
  the contract's number for its text: it refuses the rest, or reads NaN or infinity, and then
  the block goes row by row (the tests compare both paths on every spelling they know, on
  every short string of number characters and on generated blocks).
- :func:`parquet_chunks` and :func:`score_parquet_batch`: a Parquet file read a batch of rows
  at a time (only the columns the model and ``--id-column`` need) and scored as the CSV of the
  same table: every cell is the text a CSV writer gives it (numbers as ``repr``, a null or a
  NaN as an empty cell), so the rows get the CSV's answers, rejections and ids; ``line`` is the
  row's line in that CSV (``row + 2``: the header is line 1). An all-numeric batch whose
  values feed the model as they are skips the text and goes to the model as a matrix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from functions.inference import batch, table

# Bytes after which a block is left to the row-by-row path: a quote or CR (the csv module reads
# them as quoting and line ends; Arrow is told not to), NUL (the csv module's own rule) and a
# blank line (not a row). Blanks, tabs, underscores and other spellings need no scan: Arrow
# refuses every number spelling it does not read as the contract does (the tests enumerate
# them), and a text column's cell is its text alike in both readers.
_NOT_IN_BLOCKS = (b'"', b"\r", b"\0", b"\n\n")
PARSE = pacsv.ParseOptions(
    delimiter=",",
    quote_char=False,  # no quote may be in the block: a '"' would be a cell's text
    double_quote=False,
    escape_char=False,
    newlines_in_values=False,
    ignore_empty_lines=False,  # a blank line is a record of the wrong width: declined
)
# A whole block in one Arrow block, parsed on this thread: the worker processes are the
# parallelism (one core each), as for the rest of the scoring.
_BLOCK_BYTES = 1 << 26


def _read_options(width: int, block: bytes) -> pacsv.ReadOptions:
    return pacsv.ReadOptions(
        column_names=[f"c{i}" for i in range(width)],
        use_threads=False,
        block_size=max(_BLOCK_BYTES, len(block) + 1),
    )


def plain_model(model: batch.Model) -> bool:
    """Whether every feature is numeric and no missing token looks like a number ("-999"):
    then a feature cell is a number or something that sends the block row by row."""
    return model.feed.all_numeric and not any(
        batch.numeric_tokens(spec.rule.missing_tokens) for spec in model.features
    )


def score_csv_block(
    model: batch.Model, job: table.Job, block: bytes, *, first_row: int, first_line: int
) -> table.Formatted | None:
    """``block``'s one-line CSV records (a line each) scored and written as JSON Lines: the
    bytes :func:`table.score_records` + :func:`table.format_records` write for them. None when
    any row needs those (see the module's docstring)."""
    header = job.header
    if job.input_format != "csv" or job.output_format != "jsonl" or header is None:
        return None
    if not plain_model(model):
        return None
    rows = block.count(b"\n")
    if not rows or not block.endswith(b"\n") or block.startswith((b"\n", table.UTF8_BOM)):
        return None  # Arrow would drop a BOM starting the block: in a record, it is text
    if any(byte in block for byte in _NOT_IN_BLOCKS) or not table.is_utf8(block):
        return None
    positions = batch.feature_positions([spec.name for spec in model.features], header)
    id_at = header.index(job.id_column) if job.id_column is not None else None
    if id_at is not None and id_at in positions:
        return None  # an id that is also a feature: rare, left to the row-by-row path
    types = {f"c{p}": pa.float64() for p in positions}
    if id_at is not None:
        types[f"c{id_at}"] = pa.string()  # its text, as the csv module reads an unquoted cell
    convert = pacsv.ConvertOptions(
        column_types=types,
        include_columns=list(types),
        null_values=[],  # an empty cell is then a conversion error: declined
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        check_utf8=False,  # the whole block was checked above
    )
    try:
        parsed = pacsv.read_csv(
            pa.py_buffer(block), _read_options(len(header), block), PARSE, convert
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # a row of another width, a cell that is not a number to Arrow
    if parsed.num_rows != rows:
        return None
    matrix = np.stack([_float64(parsed.column(f"c{p}")) for p in positions])
    if np.isnan(matrix).any():
        return None  # "nan" may be a missing token or an error: the row-by-row path says
    answer = _predict(model, matrix)
    if answer is None:
        return None
    ids = None
    if id_at is not None:
        ids = table.json_cells(parsed.column(f"c{id_at}").to_pylist())
    return table.answer_records(
        model, job, answer, ids, rows=rows, first_row=first_row, first_line=first_line
    )


def _float64(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_numpy() if column.num_chunks == 1 else pc.cast(column, pa.float64()).to_numpy()


def _predict(model: batch.Model, features_by_row: np.ndarray) -> dict[str, Any] | None:
    """:func:`batch.answer_matrix` of an ``[F, N]`` matrix (a view: from_matrix transposes
    back)."""
    return batch.answer_matrix(model, features_by_row.T)


# --- Parquet ----------------------------------------------------------------------------------
class ParquetProblem(ValueError):
    """A Parquet file that cannot be scored; ``str()`` is one line."""


@dataclass(frozen=True)
class ParquetInput:
    """A Parquet file's shape: its column names and row count."""

    header: tuple[str, ...]
    rows: int


def parquet_input(path: Path) -> ParquetInput:
    """The file's columns and rows (its footer only); ParquetProblem when it is not Parquet."""
    try:
        metadata = pq.ParquetFile(path).metadata
    except (pa.ArrowException, OSError) as error:
        raise ParquetProblem(f"not a readable Parquet file ({_first_line(error)})") from None
    return ParquetInput(tuple(metadata.schema.to_arrow_schema().names), metadata.num_rows)


def parquet_chunks(
    path: Path, columns: Sequence[str], *, batch_rows: int, first_row: int
) -> Iterator[pa.RecordBatch]:
    """The file's rows from ``first_row`` on, ``batch_rows`` at a time (fewer at the end of a
    row group), with ``columns`` only (each named once)."""
    source = pq.ParquetFile(path)
    skip, start = first_row, 0
    while start < source.num_row_groups:
        size = source.metadata.row_group(start).num_rows
        if skip < size:
            break
        skip -= size
        start += 1
    groups = range(start, source.num_row_groups)
    if not groups:
        return
    try:
        for piece in source.iter_batches(
            batch_size=batch_rows, row_groups=groups, columns=list(dict.fromkeys(columns))
        ):
            cut = min(skip, piece.num_rows)  # rows before ``first_row`` in its row group
            skip -= cut
            if piece.num_rows > cut:
                yield piece.slice(cut)
    except (pa.ArrowException, OSError) as error:
        raise ParquetProblem(f"cannot read a row group ({_first_line(error)})") from None


def score_parquet_batch(
    model: batch.Model, job: table.Job, rows: pa.RecordBatch, *, first_row: int
) -> table.Formatted:
    """A batch of a Parquet file's rows scored and written as the CSV of the same rows is
    (see the module's docstring); ``job.header`` is the file's column names."""
    header = job.header
    assert header is not None
    names = [spec.name for spec in model.features]
    first_line = first_row + 2  # the header is line 1 of the table's CSV
    size = rows.num_rows
    if job.output_format == "jsonl" and plain_model(model):
        matrix = _numeric_matrix(rows, names)
        answer = None if matrix is None else _predict(model, matrix)
        if answer is not None:
            id_texts = None
            if job.id_column is not None:
                id_texts = table.json_cells(text_cells(rows.column(job.id_column)))
            done = table.answer_records(
                model, job, answer, id_texts, rows=size, first_row=first_row, first_line=first_line
            )
            if done is not None:
                return done
    # Row by row, from the cells a CSV of these rows holds (feature columns and the id only).
    texts = {name: text_cells(rows.column(name)) for name in dict.fromkeys(rows.schema.names)}
    cells = [list(record) for record in zip(*(texts[name] for name in names), strict=True)]
    results = batch.score_cells(model, names, cells)
    ids: list[Any] = texts[job.id_column] if job.id_column is not None else [None] * size
    return table.format_records(
        model, job, results, ids, first_row=first_row, lines=range(first_line, first_line + size)
    )


def _numeric_matrix(rows: pa.RecordBatch, names: Sequence[str]) -> np.ndarray | None:
    """The ``[F, N]`` float64 values of numeric columns (a null or NaN as NaN), or None when a
    column is not of a numeric type (its text goes through the contract's number rule)."""
    columns = []
    for name in names:
        column = rows.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            return None
        # An integer beyond 2**53 rounds to the nearest float64 (unsafe: Arrow's safe cast
        # refuses it), as float(str(v)) does; a null becomes NaN.
        values = pc.cast(column, pa.float64(), safe=False)
        columns.append(values.to_numpy(zero_copy_only=False))
    return np.stack(columns)


def text_cells(column: pa.Array | pa.ChunkedArray) -> list[str]:
    """Each value as a CSV cell's text: a string as it is, a number as ``repr`` writes it (so a
    float64 reads back to itself), a null or NaN as an empty cell (missing)."""
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        raise ParquetProblem(f"a column of bytes ({column.type}) is not text: cast it to string")
    out = []
    for value in column.to_pylist():
        if value is None or (isinstance(value, float) and value != value):  # noqa: PLR0124
            out.append("")
        elif isinstance(value, float):
            out.append(repr(value))
        else:
            out.append(str(value))
    return out


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
