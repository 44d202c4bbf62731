"""The local API: the inference function's handler behind uvicorn (httptools' llhttp parser).

Each HTTP request becomes an API Gateway REST proxy event (payload format 1.0) and the
handler's result becomes the HTTP response, so a laptop runs exactly the code Lambda runs: an
:class:`~functions.inference.app.InferenceFunction` built here (:func:`load_function`) from
the model argument and handed to the server, never configured through the environment.
uvicorn frames, parses and times connections; this module adds what it leaves to the
application: every protocol error answered with the API's JSON error body, limits on header
and body size, connections and slow clients, HEAD on GET routes, and a 413 the client reads
even after writing its whole over-limit body. Also a small Python API (:func:`serving`) that
starts a server in-process on a free port.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from onnxkit.contract import api
from onnxkit.contract.layout import MAX_BODY_BYTES, MODEL_SHA256_ENV, MODEL_URI_ENV

if TYPE_CHECKING:
    from functions.inference.app import InferenceFunction
    from functions.inference.capture import Sink

log = logging.getLogger("onnxkit.serve")

STAGE = "local"
FUNCTION_NAME = "onnxkit-local"
# The REST API's binaryMediaTypes (infra/constructs/inference_api.py): API Gateway hands
# these bodies to the function base64-encoded, whatever their bytes.
BINARY_MEDIA_TYPES = frozenset(api.BINARY_MEDIA_TYPES)


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


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """What one client may cost the server; every refusal is a JSON error, never a hang."""

    max_body_bytes: int = MAX_BODY_BYTES
    max_header_bytes: int = 16 * 1024  # request line and headers together
    max_header_count: int = 100
    max_connections: int = 256  # one more is answered 503 and closed
    header_timeout: float = 10.0  # first byte of a request to its last header
    body_timeout: float = 30.0  # the whole body, from its first byte
    keep_alive_timeout: int = 5  # idle between requests on a kept-alive connection
    # An over-limit body up to this size is read and dropped before the 413: a client that
    # writes its whole body before reading (Python's http.client does) then reads the answer
    # instead of a reset. Beyond it the 413 is sent and the connection closed at once.
    drain_bytes: int = 64 * 1024 * 1024


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def error_body(code: str, message: str) -> bytes:
    """The API's JSON error body (:func:`onnxkit.contract.api.error_body`), as bytes."""
    return orjson.dumps(api.error_body(code, message))


