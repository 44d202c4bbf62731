"""functions/inference/batch.py: a chunk of records scored row by row, with POST /predict's answers.

Every scored row must get exactly the handler's prediction and probabilities for the same row;
every refused row the handler's reason (its error detail), while its neighbours are scored.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onnxkit.datasets import bundled
from tests.support.inference import call, event_with

pytestmark = pytest.mark.xdist_group("inference")


@pytest.fixture(scope="module")
def artifacts(train_artifact: Callable[..., Path]) -> dict[str, Path]:
    """A mixed numeric/categorical classifier, an all-numeric int8 MLP and a regression."""
    return {
        "churn": train_artifact("customer_churn", model="logistic_regression"),
        "breast_cancer": train_artifact("breast_cancer", model="mlp"),
        "diabetes": train_artifact("diabetes", model="ridge"),
    }


@pytest.fixture(scope="module")
def models(artifacts: dict[str, Path]) -> dict[str, Any]:
    from functions.inference.batch import open_model

    return {name: open_model(str(path)) for name, path in artifacts.items()}


@pytest.fixture(scope="module")
def handlers(artifacts: dict[str, Path]) -> dict[str, Any]:
    from functions.inference.app import InferenceFunction
    from functions.inference.runtime import Settings

    return {
        name: InferenceFunction(Settings(model_uri=str(path))) for name, path in artifacts.items()
    }


def _table(dataset: str, n: int) -> tuple[list[str], list[list[str]]]:
    with bundled(dataset).path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [row for _, row in zip(range(n), reader, strict=False)]


def _csv_body(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _api_csv(handler: Any, names: list[str], header: list[str], rows: list[list[str]]) -> Any:
    """POST /predict with the model's columns of ``rows`` as a text/csv body."""
    at = [header.index(name) for name in names]
    body = _csv_body(names, [[row[i] for i in at] for row in rows])
    event = event_with(body=body, headers={"Content-Type": "text/csv"})
    return call(handler, event)


def _api_json(handler: Any, instances: list[Any]) -> Any:
    return call(handler, event_with(body=json.dumps({"instances": instances})))


def _assert_same(results: list[Any], positions: list[int], body: dict[str, Any]) -> None:
    """The results at ``positions`` are the API's answers, in order."""
    assert len(positions) == len(body["predictions"])
    for position, prediction, *probas in zip(
        positions,
        body["predictions"],
        *([body["probabilities"]] if "probabilities" in body else []),
        strict=True,
    ):
        result = results[position]
        assert result.reason is None
        if isinstance(prediction, float):
            assert np.float32(result.prediction) == np.float32(prediction)
        else:
            assert result.prediction == prediction
        if probas:
            assert np.array_equal(result.probabilities, np.array(probas[0], dtype=np.float32))


def test_csv_cells_score_as_the_api_does_with_missing_and_categorical_values(models, handlers):
    from functions.inference.batch import score_cells

    header, rows = _table("customer_churn", 200)
    rows[3][header.index("payment_method")] = ""  # a missing category
    rows[4][header.index("tenure_months")] = "NA"  # a missing number (a token)
    rows[5][header.index("plan")] = "platinum"  # an unseen category
    assert any(not row[header.index("payment_method")] for row in rows[6:])  # the data's own
    model = models["churn"]
    results = score_cells(model, header, rows)
    names = [spec.name for spec in model.features]
    status, _, body = _api_csv(handlers["churn"], names, header, rows)
    assert status == 200, body
    _assert_same(results, list(range(200)), body)
    assert {r.prediction for r in results} <= set(model.classes)


def test_bad_cells_are_refused_with_the_api_reason_and_the_rest_scored(models, handlers):
    from functions.inference.batch import score_cells

    header, rows = _table("customer_churn", 50)
    rows[2][header.index("tenure_months")] = "twelve"
    rows[7][header.index("monthly_charges")] = "1e999"
    rows[9] = rows[9][:-1]  # a field short
    rows[11][header.index("age")] = "1_000"
    model = models["churn"]
    results = score_cells(model, header, rows)
    bad = {2, 7, 9, 11}
    assert [i for i, r in enumerate(results) if r.reason] == sorted(bad)
    assert all(results[i].prediction is None and results[i].probabilities is None for i in bad)
    assert (
        results[9].reason == f"expected {len(header)} fields (the header's), got {len(header) - 1}"
    )
    names = [spec.name for spec in model.features]
    # The API's own reason for each refused row, sent alone.
    for index in (2, 7, 11):
        status, _, body = _api_csv(handlers["churn"], names, header, [rows[index]])
        assert status == 400
        (detail,) = body["error"]["details"]
        assert results[index].reason == f"{detail['feature']}: {detail['problem']}"
    good = [i for i in range(50) if i not in bad]
    status, _, body = _api_csv(handlers["churn"], names, header, [rows[i] for i in good])
    assert status == 200
    _assert_same(results, good, body)


