"""The training job's pure functions, without running a job."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from functions.inference import feed
from onnxkit.contract.manifest import Parity, RowIndependence
from onnxkit.contract.metrics import METRIC_DEFINITIONS, metric_line, parse_metric_lines
from onnxkit.contract.values import ValueProblem, ValueRule, parse_missing_tokens
from training_jobs.data import (
    MISSING_CATEGORY,
    Schema,
    choose_categories,
    infer_schema,
    missing_mask,
    parse_numbers,
    prepare,
)
from training_jobs.decision import (
    Candidate,
    Scored,
    Tolerance,
    judge,
    parity,
    probe_problem,
    row_independence,
)
from training_jobs.errors import TrainingError
from training_jobs.estimators import (
    ALL_ESTIMATOR_SETTINGS,
    ESTIMATOR_SETTINGS,
    MODELS,
    build_pipeline,
    fit,
    make_estimator,
)
from training_jobs.evaluation import (
    SCORING_ROWS,
    Prediction,
    compute_metrics,
    predict_onnx,
    predict_sklearn,
)
from training_jobs.export import (
    dedupe_opsets,
    feeds_for,
    onnx_input_name,
    op_counts,
    quantize,
    session,
    to_onnx,
)
from training_jobs.hyperparameters import DEFAULT_MAX_CATEGORIES, parse_args
from training_jobs.table import read_table


def test_hyperparameters_default_from_the_sagemaker_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
    monkeypatch.delenv("SM_CHANNEL_VALIDATION", raising=False)
    args = parse_args(
        [
            "--target",
            "y",
            "--model",
            "mlp",
            "--max_iter",
            "7",
            "--hidden-layer-sizes",
            "8,4",
            "--sagemaker_program",
            "train.py",
        ]
    )
    assert (args.model_dir, args.train, args.validation) == (
        "/opt/ml/model",
        "/opt/ml/input/data/train",
        None,
    )
    assert (args.estimator.max_iter, args.estimator.hidden_layer_sizes) == (7, (8, 4))
    assert args.missing_values is None  # absent: the contract's default tokens


@pytest.mark.parametrize(
    "argv",
    [
        ["--target", "y", "--validation_fraction", "1.5"],
        ["--target", "y", "--hidden_layer_sizes", "a,b"],
        ["--target", "y", "--max_metric_drop", "-1"],
        ["--target", "y", "--max_categories", "1"],
        ["--target", "y", "--learning_rate", "0"],
        [],
    ],
)
def test_bad_hyperparameters_raise_a_readable_error(argv: list[str]) -> None:
    with pytest.raises(TrainingError, match="bad hyperparameter"):
        parse_args(argv)


def frame(**columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame(
        {k: pd.Series(v, dtype=object).astype("string").astype(object) for k, v in columns.items()}
    ).replace({"<NA>": np.nan})


def test_schema_inference_numeric_categorical_and_task() -> None:
    data = frame(a=["1", "2", None, "4"], b=["x", "y", "x", None], y=["1", "0", "1", "0"])
    schema = infer_schema(data, "y", "auto", [])
    assert (schema.numeric, schema.categorical, schema.task) == (["a"], ["b"], "classification")
    assert infer_schema(data, "y", "auto", ["a"]).categorical == ["a", "b"]
    continuous = frame(a=["1", "2", "3", "4"], y=["0.5", "1.25", "2", "3.75"])
    assert infer_schema(continuous, "y", "auto", []).task == "regression"


def test_prepare_types_columns_as_the_graph_takes_them() -> None:
    data = frame(a=["1", None], b=["x", None], y=["p", "q"])
    schema = infer_schema(data, "y", "auto", [])
    X, y = prepare(data, schema, "y")
    assert X["a"].dtype == np.float32 and np.isnan(X["a"][1])
    assert list(X["b"]) == ["x", ""]
    assert list(y) == ["p", "q"]


def test_onnx_input_names_follow_skl2onnx_sanitizing() -> None:
    assert onnx_input_name("sepal length (cm)") == "sepal_length__cm_"
    assert onnx_input_name("plan") == "plan"


def test_metrics_for_perfect_predictions() -> None:
    y = np.array(["a", "b", "a", "b"])
    probabilities = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    scores = compute_metrics("classification", y, y, probabilities, ["a", "b"])
    assert scores["accuracy"] == scores["f1_macro"] == scores["roc_auc"] == 1.0
    assert scores["log_loss"] < 1e-6
    regression = compute_metrics(
        "regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), None, []
    )
    assert regression == {"rmse": 0.0, "mae": 0.0, "r2": 1.0}


def test_metric_lines_round_trip_through_the_sagemaker_regexes() -> None:
    names = {name for name, _ in METRIC_DEFINITIONS}
    assert len(names) == len(METRIC_DEFINITIONS) <= 40  # SageMaker's limit per job
    log = "\n".join(
        [
            metric_line("int8", "accuracy", 0.953125),
            metric_line("fp32", "r2", -1.5e-7),
            "[metric] int8:accuracy_extra=3",
        ]
    )
    assert parse_metric_lines(log) == {"int8:accuracy": 0.953125, "fp32:r2": -1.5e-7}


def matmul_model(duplicate_default_opset: bool) -> onnx.ModelProto:
    weights = numpy_helper.from_array(
        np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32), "W"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])],
        [weights],
    )
    opsets = [helper.make_opsetid("", 17)]
    if duplicate_default_opset:
        opsets.append(helper.make_opsetid("", 13))
    return helper.make_model(graph, opset_imports=opsets)


def test_duplicate_default_opset_breaks_quantization_until_deduplicated(tmp_path: Path) -> None:
    broken = matmul_model(duplicate_default_opset=True)
    onnx.save(broken, tmp_path / "broken.onnx")
    with pytest.raises(Exception):  # noqa: B017 - the quantizer's own error type varies
        quantize_dynamic(tmp_path / "broken.onnx", tmp_path / "x.onnx", weight_type=QuantType.QInt8)
    fixed = dedupe_opsets(broken)
    assert [(o.domain, o.version) for o in fixed.opset_import] == [("", 17)]
    onnx.save(fixed, tmp_path / "fixed.onnx")
    operators = quantize(tmp_path / "fixed.onnx", tmp_path / "int8.onnx", "weight")
    assert operators == {"MatMul": 1}


def test_many_rows_are_scored_in_blocks_with_the_answers_of_one_call(tmp_path: Path) -> None:
    model = matmul_model(duplicate_default_opset=False)
    model.ir_version = 9  # what onnxruntime reads (onnx writes its newest by default)
    onnx.save(model, tmp_path / "m.onnx")
    rows = 2 * SCORING_ROWS + 123  # two whole blocks and a part
    x = np.random.default_rng(1).normal(size=(rows, 64)).astype(np.float32)
    sess = session(tmp_path / "m.onnx")
    calls: list[int] = []

    class Counted:
        def run(self, names: Any, feeds: dict[str, np.ndarray]) -> Any:
            calls.append(len(feeds["x"]))
            return sess.run(names, feeds)

    blocks = predict_onnx(cast(Any, Counted()), {"x": x}, "regression")
    assert sorted(calls) == [123, SCORING_ROWS, SCORING_ROWS]
    assert blocks.labels.tobytes() == sess.run(None, {"x": x})[0].ravel().tobytes()
    calls.clear()
    predict_onnx(cast(Any, Counted()), {"x": x[:SCORING_ROWS]}, "regression")
    assert calls == [SCORING_ROWS]  # up to a block: one call


def test_quantizing_leaves_the_root_logger_alone(tmp_path: Path) -> None:
    # Only the job's entry point (train.main) configures logging; its modules never do.
    model = matmul_model(duplicate_default_opset=False)
    model.ir_version = 9  # what onnxruntime's calibration session can load
    onnx.save(model, tmp_path / "fp32.onnx")
    rows = np.random.default_rng(1).normal(size=(8, 64)).astype(np.float32)
    root = logging.getLogger()
    before = root.level
    try:
        root.setLevel(logging.INFO)
        quantize(tmp_path / "fp32.onnx", tmp_path / "weight.onnx", "weight")
        quantize(tmp_path / "fp32.onnx", tmp_path / "qdq.onnx", "qdq", {"x": rows})
        assert root.level == logging.INFO
    finally:
        root.setLevel(before)


def test_judge_lists_every_reason_an_int8_graph_may_not_serve(tmp_path: Path) -> None:
    path = tmp_path / "int8.onnx"
    path.write_bytes(b"x" * 100)
    probe = RowIndependence(
        rows=10,
        extreme_rows=2,
        max_abs_diff_alone=0.2,
        max_abs_diff_extreme=0.0,
        labels_changed=1,
        bound=1e-6,
        passed=False,
    )
    candidate = Candidate(
        "weight",
        path,
        {"MatMul": 2},
        Scored(
            prediction=Prediction(np.zeros(10), np.zeros((10, 2))),
            score=0.90,
            every_metric=lambda: {"accuracy": 0.90},
            parity=Parity(rows=10, label_agreement=0.9, max_abs_diff=0.5),
            row_independence=probe,
        ),
    )
    tolerance = Tolerance(0.995, 0.005, 0.1)
    problems = judge(candidate, {"accuracy": 0.95}, 100, "accuracy", tolerance, "classification")
    # Not smaller, labels, drift, metric and the probe.
    assert len(problems) == 5, problems
    assert judge(
        Candidate("weight", path, {}), {}, 100, "accuracy", tolerance, "classification"
    ) == ["no quantizable operators in the graph"]


# --- hyperparameters apply to the chosen estimator, or are refused ---------------------------


@pytest.mark.parametrize(
    ("model", "setting", "value"),
    [
        ("hist_gradient_boosting", "n_estimators", "50"),
        ("random_forest", "max_iter", "50"),
        ("ridge", "c", "2"),
        ("logistic_regression", "alpha", "2"),
        ("mlp", "max_depth", "3"),
    ],
)
def test_a_setting_the_estimator_does_not_take_is_refused(
    model: str, setting: str, value: str
) -> None:
    with pytest.raises(TrainingError, match=rf"^bad hyperparameter: {model} does not take"):
        parse_args(["--target", "y", "--model", model, f"--{setting}", value])


def test_each_setting_reaches_the_estimator() -> None:
    def built(model: str, task: str, *argv: str) -> object:
        args = parse_args(["--target", "y", "--model", model, *argv])
        return make_estimator(task, model, args.estimator, args.seed)

    hgb = built("hist_gradient_boosting", "classification", "--max_iter", "7", "--max_depth", "3")
    assert (hgb.max_iter, hgb.max_depth, hgb.learning_rate) == (7, 3, 0.1)  # type: ignore[attr-defined]
    forest = built("random_forest", "regression", "--n_estimators", "9")
    assert forest.n_estimators == 9  # type: ignore[attr-defined]
    mlp = built("mlp", "classification", "--learning_rate", "0.01", "--alpha", "0.5")
    assert (mlp.learning_rate_init, mlp.alpha) == (0.01, 0.5)  # type: ignore[attr-defined]
    logistic = built("logistic_regression", "classification", "-c", "0.25")
    assert logistic.C == 0.25  # type: ignore[attr-defined]


# Each estimator setting, with a value other than its default and the scikit-learn parameter
# it must reach (per estimator where the names differ).
SETTING_VALUES: dict[str, tuple[str, object]] = {
    "n_estimators": ("9", 9),
    "max_depth": ("3", 3),
    "max_iter": ("7", 7),
    "learning_rate": ("0.03", 0.03),
    "hidden_layer_sizes": ("[5, 3]", (5, 3)),
    "alpha": ("0.5", 0.5),
    "c": ("0.25", 0.25),
}
SKLEARN_NAME = {("mlp", "learning_rate"): "learning_rate_init", ("logistic_regression", "c"): "C"}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("setting", ALL_ESTIMATOR_SETTINGS)
def test_every_setting_applies_to_each_estimator_or_is_refused(model: str, setting: str) -> None:
    assert set(SETTING_VALUES) == set(ALL_ESTIMATOR_SETTINGS)
    text, value = SETTING_VALUES[setting]
    argv = ["--target", "y", "--model", model, f"--{setting}", text]
    if setting not in ESTIMATOR_SETTINGS[model]:
        with pytest.raises(TrainingError) as refused:
            parse_args(argv)
        assert str(refused.value).startswith(f"bad hyperparameter: {model} does not take {setting}")
        assert "\n" not in str(refused.value)
        return
    task = "regression" if model == "ridge" else "classification"
    args = parse_args(argv)
    estimator = make_estimator(task, model, args.estimator, args.seed)
    assert estimator.get_params()[SKLEARN_NAME.get((model, setting), setting)] == value


# --- the missing-value rule, as the contract writes it -----------------------------------------

TOKENS = st.lists(st.sampled_from(["NA", "null", "-", "?", "n/a", "x"]), max_size=3)
CELLS = st.one_of(
    st.sampled_from(["", " ", "\t", "NA", " NA ", "null", "None", "-", "?", "n/a", "nan", "inf"]),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**40), 10**40).map(str),
    st.sampled_from(["1e39", "-1e400", "1_000", "12,345", "0x10", ".5", "1.", "+3", " 7 "]),
    st.text(alphabet=" \t0123456789.eE+-,_aN\u0661", max_size=6),
)


def _contract_numbers(cells: list[str], rule: ValueRule) -> list[float | None] | int:
    """Each cell through ValueRule.number; the index of the first invalid cell instead."""
    values: list[float | None] = []
    for index, cell in enumerate(cells):
        try:
            values.append(rule.number(cell))
        except ValueProblem:
            return index
    return values


@settings(max_examples=300, deadline=None)
@given(cells=st.lists(CELLS, min_size=1, max_size=30), tokens=TOKENS)
def test_the_vectorized_reading_equals_the_contract_cell_by_cell(
    cells: list[str], tokens: list[str]
) -> None:
    rule = ValueRule.of(tokens)
    column = pd.Series(cells, dtype=object)
    assert missing_mask(column, rule).tolist() == [rule.is_missing(c) for c in cells]
    expected = _contract_numbers(cells, rule)
    if isinstance(expected, int):
        with pytest.raises(TrainingError, match=rf"^column 'x' row {expected + 2}: "):
            parse_numbers(column, rule, "x")
    else:
        parsed = parse_numbers(column, rule, "x").tolist()
        assert [None if np.isnan(v) else v for v in parsed] == expected  # bit for bit
    schema = Schema([], ["x"], ["x"], "classification", rule=rule)
    data = pd.DataFrame({"x": cells, "y": ["a"] * len(cells)}, dtype=object)
    X, _ = prepare(data, schema, "y")
    categories = [rule.category(c) for c in cells]
    assert X["x"].tolist() == [MISSING_CATEGORY if c is None else c for c in categories]


def test_missing_categories_are_fed_as_the_inference_function_feeds_them() -> None:
    assert MISSING_CATEGORY == feed.MISSING_CATEGORY


def test_with_no_tokens_a_category_named_na_is_kept() -> None:
    data = frame(region=["NA", "EU", "NA", "", "APAC"], y=["a", "b", "a", "b", "a"])
    default = infer_schema(data, "y", "auto", [])
    assert default.warnings == ["region: 2 cells 'NA' read as missing"]
    assert prepare(data, default, "y")[0]["region"].tolist() == ["", "EU", "", "", "APAC"]
    kept = infer_schema(data, "y", "auto", [], ValueRule.of(parse_missing_tokens("")))
    assert kept.warnings == []
    assert prepare(data, kept, "y")[0]["region"].tolist() == ["NA", "EU", "NA", "", "APAC"]


@pytest.mark.parametrize("tokens", ["-999", "NA,0", " 1e3 ", "?,.5"])
def test_a_missing_token_that_is_a_number_is_refused(tokens: str) -> None:
    # Serving's all-numeric CSV fast paths read a plain number as itself: the training job
    # must not read the same text as missing.
    with pytest.raises(
        TrainingError, match=r"^bad hyperparameter: missing_values token '[^']+' is a number"
    ):
        parse_args(["--target", "y", "--missing_values", tokens])
    assert parse_args(["--target", "y", "--missing_values", "NA,-,?,nan"])


def test_a_numeric_token_the_rule_does_not_know_is_named() -> None:
    data = frame(x=["1", "NA", *map(str, range(20))], y=["a", "b"] * 11)
    rule = ValueRule.of(parse_missing_tokens(""))
    with pytest.raises(TrainingError, match=r"^column 'x' row 3: 'NA' is not a number \(add"):
        infer_schema(data, "y", "auto", [], rule)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("inf", "'inf' is not a number"),
        ("1e400", "'1e400': number must be finite"),
        ("-3.5e38", "'-3.5e38': number out of range"),
        ("12,345", r"'12,345' is not a number \(remove the thousands separators"),
    ],
)
def test_an_unreadable_number_names_row_column_and_value(cell: str, message: str) -> None:
    data = frame(x=[*map(str, range(20)), cell], y=["a", "b"] * 10 + ["a"])
    with pytest.raises(TrainingError, match=rf"^column 'x' row 22: {message}"):
        schema = infer_schema(data, "y", "auto", [])
        prepare(data, schema, "y")


def test_thousands_separators_warn_and_read_as_categories() -> None:
    data = frame(amount=[f"{n},{n % 1000:03d}" for n in range(1, 30)], y=["a", "b"] * 14 + ["a"])
    schema = infer_schema(data, "y", "auto", [])
    assert schema.categorical == ["amount"]
    assert any("amount: numbers with thousands separators" in w for w in schema.warnings)


def test_one_hot_cardinality_is_bounded_with_an_other_bucket() -> None:
    ids = [f"id-{i}" for i in range(60)]
    data = frame(id=ids, plan=["a", "b", "c"] * 20, y=["p", "q"] * 30)
    schema = infer_schema(data, "y", "auto", [])
    X, _ = prepare(data, schema, "y")
    choose_categories(X, schema, 10)
    assert len(schema.categories["id"]) == 10 and schema.categories["plan"] == ["a", "b", "c"]
    assert any("every one of its 60 values is different" in w for w in schema.warnings)
    assert any("the other 50 (50 rows) share the 'other' encoding" in w for w in schema.warnings)


# --- reading the header ourselves -------------------------------------------------------------


@pytest.mark.parametrize("header", ["x,x,y", "x,y,x"])
def test_duplicate_column_names_are_refused_by_name(tmp_path: Path, header: str) -> None:
    (tmp_path / "a.csv").write_text(f"{header}\n1,2,3\n")
    with pytest.raises(TrainingError, match="column name 'x' appears 2 times"):
        read_table(str(tmp_path), "train", ValueRule())


@pytest.mark.parametrize("last", ["1\n", "1,\n"])
def test_cells_are_read_verbatim_without_pandas_na_handling(tmp_path: Path, last: str) -> None:
    # "1": a short row, which pyarrow refuses and pandas' reader reads (as before).
    (tmp_path / "a.csv").write_text("a,b\n NA ,None\n#N/A,\n" + last)
    table = read_table(str(tmp_path), "train", ValueRule(), numeric=())
    assert [table.texts[c].to_pylist() for c in "ab"] == [[" NA ", "#N/A", "1"], ["None", "", ""]]


def test_errors_name_the_file_when_a_channel_has_several(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x,y\n" + "".join(f"{i},a\n{i},b\n" for i in range(10)))
    (tmp_path / "b.csv").write_text("x,y\n1,a\n2kg,b\n")
    data = read_table(str(tmp_path), "train", ValueRule(), text={"y"})
    with pytest.raises(TrainingError, match=r"^column 'x' b.csv row 3: '2kg'"):
        infer_schema(data, "y", "auto", [])


# --- every estimator on a 30-level categorical: trains, converts, and the graph agrees -------


def _thirty_levels(rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    level = rng.integers(0, 30, rows)
    x = rng.normal(size=rows)
    score = x + (level % 3 - 1) * 1.5
    return frame(
        x=[f"{v:.4f}" for v in x],
        level=[f"L{v:02d}" for v in level],
        y=["yes" if s > 0 else "no" for s in score],
        value=[f"{s:.5f}" for s in score],
    )


@pytest.mark.parametrize(
    ("model", "task"),
    [
        ("logistic_regression", "classification"),
        ("mlp", "classification"),
        ("random_forest", "classification"),
        ("hist_gradient_boosting", "classification"),
        ("ridge", "regression"),
        ("mlp", "regression"),
        ("random_forest", "regression"),
        ("hist_gradient_boosting", "regression"),
    ],
)
def test_every_estimator_trains_on_a_thirty_level_categorical(
    tmp_path: Path, model: str, task: str
) -> None:
    target, drop = ("y", "value") if task == "classification" else ("value", "y")
    data = _thirty_levels().drop(columns=[drop])
    schema = infer_schema(data, target, task, [])
    assert schema.categorical == ["level"]
    X, y = prepare(data, schema, target)
    choose_categories(X, schema, DEFAULT_MAX_CATEGORIES)
    args = parse_args(["--target", target, "--model", model])
    pipeline = fit(
        build_pipeline(schema, make_estimator(task, model, args.estimator, args.seed)), X, y
    )
    path = tmp_path / "model.onnx"
    onnx.save(to_onnx(pipeline, schema, task), path)
    unseen = X.head(20).assign(level=["L99", ""] * 10)  # unseen and missing categories too
    rows = pd.concat([X, unseen], ignore_index=True)
    reference = predict_sklearn(pipeline, rows, task)
    graph = predict_onnx(session(path), feeds_for(rows, schema), task)
    # Trees compare the float32 graph's scaled inputs with thresholds fitted in float64, so a
    # row lying on a threshold can take the other branch: judge the rows, not the worst one.
    if task == "classification":
        assert parity(reference, graph, task).label_agreement == 1.0
        assert reference.probabilities is not None and graph.probabilities is not None
        rows_off = np.abs(reference.probabilities - graph.probabilities).max(axis=1) > 1e-4
    else:
        rows_off = np.abs(reference.labels - graph.labels) > 1e-3 * float(np.abs(y).max())
    assert rows_off.mean() <= 0.01, f"{rows_off.sum()} of {len(rows)} rows differ"


def test_dynamic_quantization_is_refused_with_the_reason() -> None:
    with pytest.raises(TrainingError, match="depend on the other rows"):
        parse_args(["--target", "y", "--quantization", "dynamic"])


def _breast_cancer_feeds(model_dir: Path) -> dict[str, np.ndarray]:
    from onnxkit.contract.manifest import load_manifest
    from onnxkit.datasets import bundled

    frame = pd.read_csv(bundled("breast_cancer").path)
    return {
        feature.onnx_input: frame[[feature.name]].to_numpy(np.float32)
        for feature in load_manifest(model_dir).signature.features
    }


def test_probe_rejects_dynamic_int8_next_to_an_extreme_row_and_passes_weight_int8(
    train_artifact: Callable[..., Path], tmp_path: Path
) -> None:
    model_dir = train_artifact("breast_cancer", model="mlp", quantization="none")
    fp32 = model_dir / "model.onnx"
    feeds = _breast_cancer_feeds(model_dir)
    # A copy of the first row with a valid but extreme "mean area".
    extreme = {name: values[:1].copy() for name, values in feeds.items()}
    extreme["mean_area"][0, 0] = 1e6
    quantize_dynamic(fp32, tmp_path / "dynamic.onnx", weight_type=QuantType.QInt8)
    dynamic = row_independence(tmp_path / "dynamic.onnx", feeds, extreme, "classification")
    assert not dynamic.passed
    assert dynamic.labels_changed > 0 and dynamic.max_abs_diff_extreme > 0.1
    assert "depend on the other rows" in (probe_problem(dynamic) or "")
    assert quantize(fp32, tmp_path / "weight.onnx", "weight") == {"MatMul": 2}
    weight = row_independence(tmp_path / "weight.onnx", feeds, extreme, "classification")
    assert weight.passed, weight
    assert weight.max_abs_diff_alone == weight.max_abs_diff_extreme == 0.0
    assert row_independence(fp32, feeds, extreme, "classification").passed


def test_weight_int8_is_folded_to_the_fp32_graph_at_load(
    train_artifact: Callable[..., Path], tmp_path: Path
) -> None:
    import onnxruntime as ort

    fp32 = (
        train_artifact("breast_cancer", model="mlp", quantization="none", compression="none")
        / "model.onnx"
    )
    quantize(fp32, tmp_path / "weight.onnx", "weight")
    stored = {i.name: i.data_type for i in onnx.load(tmp_path / "weight.onnx").graph.initializer}
    assert sum(kind == TensorProto.INT8 for kind in stored.values()) == 2
    assert (tmp_path / "weight.onnx").stat().st_size < 0.5 * fp32.stat().st_size
    optimized = {}
    for name, path in (("fp32", fp32), ("weight", tmp_path / "weight.onnx")):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"{name}.optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized[name] = op_counts(onnx.load(tmp_path / f"{name}.optimized.onnx"))
    # The Cast and Mul that restore the weights are constant-folded: the fp32 kernels run.
    assert optimized["weight"] == optimized["fp32"]


def test_the_probe_bound_grows_with_the_row_s_length_but_stays_far_below_dynamic_int8() -> None:
    from training_jobs.decision import ROW_BOUND, row_bound

    assert row_bound(1) == ROW_BOUND
    assert row_bound(50) > 1.07e-6 and row_bound(800) > 1.34e-6  # measured batch/one-row gaps
    assert row_bound(10_000) < 1e-3  # dynamic int8 differs by more than 0.1 (the test above)


def test_a_wide_logistic_regression_trains_its_batch_and_one_row_kernels_agree(
    tmp_path: Path,
) -> None:
    """800 numeric features: float32 sums in another order differ by ~1e-6, which the flat
    1e-6 bound refused ("no variant can be served"); the scaled bound serves it."""
    from onnxkit.local.training import arguments
    from training_jobs import train

    rng = np.random.default_rng(0)
    features = 800
    data = rng.normal(size=(2000, features)) * rng.uniform(0.1, 100, size=features)
    label = (data[:, 0] / data[:, 0].std() + data[:, 1] / data[:, 1].std() > 0).astype(int)
    source = tmp_path / "wide.csv"
    with source.open("w") as handle:
        handle.write(",".join([*(f"x{i}" for i in range(features)), "label"]) + "\n")
        np.savetxt(handle, np.column_stack([data, label]), delimiter=",", fmt="%.6g")
    argv = arguments(
        {"target": "label", "model": "logistic_regression", "train": str(source),
         "model-dir": str(tmp_path / "model"), "output-dir": str(tmp_path / "output"),
         "latency-runs": "0"}
    )  # fmt: skip
    assert train.main(argv) == 0
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    probe = manifest["variants"]["fp32"]["row_independence"]
    assert probe["passed"] and probe["bound"] > 1e-6


def test_data_too_big_for_the_instance_fails_first_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not an out-of-memory kill minutes in: the size found and the memory it needs, at once,
    as train.py's one failure line (SageMaker's FailureReason)."""
    from onnxkit.contract.layout import FAILURE_FILE
    from onnxkit.datasets import bundled
    from onnxkit.local.training import arguments
    from training_jobs import data, train

    source = bundled("breast_cancer")
    available = data.BASE_MEMORY + data.MEMORY_PER_CSV_BYTE * source.path.stat().st_size
    monkeypatch.setattr("training_jobs.job.available_memory", lambda: available - 1)
    argv = arguments(
        {"target": source.target, "model": "logistic_regression", "train": str(source.path),
         "model-dir": str(tmp_path / "model"), "output-dir": str(tmp_path / "output"),
         "latency-runs": "0"}
    )  # fmt: skip
    assert train.main(argv) != 0
    line = (tmp_path / "output" / FAILURE_FILE).read_text().strip()
    assert "\n" not in line and "GB of CSV" in line and "training.instance_type" in line
    assert not (tmp_path / "model" / "model.onnx").exists()
    # With one byte more it trains.
    monkeypatch.setattr("training_jobs.job.available_memory", lambda: available)
    assert train.main(argv) == 0


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris", "diabetes"])
def test_a_forests_size_counts_what_its_conversion_lists(dataset: str) -> None:
    """Nodes and leaf weights as skl2onnx writes them: one weight a leaf for two classes or a
    value, one a class for more (what the memory estimate is measured against)."""
    from skl2onnx import to_onnx as skl2onnx_to_onnx

    from onnxkit.datasets import bundled
    from training_jobs.compress import forest_size
    from training_jobs.estimators import EstimatorSettings, make_estimator

    source = bundled(dataset)
    frame = pd.read_csv(source.path)
    X = frame.drop(columns=source.target).to_numpy(np.float32)
    task = "regression" if dataset == "diabetes" else "classification"
    forest = make_estimator(task, "random_forest", EstimatorSettings(n_estimators=7), seed=0)
    forest.fit(X, frame[source.target])
    size = forest_size(forest)
    assert size is not None and size.trees == 7
    graph = skl2onnx_to_onnx(
        forest, X[:1], options={id(forest): {"zipmap": False}} if task != "regression" else None
    )
    (ensemble,) = [n for n in graph.graph.node if n.op_type.startswith("TreeEnsemble")]
    attributes = {a.name: a for a in ensemble.attribute}
    assert size.nodes == len(attributes["nodes_nodeids"].ints)
    weights = attributes["class_weights" if task != "regression" else "target_weights"]
    assert size.leaf_weights == len(weights.floats)
    assert forest_size(make_estimator(task, "mlp", EstimatorSettings(), seed=0)) is None


