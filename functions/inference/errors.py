"""The API's refusal as an exception: raised anywhere in a request, rendered once by the
routes with the contract's error body (:func:`onnxkit.contract.api.error_body`)."""

from __future__ import annotations

from typing import Any

from onnxkit.contract.api import error_body


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
        """The JSON error body (at most MAX_DETAILS details)."""
        return error_body(self.code, self.message, self.details, request_id)
