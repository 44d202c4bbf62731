"""ONNX conversion of the fitted Pipeline, int8 quantization, and the job's ONNX sessions.

The graph takes one [N, 1] input per feature (float32 numeric, string categorical) and, for
classification, returns the label and a plain probability tensor (no ZipMap). Quantization
writes an int8 copy of the graph; whether it may serve is decided in ``decision``.

onnxruntime.quantization logs advice through the root logger: the job's entry point
(``train.main``) quiets it; nothing here configures logging.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from training_jobs.data import Schema
from training_jobs.errors import TrainingError

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
# Weight matrices smaller than this stay fp32: int8 saves less than its scales and nodes cost.
MIN_QUANTIZED_WEIGHTS = 64


def onnx_input_name(column: str) -> str:
    """The graph input name skl2onnx gives a column (it keeps only [A-Za-z0-9_])."""
    return "".join(ch if (ch.isalnum() and ch.isascii()) or ch == "_" else "_" for ch in column)


def dedupe_opsets(model: onnx.ModelProto) -> onnx.ModelProto:
    """Keep one opset_import per domain (the highest).

    skl2onnx 1.20 can write the default domain twice (seen with zipmap=False), which
    onnxruntime.quantization.quantize_dynamic rejects.
    """
    highest: dict[str, int] = {}
    for entry in model.opset_import:
        highest[entry.domain] = max(entry.version, highest.get(entry.domain, 0))
    if len(highest) != len(model.opset_import):
        del model.opset_import[:]
        for domain, version in sorted(highest.items()):
            model.opset_import.append(onnx.helper.make_opsetid(domain, version))
    return model


def to_onnx(pipeline: Pipeline, schema: Schema, task: str) -> onnx.ModelProto:
    """Convert the fitted Pipeline: one input per feature, plain probability tensor, no ZipMap."""
    initial_types: list[tuple[str, Any]] = [
        (
            onnx_input_name(column),
            FloatTensorType([None, 1]) if column in schema.numeric else StringTensorType([None, 1]),
        )
        for column in schema.features
    ]
    names = [name for name, _ in initial_types]
    if len(set(names)) != len(names):
        raise TrainingError(
            "two column names differ only in characters ONNX drops; rename one of them"
        )
    estimator = pipeline.steps[-1][1]
    options = {id(estimator): {"zipmap": False}} if task == "classification" else {}
    # The ColumnTransformer selects columns by their original names; skl2onnx matches those
    # against the (sanitized) input names, so it is fed a pipeline whose columns use them.
    renamed = _with_onnx_column_names(pipeline)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_sklearn(
            renamed, initial_types=initial_types, options=options, target_opset=TARGET_OPSET
        )
    model = dedupe_opsets(model)
    onnx.checker.check_model(model)
    return model


def _with_onnx_column_names(pipeline: Pipeline) -> Pipeline:
    from sklearn.base import clone  # noqa: PLC0415 - only needed here

    preprocess: ColumnTransformer = pipeline.named_steps["preprocess"]
    if all(onnx_input_name(c) == c for _, _, cols in preprocess.transformers for c in cols):
        return pipeline
    copy = clone(pipeline)
    fitted = copy.named_steps["preprocess"]
    # Reuse the fitted state; only the column selectors change.
    fitted.__dict__.update(preprocess.__dict__)
    fitted.transformers = [
        (n, t, [onnx_input_name(c) for c in cols]) for n, t, cols in preprocess.transformers
    ]
    fitted.transformers_ = [
        (n, t, [onnx_input_name(c) for c in cols] if isinstance(cols, list) else cols)
        for n, t, cols in preprocess.transformers_
    ]
    fitted.feature_names_in_ = np.array(
        [onnx_input_name(c) for c in preprocess.feature_names_in_], dtype=object
    )
    copy.steps[-1] = pipeline.steps[-1]
    return copy


def op_counts(model: onnx.ModelProto) -> Counter[str]:
    """How many nodes of each operator type a graph has."""
    return Counter(node.op_type for node in model.graph.node)


class _Rows(CalibrationDataReader):
    """Feeds calibration rows one at a time to quantize_static."""

    def __init__(self, feeds: dict[str, np.ndarray]) -> None:
        rows = len(next(iter(feeds.values())))
        self._iter: Iterator[dict[str, np.ndarray]] = (
            {name: values[i : i + 1] for name, values in feeds.items()} for i in range(rows)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)


def quantize(
    fp32_path: Path, int8_path: Path, method: str, calibration: dict[str, np.ndarray] | None = None
) -> dict[str, int]:
    """Quantize to int8 and return the operators that were replaced (op type -> count)."""
    if method == "weight":
        model, replaced = quantize_weights(onnx.load(fp32_path))
        onnx.save(model, int8_path)
        return replaced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method != "qdq":
            raise ValueError(f"unknown quantization method {method!r}")
        else:
            if calibration is None:
                raise ValueError("QDQ quantization needs calibration rows")
            quantize_static(
                fp32_path,
                int8_path,
                _Rows(calibration),
                quant_format=QuantFormat.QDQ,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                op_types_to_quantize=["MatMul", "Gemm"],
            )
    return _qdq_wrapped_ops(onnx.load(int8_path))


def quantize_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Weight-only int8: each MatMul/Gemm weight matrix is stored as int8 with one float scale
    per output column (symmetric, +/-127) and restored by Cast and Mul.

    onnxruntime constant-folds Cast and Mul of initializers when it loads the graph, so the
    session runs the fp32 graph's own kernels on fp32 activations: the same speed, and a row's
    outputs never depend on the other rows. A DequantizeLinear instead is fused into
    MatMulNBits, measured about 2x slower on 1000 rows with twice the error.
    """
    initializers = {init.name: init for init in model.graph.initializer}
    graph_inputs = {value.name for value in model.graph.input}
    nodes: list[onnx.NodeProto] = []
    replaced: Counter[str] = Counter()
    done: set[str] = set()
    for node in model.graph.node:
        name = node.input[1] if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 else ""
        init = initializers.get(name)
        if init is not None and name not in graph_inputs and name not in done:
            weights = onnx.numpy_helper.to_array(init)
            if (
                weights.dtype == np.float32
                and weights.ndim == 2
                and weights.size >= MIN_QUANTIZED_WEIGHTS
            ):
                trans_b = node.op_type == "Gemm" and any(
                    a.name == "transB" and a.i for a in node.attribute
                )
                axis = 1 if trans_b else 0  # reduce over K, one scale per output column
                peak = np.max(np.abs(weights), axis=axis, keepdims=True)
                scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
                codes = np.clip(np.rint(weights / scale), -127, 127).astype(np.int8)
                model.graph.initializer.remove(init)
                model.graph.initializer.extend(
                    [
                        onnx.numpy_helper.from_array(codes, f"{name}_int8"),
                        onnx.numpy_helper.from_array(scale, f"{name}_scale"),
                    ]
                )
                nodes.append(
                    onnx.helper.make_node(
                        "Cast", [f"{name}_int8"], [f"{name}_cast"], to=onnx.TensorProto.FLOAT
                    )
                )
                nodes.append(
                    onnx.helper.make_node("Mul", [f"{name}_cast", f"{name}_scale"], [name])
                )
                replaced[node.op_type] += 1
                done.add(name)
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model, dict(replaced)


def _qdq_wrapped_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Operators fed by a DequantizeLinear: a QDQ graph keeps them, wrapped, not replaced."""
    dequantized = {
        out
        for node in model.graph.node
        if node.op_type == "DequantizeLinear"
        for out in node.output
    }
    wrapped = Counter(
        node.op_type
        for node in model.graph.node
        if node.op_type not in {"QuantizeLinear", "DequantizeLinear"}
        and dequantized.intersection(node.input)
    )
    return dict(wrapped)


def session(path: Path) -> ort.InferenceSession:
    """A single-threaded CPU session (deterministic, fair latency figures)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds_for(X: pd.DataFrame, schema: Schema) -> dict[str, np.ndarray]:
    """ONNX inputs for a feature frame: one [N, 1] array per column."""
    feeds = {}
    for column in schema.features:
        values = X[[column]].to_numpy()
        dtype = np.float32 if column in schema.numeric else object
        feeds[onnx_input_name(column)] = values.astype(dtype)
    return feeds
