"""onnxkit/local/columnar.py: Arrow's CSV blocks and Parquet write the row-by-row path's bytes.

The reference is the inference runtime's row-by-row path: ``table.records`` splits the bytes into
records (blank lines skipped, quoted line breaks kept), ``table.score_records`` reads them by the
contract's rules and ``table.format_records`` writes them. For every block Arrow's path accepts,
its bytes must be the reference's; a block the reference has anything to say about (a refused
cell, a missing value, another width, quoting) must be declined so the reference says it.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxkit.contract.values import FLOAT32_MAX, NUMBER_PATTERN
from onnxkit.datasets import bundled

pytestmark = pytest.mark.xdist_group("inference")

FIRST_ROW, FIRST_LINE = 7, 9


@pytest.fixture(scope="module")
def models(train_artifact: Callable[..., Path]) -> dict[str, Any]:
    from functions.inference.batch import open_model

    return {
        "breast_cancer": open_model(str(train_artifact("breast_cancer", model="mlp"))),
        "diabetes": open_model(str(train_artifact("diabetes", model="ridge"))),
        "iris": open_model(str(train_artifact("iris", model="logistic_regression"))),
        "customer_churn": open_model(str(train_artifact("customer_churn", model="mlp"))),
    }


def _table(dataset: str) -> tuple[list[str], list[bytes]]:
    header, *lines = bundled(dataset).path.read_bytes().splitlines(keepends=True)
    return header.decode().strip().split(","), lines


def _reference(model: Any, header: list[str], block: bytes, id_column: str | None) -> bytes:
    """The row-by-row path's bytes for the records of ``block`` (lines from FIRST_LINE)."""
    from functions.inference import table

    job = table.Job("csv", "jsonl", tuple(header), id_column)
    found = list(table.records(block.splitlines(keepends=True), "csv", FIRST_LINE))
    results, ids = table.score_records(model, job, [record for record, _, _ in found])
    done = table.format_records(
        model, job, results, ids, first_row=FIRST_ROW, lines=[line for _, line, _ in found]
    )
    return done.data


def _fast(model: Any, header: list[str], block: bytes, id_column: str | None = None) -> Any:
    from functions.inference import table
    from onnxkit.local import columnar

    job = table.Job("csv", "jsonl", tuple(header), id_column)
    return columnar.score_csv_block(model, job, block, first_row=FIRST_ROW, first_line=FIRST_LINE)


def _same_or_declined(model: Any, header: list[str], block: bytes, id_column: str | None) -> bool:
    """Asserts the property; True when the fast path took the block."""
    fast = _fast(model, header, block, id_column)
    if fast is not None:
        assert fast.data == _reference(model, header, block, id_column)
        assert fast.scored == block.count(b"\n") and fast.rejected == 0
    return fast is not None


@pytest.mark.parametrize("dataset", ["breast_cancer", "diabetes", "iris"])
def test_a_real_table_is_scored_whole_into_the_row_by_row_bytes(
    models: dict[str, Any], dataset: str
) -> None:
    header, lines = _table(dataset)
    block = b"".join(random.Random(3).choices(lines, k=3000))
    fast = _fast(models[dataset], header, block)
    assert fast is not None, "Arrow's path declined a plain table"
    assert fast.data == _reference(models[dataset], header, block, None)


def test_a_model_with_categorical_features_is_left_to_the_row_by_row_path(
    models: dict[str, Any],
) -> None:
    header, lines = _table("customer_churn")
    assert _fast(models["customer_churn"], header, b"".join(lines[:50])) is None


@pytest.mark.parametrize("where", ["first", "last"])
def test_an_id_column_of_any_text_rides_along_in_the_same_bytes(
    models: dict[str, Any], where: str
) -> None:
    header, lines = _table("breast_cancer")
    ids = ["c-1", "José", "", "00042", "x y", "null", "1e3", "tab\there", "back\\slash", "\x01"]
    rows = random.Random(5).choices(lines, k=len(ids) * 100)
    ids = ids * 100
    if where == "first":
        header = ["id", *header]
        block = b"".join(f"{i},".encode() + row for i, row in zip(ids, rows, strict=True))
    else:
        header = [*header, "id"]
        block = b"".join(row[:-1] + f",{i}\n".encode() for i, row in zip(ids, rows, strict=True))
    assert _same_or_declined(models["breast_cancer"], header, block, "id")


