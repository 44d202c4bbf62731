"""Batch scoring of a CSV/JSONL file through the inference API, resumable and row-accurate.

Output contract (CSV or, for a ``.jsonl`` output name, JSON lines): one record per input row,
in input order, with ``row`` (0-based index of the input data row; blank lines are not rows),
``prediction``, one ``proba_<class>`` column per class (classification), ``model_version`` and
``error`` (empty when scored; ``line N: feature: problem; ...`` when the row was rejected).
Every batch is appended and flushed before the next one is sent.

Every row is accounted for: scored, or rejected with its line and reason, locally or by the
API. Cells are read with the contract's rule (:mod:`onnxkit.contract.values`) and the served
model's missing tokens, as the API reads a CSV body: a row with the wrong number of fields,
or a numeric cell that is not a plain finite number, is rejected here with the API's reason.
A file whose structure breaks (a quote that never closes) stops the run at that line with
:class:`BrokenInput`, after the rows before it are scored and written.

Resume: the output is always a contiguous prefix of the input. Running the same command
again reads the complete records already there, drops a torn trailing line left by a kill,
and sends only the rows after the last one written. Rejected rows count as done.

Bad rows: when the API rejects a batch with a 400/422 whose ``details`` name instances,
those rows are recorded as rejected and the rest of the batch is sent again, so one bad row
never costs its neighbours their predictions. A rejection without per-instance details is
bisected down to the offending row(s). A 413 halves the batch.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from onnxkit.cloud.api import ApiClient, ApiError
from onnxkit.cloud.errors import CloudError
from onnxkit.contract import scoring as contract
from onnxkit.contract.api import error_message
from onnxkit.contract.values import ValueProblem, ValueRule

ROW_REJECT_STATUSES = frozenset({400, 422})


@dataclass(frozen=True)
class Rejected:
    """A row refused before sending, and why (what the API would answer for it)."""

    reason: str


# (row index, line number in the file, instance or Rejected)
Row = tuple[int, int, Any]


class BrokenInput(CloudError):
    """The input's structure breaks at ``line``: nothing after it can be read as rows."""

    def __init__(self, path: Path, line: int, reason: str, rows_before: int) -> None:
        super().__init__(f"{path} line {line}: {reason}")
        self.line = line
        self.reason = reason
        self.rows_before = rows_before


@dataclass
class Outcome:
    """The result for one row: a prediction or the reasons it was rejected."""

    row: int
    prediction: Any = None
    probabilities: list[float] | None = None
    model_version: str = ""
    error: str = ""
    line: int = 0  # where the row starts in the input file (1-based; 0: unknown)


@dataclass
class Report:
    """Totals of a run."""

    total: int = 0
    skipped: int = 0  # already in the output when the run started
    read: int = 0  # rows read from the input by this run (each is scored or rejected)
    scored: int = 0
    rejected: list[Outcome] = field(default_factory=list)
    retries: int = 0
    batches: int = 0


# --- input -----------------------------------------------------------------------------------
def _cell(cell: str, kind: str | None, rule: ValueRule) -> Any:
    """A CSV cell as the API reads it (ValueProblem when it would refuse it)."""
    if kind == "categorical":
        return rule.category(cell)
    if kind == "numeric":
        return rule.number(cell)
    try:  # no signature from GET /model: a number if it is one, else the text as is
        return rule.number(cell)
    except ValueProblem:
        return cell


def _unclosed_quote(error: csv.Error) -> str:
    reason = str(error)
    if reason == "unexpected end of data":
        return "a quoted field opened here never closes (unexpected end of data)"
    return f"malformed CSV ({reason})"


def _csv_rows(
    handle: IO[str], signature: dict[str, str] | None, rule: ValueRule, path: Path
) -> Iterator[Row]:
    # strict: a quote that never closes is an error at the end of the file, not one huge field.
    reader = csv.reader(handle, strict=True)
    try:
        header = next(reader, None) or []
    except csv.Error as error:
        raise BrokenInput(path, 1, _unclosed_quote(error), 0) from None
    if signature is not None:
        missing = [name for name in signature if name not in header]
        if missing:
            raise CloudError(
                f"input is missing feature column(s) the model needs: {', '.join(missing)}"
            )
    names = list(signature) if signature is not None else header
    # Column positions and kinds resolved once: this loop runs per row.
    columns = [(name, header.index(name), (signature or {}).get(name)) for name in names]
    width = len(header)
    index = 0
    end = reader.line_num  # the line the previous record ended on
    while True:
        start = end + 1
        try:
            record = next(reader, None)
        except csv.Error as error:
            raise BrokenInput(path, start, _unclosed_quote(error), index) from None
        if record is None:
            return
        end = reader.line_num
        if not record:
            continue  # a blank line is not a row (as csv.DictReader treats it)
        if len(record) != width:
            yield (
                index,
                start,
                Rejected(f"expected {width} fields (the header's), got {len(record)}"),
            )
        else:
            instance: dict[str, Any] = {}
            problems = []
            for name, position, kind in columns:
                try:
                    instance[name] = _cell(record[position], kind, rule)
                except ValueProblem as problem:
                    problems.append(f"{name}: {problem}")
            yield index, start, Rejected("; ".join(problems)) if problems else instance
        index += 1


