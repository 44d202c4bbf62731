"""A child process that dies with its parent: the local training job.

The child runs in its own process group, so stopping it stops whatever it started too; any
exception in the waiting parent (a timeout, Ctrl-C, SIGTERM raised by :mod:`onnxkit.stopping`)
forwards SIGTERM to that group, then SIGKILL if it lingers. A parent killed outright (SIGKILL)
runs no code: on Linux the kernel sends the child SIGKILL then (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import IO, Any

PR_SET_PDEATHSIG = 1  # linux/prctl.h
GRACE_SECONDS = 5.0


def _die_with(parent: int) -> Callable[[], None] | None:
    """A preexec function asking the kernel to SIGKILL the child when ``parent`` dies."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return setup


def stop_group(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the child's process group, SIGKILL after a grace period; reaps the child."""
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, None)):
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_child(
    command: Sequence[str],
    *,
    env: dict[str, str],
    stdout: IO[Any],
    cwd: os.PathLike[str] | str,
    timeout: float | None = None,
    on_wait: Callable[[], None] | None = None,
    every: float = 0.5,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` (stderr into ``stdout``) until it exits; stop it on any exception,
    ``subprocess.TimeoutExpired`` included, which is re-raised. ``on_wait`` is called every
    ``every`` seconds while it runs (the local run's progress reads the log then)."""
    process = subprocess.Popen(
        list(command),
        env=env,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_die_with(os.getpid()),  # noqa: PLW1509 - async-signal-safe: one prctl call
    )
    try:
        returncode = _wait(process, timeout, on_wait, every)
    except BaseException:
        stop_group(process)
        raise
    return subprocess.CompletedProcess(list(command), returncode)


def _wait(
    process: subprocess.Popen[Any],
    timeout: float | None,
    on_wait: Callable[[], None] | None,
    every: float,
) -> int:
    if on_wait is None:
        return process.wait(timeout=timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        try:
            return process.wait(timeout=every if left is None else max(0.0, min(every, left)))
        except subprocess.TimeoutExpired:
            if left is not None and left <= every:
                raise subprocess.TimeoutExpired(process.args, timeout or 0.0) from None
        on_wait()
