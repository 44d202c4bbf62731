"""The inference handler, driven by REST API proxy events from tests/events/inference_*.json,
and by the same requests as the HTTP API (payload 2.0) and a function URL deliver them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.support.inference import (
    FORMATS,
    FakeContext,
    Format,
    as_format,
    assert_error,
    call,
    event_with,
    load_event,
)
from tests.support.paths import EVENTS

pytestmark = pytest.mark.xdist_group("inference")

UseModel = Callable[..., Any]  # -> functions.inference.app.InferenceFunction


@pytest.fixture(scope="module")
def artifacts(train_artifact: Callable[..., Path]) -> dict[str, Path]:
    """An int8 MLP (numeric), a mixed numeric/categorical model and a regression model."""
    return {
        "breast_cancer": train_artifact("breast_cancer", model="mlp"),
        "churn": train_artifact("customer_churn", model="logistic_regression"),
        "diabetes": train_artifact("diabetes", model="ridge"),
    }


@pytest.fixture(scope="module")
def use_model(artifacts: dict[str, Path]) -> UseModel:
    """The inference function serving one of the artifacts (one function per settings)."""
    from functions.inference.app import InferenceFunction
    from functions.inference.runtime import Settings

    functions: dict[tuple[Any, ...], Any] = {}

    def use(name: str, **settings: Any) -> Any:
        key = (name, *sorted(settings.items()))
        if key not in functions:
            functions[key] = InferenceFunction(Settings(model_uri=str(artifacts[name]), **settings))
        return functions[key]

    return use


# event fixture -> (model, extra settings, status, error code or None)
CASES: dict[str, tuple[str, dict[str, Any], int, str | None]] = {
    "predict_list": ("breast_cancer", {}, 200, None),
    "predict_objects": ("breast_cancer", {}, 200, None),
    "predict_mixed_forms": ("breast_cancer", {}, 200, None),
    "predict_with_nulls": ("breast_cancer", {}, 200, None),
    "predict_csv": ("breast_cancer", {}, 200, None),
    "predict_csv_header": ("breast_cancer", {}, 200, None),
    "predict_base64": ("breast_cancer", {}, 200, None),
    "predict_charset": ("breast_cancer", {}, 200, None),
    "predict_npy": ("breast_cancer", {}, 200, None),
    "get_model": ("breast_cancer", {}, 200, None),
    "get_health": ("breast_cancer", {}, 200, None),
    "get_openapi": ("breast_cancer", {}, 200, None),
    "invalid_json": ("breast_cancer", {}, 400, "invalid_json"),
    "nan_literal": ("breast_cancer", {}, 400, "invalid_json"),
    "infinity_literal": ("breast_cancer", {}, 400, "invalid_json"),
    "number_overflows_double": ("breast_cancer", {}, 400, "invalid_json"),
    "huge_number": ("breast_cancer", {}, 400, "invalid_instances"),
    "body_not_object": ("breast_cancer", {}, 400, "invalid_body"),
    "missing_instances": ("breast_cancer", {}, 400, "invalid_body"),
    "instances_not_list": ("breast_cancer", {}, 400, "invalid_body"),
    "empty_instances": ("breast_cancer", {}, 400, "invalid_body"),
    "empty_body": ("breast_cancer", {}, 400, "invalid_json"),
    "too_many_instances": ("breast_cancer", {"max_instances": 2}, 413, "too_many_instances"),
    "wrong_feature_count": ("breast_cancer", {}, 400, "invalid_instances"),
    "unknown_feature": ("breast_cancer", {}, 400, "invalid_instances"),
    "missing_feature": ("breast_cancer", {}, 400, "invalid_instances"),
    "string_for_number": ("breast_cancer", {}, 400, "invalid_instances"),
    "boolean_value": ("breast_cancer", {}, 400, "invalid_instances"),
    "nested_list": ("breast_cancer", {}, 400, "invalid_instances"),
    "instance_not_row": ("breast_cancer", {}, 400, "invalid_instances"),
    "body_too_large": ("breast_cancer", {"max_body_bytes": 100}, 413, "body_too_large"),
    "wrong_content_type": ("breast_cancer", {}, 415, "unsupported_media_type"),
    "unknown_route": ("breast_cancer", {}, 404, "not_found"),
    "wrong_method": ("breast_cancer", {}, 405, "method_not_allowed"),
    "put_model": ("breast_cancer", {}, 405, "method_not_allowed"),
    "invalid_base64": ("breast_cancer", {}, 400, "invalid_body"),
    "churn_mixed": ("churn", {}, 200, None),
    "churn_unseen_category": ("churn", {}, 200, None),
    "churn_null_category": ("churn", {}, 200, None),
    "churn_number_for_category": ("churn", {}, 400, "invalid_instances"),
    "churn_csv_missing": ("churn", {}, 200, None),
    "churn_csv_tokens": ("churn", {}, 200, None),
    "churn_json_tokens": ("churn", {}, 200, None),
    "churn_json_number_string": ("churn", {}, 400, "invalid_instances"),
    "csv_bom": ("breast_cancer", {}, 200, None),
    "csv_unterminated_quote": ("churn", {}, 400, "invalid_body"),
    "csv_number_with_underscore": ("churn", {}, 400, "invalid_instances"),
    "diabetes_regression": ("diabetes", {}, 200, None),
}


def test_every_event_fixture_has_a_case() -> None:
    names = {path.stem.removeprefix("inference_") for path in EVENTS.glob("inference_*.json")}
    assert names == set(CASES)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_event_fixture(name: str, fmt: Format, use_model: UseModel) -> None:
    model, settings, status, code = CASES[name]
    handler = use_model(model, **settings)
    got_status, headers, body = call(handler, as_format(load_event(name), fmt))
    assert got_status == status, body
    assert headers["content-type"] == "application/json"
    if code is None:
        assert "error" not in body
    else:
        assert_error(body, code)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_front_door_answers_alike(name: str, use_model: UseModel) -> None:
    """Same request, same answer, byte for byte, whichever front door delivered it; the
    responses differ only in how the headers are carried (payload 2.0 has no multiValue)."""
    model, settings, _, _ = CASES[name]
    handler = use_model(model, **settings)
    rest, http, url = (
        handler.lambda_handler(as_format(load_event(name), fmt), FakeContext()) for fmt in FORMATS
    )
    assert http == url
    assert (http["statusCode"], http["body"]) == (rest["statusCode"], rest["body"])
    assert {k: v[-1] for k, v in rest["multiValueHeaders"].items()} == http["headers"]


DOCUMENTED = {"http": "http_api_predict", "function_url": "function_url_predict"}


@pytest.mark.parametrize("fmt", ["http", "function_url"])
def test_documented_payload_2_events_predict(fmt: Format, use_model: UseModel) -> None:
    """The fixtures written from AWS's documented payload 2.0 examples, as they are."""
    from functions.inference.app import event_format

    event = json.loads((EVENTS / f"{DOCUMENTED[fmt]}.json").read_text())
    assert event_format(event) == fmt
    assert event_format(load_event("predict_list")) == "rest"
    status, _, body = call(use_model("breast_cancer"), event)
    assert status == 200 and len(body["predictions"]) == 1
    assert body == call(use_model("breast_cancer"), load_event("predict_list"))[2]


