"""Instances -> ONNX Runtime feeds: the fast paths agree with the careful one."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.inference import decode
from functions.inference.decode import (
    UTF8_BOM,
    csv_matrix,
    json_matrix,
    numeric_csv_rows,
    predict_feed,
    rows_from_csv,
    rows_from_instances,
)
from functions.inference.errors import ApiError
from functions.inference.feed import FeatureSpec, FeedBuilder, build_feed
from functions.inference.openapi import instance_schema, openapi_document
from onnxkit.contract.values import DEFAULT_MISSING_TOKENS, FLOAT32_MAX, ValueRule

NUMERIC = [FeatureSpec("a b", "a_b", True, True), FeatureSpec("c", "c", True, True)]
MIXED = [FeatureSpec("x", "x", True, True), FeatureSpec("color", "color", False, True)]


def _problems(call: Any) -> list[tuple[Any, Any, str]]:
    with pytest.raises(ApiError) as raised:
        call()
    assert raised.value.status == 400
    return [(d["instance"], d["feature"], d["problem"]) for d in raised.value.details]


def test_numeric_feed_is_one_contiguous_float32_column_per_input() -> None:
    feed = build_feed([[1, 2.5], [None, -3]], NUMERIC)
    assert set(feed) == {"a_b", "c"}
    assert feed["a_b"].dtype == np.float32 and feed["a_b"].shape == (2, 1)
    assert feed["a_b"].flags["C_CONTIGUOUS"]
    assert np.isnan(feed["a_b"][1, 0]) and feed["c"][1, 0] == -3


def test_mixed_feed_uses_empty_string_for_a_missing_category() -> None:
    feed = build_feed([[1.0, "red"], [None, None]], MIXED)
    assert feed["color"].dtype == object
    assert feed["color"].ravel().tolist() == ["red", ""]
    assert np.isnan(feed["x"][1, 0])


def test_object_instances_are_reordered_by_signature() -> None:
    rows = rows_from_instances([{"c": 2.0, "a b": 1.0}], NUMERIC)
    assert [tuple(row) for row in rows] == [(1.0, 2.0)]


@pytest.mark.parametrize("numbers_only", [False, True])
def test_bad_values_are_located(numbers_only: bool) -> None:
    rows: list[Any] = [[1.0, 2.0], [FLOAT32_MAX * 2, None]]
    assert _problems(lambda: build_feed(rows, NUMERIC, numbers_only)) == [
        (1, "a b", "number out of range (|x| <= 3.403e+38)")
    ]


def test_type_problems_per_kind() -> None:
    rows: list[Any] = [[True, "red"], ["1", 3], [[1], {"a": 1}]]
    assert _problems(lambda: build_feed(rows, MIXED)) == [
        (0, "x", "expected a number, got a boolean"),
        (1, "x", "expected a number, got a string"),
        (2, "x", "expected a number, got a list"),
        (1, "color", "expected a category (string), got a number"),
        (2, "color", "expected a category (string), got an object"),
    ]


def test_structure_problems() -> None:
    instances: list[Any] = [[1.0], {"a b": 1.0, "zzz": 2}, "row", 5]
    assert _problems(lambda: rows_from_instances(instances, NUMERIC)) == [
        (0, None, "expected 2 values, got 1"),
        (1, "zzz", "unknown feature"),
        (1, "c", "missing feature (send null if unknown)"),
        (2, None, "an instance is a list of 2 values or an object keyed by feature name, "
                  "not a string"),
        (3, None, "an instance is a list of 2 values or an object keyed by feature name, "
                  "not a number"),
    ]  # fmt: skip


def test_csv_rows() -> None:
    assert rows_from_csv("1,2\n\n,3\n", NUMERIC) == [(1.0, 2.0), (None, 3.0)]
    assert rows_from_csv("a b,c\n1,2\n", NUMERIC) == [(1.0, 2.0)]
    assert rows_from_csv('1,"red, dark"\n', MIXED) == [(1.0, "red, dark")]
    assert _problems(lambda: rows_from_csv("x,2\n1e400,1\n1\n", NUMERIC)) == [
        (0, "a b", "expected a number, got 'x'"),
        (1, "a b", "number must be finite"),
        (2, None, "expected 2 values, got 1"),
    ]


# --- the contract's missing-value and number rule (onnxkit.contract.values) -----------------
NO_TOKENS = ValueRule.of([])
MIXED_NO_TOKENS = [replace(spec, rule=NO_TOKENS) for spec in MIXED]


@pytest.mark.parametrize("token", [*DEFAULT_MISSING_TOKENS, "", " ", "\t", " NA "])
def test_csv_missing_tokens_are_missing_in_numeric_and_categorical_fields(token: str) -> None:
    body = f'"{token}","{token}"\n2,red\n'
    # A missing category reads as MISSING_CATEGORY (""), what the model receives for it.
    assert rows_from_csv(body, MIXED) == [(None, ""), (2.0, "red")]
    assert rows_from_csv(body, MIXED) == rows_from_csv(",\n2,red\n", MIXED)


@pytest.mark.parametrize("token", DEFAULT_MISSING_TOKENS)
def test_json_string_tokens_are_missing_in_numeric_and_categorical_features(token: str) -> None:
    with_token = build_feed([[token, token], [2.0, "red"]], MIXED)
    with_null = build_feed([[None, None], [2.0, "red"]], MIXED)
    for name in with_token:
        np.testing.assert_array_equal(with_token[name], with_null[name])
    assert with_token["color"].ravel().tolist() == ["", "red"]


def test_without_tokens_na_is_a_category_and_not_a_number() -> None:
    assert rows_from_csv("1,NA\n", MIXED_NO_TOKENS) == [(1.0, "NA")]
    assert build_feed([[1.0, "NA"]], MIXED_NO_TOKENS)["color"].ravel().tolist() == ["NA"]
    assert _problems(lambda: rows_from_csv("NA,red\n", MIXED_NO_TOKENS)) == [
        (0, "x", "expected a number, got 'NA'")
    ]
    assert _problems(lambda: build_feed([["NA", "red"]], MIXED_NO_TOKENS)) == [
        (0, "x", "expected a number, got a string")
    ]
    # Blank stays missing whatever the tokens.
    assert rows_from_csv(" ,\t\n", MIXED_NO_TOKENS) == [(None, "")]


def test_manifest_tokens_that_look_like_numbers_are_missing() -> None:
    sentinel = [replace(spec, rule=ValueRule.of(["-999"])) for spec in NUMERIC]
    assert rows_from_csv("-999,1\n2,-999\n", sentinel) == [(None, 1.0), (2.0, None)]
    feed = build_feed([["-999", 1]], sentinel)
    assert np.isnan(feed["a_b"][0, 0])


@pytest.mark.parametrize(
    "field",
    ["1_000", "١٢", "12,345", "0x10", "inf", "-Infinity", "1e", "--1", "1 2", "\n1", "\xa01"],
)
def test_csv_numbers_follow_the_contract_grammar_not_float(field: str) -> None:
    text = f'"{field}",1\n'
    problems = _problems(lambda: rows_from_csv(text, NUMERIC))
    assert problems == [(0, "a b", f"expected a number, got {field!r}")]


def test_csv_numbers_the_grammar_accepts() -> None:
    body = "+1,.5\n1.,-0\n 3e2\t,1E-3\n"
    assert rows_from_csv(body, NUMERIC) == [(1.0, 0.5), (1.0, -0.0), (300.0, 0.001)]


def test_tokens_for_a_feature_the_model_does_not_impute_are_refused() -> None:
    strict = [FeatureSpec("x", "x", True, False), FeatureSpec("color", "color", False, False)]
    assert _problems(lambda: build_feed([["NA", "n/a"]], strict)) == [
        (0, "x", "missing value ('NA'), and the model does not impute this feature"),
        (0, "color", "missing value ('n/a'), and the model does not impute this feature"),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ('1,"red\n2,blue\n3,green\n', "unexpected end of data"),
        ('1,"red"dish\n', "',' expected after '\"'"),
    ],
)
def test_csv_quotes_that_break_the_structure_are_a_400(text: str, message: str) -> None:
    with pytest.raises(ApiError) as raised:
        rows_from_csv(text, MIXED)
    assert raised.value.status == 400 and raised.value.code == "invalid_body"
    assert message in raised.value.message


numbers = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(10**6), 10**6)
    | st.sampled_from([FLOAT32_MAX, -FLOAT32_MAX * 1.5, 1e39])
)


def _outcome(call: Any) -> Any:
    try:
        return call()
    except ApiError as error:
        return [(d["instance"], d["feature"], d["problem"]) for d in error.details]


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(st.none() | numbers, min_size=2, max_size=2), min_size=1, max_size=8))
def test_fast_and_careful_paths_agree(rows: list[list[Any]]) -> None:
    fast = _outcome(lambda: build_feed(rows, NUMERIC, numbers_only=True))
    checked = _outcome(lambda: build_feed(rows, NUMERIC))
    # A categorical feature forces the column-by-column path on the numeric column.
    careful = _outcome(lambda: build_feed([[row[0], "k"] for row in rows], [NUMERIC[0], MIXED[1]]))
    in_range = all(v is None or abs(v) <= FLOAT32_MAX for row in rows for v in row)
    if not in_range:
        assert isinstance(fast, list) and fast == checked
        return
    assert isinstance(fast, dict) and isinstance(careful, dict)
    np.testing.assert_array_equal(fast["a_b"], checked["a_b"])
    np.testing.assert_array_equal(fast["a_b"], careful["a_b"])
    expected = np.array([np.nan if v is None else v for v in (r[0] for r in rows)], np.float32)
    np.testing.assert_array_equal(fast["a_b"].ravel(), expected)


def test_openapi_instance_schema_follows_the_signature() -> None:
    signature = {
        "features": [
            {"name": "x", "kind": "numeric", "nullable": False},
            {"name": "color", "kind": "categorical", "nullable": True, "categories": ["red"]},
        ]
    }
    positional, keyed = instance_schema(signature)["oneOf"]
    assert positional["minItems"] == positional["maxItems"] == 2
    assert positional["prefixItems"][0]["type"] == "number"
    assert keyed["properties"]["color"] == {
        "type": ["string", "null"],
        "description": "categorical feature; null when missing (the model imputes it)",
        "examples": ["red"],
    }
    document = openapi_document(None, 10)
    assert (
        document["components"]["schemas"]["PredictRequest"]["properties"]["instances"]["maxItems"]
        == 10
    )


@settings(max_examples=400, deadline=None)
@given(text=st.text(alphabet="0123456789.eE+-, \n", max_size=40))
def test_numeric_csv_fast_path_agrees_with_the_csv_module(text: str) -> None:
    fast = numeric_csv_rows(text.encode(), NUMERIC)
    if fast is None:
        return
    try:
        careful = rows_from_csv(text, NUMERIC)
    except ApiError:  # "1e40": the feed builder declines the fast rows, the careful path names it
        assert FeedBuilder(NUMERIC).numeric_feed(fast, numbers_only=True) is None
        return
    assert [[float(v) for v in row] for row in fast] == [list(row) for row in careful]


def test_numeric_csv_fast_path_skips_a_header_and_declines_the_rest() -> None:
    assert numeric_csv_rows(b"a b,c\r\n1,2\r\n3e2,-4\r\n", NUMERIC) == [[1, 2], [300.0, -4]]
    for text in (b"1,\n", b"+1,2\n", b".5,1\n", b"1,2,3\n", b"x,1\n", b"1e999,1\n", b""):
        assert numeric_csv_rows(text, NUMERIC) is None, text
    assert numeric_csv_rows(b"1,red\n", MIXED) is None


def _csv_event(text: str) -> dict[str, Any]:
    return {"headers": {"Content-Type": "text/csv"}, "body": text, "isBase64Encoded": False}


def _answer(call: Any) -> tuple[Any, ...]:
    """A feed's values per input, or an ApiError's status and body: what a client gets."""
    try:
        feed = call()
    except ApiError as error:
        return ("error", error.status, error.body())
    return ("feed", {name: (a.dtype.str, a.shape, _cells(a)) for name, a in feed.items()})


def _cells(array: np.ndarray) -> Any:
    return array.tolist() if array.dtype == object else array.tobytes()  # NaN == NaN as bytes


def _csv_outcomes(text: str, features: list[FeatureSpec]) -> tuple[Any, Any]:
    """``predict_feed``'s answer to a CSV body (its fast paths: JSON arrays, and simdjson for
    large bodies) and the careful path's (csv module + contract rule + feed builder)."""
    builder = FeedBuilder(features)

    def careful() -> Any:
        rows = rows_from_csv(text.encode().removeprefix(UTF8_BOM).decode(), features)
        decode.check_count(len(rows), 10**6)
        return builder(rows)

    def served() -> Any:
        return predict_feed(_csv_event(text), builder, max_body_bytes=10**7, max_instances=10**6)

    return _answer(served), _answer(careful)


