"""What the scheduled drift check runs over: the artifact bucket, CloudWatch metrics and the
training state machine. :mod:`functions.monitor.aws` implements them on AWS; the tests have
fakes (tests/support/drift_cloud.py)."""

from __future__ import annotations

from typing import Any, Protocol


class MonitorError(RuntimeError):
    """The check cannot run (a tampered or unreadable model file, a capture that does not fit
    the model); the message is one readable line and the function fails with it."""


class Store(Protocol):
    """The artifact bucket."""

    bucket: str

    def get(self, key: str, version_id: str | None = None) -> bytes | None:
        """An object's bytes (a given version of it), or None when it does not exist."""
        ...

    def keys(self, prefix: str) -> list[str]:
        """Every key under a prefix."""
        ...

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write an object."""
        ...


class Metrics(Protocol):
    """CloudWatch custom metrics."""

    def put(self, namespace: str, data: list[dict[str, Any]]) -> None:
        """Publish metric data (PutMetricData's ``MetricData`` entries) in one namespace."""
        ...


class Trainer(Protocol):
    """The training state machine."""

    def running(self) -> bool:
        """Whether an execution is running now."""
        ...

    def start(self, name: str, payload: dict[str, Any]) -> str:
        """Start an execution (idempotent for the same name and payload); its ARN."""
        ...
