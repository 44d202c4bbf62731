"""The training job's one error type: a problem with its input."""

from __future__ import annotations


class TrainingError(Exception):
    """A problem with the job's input, reported as one line and SageMaker's FailureReason."""
