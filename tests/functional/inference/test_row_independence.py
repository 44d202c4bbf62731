"""Property: adding rows to a request never changes the other rows' outputs.

For every estimator (int8 where the training job serves it) and every body format (JSON list
rows, JSON object rows, text/csv, application/x-npy), a request of some rows is answered, then
the same rows are sent again with more valid rows inserted among them (extreme but finite
values, missing values, unseen categories); the first rows' labels and probabilities (or
values) must not change, and a row withheld for a non-finite answer is withheld alone and
together alike. Dynamic int8, with one activation scale per call, fails this.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxkit.contract.manifest import load_manifest
from onnxkit.datasets import bundled
from tests.support.inference import call, event_with

pytestmark = pytest.mark.xdist_group("inference")

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Where onnxruntime's kernels take another path for another batch size (one row vs many: the
# linear regressor, the tree ensembles' summation order), outputs may differ in the last float32
# bit (measured: 1.5e-5 on a ridge value of about 150, 1 ulp); the bound is relative to
# max(1, |value|) and anything larger is a row that depends on its neighbours.
BOUND = 1e-6

# (dataset, estimator): all-numeric models take every body format, the mixed churn data all
# but .npy. Each estimator appears with its default hyperparameters (int8 where it serves).
MODELS = [
    ("breast_cancer", "logistic_regression"),
    ("breast_cancer", "mlp"),
    ("breast_cancer", "random_forest"),
    ("breast_cancer", "hist_gradient_boosting"),
    ("diabetes", "ridge"),
    ("diabetes", "mlp"),
    ("customer_churn", "mlp"),
    ("customer_churn", "hist_gradient_boosting"),
]
FORMATS = ["json_lists", "json_objects", "csv", "npy"]
CASES = [
    (dataset, model, body)
    for dataset, model in MODELS
    for body in FORMATS
    if not (body == "npy" and dataset == "customer_churn")
]


@pytest.fixture(scope="module")
def runtimes(train_artifact: Callable[..., Path]) -> dict[tuple[str, str], Any]:
    """One inference function per (dataset, estimator), trained lazily."""
    from functions.inference.app import InferenceFunction
    from functions.inference.runtime import Settings

    made: dict[tuple[str, str], Any] = {}

    class Lazy(dict[tuple[str, str], Any]):
        def __missing__(self, key: tuple[str, str]) -> Any:
            dataset, model = key
            made[key] = InferenceFunction(
                Settings(model_uri=str(train_artifact(dataset, model=model)))
            )
            return made[key]

    return Lazy()


def _value_pool(dataset: str) -> dict[str, list[Any]]:
    """Each feature's values in the bundled file (numbers, or category strings)."""
    frame = pd.read_csv(bundled(dataset).path, dtype=str, keep_default_na=False)
    return {column: sorted(set(frame[column])) for column in frame.columns}


def _cell(numeric: bool, seen: list[Any]) -> st.SearchStrategy[Any]:
    if numeric:
        extreme = st.floats(min_value=-3e38, max_value=3e38, allow_nan=False)
        real = st.sampled_from([float(v) for v in seen if v != ""])
        return st.none() | real | extreme | st.sampled_from([1e6, -1e6, 1e30, 3e38, -3e38, 0.0])
    known = [v for v in seen if v != ""]
    return st.none() | st.sampled_from(known) | st.text(alphabet="abcxyz", min_size=1, max_size=6)


def _rows(specs: list[tuple[str, bool]], pool: dict[str, list[Any]]) -> st.SearchStrategy[Any]:
    row = st.tuples(*(_cell(numeric, pool[name]) for name, numeric in specs))
    return st.lists(row, min_size=1, max_size=6)


