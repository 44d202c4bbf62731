"""The columnar reader (training_jobs.table + cells) against the reader before it.

The oracle is the job's previous reader, frozen in tests/support/legacy_data.py (pandas,
every cell a Python string, the contract's rule per cell). On real tables and on generated
tricky ones, both must give the same schema, warnings, features (float32 bit for bit, NaN
where missing; categories verbatim), labels, and the same error line when the data is bad;
and a model fitted on either input is the same model.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer, load_diabetes

from onnxkit.contract.values import ValueRule
from onnxkit.datasets import bundled
from tests.support import legacy_data
from training_jobs import table as table_module
from training_jobs.data import infer_schema, prepare, split
from training_jobs.errors import TrainingError
from training_jobs.estimators import build_pipeline, fit, make_estimator
from training_jobs.hyperparameters import parse_args
from training_jobs.table import read_table

Outcome = tuple[str, Any]


def legacy(channel: Path, target: str, categorical: list[str], rule: ValueRule) -> Outcome:
    """What the job's previous reader made of a channel: the error, or schema, X and y."""
    try:
        frame = legacy_data.read_channel(str(channel), "train").frame
        schema = legacy_data.infer_schema(frame, target, "auto", categorical, rule)
        X, y = legacy_data.prepare(frame, schema, target)
    except TrainingError as error:
        return "error", str(error)
    return "ok", (schema, X, y)


def columnar(channel: Path, target: str, categorical: list[str], rule: ValueRule) -> Outcome:
    """What the columnar reader makes of it (as training_jobs.job.read_inputs calls it)."""
    try:
        table = read_table(str(channel), "train", rule, text={target, *categorical})
        schema = infer_schema(table, target, "auto", categorical, rule)
        X, y = prepare(table, schema, target)
    except TrainingError as error:
        return "error", str(error)
    return "ok", (schema, X, y)


def assert_same(old: Outcome, new: Outcome) -> None:
    """Same error line, or the same schema, features (bit for bit) and labels."""
    assert old[0] == new[0], (old, new)
    if old[0] == "error":
        assert old[1] == new[1]
        return
    (s1, X1, y1), (s2, X2, y2) = old[1], new[1]
    assert (s1.numeric, s1.categorical, s1.features, s1.task, s1.warnings) == (
        s2.numeric,
        s2.categorical,
        s2.features,
        s2.task,
        s2.warnings,
    )
    assert list(X1.columns) == list(X2.columns)
    assert list(X1.dtypes) == list(X2.dtypes)
    for column in s1.numeric:
        a, b = X1[column].to_numpy(), X2[column].to_numpy()
        assert a.dtype == b.dtype == np.float32
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), column  # -0.0, NaN too
    for column in s1.categorical:
        assert X1[column].tolist() == X2[column].tolist()
    assert y1.dtype == y2.dtype and np.array_equal(y1, y2)
    # The block layout pandas gives a float32 frame: the same summation order when fitting.
    assert (
        X1[s1.numeric].to_numpy().flags.f_contiguous == X2[s2.numeric].to_numpy().flags.f_contiguous
    )


def sklearn_csv(tmp_path: Path, loader: Any, target: str) -> Path:
    bunch = loader(as_frame=True)
    path = tmp_path / f"{target}.csv"
    frame = bunch.frame.rename(columns={"target": target})
    frame.to_csv(path, index=False)
    return path


REAL = ["breast_cancer", "diabetes", "iris", "customer_churn"]


@pytest.mark.parametrize("dataset", REAL)
def test_the_bundled_datasets_read_the_same(dataset: str) -> None:
    data = bundled(dataset)
    rule = ValueRule()
    assert_same(
        legacy(data.path, data.target, [], rule), columnar(data.path, data.target, [], rule)
    )


@pytest.mark.parametrize(("loader", "target"), [(load_breast_cancer, "y"), (load_diabetes, "y")])
def test_scikit_learn_tables_written_by_pandas_read_the_same(
    tmp_path: Path, loader: Any, target: str
) -> None:
    path = sklearn_csv(tmp_path, loader, target)
    rule = ValueRule()
    assert_same(legacy(path, target, [], rule), columnar(path, target, [], rule))


@pytest.mark.parametrize(
    ("dataset", "model"),
    [
        ("breast_cancer", "mlp"),
        ("diabetes", "random_forest"),
        ("customer_churn", "hist_gradient_boosting"),
    ],
)
def test_a_model_trained_on_either_reading_is_the_same_model(dataset: str, model: str) -> None:
    data = bundled(dataset)
    rule = ValueRule()
    models = []
    for read in (legacy, columnar):
        kind, result = read(data.path, data.target, [], rule)
        assert kind == "ok"
        schema, X, y = result
        X_train, X_valid, y_train, _ = split(X, y, schema.task, 0.2, 42)
        if schema.categorical:
            legacy_data.choose_categories(X_train, schema, 100)
        hp = parse_args(["--target", data.target])
        estimator = make_estimator(schema.task, model, hp.estimator, 42)
        pipeline = fit(build_pipeline(schema, estimator), X_train, y_train, curve=False)
        method = "predict_proba" if schema.task == "classification" else "predict"
        models.append(getattr(pipeline, method)(X_valid))
    assert np.array_equal(models[0], models[1])  # bit for bit


