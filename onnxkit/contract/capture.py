"""Captured requests: one record per scored row of a ``POST /predict`` call, as JSON Lines.

``onnxkit serve --capture DIR`` writes them locally (files named by
:func:`~onnxkit.contract.layout.capture_file_name`), the cloud capture will write the same
records, and the drift module reads them. A record holds the row's feature values as the model
read them (numbers as float32 widened to float, categories verbatim, a missing value as null;
keyed by feature name), the prediction, the class probabilities (classification, in the
manifest's ``classes`` order), the model's name and version, when the call was answered and
the API's request id. Never headers, keys or anything else of the request.

Fields are only ever added: readers ignore fields they do not know. A file's last line without
its newline is a record still being written and is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Final

import msgspec
from msgspec import Meta

FeatureValue = float | str | None


class CaptureError(ValueError):
    """A capture file holds a line that is not a capture record."""


class CaptureRecord(msgspec.Struct, kw_only=True, frozen=True):
    """One scored row of one ``/predict`` call."""

    request_id: str
    row: Annotated[int, Meta(ge=0, description="The row's position in its call.")]
    captured_at: datetime
    model_name: str
    model_version: str
    features: dict[str, FeatureValue]
    prediction: str | int | float
    probabilities: list[float] | None = None


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(CaptureRecord)


def encode_records(records: Iterable[CaptureRecord]) -> bytes:
    """JSON Lines: one record per line, each line ending with a newline."""
    return _ENCODER.encode_lines(list(records))


def decode_records(raw: bytes, source: str = "capture") -> list[CaptureRecord]:
    """The records of a JSON Lines file's bytes; CaptureError naming ``source:line`` when one
    line is not a record. Blank lines and an unterminated last line are skipped."""
    lines = raw.split(b"\n")
    lines.pop()  # empty after a final newline, else a line still being written
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(_DECODER.decode(line))
        except msgspec.DecodeError as error:
            raise CaptureError(f"{source}:{number}: not a capture record: {error}") from None
    return records