@pytest.mark.parametrize("simdjson", [False, True])
def test_csv_values_beyond_float32_get_the_careful_paths_answer(
    simdjson: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fast paths do not check float32's range; the feed builder declines such a matrix,
    # and the careful path names every cell in row order (the builder would name by column).
    monkeypatch.setattr(decode, "SIMDJSON_MIN_BYTES", 0 if simdjson else 10**9)
    for text in ("1E40,1\n", "9" * 39 + ",1\n", "1e39,1e40\n-1e39,2\n", "1,2\n3e38,-3.5e38\n"):
        served, careful = _csv_outcomes(text, NUMERIC)
        assert served[0] == "error" and served == careful, text


def test_float32_max_is_numpys() -> None:
    assert float(np.finfo(np.float32).max) == FLOAT32_MAX


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet='0123456789.eE+-, \n\r"a\t\x00', max_size=40) | st.text(max_size=30))
def test_any_csv_text_gives_rows_or_a_400(text: str) -> None:
    for features in (NUMERIC, MIXED):
        fast = numeric_csv_rows(text.encode(), features)
        try:
            rows = rows_from_csv(text, features)
        except ApiError as error:
            assert error.status == 400
            continue
        if fast is not None:
            assert [[float(v) for v in row] for row in fast] == [list(row) for row in rows]


