"""Property tests: whatever a client sends, the handler answers with no 5xx and a clear error,
whichever front door delivers it (REST proxy 1.0, HTTP API 2.0, function URL)."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.inference.decode import numbers_only
from tests.support.inference import FORMATS, Format, assert_error, call, event_with

pytestmark = pytest.mark.xdist_group("inference")

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=40,
)
header_names = st.sampled_from(
    ["Content-Type", "content-type", "Accept", "x-api-key", "Content-Length", "X-Custom"]
) | st.text(min_size=1, max_size=20)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]) | st.text(
    min_size=1, max_size=8
)
paths = st.sampled_from(["/predict", "/model", "/health", "/openapi.json", "/", "/predict/"]) | (
    st.text(max_size=30).map(lambda text: "/" + text)
)
content_types = st.sampled_from(
    ["application/json", "text/csv", "text/plain", "application/json; charset=utf-8", ""]
) | st.text(max_size=30)


@pytest.fixture(scope="module")
def runtimes(train_artifact: Callable[..., Path]) -> dict[str, Any]:
    """Inference functions: the mixed numeric/categorical churn model and the all-numeric MLP."""
    from functions.inference.app import InferenceFunction
    from functions.inference.runtime import Settings

    return {
        name: InferenceFunction(Settings(model_uri=str(train_artifact(dataset, model=model))))
        for name, dataset, model in (
            ("churn", "customer_churn", "logistic_regression"),
            ("numeric", "breast_cancer", "mlp"),
        )
    }


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> Format:
    """The front door whose event format carries each generated request."""
    format_: Format = request.param
    return format_


@pytest.fixture
def handler(runtimes: dict[str, Any]) -> Any:
    """The function serving the churn model."""
    return runtimes["churn"]


@pytest.fixture
def numeric_handler(runtimes: dict[str, Any]) -> Any:
    """The function serving the all-numeric int8 MLP (the numbers-only fast path)."""
    return runtimes["numeric"]


def _check(handler: Any, event: dict[str, Any]) -> tuple[int, Any]:
    status, headers, body = call(handler, event)
    assert 200 <= status < 500, body
    assert headers["content-type"] == "application/json"
    if status >= 400:
        assert_error(body)
    return status, body


@SETTINGS
@given(
    body=st.none()
    | st.text(max_size=200)
    | st.binary(max_size=200).map(lambda raw: base64.b64encode(raw).decode()),
    base64_flag=st.booleans(),
    headers=st.none() | st.dictionaries(header_names, st.text(max_size=40), max_size=6),
    method=methods,
    path=paths,
)
def test_arbitrary_requests_never_fail_on_our_side(
    handler: Any,
    fmt: Format,
    body: str | None,
    base64_flag: bool,
    headers: dict[str, str] | None,
    method: str,
    path: str,
) -> None:
    event = event_with(
        body=body,
        isBase64Encoded=base64_flag,
        headers=headers,
        multiValueHeaders={k: [v] for k, v in headers.items()} if headers else None,
        httpMethod=method,
        path=path,
        fmt=fmt,
    )
    _check(handler, event)


@SETTINGS
@given(instances=json_values, content_type=content_types)
def test_arbitrary_json_bodies_get_predictions_or_a_4xx(
    handler: Any, fmt: Format, instances: Any, content_type: str
) -> None:
    headers = {"Content-Type": content_type}
    event = event_with(
        body=json.dumps({"instances": instances}),
        headers=headers,
        multiValueHeaders={"Content-Type": [content_type]},
        fmt=fmt,
    )
    status, body = _check(handler, event)
    if status == 200:
        assert len(body["predictions"]) == len(body["probabilities"]) == len(instances)


numbers = st.none() | st.floats(min_value=-1e30, max_value=1e30) | st.integers(-(10**9), 10**9)
categories = (
    st.none() | st.sampled_from(["basic", "premium", "standard", "gold", ""]) | st.text(max_size=8)
)
churn_rows = st.tuples(numbers, numbers, categories, categories, numbers, categories, numbers)


@SETTINGS
@given(rows=st.lists(churn_rows, min_size=1, max_size=30), as_objects=st.booleans())
def test_valid_rows_always_predict(
    handler: Any, fmt: Format, rows: list[tuple[Any, ...]], as_objects: bool
) -> None:
    names = [spec.name for spec in handler.runtime.model.features]
    instances: list[Any] = (
        [dict(zip(names, row, strict=True)) for row in rows]
        if as_objects
        else [list(r) for r in rows]
    )
    event = event_with(body=json.dumps({"instances": instances}), fmt=fmt)
    status, body = _check(handler, event)
    assert status == 200, body
    assert len(body["predictions"]) == len(rows)
    assert set(body["predictions"]) <= set(body["classes"])


def _leaves_are_numbers(value: Any) -> bool:
    if isinstance(value, list):
        return all(_leaves_are_numbers(item) for item in value)
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


@settings(max_examples=400, deadline=None)
@given(instances=json_values)
def test_numbers_only_is_sound(instances: Any) -> None:
    raw = orjson.dumps({"instances": instances})
    if numbers_only(raw):
        assert _leaves_are_numbers(instances)
    if _leaves_are_numbers(instances):
        assert numbers_only(raw)


@SETTINGS
@given(
    body=st.text(alphabet=st.sampled_from(list('0123456789.,-+eE \n"abcx')), max_size=120)
    | st.text(max_size=60)
)
def test_arbitrary_csv_bodies_get_predictions_or_a_4xx(
    handler: Any, fmt: Format, body: str
) -> None:
    event = event_with(
        body=body,
        headers={"Content-Type": "text/csv"},
        multiValueHeaders={"Content-Type": ["text/csv"]},
        fmt=fmt,
    )
    _check(handler, event)


numeric_json = st.recursive(
    st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70),
    lambda children: st.lists(children, max_size=32),
    max_leaves=80,
)


valid_numeric_rows = st.lists(
    st.lists(st.none() | st.floats(-1e6, 1e6) | st.integers(-1000, 1000), min_size=30, max_size=30),
    min_size=1,
    max_size=5,
)


@SETTINGS
@given(instances=numeric_json | valid_numeric_rows)
def test_numbers_only_bodies_on_an_all_numeric_model(
    numeric_handler: Any, fmt: Format, instances: Any
) -> None:
    event = event_with(body=json.dumps({"instances": instances}), fmt=fmt)
    status, body = _check(numeric_handler, event)
    well_formed = (
        isinstance(instances, list)
        and 0 < len(instances) <= 1000
        and all(
            isinstance(row, list)
            and len(row) == 30
            and all(v is None or (not isinstance(v, list) and abs(v) <= 3.4e38) for v in row)
            for row in instances
        )
    )
    assert (status == 200) == well_formed, body
    if status == 200:
        assert len(body["predictions"]) == len(instances)


def _npy(array: Any) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=True)
    return buffer.getvalue()


def _valid_npy() -> bytes:
    import numpy as np

    return _npy(np.linspace(-5, 5, 90).reshape(3, 30))


def _filled(shape: tuple[int, ...], dtype: str, fill: float) -> bytes:
    import numpy as np

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN or 2**40 into an int8: garbage is the point
        return _npy(np.full(shape, fill).astype(dtype))


def _mutated(raw: bytes, position: int, replacement: bytes, cut: int) -> bytes:
    """``raw`` with bytes spliced in at ``position`` (header or data) and maybe cut short."""
    position %= len(raw) + 1
    mutated = raw[:position] + replacement + raw[position + len(replacement) :]
    return mutated[: len(mutated) - cut]


npy_bodies = (
    st.binary(max_size=300)
    | st.binary(max_size=200).map(lambda tail: b"\x93NUMPY\x01\x00" + tail)
    | st.builds(
        _mutated,
        st.just(_valid_npy()),
        st.integers(0, 800),
        st.binary(min_size=1, max_size=12),
        st.integers(0, 3),
    )
    | st.builds(
        _filled,
        st.lists(st.integers(0, 31), min_size=0, max_size=3).map(tuple),
        st.sampled_from(["f2", "f4", ">f4", "f8", "i1", "u8", "i8", "c8", "?", "O", "S3", "U2"]),
        st.floats() | st.integers(-(2**40), 2**40),
    )
)


@SETTINGS
@given(raw=npy_bodies, encoded=st.booleans(), numeric=st.booleans())
def test_arbitrary_npy_bodies_get_predictions_or_a_4xx(
    runtimes: dict[str, Any], fmt: Format, raw: bytes, encoded: bool, numeric: bool
) -> None:
    function = runtimes["numeric" if numeric else "churn"]
    event = event_with(
        body=base64.b64encode(raw).decode() if encoded else raw.decode("latin-1"),
        isBase64Encoded=encoded,
        headers={"Content-Type": "application/x-npy"},
        multiValueHeaders={"Content-Type": ["application/x-npy"]},
        fmt=fmt,
    )
    status, body = _check(function, event)
    if status == 200:
        assert numeric and encoded
        assert len(body["predictions"]) >= 1