@pytest.mark.parametrize("fmt", ["http", "function_url"])
def test_converted_events_keep_the_documented_shape(fmt: Format) -> None:
    documented = json.loads((EVENTS / f"{DOCUMENTED[fmt]}.json").read_text())
    for name in CASES:
        event = as_format(load_event(name), fmt)
        assert set(event) - {"body"} == set(documented) - {"body"}, name
        assert set(event["requestContext"]) == set(documented["requestContext"]), name
        assert all(key == key.lower() for key in event["headers"]), name
        assert event["requestContext"]["http"]["path"] == event["rawPath"]


def _predict(handler: Any, event_name: str) -> dict[str, Any]:
    status, _, body = call(handler, load_event(event_name))
    assert status == 200, body
    return body


def test_classification_response_shape(use_model: UseModel) -> None:
    handler = use_model("breast_cancer")
    manifest = handler.runtime.model.public
    body = _predict(handler, "predict_objects")
    assert set(body) == {"model_version", "predictions", "probabilities", "classes"}
    assert body["model_version"] == manifest["model_version"]
    assert body["classes"] == manifest["classes"] == [0, 1]
    assert len(body["predictions"]) == len(body["probabilities"]) == 2
    for label, row in zip(body["predictions"], body["probabilities"], strict=True):
        assert sum(row) == pytest.approx(1.0, abs=1e-4)
        assert label == body["classes"][int(np.argmax(row))]


def test_list_object_csv_and_base64_forms_agree(use_model: UseModel) -> None:
    handler = use_model("breast_cancer")
    bodies = [
        _predict(handler, name)
        for name in ("predict_list", "predict_objects", "predict_csv", "predict_base64")
    ]
    first = bodies[0]["probabilities"][0]
    for body in bodies:
        assert body["probabilities"][0] == pytest.approx(first, abs=1e-6)
    mixed = _predict(handler, "predict_mixed_forms")["probabilities"]
    assert mixed[0] == pytest.approx(mixed[1], abs=1e-6)


def test_predictions_match_a_bare_session_run(use_model: UseModel) -> None:
    handler = use_model("breast_cancer")
    model = handler.runtime.model
    row = json.loads(load_event("predict_list")["body"])["instances"][0]
    feed = {
        spec.onnx_input: np.array([[value]], dtype=np.float32)
        for spec, value in zip(model.features, row, strict=True)
    }
    labels, probabilities = model.session.run(None, feed)
    body = _predict(handler, "predict_list")
    assert body["predictions"] == labels.tolist()
    assert body["probabilities"][0] == pytest.approx(probabilities[0].tolist(), abs=1e-6)


def test_unseen_and_missing_categories_are_predicted(use_model: UseModel) -> None:
    handler = use_model("churn")
    for name in ("churn_unseen_category", "churn_null_category", "churn_csv_missing"):
        body = _predict(handler, name)
        assert body["classes"] == ["no", "yes"]
        assert body["predictions"][0] in body["classes"]


