"""A local stand-in for the inference API, with scripted failures and a SigV4 verifier.

The verifier recomputes the signature from the raw request following the SigV4 spec
step by step (canonical request, string to sign, derived key) - it does not call botocore's
signer, so a mistake in how the CLI signs cannot cancel out here - and refuses a scope whose
service or region is not the front door's (``execute-api`` for a REST or HTTP API, ``lambda``
for a function URL). :func:`botocore_signature` is the second opinion: botocore's SigV4Auth
recomputing the same signature from the same fake credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

CLASSES = ["no", "yes"]
FEATURES = [{"name": "x", "kind": "numeric"}, {"name": "colour", "kind": "categorical"}]


def score(instance: dict[str, Any]) -> tuple[str, list[float]]:
    """A deterministic 'model': yes when x > 0."""
    p = 0.9 if instance["x"] > 0 else 0.2
    return ("yes" if p >= 0.5 else "no"), [round(1 - p, 3), p]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def verify_sigv4(
    method: str,
    raw_path: str,
    headers: dict[str, str],
    body: bytes,
    *,
    secret: str,
    service: str = "execute-api",
    region: str | None = None,
) -> str | None:
    """None when the Authorization header is a valid SigV4 signature for ``service`` (and
    ``region``, when given), else why not."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "no SigV4 Authorization header"
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
    _, date, signed_region, svc, terminator = parts["Credential"].split("/")
    if svc != service or terminator != "aws4_request":
        return f"wrong scope {parts['Credential']}: service {svc}, expected {service}"
    if region is not None and signed_region != region:
        return f"wrong scope {parts['Credential']}: region {signed_region}, expected {region}"
    signed = parts["SignedHeaders"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "host and x-amz-date must be signed"
    amz_date = headers["x-amz-date"]
    split = urlsplit(raw_path)
    path = quote(split.path, safe="/~")
    query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted(parse_qsl(split.query, keep_blank_values=True))
    )
    canonical_headers = "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed)
    payload_hash = headers.get("x-amz-content-sha256", _sha(body))
    if payload_hash != _sha(body):
        return "payload hash mismatch"
    canonical = "\n".join([method, path, query, canonical_headers, ";".join(signed), _sha(body)])
    scope = f"{date}/{signed_region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, _sha(canonical.encode())])
    key = _hmac(("AWS4" + secret).encode(), date)
    for piece in (signed_region, service, "aws4_request"):
        key = _hmac(key, piece)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts["Signature"]):
        return "signature mismatch"
    return None


def botocore_signature(
    method: str, url: str, headers: dict[str, str], body: bytes, *, access_key: str, secret: str
) -> str:
    """The signature botocore's SigV4Auth computes for the request as received (same signed
    headers, same X-Amz-Date and scope), from the fake credentials."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = headers["authorization"][len("AWS4-HMAC-SHA256 ") :]
    parts = dict(p.strip().split("=", 1) for p in auth.split(","))
    _, _, region, service, _ = parts["Credential"].split("/")
    signed = parts["SignedHeaders"].split(";")
    request = AWSRequest(method=method, url=url, data=body, headers={h: headers[h] for h in signed})
    request.context["timestamp"] = headers["x-amz-date"]
    token = headers.get("x-amz-security-token")
    signer = SigV4Auth(Credentials(access_key, secret, token), service, region)
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))


@dataclass
class FakeApi:
    """State shared with the handler: scripted statuses, auth, and what was received."""

    secret: str | None = None  # SigV4 required when set
    service: str = "execute-api"  # the SigV4 service the front door takes
    region: str | None = None  # the region it is in (None: any)
    access_key: str | None = None  # set: botocore must compute the same signature too
    api_key: str | None = None  # x-api-key required when set
    max_instances: int = 1000
    script: deque[int] = field(default_factory=deque)  # statuses to answer /predict with first
    fail_after_rows: int | None = None  # answer 503 forever once this many rows were scored
    scored_rows: list[dict[str, Any]] = field(default_factory=list)
    predict_calls: int = 0
    auth_failures: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check_auth(self, handler: BaseHTTPRequestHandler, body: bytes) -> str | None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        if self.api_key is not None and headers.get("x-api-key") != self.api_key:
            return "Forbidden"
        if self.secret is not None:
            problem = verify_sigv4(
                handler.command,
                handler.path,
                headers,
                body,
                secret=self.secret,
                service=self.service,
                region=self.region,
            )
            if problem is None and self.access_key is not None:
                url = f"http://{headers['host']}{handler.path}"
                ours = botocore_signature(
                    handler.command,
                    url,
                    headers,
                    body,
                    access_key=self.access_key,
                    secret=self.secret,
                )
                if ours != headers["authorization"].rsplit("Signature=", 1)[1]:
                    problem = "botocore computes another signature"
            if problem:
                self.auth_failures.append(problem)
                return problem
            scope = headers["authorization"].split("/")
            self.regions.append(scope[2])
            self.services.append(scope[3])
        return None

    def predict(self, body: bytes) -> tuple[int, dict[str, Any]]:
        instances = json.loads(body)["instances"]
        if len(instances) > self.max_instances:
            return 413, {
                "error": {"code": "too_many_instances", "message": "too many", "details": []}
            }
        details = []
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict):
                details.append({"instance": i, "feature": None, "problem": "not an object"})
            elif not isinstance(inst.get("x"), int | float):
                details.append({"instance": i, "feature": "x", "problem": "expected a number"})
        if details:
            return 400, {
                "error": {"code": "invalid_instances", "message": "bad rows", "details": details}
            }
        out = [score(inst) for inst in instances]
        self.scored_rows.extend(instances)
        return 200, {
            "model_version": "v1",
            "predictions": [o[0] for o in out],
            "probabilities": [o[1] for o in out],
            "classes": CLASSES,
        }


class _Handler(BaseHTTPRequestHandler):
    api: FakeApi

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_GET(self) -> None:
        body = self._body()
        if (problem := self.api.check_auth(self, body)) is not None:
            self._send(403, {"message": problem})
        elif self.path.rstrip("/").endswith("/model"):
            self._send(
                200,
                {
                    "model_name": "churn",
                    "model_version": "v1",
                    "task": "classification",
                    "classes": CLASSES,
                    "signature": {"features": FEATURES, "target": "y"},
                },
            )
        else:
            self._send(404, {"error": {"code": "not_found", "message": self.path}})

    def do_POST(self) -> None:
        body = self._body()
        api = self.api
        with api.lock:
            api.predict_calls += 1
            if (problem := api.check_auth(self, body)) is not None:
                self._send(403, {"message": problem})
                return
            if api.script:
                status = api.script.popleft()
                self._send(
                    status,
                    {"error": {"code": "scripted", "message": f"scripted {status}", "details": []}},
                    {"retry-after": "0"},
                )
                return
            if api.fail_after_rows is not None and len(api.scored_rows) >= api.fail_after_rows:
                self._send(503, {"message": "Service Unavailable"})
                return
            status, payload = api.predict(body)
        self._send(status, payload)


def serve(api: FakeApi) -> tuple[ThreadingHTTPServer, str]:
    """Start the fake on 127.0.0.1 in a daemon thread; returns the server and its base URL."""
    handler = type("Handler", (_Handler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/prod/"
