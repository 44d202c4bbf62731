"""An HTTPS client for the inference API: SigV4 or API-key auth, retries with backoff.

The same client talks to every front door (``api.kind``) and to ``onnxkit serve`` on this
machine (no auth). ``iam`` auth signs with SigV4 from the standard credential chain, for
service ``execute-api`` behind API Gateway (a REST or an HTTP API) and ``lambda`` for a
function URL (:func:`signing_service`); ``api_key`` mode (REST only) sends ``x-api-key``.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson

from onnxkit.cloud.errors import CloudError
from onnxkit.contract.api import error_message
from onnxkit.contract.layout import ApiKind

AuthKind = Literal["iam", "api_key", "none"]
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")
_FUNCTION_URL_HOST = re.compile(r"^[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$")


class ApiError(CloudError):
    """The API answered with a non-retryable error, or retries ran out."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n sleeps U(0, min(cap, base * 2**n))."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 20.0

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before retry ``attempt`` (0-based); Retry-After wins when longer."""
        backoff = rand() * min(self.cap, self.base * (2**attempt))
        if retry_after is not None:
            return min(self.cap, max(backoff, retry_after))
        return backoff


# Module-level so tests can swap in a zero-delay policy without mocking time.
DEFAULT_POLICY = RetryPolicy()


def region_from_url(url: str) -> str | None:
    """The region of an API Gateway (``execute-api``) or function URL (``lambda-url``) URL,
    else None."""
    host = httpx.URL(url).host
    match = _EXECUTE_API_HOST.match(host) or _FUNCTION_URL_HOST.match(host)
    return match.group(1) if match else None


def kind_from_url(url: str) -> ApiKind | None:
    """``function_url`` for a ``*.lambda-url.<region>.on.aws`` URL, ``rest`` for an
    ``execute-api`` one (a REST and an HTTP API sign alike), else None."""
    host = httpx.URL(url).host
    if _FUNCTION_URL_HOST.match(host):
        return "function_url"
    return "rest" if _EXECUTE_API_HOST.match(host) else None


def signing_service(kind: str) -> str:
    """The SigV4 service of a front door: ``lambda`` for a function URL, else ``execute-api``."""
    return "lambda" if kind == "function_url" else "execute-api"


class SigV4Signer:
    """Signs requests with botocore's SigV4Auth for ``service`` (``execute-api`` for API
    Gateway, ``lambda`` for a function URL)."""

    def __init__(self, credentials: Any, region: str, service: str = "execute-api") -> None:
        self._credentials = credentials
        self.region = region
        self.service = service

    def headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, str]:
        """The headers to send, with X-Amz-Date, Authorization and any session token."""
        from botocore.auth import SigV4Auth  # noqa: PLC0415 - botocore is slow to import
        from botocore.awsrequest import AWSRequest  # noqa: PLC0415

        # Frozen per request: refreshable credentials (SSO, roles) may rotate between batches.
        frozen = self._credentials.get_frozen_credentials()
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(frozen, self.service, self.region).add_auth(request)
        return dict(request.headers.items())


class ApiClient:
    """Calls ``POST predict`` / ``GET model`` under a base URL, retrying transient failures."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthKind = "none",
        api_key: str | None = None,
        signer: SigV4Signer | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        if auth == "api_key" and not api_key:
            raise CloudError("this API needs an API key: pass --api-key or set ONNXKIT_API_KEY")
        if auth == "iam" and signer is None:
            raise CloudError("IAM auth needs AWS credentials for signing")
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.auth = auth
        self._api_key = api_key
        self._signer = signer
        self.policy = policy or DEFAULT_POLICY
        self._sleep = sleep
        self._on_retry = on_retry
        self.retries = 0
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_model(self) -> dict[str, Any]:
        """``GET model``: the served model's public manifest."""
        return self._call("GET", "model", None)

    def predict(self, instances: list[Any]) -> dict[str, Any]:
        """``POST predict`` with a batch of instances."""
        return self._call("POST", "predict", {"instances": instances})

    def _call(self, method: str, path: str, payload: Any) -> dict[str, Any]:
        url = self.base_url + path
        body = orjson.dumps(payload) if payload is not None else b""
        last = ""
        for attempt in range(self.policy.attempts):
            headers = {"content-type": "application/json", "accept": "application/json"}
            if self.auth == "api_key" and self._api_key:
                headers["x-api-key"] = self._api_key
            elif self.auth == "iam" and self._signer is not None:
                # Re-signed on every attempt: X-Amz-Date must be fresh.
                headers = self._signer.headers(method, url, body, headers)
            retry_after: float | None = None
            try:
                response = self._http.request(method, url, content=body or None, headers=headers)
            except httpx.TransportError as error:
                last = f"cannot reach {self.base_url}: {type(error).__name__}: {error}"
            else:
                if response.status_code < 400:
                    return _json(response)
                if response.status_code not in RETRY_STATUSES:
                    raise _api_error(response)
                last = f"HTTP {response.status_code} from {url}: {_message(response)}"
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt + 1 == self.policy.attempts:
                break
            self.retries += 1
            if self._on_retry:
                self._on_retry(last)
            self._sleep(self.policy.delay(attempt, retry_after))
        raise ApiError(f"gave up after {self.policy.attempts} attempts: {last}")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ApiError(
            f"{response.url} answered HTTP {response.status_code} with non-JSON content"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(f"{response.url} answered with JSON that is not an object")
    return data


def _message(response: httpx.Response) -> str:
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return " ".join(response.text.split())[:200] or response.reason_phrase
    if isinstance(data, dict):
        if isinstance(data.get("error"), dict):
            return error_message(data) or ""
        if "message" in data:  # API Gateway's own errors: {"message": "..."}
            return str(data["message"])
    return str(data)[:200]


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    status = response.status_code
    hint = ""
    if status in (401, 403):
        hint = " (check the credentials, the API key, or the API's auth mode)"
    return ApiError(
        f"HTTP {status} from {response.url}: {_message(response)}{hint}", status=status, body=body
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for these APIs, fall back to our own backoff
