"""Tables for batch scoring: CSV/JSONL records in, one output record per row out.

What ``onnxkit score`` on a laptop and the cloud scoring function share, so both read and write
rows by one rule: :func:`records` splits bytes into records (a CSV record ends at a line break
outside quotes; a blank line is not a row), :func:`score_records` scores a run of them with
:mod:`.batch` (the API's decoding rules), and :func:`format_records` writes the output records:
JSON Lines, or CSV with one ``proba_<class>`` column per class.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Literal, cast

import numpy as np
import orjson

from . import batch

UTF8_BOM = b"\xef\xbb\xbf"
MAX_SAMPLES = 10  # rejected rows a chunk reports by line (the output lists all)
Format = Literal["csv", "jsonl"]
_DUMP = orjson.OPT_SERIALIZE_NUMPY


class BrokenRecord(ValueError):
    """A quoted CSV field opens at ``line`` and never closes: nothing after it is a row."""

    def __init__(self, line: int) -> None:
        super().__init__(
            f"line {line}: a quoted field opened here never closes (unexpected end of data)"
        )
        self.line = line


def records(
    lines: Iterable[bytes], fmt: Format, line: int, stop: int | None = None
) -> Iterator[tuple[bytes, int, int]]:
    """(record, its first line, bytes consumed so far) from raw lines (each with its ``\\n``).

    ``line`` is the number of the first line given; blank lines are skipped but counted. With
    ``stop``, no record starts at or after that many bytes (one that starts before may end
    after it: a part of a file owns the records that start inside it)."""
    consumed = 0
    pending: list[bytes] = []
    quotes = 0
    start = line
    for raw in lines:
        if stop is not None and not pending and consumed >= stop:
            return
        consumed += len(raw)
        if not pending:
            start = line
            if not raw.strip(b"\r\n"):
                line += 1
                continue
        line += 1
        if fmt == "jsonl":
            yield raw, start, consumed
            continue
        pending.append(raw)
        quotes += raw.count(b'"')
        if quotes % 2 == 0:
            yield b"".join(pending), start, consumed
            pending, quotes = [], 0
    if pending:
        raise BrokenRecord(start)


def line_after(record: bytes, start: int) -> int:
    """The line after a record that starts on line ``start``."""
    return start + record.count(b"\n") + (0 if record.endswith(b"\n") else 1)


def parse_csv(text: str) -> list[str] | None:
    """One CSV record's fields, or None when it is malformed."""
    try:
        parsed = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error:
        return None
    return parsed[0] if len(parsed) == 1 else None


def parse_header(record: bytes) -> list[str]:
    """A CSV header record's names (BOM dropped); ValueError when it is not one."""
    try:
        text = record.removeprefix(UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text ({error.reason})") from None
    header = parse_csv(text)
    if header is None:
        raise ValueError("the header row is not valid CSV")
    return header


def csv_records(raw: Sequence[bytes], reasons: dict[int, str]) -> list[list[str]]:
    """The CSV records' fields; a malformed one becomes ``[]`` with its reason in ``reasons``."""
    try:
        text = b"".join(raw).decode("utf-8")
        parsed = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        if len(parsed) == len(raw) and all(parsed):
            return parsed
    except (UnicodeDecodeError, csv.Error):
        pass
    fields_list: list[list[str]] = []
    for position, record in enumerate(raw):
        try:
            fields = parse_csv(record.decode("utf-8"))
        except UnicodeDecodeError as error:
            reasons[position] = f"not UTF-8 text ({error.reason})"
            fields = []
        else:
            if fields is None:
                reasons[position] = "malformed CSV record"
                fields = []
        fields_list.append(fields)
    return fields_list


def plain_csv_columns(raw: Sequence[bytes], width: int) -> list[list[str]] | None:
    """The cells of CSV records by column, when they need no CSV parser: UTF-8, no quote, no
    carriage return, no NUL, every record one line of ``width`` fields. None otherwise
    (:func:`csv_records` then parses them and names what is wrong)."""
    blob = b"".join(raw)
    if not raw or b'"' in blob or b"\r" in blob or b"\0" in blob:
        return None
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.removesuffix("\n").split("\n")
    if len(lines) != len(raw) or text.count(",") != len(raw) * (width - 1):
        return None
    if set(map(str.count, lines, repeat(","))) != {width - 1}:
        return None
    cells = ",".join(lines).split(",")
    return [cells[column::width] for column in range(width)]


@dataclass(frozen=True)
class Job:
    """What every chunk of a run shares."""

    input_format: Format
    output_format: Format
    header: tuple[str, ...] | None
    id_column: str | None


@dataclass
class Formatted:
    """A chunk's output bytes and counts."""

    data: bytes
    scored: int
    rejected: int
    samples: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), first few
    rejections: list[tuple[int, int, str]] = field(default_factory=list)  # (row, line, reason)