# Every spelling a cell of a numeric column may take that the contract reads one way and a
# float parser might read another.
SPELLINGS = [
    "+1.5", ".5", "5.", "-0", "+0", "-0.0", "1E+2", "1e-2", "0012", "1e-310", "3.4028234e38",
    "3.4028236e38", "-7e-46", "12345678901234567890", "1e308", "1e309", "", " ", "NA", "nan",
    "NaN", "-nan", "inf", "-inf", "+inf", "Infinity", "INF", "1e", "--1", "+-1", "-+1", "++1",
    "1.2.3", "0x10", "0X1p3", "1_000", "1,5", " 1", "1 ", "\t1", "1\t", "\x0b1", "1\x0c", "e5",
    "0." + "1" * 40, "9" * 25 + "e-10", "2.4703282292062328e-324", "4.9e-324",
    ".", "-", "+", "1d5", "1f", "\uff11", "\u0663", "1e+", "1e-", ".e1", "0.1e-1_0", "None", "#N/A",
]  # fmt: skip


@pytest.mark.parametrize("cell", SPELLINGS)
def test_each_number_spelling_is_read_alike_or_declined(models: dict[str, Any], cell: str) -> None:
    header, lines = _table("breast_cancer")
    cells = lines[0].decode().strip().split(",")
    cells[3] = cell
    block = b"".join(lines[1:40]) + (",".join(cells) + "\n").encode() + lines[41]
    _same_or_declined(models["breast_cancer"], header, block, None)


def test_arrow_reads_no_short_string_as_a_number_the_contract_reads_otherwise() -> None:
    """Arrow's float parser against the contract's rule, on every string of up to three
    characters from the characters numbers are spelt with (and some they are not): Arrow may
    refuse more, and may read NaN or infinity (both declined), but any finite number it reads
    is the contract's number for that text."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from onnxkit.local import columnar

    number = re.compile(NUMBER_PATTERN)
    alphabet = "019.eE+-_ \tx,nai"
    convert = pacsv.ConvertOptions(
        column_types={"c0": pa.float64()}, null_values=[], strings_can_be_null=False
    )
    read = pacsv.ReadOptions(column_names=["c0"])
    accepted = 0
    for size in range(1, 4):
        for chars in itertools.product(alphabet, repeat=size):
            text = "".join(chars)
            try:
                parsed = pacsv.read_csv(
                    pa.py_buffer(f"{text}\n".encode()), read, columnar.PARSE, convert
                )
            except pa.ArrowInvalid:
                continue
            value = parsed.column(0)[0].as_py()
            if parsed.num_rows != 1 or math.isnan(value) or abs(value) > FLOAT32_MAX:
                continue  # declined by the block path's own checks
            stripped = text.strip(" \t")
            assert number.fullmatch(stripped), text
            assert float(stripped) == value, text
            accepted += 1
    assert accepted > 200  # the comparison compared something (258 numbers here)


# Cells as a hostile file might hold them, for the property below.
_cells = st.one_of(
    st.sampled_from(SPELLINGS),
    st.from_regex(r"[+-]?[0-9]{0,4}(\.[0-9]{0,4})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet='0123456789.eE+-_ \t"\r\n\x00abcé,', max_size=6),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(st.tuples(st.integers(0, 59), st.integers(0, 30), _cells), max_size=4),
    shape=st.sampled_from(["", "blank", "short", "long", "bom", "latin1", "quoted", "crlf"]),
    with_id=st.booleans(),
)
def test_any_block_is_scored_into_the_same_bytes_or_declined(
    models: dict[str, Any], edits: list[tuple[int, int, str]], shape: str, with_id: bool
) -> None:
    header, lines = _table("breast_cancer")
    rows = [line.decode().rstrip("\n").split(",") for line in lines[:60]]
    if with_id:
        header = [*header, "id"]
        rows = [[*row, f"r{i}"] for i, row in enumerate(rows)]
    for row, column, cell in edits:
        rows[row][column] = cell
    text = [",".join(row) + "\n" for row in rows]
    if shape == "blank":
        text[30] += "\n"
    elif shape == "short":
        text[12] = text[12].split(",", 1)[1]
    elif shape == "long":
        text[12] = "1," + text[12]
    elif shape == "bom":
        text[0] = "\ufeff" + text[0]
    elif shape == "quoted":
        text[5] = '"' + text[5].replace(",", '",', 1)
    elif shape == "crlf":
        text[7] = text[7][:-1] + "\r\n"
    block = "".join(text).encode()
    if shape == "latin1":
        block = block.replace(b"\n", b"\xe9\n", 1)  # in the target: a column no one reads
    _same_or_declined(models["breast_cancer"], header, block, "id" if with_id else None)


def test_the_property_is_not_vacuous(models: dict[str, Any]) -> None:
    """Unedited blocks of the property's shape are taken by the fast path."""
    header, lines = _table("breast_cancer")
    assert _same_or_declined(models["breast_cancer"], header, b"".join(lines[:60]), None)
    header_id = [*header, "id"]
    block = b"".join(line[:-1] + f",r{i}\n".encode() for i, line in enumerate(lines[:60]))
    assert _same_or_declined(models["breast_cancer"], header_id, block, "id")


