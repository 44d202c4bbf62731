"""Lambda entry points of the state machine's Evaluate and Promote tasks.

Evaluate event: ``{"model_name", "candidate_artifact_uri", "gate": QualityGate}``; env
``ARTIFACT_BUCKET``. Promote event: ``{"candidate": <evaluation.candidate>,
"model_package_arn", "evaluation": <$.evaluation>}``; env ``ARTIFACT_BUCKET``,
``FUNCTION_NAME``, ``ALIAS_NAME`` and, for a gradual shift, ``SHIFT_WEIGHTS`` (e.g.
``0.1,0.5``), ``SHIFT_WAIT_SECONDS``, ``ALARM_NAME``.
A step that cannot complete raises (its class name is the state machine's ``Error``).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import boto3
from pydantic import ValidationError

from onnxkit.contract.gate import QualityGate
from onnxkit.contract.layout import (
    ALIAS_NAME,
    ALIAS_NAME_ENV,
    ARTIFACT_BUCKET_ENV,
    FUNCTION_NAME_ENV,
)

from .aws import LambdaServing, S3Store, alarm_check
from .evaluate import evaluate as evaluate_step
from .ports import StepError
from .promote import Shift
from .promote import promote as promote_step

logger = logging.getLogger("onnxkit.pipeline")
logger.setLevel(logging.INFO)


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise StepError(f"the function's {name} environment variable is not set")
    return value


def _store() -> S3Store:
    return S3Store(boto3.client("s3"), _env(ARTIFACT_BUCKET_ENV))


def _shift() -> Shift | None:
    weights = os.environ.get("SHIFT_WEIGHTS", "").strip()
    alarm = os.environ.get("ALARM_NAME", "").strip()
    if not weights or not alarm:
        return None
    cloudwatch = boto3.client("cloudwatch")
    return Shift(
        weights=[float(w) for w in weights.split(",")],
        alarm=lambda: alarm_check(cloudwatch, alarm),
        wait_seconds=float(os.environ.get("SHIFT_WAIT_SECONDS", "0")),
    )


def evaluate(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Evaluate a candidate against the gate and the production model."""
    try:
        model_name = str(event["model_name"])
        artifact_uri = str(event["candidate_artifact_uri"])
        gate = QualityGate.model_validate(event.get("gate") or {})
    except (KeyError, ValidationError) as error:
        raise StepError(f"bad Evaluate event: {error}") from None
    decision = evaluate_step(_store(), model_name, artifact_uri, gate)
    logger.info(
        json.dumps(
            {
                "step": "evaluate",
                "passed": decision["passed"],
                "reasons": decision["reasons"],
                "model_version": decision["candidate"]["model_version"],
            }
        )
    )
    return decision


def promote(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Promote an evaluated candidate to the ``live`` alias."""
    try:
        candidate = dict(event["candidate"])
        package = str(event["model_package_arn"])
        evaluation = dict(event["evaluation"]) if event.get("evaluation") else None
    except (KeyError, TypeError, ValueError) as error:
        raise StepError(f"bad Promote event: {error}") from None
    serving = LambdaServing(
        boto3.client("lambda"),
        _env(FUNCTION_NAME_ENV),
        os.environ.get(ALIAS_NAME_ENV) or ALIAS_NAME,
    )
    # Register created the package approved, so no registry call (and no IAM grant) here.
    result = promote_step(
        _store(), serving, None, candidate, package, shift=_shift(), evaluation=evaluation
    )
    logger.info(json.dumps({"step": "promote", **result}))
    return result
