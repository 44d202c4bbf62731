"""The local API: the inference Lambda handler behind a threaded HTTP server.

Each HTTP request becomes an API Gateway REST proxy event (payload format 1.0) and the
handler's result becomes the HTTP response, so a laptop runs exactly the code Lambda runs.
Also a small Python API (:func:`serving`) that starts a server in-process on a free port.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("onnxkit.serve")

STAGE = "local"
FUNCTION_NAME = "onnxkit-local"
# Header and body bytes the server reads before the handler sees the request.
MAX_HEADER_COUNT = 100
# The REST API's binaryMediaTypes (infra/constructs/inference_api.py): API Gateway hands
# these bodies to the function base64-encoded, whatever their bytes.
BINARY_MEDIA_TYPES = frozenset({"application/x-npy"})


class ServeError(Exception):
    """The server cannot start (no model, refused model, port in use)."""


class LocalContext:
    """The parts of Lambda's context object the handler and Powertools read."""

    function_name = FUNCTION_NAME
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{FUNCTION_NAME}"
    log_group_name = f"/aws/lambda/{FUNCTION_NAME}"
    log_stream_name = "local"

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        """Local requests have no deadline; report Lambda's maximum."""
        return 900_000


def proxy_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    request_id: str,
    api_key: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API proxy event (payload 1.0) for one HTTP request."""
    split = urlsplit(target)
    path = split.path or "/"
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value  # API Gateway keeps the last value in `headers`
        multi.setdefault(name, []).append(value)
    query_single: dict[str, str] = {}
    query_multi: dict[str, list[str]] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query_single[name] = value
        query_multi.setdefault(name, []).append(value)
    media = single.get("Content-Type") or next(
        (value for name, value in single.items() if name.lower() == "content-type"), ""
    )
    text: str | None
    if body and media.split(";", 1)[0].strip().lower() in BINARY_MEDIA_TYPES:
        text, encoded = base64.b64encode(body).decode(), True
    else:
        try:
            text, encoded = (body.decode() if body else None), False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
    now = datetime.now(UTC)
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": single or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": query_single or None,
        "multiValueQueryStringParameters": query_multi or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "path": f"/{STAGE}{path}",
            "accountId": "000000000000",
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainName": "localhost",
            "apiId": "local",
            "identity": {
                "sourceIp": source_ip,
                "userAgent": single.get("User-Agent"),
                "apiKey": api_key,
            },
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def response_parts(result: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body bytes from a Lambda proxy integration result."""
    status = int(result.get("statusCode", 502))
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            headers.append((name, str(value)))
        seen.add(name.lower())
    for name, value in (result.get("headers") or {}).items():
        if name.lower() not in seen:
            headers.append((name, str(value)))
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    return status, headers, raw


def _error_body(code: str, message: str) -> bytes:
    import orjson  # noqa: PLC0415  # the server module stays importable without it

    return orjson.dumps({"error": {"code": code, "message": message}})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "onnxkit"
    sys_version = ""
    server: InferenceHTTPServer

    def setup(self) -> None:
        super().setup()
        # Without TCP_NODELAY a keep-alive client waits ~40 ms per request for a delayed ACK.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request comes from _serve, not from http.server

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines += [
            f"{name}: {value}"
            for name, value in headers
            if name.lower() not in {"content-length", "connection"}
        ]
        lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        # One write: headers and body leave in the same segment.
        self.wfile.write(head + body if self.command != "HEAD" else head)

    def _reject(self, status: int, code: str, message: str, started: float) -> None:
        self.close_connection = True
        self._log(status, started)
        self._send(status, [("Content-Type", "application/json")], _error_body(code, message))

    def _log(self, status: int, started: float) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        log.info(
            "%s %s %s %d %.1f ms", self.client_address[0], self.command, self.path, status, elapsed
        )

    def _serve(self) -> None:
        started = time.perf_counter()
        server = self.server
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._reject(411, "length_required", "send a Content-Length body", started)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._reject(400, "invalid_request", "invalid Content-Length", started)
            return
        if length > server.max_body_bytes:
            self._reject(
                413, "body_too_large", f"the body exceeds {server.max_body_bytes} bytes", started
            )
            return
        body = self.rfile.read(length) if length else b""
        key = self.headers.get("x-api-key")
        if server.api_key is not None and not (
            key is not None and hmac.compare_digest(key.encode(), server.api_key.encode())
        ):
            self.close_connection = False
            self._send(
                403,
                [("Content-Type", "application/json")],
                _error_body("forbidden", "missing or invalid x-api-key header"),
            )
            self._log(403, started)
            return
        request_id = str(uuid.uuid4())
        event = proxy_event(
            self.command,
            self.path,
            list(self.headers.items()),
            body,
            self.client_address[0],
            request_id,
            key,
        )
        try:
            with server.handler_lock:  # Powertools' resolver keeps the request on the class
                result = server.function.lambda_handler(event, LocalContext(request_id))
            status, headers, payload = response_parts(result)
        except Exception:  # the function itself failed: what Lambda reports as a 502
            log.exception("handler failed for request %s", request_id)
            status, headers = 502, [("Content-Type", "application/json")]
            payload = _error_body("bad_gateway", f"the function failed (request {request_id})")
        headers.append(("x-amzn-RequestId", request_id))
        self._log(status, started)  # before the write: a client may stop us once it has the answer
        self._send(status, headers, payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class InferenceHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that hands every request to the inference handler."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        function: ModuleType,
        api_key: str | None,
        max_body_bytes: int,
    ) -> None:
        super().__init__(address, _Handler)
        self.function = function
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.handler_lock = threading.Lock()

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until no request is inside the handler (for a graceful stop)."""
        if self.handler_lock.acquire(timeout=timeout):
            self.handler_lock.release()
            return True
        return False

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def load_function(model: str, sha256: str | None = None) -> ModuleType:
    """Import the inference handler with this model loaded; ServeError if it is not served."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    # Locally: no EMF blobs on stdout, and the handler logs only warnings; the server logs
    # one line per request itself.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ["MODEL_URI"] = model
    os.environ["MODEL_SHA256"] = sha256 or ""
    import sys  # noqa: PLC0415

    already = "functions.inference.handler" in sys.modules
    from functions.inference import handler  # noqa: PLC0415  # loads the model at import

    runtime = handler.configure(handler.Settings.from_env()) if already else handler.runtime
    if runtime.model is None:
        raise ServeError(runtime.reason or f"no model at {model}")
    return handler


def create_server(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key: str | None = None,
    sha256: str | None = None,
) -> InferenceHTTPServer:
    """Load the model and bind the server (port 0 picks a free port); not yet serving."""
    function = load_function(model, sha256)
    try:
        return InferenceHTTPServer(
            (host, port), function, api_key, function.runtime.settings.max_body_bytes
        )
    except OSError as error:
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror}") from None


@contextmanager
def serving(
    model: str,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    sha256: str | None = None,
) -> Iterator[str]:
    """Serve a model in a background thread for the ``with`` block; yields the base URL.

    >>> with serving("model/") as url:  # doctest: +SKIP
    ...     httpx.post(f"{url}/predict", json={"instances": [[1.0, 2.0]]})
    """
    server = create_server(model, host, port, api_key, sha256)
    thread = threading.Thread(target=server.serve_forever, name="onnxkit-serve", daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