@settings(max_examples=400, deadline=None)
@given(
    text=st.text(alphabet="0123456789.eE+-, \n", max_size=40)
    | st.lists(
        st.lists(st.floats(width=64) | st.integers(-(2**130), 2**130), min_size=2, max_size=2),
        min_size=1,
        max_size=4,
    ).map(lambda rows: "".join(",".join(map(str, row)) + "\n" for row in rows)),
    simdjson=st.booleans(),
)
def test_a_csv_body_gets_the_careful_paths_answer(text: str, simdjson: bool) -> None:
    """Every CSV body, whichever path parses it, gets the careful path's feed or error."""
    threshold = decode.SIMDJSON_MIN_BYTES
    decode.SIMDJSON_MIN_BYTES = 0 if simdjson else 10**9
    try:
        for features in (NUMERIC, MIXED):
            served, careful = _csv_outcomes(text, features)
            assert served == careful
    finally:
        decode.SIMDJSON_MIN_BYTES = threshold


# --- simdjson matrices (large bodies) and the one-row buffer --------------------------------

THREE = [FeatureSpec(name, name, True, True) for name in ("p", "q", "r")]


def _careful_matrix(raw: bytes, features: list[FeatureSpec]) -> np.ndarray | None:
    """What the orjson path makes of a body: the float64 matrix, or None if it is not one of
    list instances of len(features) numbers (no booleans, strings, nesting or nulls)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or set(body) != {"instances"}:
        return None
    rows = body["instances"]
    if not isinstance(rows, list) or not rows:
        return None
    if not all(isinstance(row, list) and len(row) == len(features) for row in rows):
        return None
    if not all(type(v) in (int, float) for row in rows for v in row):
        return None
    return np.array(rows, dtype=np.float64)


json_numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -0.0, 1e308, 5e-324, 2**53 + 1, 2**64, -(2**63) - 1])
)
json_values = st.recursive(
    json_numbers | st.none() | st.booleans() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    rows=st.lists(st.lists(json_numbers, min_size=3, max_size=3), min_size=1, max_size=6)
    | st.lists(st.lists(json_values, max_size=4), max_size=4)
    | json_values,
    spacing=st.sampled_from([None, (", ", ": "), (",", ":")]),
    extra=st.sampled_from([{}, {"x": 1}]),
)
def test_simdjson_matrix_is_exactly_the_orjson_matrix_or_declines(
    rows: Any, spacing: tuple[str, str] | None, extra: dict[str, Any]
) -> None:
    raw = json.dumps({"instances": rows, **extra}, separators=spacing).encode()
    fast = json_matrix(raw, THREE)
    careful = _careful_matrix(raw, THREE)
    if fast is None:
        # Declining is always safe; it must not decline the plain case it exists for.
        in_int64 = (
            all(-(2**63) <= v < 2**64 for row in rows for v in row) if careful is not None else True
        )
        assert careful is None or not in_int64
        return
    assert careful is not None
    np.testing.assert_array_equal(fast, careful)
    assert fast.dtype == np.float64 and fast.shape == careful.shape


def test_simdjson_matrix_declines_what_the_careful_path_must_explain() -> None:
    matrix = json_matrix(b'{"instances": [[1, 2.5, -3e2], [0, 0, 0]]}', THREE)
    assert matrix is not None
    assert matrix.tolist() == [
        [1, 2.5, -300],
        [0, 0, 0],
    ]
    for raw in (
        b'{"instances": [[1, [2], 3]]}',  # as_buffer would flatten the nesting
        b'{"instances": [[1, [], 2, 3]]}',
        b'{"instances": [[1, 2, 3], [4, 5]]}',
        b'{"instances": [[1, 2, null]]}',
        b'{"instances": [[1, 2, true]]}',
        b'{"instances": [[1, 2, "3"]]}',
        b'{"instances": ["abc"]}',
        b'{"instances": [{"p": 1, "q": 2, "r": 3}]}',
        b'{"instances": []}',
        b'{"instances": [[1, 2, 1e400]]}',
        b'{"instances": [[1, 2, 123456789012345678901234567890]]}',
        b'{"instances": [[1, 2, 3]], "instances": [[4, 5, 6]]}',
        b'{"instances": [[1, 2, 3]], "x": 1}',
        b'{"other": [[1, 2, 3]]}',
        b"[[1, 2, 3]]",
        b'\xef\xbb\xbf{"instances": [[1, 2, 3]]}',  # simdjson skips a BOM, orjson refuses it
        b'{"instances": [[1, 2, 3]]} x',
        b'{"instances": [[01, 2, 3]]}',
    ):
        assert json_matrix(raw, THREE) is None, raw
    assert json_matrix(b'{"instances": [[1, 2]]}', MIXED) is None


@settings(max_examples=500, deadline=None)
@given(
    text=st.text(alphabet="0123456789.eE+-, \n\r", max_size=60)
    | st.text(alphabet='0123456789,.-e\n[]{}"truefalsn\t\x00', max_size=30)
)
def test_simdjson_csv_matrix_agrees_with_the_orjson_csv_rows(text: str) -> None:
    for features in (NUMERIC, NUMERIC[:1]):
        fast = csv_matrix(text.encode(), features)
        if fast is None:
            continue
        rows = numeric_csv_rows(text.encode(), features)
        assert rows is not None, text
        np.testing.assert_array_equal(fast, np.array(rows, dtype=np.float64))


def test_one_row_feeds_reuse_a_buffer_per_thread_with_fresh_values() -> None:
    builder = FeedBuilder(NUMERIC)
    first = builder([[1.5, None]], numbers_only=True)
    assert first["a_b"].shape == (1, 1) and first["a_b"].dtype == np.float32
    assert first["a_b"][0, 0] == 1.5 and np.isnan(first["c"][0, 0])
    second = builder([[FLOAT32_MAX, -2]], numbers_only=True)
    assert second["a_b"][0, 0] == np.float32(FLOAT32_MAX) and second["c"][0, 0] == -2
    seen: list[dict[str, np.ndarray]] = []
    worker = threading.Thread(target=lambda: seen.append(builder([[7, 8]], numbers_only=True)))
    worker.start()
    worker.join()
    assert seen[0]["a_b"][0, 0] == 7 and second["a_b"][0, 0] == np.float32(FLOAT32_MAX)
    assert seen[0]["a_b"] is not second["a_b"]


def test_without_simdjson_large_bodies_are_left_to_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    # The Lambda runtime (CPython 3.14, arm64) has no pysimdjson wheel.
    from functions.inference import decode

    body = b'{"instances": [[1, 2, 3]]}'
    assert json_matrix(body, THREE) is not None
    monkeypatch.setattr(decode, "_simdjson", lambda: None)
    assert json_matrix(body, THREE) is None
    assert csv_matrix(b"1,2,3\n", THREE) is None