def score_records(
    model: batch.Model, job: Job, chunk: Sequence[bytes]
) -> tuple[list[batch.RowResult], list[Any]]:
    """Each record's result and ``--id-column`` value (None when there is none)."""
    ids: list[Any]
    reasons: dict[int, str] = {}
    if job.input_format == "csv":
        if job.header is None:
            raise ValueError("a CSV job needs the header")
        columns = plain_csv_columns(chunk, len(job.header))
        if columns is not None:
            fast = batch.score_columns(model, job.header, columns)
            if fast is not None:
                at = job.header.index(job.id_column) if job.id_column else None
                return fast, list(columns[at]) if at is not None else [None] * len(fast)
        rows = csv_records(chunk, reasons)
        results = batch.score_cells(model, job.header, rows)
        at = job.header.index(job.id_column) if job.id_column else None
        ids = [row[at] if at is not None and at < len(row) else None for row in rows]
    else:
        instances = [batch.parse_json_line(record) for record in chunk]
        results = batch.score_instances(model, instances)
        key = job.id_column
        ids = [item.get(key) if key and isinstance(item, dict) else None for item in instances]
    for position, reason in reasons.items():
        results[position].reason = reason
    return results, ids


def output_columns(
    classes: Sequence[Any] | None, id_column: str | None, position: str
) -> list[str]:
    """The CSV output's columns; ``position`` names the row and line fields (``row,line``)."""
    probas = [f"proba_{c}" for c in classes] if classes else []
    ids = [id_column] if id_column else []
    return [*position.split(","), *ids, "prediction", *probas, "model_version", "error"]