def _raw_error(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection."""
    body = error_body(code, message)
    head = (
        f"HTTP/1.1 {status} {_reason(status)}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the API's JSON body on every protocol error, and
    limits it does not have itself: head size and count, a head timeout (which also closes
    idle fresh connections) and a connection cap. ``limits`` is set per server."""

    limits = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes: int | None = 0  # bytes received of the current head; None in a body
        self._head_size = 0  # request target and header bytes as parsed
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._fresh = True  # no byte received yet: the first bytes may be TLS or HTTP/2

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, "too_many_connections", "too many open connections; retry later")
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        fresh, self._fresh = self._fresh, False
        if self._head_bytes is not None:
            self._head_bytes += len(data)
            self._arm_head_timer()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An Upgrade header on an ordinary request: answered as HTTP/1.1 (CONNECT and the
            # HTTP/2 preface are refused in on_headers_complete).
            pass
        except httptools.HttpParserError as error:
            if fresh and data.startswith(b"PRI * HTTP/2.0"):
                message = "HTTP/2 is not served here: send HTTP/1.1"
            elif fresh and data[:1] == b"\x16":  # a TLS handshake record
                message = "TLS is not served here: use http://, not https://"
            else:
                message = f"malformed HTTP/1.1 request: {error}"
            self._refuse(400, "invalid_request", message)
            return
        if self._head_bytes is not None and self._head_bytes > self.limits.max_header_bytes:
            self._too_large_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._head_bytes = None
        if self._refused:
            return
        if self._head_size > self.limits.max_header_bytes or (
            len(self.headers) > self.limits.max_header_count
        ):
            self._too_large_head()
            return
        if self.parser.get_method() == b"CONNECT":  # a tunnel: its target is not a path
            self._refuse(405, "method_not_allowed", "CONNECT is not allowed: this is no proxy")
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._head_bytes = 0  # what follows is the next request's head
        if not self._refused:
            super().on_message_complete()

    def _too_large_head(self) -> None:
        limits = self.limits
        self._refuse(
            431,
            "headers_too_large",
            f"the request line and headers exceed {limits.max_header_bytes} bytes "
            f"or {limits.max_header_count} headers",
        )

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and not self._refused:
            self._head_timer = self.loop.call_later(
                self.limits.header_timeout, self._head_timed_out
            )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_bytes:
            seconds = self.limits.header_timeout
            self._refuse(408, "request_timeout", f"the request headers took over {seconds:g} s")
        elif not self.transport.is_closing():  # idle since connecting: nothing to answer
            self._refused = True
            self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer a protocol error with the API's JSON body and close the connection."""
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self._cancel_head_timer()
        host = self.client[0] if self.client else "-"
        log.info("%s - - %d %s", host, status, message)
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # mid-response on a pipelined connection: just close
            return
        self.transport.write(_raw_error(status, code, message))
        self.transport.close()


class _Refused(Exception):
    """The request is answered with an error before the handler sees it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _ClientGone(Exception):
    """The client closed the connection before its request was complete."""


class InferenceApp:
    """An ASGI app that turns each request into a proxy event for ``handler``.

    The handler runs on the event loop's thread, one call at a time and without a lock.
    The function's own request state is per call, but Powertools keeps its own per process:
    the resolver's current event is a class attribute of ``BaseRouter`` (shared by every
    resolver), and the log keys and the metric set live on the Logger and the EMF provider.
    So calls must not overlap, and a one-row call (~0.1 ms) is cheaper than a thread hand-off:
    measured with wrk (1-row bodies, 16 connections, interleaved rounds on a busy 2-core
    machine), a 4-thread pool under one lock served ~15% fewer requests than this at the median
    of 6 per-round ratios (range -21% to +37%), a one-thread executor 17-35% fewer (2 rounds).
    """

    def __init__(self, handler: Handler, api_key: str | None, limits: Limits) -> None:
        self.handler = handler
        self.api_key = api_key
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served
            return
        started = time.perf_counter()
        method = scope["method"]
        query = scope.get("query_string") or b""
        target = scope["raw_path"].decode("latin-1")
        if query:
            target += "?" + query.decode("latin-1")
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        ]
        client = (scope.get("client") or ("-", 0))[0]
        try:
            body = await self._body(headers, receive)
        except _ClientGone:
            log.info("%s %s %s - client closed the connection mid-request", client, method, target)
            return
        except _Refused as refused:
            log.info("%s %s %s %d %s", client, method, target, refused.status, refused.message)
            payload = error_body(refused.code, refused.message)
            await _send(
                send,
                refused.status,
                [("content-type", "application/json")],
                payload,
                close=True,
                head=method == "HEAD",
            )
            return
        status, out, payload = self._call(method, target, headers, body, client)
        log.info(
            "%s %s %s %d %.1f ms",
            client,
            method,
            target,
            status,
            (time.perf_counter() - started) * 1000,
        )
        await _send(send, status, out, payload, close=False, head=method == "HEAD")

    def _call(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, client: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        json_type = [("content-type", "application/json")]
        key = next((value for name, value in headers if name == "x-api-key"), None)
        if self.api_key is not None and not (
            key is not None and hmac.compare_digest(key.encode(), self.api_key.encode())
        ):
            return 403, json_type, error_body("forbidden", "missing or invalid x-api-key header")
        request_id = str(uuid.uuid4())
        # HEAD is GET without the body (RFC 9110); API Gateway's routes know only GET.
        event = proxy_event(
            "GET" if method == "HEAD" else method, target, headers, body, client, request_id, key
        )
        try:
            status, out, payload = response_parts(self.handler(event, LocalContext(request_id)))
        except Exception:  # the function itself failed: what Lambda reports as a 502
            log.exception("handler failed for request %s", request_id)
            status, out = 502, json_type
            payload = error_body("bad_gateway", f"the function failed (request {request_id})")
        out.append(("x-amzn-RequestId", request_id))
        return status, out, payload

    async def _body(self, headers: list[tuple[str, str]], receive: Receive) -> bytes:
        """The whole body, within the size limit and the body timeout."""
        limits = self.limits
        declared = next((value for name, value in headers if name == "content-length"), None)
        too_large = _Refused(
            413, "body_too_large", f"the body exceeds {limits.max_body_bytes} bytes"
        )
        coding = next((value for name, value in headers if name == "transfer-encoding"), None)
        if coding is not None and coding.strip().lower() != "chunked":
            # llhttp framed it by its final "chunked"; the codings before it (gzip, ...) are
            # not decoded here, so the body is refused whole, never read as requests.
            await self._drain(receive, 0)
            raise _Refused(
                400,
                "invalid_request",
                f"unsupported Transfer-Encoding {coding!r}: send chunked or a Content-Length",
            )
        if declared is not None and int(declared) > limits.max_body_bytes:  # llhttp checked it
            expects = any(
                name == "expect" and value.lower() == "100-continue" for name, value in headers
            )
            if not expects and int(declared) <= limits.drain_bytes:
                await self._drain(receive, 0)
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limits.max_body_bytes:  # a chunked body grew past the limit
                        if message.get("more_body"):
                            await self._drain(receive, size)
                        raise too_large
                    chunks.append(chunk)
                    if not message.get("more_body"):
                        return b"".join(chunks)
        except TimeoutError:
            raise _Refused(
                408, "request_timeout", f"the body took over {limits.body_timeout:g} s"
            ) from None

    async def _drain(self, receive: Receive, size: int) -> None:
        """Read and drop the rest of a refused body (up to drain_bytes, within the timeout)."""
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while size <= self.limits.drain_bytes:
                    message = await receive()
                    size += len(message.get("body", b""))
                    if message["type"] == "http.disconnect" or not message.get("more_body"):
                        return
        except TimeoutError:
            return


async def _send(
    send: Send,
    status: int,
    headers: list[tuple[str, str]],
    payload: bytes,
    *,
    close: bool,
    head: bool,
) -> None:
    raw = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in headers
        if name.lower() not in {"content-length", "connection", "transfer-encoding"}
    ]
    raw.append((b"content-length", str(len(payload)).encode()))
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head else payload})


class LocalServer:
    """uvicorn serving an :class:`InferenceApp` on an already bound socket."""

    def __init__(
        self, app: InferenceApp, sock: socket.socket, limits: Limits, model: Any = None
    ) -> None:
        self.app = app
        self.socket = sock
        self.model = model  # the served model's info, for the start-up line
        protocol = type("LimitedProtocol", (LimitedProtocol,), {"limits": limits})
        self.config = uvicorn.Config(
            app,
            http=protocol,
            ws="none",
            lifespan="off",
            loop="asyncio",
            log_config=None,
            access_log=False,  # one line per request comes from InferenceApp
            server_header=False,
            timeout_keep_alive=limits.keep_alive_timeout,
            timeout_graceful_shutdown=5,
            backlog=128,
            proxy_headers=False,
        )
        self.server = uvicorn.Server(self.config)
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # no start-up chatter

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        host, port = self.socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Serve until SIGINT/SIGTERM (in the main thread) or :meth:`stop`; requests in
        flight finish first."""
        self.server.run(sockets=[self.socket])

    def stop(self) -> None:
        """Ask the server to stop (from any thread)."""
        self.server.should_exit = True

    def close(self) -> None:
        """Release the listening socket."""
        self.socket.close()