# --- generated tables with the cells that trip readers up ------------------------------------

NUMBERS = ["1", "-0", "0", "+3", ".5", "1.", "1e-3", "2E+02", "12", "-7.25", "3.4028234e38"]
TRICKY = [
    " 4 ",
    "\t5",
    "",
    "  ",
    "NA",
    " NA ",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "1e400",
    "-4e38",
    "12,345",
    "1_000",
    "0x10",
    "7kg",
    "a",
    "b c",
    'say "hi"',
    "x\ny",
    "-999",
    "None",
    "\u0661",
    "1\r",
]
KINDS = {
    "numbers": st.sampled_from(NUMBERS),
    "mostly numbers": st.one_of(st.sampled_from(NUMBERS), st.sampled_from(TRICKY)),
    "numbers, missing": st.sampled_from([*NUMBERS, "", "NA", " NA ", "null", " "]),
    "codes": st.sampled_from(["01", "1", "2", "3", "10", "A7"]),
    "anything": st.sampled_from(NUMBERS + TRICKY),
}


@st.composite
def tables(draw: st.DrawFn) -> dict[str, Any]:
    """A small table of tricky cells, how it is written, and how many files it spans."""
    rows = draw(st.integers(1, 60))
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=3))
    columns = {}
    for index, kind in enumerate(kinds):
        cells = draw(st.lists(KINDS[kind], min_size=rows, max_size=rows))
        if kind == "codes" and rows > 1:
            # Numeric-looking categories whose letters come only far down (after the sample):
            # one letter (90% numbers: an error naming it) or many (a categorical column).
            numbers = draw(st.sampled_from([rows - 1, rows // 2]))
            cells = ["1"] * numbers + ["A7"] * (rows - numbers)
        columns[f"c{index}"] = cells
    columns["y"] = draw(
        st.one_of(
            st.lists(st.sampled_from(["0", "1", " 1", "2"]), min_size=rows, max_size=rows),
            st.lists(st.sampled_from(["yes", "no", "NA"]), min_size=rows, max_size=rows),
            st.lists(st.sampled_from(["0.5", "1.25", "-3", "7"]), min_size=rows, max_size=rows),
        )
    )
    return {
        "columns": columns,
        "quoting": draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
        "files": draw(st.integers(1, 3)),
        "gzip": draw(st.booleans()),
        "bom": draw(st.booleans()),
        "crlf": draw(st.booleans()),
        "categorical": draw(st.lists(st.sampled_from(sorted(columns)[:-1]), max_size=1)),
        "tokens": draw(st.sampled_from([None, "", "NA,-", "None"])),
    }


def write_channel(root: Path, spec: dict[str, Any]) -> None:
    columns: dict[str, list[str]] = spec["columns"]
    names = list(columns)
    rows = list(zip(*columns.values(), strict=True))
    files: int = spec["files"]
    for index in range(files):
        part = rows[index::files] if files > 1 else rows
        buffer = io.StringIO(newline="")
        writer = csv.writer(
            buffer, quoting=spec["quoting"], lineterminator="\r\n" if spec["crlf"] else "\n"
        )
        writer.writerow(names)
        writer.writerows(part)
        text = ("\ufeff" if spec["bom"] else "") + buffer.getvalue()
        name = f"part{index}.csv"
        if spec["gzip"]:
            (root / f"{name}.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (root / name).write_bytes(text.encode())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=tables())
def test_generated_tricky_tables_read_the_same(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any]
) -> None:
    # Blocks of 256 bytes and a sample of two blocks or so: the sample is a few rows, so
    # columns that change kind further down, and several blocks and files, are exercised on
    # small tables; so are groups of blocks written while the next are parsed, and the
    # float32 block growing under them.
    monkeypatch.setattr(table_module, "BLOCK_SIZE", 256)
    monkeypatch.setattr(table_module, "SAMPLE_SIZE", 400)
    monkeypatch.setattr(table_module, "GROUP_BYTES", 300)
    root = tmp_path_factory.mktemp("channel")
    write_channel(root, spec)
    tokens = spec["tokens"]
    rule = ValueRule.of(None if tokens is None else [t for t in tokens.split(",") if t])
    categorical = spec["categorical"]
    assert_same(legacy(root, "y", categorical, rule), columnar(root, "y", categorical, rule))


def test_groups_written_while_parsing_on_and_a_growing_block_read_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks are written on the workers while pyarrow parses the next ones. Here: long numbers
    # first (the block's room, estimated from them, runs short, so it grows while groups are
    # in flight), two files, and a column that stops being numbers deep in the second file.
    monkeypatch.setattr(table_module, "BLOCK_SIZE", 4096)
    monkeypatch.setattr(table_module, "SAMPLE_SIZE", 8192)
    monkeypatch.setattr(table_module, "GROUP_BYTES", 8192)
    grown: list[int] = []
    reserve = table_module._Reading._reserve

    def counted(reading: Any, rows: int, batch: Any) -> None:
        grown.append(reading.block.shape[1])
        reserve(reading, rows, batch)

    monkeypatch.setattr(table_module._Reading, "_reserve", counted)
    rng = np.random.default_rng(4)
    for part, rows in enumerate([6_000, 9_000]):
        frame = pd.DataFrame(rng.normal(size=(rows, 5)), columns=list("abcde"))
        cells = frame.map(lambda v: f"{v:.3g}").astype(object)
        if part == 0:
            cells.iloc[:400] = frame.iloc[:400].map(lambda v: f"{v:.17e}")
        else:
            cells.loc[7_000:, "c"] = "seven"  # 2,000 of 15,000: a categorical column
        cells["y"] = rng.integers(0, 3, size=rows)
        cells.to_csv(tmp_path / f"part{part}.csv", index=False)
    rule = ValueRule()
    read = columnar(tmp_path, "y", [], rule)
    assert_same(legacy(tmp_path, "y", [], rule), read)
    assert read[0] == "ok" and read[1][0].categorical == ["c"], read
    assert sum(1 for capacity in grown if capacity) >= 2  # grew, besides the first room


@pytest.mark.parametrize(
    "text",
    [
        "",  # empty file
        "x,y\n",  # header only
        "x,x\n1,2\n",  # duplicate names
        "x,\n1,2\n",  # empty name
        "x,y\n1,2,3\n",  # a long row
        "x,y\n1\n2,a\n",  # a short row
        "x,y\n  \n1,a\n2,b\n",  # a whitespace-only line (pandas skips it)
        "x\n1\n",  # one column
        "x,y\n\xff,a\n",  # not UTF-8 (written as latin-1 below)
        'x,y\n"1\n2",a\n3,b\n',  # a quoted newline in a number
        "x,y\n1,a\n\n\n2,b\n",  # blank lines
    ],
)
def test_odd_files_read_the_same(tmp_path: Path, text: str) -> None:
    (tmp_path / "a.csv").write_bytes(text.encode("latin-1"))
    rule = ValueRule()
    assert_same(legacy(tmp_path, "y", [], rule), columnar(tmp_path, "y", [], rule))


def test_files_with_different_headers_are_refused_in_the_same_words(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x,y\n1,a\n2,b\n")
    (tmp_path / "b.csv").write_text("x,z\n1,a\n")
    rule = ValueRule()
    assert_same(legacy(tmp_path, "y", [], rule), columnar(tmp_path, "y", [], rule))


def test_a_big_table_keeps_numbers_as_float32_and_drops_their_text(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(20_000, 4)).astype(np.float32), columns=list("abcd"))
    frame["y"] = rng.integers(0, 2, size=len(frame))
    frame.to_csv(tmp_path / "t.csv", index=False)
    table = read_table(str(tmp_path), "train", ValueRule(), text={"y"})
    assert sorted(table.numbers) == list("abcd") and sorted(table.texts) == ["y"]
    assert table.block is not None and table.block.shape == (4, 20_000)
    assert table.block.flags.c_contiguous
    assert np.array_equal(table.numbers["c"], frame["c"].to_numpy())


ALPHABET = "0123456789.eE+- \t_,xXainfINFtyd\u0661\u00a0\r\n#'\""


@settings(max_examples=2000, deadline=None)
@given(
    cells=st.lists(
        st.one_of(
            st.text(alphabet=ALPHABET, max_size=8),
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            st.floats(width=32).map(lambda v: f"{v:.9g}"),
            st.sampled_from(["NA", " NA", "nan", "-0", "1e39", "-3.4028235e38", "1" * 40]),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_a_numeric_column_is_read_as_the_contract_reads_each_cell(cells: list[str]) -> None:
    import pyarrow as pa

    from onnxkit.contract.values import ValueProblem
    from training_jobs.cells import clean_numbers

    rule = ValueRule()
    expected: list[float | None] | None = []
    for cell in cells:
        try:
            expected.append(rule.number(cell))  # type: ignore[union-attr]
        except ValueProblem:
            expected = None
            break
    got = clean_numbers(pa.array(cells, type=pa.string()), rule)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert [None if np.isnan(v) else v for v in got.tolist()] == expected
        # -0.0 and 0.0 compare equal: the sign bits must match too.
        signs = [bool(np.signbit(g)) for g, e in zip(got, expected, strict=True) if e is not None]
        assert signs == [bool(np.signbit(e)) for e in expected if e is not None]
