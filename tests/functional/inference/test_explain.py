"""``POST /explain`` over models trained by the real training job, for every estimator the kit
offers: additivity, exactness against brute-force Shapley values, determinism, batch
independence, /predict's refusals, the class parameter, and artifacts without a background."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from onnxkit.contract.layout import BACKGROUND_FILE, MANIFEST_FILE
from onnxkit.datasets import bundled
from tests.support.inference import FORMATS, Format, assert_error, call, event_with, load_event

pytestmark = pytest.mark.xdist_group("inference")

# Every estimator per task, small where size only costs time.
SMALL = {
    "random_forest": {"n_estimators": 30},
    "hist_gradient_boosting": {"max_iter": 30},
    "mlp": {},
    "logistic_regression": {},
    "ridge": {},
}
MODELS = [
    *(("breast_cancer", m) for m in ("logistic_regression", "mlp", "random_forest")),
    ("breast_cancer", "hist_gradient_boosting"),
    *(("diabetes", m) for m in ("ridge", "mlp", "random_forest", "hist_gradient_boosting")),
    *(("customer_churn", m) for m in ("logistic_regression", "mlp", "random_forest")),
    ("customer_churn", "hist_gradient_boosting"),
]
EXPLAIN = "/explain"

Functions = Callable[..., Any]  # (dataset, estimator, **settings) -> InferenceFunction


@pytest.fixture(scope="module")
def trained(train_artifact: Callable[..., Path]) -> Callable[[str, str], Path]:
    def make(dataset: str, estimator: str) -> Path:
        return train_artifact(dataset, model=estimator, **SMALL[estimator])

    return make


@pytest.fixture(scope="module")
def function(trained: Callable[[str, str], Path]) -> Functions:
    """One inference function per model and settings."""
    from functions.inference.app import InferenceFunction
    from functions.inference.runtime import Settings

    made: dict[tuple[Any, ...], Any] = {}

    def use(dataset: str, estimator: str, **settings: Any) -> Any:
        key = (dataset, estimator, *sorted(settings.items()))
        if key not in made:
            uri = str(trained(dataset, estimator))
            made[key] = InferenceFunction(Settings(model_uri=uri, **settings))
        return made[key]

    return use


def dataset_rows(dataset: str, count: int, skip: int = 0) -> list[dict[str, Any]]:
    """Rows of the bundled CSV as JSON instances (numbers, categories, null when empty)."""
    data = bundled(dataset)
    rows = []
    with data.path.open(newline="") as handle:
        for record in islice(csv.DictReader(handle), skip, skip + count):
            record.pop(data.target)
            rows.append({k: _value(v) for k, v in record.items()})
    return rows


def _value(text: str) -> Any:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def request(
    handler: Any,
    instances: list[Any],
    path: str = EXPLAIN,
    fmt: Format = "rest",
    query: dict[str, str] | None = None,
) -> tuple[int, Any]:
    event = event_with("predict_objects", path=path, body=json.dumps({"instances": instances}))
    event = event_with("predict_objects", fmt, **event) if fmt != "rest" else event
    event["queryStringParameters"] = query
    status, _, body = call(handler, event)
    return status, body


def explain(handler: Any, instances: list[Any], **query: str) -> Any:
    status, body = request(handler, instances, query=query or None)
    assert status == 200, body
    return body


@pytest.mark.parametrize(("dataset", "estimator"), MODELS)
def test_contributions_add_up_to_the_served_output(
    function: Functions, dataset: str, estimator: str
) -> None:
    """base + sum(contributions) == output, and output is what /predict answers for the row."""
    from functions.inference.explain import TOLERANCE

    handler = function(dataset, estimator)
    rows = dataset_rows(dataset, 3, skip=40)
    body = explain(handler, rows)
    names = [spec.name for spec in handler.runtime.model.features]
    assert body["features"] == names
    expected = {"ridge": "exact_additive", "customer_churn": "exact_shapley"}
    assert body["method"] == expected.get(estimator, expected.get(dataset, "kernel_shap"))
    for row, answer in zip(rows, body["explanations"], strict=True):
        assert list(answer["contributions"]) == names
        total = answer["base_value"] + sum(answer["contributions"].values())
        assert abs(total - answer["output"]) <= TOLERANCE * (1 + abs(answer["output"]))
        status, predicted = request(handler, [row], path="/predict")
        assert status == 200
        if "probabilities" in predicted:
            assert answer["class"] == predicted["predictions"][0]
            column = predicted["classes"].index(answer["class"])
            served = predicted["probabilities"][0][column]
        else:
            served = predicted["predictions"][0]
        assert answer["output"] == pytest.approx(served, rel=1e-6, abs=1e-7)
        # Something is explained: not every contribution is zero.
        assert max(abs(v) for v in answer["contributions"].values()) > 0


def _brute_force(handler: Any, row: dict[str, Any], column: int) -> tuple[np.ndarray, float]:
    """Shapley values of the row's interventional game over the artifact's background, from
    the formula over every coalition, with the session run directly (not the explainer)."""
    from math import factorial

    from onnxkit.contract.background import load_background

    model = handler.runtime.model
    background = load_background(handler.runtime.located.manifest_path.parent).rows
    names = [spec.name for spec in model.features]
    n = len(names)
    worth = np.zeros(1 << n)
    for coalition in range(1 << n):
        rows = [
            [row[name] if coalition >> j & 1 else b[j] for j, name in enumerate(names)]
            for b in background
        ]
        feed = {k: np.array(v) for k, v in model.feed(rows).items()}
        outputs = model.session.run(model.output_names, feed)
        values = outputs[-1].reshape(len(background), -1)[:, column]
        worth[coalition] = float(np.mean(values.astype(np.float64)))
    phi = np.zeros(n)
    for j in range(n):
        for coalition in range(1 << n):
            if coalition >> j & 1:
                continue
            size = bin(coalition).count("1")
            weight = factorial(size) * factorial(n - size - 1) / factorial(n)
            phi[j] += weight * (worth[coalition | 1 << j] - worth[coalition])
    return phi, worth[0]


@pytest.mark.parametrize(
    ("dataset", "estimator"),
    [
        ("customer_churn", "random_forest"),
        ("customer_churn", "mlp"),
        ("customer_churn", "logistic_regression"),
        ("diabetes", "ridge"),
    ],
)
def test_exact_methods_equal_brute_force_shapley_values(
    function: Functions, dataset: str, estimator: str
) -> None:
    handler = function(dataset, estimator)
    row = dataset_rows(dataset, 1, skip=7)[0]
    answer = explain(handler, [row])["explanations"][0]
    classes = handler.runtime.model.classes
    column = classes.index(answer["class"]) if classes else 0
    phi, base = _brute_force(handler, row, column)
    assert answer["base_value"] == pytest.approx(base, abs=1e-9)
    got = np.array(list(answer["contributions"].values()))
    # Float32 outputs averaged in float64: agreement far below the outputs' own rounding.
    np.testing.assert_allclose(got, phi, rtol=0, atol=1e-5 * (1 + abs(answer["output"])))


@pytest.mark.parametrize(
    ("dataset", "estimator"),
    [("breast_cancer", "mlp"), ("customer_churn", "random_forest"), ("diabetes", "ridge")],
)
def test_a_rows_explanation_depends_on_that_row_only(
    function: Functions, dataset: str, estimator: str
) -> None:
    """The same bits whether the row comes alone, first, last, or in another call."""
    handler = function(dataset, estimator)
    rows = dataset_rows(dataset, 4, skip=100)
    together = explain(handler, rows)["explanations"]
    reversed_ = explain(handler, rows[::-1])["explanations"][::-1]
    alone = [explain(handler, [row])["explanations"][0] for row in rows]
    assert together == reversed_ == alone
    assert explain(handler, rows)["explanations"] == together  # and again: deterministic


def test_a_named_class_is_explained_and_an_unknown_one_refused(function: Functions) -> None:
    handler = function("breast_cancer", "logistic_regression")
    rows = dataset_rows("breast_cancer", 2)
    for name in ("0", "1"):
        body = explain(handler, rows, **{"class": name})
        assert [a["class"] for a in body["explanations"]] == [int(name)] * 2
    zero, one = (explain(handler, rows, **{"class": c})["explanations"] for c in ("0", "1"))
    for a, b in zip(zero, one, strict=True):
        # Two classes: p0 = 1 - p1, so the contributions are each other's negatives.
        assert a["output"] == pytest.approx(1 - b["output"], abs=1e-6)
        for name, value in a["contributions"].items():
            assert value == pytest.approx(-b["contributions"][name], abs=1e-5)
    status, body = request(handler, rows, query={"class": "2"})
    assert status == 400
    assert_error(body, "invalid_class")
    assert "'2'" in body["error"]["message"] and "0, 1" in body["error"]["message"]
    regression = function("diabetes", "ridge")
    status, body = request(regression, dataset_rows("diabetes", 1), query={"class": "1"})
    assert status == 400
    assert_error(body, "invalid_class")


# /predict's refusals, sent to /explain: the same status and the same error body.
REFUSED = {
    "invalid_json": "breast_cancer",
    "nan_literal": "breast_cancer",
    "body_not_object": "breast_cancer",
    "missing_instances": "breast_cancer",
    "empty_instances": "breast_cancer",
    "empty_body": "breast_cancer",
    "wrong_feature_count": "breast_cancer",
    "unknown_feature": "breast_cancer",
    "string_for_number": "breast_cancer",
    "boolean_value": "breast_cancer",
    "wrong_content_type": "breast_cancer",
    "invalid_base64": "breast_cancer",
    "churn_number_for_category": "customer_churn",
    "csv_unterminated_quote": "customer_churn",
}
ESTIMATOR = {"breast_cancer": "mlp", "customer_churn": "logistic_regression"}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_bodies_get_predicts_errors(function: Functions, name: str) -> None:
    dataset = REFUSED[name]
    handler = function(dataset, ESTIMATOR[dataset])
    predicted = call(handler, load_event(name))
    explained = call(handler, {**load_event(name), "path": EXPLAIN})
    assert 400 <= predicted[0] < 500
    assert (explained[0], explained[2]) == (predicted[0], predicted[2])


def test_the_row_cap_is_explains_own(function: Functions) -> None:
    from functions.inference.runtime import Settings
    from onnxkit.config import ConfigError, load_config
    from onnxkit.contract.layout import MAX_EXPLAIN_INSTANCES_ENV

    assert Settings.from_env({MAX_EXPLAIN_INSTANCES_ENV: "2"}).max_explain_instances == 2
    assert Settings.from_env({}).max_explain_instances == 10
    config = load_config("dev", {"lambda.max_explain_instances": 3})
    assert config.function.max_explain_instances == 3
    with pytest.raises(ConfigError, match="max_explain_instances"):
        load_config("dev", {"lambda.max_explain_instances": 0})
    handler = function("breast_cancer", "mlp", max_explain_instances=2)
    rows = dataset_rows("breast_cancer", 3)
    status, body = request(handler, rows)
    assert status == 413
    assert_error(body, "too_many_instances")
    assert request(handler, rows, path="/predict")[0] == 200
    assert request(handler, rows[:2])[0] == 200


def test_csv_and_npy_bodies_are_explained_like_json(function: Functions) -> None:
    handler = function("breast_cancer", "mlp")
    names = [spec.name for spec in handler.runtime.model.features]
    rows = dataset_rows("breast_cancer", 2, skip=3)
    text = "\n".join(",".join(repr(row[n]) for n in names) for row in rows)
    status, _, body = call(
        handler,
        event_with("predict_csv", path=EXPLAIN, body=text, headers={"Content-Type": "text/csv"}),
    )
    assert status == 200, body
    assert body == explain(handler, rows)


def _copy_without_background(source: Path, target: Path, *, unlist: bool) -> Path:
    shutil.copytree(source, target)
    (target / BACKGROUND_FILE).unlink()
    if unlist:
        manifest = json.loads((target / MANIFEST_FILE).read_text())
        del manifest["files"][BACKGROUND_FILE]
        (target / MANIFEST_FILE).write_text(json.dumps(manifest))
    return target


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_artifact_from_before_the_background_still_serves(
    trained: Callable[[str, str], Path], tmp_path: Path, fmt: Format
) -> None:
    from functions.inference.app import InferenceFunction
    from functions.inference.runtime import Settings

    old = _copy_without_background(trained("breast_cancer", "mlp"), tmp_path / "old", unlist=True)
    handler = InferenceFunction(Settings(model_uri=str(old)))
    rows = dataset_rows("breast_cancer", 1)
    assert request(handler, rows, path="/predict", fmt=fmt)[0] == 200
    status, body = request(handler, rows, fmt=fmt)
    assert status == 409
    assert_error(body, "no_background")
    assert BACKGROUND_FILE in body["error"]["message"]


@pytest.mark.parametrize("damage", ["deleted", "altered"])
def test_a_listed_background_that_is_gone_or_altered_is_not_used(
    trained: Callable[[str, str], Path], tmp_path: Path, damage: str
) -> None:
    from functions.inference.app import InferenceFunction
    from functions.inference.runtime import Settings

    source = trained("diabetes", "ridge")
    if damage == "deleted":
        broken = _copy_without_background(source, tmp_path / "model", unlist=False)
    else:
        broken = Path(shutil.copytree(source, tmp_path / "model"))
        raw = json.loads((broken / BACKGROUND_FILE).read_text())
        raw["rows"] = raw["rows"][:-1]
        (broken / BACKGROUND_FILE).write_text(json.dumps(raw))
    handler = InferenceFunction(Settings(model_uri=str(broken)))
    status, body = request(handler, dataset_rows("diabetes", 1))
    assert status == 503
    assert_error(body, "explanation_unavailable")


def test_explanations_match_the_served_openapi_document(function: Functions) -> None:
    import jsonschema

    for dataset, estimator in (("customer_churn", "logistic_regression"), ("diabetes", "ridge")):
        handler = function(dataset, estimator)
        status, _, document = call(handler, load_event("get_openapi"))
        assert status == 200
        operation = document["paths"][EXPLAIN]["post"]
        predict = document["paths"]["/predict"]["post"]
        assert (
            operation["requestBody"]["content"].keys() == predict["requestBody"]["content"].keys()
        )
        assert operation["parameters"][0]["name"] == "class"
        schemas = document["components"]["schemas"]
        assert schemas["ExplainRequest"]["properties"]["instances"]["maxItems"] == 10
        body = explain(handler, dataset_rows(dataset, 2))
        jsonschema.validate(body, schemas["Explanation"])
        assert orjson.loads(orjson.dumps(body)) == body


def test_a_model_in_s3_reads_its_background_beside_it_on_the_first_explain(
    trained: Callable[[str, str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the function serves a promoted version: model.onnx and manifest.json downloaded at
    cold start, background.json fetched from beside them when /explain first needs it; an S3
    failure then is a 503 that the next call retries."""
    from functions.inference.app import InferenceFunction
    from functions.inference.runtime import Settings
    from functions.inference.source import ModelLocator
    from tests.support.aws import create_bucket, mocked

    source = trained("diabetes", "ridge")
    with mocked(monkeypatch):
        s3 = create_bucket("onnxkit-explain-test")
        prefix = "models/diabetes/v1/"
        for name in ("model.onnx", MANIFEST_FILE):
            s3.put_object(
                Bucket="onnxkit-explain-test", Key=prefix + name, Body=(source / name).read_bytes()
            )
        uri = f"s3://onnxkit-explain-test/{prefix}model.onnx"
        locator = ModelLocator(cache_dir=tmp_path / "cache")
        handler = InferenceFunction(Settings(model_uri=uri), locator=locator)
        rows = dataset_rows("diabetes", 2)
        assert request(handler, rows, path="/predict")[0] == 200
        status, body = request(handler, rows)
        assert status == 503
        assert_error(body, "explanation_unavailable")
        s3.put_object(
            Bucket="onnxkit-explain-test",
            Key=prefix + BACKGROUND_FILE,
            Body=(source / BACKGROUND_FILE).read_bytes(),
        )
        status, body = request(handler, rows)
        assert status == 200, body
        local = InferenceFunction(Settings(model_uri=str(source)))
        assert body["explanations"] == explain(local, rows)["explanations"]
