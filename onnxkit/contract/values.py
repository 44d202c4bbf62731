"""What counts as a missing value and as a number: one rule for training and serving.

The training job reads every CSV cell as text and applies this rule; the inference API applies
it to CSV fields and to JSON strings; ``onnxkit predict`` applies it to the cells of the file it
sends. The manifest records the missing tokens the model was trained with
(``Signature.missing_values``), so every reader of a model reads text exactly as its training
job did.

The rule, for a cell's text ``t`` (a CSV field, or a JSON string):

* ``t`` is **missing** when ``t.strip(" \\t")`` is empty or is one of the missing tokens
  (exact, case-sensitive). JSON ``null`` and a NaN in a binary body are always missing.
  This holds for numeric and categorical columns alike.
* otherwise, in a **numeric** column, ``t.strip(" \\t")`` must match :data:`NUMBER_PATTERN`
  (ASCII digits, optional sign, decimal point and exponent: ``12``, ``-0.5``, ``.5``, ``1e-3``;
  not ``1_000``, ``12,345``, ``0x10``, ``inf``, ``nan`` or non-ASCII digits) and be finite and
  within float32's range after parsing;
* otherwise, in a **categorical** column, ``t`` is the category, verbatim.

A missing token is never a number (``-999``): a number is always a value, which is how the
inference API's all-numeric CSV fast paths read it.

Standard library only: this module is on the inference function's cold path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

# pandas' default NA strings minus the ones that are plausible real values, plus empty.
# "NA" stays: it is by far the most common spelling of missing in public tables (R writes it).
DEFAULT_MISSING_TOKENS: Final = (
    "NA",
    "N/A",
    "n/a",
    "NaN",
    "nan",
    "NULL",
    "null",
    "None",
    "#N/A",
)
# float(np.finfo(np.float32).max), written out: finfo costs milliseconds at cold start.
FLOAT32_MAX: Final = 3.4028234663852886e38
NUMBER_PATTERN: Final = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_NUMBER: Final = re.compile(NUMBER_PATTERN)
_BLANK: Final = " \t"


class ValueProblem(ValueError):
    """A cell that is not a valid value for its column; ``str()`` is the readable reason."""


def parse_missing_tokens(text: str | None) -> tuple[str, ...]:
    """The ``missing_values`` hyperparameter: comma-separated tokens; None means the default.

    An empty string means no tokens: only empty cells and JSON ``null`` are missing. A token
    that is a number raises ValueError.
    """
    if text is None:
        return DEFAULT_MISSING_TOKENS
    tokens = tuple(dict.fromkeys(token.strip(_BLANK) for token in text.split(",")))
    for token in tokens:
        if _NUMBER.fullmatch(token):
            raise ValueError(
                f"missing_values token {token!r} is a number; a number is always a value "
                "(replace such cells with an empty cell or a token like NA)"
            )
    return tuple(token for token in tokens if token)


@dataclass(frozen=True)
class ValueRule:
    """The missing tokens of one model, and the number grammar every reader applies."""

    missing_tokens: frozenset[str] = frozenset(DEFAULT_MISSING_TOKENS)

    @classmethod
    def of(cls, tokens: Iterable[str] | None) -> ValueRule:
        """The rule for a manifest's ``missing_values`` (None: a manifest from before them)."""
        return cls(frozenset(DEFAULT_MISSING_TOKENS if tokens is None else tokens))

    def is_missing(self, text: str) -> bool:
        """True when a cell's text means a missing value."""
        stripped = text.strip(_BLANK)
        return not stripped or stripped in self.missing_tokens

    def number(self, text: str) -> float | None:
        """A numeric cell's value, None when missing; :class:`ValueProblem` when invalid."""
        stripped = text.strip(_BLANK)
        if not stripped or stripped in self.missing_tokens:
            return None
        if _NUMBER.fullmatch(stripped) is None:
            raise ValueProblem(f"expected a number, got {_quote(text)}")
        value = float(stripped)
        problem = number_problem(value)
        if problem:
            raise ValueProblem(problem)
        return value

    def category(self, text: str) -> str | None:
        """A categorical cell's value, None when missing."""
        return None if self.is_missing(text) else text


def number_problem(value: float) -> str | None:
    """Why a parsed number (from JSON, CSV or a binary body) cannot feed a float32 input."""
    if not math.isfinite(value):
        return "number must be finite"
    if abs(value) > FLOAT32_MAX:
        return f"number out of range (|x| <= {FLOAT32_MAX:.4g})"
    return None


def _quote(text: str, limit: int = 40) -> str:
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(shown)
