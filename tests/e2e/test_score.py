"""``onnxkit score`` end to end on a 100k-row file: the handler's answers on a sample, a SIGKILL
mid-run and a resume that loses and repeats nothing, rejected rows reported by line."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from onnxkit.datasets import bundled
from tests.support.inference import call, event_with

pytestmark = pytest.mark.xdist_group("score")

ONNXKIT = str(Path(sys.executable).with_name("onnxkit"))
ROWS = 100_000
BAD_EVERY = 9_973  # a prime: bad rows land in different chunks and columns


@pytest.fixture(scope="module")
def model_dir(train_artifact: Any) -> Path:
    return train_artifact("customer_churn", model="mlp")


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[list[str]]]:
    """The bundled churn table repeated to 100k rows, an id column first, some bad rows."""
    with bundled("customer_churn").path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = ["id", *next(reader)]
        source = list(reader)
    tenure = header.index("tenure_months")
    rows = []
    for i in range(ROWS):
        row = [str(i), *source[i % len(source)]]
        if i % BAD_EVERY == BAD_EVERY - 1:
            row[tenure] = "n.a."
        rows.append(row)
    path = tmp_path_factory.mktemp("score") / "big.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path, header, rows


def _score(*args: Any, **popen: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1"}
    return subprocess.Popen(
        [ONNXKIT, "score", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its workers share its process group: one SIGKILL for all
        **popen,
    )


def _records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_100k_rows_match_the_handler_survive_a_kill_and_report_rejections(
    tmp_path: Path, model_dir: Path, big_csv: tuple[Path, list[str], list[list[str]]]
) -> None:
    data, header, rows = big_csv
    common = ("--model", model_dir, "-i", data, "--id-column", "id", "--workers", 2)

    whole = tmp_path / "whole.jsonl"
    started = time.perf_counter()
    done = _score(*common, "-o", whole)
    _, stderr = done.communicate(timeout=120)
    seconds = time.perf_counter() - started
    assert done.returncode == 2, stderr
    bad = [i for i in range(ROWS) if i % BAD_EVERY == BAD_EVERY - 1]
    assert f"rows in {ROWS} = {ROWS - len(bad)} scored + {len(bad)} rejected" in stderr
    records = _records(whole)
    assert [r["row"] for r in records] == list(range(ROWS))
    assert [r["id"] for r in records] == [str(i) for i in range(ROWS)]
    rejected = [r for r in records if r["error"]]
    assert [r["row"] for r in rejected] == bad
    assert all(r["line"] == r["row"] + 2 for r in rejected)  # header on line 1
    assert {r["error"] for r in rejected} == {"tenure_months: expected a number, got 'n.a.'"}
    assert f"│ {bad[0] + 2} " in stderr  # the summary's table names the first lines
    assert seconds < 60

    # The handler's answers on a sample of rows, sent as one CSV body.
    from functions.inference.app import InferenceFunction
    from functions.inference.runtime import Settings

    handler = InferenceFunction(Settings(model_uri=str(model_dir)))
    names = [spec.name for spec in handler.runtime.require().features]
    sample = sorted(random.Random(12).sample([i for i in range(ROWS) if i not in bad], 800))
    body = io.StringIO()
    writer = csv.writer(body, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([[rows[i][header.index(n)] for n in names] for i in sample])
    status, _, answer = call(
        handler, event_with(body=body.getvalue(), headers={"Content-Type": "text/csv"})
    )
    assert status == 200, answer
    classes = [str(c) for c in answer["classes"]]
    for i, prediction, probabilities in zip(
        sample, answer["predictions"], answer["probabilities"], strict=True
    ):
        record = records[i]
        assert record["prediction"] == prediction
        ours = np.array([record["probabilities"][c] for c in classes], dtype=np.float32)
        assert np.array_equal(ours, np.array(probabilities, dtype=np.float32))
        assert record["model_version"] == answer["model_version"]

    # Killed mid-run (process group, workers included), then the same command again.
    part = tmp_path / "part.jsonl"
    record_path = tmp_path / "part.jsonl.progress.json"
    killed = _score(*common, "-o", part, "--batch-rows", 500)
    deadline = time.monotonic() + 60
    committed = None
    while time.monotonic() < deadline and killed.poll() is None:
        try:
            committed = json.loads(record_path.read_bytes())
        except (FileNotFoundError, ValueError):
            committed = None
        if committed and committed["chunks"] >= 1:
            os.killpg(killed.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    killed.communicate(timeout=30)
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    after = json.loads(record_path.read_bytes())
    assert not after["complete"] and 0 < after["next_row"] < ROWS
    assert part.stat().st_size >= after["output_bytes"]

    resumed = _score(*common, "-o", part, "--batch-rows", 500)
    _, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 2, stderr
    assert f"resuming after row {after['next_row']}" in stderr
    assert f"rows in {ROWS} ({after['next_row']} before resuming)" in stderr
    assert part.read_bytes() == whole.read_bytes()  # nothing lost, nothing twice, same order
    assert json.loads(record_path.read_bytes())["complete"] is True


# The peak after the model is loaded (loading has a transient peak of its own that would hide
# what scoring holds): Linux resets VmHWM when "5" is written to /proc/self/clear_refs.
MEASURE = """
import sys
from onnxkit.cli import app
from onnxkit.local import scoring

load = scoring.load
def loaded(*args, **kwargs):
    model = load(*args, **kwargs)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return model
scoring.load = loaded
try:
    app(sys.argv[1:])
except SystemExit as stop:
    if stop.code:
        raise
status = open("/proc/self/status").read()
print(next(l.split()[1] for l in status.splitlines() if l.startswith("VmHWM")), file=sys.stderr)
"""


def _peak_kib(model: Path, source: Path, output: Path, *options: str) -> int:
    """Peak resident memory of one in-process ``onnxkit score`` run (one worker: no children)."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, "score", "--model", str(model), "--input", str(source),
         "--output", str(output), "--workers", "1", "--overwrite", *options],
        capture_output=True, text=True, check=True, timeout=300,
        env={**os.environ, "ORT_DISABLE_TELEMETRY": "1"},
    )  # fmt: skip
    return int(result.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("plain", [True, False], ids=["numeric-blocks", "row-by-row"])
def test_memory_stays_flat_whatever_the_file_size(
    train_artifact: Any, tmp_path: Path, plain: bool
) -> None:
    """20x the rows may not cost more memory: nothing holds the input or the output whole
    (400k rows are ~85 MB in and ~55 MB out; the allowance is 20 MB)."""
    model = train_artifact("breast_cancer", model="mlp")
    header, *lines = bundled("breast_cancer").path.read_bytes().splitlines(keepends=True)
    if not plain:  # a quoted header sends every block down the row-by-row path
        header = b'"' + header.replace(b",", b'",', 1)
    sizes = {}
    for rows in (20_000, 400_000):
        source = tmp_path / f"rows{rows}.csv"
        with source.open("wb") as handle:
            handle.write(header)
            for start in range(0, rows, len(lines)):
                handle.writelines(lines[: min(len(lines), rows - start)])
        sizes[rows] = _peak_kib(model, source, tmp_path / "out.jsonl")
        source.unlink()
    assert sizes[400_000] - sizes[20_000] < 20 * 1024, sizes