def test_json_instances_objects_arrays_and_refusals(models, handlers):
    from functions.inference.batch import Unreadable, parse_json_line, score_instances

    model = models["churn"]
    names = [spec.name for spec in model.features]
    header, rows = _table("customer_churn", 20)
    objects: list[Any] = []
    for row in rows:
        instance: dict[str, Any] = {"customer": f"c{len(objects)}"}  # an extra key: ignored
        for spec in model.features:
            cell = row[header.index(spec.name)]
            instance[spec.name] = (float(cell) if cell else None) if spec.numeric else cell
        objects.append(instance)
    objects[1] = [objects[1][name] for name in names]  # an array in signature order
    objects[2] = {**objects[2], "tenure_months": "twelve"}
    objects[3] = {k: v for k, v in objects[3].items() if k != "age"}
    objects[4] = {**objects[4], "plan": 3}
    objects[5] = parse_json_line(b'{"tenure_months": NaN}')
    objects[6] = "just a string"
    objects[7] = {**objects[7], "support_calls": True}
    objects[8] = [1.0, 2.0]
    objects[9] = {**objects[9], "monthly_charges": "NA"}  # a missing token, allowed
    assert isinstance(objects[5], Unreadable)
    results = score_instances(model, objects)
    assert results[2].reason == "tenure_months: expected a number, got a string"
    assert results[3].reason == "age: missing feature (send null if unknown)"
    assert results[4].reason == "plan: expected a category (string), got a number"
    assert results[5].reason.startswith("not valid JSON")
    assert "not a string" in results[6].reason
    assert results[7].reason == "support_calls: expected a number, got a boolean"
    assert results[8].reason == f"expected {len(names)} values, got 2"
    good = [0, 1, *range(9, 20)]
    assert [i for i, r in enumerate(results) if r.reason is None] == good
    sent = [
        o if isinstance(o, list) else {k: v for k, v in o.items() if k in names}
        for o in (objects[i] for i in good)
    ]
    status, _, body = _api_json(handlers["churn"], sent)
    assert status == 200, body
    _assert_same(results, good, body)


def test_a_missing_value_the_model_does_not_impute_refuses_only_that_row(models, handlers):
    import dataclasses

    from functions.inference.batch import score_cells

    imputing = models["breast_cancer"]
    # Trained models impute every feature; a manifest may say a feature is not imputed.
    strict = dataclasses.replace(
        imputing,
        features=tuple(dataclasses.replace(s, nullable=False) for s in imputing.features),
    )
    header, rows = _table("breast_cancer", 30)
    rows[0][0] = ""
    rows[29][3] = "NA"
    results = score_cells(strict, header, rows)
    for index, column in ((0, 0), (29, 3)):  # blank and a token: both null, as a CSV body's
        assert results[index].reason == (
            f"{header[column]}: missing value (null), and the model does not impute this feature"
        )
    names = [spec.name for spec in imputing.features]
    status, _, body = _api_csv(handlers["breast_cancer"], names, header, rows[1:29])
    assert status == 200
    _assert_same(results, list(range(1, 29)), body)
    # The imputing model scores the same two rows instead.
    assert all(r.reason is None for r in score_cells(imputing, header, rows))


def test_regression_values_are_the_api_values(models, handlers):
    from functions.inference.batch import score_cells

    model = models["diabetes"]
    header, rows = _table("diabetes", 100)
    results = score_cells(model, header, rows)
    names = [spec.name for spec in model.features]
    status, _, body = _api_csv(handlers["diabetes"], names, header, rows)
    assert status == 200
    _assert_same(results, list(range(100)), body)
    assert all(r.probabilities is None for r in results)


def test_missing_feature_columns_are_named(models):
    from functions.inference.batch import MissingColumns, score_cells

    header, rows = _table("customer_churn", 3)
    drop = header.index("plan")
    header = header[:drop] + header[drop + 1 :]
    rows = [row[:drop] + row[drop + 1 :] for row in rows]
    with pytest.raises(MissingColumns, match="plan"):
        score_cells(models["churn"], header, rows)


def test_a_tampered_model_is_refused(artifacts, tmp_path):
    import shutil

    from functions.inference.batch import open_model
    from functions.inference.source import ModelSourceError

    copy = tmp_path / "model"
    shutil.copytree(artifacts["churn"], copy)
    with (copy / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelSourceError, match="digest mismatch"):
        open_model(str(copy))
