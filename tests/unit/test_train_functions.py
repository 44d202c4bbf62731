"""The training job's pure functions, without running a job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from onnxkit.contract.metrics import METRIC_DEFINITIONS, metric_line, parse_metric_lines
from training_jobs import train


def test_hyperparameters_default_from_the_sagemaker_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
    monkeypatch.delenv("SM_CHANNEL_VALIDATION", raising=False)
    args = train.parse_args(
        [
            "--target",
            "y",
            "--n_estimators",
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
    assert (args.n_estimators, args.hidden_layer_sizes) == (7, (8, 4))


@pytest.mark.parametrize(
    "argv",
    [
        ["--target", "y", "--validation_fraction", "1.5"],
        ["--target", "y", "--hidden_layer_sizes", "a,b"],
        ["--target", "y", "--max_metric_drop", "-1"],
        [],
    ],
)
def test_bad_hyperparameters_raise_a_readable_error(argv: list[str]) -> None:
    with pytest.raises(train.TrainingError, match="bad hyperparameter"):
        train.parse_args(argv)


def frame(**columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame(
        {k: pd.Series(v, dtype=object).astype("string").astype(object) for k, v in columns.items()}
    ).replace({"<NA>": np.nan})


def test_schema_inference_numeric_categorical_and_task() -> None:
    data = frame(a=["1", "2", None, "4"], b=["x", "y", "x", None], y=["1", "0", "1", "0"])
    schema = train.infer_schema(data, "y", "auto", [])
    assert (schema.numeric, schema.categorical, schema.task) == (["a"], ["b"], "classification")
    assert train.infer_schema(data, "y", "auto", ["a"]).categorical == ["a", "b"]
    continuous = frame(a=["1", "2", "3", "4"], y=["0.5", "1.25", "2", "3.75"])
    assert train.infer_schema(continuous, "y", "auto", []).task == "regression"


def test_prepare_types_columns_as_the_graph_takes_them() -> None:
    data = frame(a=["1", None], b=["x", None], y=["p", "q"])
    schema = train.infer_schema(data, "y", "auto", [])
    X, y = train.prepare(data, schema, "y")
    assert X["a"].dtype == np.float32 and np.isnan(X["a"][1])
    assert list(X["b"]) == ["x", ""]
    assert list(y) == ["p", "q"]


def test_onnx_input_names_follow_skl2onnx_sanitizing() -> None:
    assert train.onnx_input_name("sepal length (cm)") == "sepal_length__cm_"
    assert train.onnx_input_name("plan") == "plan"


def test_metrics_for_perfect_predictions() -> None:
    y = np.array(["a", "b", "a", "b"])
    probabilities = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    scores = train.compute_metrics("classification", y, y, probabilities, ["a", "b"])
    assert scores["accuracy"] == scores["f1_macro"] == scores["roc_auc"] == 1.0
    assert scores["log_loss"] < 1e-6
    regression = train.compute_metrics(
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
    fixed = train.dedupe_opsets(broken)
    assert [(o.domain, o.version) for o in fixed.opset_import] == [("", 17)]
    onnx.save(fixed, tmp_path / "fixed.onnx")
    operators = train.quantize(tmp_path / "fixed.onnx", tmp_path / "int8.onnx", "weight")
    assert operators == {"MatMul": 1}


def test_judge_lists_every_reason_an_int8_graph_may_not_serve(tmp_path: Path) -> None:
    path = tmp_path / "int8.onnx"
    path.write_bytes(b"x" * 100)
    candidate = train.Candidate(
        "weight",
        path,
        {"MatMul": 2},
        metrics={"accuracy": 0.90},
        parity=train.Parity(rows=10, label_agreement=0.9, max_abs_diff=0.5),
    )
    tolerance = train.Tolerance(0.995, 0.005, 0.1)
    problems = train.judge(
        candidate, {"accuracy": 0.95}, 100, "accuracy", tolerance, "classification"
    )
    assert len(problems) == 4, problems
    assert train.judge(
        train.Candidate("weight", path, {}), {}, 100, "accuracy", tolerance, "classification"
    ) == ["no quantizable operators in the graph"]


def test_dynamic_quantization_is_refused_with_the_reason() -> None:
    with pytest.raises(train.TrainingError, match="depend on the other rows"):
        train.parse_args(["--target", "y", "--quantization", "dynamic"])


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
    dynamic = train.row_independence(tmp_path / "dynamic.onnx", feeds, extreme, "classification")
    assert not dynamic.passed
    assert dynamic.labels_changed > 0 and dynamic.max_abs_diff_extreme > 0.1
    assert "depend on the other rows" in (train.probe_problem(dynamic) or "")
    assert train.quantize(fp32, tmp_path / "weight.onnx", "weight") == {"MatMul": 2}
    weight = train.row_independence(tmp_path / "weight.onnx", feeds, extreme, "classification")
    assert weight.passed, weight
    assert weight.max_abs_diff_alone == weight.max_abs_diff_extreme == 0.0
    assert train.row_independence(fp32, feeds, extreme, "classification").passed


def test_weight_int8_is_folded_to_the_fp32_graph_at_load(
    train_artifact: Callable[..., Path], tmp_path: Path
) -> None:
    import onnxruntime as ort

    fp32 = train_artifact("breast_cancer", model="mlp", quantization="none") / "model.onnx"
    train.quantize(fp32, tmp_path / "weight.onnx", "weight")
    stored = {i.name: i.data_type for i in onnx.load(tmp_path / "weight.onnx").graph.initializer}
    assert sum(kind == TensorProto.INT8 for kind in stored.values()) == 2
    assert (tmp_path / "weight.onnx").stat().st_size < 0.5 * fp32.stat().st_size
    optimized = {}
    for name, path in (("fp32", fp32), ("weight", tmp_path / "weight.onnx")):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"{name}.optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized[name] = train.op_counts(onnx.load(tmp_path / f"{name}.optimized.onnx"))
    # The Cast and Mul that restore the weights are constant-folded: the fp32 kernels run.
    assert optimized["weight"] == optimized["fp32"]