def load_function(
    model: str,
    sha256: str | None = None,
    env: Mapping[str, str] | None = None,
    capture: Sink | None = None,
) -> InferenceFunction:
    """The inference function serving ``model``; ServeError if it is not served. ``capture``
    gets every answered ``/predict`` call (:mod:`onnxkit.local.capture`).

    Configured as in Lambda, from environment variables, but from a mapping built here (the
    process's environment is read, never written): ``MODEL_URI`` and ``MODEL_SHA256`` from the
    arguments; unless the environment says otherwise, no EMF blobs on stdout and only the
    function's warnings, as the server logs one line per request itself.
    """
    from functions.inference.app import InferenceFunction  # noqa: PLC0415  # loads onnxruntime

    settings = {
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **(os.environ if env is None else env),
        MODEL_URI_ENV: model,
        MODEL_SHA256_ENV: sha256 or "",
    }
    function = InferenceFunction.from_env(settings, capture)
    if function.runtime.model is None:
        raise ServeError(function.runtime.reason or f"no model at {model}")
    return function


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR lets another process take the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def create_server(
    function: InferenceFunction,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key: str | None = None,
    limits: Limits | None = None,
) -> LocalServer:
    """Bind a server for ``function`` (port 0 picks a free port); not yet serving."""
    runtime = function.runtime
    limits = limits or Limits(max_body_bytes=runtime.settings.max_body_bytes)
    try:
        sock = _bind(host, port)
    except OSError as error:
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    app = InferenceApp(function.lambda_handler, api_key, limits)
    return LocalServer(app, sock, limits, runtime.model)


@contextmanager
def serving(
    model: str,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    sha256: str | None = None,
    limits: Limits | None = None,
    capture: Sink | None = None,
) -> Iterator[str]:
    """Serve a model in a background thread for the ``with`` block; yields the base URL.
    ``capture`` gets every answered ``/predict`` call; closing it is the caller's.

    >>> with serving("model/") as url:  # doctest: +SKIP
    ...     httpx.post(f"{url}/predict", json={"instances": [[1.0, 2.0]]})
    """
    server = create_server(
        load_function(model, sha256, capture=capture), host, port, api_key, limits
    )
    thread = threading.Thread(target=server.serve_forever, name="onnxkit-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        if not server.server.started:
            raise ServeError(f"the server on {server.url} did not start")
        yield server.url
    finally:
        server.stop()
        thread.join(timeout=10)
        server.close()
