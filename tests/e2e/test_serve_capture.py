"""``onnxkit serve --capture`` end to end: concurrent calls over HTTP, then SIGTERM or SIGINT
right after the last answer; every row of every answered call is in the capture."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from onnxkit.contract.capture import decode_records
from tests.e2e.test_serve import CHURN_ROW, _start

pytestmark = pytest.mark.xdist_group("serve")

CLIENTS = 8
CALLS = 25


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_every_row_of_concurrent_calls_is_captured_by_shutdown(
    train_artifact: Callable[..., Path], tmp_path: Path, stop: signal.Signals
) -> None:
    model = train_artifact("customer_churn", model="logistic_regression")
    folder = tmp_path / "capture"
    served = _start(["--model", str(model), "--capture", str(folder)])

    def client(index: int) -> dict[str, int]:
        answered = {}
        with httpx.Client(base_url=served.url, timeout=30) as http:
            for call in range(CALLS):
                rows = 1 + (index + call) % 4
                row = [float(index), *CHURN_ROW[1:]]
                response = http.post("/predict", json={"instances": [row] * rows})
                assert response.status_code == 200, response.text
                answered[response.headers["x-amzn-RequestId"]] = rows
        return answered

    with ThreadPoolExecutor(CLIENTS) as pool:
        answered = {k: v for part in pool.map(client, range(CLIENTS)) for k, v in part.items()}
    served.process.send_signal(stop)
    assert served.process.wait(timeout=30) == 0
    records = [r for path in sorted(folder.iterdir()) for r in decode_records(path.read_bytes())]
    captured: dict[str, list[int]] = {}
    for record in records:
        captured.setdefault(record.request_id, []).append(record.row)
    assert {key: sorted(rows) for key, rows in captured.items()} == {
        key: list(range(rows)) for key, rows in answered.items()
    }
    summary = rf"captured {sum(answered.values())} rows of {CLIENTS * CALLS} calls in \d+ file"
    deadline = time.monotonic() + 10  # the stderr reader may lag the exit
    while not re.search(summary, "".join(served.lines)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert re.search(summary, "".join(served.lines)), served.lines
