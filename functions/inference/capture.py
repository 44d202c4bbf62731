"""Request capture: the rows a ``POST /predict`` call scored, handed to a sink off the response
path, and turned into the contract's records (:mod:`onnxkit.contract.capture`) by the sink.

The route calls the sink with a :class:`Scored` (references to the call's feed and answer, no
copies) only when one is configured: with no sink the route pays one ``is None`` test; a
sampling sink is asked first (its ``take``, :func:`sampler`), so a call it leaves out costs one
draw. Building records, encoding and writing are the sink's: on its own thread for ``onnxkit
serve --capture`` (:mod:`onnxkit.local.capture`, which keeps a copy of the one-row buffer,
:func:`kept`); in Lambda, :class:`LogCapture`, which writes a sampled call's records as JSON
lines to the function's stdout before the call returns. Lambda delivers those lines to the
function's log group, and a subscription filter sends them through Firehose to the artifact
bucket's ``capture/`` (infra/constructs/request_capture.py; why this transport: docs/deploy.md).
"""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from math import isnan
from typing import Any, Final, TextIO

import numpy as np

from onnxkit.contract.capture import CaptureRecord, FeatureValue, encode_records
from onnxkit.contract.layout import CAPTURE_SAMPLE_RATE_ENV

from .feed import MISSING_CATEGORY
from .predictor import Model


@dataclass(frozen=True, slots=True)
class Scored:
    """One answered ``/predict`` call, as the model read it and as it answered."""

    request_id: str
    answered_at: float  # seconds since the epoch
    model: Model
    feed: dict[str, np.ndarray]
    result: dict[str, Any]


Sink = Callable[[Scored], None]


def sampler(sink: Sink | None) -> Callable[[], bool] | None:
    """The sink's sampling decision (its ``take``), which the route asks before it builds
    anything for the sink, so that a call left out costs one draw; None: every call goes."""
    take: Callable[[], bool] | None = getattr(sink, "take", None)
    return take


def scored(
    request_id: str,
    answered_at: float,
    model: Model,
    feed: dict[str, np.ndarray],
    result: dict[str, Any],
) -> Scored:
    """What a sink gets: references only, valid until the call returns (see :func:`kept`)."""
    return Scored(request_id, answered_at, model, feed, result)


def kept(call: Scored) -> Scored:
    """``call`` safe to keep after it returns: the thread's one-row buffer, which its next call
    reuses, copied. For sinks that finish with a call later (a queue, a thread); call it on the
    request's thread."""
    if call.model.feed.is_one_row_feed(call.feed):
        feed = {name: array.copy() for name, array in call.feed.items()}
        return Scored(call.request_id, call.answered_at, call.model, feed, call.result)
    return call


def _plain(values: Any) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _numeric_rows(call: Scored, inputs: list[str], count: int) -> list[list[float]]:
    """The numeric features' values, row by row (numeric inputs are float32 columns,
    functions/inference/feed.py): item by item for one row, else one conversion of one
    (rows, features) array rather than one per feature."""
    feed = call.feed
    if count == 1:
        return [[feed[name].item() for name in inputs]]
    rows: list[list[float]] = np.concatenate([feed[name] for name in inputs], axis=1).tolist()
    return rows


def records(call: Scored) -> list[CaptureRecord]:
    """One record per scored row: features keyed by name (float32 numbers widened, a missing
    value null), the prediction and, for classification, the probabilities."""
    model = call.model
    specs = model.features
    names = [spec.name for spec in specs]
    numeric = [spec.onnx_input for spec in specs if spec.numeric]
    predictions = _plain(call.result["predictions"])
    numbers = (
        [
            [None if isnan(v) else v for v in row]
            for row in _numeric_rows(call, numeric, len(predictions))
        ]
        if numeric
        else []
    )
    if len(numeric) == len(specs):
        rows: list[list[FeatureValue]] = numbers  # type: ignore[assignment]
    else:
        columns = {
            spec.onnx_input: [
                None if v == MISSING_CATEGORY else v
                for v in call.feed[spec.onnx_input].reshape(-1).tolist()
            ]
            for spec in specs
            if not spec.numeric
        }
        rows = []
        for index in range(len(predictions)):
            values = iter(numbers[index]) if numbers else iter(())
            rows.append(
                [
                    next(values) if spec.numeric else columns[spec.onnx_input][index]
                    for spec in specs
                ]
            )
    probabilities = call.result.get("probabilities")
    rows_probabilities = _plain(probabilities) if probabilities is not None else None
    captured_at = datetime.fromtimestamp(call.answered_at, UTC)
    return [
        CaptureRecord(
            request_id=call.request_id,
            row=row,
            captured_at=captured_at,
            model_name=model.model_name,
            model_version=model.model_version,
            features=dict(zip(names, values, strict=True)),
            prediction=predictions[row],
            probabilities=None if rows_probabilities is None else rows_probabilities[row],
        )
        for row, values in enumerate(rows)
    ]


