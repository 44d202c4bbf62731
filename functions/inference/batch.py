"""Batch scoring: a chunk of raw records in, per row a prediction or the reason it was refused.

The same rules as ``POST /predict``, without HTTP: records are read with the served manifest's
missing tokens and the contract's number grammar (:mod:`onnxkit.contract.values`), fed through
the model's :class:`~.feed.FeedBuilder`, and scored by the model that :func:`open_model` loads
with the runtime's digest checks (:mod:`.predictor`, :mod:`.source`). Where the API refuses a
whole body for one bad value, a batch refuses just that row (:func:`.feed.row_problems` names
it, with the API's wording) and scores the others.

Two kinds of record, as a CSV file or a Step Functions ``ItemReader`` hands them over:

- :func:`score_cells`: CSV cells (text) by header; columns the model does not take are ignored;
- :func:`score_instances`: JSON objects keyed by feature name (other keys are ignored: ids,
  targets) or arrays in signature order, as ``instances`` of a ``POST /predict`` body.

No files, processes or output formats here: the shell (``onnxkit score``) and, later, the cloud
batch function own those.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from onnxkit.contract.values import FLOAT32_MAX

from .decode import csv_numbers
from .errors import ApiError
from .feed import FeatureSpec, describe, read_missing, row_problems, string_column
from .predictor import NON_FINITE_PROBLEM, Model, load_model, non_finite_rows
from .runtime import DEFAULT_CACHE
from .source import ModelLocator


@dataclass(frozen=True)
class Unreadable:
    """A record that is not one at all (a JSON line that does not parse), and why."""

    reason: str


@dataclass
class RowResult:
    """One row's answer: ``prediction`` (+ ``probabilities`` for classification), or ``reason``."""

    prediction: Any = None
    probabilities: np.ndarray | None = None  # float32, in model.classes order
    reason: str | None = None


class MissingColumns(ValueError):
    """The header lacks feature columns the model needs."""


def open_model(
    uri: str,
    sha256: str | None = None,
    manifest_sha256: str | None = None,
    *,
    cache_dir: Path = DEFAULT_CACHE,
    threads: int | None = None,
) -> Model:
    """The model at ``uri`` (a path, a pointer, an archive or s3), loaded as the function loads
    it: pinned digests checked, manifest validated. ModelSourceError when it cannot be served."""
    located = ModelLocator(cache_dir).locate(uri, sha256, manifest_sha256)
    return load_model(located, threads=threads)


def parse_json_line(line: bytes | str) -> Any:
    """One JSON Lines record, or :class:`Unreadable` (orjson refuses NaN, Infinity and numbers
    beyond double range, as the API does)."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return Unreadable(f"not valid JSON ({str(error).split(':', 1)[0]})")


def feature_positions(names: Sequence[str], header: Sequence[str]) -> list[int]:
    """Where each named feature's cells are in a header's records (the first column of that
    name); MissingColumns names the absent."""
    position = {name: index for index, name in reversed(list(enumerate(header)))}
    missing = [name for name in names if name not in position]
    if missing:
        raise MissingColumns(
            f"input is missing feature column(s) the model needs: {', '.join(missing)}"
        )
    return [position[name] for name in names]


def score_cells(
    model: Model, header: Sequence[str], records: Sequence[Sequence[str]]
) -> list[RowResult]:
    """Score CSV records (lists of cells under ``header``), one result per record in order."""
    features = model.features
    positions = feature_positions([spec.name for spec in features], header)
    width = len(header)
    problems: dict[int, list[str]] = {}
    good = []
    for index, record in enumerate(records):
        if len(record) != width:
            problems[index] = [f"expected {width} fields (the header's), got {len(record)}"]
        else:
            good.append(index)
    rows: list[Sequence[Any]] = []
    if good:
        whole = [records[i] for i in good] if len(good) != len(records) else records
        cells = [[record[p] for record in whole] for p in positions]
        column_problems: dict[int, list[str]] = {}
        values = [
            csv_numbers(spec, column, partial(_report, column_problems, spec.name))
            if spec.numeric
            else read_missing(spec, column)[0]
            for spec, column in zip(features, cells, strict=True)
        ]
        for position, reasons in column_problems.items():
            problems[good[position]] = reasons
        all_rows = list(zip(*values, strict=True))
        kept = [(i, row) for i, row in zip(good, all_rows, strict=True) if i not in problems]
        good = [i for i, _ in kept]
        rows = [row for _, row in kept]
    return _score(model, len(records), good, rows, problems)


def score_columns(
    model: Model, header: Sequence[str], columns: Sequence[Sequence[str]]
) -> list[RowResult] | None:
    """Score CSV records given as whole columns of cells (one per header column, every record
    as wide as the header), when every row feeds the model as it is: all rows scored, the same
    answers as :func:`score_cells`. None when anything needs :func:`score_cells`' row-by-row
    reading (an empty or refused cell, a number it must check): the caller then calls it.

    The numeric columns are read as float64 arrays by one C call per column (no Python float
    per cell), and an all-numeric model's feed is cut from one matrix."""
    features = model.features
    positions = feature_positions([spec.name for spec in features], header)
    size = len(columns[0]) if columns else 0
    if not size:
        return None
    numbers: list[np.ndarray] = []
    for spec, position in zip(features, positions, strict=True):
        if spec.numeric:
            column = plain_numbers(spec, columns[position])
            if column is None:
                return None
            numbers.append(column)
    builder = model.feed
    if builder.all_numeric:
        feed = builder.from_matrix(np.stack(numbers, axis=1))
    else:
        feed = _mixed_feed(features, [columns[p] for p in positions], iter(numbers))
    if feed is None:
        return None
    results = [RowResult() for _ in range(size)]
    _fill(model, feed, results, range(size))
    return results


