"""Request capture: the rows a ``POST /predict`` call scored, handed to a sink off the response
path, and turned into the contract's records (:mod:`onnxkit.contract.capture`) by the sink.

The route calls the sink with a :class:`Scored` (references to the call's feed and answer, no
copies but the one-row buffer's, which the next call reuses) only when one is configured: with
no sink the route pays one ``is None`` test. Building records, encoding and writing are the
sink's, on its own thread (``onnxkit serve --capture``: :mod:`onnxkit.local.capture`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from onnxkit.contract.capture import CaptureRecord

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


def scored(
    request_id: str,
    answered_at: float,
    model: Model,
    feed: dict[str, np.ndarray],
    result: dict[str, Any],
) -> Scored:
    """What a sink gets; the one-row buffer is copied, as the thread's next call reuses it."""
    if model.feed.is_one_row_feed(feed):
        feed = {name: array.copy() for name, array in feed.items()}
    return Scored(request_id, answered_at, model, feed, result)


def _plain(values: Any) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def records(call: Scored) -> list[CaptureRecord]:
    """One record per scored row: features keyed by name (float32 numbers widened, a missing
    value null), the prediction and, for classification, the probabilities."""
    model = call.model
    names = [spec.name for spec in model.features]
    columns = []
    for spec in model.features:
        column = call.feed[spec.onnx_input].reshape(-1).tolist()
        if spec.numeric:
            columns.append([None if math.isnan(v) else v for v in column])
        else:
            columns.append([None if v == MISSING_CATEGORY else v for v in column])
    predictions = _plain(call.result["predictions"])
    probabilities = call.result.get("probabilities")
    rows_probabilities = _plain(probabilities) if probabilities is not None else None
    captured_at = datetime.fromtimestamp(call.answered_at, UTC)
    out = []
    for row, values in enumerate(zip(*columns, strict=True)):
        out.append(
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
        )
    return out
