"""The scheduled drift check's reports in a deployed kit: the latest, or those since a time.

The Serving stack's ``DriftReportsUri`` output names where they are (``s3://<bucket>/drift/``);
the keys are the kernel's (:func:`~onnxkit.contract.layout.drift_report_key`,
:data:`~onnxkit.contract.layout.DRIFT_LATEST_KEY`), so a listing from a time on is a
``StartAfter`` of that time's key.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from onnxkit.cloud.discovery import Kit
from onnxkit.cloud.errors import CloudError, describe_aws_error
from onnxkit.contract.drift import DriftCheck, parse_check
from onnxkit.contract.layout import (
    DRIFT_LATEST_KEY,
    DRIFT_PREFIX,
    DRIFT_REPORTS_OUTPUT,
    DRIFT_REPORTS_PREFIX,
    drift_report_key,
)

_AGO = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``12h``, ``7d``, ``30m``, ``2w`` before now, or an ISO 8601 date or time (UTC unless it
    names an offset); CloudError with one line otherwise."""
    value = text.strip()
    ago = _AGO.match(value.lower())
    if ago:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[ago[2]]: int(ago[1])})
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise CloudError(
            f"--since {text!r} is neither a time (2026-12-01, 2026-12-01T06:00) nor an age "
            "(12h, 7d, 30m, 2w)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def reports_location(kit: Kit) -> tuple[str, str]:
    """(bucket, ``drift/`` prefix) from the Serving stack's output."""
    uri = kit.outputs.get(DRIFT_REPORTS_OUTPUT)
    if uri is None:
        raise CloudError(
            f"the {kit.env} Serving stack has no drift check (no {DRIFT_REPORTS_OUTPUT} output); "
            "deploy it with this version of onnxkit"
        )
    match = re.fullmatch(r"s3://([^/]+)/(.*)", uri)
    if match is None or match[2] != DRIFT_PREFIX:
        raise CloudError(f"unexpected {DRIFT_REPORTS_OUTPUT} output {uri!r}")
    return match[1], match[2]


def _read(s3: Any, bucket: str, key: str) -> DriftCheck | None:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - boto is heavy

    try:
        raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
            return None
        raise CloudError(describe_aws_error(error)) from None
    except BotoCoreError as error:
        raise CloudError(describe_aws_error(error)) from None
    try:
        return parse_check(raw)
    except ValueError as error:
        raise CloudError(f"s3://{bucket}/{key}: {error}") from None


def latest_check(s3: Any, bucket: str) -> DriftCheck:
    """``drift/latest.json``; CloudError when no check has run yet."""
    check = _read(s3, bucket, DRIFT_LATEST_KEY)
    if check is None:
        raise CloudError(
            f"no drift report yet (s3://{bucket}/{DRIFT_LATEST_KEY}): the scheduled check "
            "writes one every drift.interval_hours once it has run"
        )
    return check


def checks_since(s3: Any, bucket: str, since: datetime) -> list[DriftCheck]:
    """Every report whose check ran at ``since`` or later, oldest first; CloudError when there
    is none."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    # The key of a check at ``since`` without ".json" sorts just before that check's key.
    start_after = drift_report_key(since).removesuffix(".json")
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=DRIFT_REPORTS_PREFIX, StartAfter=start_after
        )
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    except (BotoCoreError, ClientError) as error:
        raise CloudError(describe_aws_error(error)) from None
    checks = [check for key in sorted(keys) if (check := _read(s3, bucket, key)) is not None]
    if not checks:
        raise CloudError(
            f"no drift report since {since:%Y-%m-%d %H:%M} UTC in s3://{bucket}/"
            f"{DRIFT_REPORTS_PREFIX}"
        )
    return checks