def _jsonl_rows(handle: IO[str], signature: dict[str, str] | None) -> Iterator[Row]:
    index = 0
    for line_number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        instance: Any
        try:
            instance = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            # orjson refuses NaN, Infinity and numbers beyond double range, as the API does.
            instance = Rejected(f"not valid JSON ({str(error).split(':', 1)[0]})")
        else:
            if isinstance(instance, dict) and signature is not None:
                # Drop extra keys (a target column, ids) the API would refuse as unknown.
                instance = {k: v for k, v in instance.items() if k in signature}
            if not isinstance(instance, dict | list):
                instance = Rejected("not a JSON object or array")
        yield index, line_number, instance
        index += 1


def input_format(path: Path) -> str:
    """``csv`` or ``jsonl``, from the file name (the contract's rule, as ``onnxkit score``)."""
    found = contract.input_format(path.name)
    if found is None:
        raise CloudError(
            f"{path}: unsupported input format {path.suffix or '(none)'}; use .csv or .jsonl"
        )
    return found


def read_rows(
    path: Path, signature: dict[str, str] | None, missing_values: list[str] | None = None
) -> Iterator[Row]:
    """Rows of a CSV (header row of feature names) or JSONL (objects or arrays) file.

    ``missing_values``: the served model's tokens (None: the contract's default ones)."""
    fmt = input_format(path)
    rule = ValueRule.of(missing_values)
    try:
        # utf-8-sig: spreadsheets save CSV with a byte-order mark that would corrupt the header.
        handle = path.open(newline="" if fmt == "csv" else None, encoding="utf-8-sig")
    except OSError as error:
        raise CloudError(f"cannot read {path}: {error.strerror}") from None
    with handle:
        try:
            if fmt == "csv":
                yield from _csv_rows(handle, signature, rule, path)
            else:
                yield from _jsonl_rows(handle, signature)
        except (UnicodeDecodeError, csv.Error) as error:
            raise CloudError(f"{path}: not a readable UTF-8 {fmt} file ({error})") from None