def score_numeric_block(
    model: Model, header: Sequence[str], block: bytes, rows: int
) -> dict[str, Any] | None:
    """The model's answer (``predictions``, ``probabilities``) for ``rows`` one-line CSV
    records under ``header`` in ``block``, when every feature cell is a plain finite number
    and every row has the header's width and feeds the model as it is: the answers
    :func:`score_cells` gives them. None when anything needs it (a model with a categorical
    feature or a numeric missing token, a quote, blank, CR, NUL or underscore anywhere, an
    empty, missing or malformed feature cell, a row of another width, NaN, a value beyond
    float32). Other columns (ids, targets) may hold any text.

    numpy's text reader converts the feature columns in C, by the same correctly rounded rule
    as ``float()`` (the tests compare them on the spellings either accepts)."""
    features = model.features
    if not model.feed.all_numeric or any(
        numeric_tokens(spec.rule.missing_tokens) for spec in features
    ):
        return None
    if any(byte in block for byte in NOT_IN_PLAIN_BLOCKS) or block[:1] == b"\n":
        return None
    width = len(header) - 1
    if set(map(bytes.count, block.split(b"\n")[:-1], repeat(b","))) != {width}:
        return None  # a row of another width (or a blank line: no commas)
    positions = feature_positions([spec.name for spec in features], header)
    try:
        matrix = np.loadtxt(
            io.BytesIO(block), delimiter=",", usecols=positions, dtype=np.float64,
            comments=None, ndmin=2, encoding="latin1",
        )  # fmt: skip
    except ValueError:  # "1e", "", "NA": score_cells names them
        return None
    if matrix.shape != (rows, len(positions)) or np.isnan(matrix).any():
        return None  # "nan" is not a number to score_cells
    return answer_matrix(model, matrix)


def answer_matrix(model: Model, matrix: np.ndarray) -> dict[str, Any] | None:
    """The model's answer for an ``[N, F]`` float64 matrix of a block's rows (NaN = missing);
    None when the feed builder would refuse a value or a row has no finite answer, which the
    row-by-row path (:func:`score_cells`) then names."""
    feed = model.feed.from_matrix(matrix)
    if feed is None:
        return None
    answer = model.predict_feed(feed)
    return None if non_finite_rows(answer) else answer


# A column made of these characters only holds plain numbers (and empty cells), which float()
# and the contract's number grammar read alike (see decode.csv_numbers).
_PLAIN_NUMBER_BYTES = b"0123456789.eE+-"
# Bytes after which a block's cells need score_cells: quotes, blanks and number spellings
# (1_000, " 1") that float() and numpy's reader may read differently from the contract.
NOT_IN_PLAIN_BLOCKS = (b'"', b"\r", b" ", b"\t", b"\0", b"_", b"\n\n", b"\x0b", b"\x0c")


def plain_numbers(spec: FeatureSpec, cells: Sequence[str]) -> np.ndarray | None:
    """float64 values of a numeric CSV column of plain numbers, exactly as
    :func:`.decode.csv_numbers` reads them when it refuses none and finds none missing; None
    for anything else (an empty cell, a missing token, other characters, a number beyond
    float32's range)."""
    text = "".join(cells)
    if not text.isascii() or text.encode().translate(None, _PLAIN_NUMBER_BYTES):
        return None
    if numeric_tokens(spec.rule.missing_tokens):
        return None  # "-999" may be a missing token: csv_numbers reads cell by cell
    if not all(cells):  # empty cells are missing values: NaN, as None becomes in a feed
        cells = [cell or "nan" for cell in cells]
    try:
        # str -> float64 in C, by float()'s own rule (csv_numbers' float(f)).
        values = np.array(cells, dtype=np.float64)
    except ValueError:  # "1e", "--1": csv_numbers names them
        return None
    # Elementwise: NaN (a missing value) compares False, and is not out of range.
    if values.shape != (len(cells),) or (np.abs(values) > FLOAT32_MAX).any():
        return None
    return values


