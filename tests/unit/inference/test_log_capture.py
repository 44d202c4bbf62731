"""The deployed function's capture sink: sampling, the lines it writes, and its configuration."""

from __future__ import annotations

import io
import math
import threading
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest

from functions.inference import capture
from functions.inference.capture import (
    LogCapture,
    Scored,
    capture_from_env,
    records,
    sampler,
)
from functions.inference.observability import Telemetry
from onnxkit.contract.capture import decode_records, encode_records
from onnxkit.contract.layout import CAPTURE_LOG_FILTER_PATTERN, CAPTURE_SAMPLE_RATE_ENV

FEATURES = [
    SimpleNamespace(name="age", onnx_input="age", numeric=True),
    SimpleNamespace(name="plan", onnx_input="plan", numeric=False),
]
MODEL: Any = SimpleNamespace(features=FEATURES, model_name="churn", model_version="v1")


def _call(rows: int = 2, request_id: str = "req") -> Scored:
    feed = {
        "age": np.array([[30.5 + i] for i in range(rows)], dtype=np.float32),
        "plan": np.array([["basic" if i % 2 else "pro"] for i in range(rows)], dtype=object),
    }
    result = {
        "predictions": ["yes" if i % 2 else "no" for i in range(rows)],
        "probabilities": [[0.25, 0.75] for _ in range(rows)],
    }
    return Scored(request_id, 1_765_000_000.25, MODEL, feed, result)


class CountingStream(io.StringIO):
    """A stream that counts its flushes."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_a_sampled_call_is_written_as_the_contracts_lines_and_flushed() -> None:
    stream = CountingStream()
    sink = LogCapture(1.0, stream)
    call = _call(3)
    sink(call)
    assert stream.getvalue().encode() == encode_records(records(call))
    assert stream.flushes == 1
    decoded = decode_records(stream.getvalue().encode())
    assert [r.row for r in decoded] == [0, 1, 2]
    assert decoded[0].captured_at == datetime.fromtimestamp(1_765_000_000.25, UTC)
    assert decoded[1].features == {"age": 31.5, "plan": "basic"}
    assert decoded[1].prediction == "yes" and decoded[1].probabilities == [0.25, 0.75]
    assert (sink.calls, sink.records) == (1, 3)


@pytest.mark.parametrize(
    ("rate", "draws", "captured"),
    [
        (0.25, [0.0, 0.2499, 0.25, 0.9], [True, True, False, False]),
        (0.0, [0.0, 0.5], [False, False]),
        (1.0, [0.0, 0.999999], [True, True]),
    ],
)
def test_a_call_is_taken_when_its_draw_is_below_the_rate(
    rate: float, draws: list[float], captured: list[bool]
) -> None:
    values = iter(draws)
    sink = LogCapture(rate, io.StringIO(), draw=lambda: next(values))
    assert sampler(sink) == sink.take
    assert [sink.take() for _ in draws] == captured


def test_sinks_without_take_get_every_call() -> None:
    calls: list[Scored] = []
    assert sampler(calls.append) is None
    assert sampler(None) is None


def test_the_default_draw_samples_about_the_rate() -> None:
    sink = LogCapture(0.1, io.StringIO())
    calls = 20_000
    taken = sum(sink.take() for _ in range(calls))
    spread = 4 * math.sqrt(calls * 0.1 * 0.9)  # four standard deviations
    assert abs(taken - calls * 0.1) < spread


@pytest.mark.parametrize("rate", [-0.1, 1.01, math.nan])
def test_a_rate_outside_zero_to_one_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        LogCapture(rate)


def test_a_record_longer_than_a_log_event_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    call = _call(2)
    first, second = (encode_records([r]) for r in records(call))
    monkeypatch.setattr(capture, "MAX_LINE_BYTES", max(len(first), len(second)) - 1)
    stream = io.StringIO()
    sink = LogCapture(1.0, stream)
    sink(call)
    kept = [line for line in (first, second) if len(line) < max(len(first), len(second))]
    assert stream.getvalue().encode() == b"".join(kept)
    assert sink.too_long == 2 - len(kept) and sink.records == len(kept)


def test_the_sink_follows_sys_stdout_when_no_stream_is_given(
    capsys: pytest.CaptureFixture[str],
) -> None:
    LogCapture(1.0)(_call(1))
    assert decode_records(capsys.readouterr().out.encode())[0].request_id == "req"


@pytest.mark.parametrize(
    ("value", "rate"), [(None, None), ("", None), ("0", None), ("0.0", None), ("0.05", 0.05)]
)
def test_capture_from_env(value: str | None, rate: float | None) -> None:
    env = {} if value is None else {CAPTURE_SAMPLE_RATE_ENV: value}
    sink = capture_from_env(env)
    assert (sink.sample_rate if sink else None) == rate


@pytest.mark.parametrize("value", ["x", "1.5", "-1", "nan"])
def test_capture_from_env_refuses_a_bad_rate(value: str) -> None:
    with pytest.raises(ValueError, match=CAPTURE_SAMPLE_RATE_ENV + "|between 0 and 1"):
        capture_from_env({CAPTURE_SAMPLE_RATE_ENV: value})


def test_the_filter_pattern_names_a_key_only_capture_lines_have(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The subscription filter matches ``captured_at`` as a top-level string: every capture
    line has it; the function's other stdout lines (the EMF line, Powertools' log lines, which
    share the log group) do not."""
    assert CAPTURE_LOG_FILTER_PATTERN == '{ $.captured_at = "*" }'
    telemetry = Telemetry(service="capture-filter-test", log_level="DEBUG")
    telemetry.use_model(MODEL)
    telemetry.count_instances(3)
    assert telemetry.metrics is not None
    telemetry.metrics.flush_metrics()
    telemetry.logger.info("request", method="POST", path="/predict", status=400)
    telemetry.logger.warning("no model yet: %s", "captured_at")
    LogCapture(1.0)(_call(3))
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    capture_lines = [line for line in lines if isinstance(line.get("captured_at"), str)]
    assert len(capture_lines) == 3 and all("features" in line for line in capture_lines)
    others = [line for line in lines if "features" not in line]
    assert len(others) == 3 and any("_aws" in line for line in others)


def test_threads_sharing_a_sink_never_split_a_call() -> None:
    """Each call's lines are written as one block: threads sharing the sink (an embedding
    server) interleave calls, never lines or parts of lines."""
    stream = io.StringIO()
    sink = LogCapture(1.0, stream)

    def write(thread: int) -> None:
        for index in range(300):
            sink(_call(1 + index % 5, f"t{thread}-{index}"))

    workers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    captured = decode_records(stream.getvalue().encode())
    assert len(captured) == sink.records == 4 * sum(1 + i % 5 for i in range(300))
    blocks: list[tuple[str, list[int]]] = []
    for record in captured:
        if not blocks or blocks[-1][0] != record.request_id:
            blocks.append((record.request_id, []))
        blocks[-1][1].append(record.row)
    assert len(blocks) == 1200
    assert all(rows == list(range(len(rows))) for _, rows in blocks)
