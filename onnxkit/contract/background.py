"""The explanation background: a small seeded sample of training rows, stored in the artifact.

The training job writes it as ``background.json`` (:data:`~onnxkit.contract.layout.BACKGROUND_FILE`)
beside the model; the manifest lists it in ``files`` with its sha256, so it is under the
artifact's digests like the graphs. ``POST /explain`` (``functions/inference/explain.py``)
measures each feature's contribution against these rows: the base value is the model's mean
output over them, and a feature that is "absent" from a coalition takes their values.

Rows hold the values as the graph reads them, in signature order: numbers (float32-exact) or
null for a missing number, strings for categories ("" for a missing category). Readable with
msgspec alone: no scikit-learn, no pandas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import msgspec

from onnxkit.contract.layout import BACKGROUND_FILE

BACKGROUND_SCHEMA_VERSION: Final = "1.0"
# Rows the job samples: the explanation's cost grows linearly with them and its background
# noise shrinks as 1/sqrt(rows); 32 keeps a row's KernelSHAP under ~20k model rows.
BACKGROUND_ROWS: Final = 32

Value = float | str | None


class BackgroundError(ValueError):
    """The background is missing, unreadable or invalid."""


class Background(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Training rows in signature order (``features`` names the columns)."""

    schema_version: str = BACKGROUND_SCHEMA_VERSION
    features: list[str]
    rows: list[list[Value]]
    seed: int  # the sampling seed (the job's)
    source_rows: int  # the training rows sampled from

    def __post_init__(self) -> None:
        if self.schema_version.split(".")[0] != BACKGROUND_SCHEMA_VERSION.split(".")[0]:
            raise ValueError(
                f"unsupported background schema {self.schema_version}; this reader knows "
                f"{BACKGROUND_SCHEMA_VERSION}"
            )
        if not self.rows:
            raise ValueError("the background holds no rows")
        width = len(self.features)
        for index, row in enumerate(self.rows):
            if len(row) != width:
                raise ValueError(f"row {index} has {len(row)} values for {width} features")


_DECODER: Final = msgspec.json.Decoder(Background)


def parse_background(raw: bytes | str) -> Background:
    """Validate background JSON; any problem is one BackgroundError line."""
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError as error:
        raise BackgroundError(f"invalid explanation background: {error}") from None


def encode_background(background: Background) -> bytes:
    """The background's JSON bytes, validated first."""
    raw = msgspec.json.encode(background)
    parse_background(raw)
    return raw + b"\n"


def load_background(model_dir: Path) -> Background:
    """Read and validate ``background.json`` from a model directory."""
    path = Path(model_dir) / BACKGROUND_FILE
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise BackgroundError(f"cannot read {path}: {error.strerror}") from None
    return parse_background(raw)
