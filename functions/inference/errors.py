"""The API's error type and its JSON body: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from typing import Any

# More details than this are summarised: a 1000-row body of garbage must not echo 30000 lines.
MAX_DETAILS = 20


class ApiError(Exception):
    """A request the API refuses, with the HTTP status and a machine-readable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        """The JSON error body."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details[:MAX_DETAILS]
        if request_id:
            error["request_id"] = request_id
        return {"error": error}


def detail(instance: int | None, feature: str | None, problem: str) -> dict[str, Any]:
    """One entry of an error's details list."""
    return {"instance": instance, "feature": feature, "problem": problem}
