"""The contract's missing-value and number rule."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnxkit.contract.values import (
    DEFAULT_MISSING_TOKENS,
    ValueProblem,
    ValueRule,
    parse_missing_tokens,
)

RULE = ValueRule()


@pytest.mark.parametrize("text", ["", " ", "\t", *DEFAULT_MISSING_TOKENS, " NA "])
def test_default_tokens_and_blanks_are_missing_in_both_kinds(text: str) -> None:
    assert RULE.is_missing(text)
    assert RULE.number(text) is None
    assert RULE.category(text) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12", 12.0),
        ("-0.5", -0.5),
        (".5", 0.5),
        ("1.", 1.0),
        ("+3", 3.0),
        ("1e-3", 1e-3),
        (" 7 ", 7.0),
        ("007", 7.0),
    ],
)
def test_numbers(text: str, value: float) -> None:
    assert RULE.number(text) == value


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1_000", "expected a number"),
        ("12,345", "expected a number"),
        ("\u0661\u0662", "expected a number"),
        ("inf", "expected a number"),
        ("0x10", "expected a number"),
        ("1e400", "finite"),
        ("1e39", "out of range"),
        ("\ufeff1", "expected a number"),
    ],
)
def test_not_numbers(text: str, problem: str) -> None:
    with pytest.raises(ValueProblem, match=problem):
        RULE.number(text)


def test_missing_values_hyperparameter() -> None:
    assert parse_missing_tokens(None) == DEFAULT_MISSING_TOKENS
    assert parse_missing_tokens("") == ()
    assert parse_missing_tokens("NA, -,NA") == ("NA", "-")
    for numeric in ("-999", "NA, 1e3", ".5"):
        with pytest.raises(ValueError, match="is a number; a number is always a value"):
            parse_missing_tokens(numeric)
    only_empty = ValueRule.of(parse_missing_tokens(""))
    assert only_empty.category("NA") == "NA"
    assert only_empty.is_missing("")
    with pytest.raises(ValueProblem):
        only_empty.number("NA")


@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_every_float32_round_trips_through_its_repr(value: float) -> None:
    parsed = RULE.number(repr(value))
    assert parsed is not None and math.isclose(parsed, value, rel_tol=0, abs_tol=0)
