"""functions/inference/table.py's whole-block path: the bytes the row-by-row path writes.

``score_plain_block`` reads a block of one-line CSV records of plain numbers in C and writes
JSON Lines by whole columns; for every block it accepts, its output must be byte for byte what
``score_records`` + ``format_records`` write, and it must decline (None) every block the
row-by-row path has something to say about, so that path names the problem.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from onnxkit.datasets import bundled

pytestmark = pytest.mark.xdist_group("inference")


@pytest.fixture(scope="module")
def models(train_artifact: Callable[..., Path]) -> dict[str, Any]:
    from functions.inference.batch import open_model

    return {
        "breast_cancer": open_model(str(train_artifact("breast_cancer", model="mlp"))),
        "iris": open_model(str(train_artifact("iris", model="logistic_regression"))),
        "diabetes": open_model(str(train_artifact("diabetes", model="ridge"))),
    }


def _rows(dataset: str) -> tuple[list[str], list[bytes]]:
    header, *lines = bundled(dataset).path.read_bytes().splitlines(keepends=True)
    return header.decode().strip().split(","), lines


def _both(
    model: Any, header: list[str], block: bytes, id_column: str | None = None, **fields: Any
) -> tuple[Any, bytes]:
    from functions.inference import table

    job = table.Job("csv", "jsonl", tuple(header), id_column)
    whole = table.score_plain_block(model, job, block, first_row=7, first_line=9, **fields)
    records = block.splitlines(keepends=True)
    results, ids = table.score_records(model, job, records)
    one_by_one = table.format_records(
        model, job, results, ids, first_row=7, lines=range(9, 9 + len(records)), **fields
    )
    return whole, one_by_one.data


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris", "diabetes"])
def test_a_plain_block_is_scored_whole_into_the_same_bytes(
    models: dict[str, Any], dataset: str
) -> None:
    header, lines = _rows(dataset)
    block = b"".join(random.Random(3).choices(lines, k=2000))
    whole, expected = _both(models[dataset], header, block)
    assert whole is not None, "the whole-block path declined a plain block"
    assert whole.data == expected and whole.scored == 2000
    lead = {"part": 4}
    whole, expected = _both(
        models[dataset], header, block, lead=lead, row_field="part_row", line_field="part_line"
    )
    assert whole is not None and whole.data == expected


@pytest.mark.parametrize(
    "cell",
    [
        "+1.5",
        ".5",
        "5.",
        "-0",
        "1E+2",
        "0012",
        "1e-310",
        "3.4028234e38",
        "-7e-46",
        "12345678901234567890",
    ],
)
def test_number_spellings_float_reads_are_read_alike(models: dict[str, Any], cell: str) -> None:
    header, lines = _rows("breast_cancer")
    cells = lines[0].decode().strip().split(",")
    cells[3] = cell
    block = b"".join(lines[1:50]) + (",".join(cells) + "\n").encode()
    whole, expected = _both(models["breast_cancer"], header, block)
    assert whole is not None and whole.data == expected


@pytest.mark.parametrize(
    "cell",
    ["", "NA", "1e", "--1", "1.2.3", "3.5e38", "1e400", "nan", "inf", "1_0", " 1", "0x10", "e5"],
)
def test_a_block_with_a_cell_to_report_is_declined(models: dict[str, Any], cell: str) -> None:
    header, lines = _rows("breast_cancer")
    cells = lines[0].decode().strip().split(",")
    cells[3] = cell
    block = b"".join(lines[1:50]) + (",".join(cells) + "\n").encode()
    whole, expected = _both(models["breast_cancer"], header, block)
    assert whole is None
    assert expected.count(b"\n") == 50  # the row-by-row path writes every row


@pytest.mark.parametrize(
    "change",
    [
        lambda line: line.replace(b",", b",1,", 1),  # one field too many
        lambda line: line.split(b",", 1)[1],  # one field short
        lambda line: line + b"\n",  # a blank line is not a row
        lambda line: b'"' + line.replace(b",", b'",', 1),  # quoted
    ],
)
def test_a_block_of_another_shape_is_declined(models: dict[str, Any], change: Any) -> None:
    header, lines = _rows("breast_cancer")
    block = b"".join(lines[1:50]) + change(lines[0]) + lines[60]
    whole, _ = _both(models["breast_cancer"], header, block)
    assert whole is None


@pytest.mark.parametrize("where", ["first", "last"])
def test_an_id_column_of_any_text_rides_along_in_the_same_bytes(
    models: dict[str, Any], where: str
) -> None:
    header, lines = _rows("breast_cancer")
    ids = ["c-1", "José", "", "00042", "x-y", "null", "1e3"] * 300  # a blank: row by row
    rows = random.Random(5).choices(lines, k=len(ids))
    if where == "first":
        header = ["id", *header]
        block = b"".join(f"{i},".encode() + row for i, row in zip(ids, rows, strict=True))
    else:
        header = [*header, "id"]
        block = b"".join(row[:-1] + f",{i}\n".encode() for i, row in zip(ids, rows, strict=True))
    whole, expected = _both(models["breast_cancer"], header, block, id_column="id")
    assert whole is not None, "the whole-block path declined a block with an id column"
    assert whole.data == expected


def test_a_block_with_a_record_that_is_not_utf8_is_declined(models: dict[str, Any]) -> None:
    """Even in a column the model does not read: the row-by-row path refuses the record."""
    header, lines = _rows("breast_cancer")
    block = b"".join(lines[1:20]) + lines[0][:-1] + b"\xe9\n"  # in the target column
    whole, expected = _both(models["breast_cancer"], header, block)
    assert whole is None
    assert b'"error":"not UTF-8 text' in expected.splitlines()[-1]
