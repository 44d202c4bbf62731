"""The shell's domain error: a failure the user can act on, told in one line.

Plain exceptions, raised by the local runner, the cloud client and the commands alike; the
command line (:mod:`onnxkit.cli`) turns them into one ``error: ...`` line and the exit code at
one place, so nothing below it depends on click.
"""

from __future__ import annotations


class KitError(Exception):
    """A readable failure: the message is one line, no traceback, exit code ``exit_code``."""

    exit_code: int = 1