def test_regression_has_no_probabilities(use_model: UseModel) -> None:
    body = _predict(use_model("diabetes"), "diabetes_regression")
    assert set(body) == {"model_version", "predictions"}
    assert all(isinstance(value, float) for value in body["predictions"])


def test_errors_name_the_instance_and_feature(use_model: UseModel) -> None:
    handler = use_model("breast_cancer")
    cases = {
        "string_for_number": (0, "mean radius", "expected a number"),
        "boolean_value": (0, "mean radius", "boolean"),
        "nested_list": (0, "mean radius", "a list"),
        "huge_number": (0, "mean radius", "out of range"),
        "unknown_feature": (0, "colour", "unknown feature"),
        "missing_feature": (0, "mean area", "missing feature"),
    }
    for name, (instance, feature, problem) in cases.items():
        _, _, body = call(handler, load_event(name))
        details = body["error"]["details"]
        assert any(
            d["instance"] == instance and d["feature"] == feature and problem in d["problem"]
            for d in details
        ), (name, details)
    _, _, body = call(handler, load_event("wrong_feature_count"))
    assert [d["instance"] for d in body["error"]["details"]] == [0, 1]
    _, _, body = call(use_model("churn"), load_event("churn_number_for_category"))
    assert body["error"]["details"] == [
        {"instance": 0, "feature": "plan", "problem": "expected a category (string), got a number"}
    ]


def test_null_for_a_non_nullable_feature_is_refused(use_model: UseModel) -> None:
    from functions.inference.errors import ApiError
    from functions.inference.feed import FeatureSpec, build_feed

    features = [FeatureSpec("a", "a", True, False), FeatureSpec("b", "b", True, True)]
    with pytest.raises(ApiError) as raised:
        build_feed([[None, None]], features, numbers_only=True)
    assert raised.value.details == [
        {
            "instance": 0,
            "feature": "a",
            "problem": "missing value (null), and the model does not impute this feature",
        }
    ]


def test_many_bad_rows_are_summarised(use_model: UseModel) -> None:
    handler = use_model("breast_cancer")
    event = event_with(body=json.dumps({"instances": [["x"] * 30] * 50}))
    status, _, body = call(handler, event)
    assert status == 400
    assert len(body["error"]["details"]) == 20
    assert "first 20 listed" in body["error"]["message"]


def test_model_health_and_openapi(use_model: UseModel) -> None:
    handler = use_model("churn")
    _, _, model = call(handler, load_event("get_model"))
    assert model["signature"]["features"][2]["name"] == "plan"
    assert model["serving"]["variant"] in {"fp32", "int8"}
    assert "metrics" in model and "classes" in model
    _, _, health = call(handler, load_event("get_health"))
    assert health == {"status": "ok", "model_version": model["model_version"]}
    _, _, document = call(handler, load_event("get_openapi"))
    assert document["openapi"].startswith("3.")
    request = document["components"]["schemas"]["PredictRequest"]
    assert request["properties"]["instances"]["maxItems"] == 1000
    positional, keyed = request["properties"]["instances"]["items"]["oneOf"]
    assert positional["prefixItems"][2]["type"] == ["string", "null"]
    assert keyed["required"] == [f["name"] for f in model["signature"]["features"]]
    number, missing_text = keyed["properties"]["tenure_months"]["anyOf"]
    assert number["type"] == ["number", "null"] and missing_text["type"] == "string"


def test_openapi_request_schema_accepts_what_the_api_accepts(use_model: UseModel) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    handler = use_model("churn")
    _, _, document = call(handler, load_event("get_openapi"))
    schema = document["components"]["schemas"]["PredictRequest"]
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(json.loads(load_event("churn_mixed")["body"]))
    assert not validator.is_valid(json.loads(load_event("churn_number_for_category")["body"]))
    # Missing tokens as JSON strings are accepted (200), other strings for numbers are not.
    assert validator.is_valid(json.loads(load_event("churn_json_tokens")["body"]))
    assert not validator.is_valid(json.loads(load_event("churn_json_number_string")["body"]))