# "Each log event can be no larger than 256 KB" (CloudWatch Logs API reference, PutLogEvents;
# 26 bytes less, as CloudWatch counts that much per event): a longer line would be cut, and a
# cut line is no record. It takes thousands of features to make a line that long.
MAX_LINE_BYTES: Final = 256 * 1024 - 26
log = logging.getLogger(__name__)


class LogCapture:
    """The deployed function's capture sink: the route captures a call when :meth:`take` says
    so, with probability ``sample_rate`` (all its rows or none); the sink writes its records as
    JSON Lines, the contract's encoding (:func:`~onnxkit.contract.capture.encode_records`), to
    ``stream`` and flushes them before the call returns.

    No thread and no buffer of its own: once the handler has returned, the lines are the
    platform's (Lambda captures a function's stdout and sends it to its log group; it may
    freeze or recycle the environment right after), so nothing is pending when Lambda freezes
    the environment. ``stream`` defaults to ``sys.stdout`` as it is at write time (the runtime
    sets it up). ``draw`` returns uniform numbers in [0, 1): by default a generator seeded
    from the OS, and seeded again after a SnapStart restore where the runtime offers the hook
    (every environment restored from one snapshot would otherwise draw the same sequence;
    "Handling uniqueness with Lambda SnapStart", docs.aws.amazon.com/lambda/latest/dg/
    snapstart-uniqueness.html). The OS's own generator costs a system call per draw.
    """

    def __init__(
        self,
        sample_rate: float,
        stream: TextIO | None = None,
        *,
        draw: Callable[[], float] | None = None,
    ) -> None:
        if not 0 <= sample_rate <= 1:  # also refuses NaN
            raise ValueError(f"capture sample rate {sample_rate!r} is not between 0 and 1")
        self.sample_rate = sample_rate
        self._stream = stream
        self._draw = draw or _reseeded_after_restore().random
        self._lock = threading.Lock()  # one call's lines stay together when threads share it
        self.calls = 0  # calls captured
        self.records = 0  # records written
        self.too_long = 0  # records not written: longer than a log event may be

    def take(self) -> bool:
        """Whether to capture the next call (asked by the route before it builds the call)."""
        return self._draw() < self.sample_rate

    def __call__(self, call: Scored) -> None:
        """Write the call's records; return once they are flushed."""
        rows = records(call)
        data, count = encode_records(rows), len(rows)
        if len(data) > MAX_LINE_BYTES:  # some line may be: write only those that fit
            lines = [encode_records([row]) for row in rows]
            fitting = [line for line in lines if len(line) <= MAX_LINE_BYTES]
            if len(fitting) < len(lines):
                self.too_long += len(lines) - len(fitting)
                log.warning(
                    "capture: %d record(s) of request %s are longer than a log event and are "
                    "not captured",
                    len(lines) - len(fitting),
                    call.request_id,
                )
            data, count = b"".join(fitting), len(fitting)
        stream = sys.stdout if self._stream is None else self._stream
        with self._lock:
            stream.write(data.decode())
            stream.flush()
            self.calls += 1
            self.records += count


def _reseeded_after_restore() -> random.Random:
    # Sampling, not secrecy: a seeded generator draws in ~50 ns, the OS's in a system call.
    generator = random.Random(os.urandom(16))  # noqa: S311
    try:  # the Lambda Python runtime's SnapStart hooks; absent elsewhere
        from snapshot_restore_py import register_after_restore  # noqa: PLC0415
    except ImportError:
        return generator
    register_after_restore(lambda: generator.seed(os.urandom(16)))
    return generator


def capture_from_env(env: Mapping[str, str], stream: TextIO | None = None) -> LogCapture | None:
    """The function's capture sink as ``CAPTURE_SAMPLE_RATE`` says; None when it is unset or 0.

    ValueError for a rate that is not a number in [0, 1]: the deployment set it from the
    validated config (``capture.sample_rate``), so anything else is a hand edit to refuse.
    """
    raw = env.get(CAPTURE_SAMPLE_RATE_ENV, "").strip()
    if not raw:
        return None
    try:
        rate = float(raw)
    except ValueError:
        raise ValueError(f"{CAPTURE_SAMPLE_RATE_ENV}={raw!r} is not a number") from None
    sink = LogCapture(rate, stream)
    return sink if rate > 0 else None