def _body(body: str, names: list[str], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """A /predict event carrying the rows in one body format."""
    if body == "npy":
        buffer = io.BytesIO()
        matrix = np.array([[np.nan if v is None else v for v in row] for row in rows], np.float64)
        np.save(buffer, matrix)
        content, encoded, media = base64.b64encode(buffer.getvalue()).decode(), True, "npy"
    elif body == "csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        for row in rows:
            writer.writerow(
                ["" if v is None else repr(v) if isinstance(v, float) else v for v in row]
            )
        content, encoded, media = text.getvalue(), False, "csv"
    else:
        instances: list[Any] = (
            [dict(zip(names, row, strict=True)) for row in rows]
            if body == "json_objects"
            else [list(row) for row in rows]
        )
        content, encoded, media = json.dumps({"instances": instances}), False, "json"
    content_type = {
        "npy": "application/x-npy",
        "csv": "text/csv",
        "json": "application/json",
    }[media]
    return event_with(
        body=content,
        isBase64Encoded=encoded,
        headers={"Content-Type": content_type},
        multiValueHeaders={"Content-Type": [content_type]},
    )


def _answers(
    handler: Any, body: str, names: list[str], rows: list[tuple[Any, ...]]
) -> tuple[list[Any] | None, np.ndarray]:
    """Labels (classification only) and the numbers (probabilities, or predicted values) of
    each row; a row the API withholds (its answer would not be finite) has NaN numbers and a
    None label. Withheld rows are dropped and the rest sent again, as ``onnxkit predict`` does."""
    from functions.inference.predictor import NON_FINITE_PROBLEM

    kept = list(range(len(rows)))
    while True:
        status, _, answer = call(handler, _body(body, names, [rows[i] for i in kept]))
        if status == 200 or not kept:
            break
        details = answer["error"]["details"]
        assert status == 422 and all(d["problem"] == NON_FINITE_PROBLEM for d in details), answer
        withheld = {d["instance"] for d in details}
        kept = [index for at, index in enumerate(kept) if at not in withheld]
    classes = handler.runtime.model.classes
    numbers = np.full((len(rows), len(classes)) if classes else len(rows), np.nan)
    labels: list[Any] | None = [None] * len(rows) if classes else None
    if kept:
        numbers[kept] = np.array(answer.get("probabilities", answer["predictions"]), np.float64)
        for index, label in zip(kept, answer["predictions"], strict=True):
            if labels is not None:
                labels[index] = label
    return labels, numbers


def _tied(probabilities: np.ndarray) -> bool:
    top = np.sort(probabilities)[-2:]
    return bool(top[1] - top[0] <= 2 * BOUND)


@pytest.mark.parametrize(("dataset", "model", "body"), CASES)
def test_adding_rows_never_changes_the_other_rows(
    runtimes: dict[tuple[str, str], Any], dataset: str, model: str, body: str
) -> None:
    function = runtimes[(dataset, model)]
    specs = [(spec.name, spec.numeric) for spec in function.runtime.model.features]
    names = [name for name, _ in specs]
    pool = _value_pool(dataset)

    @SETTINGS
    @given(
        rows=_rows(specs, pool),
        extra=_rows(specs, pool).map(lambda rows: rows * 4),  # some calls cross the fast path
        positions=st.lists(st.integers(0, 1000), min_size=24, max_size=24),
    )
    def check(rows: list[tuple[Any, ...]], extra: list[tuple[Any, ...]], positions: list[int]):
        alone_labels, alone = _answers(function, body, names, rows)
        # Insert each extra row at a drawn position; remember where the original rows went.
        combined: list[tuple[tuple[Any, ...], int | None]] = [(r, i) for i, r in enumerate(rows)]
        for row, position in zip(extra, positions, strict=False):
            combined.insert(position % (len(combined) + 1), (row, None))
        labels, outputs = _answers(function, body, names, [r for r, _ in combined])
        where = [at for at, (_, index) in enumerate(combined) if index is not None]
        together = outputs[where]
        assert np.array_equal(np.isnan(together), np.isnan(alone))  # the same rows withheld
        scale = np.maximum(1.0, np.abs(alone))  # values (regression) are compared relatively
        diff = float(np.nanmax(np.abs(together - alone) / scale, initial=0.0))
        assert diff <= BOUND, f"max |diff| {diff} for rows next to {len(extra)} others"
        if labels is not None:
            for at, label, probabilities in zip(where, alone_labels, alone, strict=True):
                # A label may only differ where two classes tie within the bound.
                assert labels[at] == label or _tied(probabilities), (labels[at], probabilities)

    check()


def test_the_served_variants_are_the_ones_described(
    train_artifact: Callable[..., Path],
) -> None:
    # The MLPs above are the int8 graphs the job serves, so the property covers int8.
    for dataset in ("breast_cancer", "customer_churn", "diabetes"):
        manifest = load_manifest(train_artifact(dataset, model="mlp"))
        assert manifest.serving.variant == "int8", manifest.quantization.reason