# --- Parquet ---------------------------------------------------------------------------------
def _churn_with_problems(path: Path) -> Path:
    """The bundled churn table with an id column, a word, a missing token and an empty cell
    where numbers go (so tenure_months is a text column in Parquet), and an empty category."""
    header, lines = _table("customer_churn")
    rows = [line.decode().rstrip("\n").split(",") for line in lines]
    tenure = header.index("tenure_months")
    for row, cell in ((10, "twelve"), (40, "NA"), (41, ""), (100, "1e39"), (2999, "-0")):
        rows[row][tenure] = cell
    rows[7][header.index("plan")] = ""
    body = [",".join(["n", *header])] + [",".join([str(i), *row]) for i, row in enumerate(rows)]
    path.write_text("\n".join(body) + "\n")
    return path


def _as_parquet(csv_path: Path, row_group_size: int) -> Path:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = csv_path.with_suffix(".parquet")
    pq.write_table(pacsv.read_csv(csv_path), path, row_group_size=row_group_size)
    return path


def _score(model: Path, source: Path, output: Path, **options: Any) -> Any:
    from onnxkit.local.scoring import ModelRef, score_file

    return score_file(
        model_ref=ModelRef(str(model)), input_path=source, output=output, workers=1, **options
    )


@pytest.mark.parametrize(
    ("dataset", "suffix", "id_column"),
    [
        ("breast_cancer", ".jsonl", None),
        ("customer_churn", ".jsonl", "n"),
        ("customer_churn", ".csv", "n"),
    ],
)
def test_a_parquet_file_is_scored_as_the_csv_of_the_same_table(
    train_artifact: Callable[..., Path],
    tmp_path: Path,
    dataset: str,
    suffix: str,
    id_column: str | None,
) -> None:
    model = train_artifact(dataset, model="mlp")
    if dataset == "customer_churn":
        source = _churn_with_problems(tmp_path / "rows.csv")
    else:
        source = tmp_path / "rows.csv"
        source.write_bytes(bundled(dataset).path.read_bytes())
    parquet = _as_parquet(source, row_group_size=250)
    from_csv = _score(model, source, tmp_path / f"csv{suffix}", id_column=id_column)
    from_parquet = _score(
        model, parquet, tmp_path / f"parquet{suffix}", id_column=id_column, batch_rows=100
    )
    expected = (tmp_path / f"csv{suffix}").read_bytes()
    assert (tmp_path / f"parquet{suffix}").read_bytes() == expected
    assert (from_parquet.rows, from_parquet.scored, from_parquet.rejected) == (
        from_csv.rows,
        from_csv.scored,
        from_csv.rejected,
    )
    assert from_parquet.samples == from_csv.samples
    if dataset == "customer_churn":
        assert from_csv.rejected >= 2  # "twelve" and 1e39 at least


