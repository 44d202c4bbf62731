"""The capture writer of ``onnxkit serve --capture``: everything queued is written by close,
files rotate by size and age, and a failing disk loses records without hanging the server."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from functions.inference.capture import Scored
from functions.inference.feed import FeatureSpec
from onnxkit.contract.capture import decode_records
from onnxkit.local import capture as capture_module
from onnxkit.local.capture import CaptureWriter

MODEL: Any = SimpleNamespace(
    model_name="m",
    model_version="v1",
    features=(FeatureSpec("x", "x", True, True), FeatureSpec("c", "c", False, True)),
    feed=SimpleNamespace(is_one_row_feed=lambda feed: False),  # no one-row buffer to copy
)


def _call(index: int, rows: int = 2) -> Scored:
    feed = {
        "x": np.full((rows, 1), float(index), dtype=np.float32),
        "c": np.array([[f"k{index}"]] * rows, dtype=object),
    }
    result = {"predictions": np.arange(rows), "probabilities": np.full((rows, 2), 0.5)}
    return Scored(f"req-{index}", time.time(), MODEL, feed, result)


def _written(folder: Path) -> list[Any]:
    out = []
    for path in sorted(folder.iterdir()):
        out.extend(decode_records(path.read_bytes(), path.name))
    return out


def test_close_writes_every_queued_call_in_order(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path)
    for index in range(500):
        writer(_call(index))
    stats = writer.close()
    records = _written(tmp_path)
    assert (stats.calls, stats.records, stats.lost) == (500, 1000, 0)
    assert [(r.request_id, r.row) for r in records] == [
        (f"req-{i}", row) for i in range(500) for row in range(2)
    ]
    assert records[3].features == {"x": 1.0, "c": "k1"}
    assert writer.close() is stats  # idempotent


def test_files_rotate_by_size(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path, max_bytes=2000, linger=0)
    for index in range(60):
        writer(_call(index, rows=1))
        if index % 5 == 4:
            time.sleep(0.01)  # let the writer take small batches
    stats = writer.close()
    assert len(stats.files) > 1
    assert len(_written(tmp_path)) == 60
    # A file goes past the limit only when one batch alone is larger.
    assert all(path.stat().st_size <= 2000 or len(_written_one(path)) > 1 for path in stats.files)


def _written_one(path: Path) -> list[Any]:
    return decode_records(path.read_bytes(), path.name)


def test_files_rotate_by_age(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path, max_seconds=0.01)
    writer(_call(0))
    time.sleep(0.1)
    writer(_call(1))
    stats = writer.close()
    assert len(stats.files) == 2
    assert [r.request_id for r in _written(tmp_path)] == ["req-0", "req-0", "req-1", "req-1"]


def test_a_failing_disk_counts_lost_records_and_never_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: CaptureWriter, size: int) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(capture_module.CaptureWriter, "_target", broken)
    writer = CaptureWriter(tmp_path, queue_calls=4)
    for index in range(50):  # more than the queue holds: the writer keeps draining it
        writer(_call(index))
    stats = writer.close()
    assert (stats.records, stats.lost) == (0, 100)
