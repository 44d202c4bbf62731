"""``onnxkit score`` in-process (CliRunner): formats, order, ids, exit codes, one-line errors,
resume and refusal of a finished output."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from onnxkit.datasets import bundled
from tests.support.cli import invoke

pytestmark = pytest.mark.xdist_group("trained-churn")


@pytest.fixture(scope="module")
def churn_model(train_artifact: Any) -> Path:
    return train_artifact("customer_churn", model="logistic_regression")


def _rows(n: int) -> tuple[list[str], list[list[str]]]:
    with bundled("customer_churn").path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return ["customer", *header], [
            [f"c{i}", *row] for i, row in zip(range(n), reader, strict=False)
        ]


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _csv_out(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_to_jsonl_all_scored_exit_0(tmp_path, runner, churn_model):
    header, rows = _rows(120)
    data = _write_csv(tmp_path / "rows.csv", header, rows)
    out = tmp_path / "preds.jsonl"
    result = invoke(runner, "score", "--model", churn_model, "-i", data, "-o", out, "--workers", 1)
    assert result.exit_code == 0, result.output
    records = _jsonl(out)
    assert [r["row"] for r in records] == list(range(120))
    assert [r["line"] for r in records] == list(range(2, 122))
    assert all(r["error"] is None and r["prediction"] in ("yes", "no") for r in records)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in records)
    assert set(records[0]) == {
        "row",
        "line",
        "prediction",
        "probabilities",
        "model_version",
        "error",
    }
    assert "rows in 120 = 120 scored + 0 rejected; model" in result.stderr
    progress = json.loads((tmp_path / "preds.jsonl.progress.json").read_text())
    assert progress["complete"] is True and progress["next_row"] == 120


def test_rejected_rows_exit_2_with_line_numbers_id_column_and_csv_output(
    tmp_path, runner, churn_model
):
    header, rows = _rows(60)
    tenure = header.index("tenure_months")
    rows[10][tenure] = "twelve"
    rows[40] = rows[40][:3]
    rows[20][header.index("plan")] = "multi\nline"  # a quoted line break: one row, two lines
    data = tmp_path / "rows.csv"
    _write_csv(data, header, rows)
    with data.open("a") as handle:
        handle.write("\n\n")  # trailing blank lines are not rows
    out = tmp_path / "preds.csv"
    result = invoke(
        runner, "score", "--model", churn_model, "-i", data, "-o", out, "--id-column",
        "customer", "--workers", 2, "--batch-rows", 7,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    records = _csv_out(out)
    assert list(records[0]) == [
        "row", "line", "customer", "prediction", "proba_no", "proba_yes", "model_version", "error",
    ]  # fmt: skip
    assert [r["customer"] for r in records] == [f"c{i}" for i in range(60)]
    assert [int(r["row"]) for r in records] == list(range(60))
    # Rows after the two-line row start one line later.
    assert [int(r["line"]) for r in records] == [i + 2 + (i > 20) for i in range(60)]
    rejected = {int(r["row"]): r for r in records if r["error"]}
    assert set(rejected) == {10, 40}
    assert rejected[10]["error"] == "tenure_months: expected a number, got 'twelve'"
    assert rejected[10]["prediction"] == "" and rejected[10]["proba_no"] == ""
    assert rejected[40]["error"] == "expected 9 fields (the header's), got 3"
    assert records[20]["error"] == ""  # an unseen category is scored, as by the API
    assert "rows in 60 = 58 scored + 2 rejected" in result.stderr
    assert "│ 12 " in result.stderr and "│ 43 " in result.stderr  # their lines, in the table


def test_jsonl_input_in_order_with_two_workers(tmp_path, runner, churn_model):
    header, rows = _rows(200)
    data = tmp_path / "rows.jsonl"
    with data.open("w") as handle:
        for i, row in enumerate(rows):
            record: Any = dict(zip(header, row, strict=True))
            for key in ("tenure_months", "monthly_charges", "support_calls", "age"):
                record[key] = float(record[key]) if record[key] else None  # null: missing
            if i % 2:  # an array in signature order (no id) for every other row
                record = [record[name] for name in header[1:-1]]
            handle.write(json.dumps(record) + "\n")
            if i == 99:
                handle.write("{not json\n\n")
    out_one, out_two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    args = ("--model", churn_model, "-i", data, "--id-column", "customer", "--batch-rows", 9)
    one = invoke(runner, "score", *args, "-o", out_one, "--workers", 1)
    two = invoke(runner, "score", *args, "-o", out_two, "--workers", 2)
    assert one.exit_code == two.exit_code == 2, one.output + two.output
    assert out_one.read_bytes() == out_two.read_bytes()
    records = _jsonl(out_two)
    assert len(records) == 201
    assert records[100]["line"] == 101 and records[100]["error"].startswith("not valid JSON")
    assert records[101]["line"] == 103 and records[101]["customer"] == "c100"
    assert records[101]["prediction"] in ("yes", "no")
    assert all(r["error"] is None for i, r in enumerate(records) if i != 100)
    assert [r["customer"] for r in records if r["line"] != 101] == [
        None if i % 2 else f"c{i}" for i in range(200)
    ]


def test_resume_continues_after_the_last_committed_chunk(tmp_path, runner, churn_model):
    header, rows = _rows(100)
    data = _write_csv(tmp_path / "rows.csv", header, rows)
    whole, part = tmp_path / "whole.csv", tmp_path / "part.csv"
    args = ("--model", churn_model, "-i", data, "--batch-rows", 30, "--workers", 1)
    assert invoke(runner, "score", *args, "-o", whole).exit_code == 0
    assert invoke(runner, "score", *args, "-o", part).exit_code == 0
    # Pretend a kill after chunk 2 of 4: the progress record says 60 rows, and a torn third
    # chunk was half written after it.
    record_path = tmp_path / "part.csv.progress.json"
    full = json.loads(record_path.read_text())
    lines = whole.read_bytes().splitlines(keepends=True)
    committed = b"".join(lines[:61])
    with data.open("rb") as handle:
        offset = len(b"".join(handle.readlines()[:61]))
    record = {**full, "complete": False, "next_row": 60, "next_line": 62, "chunks": 2}
    record.update(input_offset=offset, output_bytes=len(committed), scored=60)
    record_path.write_text(json.dumps(record))
    part.write_bytes(committed + lines[61] + lines[62][:9])
    result = invoke(runner, "score", *args, "-o", part)
    assert result.exit_code == 0, result.output
    assert "resuming after row 60" in result.stderr
    assert "rows in 100 (60 before resuming) = 100 scored" in result.stderr
    assert part.read_bytes() == whole.read_bytes()


def test_a_finished_output_is_refused_and_overwrite_starts_afresh(tmp_path, runner, churn_model):
    header, rows = _rows(10)
    data = _write_csv(tmp_path / "rows.csv", header, rows)
    out = tmp_path / "preds.jsonl"
    args = ("score", "--model", churn_model, "-i", data, "-o", out, "--workers", 1)
    assert invoke(runner, *args).exit_code == 0
    before = out.read_bytes()
    again = invoke(runner, *args)
    assert again.exit_code == 1
    assert again.stderr.strip().splitlines() == [
        f"error: {out} is already complete (10 rows, model "
        + _jsonl(out)[0]["model_version"]
        + "); pass --overwrite or another --output"
    ]
    assert out.read_bytes() == before
    assert invoke(runner, *args, "--overwrite").exit_code == 0
    assert out.read_bytes() == before


def _one_error_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_bad_input_is_one_line(tmp_path, runner, churn_model):
    header, rows = _rows(5)
    plan = header.index("plan")
    data = _write_csv(
        tmp_path / "rows.csv",
        header[:plan] + header[plan + 1 :],
        [r[:plan] + r[plan + 1 :] for r in rows],
    )
    out = tmp_path / "o.jsonl"
    line = _one_error_line(invoke(runner, "score", "--model", churn_model, "-i", data, "-o", out))
    assert "missing feature column(s) the model needs: plan" in line

    missing = tmp_path / "nope.csv"
    line = _one_error_line(
        invoke(runner, "score", "--model", churn_model, "-i", missing, "-o", out)
    )
    assert "not found" in line

    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\n1,2\n")
    line = _one_error_line(invoke(runner, "score", "--model", churn_model, "-i", binary, "-o", out))
    assert "not UTF-8" in line

    good = _write_csv(tmp_path / "good.csv", *_rows(5))
    line = _one_error_line(
        invoke(runner, "score", "--model", churn_model, "-i", good, "-o", out, "--id-column", "x")
    )
    assert "no id column 'x'" in line

    line = _one_error_line(invoke(runner, "score", "-i", good, "-o", out))
    assert "exactly one of --model or --workdir" in line

    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text(good.read_text() + 'c9,1,2,"basic\n')
    result = invoke(runner, "score", "--model", churn_model, "-i", unclosed, "-o", out)
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line == (
        f"error: {unclosed} line 7: a quoted field opened here never closes (unexpected end of "
        f"data); stopped there: the 5 rows before it are in {out}"
    )
    assert len(_jsonl(out)) == 5  # the rows before it are written


def test_an_unreadable_or_tampered_model_is_one_line(tmp_path, runner, churn_model):
    data = _write_csv(tmp_path / "rows.csv", *_rows(5))
    out = tmp_path / "o.jsonl"
    tampered = tmp_path / "model"
    shutil.copytree(churn_model, tampered)
    with (tampered / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    line = _one_error_line(invoke(runner, "score", "--model", tampered, "-i", data, "-o", out))
    assert "digest mismatch" in line
    (tampered / "manifest.json").write_text("{")
    line = _one_error_line(invoke(runner, "score", "--model", tampered, "-i", data, "-o", out))
    assert "cannot load the model" in line
    line = _one_error_line(
        invoke(runner, "score", "--model", tmp_path / "absent", "-i", data, "-o", out)
    )
    assert "cannot load the model" in line
    assert not out.exists()


def test_workdir_scores_with_the_promoted_model(tmp_path, runner):
    workdir = tmp_path / "work"
    trained = invoke(
        runner, "run", "--workdir", workdir, "--dataset", "customer_churn",
        "--model", "logistic_regression",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    pointer = json.loads(next((workdir / "models").glob("*/production.json")).read_text())
    data = _write_csv(tmp_path / "rows.csv", *_rows(20))
    out = tmp_path / "o.jsonl"
    result = invoke(runner, "score", "--workdir", workdir, "-i", data, "-o", out)
    assert result.exit_code == 0, result.output
    assert {r["model_version"] for r in _jsonl(out)} == {pointer["model_version"]}
