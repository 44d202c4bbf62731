"""``onnxkit serve``'s HTTP layer over a real socket: raw bytes in, status line and JSON out."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from onnxkit.local.gateway import Limits, serving

pytestmark = pytest.mark.xdist_group("serve")

LIMITS = Limits(
    max_body_bytes=4096,
    max_connections=20,
    header_timeout=0.5,
    body_timeout=0.5,
    keep_alive_timeout=1,
)


@pytest.fixture(scope="module")
def address(train_artifact: Callable[..., Path]) -> Iterator[tuple[str, int]]:
    model = train_artifact("customer_churn", model="logistic_regression")
    with serving(str(model), limits=LIMITS) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        yield host, int(port)


def exchange(address: tuple[str, int], data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, read until the server closes (or the timeout)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Every response in a byte stream: status, headers, body (Content-Length framed)."""
    found = []
    while raw.startswith(b"HTTP/1.1 "):
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", "0"))
        found.append((int(lines[0].split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return found


def json_error(raw: bytes) -> tuple[int, str]:
    """The one response in ``raw``: its status and its JSON error code."""
    [(status, headers, body)] = responses(raw)
    assert headers["content-type"] == "application/json", raw
    return status, json.loads(body)["error"]["code"]


HIDDEN = b"0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(b"TRACE /health HTTP/1.1\r\nHost: x\r\n\r\n", 405, id="trace"),
        pytest.param(b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", 405, id="connect"),
        pytest.param(b"FROB /health HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="unknown-method"),
        pytest.param(b"get /health HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="lower-case-method"),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, id="http2-preface"),
        pytest.param(bytes.fromhex("160301020001000200030300") + bytes(40), 400, id="tls"),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
            431,
            id="oversized-header",
        ),
        pytest.param(
            b"GET /health HTTP/1.1\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
            + b"\r\n",
            431,
            id="too-many-headers",
        ),
        pytest.param(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            id="length-and-chunked",
        ),
        pytest.param(b"GET /health HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, id="bad-length"),
        pytest.param(b"\x00\x01garbage\r\n\r\n", 400, id="garbage"),
    ],
)
def test_protocol_errors_get_a_json_4xx(
    address: tuple[str, int], request_bytes: bytes, status: int
) -> None:
    got, code = json_error(exchange(address, request_bytes))
    assert got == status and code


def test_gzip_chunked_cannot_smuggle_a_request(address: tuple[str, int]) -> None:
    raw = exchange(
        address,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        + b"%x\r\n" % len(HIDDEN)
        + HIDDEN
        + b"\r\n0\r\n\r\n",
    )
    assert json_error(raw) == (400, "invalid_request")  # one answer: nothing hidden ran


def test_head_answers_where_get_does(address: tuple[str, int]) -> None:
    get = responses(exchange(address, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"))
    head = exchange(address, b"HEAD /health HTTP/1.1\r\nConnection: close\r\n\r\n")
    _, headers, _ = get[0]
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")  # no body
    assert f"content-length: {headers['content-length']}".encode() in head


def test_a_client_writing_its_whole_over_limit_body_reads_the_413(
    address: tuple[str, int],
) -> None:
    connection = http.client.HTTPConnection(*address, timeout=10)
    connection.request("POST", "/predict", body=b"[" + b"1," * 500_000 + b"1]")  # ~1 MB
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "body_too_large"
    connection.close()


def test_slow_body_and_slow_headers_time_out_with_408(address: tuple[str, int]) -> None:
    slow_body = exchange(address, b"POST /predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    assert json_error(slow_body) == (408, "request_timeout")
    slow_head = exchange(address, b"GET /health HTTP/1.1\r\nHost: x\r\n")
    assert json_error(slow_head) == (408, "request_timeout")


def closed_by_server(address: tuple[str, int], data: bytes) -> bytes:
    """What the server sent before closing an idle connection (fails if it never does)."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):  # TimeoutError if the server keeps it open
            received += chunk
    return received


def test_idle_connections_are_closed(address: tuple[str, int]) -> None:
    assert closed_by_server(address, b"") == b""  # never sent a byte
    kept = closed_by_server(address, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # then idle
    assert [status for status, _, _ in responses(kept)] == [200]


def test_connections_are_capped_and_cost_no_thread_each(address: tuple[str, int]) -> None:
    threads = threading.active_count()
    idle = [socket.create_connection(address, timeout=10) for _ in range(LIMITS.max_connections)]
    try:
        for sock in idle[:5]:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert threading.active_count() == threads
        assert json_error(exchange(address, b"")) == (503, "too_many_connections")
    finally:
        for sock in idle:
            sock.close()


def test_a_client_that_disconnects_is_one_log_line(
    address: tuple[str, int], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="onnxkit.serve")
    with socket.create_connection(address) as sock:
        sock.sendall(b'POST /predict HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{"instances')
        time.sleep(0.1)  # let the server start reading the body
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
    deadline = time.monotonic() + 5
    while not caplog.records and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.getMessage().split(" ", 3)[-1] for r in caplog.records] == [
        "- client closed the connection mid-request"
    ]
    assert "Traceback" not in capsys.readouterr().err