def test_a_parquet_run_resumes_after_an_interrupt_with_nothing_lost_or_twice(
    train_artifact: Callable[..., Path], tmp_path: Path
) -> None:
    import contextlib

    model = train_artifact("customer_churn", model="mlp")
    parquet = _as_parquet(_churn_with_problems(tmp_path / "rows.csv"), row_group_size=700)
    whole = tmp_path / "whole.jsonl"
    _score(model, parquet, whole, batch_rows=300)

    @contextlib.contextmanager
    def stop_after_four(total: int, done: int) -> Any:
        calls = []

        def advance(size: int) -> None:
            calls.append(size)
            if len(calls) == 4:
                raise KeyboardInterrupt

        yield advance

    part = tmp_path / "part.jsonl"
    with pytest.raises(KeyboardInterrupt):
        _score(model, parquet, part, batch_rows=300, progress_bar=stop_after_four)
    assert 0 < len(part.read_bytes()) < len(whole.read_bytes())
    summary = _score(model, parquet, part, batch_rows=250)  # other chunks: rows locate it
    assert summary.resumed_rows == 1200
    assert part.read_bytes() == whole.read_bytes()


def test_a_file_that_is_not_parquet_is_one_readable_error(
    train_artifact: Callable[..., Path], tmp_path: Path
) -> None:
    from onnxkit.errors import KitError

    source = tmp_path / "rows.parquet"
    source.write_bytes(b"a,b\n1,2\n")
    with pytest.raises(KitError, match=r"rows.parquet: not a readable Parquet file \("):
        _score(train_artifact("breast_cancer", model="mlp"), source, tmp_path / "out.jsonl")


def test_a_parquet_file_without_a_feature_column_is_refused_by_name(
    train_artifact: Callable[..., Path], tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from onnxkit.errors import KitError

    source = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"mean radius": [1.0]}), source)
    with pytest.raises(KitError, match="missing feature column"):
        _score(train_artifact("breast_cancer", model="mlp"), source, tmp_path / "out.jsonl")


def test_parquet_numbers_of_every_type_read_as_their_csv_text_does(
    train_artifact: Callable[..., Path], tmp_path: Path
) -> None:
    """Integers beyond 2**53, float32 values, nulls and NaN in Parquet's own types against the
    CSV holding their text: the same bytes out (the matrix path and the text path agree)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    model = train_artifact("diabetes", model="ridge")
    header, lines = _table("diabetes")
    rows = [[float(cell) for cell in line.split(b",")] for line in lines[:400]]
    columns: dict[str, Any] = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    big = [2**53 + k for k in range(400)]  # odd ones are not float64s: they round
    columns["age"] = pa.array(big, pa.int64())
    columns["bmi"] = pa.array(np.array(columns["bmi"], dtype=np.float32))
    s1 = list(columns["s1"])
    s1[5], s1[6] = None, float("nan")
    columns["s1"] = pa.array(s1, pa.float64())
    table = pa.table(columns)
    parquet = tmp_path / "rows.parquet"
    pq.write_table(table, parquet, row_group_size=150)
    from onnxkit.local.columnar import text_cells

    texts = {name: text_cells(table.column(name)) for name in header}
    csv_path = tmp_path / "rows.csv"
    body = [",".join(header)] + [",".join(texts[n][i] for n in header) for i in range(400)]
    csv_path.write_text("\n".join(body) + "\n")
    _score(model, csv_path, tmp_path / "csv.jsonl")
    _score(model, parquet, tmp_path / "parquet.jsonl", batch_rows=64)
    assert (tmp_path / "parquet.jsonl").read_bytes() == (tmp_path / "csv.jsonl").read_bytes()
    assert texts["age"][1] == "9007199254740993" and texts["s1"][5] == texts["s1"][6] == ""