def count_rows(path: Path) -> int:
    """How many data rows a file has (for the progress bar), counted the way read_rows
    numbers them: up to where its structure breaks, if it does."""
    fmt = input_format(path)
    try:
        with path.open(newline="" if fmt == "csv" else None, encoding="utf-8-sig") as handle:
            if fmt == "jsonl":
                return sum(1 for line in handle if line.strip())
            records = 0
            try:
                for record in csv.reader(handle, strict=True):
                    records += bool(record)
            except csv.Error:
                pass  # read_rows stops there and names the line
            return max(0, records - 1)
    except OSError as error:
        raise CloudError(f"cannot read {path}: {error.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise CloudError(f"{path}: not a readable UTF-8 {fmt} file ({error})") from None


# --- output ----------------------------------------------------------------------------------
def columns(classes: list[Any] | None) -> list[str]:
    """Output columns for a model with these classes (None for regression)."""
    probas = [f"proba_{c}" for c in classes] if classes else []
    return ["row", "prediction", *probas, "model_version", "error"]


def completed_rows(path: Path, expected: list[str]) -> int:
    """Rows already in an output file; truncates a torn last line. Raises on a foreign file."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    try:
        rows = _written_rows(path, data[:cut].decode("utf-8"), expected)
    except (ValueError, KeyError, IndexError, TypeError):  # JSON, UTF-8 and int() errors too
        rows = None
    if rows is None or rows != list(range(len(rows))):
        raise CloudError(
            f"{path} is not a prefix of this input (rows are not 0..n-1); pass "
            "--overwrite or another --output"
        )
    if cut != len(data):
        # Killed mid-write: the tail is not a whole record. Only cut a file known to be ours.
        with path.open("r+b") as handle:
            handle.truncate(cut)
    return len(rows)


def _written_rows(path: Path, text: str, expected: list[str]) -> list[int]:
    if path.suffix.lower() == ".jsonl":
        return [int(orjson.loads(line)["row"]) for line in text.splitlines() if line.strip()]
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return []
    if header != expected:
        raise CloudError(
            f"{path} has columns {','.join(header)}, not the ones this model produces "
            f"({','.join(expected)}); pass --overwrite or another --output"
        )
    return [int(record[0]) for record in reader if record]


def _error_text(outcome: Outcome) -> str:
    """The error column: where the row is in the input, then why it was rejected."""
    if not outcome.error:
        return ""
    return f"line {outcome.line}: {outcome.error}" if outcome.line else outcome.error


class Writer:
    """Appends records to the output and flushes them, batch by batch."""

    def __init__(
        self, handle: IO[str], fmt: str, classes: list[Any] | None, write_header: bool
    ) -> None:
        self._handle = handle
        self._fmt = fmt
        self._classes = classes
        self._csv = csv.writer(handle, lineterminator="\n")
        if fmt == "csv" and write_header:
            self._csv.writerow(columns(classes))
            self.flush()

    def write(self, outcomes: list[Outcome]) -> None:
        """Write one batch and flush it to disk."""
        for o in outcomes:
            if self._fmt == "jsonl":
                record: dict[str, Any] = {"row": o.row, "prediction": o.prediction}
                if self._classes and o.probabilities is not None:
                    record["probabilities"] = dict(
                        zip(map(str, self._classes), o.probabilities, strict=False)
                    )
                record["model_version"] = o.model_version
                record["error"] = _error_text(o) or None
                self._handle.write(orjson.dumps(record).decode() + "\n")
            else:
                blank: list[Any] = [""] * len(self._classes or [])
                probas: list[Any] = list(o.probabilities) if o.probabilities else blank
                self._csv.writerow(
                    [
                        o.row,
                        "" if o.prediction is None else o.prediction,
                        *probas,
                        o.model_version,
                        _error_text(o),
                    ]
                )
        self.flush()

    def flush(self) -> None:
        """Push written records to the OS (and to disk, for files)."""
        self._handle.flush()
        # stdout, a pipe or a test buffer cannot be fsynced; a file can.
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            os.fsync(self._handle.fileno())


# --- scoring ---------------------------------------------------------------------------------
def _problems(body: Any, size: int) -> dict[int, str]:
    """Per-instance problems from a 4xx body: ``{index: "feature: problem; ..."}``."""
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    found: dict[int, list[str]] = {}
    for detail in details or []:
        if not isinstance(detail, dict):
            continue
        index = detail.get("instance")
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < size:
            feature = detail.get("feature")
            problem = str(detail.get("problem") or "rejected")
            found.setdefault(index, []).append(f"{feature}: {problem}" if feature else problem)
    return {i: "; ".join(p) for i, p in found.items()}


def _message(error: ApiError) -> str:
    return error_message(error.body) or str(error)


def score_batch(client: ApiClient, rows: list[Row]) -> list[Outcome]:
    """Score rows, isolating the ones the API rejects; outcomes come back in row order."""
    outcomes: dict[int, Outcome] = {}
    sendable = []
    for index, line, instance in rows:
        if isinstance(instance, Rejected):
            outcomes[index] = Outcome(index, error=instance.reason, line=line)
        else:
            sendable.append((index, line, instance))
    _score(client, sendable, outcomes)
    return [outcomes[index] for index, _, _ in rows]


def _score(client: ApiClient, rows: list[Row], out: dict[int, Outcome]) -> None:
    if not rows:
        return
    try:
        response = client.predict([instance for _, _, instance in rows])
    except ApiError as error:
        if error.status == 413 and len(rows) > 1:
            half = len(rows) // 2
            _score(client, rows[:half], out)
            _score(client, rows[half:], out)
            return
        if error.status not in ROW_REJECT_STATUSES:
            raise
        problems = _problems(error.body, len(rows))
        if problems:
            for position, problem in problems.items():
                index, line, _ = rows[position]
                out[index] = Outcome(index, error=problem, line=line)
            _score(client, [r for i, r in enumerate(rows) if i not in problems], out)
        elif len(rows) > 1:
            half = len(rows) // 2
            _score(client, rows[:half], out)
            _score(client, rows[half:], out)
        else:
            index, line, _ = rows[0]
            out[index] = Outcome(index, error=_message(error), line=line)
        return
    predictions = response.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(rows):
        raise ApiError(
            f"the API returned {len(predictions or [])} predictions for {len(rows)} instances"
        )
    probabilities = response.get("probabilities") or [None] * len(rows)
    version = str(response.get("model_version", ""))
    for (index, line, _), prediction, probas in zip(rows, predictions, probabilities, strict=False):
        out[index] = Outcome(index, prediction, probas, version, line=line)


def batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    """Consecutive chunks of at most ``size`` rows; the rows read before a BrokenInput are
    a last chunk, then it is raised."""
    chunk: list[Row] = []
    try:
        for row in rows:
            chunk.append(row)
            if len(chunk) == size:
                yield chunk
                chunk = []
    except BrokenInput:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


def run(
    client: ApiClient,
    rows: Iterator[Row],
    *,
    writer: Writer,
    batch_size: int,
    report: Report,
    advance: Callable[[int], None] = lambda n: None,
) -> Report:
    """Score every row, writing each batch before sending the next."""
    for chunk in batches(rows, batch_size):
        outcomes = score_batch(client, chunk)
        writer.write(outcomes)
        report.read += len(chunk)
        report.batches += 1
        for outcome in outcomes:
            if outcome.error:
                report.rejected.append(outcome)
            else:
                report.scored += 1
        report.retries = client.retries
        advance(len(chunk))
    return report
