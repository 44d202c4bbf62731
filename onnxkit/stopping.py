"""SIGINT and SIGTERM end every command the same way: as an exception where the program is, so
``finally`` blocks run (children are stopped, files closed, locks released), then one line and
exit 130 (SIGINT) or 143 (SIGTERM), 128 + the signal's number as shells report it."""

from __future__ import annotations

import signal
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same clean-up runs."""

    exit_code = 128 + signal.SIGTERM


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def install() -> None:
    """Raise KeyboardInterrupt on SIGINT and Terminated on SIGTERM in the main thread."""
    # A background job of a non-interactive shell starts with SIGINT ignored, and Python then
    # keeps it ignored: kill -INT must still stop the command.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)


def outcome(error: KeyboardInterrupt) -> tuple[str, int]:
    """The one line and the exit code of an interrupted command."""
    if isinstance(error, Terminated):
        return "terminated", Terminated.exit_code
    return "interrupted", 128 + signal.SIGINT