@lru_cache(maxsize=16)
def numeric_tokens(tokens: frozenset[str]) -> bool:
    """Whether a missing token looks like a plain number ("-999"): then cells must be read one
    by one, as csv_numbers does."""
    return any(not token.encode().translate(None, _PLAIN_NUMBER_BYTES) for token in tokens)


def _mixed_feed(
    features: Sequence[FeatureSpec], cells: Sequence[Sequence[str]], numbers: Iterator[np.ndarray]
) -> dict[str, np.ndarray] | None:
    """The feed FeedBuilder builds column by column (numeric and categorical features) when
    it refuses nothing; None when it would refuse something."""
    feed: dict[str, np.ndarray] = {}
    for spec, column in zip(features, cells, strict=True):
        if spec.numeric:
            number = next(numbers)
            if not spec.nullable and np.isnan(number).any():
                return None  # a missing value the model does not impute
            array = number.astype(np.float32).reshape(-1, 1)
            if np.isinf(array).any():
                return None
            feed[spec.onnx_input] = array
            continue
        # score_cells reads the missing categories, then FeedBuilder reads them again.
        values, kinds = read_missing(spec, read_missing(spec, column)[0])
        if not kinds <= spec.allowed_types:
            return None  # a missing category the model does not impute
        feed[spec.onnx_input] = string_column(values)
    return feed


def score_instances(model: Model, instances: Sequence[Any]) -> list[RowResult]:
    """Score JSON instances (objects keyed by feature name, or arrays in signature order; an
    :class:`Unreadable` is refused with its reason), one result per instance in order."""
    features = model.features
    names = [spec.name for spec in features]
    n_features = len(names)
    problems: dict[int, list[str]] = {}
    good: list[int] = []
    rows: list[Sequence[Any]] = []
    for index, instance in enumerate(instances):
        if isinstance(instance, dict):
            absent = [name for name in names if name not in instance]
            if absent:
                problems[index] = [
                    f"{name}: missing feature (send null if unknown)" for name in absent
                ]
                continue
            rows.append(tuple(instance[name] for name in names))
        elif isinstance(instance, list):
            if len(instance) != n_features:
                problems[index] = [f"expected {n_features} values, got {len(instance)}"]
                continue
            rows.append(instance)
        elif isinstance(instance, Unreadable):
            problems[index] = [instance.reason]
            continue
        else:
            problems[index] = [
                f"an instance is a list of {n_features} values or an object keyed by feature "
                f"name, not {describe(instance)}"
            ]
            continue
        good.append(index)
    return _score(model, len(instances), good, rows, problems)


def _report(problems: dict[int, list[str]], feature: str, index: int, problem: str) -> None:
    problems.setdefault(index, []).append(f"{feature}: {problem}")


def _score(
    model: Model,
    size: int,
    good: list[int],
    rows: list[Sequence[Any]],
    problems: dict[int, list[str]],
) -> list[RowResult]:
    """Feed the rows the readers accepted; rows the FeedBuilder refuses join ``problems``."""
    results = [RowResult() for _ in range(size)]
    for index, reasons in problems.items():
        results[index].reason = "; ".join(reasons)
    if not rows:
        return results
    try:
        feed = model.feed(rows)
    except ApiError:
        refused = row_problems(model.features, rows)
        if not refused:  # the builder refused something no row can be blamed for
            raise
        for position, reason in refused.items():
            results[good[position]].reason = reason
        kept = [p for p in range(len(rows)) if p not in refused]
        if not kept:
            return results
        good = [good[p] for p in kept]
        feed = model.feed([rows[p] for p in kept])
    _fill(model, feed, results, good)
    return results


def _fill(
    model: Model, feed: dict[str, np.ndarray], results: list[RowResult], good: Sequence[int]
) -> None:
    """Run the model on ``feed`` (the rows ``good`` of ``results``) and fill their answers."""
    answer = model.predict_feed(feed)
    withheld = set(non_finite_rows(answer))
    predictions = answer["predictions"]
    if isinstance(predictions, np.ndarray) and predictions.dtype.kind != "f":
        predictions = predictions.tolist()  # labels; float32 values stay numpy, as the API's
    probabilities = answer.get("probabilities")
    for position, index in enumerate(good):
        result = results[index]
        if position in withheld:
            result.reason = NON_FINITE_PROBLEM
            continue
        result.prediction = predictions[position]
        if probabilities is not None:
            result.probabilities = probabilities[position]