def test_method_not_allowed_names_the_allowed_method(use_model: UseModel) -> None:
    _, headers, _ = call(use_model("breast_cancer"), load_event("wrong_method"))
    assert headers["allow"] == "POST"


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_internal_fault_is_a_500_with_request_id_and_no_internals(
    fmt: Format, use_model: UseModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = use_model("breast_cancer")

    def explode(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internal detail /opt/model")

    monkeypatch.setattr(handler.runtime.model, "run", explode)
    status, _, body = call(handler, as_format(load_event("predict_list"), fmt))
    assert status == 500
    assert_error(body, "internal_error")
    assert body["error"]["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert "secret" not in json.dumps(body)


def test_metrics_are_emitted_as_emf_with_the_model_version(
    use_model: UseModel, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    handler = use_model("breast_cancer")
    capsys.readouterr()
    call(handler, load_event("predict_objects"))
    call(handler, load_event("string_for_number"))
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(blobs) == 2
    ok, bad = blobs
    assert ok["Instances"] == [2.0] and ok["Latency"][0] > 0
    assert ok["model_version"] == handler.runtime.model.model_version
    assert ["model_version", "service"] in ok["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert bad["ClientErrors"] == [1.0]


# The bytes docs/deploy.md ("Per million predictions, by front door") counts for the one line
# a successful one-row request logs: the EMF line at the slowest latency a call can report
# (just under the 29 s ceiling of lambda.timeout_seconds).
EMF_LINE_BYTES = 326


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_one_row_request_logs_one_emf_line_within_the_costed_bytes(
    fmt: Format,
    use_model: UseModel,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functions.inference import observability

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    handler = use_model("breast_cancer")
    clock = iter([100.0, 100.0 + 28.9999994])  # perf_counter at start and end: 28999.999 ms
    monkeypatch.setattr(observability, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    capsys.readouterr()
    status, _, _ = call(handler, as_format(load_event("predict_list"), fmt))
    lines = capsys.readouterr().out.splitlines()
    assert status == 200
    (line,) = lines  # successes log at DEBUG: the EMF line is all a one-row call writes
    assert json.loads(line)["Latency"] == [28999.999]
    assert len(line.encode()) <= EMF_LINE_BYTES, (len(line.encode()), line)


@pytest.mark.parametrize("fmt", FORMATS)
def test_with_request_metrics_off_a_one_row_request_logs_nothing(
    fmt: Format, artifacts: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Behind http and function_url (``lambda.request_metrics=auto``) the function gets
    POWERTOOLS_METRICS_DISABLED=true: a successful call then costs no log bytes at all."""
    from functions.inference.app import InferenceFunction
    from functions.inference.observability import Telemetry
    from functions.inference.runtime import Settings

    env = {"POWERTOOLS_METRICS_DISABLED": "true"}
    handler = InferenceFunction(
        Settings(model_uri=str(artifacts["breast_cancer"])), Telemetry.from_env(env)
    )
    capsys.readouterr()
    status, _, _ = call(handler, as_format(load_event("predict_list"), fmt))
    assert status == 200
    assert capsys.readouterr().out == ""


def test_error_logs_are_structured_json_with_the_request_id(
    use_model: UseModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = use_model("breast_cancer")
    # A fresh execution environment: the handler appends the context's static keys
    # (function name, ARN, memory) on its first calls only, and an earlier test may have
    # invoked this function with another context.
    monkeypatch.setattr(handler.telemetry, "invocations", 0)
    # One Logger per service and process, its level set by whoever made it first: `onnxkit
    # serve` in this process makes it at WARNING (it logs requests itself), the function's
    # default is INFO.
    logger = handler.telemetry.logger
    previous_level = logger.log_level
    logger.setLevel(logging.INFO)
    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    try:
        call(handler, load_event("string_for_number"))
    finally:
        logger.setLevel(previous_level)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    (log,) = [r for r in records if r.get("message") == "request"]
    assert log["level"] == "INFO" and log["status"] == 400
    assert log["correlation_id"] == "req-string_for_number"
    assert log["function_request_id"] == "11111111-2222-3333-4444-555555555555"
    assert log["function_name"] == "onnxkit-inference-test"
    assert log["service"] == "onnxkit-inference"


def _large_bodies(rows: list[list[float]], names: list[str]) -> dict[str, tuple[str, str]]:
    """Bodies over SIMDJSON_MIN_BYTES: clean ones for the simdjson path, and ones it must
    leave to the careful path (name -> (content type, body))."""
    csv = "\n".join(",".join(repr(v) for v in row) for row in rows)
    bad_value: list[list[Any]] = [list(row) for row in rows]
    bad_value[7][3] = 1e39
    with_null: list[list[Any]] = [list(row) for row in rows]
    with_null[5][2] = None
    with_string: list[list[Any]] = [list(row) for row in rows]
    with_string[9][0] = "1.5"
    nested: list[list[Any]] = [list(row) for row in rows]
    nested[4][1] = [nested[4][1]]
    ragged = [list(row) for row in rows]
    ragged[3] = ragged[3][:-1]
    ints = [[int(v) for v in row] for row in rows]
    json_ = "application/json"
    return {
        "json": (json_, json.dumps({"instances": rows})),
        "json_compact": (json_, json.dumps({"instances": rows}, separators=(",", ":"))),
        "json_pretty": (json_, json.dumps({"instances": rows}, indent=2)),
        "json_ints": (json_, json.dumps({"instances": ints})),
        "csv": ("text/csv", csv),
        "csv_header_crlf": ("text/csv", ",".join(names) + "\r\n" + csv.replace("\n", "\r\n")),
        "out_of_range": (json_, json.dumps({"instances": bad_value})),
        "null": (json_, json.dumps({"instances": with_null})),
        "string": (json_, json.dumps({"instances": with_string})),
        "nested": (json_, json.dumps({"instances": nested})),
        "ragged": (json_, json.dumps({"instances": ragged})),
        "csv_out_of_range": ("text/csv", csv.replace(",", ",1e39,", 1)),
        "csv_empty_field": ("text/csv", csv.replace(",", ",,", 1)),
    }


def test_large_bodies_answer_exactly_as_the_careful_path(
    use_model: UseModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.inference import decode

    handler = use_model("breast_cancer")
    names = [spec.name for spec in handler.runtime.model.features]
    data = [json.loads(load_event("predict_list")["body"])["instances"][0]]
    rows = [[round(v * (1 + i / 997), 6) for v in data[0]] for i in range(300)]
    bodies = _large_bodies(rows, names)
    fast_feed, fast = decode._fast_feed, []

    def spy(*args: Any) -> Any:
        feed = fast_feed(*args)
        fast.append(feed is not None)
        return feed

    monkeypatch.setattr(decode, "_fast_feed", spy)
    outcomes, took_fast_path = {}, {}
    for name, (media, body) in bodies.items():
        assert len(body) >= decode.SIMDJSON_MIN_BYTES, name
        event = event_with(body=body, headers={"Content-Type": media}, multiValueHeaders={})
        outcomes[name] = call(handler, event)
        took_fast_path[name] = fast.pop()
    clean = {"json", "json_compact", "json_pretty", "json_ints", "csv", "csv_header_crlf"}
    assert {name for name, taken in took_fast_path.items() if taken} == clean
    monkeypatch.setattr(decode, "SIMDJSON_MIN_BYTES", 10**9)  # the orjson/csv path only
    for name, (media, body) in bodies.items():
        event = event_with(body=body, headers={"Content-Type": media}, multiValueHeaders={})
        assert call(handler, event) == outcomes[name], name
    status, _, ok = outcomes["json"]
    assert status == 200 and len(ok["predictions"]) == 300
    for name in ("json_compact", "json_pretty", "csv", "csv_header_crlf"):
        assert outcomes[name] == outcomes["json"], name
    assert outcomes["out_of_range"][0] == 400
    assert outcomes["out_of_range"][2]["error"]["details"][0]["instance"] == 7
    assert outcomes["string"][0] == outcomes["nested"][0] == outcomes["ragged"][0] == 400


def test_large_bodies_over_the_instance_limit_are_a_413(use_model: UseModel) -> None:
    handler = use_model("breast_cancer", max_instances=2)
    row = json.loads(load_event("predict_list")["body"])["instances"][0]
    for media, body in (
        ("application/json", json.dumps({"instances": [row] * 200})),
        ("text/csv", "\n".join(",".join(map(str, row)) for _ in range(200))),
    ):
        event = event_with(body=body, headers={"Content-Type": media}, multiValueHeaders={})
        status, _, error = call(handler, event)
        assert status == 413, media
        assert error["error"]["message"] == "200 instances; at most 2 per call"


def test_one_row_requests_in_turn_and_in_threads_match_session_run(use_model: UseModel) -> None:
    # One-row feeds reuse a per-thread buffer bound once to an IOBinding: every request must
    # still see its own values, on every thread.
    import threading

    import orjson

    NUMPY = orjson.OPT_SERIALIZE_NUMPY
    handler = use_model("breast_cancer")
    model = handler.runtime.model
    base = json.loads(load_event("predict_list")["body"])["instances"][0]
    rows = [[v * (1 + 0.37 * i) for v in base] for i in range(12)]

    def expected(row: list[float]) -> tuple[list[Any], list[Any]]:
        feed = {
            spec.onnx_input: np.array([[value]], dtype=np.float32)
            for spec, value in zip(model.features, row, strict=True)
        }
        labels, probabilities = model.session.run(None, feed)
        # float32 written as the API writes it (shortest float32 repr)
        return labels.tolist(), orjson.loads(orjson.dumps(probabilities, option=NUMPY))

    def answer(row: list[float]) -> tuple[list[Any], list[Any]]:
        status, _, body = call(handler, event_with(body=json.dumps({"instances": [row]})))
        assert status == 200
        return body["predictions"], body["probabilities"]

    wanted = [expected(row) for row in rows]
    assert len({str(p) for _, p in wanted}) > 1  # the rows really differ
    assert [answer(row) for row in rows] == wanted
    results: dict[int, list[Any]] = {}

    def worker(index: int) -> None:
        results[index] = [answer(row) for row in rows[index::3]]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(3):
        assert results[index] == wanted[index::3]


# --- application/x-npy bodies (binary: API Gateway passes them base64-encoded) ---------------


def _npy_bytes(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npy_event(raw: bytes, encoded: bool = True) -> dict[str, Any]:
    import base64

    body = base64.b64encode(raw).decode() if encoded else raw.decode("latin-1")
    return event_with(
        body=body,
        isBase64Encoded=encoded,
        headers={"Content-Type": "application/x-npy"},
        multiValueHeaders={"Content-Type": ["application/x-npy"]},
    )


def _npy_rows(n: int) -> list[list[float]]:
    row = json.loads(load_event("predict_list")["body"])["instances"][0]
    return [[round(v * (1 + i / 997), 6) for v in row] for i in range(n)]


def test_npy_fixture_is_a_base64_float32_npy_body(use_model: UseModel) -> None:
    import base64

    event = load_event("predict_npy")
    assert event["isBase64Encoded"] is True
    array = np.load(io.BytesIO(base64.b64decode(event["body"])), allow_pickle=False)
    assert array.dtype == np.float32 and array.ndim == 2
    json_event = event_with(body=json.dumps({"instances": array.tolist()}))
    assert call(use_model("breast_cancer"), event) == call(use_model("breast_cancer"), json_event)


@pytest.mark.parametrize("dtype", ["float32", "float64", ">f8", "int64", "float16"])
@pytest.mark.parametrize("n_rows", [1, 300])
def test_npy_bodies_predict_exactly_as_json(use_model: UseModel, dtype: str, n_rows: int) -> None:
    handler = use_model("breast_cancer")
    array = np.array(_npy_rows(n_rows)).astype(dtype)
    # The JSON body carries the very numbers the .npy holds (float32 rounding included).
    json_event = event_with(body=json.dumps({"instances": array.astype(np.float64).tolist()}))
    expected = call(handler, json_event)
    assert expected[0] == 200
    assert call(handler, _npy_event(_npy_bytes(array))) == expected
    fortran = _npy_bytes(np.asfortranarray(array))
    assert call(handler, _npy_event(fortran)) == expected


def test_npy_nan_is_a_missing_value(use_model: UseModel) -> None:
    handler = use_model("breast_cancer")
    rows: list[list[Any]] = _npy_rows(3)
    rows[1][4] = None
    array = np.array(rows, dtype=np.float64)  # None -> NaN
    assert np.isnan(array[1, 4])
    expected = call(handler, event_with(body=json.dumps({"instances": rows})))
    assert expected[0] == 200
    assert call(handler, _npy_event(_npy_bytes(array))) == expected
    assert call(handler, _npy_event(_npy_bytes(array.astype(np.float32)))) == expected


def test_npy_infinite_and_out_of_range_values_are_named(use_model: UseModel) -> None:
    handler = use_model("breast_cancer")
    names = [spec.name for spec in handler.runtime.model.features]
    array = np.array(_npy_rows(10), dtype=np.float64)
    array[2, 1] = np.inf
    array[7, 3] = -1e39
    array[8, 0] = np.nan  # missing: fine for this model
    status, _, body = call(handler, _npy_event(_npy_bytes(array)))
    assert status == 400, body
    assert_error(body, "invalid_instances")
    assert body["error"]["details"] == [
        {"instance": 2, "feature": names[1], "problem": "number must be finite"},
        {"instance": 7, "feature": names[3], "problem": "number out of range (|x| <= 3.403e+38)"},
    ]
    float32 = np.array(_npy_rows(4), dtype=np.float32)
    float32[3, 5] = -np.inf
    status, _, body = call(handler, _npy_event(_npy_bytes(float32)))
    assert status == 400
    assert body["error"]["details"] == [
        {"instance": 3, "feature": names[5], "problem": "number must be finite"}
    ]


def test_npy_limits_are_the_same_as_json(use_model: UseModel) -> None:
    handler = use_model("breast_cancer", max_instances=2)
    status, _, body = call(handler, _npy_event(_npy_bytes(np.array(_npy_rows(200)))))
    assert status == 413
    assert body["error"] == {
        "code": "too_many_instances",
        "message": "200 instances; at most 2 per call",
    }
    handler = use_model("breast_cancer", max_body_bytes=1000)
    status, _, body = call(handler, _npy_event(_npy_bytes(np.array(_npy_rows(10)))))
    assert status == 413
    assert_error(body, "body_too_large")
    handler = use_model("breast_cancer")
    empty = np.zeros((0, len(handler.runtime.model.features)))
    status, _, body = call(handler, _npy_event(_npy_bytes(empty)))
    assert status == 400
    assert_error(body, "invalid_body")


def _bad_npy_bodies(n_features: int) -> dict[str, bytes]:
    good = _npy_bytes(np.zeros((3, n_features)))
    header_end = good.index(b"\n") + 1
    return {
        "wrong_columns": _npy_bytes(np.zeros((3, n_features - 1))),
        "one_dimensional": _npy_bytes(np.zeros(n_features)),
        "three_dimensional": _npy_bytes(np.zeros((2, 3, n_features))),
        "object_dtype": _npy_bytes(np.array([[1.5] * n_features], dtype=object)),
        "structured": _npy_bytes(np.zeros(3, dtype=[("a", "f8"), ("b", "f8")])),
        "complex": _npy_bytes(np.zeros((3, n_features), dtype=complex)),
        "bool": _npy_bytes(np.zeros((3, n_features), dtype=bool)),
        "strings": _npy_bytes(np.full((3, n_features), "1.5")),
        "truncated": good[:-5],
        "padded": good + b"\0" * 8,
        "header_only": good[:header_end],
        "not_npy": b"this is not an npy file at all",
        "empty": b"",
        "code_in_header": good.replace(b"'<f8'", b"f(1)!", 1),  # a literal, never evaluated
        "lying_shape": good.replace(b"(3, ", b"(99999999999999999999, ", 1),
        "negative_shape": good.replace(b"(3, ", b"(-3, ", 1),
        "version_9": good[:6] + b"\x09\x00" + good[8:],
    }


def test_npy_malformed_bodies_are_a_clear_400(use_model: UseModel) -> None:
    handler = use_model("breast_cancer")
    n_features = len(handler.runtime.model.features)
    for name, raw in _bad_npy_bodies(n_features).items():
        status, _, body = call(handler, _npy_event(raw))
        assert status == 400, (name, body)
        assert_error(body, "invalid_npy")
    status, _, body = call(handler, _npy_event(_bad_npy_bodies(n_features)["object_dtype"]))
    assert "object" in body["error"]["message"]
    status, _, body = call(handler, _npy_event(_bad_npy_bodies(n_features)["wrong_columns"]))
    assert body["error"]["message"].startswith(f"the .npy array has {n_features - 1} columns")


def test_npy_sent_without_base64_says_what_to_configure(use_model: UseModel) -> None:
    handler = use_model("breast_cancer")
    raw = _npy_bytes(np.zeros((3, len(handler.runtime.model.features))) + 0.5)
    status, _, body = call(handler, _npy_event(raw, encoded=False))
    assert status == 400
    assert_error(body, "invalid_npy")
    assert "binary media types" in body["error"]["message"]


def test_npy_needs_an_all_numeric_model(use_model: UseModel) -> None:
    handler = use_model("churn")
    n_features = len(handler.runtime.model.features)
    status, _, body = call(handler, _npy_event(_npy_bytes(np.zeros((2, n_features)))))
    assert status == 415
    assert_error(body, "unsupported_media_type")
    assert "all-numeric model" in body["error"]["message"]


def test_openapi_documents_npy_for_all_numeric_models_only(use_model: UseModel) -> None:
    _, _, document = call(use_model("breast_cancer"), load_event("get_openapi"))
    content = document["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert content["application/x-npy"]["schema"] == {"type": "string", "format": "binary"}
    assert "NaN is a missing value" in content["application/x-npy"]["description"]
    _, _, document = call(use_model("churn"), load_event("get_openapi"))
    content = document["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "text/csv"}


# --- the contract's missing-value rule, through every body format ---------------------------
def _body_of(handler: Any, media: str, body: str) -> dict[str, Any]:
    event = event_with(body=body, headers={"Content-Type": media}, multiValueHeaders={})
    status, _, answer = call(handler, event)
    assert status == 200, answer
    return answer


def test_missing_tokens_score_exactly_as_missing_values_in_every_body_format(
    use_model: UseModel,
) -> None:
    from onnxkit.contract.values import DEFAULT_MISSING_TOKENS

    handler = use_model("churn")
    assert handler.runtime.model.public["signature"].get("missing_values") in (
        None,
        list(DEFAULT_MISSING_TOKENS),
    )
    # The fixtures: tokens where churn_csv_missing has empty fields (csv) and nulls (json).
    tokens = _predict(handler, "churn_csv_tokens")
    assert tokens == _body_of(handler, "text/csv", "25,,,east,1,,55\n")
    nulls = _body_of(
        handler,
        "application/json",
        json.dumps(
            {
                "instances": [
                    [25, None, None, "east", 1, None, 55],
                    [25, None, None, "east", None, None, 55],
                ]
            }
        ),
    )
    assert _predict(handler, "churn_json_tokens") == nulls
    assert nulls["probabilities"][0] == tokens["probabilities"][0]
    for token in DEFAULT_MISSING_TOKENS:
        row = [25, token, token, "east", 1, token, 55]
        objects = dict(zip([s.name for s in handler.runtime.model.features], row, strict=True))
        csv_row = ",".join(f'"{v}"' if isinstance(v, str) else str(v) for v in row)
        assert (
            _body_of(handler, "text/csv", csv_row + "\n")["probabilities"]
            == tokens["probabilities"]
        )
        as_json = _body_of(handler, "application/json", json.dumps({"instances": [row, objects]}))
        assert as_json["probabilities"] == tokens["probabilities"] * 2, token


def test_missing_tokens_in_large_numeric_bodies_and_npy_nan(use_model: UseModel) -> None:
    handler = use_model("breast_cancer")
    names = [spec.name for spec in handler.runtime.model.features]
    first = json.loads(load_event("predict_list")["body"])["instances"][0]
    rows: list[list[Any]] = [[round(v * (1 + i / 997), 6) for v in first] for i in range(200)]
    with_null = [list(row) for row in rows]
    with_null[7][3] = None
    with_token = [list(row) for row in rows]
    with_token[7][3] = "NA"
    objects = [dict(zip(names, row, strict=True)) for row in with_token]
    csv_rows = [",".join("" if v is None else repr(v) for v in row) for row in with_null]
    csv_tokens = list(csv_rows)
    csv_tokens[7] = ",".join("NA" if v is None else repr(v) for v in with_null[7])
    expected = _body_of(handler, "application/json", json.dumps({"instances": with_null}))
    assert len(json.dumps({"instances": with_token})) > 4096  # past the simdjson threshold
    for media, body in [
        ("application/json", json.dumps({"instances": with_token})),
        ("application/json", json.dumps({"instances": objects})),
        ("text/csv", "\n".join(csv_tokens)),
        ("text/csv", "\ufeff" + ",".join(names) + "\n" + "\n".join(csv_tokens)),
    ]:
        assert _body_of(handler, media, body) == expected, (media, body[:80])
    matrix = np.array([[np.nan if v is None else v for v in row] for row in with_null])
    status, _, npy = call(handler, _npy_event(_npy_bytes(matrix)))
    assert status == 200 and npy == expected


def test_csv_bom_is_dropped_as_csv_readers_do(use_model: UseModel) -> None:
    handler = use_model("breast_cancer")
    plain = _predict(handler, "predict_csv_header")
    assert _predict(handler, "csv_bom") == plain
    body = load_event("predict_csv")["body"]
    assert _body_of(handler, "text/csv", "\ufeff" + body) == _predict(handler, "predict_csv")


def test_csv_numbers_have_the_json_paths_grammar(use_model: UseModel) -> None:
    handler = use_model("churn")
    _, _, body = call(handler, load_event("csv_number_with_underscore"))
    assert body["error"]["details"] == [
        {"instance": 0, "feature": "monthly_charges", "problem": "expected a number, got '1_000'"}
    ]
    for field in ("١٢", "inf", "0x10", "1e400"):
        event = event_with("churn_csv_missing", body=f"25,{field},standard,east,1,bank,55\n")
        status, _, body = call(handler, event)
        assert status == 400 and body["error"]["details"][0]["feature"] == "monthly_charges", field
    _, _, body = call(handler, load_event("csv_unterminated_quote"))
    assert "unexpected end of data" in body["error"]["message"]


@pytest.fixture(scope="module")
def region_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model whose region column has a real category ``NA`` (North America), trained with
    ``missing_values=""``; and a copy whose manifest says the default tokens (written here)."""
    from onnxkit.local.training import arguments
    from training_jobs import train

    root = tmp_path_factory.mktemp("region-model")
    rng = np.random.default_rng(7)
    regions = rng.choice(["NA", "EU", "APAC"], size=400)
    x = rng.normal(size=400).round(3)
    label = np.where((regions == "NA") ^ (x > 1.5), "yes", "no")
    lines = ["x,region,label"] + [f"{a},{b},{c}" for a, b, c in zip(x, regions, label, strict=True)]
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    argv = arguments(
        {
            "target": "label",
            "model": "logistic_regression",
            "missing_values": "",
            "train": str(root / "train.csv"),
            "model-dir": str(root / "model"),
            "output-dir": str(root / "output"),
            "latency-runs": "0",
        }
    )
    assert train.main(argv) == 0, (root / "output" / "failure").read_text()
    trained = json.loads((root / "model" / "manifest.json").read_text())
    assert trained["signature"]["missing_values"] == []
    default = root / "default-tokens"
    default.mkdir()
    (default / "model.onnx").write_bytes((root / "model" / "model.onnx").read_bytes())
    del trained["signature"]["missing_values"]  # a manifest before 1.1: the default tokens
    trained["schema_version"] = "1.0"
    (default / "manifest.json").write_text(json.dumps(trained))
    return {"empty": root / "model", "default": default}


def test_without_missing_tokens_a_category_named_na_is_scored_as_itself(
    region_model: dict[str, Path],
) -> None:
    from functions.inference.app import InferenceFunction
    from functions.inference.runtime import Settings

    def scores(model: str, media: str, body: str) -> list[list[float]]:
        function = InferenceFunction(Settings(model_uri=str(region_model[model])))
        return _body_of(function, media, body)["probabilities"]

    json_rows = json.dumps({"instances": [[0.1, "NA"], {"x": 0.1, "region": "NA"}, [0.1, None]]})
    empty = scores("empty", "application/json", json_rows)
    assert empty[0] == empty[1] != empty[2]  # NA is the learned category, not missing
    assert empty[0][1] > 0.8 > empty[2][1]  # and the model learned that NA means yes
    assert scores("empty", "text/csv", "0.1,NA\n0.1,\n") == [empty[0], empty[2]]
    # The same graph with the default tokens reads NA as missing, as its manifest says.
    default = scores("default", "application/json", json_rows)
    assert default[0] == default[1] == default[2] == empty[2]
    assert scores("default", "text/csv", "0.1,NA\n") == [empty[2]]


def test_openapi_csv_body_excludes_the_empty_body_the_api_refuses(use_model: UseModel) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    handler = use_model("churn")
    _, _, document = call(handler, load_event("get_openapi"))
    content = document["paths"]["/predict"]["post"]["requestBody"]["content"]["text/csv"]
    validator = jsonschema.Draft202012Validator(content["schema"])
    status, _, _ = call(handler, event_with("churn_csv_missing", body=""))
    assert status == 400 and not validator.is_valid("")
    assert "missing token" in content["description"] and "byte-order mark" in content["description"]
