"""The deployed function's capture (:class:`~functions.inference.capture.LogCapture`) over the
handler's event fixtures: its stdout lines are byte for byte what ``onnxkit serve --capture``
writes for the same calls, and a burst of calls loses nothing at the moment each one returns."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from functions.inference.app import InferenceFunction
from functions.inference.capture import LogCapture, Scored
from functions.inference.runtime import Settings
from onnxkit.contract.capture import decode_records
from onnxkit.local.capture import CaptureWriter
from tests.functional.inference.test_handler import CASES
from tests.support.inference import FORMATS, as_format, call, event_with, load_event

pytestmark = pytest.mark.xdist_group("inference")

MODELS = {
    "breast_cancer": ("breast_cancer", "mlp"),
    "churn": ("customer_churn", "logistic_regression"),
    "diabetes": ("diabetes", "ridge"),
}
# Every fixture the API answers with 200 on POST /predict.
PREDICT_FIXTURES = sorted(
    name
    for name, (_, settings, status, _) in CASES.items()
    if status == 200 and not settings and load_event(name).get("httpMethod") == "POST"
)


@pytest.fixture(scope="module")
def model_dirs(train_artifact: Callable[..., Path]) -> dict[str, Path]:
    return {key: train_artifact(data, model=kind) for key, (data, kind) in MODELS.items()}


class Tee:
    """Both sinks, in turn, on the same answered call."""

    def __init__(self, *sinks: Callable[[Scored], None]) -> None:
        self.sinks = sinks

    def __call__(self, scored: Scored) -> None:
        for sink in self.sinks:
            sink(scored)


def test_fixture_list_is_not_empty() -> None:
    assert len(PREDICT_FIXTURES) >= 10, PREDICT_FIXTURES


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_log_lines_are_what_serve_capture_writes(
    model_dirs: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    """One record format: for every /predict fixture and front door, the function's capture
    lines equal the bytes of the local capture file."""
    for model_key in MODELS:
        fixtures = [n for n in PREDICT_FIXTURES if CASES[n][0] == model_key]
        stdout = io.StringIO()
        lines = LogCapture(1.0, stdout)
        local = CaptureWriter(tmp_path / model_key / fmt, linger=0)
        function = InferenceFunction(
            Settings(model_uri=str(model_dirs[model_key])), capture=Tee(lines, local)
        )
        for name in fixtures:
            event = as_format(load_event(name), fmt)  # type: ignore[arg-type]
            status, _, body = call(function, event)
            assert status == 200, (name, body)
        stats = local.close()
        written = b"".join(path.read_bytes() for path in stats.files)
        assert stdout.getvalue().encode() == written
        captured = decode_records(written)
        assert lines.records == len(captured) == stats.records > 0
        request_ids = {r.request_id for r in captured}
        assert request_ids == {load_event(n)["requestContext"]["requestId"] for n in fixtures}


def test_headers_and_credentials_are_never_captured(model_dirs: dict[str, Path]) -> None:
    event = load_event("predict_objects")
    event["headers"] = {**event.get("headers", {}), "Authorization": "AWS4-HMAC-SHA256 secret1"}
    event["headers"]["x-api-key"] = "secret2"
    event["requestContext"]["identity"] = {"accessKey": "AKIASECRET3", "sourceIp": "10.1.2.3"}
    stdout = io.StringIO()
    function = InferenceFunction(
        Settings(model_uri=str(model_dirs["breast_cancer"])), capture=LogCapture(1.0, stdout)
    )
    status, _, _ = call(function, event)
    assert status == 200
    text = stdout.getvalue()
    assert text
    for secret in ("secret1", "secret2", "AKIASECRET3", "10.1.2.3", "Authorization"):
        assert secret not in text


class PipeReader:
    """The platform's side of stdout: another reader of an OS pipe, collecting what arrives."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.writer = os.fdopen(write_fd, "w", encoding="utf-8")
        self._reader = os.fdopen(read_fd, "rb")
        self.received = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while chunk := self._reader.read1(65536):
            with self._lock:
                self.received += chunk

    def lines_when_idle(self, expected: int) -> int:
        """Lines received once ``expected`` have arrived (or 5 s passed)."""
        for _ in range(500):
            with self._lock:
                count = self.received.count(b"\n")
            if count >= expected:
                return count
            threading.Event().wait(0.01)
        return count

    def close(self) -> bytes:
        self.writer.close()
        self._thread.join(timeout=10)
        self._reader.close()
        return bytes(self.received)


