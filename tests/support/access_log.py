"""API Gateway access log lines as a synthesized format renders them, with realistic values:
what the cost arithmetic in docs/deploy.md counts per request (tests/infra, and
benchmarks/bench_front_doors.py prints the sizes)."""

from __future__ import annotations

import re

# A successful one-row POST /predict signed by an assumed role, as boto3 names its sessions.
# Request ids are 36-character UUIDs on REST APIs; HTTP APIs' are often shorter (16), so 36
# is the upper figure. An IPv6 caller would add up to 26 bytes to the address.
SAMPLE_CONTEXT = {
    "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
    "identity.sourceIp": "203.0.113.254",
    "identity.userArn": (
        "arn:aws:sts::123456789012:assumed-role/onnxkit-prod-predict/botocore-session-1767225600"
    ),
    "identity.apiKeyId": "a1b2c3d4e5",
    "httpMethod": "POST",
    "path": "/predict",
    "resourcePath": "/predict",
    "status": "200",
    "responseLatency": "23",
    "responseLength": "117",
    "integrationErrorMessage": "-",  # API Gateway's value for an empty variable
    "error.responseType": "-",
}
_VARIABLE = re.compile(r"\$context\.([A-Za-z.]+[A-Za-z])")


def render(log_format: str, context: dict[str, str] | None = None) -> str:
    """The line API Gateway would write for ``SAMPLE_CONTEXT`` (KeyError: a variable without a
    sample value, so the measurement cannot silently skip a field)."""
    values = SAMPLE_CONTEXT if context is None else context
    return _VARIABLE.sub(lambda match: values[match.group(1)], log_format)