def test_a_forest_too_big_to_convert_fails_after_its_fit_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forest's size follows its data: one that conversion would need more memory for than
    is left fails with its size and that memory, before converting, not by an out-of-memory
    kill; the data check before reading still passes."""
    from onnxkit.contract.layout import FAILURE_FILE
    from onnxkit.datasets import bundled
    from onnxkit.local.training import arguments
    from training_jobs import train
    from training_jobs.data import forest_memory_problem

    source = bundled("breast_cancer")
    left = iter([10**12, 10**5])  # before reading: plenty; after the fit: 100 kB
    monkeypatch.setattr("training_jobs.job.available_memory", lambda: next(left))
    argv = arguments(
        {"target": source.target, "model": "random_forest", "train": str(source.path),
         "model-dir": str(tmp_path / "model"), "output-dir": str(tmp_path / "output"),
         "latency-runs": "0", "n-estimators": "10"}
    )  # fmt: skip
    assert train.main(argv) != 0
    line = (tmp_path / "output" / FAILURE_FILE).read_text().strip()
    assert "\n" not in line and "tree nodes" in line and "training.instance_type" in line
    assert "searching for a smaller variant" in line  # compression=auto converts more
    assert not (tmp_path / "model" / "model.onnx").exists()
    nodes = int(
        re.search(r"forest: 10 trees, ([0-9,]+) nodes", capsys.readouterr().out)[1].replace(",", "")
    )
    assert f"{nodes:,} tree nodes" in line
    # The estimate: per node, more when the search runs; per leaf weight.
    assert forest_memory_problem(nodes, nodes, True, None) is None  # unknown memory: no guess
    needed = 1150 * nodes + 250 * nodes
    assert forest_memory_problem(nodes, nodes, True, needed) is None
    assert forest_memory_problem(nodes, nodes, True, needed - 1) is not None
    assert forest_memory_problem(nodes, nodes, False, needed - 300 * nodes) is None
    # Unknown memory after the fit: it trains.
    left = iter([10**12, None])
    assert train.main(argv) == 0


def test_a_gzip_file_counts_its_uncompressed_bytes(tmp_path: Path) -> None:
    import gzip

    from training_jobs.data import memory_problem
    from training_jobs.table import csv_size

    text = b"a,b\n" + b"1,2\n" * 100_000
    (tmp_path / "x.csv.gz").write_bytes(gzip.compress(text))
    assert csv_size(tmp_path / "x.csv.gz") == len(text)
    assert memory_problem(10**9, None) is None  # unknown memory: no guess
    assert memory_problem(10**6, 10**12) is None


def test_the_forest_uses_every_core_and_is_the_same_forest_as_on_one() -> None:
    from training_jobs.estimators import make_estimator
    from training_jobs.hyperparameters import parse_args

    hp = parse_args(["--target", "y"])
    forest = make_estimator("classification", "random_forest", hp.estimator, seed=3)
    assert forest.n_jobs == -1
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(600, 8)), rng.integers(0, 2, size=600)
    serial = make_estimator("classification", "random_forest", hp.estimator, seed=3)
    serial.set_params(n_jobs=1)
    parallel_proba = forest.fit(X, y).predict_proba(X)
    assert np.array_equal(parallel_proba, serial.fit(X, y).predict_proba(X))


def test_a_forest_on_large_data_is_bounded_and_on_small_data_is_the_default() -> None:
    from training_jobs.estimators import LARGE_FOREST_ROWS, REGRESSION_FOREST_ROWS, make_estimator
    from training_jobs.hyperparameters import parse_args

    hp = parse_args(["--target", "y"])
    small = make_estimator(
        "classification", "random_forest", hp.estimator, 3, rows=LARGE_FOREST_ROWS
    )
    assert (small.max_samples, small.min_samples_leaf, small.n_jobs) == (None, 1, -1)
    # A regression tree keeps a leaf a row: above REGRESSION_FOREST_ROWS, 5 rows a leaf.
    small = make_estimator(
        "regression", "random_forest", hp.estimator, 3, rows=REGRESSION_FOREST_ROWS
    )
    assert (small.max_samples, small.min_samples_leaf, small.n_jobs) == (None, 1, -1)
    middle = make_estimator(
        "regression", "random_forest", hp.estimator, 3, rows=REGRESSION_FOREST_ROWS + 1
    )
    assert (middle.max_samples, middle.min_samples_leaf) == (None, 5)
    for task in ("classification", "regression"):
        large = make_estimator(task, "random_forest", hp.estimator, 3, rows=LARGE_FOREST_ROWS + 1)
        assert (large.max_samples, large.min_samples_leaf) == (LARGE_FOREST_ROWS, 5)
        # Each tree draws LARGE_FOREST_ROWS rows: fewer rows than that would be refused.
        assert large.max_samples <= LARGE_FOREST_ROWS + 1
