"""``onnxkit serve --capture DIR``: capture records as JSON Lines, written by a background thread.

The request path only puts the answered call on a bounded queue (:meth:`CaptureWriter.__call__`);
this module's thread turns calls into records (``functions.inference.capture.records``), encodes
them and appends them to the current file, flushing after every batch. A full queue blocks the
request path until the writer catches up: back-pressure, never a lost record. Files rotate when
the next batch would take one past ``max_bytes`` or when it is older than ``max_seconds``;
:meth:`CaptureWriter.close` (the server's shutdown, SIGINT and SIGTERM included) writes
everything queued, fsyncs and closes. A write that fails (disk full) is logged and its records
counted as lost, so a broken disk cannot hang the server.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

from functions.inference.capture import Scored, kept, records
from onnxkit.contract.capture import encode_records
from onnxkit.contract.layout import capture_file_name

log = logging.getLogger("onnxkit.serve")

DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS: Final = 3600.0
DEFAULT_QUEUE_CALLS: Final = 10_000  # calls waiting to be written (each up to MAX_INSTANCES rows)
_BATCH_CALLS: Final = 1024  # calls taken off the queue per write
# After the first call of a batch the writer waits this long for more: one wake-up per batch
# rather than per call, as every wake-up takes the GIL from the request path. Measured with
# benchmarks/bench_capture.py (median of per-round ratios, capture on / off, one-row calls):
# 1.27x waking per call, 1.06x with this linger.
LINGER_SECONDS: Final = 0.05
_STOP: Final = object()


@dataclass
class CaptureStats:
    """What a writer has done so far."""

    calls: int = 0
    records: int = 0
    lost: int = 0  # records of writes that failed
    files: list[Path] = field(default_factory=list)


class CaptureWriter:
    """The capture sink of ``onnxkit serve``: call it with each answered call; :meth:`close`
    once at shutdown."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        queue_calls: int = DEFAULT_QUEUE_CALLS,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self.directory = Path(directory)
        self.linger = linger
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.stats = CaptureStats()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_calls)
        self._file: IO[bytes] | None = None
        self._opened_at = 0.0
        self._size = 0
        self._sequence = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="onnxkit-capture", daemon=True)
        self._thread.start()

    def __call__(self, call: Scored) -> None:
        """Queue one answered call (on the request path: no encoding, no I/O)."""
        self._queue.put(kept(call))

    def close(self) -> CaptureStats:
        """Write everything queued, fsync and close the file; idempotent."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
        return self.stats

    # --- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                try:
                    first = self._queue.get(timeout=min(self.max_seconds, 1.0))
                except queue.Empty:
                    if self._file is not None and self._expired():
                        self._close_file()
                    continue
                if first is not _STOP:
                    time.sleep(self.linger)
                batch = [first]
                while len(batch) < _BATCH_CALLS and batch[-1] is not _STOP:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = batch[-1] is _STOP
                calls = [item for item in batch if isinstance(item, Scored)]
                if calls:
                    self._write(calls)
                if stop:
                    return
        finally:
            self._close_file()

    def _write(self, calls: list[Scored]) -> None:
        count = 0
        try:
            chunks = []
            for call in calls:
                rows = records(call)
                count += len(rows)
                chunks.append(encode_records(rows))
            data = b"".join(chunks)
            handle = self._target(len(data))
            handle.write(data)
            handle.flush()
            self._size += len(data)
        except Exception:  # a full disk must not stop the server: count and go on
            if not self.stats.lost:
                log.exception("capture: cannot write records to %s", self.directory)
            self.stats.lost += count or len(calls)
            return
        self.stats.calls += len(calls)
        self.stats.records += count

    def _expired(self) -> bool:
        return time.monotonic() - self._opened_at >= self.max_seconds

    def _target(self, size: int) -> IO[bytes]:
        """The file to append ``size`` bytes to, rotating first when it is full or old."""
        if self._file is not None and (
            (self._size and self._size + size > self.max_bytes) or self._expired()
        ):
            self._close_file()
        if self._file is None:
            self._sequence += 1
            name = capture_file_name(datetime.now(UTC), os.getpid(), self._sequence)
            path = self.directory / name
            self._file = path.open("ab")
            self._opened_at, self._size = time.monotonic(), 0
            self.stats.files.append(path)
        return self._file

    def _close_file(self) -> None:
        if self._file is None:
            return
        handle, self._file = self._file, None
        try:
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()