@pytest.fixture
def pipe() -> Iterator[PipeReader]:
    reader = PipeReader()
    yield reader
    if not reader.writer.closed:
        reader.close()


def _bodies(width: int, calls: int) -> Iterator[tuple[str, int]]:
    for index in range(calls):
        rows = 1 + index % 7  # one to seven rows a call
        instances = [[float(index) + row / 10] * width for row in range(rows)]
        yield f'{{"instances": {instances}}}', rows


def test_capture_under_load_with_nothing_lost_at_flush(
    model_dirs: dict[str, Path], pipe: PipeReader
) -> None:
    """1,500 calls of one to seven rows, back to back through one function (one execution
    environment: Lambda sends it one request at a time), into an OS pipe read by another
    thread (the platform's side of stdout): the sink starts no thread of its own, and every
    row of every call arrives exactly once, as a whole line."""
    sink = LogCapture(1.0, pipe.writer)
    function = InferenceFunction(Settings(model_uri=str(model_dirs["breast_cancer"])), capture=sink)
    width = len(function.runtime.require().features)
    threads_before = threading.active_count()
    expected: dict[str, int] = {}
    for index, (body, rows) in enumerate(_bodies(width, 1500)):
        request_id = f"load-{index}"
        event = event_with(body=body)
        event["requestContext"]["requestId"] = request_id
        status, _, _ = call(function, event)
        assert status == 200
        expected[request_id] = rows
    assert threading.active_count() == threads_before  # the sink started no thread
    total = sum(expected.values())
    assert pipe.lines_when_idle(total) == total
    captured = decode_records(pipe.close())
    assert sink.records == len(captured) == total
    seen: dict[str, list[int]] = {}
    for record in captured:
        seen.setdefault(record.request_id, []).append(record.row)
    assert {rid: sorted(rows) for rid, rows in seen.items()} == {
        rid: list(range(rows)) for rid, rows in expected.items()
    }


def test_each_call_is_in_the_pipe_when_the_handler_returns(
    model_dirs: dict[str, Path], pipe: PipeReader
) -> None:
    """Freeze right after return: what the reader has then is every line of the call."""
    function = InferenceFunction(
        Settings(model_uri=str(model_dirs["breast_cancer"])), capture=LogCapture(1.0, pipe.writer)
    )
    width = len(function.runtime.require().features)
    total = 0
    for index, (body, rows) in enumerate(_bodies(width, 30)):
        event = event_with(body=body)
        event["requestContext"]["requestId"] = f"r{index}"
        call(function, event)
        total += rows
        # The lines are already out of the process: the pipe's reader gets them without any
        # further write, flush or close on our side.
        assert pipe.lines_when_idle(total) == total


def test_sampling_takes_whole_calls(model_dirs: dict[str, Path]) -> None:
    stdout = io.StringIO()
    draws = iter([0.5, 0.01, 0.99, 0.02] * 10)
    sink = LogCapture(0.05, stdout, draw=lambda: next(draws))
    function = InferenceFunction(Settings(model_uri=str(model_dirs["churn"])), capture=sink)
    for index in range(4):
        event = load_event("churn_mixed")
        event["requestContext"]["requestId"] = f"c{index}"
        status, _, body = call(function, event)
        assert status == 200
    records = decode_records(stdout.getvalue().encode())
    rows = len(body["predictions"])
    assert sink.calls == 2
    assert [r.request_id for r in records] == ["c1"] * rows + ["c3"] * rows
