"""The contract's value rule (``onnxkit.contract.values``) over whole columns of cell texts.

The same rule as ``ValueRule.is_missing`` and ``ValueRule.number``, cell for cell, but with
Arrow's vectorised string kernels (pyarrow.compute), so a million-row column is judged in
milliseconds rather than a Python call per cell: strip blanks (``" \\t"``), compare with the
missing tokens, match :data:`NUMBER_PATTERN` over the whole text (RE2, ASCII digits as in
Python's ``re``), parse with Arrow's correctly rounded float parser (the same double Python's
``float()`` gives for every text the grammar admits; a property test checks it), then the
finite / float32-range check. Columns are ``pa.ChunkedArray`` of strings without nulls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from onnxkit.contract.values import FLOAT32_MAX, NUMBER_PATTERN, ValueRule

BLANK = " \t"
# RE2 anchors: without the multi-line flag, "$" is the end of the text only (as fullmatch).
_NUMBER_RE = f"^(?:{NUMBER_PATTERN})$"


def texts(values: Any) -> pa.ChunkedArray:
    """A column of cell texts: Arrow strings as they are; anything else (a pandas Series or a
    list built in code, with None/NaN for missing) as its ``str`` texts, missing as ``""``."""
    if isinstance(values, pa.ChunkedArray):
        return values
    if isinstance(values, pa.Array):
        return pa.chunked_array([values], type=values.type)
    series = pd.Series(values, dtype=object).fillna("").astype(str)
    return pa.chunked_array([pa.array(series.tolist(), type=pa.string())], type=pa.string())


def stripped(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each cell without leading and trailing blanks (``str.strip(" \\t")``)."""
    return pc.utf8_trim(column, characters=BLANK)


def is_token(bare: pa.ChunkedArray, rule: ValueRule) -> pa.ChunkedArray:
    """Stripped cells that are one of the rule's missing tokens."""
    return pc.is_in(bare, value_set=pa.array(sorted(rule.missing_tokens), type=pa.string()))


def _missing(bare: pa.ChunkedArray, rule: ValueRule) -> pa.ChunkedArray:
    return pc.or_(pc.equal(bare, ""), is_token(bare, rule))


def to_numpy(mask: pa.ChunkedArray) -> np.ndarray:
    """An Arrow boolean column as a numpy bool array."""
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


def missing_mask(column: Any, rule: ValueRule) -> np.ndarray:
    """Cells the contract reads as missing (``ValueRule.is_missing``)."""
    return to_numpy(_missing(stripped(texts(column)), rule))


def number_mask(column: Any) -> np.ndarray:
    """Cells whose text is a number in the contract's grammar (range not checked)."""
    return to_numpy(pc.match_substring_regex(stripped(texts(column)), _NUMBER_RE))


def float64(bare: pa.ChunkedArray, readable: np.ndarray) -> np.ndarray:
    """The stripped cells where ``readable`` parsed as float64, NaN elsewhere."""
    values = pc.if_else(pa.array(readable), bare, pa.scalar("nan", type=pa.string()))
    return np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False))


def in_range(values: np.ndarray) -> np.ndarray:
    """Finite and within float32's range (``number_problem`` is None); False for NaN."""
    return np.abs(values) <= FLOAT32_MAX


def clean_numbers(column: pa.Array, rule: ValueRule) -> np.ndarray | None:
    """A numeric column's values (NaN for missing) when every cell is missing or a valid
    number; None when any is not (the caller then judges the column by its texts)."""
    try:
        # Every cell a plain number: Arrow's parser takes the grammar's texts, and besides
        # them only inf/nan spellings, which in_range refuses (a property test checks that
        # this shortcut reads every text as the rule does).
        values = np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False))
    except pa.ArrowInvalid:
        pass
    else:
        if np.all(in_range(values)):
            return values
    bare = stripped(column)
    missing = to_numpy(_missing(bare, rule))
    numbers = to_numpy(pc.match_substring_regex(bare, _NUMBER_RE))
    if not np.all(missing | numbers):
        return None
    values = float64(bare, ~missing)
    if not np.all(in_range(values) | missing):
        return None
    return values
