"""The production pointer and the promotion record (docs/CONTRACTS.md).

``models/<name>/production.json`` names the promoted model (``model_uri``, its ``sha256``, the
manifest and its digest, the function version serving it) with the older pointers, newest
first, in ``history``. ``models/<name>/promotion.json`` is the write-ahead record of the last
promotion or rollback. Both are msgspec structs: the inference function follows the pointer at
cold start, and pydantic's import would cost it more than the whole parse.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec


def _now() -> str:
    return datetime.now(UTC).isoformat()


class PointerError(ValueError):
    """A pointer or promotion record that is not JSON or breaks the contract."""


class Pointer(msgspec.Struct, kw_only=True, frozen=True):
    """The production pointer; unknown keys are ignored (newer writers may add some)."""

    model_name: str
    model_version: str
    model_uri: str
    manifest_uri: str
    sha256: str
    # The manifest's digest; None in pointers written before it was pinned.
    manifest_sha256: str | None = None
    lambda_version: str
    promoted_at: str = msgspec.field(default_factory=_now)
    history: list[dict[str, Any]] = msgspec.field(default_factory=list)

    def entry(self) -> dict[str, Any]:
        """This pointer as a history entry (without its own history)."""
        data = msgspec.to_builtins(self)
        del data["history"]
        return data

    def to_dict(self) -> dict[str, Any]:
        """The pointer as JSON-ready data."""
        return msgspec.to_builtins(self)

    @classmethod
    def of(cls, data: Any) -> Pointer:
        """A pointer from parsed JSON (a history entry, say); PointerError when it is not one."""
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as error:
            raise PointerError(str(error)) from None


class Intent(msgspec.Struct, kw_only=True, frozen=True):
    """The write-ahead record of a promotion or rollback, written before ``live`` moves: the
    pointer that holds once the alias serves ``target.lambda_version``."""

    action: str  # "promote" or "rollback"
    from_lambda_version: str | None
    target: Pointer
    started_at: str = msgspec.field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return msgspec.to_builtins(self)


_Record = TypeVar("_Record", Pointer, Intent)


def _decode(raw: bytes | str, kind: type[_Record]) -> _Record:
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise PointerError(str(error)) from None


def parse_pointer(raw: bytes | str) -> Pointer:
    """A pointer from its JSON bytes; PointerError with one line otherwise."""
    return _decode(raw, Pointer)


def parse_intent(raw: bytes | str) -> Intent:
    """A promotion record from its JSON bytes; PointerError with one line otherwise."""
    return _decode(raw, Intent)


def dump(record: Pointer | Intent) -> bytes:
    """The JSON bytes stored for a pointer or a promotion record (sorted, indented)."""
    return json.dumps(record.to_dict(), indent=2, sort_keys=True).encode()