def csv_header(classes: Sequence[Any] | None, id_column: str | None) -> bytes:
    """The header line of a CSV output (``row,line``, ...), as the csv module writes it."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(output_columns(classes, id_column, "row,line"))
    return out.getvalue().encode()


def format_records(
    model: batch.Model,
    job: Job,
    results: Sequence[batch.RowResult],
    ids: Sequence[Any],
    *,
    first_row: int,
    lines: Sequence[int],
    lead: dict[str, Any] | None = None,
    row_field: str = "row",
    line_field: str = "line",
    keep_rejections: int = 0,
) -> Formatted:
    """The output records of consecutive rows (``lead``'s fields first, then row and line)."""
    classes = model.classes if model.task == "classification" else None
    version = model.model_version
    if job.output_format == "jsonl" and not keep_rejections:
        fast = _jsonl_scored(classes, version, job.id_column, results, ids, first_row, lines,
                             lead or {}, row_field, line_field)  # fmt: skip
        if fast is not None:
            return Formatted(fast, len(results), 0)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n") if job.output_format == "csv" else None
    done = Formatted(b"", 0, 0)
    for position, result in enumerate(results):
        line = lines[position]
        if result.reason is None:
            done.scored += 1
        else:
            done.rejected += 1
            if len(done.samples) < MAX_SAMPLES:
                done.samples.append((line, result.reason))
            if len(done.rejections) < keep_rejections:
                done.rejections.append((first_row + position, line, result.reason))
        record: dict[str, Any] = dict(lead or {})
        record[row_field] = first_row + position
        record[line_field] = line
        if job.id_column:
            record[job.id_column] = ids[position]
        record["prediction"] = result.prediction
        if writer is None:
            if classes:
                record["probabilities"] = (
                    None
                    if result.probabilities is None
                    else dict(zip(map(str, classes), result.probabilities, strict=True))
                )
            record["model_version"] = version
            record["error"] = result.reason
            out.write(orjson.dumps(record, option=_DUMP).decode())
            out.write("\n")
        else:
            probas = (
                [""] * len(classes or [])
                if result.probabilities is None
                else [str(p) for p in result.probabilities]
            )
            cells = ["" if value is None else value for value in record.values()]
            writer.writerow([*(str(c) for c in cells), *probas, version, result.reason or ""])
    done.data = out.getvalue().encode()
    return done


def _jsonl_scored(
    classes: Sequence[Any] | None,
    version: str,
    id_column: str | None,
    results: Sequence[batch.RowResult],
    ids: Sequence[Any],
    first_row: int,
    lines: Sequence[int],
    lead: dict[str, Any],
    row_field: str,
    line_field: str,
) -> bytes | None:
    """:func:`format_records`' JSON Lines when every row was scored, byte for byte, without a
    dict and an orjson call per row (:func:`_jsonl_columns`). None when a row was refused or a
    value is not of the kinds the columns know."""
    size = len(results)
    if not size or any(result.reason is not None for result in results):
        return None
    predictions = json_cells([result.prediction for result in results])
    if predictions is None:
        return None
    id_cells = json_cells(list(ids)) if id_column else None
    if id_column and id_cells is None:
        return None
    matrix = None
    if classes:
        probabilities = [result.probabilities for result in results]
        shape = (len(classes),)
        if not all(p is not None and p.dtype == np.float32 and p.shape == shape
                   for p in probabilities):  # fmt: skip
            return None
        matrix = np.stack(cast(list[np.ndarray], probabilities))
    return _jsonl_columns(
        classes, version, id_column, predictions, matrix, id_cells, first_row, lines, lead,
        row_field, line_field,
    )  # fmt: skip


def _jsonl_columns(
    classes: Sequence[Any] | None,
    version: str,
    id_column: str | None,
    predictions: Sequence[str],
    probabilities: np.ndarray | None,
    ids: Sequence[str] | None,
    first_row: int,
    lines: Sequence[int],
    lead: dict[str, Any],
    row_field: str,
    line_field: str,
) -> bytes | None:
    """JSON Lines of scored rows from columns of JSON texts (and an ``[N, classes]`` float32
    probability matrix), as ``orjson.dumps`` of :func:`format_records`' dict writes each row:
    the literal text between the fields is fixed, so the records are the columns interleaved
    with it and joined in C. None when a field name repeats (the dict would keep one)."""
    size = len(predictions)
    names = [*lead, row_field, line_field, *([id_column] if id_column else []), "prediction"]
    names += [*(["probabilities"] if classes else []), "model_version", "error"]
    if len(set(names)) != len(names):
        return None
    head = orjson.dumps({**lead, row_field: 0}, option=_DUMP)[:-2].decode()  # {...,"row":
    literals = [head, f",{_name(line_field)}"]
    columns: list[Sequence[str]] = [
        list(map(str, range(first_row, first_row + size))),
        list(map(str, lines)),
    ]
    if id_column:
        assert ids is not None
        literals.append(f",{_name(id_column)}")
        columns.append(ids)
    literals.append(f",{_name('prediction')}")
    columns.append(predictions)
    tail = orjson.dumps({"model_version": version, "error": None}).decode()[1:]
    if classes:
        assert probabilities is not None
        keys = [_name(str(c)) for c in classes]
        if len(set(keys)) != len(keys):
            return None
        literals.append(f",{_name('probabilities')}{{{keys[0]}")
        literals += [f",{key}" for key in keys[1:]]
        columns += [
            _split_numbers(orjson.dumps(np.ascontiguousarray(probabilities[:, k]), option=_DUMP))
            for k in range(len(keys))
        ]
        tail = "}" + "," + tail
    else:
        tail = "," + tail
    literals.append(tail + "\n")
    step = 2 * len(columns) + 1
    pieces: list[str] = [""] * (size * step)
    for k, literal in enumerate(literals):
        pieces[2 * k :: step] = [literal] * size
    for k, column in enumerate(columns):
        pieces[2 * k + 1 :: step] = column
    return "".join(pieces).encode()


def score_plain_block(
    model: batch.Model,
    job: Job,
    block: bytes,
    *,
    first_row: int,
    first_line: int,
    lead: dict[str, Any] | None = None,
    row_field: str = "row",
    line_field: str = "line",
) -> Formatted | None:
    """One-line CSV records of plain numbers (``block``, a line each) scored and written as
    JSON Lines in whole columns: the bytes :func:`score_records` + :func:`format_records` write
    for them. None when any row needs those (the caller splits the block and calls them)."""
    if job.input_format != "csv" or job.output_format != "jsonl" or job.header is None:
        return None
    rows = block.count(b"\n")
    if not rows or not block.endswith(b"\n") or not is_utf8(block):
        return None  # a record that is not UTF-8 is refused by score_records, row by row
    answer = batch.score_numeric_block(model, job.header, block, rows)
    if answer is None:
        return None
    ids = None
    if job.id_column is not None:
        ids = _id_cells(block, job.header.index(job.id_column))
        if ids is None:
            return None
    return answer_records(
        model, job, answer, ids, rows=rows, first_row=first_row, first_line=first_line,
        lead=lead, row_field=row_field, line_field=line_field,
    )  # fmt: skip


def is_utf8(data: bytes) -> bool:
    """Whether ``data`` is UTF-8 text (ASCII is checked first: one pass in C, no copy)."""
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def answer_records(
    model: batch.Model,
    job: Job,
    answer: dict[str, Any],
    ids: Sequence[str] | None,
    *,
    rows: int,
    first_row: int,
    first_line: int,
    lead: dict[str, Any] | None = None,
    row_field: str = "row",
    line_field: str = "line",
) -> Formatted | None:
    """JSON Lines of ``rows`` consecutive rows, all scored, from the model's ``answer`` for
    them (``predict_feed``'s) and their ids as JSON texts (with ``--id-column``), lines
    numbered from ``first_line`` one a row: the bytes :func:`format_records` writes for them.
    None when the answer holds a value the columns do not know (the caller goes row by row)."""
    if job.output_format != "jsonl" or (job.id_column is not None and ids is None):
        return None
    classes = model.classes if model.task == "classification" else None
    predictions = answer["predictions"]
    cells: Sequence[str] | None
    if isinstance(predictions, list):  # string labels
        cells = json_cells(predictions)
    elif not isinstance(predictions, np.ndarray) or predictions.ndim != 1:
        return None
    elif predictions.dtype.kind in "iu" or predictions.dtype == np.float32:
        cells = _split_numbers(orjson.dumps(predictions, option=_DUMP))
    else:
        cells = json_cells(predictions.tolist())
    probabilities = answer.get("probabilities")
    if cells is None or len(cells) != rows or (classes and probabilities is None):
        return None
    if ids is not None and len(ids) != rows:
        return None
    data = _jsonl_columns(
        classes, model.model_version, job.id_column, cells, probabilities, ids, first_row,
        range(first_line, first_line + rows), lead or {}, row_field, line_field,
    )  # fmt: skip
    return None if data is None else Formatted(data, rows, 0)


def _id_cells(block: bytes, at: int) -> Sequence[str] | None:
    """The JSON texts of column ``at`` of a block's one-line records (unquoted, so a field's
    text is its value, as the csv module reads it); None when the block is not UTF-8."""
    try:
        lines = block.decode("utf-8").split("\n")[:-1]
    except UnicodeDecodeError:
        return None
    return json_cells([line.split(",", at + 1)[at] for line in lines])


def _name(name: str) -> str:
    """A field name as JSON, with its colon."""
    return orjson.dumps(name).decode() + ":"


def _split_numbers(array_json: bytes) -> list[str]:
    """The items of orjson's JSON of a 1-D numeric array."""
    return array_json.decode()[1:-1].split(",")


def json_cells(values: list[Any]) -> Sequence[str] | None:
    """Each value as orjson writes it (ints, strings, None, numpy float32 scalars), or None."""
    kinds = set(map(type, values))
    if kinds == {np.float32}:
        return _split_numbers(orjson.dumps(np.array(values, dtype=np.float32), option=_DUMP))
    if kinds <= {int, str, type(None)}:
        written = {(type(v), v): orjson.dumps(v).decode() for v in set(values)}
        return [written[type(v), v] for v in values]
    return None
