"""Lambda entry point of the scheduled drift check (an EventBridge schedule invokes it).

Environment: ``ARTIFACT_BUCKET``, ``MODEL_NAME``, ``DRIFT_SETTINGS`` (JSON:
:class:`~functions.monitor.check.Settings`) and, only when retraining on drift is on,
``TRAINING_STATE_MACHINE_ARN``. The event's ``time`` (the schedule's) is the check's time, so a
retried invocation writes the same report key and starts the same execution.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

import boto3

from onnxkit.contract.layout import (
    ARTIFACT_BUCKET_ENV,
    DRIFT_SETTINGS_ENV,
    MODEL_NAME_ENV,
    TRAINING_STATE_MACHINE_ENV,
    drift_report_key,
)

from .aws import CloudWatchMetrics, S3Store, StepFunctionsTrainer
from .check import Settings, run_check
from .ports import MonitorError

logger = logging.getLogger("onnxkit.drift")
logger.setLevel(logging.INFO)


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise MonitorError(f"the function's {name} environment variable is not set")
    return value


def checked_at(event: Any) -> datetime:
    """The scheduled time of the event, or now for an event without one (a manual test)."""
    stamp = event.get("time") if isinstance(event, dict) else None
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp).astimezone(UTC)
        except ValueError:
            raise MonitorError(f"the event's time {stamp!r} is not ISO 8601") from None
    return datetime.now(UTC)


def lambda_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Run one check; returns its status, the live version and what drifted."""
    settings = Settings.parse(_env(MODEL_NAME_ENV), os.environ.get(DRIFT_SETTINGS_ENV, ""))
    machine = os.environ.get(TRAINING_STATE_MACHINE_ENV, "")
    trainer = StepFunctionsTrainer(boto3.client("stepfunctions"), machine) if machine else None
    check = run_check(
        S3Store(boto3.client("s3"), _env(ARTIFACT_BUCKET_ENV)),
        CloudWatchMetrics(boto3.client("cloudwatch")),
        settings,
        checked_at(event),
        trainer,
    )
    summary = {
        "status": check.status,
        "model_version": check.model_version,
        "capture_rows": check.capture_rows,
        "drifted": check.report.drifted if check.report else [],
        "report_key": drift_report_key(check.checked_at),
        "training_execution": check.training_execution,
    }
    logger.info(json.dumps({"step": "drift", "detail": check.detail, **summary}))
    return summary
