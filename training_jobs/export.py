"""ONNX conversion of the fitted Pipeline, int8 quantization, and the job's ONNX sessions.

The graph takes one [N, 1] input per feature (float32 numeric, string categorical) and, for
classification, returns the label and a plain probability tensor (no ZipMap). Quantization
writes an int8 copy of the graph; whether it may serve is decided in ``decision``.

onnxruntime.quantization logs advice through the root logger: the job's entry point
(``train.main``) quiets it; nothing here configures logging.
"""

from __future__ import annotations

import functools
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from skl2onnx import convert_sklearn, update_registered_converter, update_registered_parser
from skl2onnx._parse import _parse_sklearn_column_transformer
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
from skl2onnx.operator_converters.scaler_op import convert_sklearn_scaler
from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes
from skl2onnx.shape_calculators.scaler import calculate_sklearn_scaler_output_shapes
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from training_jobs.columnwise import ColumnwiseImputer, ColumnwiseScaler, ColumnwiseTransformer
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
    register_columnwise()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_sklearn(
            renamed, initial_types=initial_types, options=options, target_opset=TARGET_OPSET
        )
    model = dedupe_opsets(model)
    onnx.checker.check_model(model)
    return model


@functools.cache  # once a process: skl2onnx's registry is global
def register_columnwise() -> None:
    """skl2onnx converts the columnwise imputer, scaler and transformer as the classes they
    extend (the fitted attributes are the same; only how scikit-learn computes them differs)."""
    update_registered_converter(
        ColumnwiseImputer,
        "OnnxkitColumnwiseImputer",
        calculate_sklearn_imputer_output_shapes,
        convert_sklearn_imputer,
    )
    # The transformer's parser is skl2onnx's for ColumnTransformer (it reads the same fitted
    # attributes; only how the outputs are stacked in scikit-learn differs).
    update_registered_parser(ColumnwiseTransformer, _parse_sklearn_column_transformer)
    update_registered_converter(
        ColumnwiseScaler,
        "OnnxkitColumnwiseScaler",
        calculate_sklearn_scaler_output_shapes,
        convert_sklearn_scaler,
        options={"div": ["std", "div", "div_cast"]},  # StandardScaler's, as skl2onnx lists
    )


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


# --------------------------------------------------------------------------- TreeEnsemble 5

# ai.onnx.ml opset 5's TreeEnsemble: the same trees as TreeEnsembleClassifier/Regressor (opset
# 3, what skl2onnx 1.20 writes), with thresholds, modes and leaf weights as packed tensors
# instead of repeated attributes (no "BRANCH_LEQ" string per node). Whether onnxruntime serves
# it smaller or faster is measured, per model, by the compression search.
TREE_ENSEMBLE_OPSET = 5
_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4,
          "BRANCH_NEQ": 5}  # fmt: skip
_AGGREGATES = {"AVERAGE": 0, "SUM": 1, "MIN": 2, "MAX": 3}


def tree_ensemble_v5(model: onnx.ModelProto) -> tuple[onnx.ModelProto | None, str]:
    """The graph with its tree ensemble re-encoded as ai.onnx.ml TreeEnsemble (opset 5), and
    what was done; None and why not when the graph has no ensemble it can re-encode (a leaf
    with weights for several classes, as a multiclass forest of impure leaves has, or a
    post-transform other than the binary logistic and softmax of boosting)."""
    found = [n for n in model.graph.node if n.op_type in _ENSEMBLES]
    if len(found) != 1:
        return None, "no single TreeEnsembleClassifier/Regressor in the graph"
    node = found[0]
    a = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
    classifier = node.op_type == "TreeEnsembleClassifier"
    prefix = "class" if classifier else "target"
    aggregate = a.get("aggregate_function", b"SUM").decode()
    try:
        trees = _trees(a, prefix, additive=aggregate == "SUM")
    except ValueError as error:
        return None, str(error)
    post = a.get("post_transform", b"NONE").decode()
    labels = a.get("classlabels_int64s") or [s.decode() for s in a.get("classlabels_strings", [])]
    targets = max(a[f"{prefix}_ids"]) + 1
    if classifier and not (
        (post == "NONE" and len(labels) == 2 and targets == 1)
        or (post == "LOGISTIC" and len(labels) == 2 and targets == 1)
        or (post in ("SOFTMAX", "NONE") and len(labels) == targets > 2)
    ):
        shape = f"{len(labels)} classes, {targets} scores, post_transform {post}"
        return None, f"an ensemble of {shape}"
    if not classifier and post != "NONE":
        return None, f"a regression ensemble with post_transform {post}"
    name = node.name or "ensemble"
    scores = f"{name}_scores"
    nodes = [
        onnx.helper.make_node(
            "TreeEnsemble",
            [node.input[0]],
            [scores],
            domain="ai.onnx.ml",
            name=name,
            n_targets=targets,
            aggregate_function=_AGGREGATES[aggregate],
            post_transform=0,
            **trees,
        )
    ]
    initializers = []
    base = a.get("base_values")
    if base:
        initializers.append(
            onnx.numpy_helper.from_array(np.array([base], np.float32), f"{name}_base")
        )
        nodes.append(onnx.helper.make_node("Add", [scores, f"{name}_base"], [f"{scores}_based"]))
        scores = f"{scores}_based"
    if classifier:
        nodes += _classifier_outputs(name, scores, post, labels, list(node.output), initializers)
    else:
        nodes.append(onnx.helper.make_node("Identity", [scores], [node.output[0]]))
    graph_nodes = list(model.graph.node)
    at = graph_nodes.index(node)
    encoded = onnx.ModelProto()
    encoded.CopyFrom(model)
    del encoded.graph.node[:]
    encoded.graph.node.extend([*graph_nodes[:at], *nodes, *graph_nodes[at + 1 :]])
    encoded.graph.initializer.extend(initializers)
    for entry in encoded.opset_import:
        if entry.domain == "ai.onnx.ml":
            entry.version = TREE_ENSEMBLE_OPSET
    onnx.checker.check_model(encoded)
    leaves = sum(trees["nodes_trueleafs"]) + sum(trees["nodes_falseleafs"])
    shared = f"{leaves} leaves sharing {len(trees['leaf_targetids'])} leaf entries"
    return encoded, (
        f"{node.op_type} (ai.onnx.ml 3) re-encoded as TreeEnsemble (ai.onnx.ml 5), {shared}"
    )


_ENSEMBLES = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")


def save_packed(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model`` with every repeated int64 attribute packed: one length-delimited run of
    varints instead of a field tag before each value (onnx.proto is proto2 and does not
    declare ``AttributeProto.ints`` packed, so ``onnx.save`` writes a tag per value). Protobuf
    parsers must read either encoding of a repeated scalar field, so onnx and onnxruntime
    load the same model; a TreeEnsemble's node columns lose a byte per value."""
    path.write_bytes(
        _packed_model_class().FromString(model.SerializeToString()).SerializeToString()
    )


@functools.cache
def _packed_model_class() -> type[Message]:
    """onnx's ModelProto, its AttributeProto.ints declared packed (a private copy of the
    descriptors, so onnx's own classes are untouched)."""
    proto = descriptor_pb2.FileDescriptorProto()
    onnx.ModelProto.DESCRIPTOR.file.CopyToProto(proto)
    proto.name = f"packed/{proto.name}"
    attribute = next(m for m in proto.message_type if m.name == "AttributeProto")
    next(f for f in attribute.field if f.name == "ints").options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{proto.package}.ModelProto")
    )


def _trees(a: dict[str, Any], prefix: str, additive: bool) -> dict[str, Any]:
    """The opset-5 attributes of the trees in opset-3 attributes ``a`` (ValueError when a
    leaf has several non-zero weights, or several at all unless ``additive``, or a tree is a
    single leaf).

    skl2onnx gives each leaf of a multiclass forest one weight per class; a fully grown
    tree's leaves are pure, so all but one are 0, and where leaves are summed (skl2onnx's
    forests) an added 0 changes no score: the leaf keeps its one non-zero weight.

    Laid out for size, answering the same: the leaf arrays hold each distinct (target,
    weight) pair once, the most referenced first, and every node whose child is such a leaf
    points at that one entry (a fully grown binary forest has two); an int64 attribute is a
    varint per value, so a small leaf id takes 1 byte where a leaf's position took 3. Interior
    nodes are numbered depth first, tree by tree, and an all-false
    ``nodes_missing_value_tracks_true`` (the default) is left out. onnxruntime, like the
    ONNX reference, walks each tree from its root and copies the leaf entry it reaches.
    """
    entries: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for tree, node, target, weight in zip(
        a[f"{prefix}_treeids"], a[f"{prefix}_nodeids"], a[f"{prefix}_ids"],
        a[f"{prefix}_weights"], strict=True,
    ):  # fmt: skip
        entries.setdefault((tree, node), []).append((target, weight))
    weights: dict[tuple[int, int], tuple[int, float]] = {}
    for place, listed in entries.items():
        kept = [e for e in listed if e[1] != 0.0] if additive and len(listed) > 1 else listed
        if len(kept) > 1:
            raise ValueError("a leaf holds weights for several classes (opset 5: one per leaf)")
        weights[place] = kept[0] if kept else listed[0]
    missing = a.get("nodes_missing_value_tracks_true") or [0] * len(a["nodes_modes"])
    interior: dict[tuple[int, int], tuple[Any, ...]] = {}
    leaves: set[tuple[int, int]] = set()
    rows = zip(
        a["nodes_treeids"], a["nodes_nodeids"], a["nodes_modes"], a["nodes_featureids"],
        a["nodes_values"], a["nodes_truenodeids"], a["nodes_falsenodeids"], missing,
        strict=True,
    )  # fmt: skip
    for tree, node, raw_mode, feature, value, true_id, false_id, tracks in rows:
        mode = raw_mode.decode()
        if mode == "LEAF":
            leaves.add((tree, node))
        elif mode in _MODES:
            interior[(tree, node)] = (feature, value, _MODES[mode], true_id, false_id, tracks)
        else:
            raise ValueError(f"a {mode} node")
    tree_ids = sorted(set(a["nodes_treeids"]))
    if any((tree, 0) not in interior for tree in tree_ids):
        raise ValueError("a tree that is a single leaf")
    # The interior nodes depth first from each root; a leaf is its (target, weight bits):
    # bits, so that 0.0 and -0.0 (or two NaNs) stay apart.
    order: list[tuple[int, int]] = []
    for tree in tree_ids:
        stack = [0]
        while stack:
            node = stack.pop()
            order.append((tree, node))
            _, _, _, true_id, false_id, _ = interior[(tree, node)]
            stack.extend(c for c in (false_id, true_id) if (tree, c) in interior)
    position = {place: at for at, place in enumerate(order)}
    pair_of = {
        place: (target, np.float32(weight).tobytes())
        for place in leaves
        for target, weight in [weights.get(place, (0, 0.0))]
    }
    referenced = Counter(
        pair_of[(tree, child)]
        for tree, node in order
        for child in interior[(tree, node)][3:5]
        if (tree, child) in pair_of
    )
    # most_common keeps first-seen order among equal counts: deterministic ids.
    distinct = [pair for pair, _ in referenced.most_common()]
    leaf_id = {pair: at for at, pair in enumerate(distinct)}
    columns: dict[str, list[Any]] = {key: [] for key in _NODE_COLUMNS}
    for tree, node in order:
        feature, value, mode_id, true_id, false_id, tracks = interior[(tree, node)]
        children = []
        for child in (true_id, false_id):
            if (tree, child) in position:
                children += [position[(tree, child)], 0]
            elif (tree, child) in pair_of:
                children += [leaf_id[pair_of[(tree, child)]], 1]
            else:
                raise ValueError(f"tree {tree} node {node} points at a missing node {child}")
        for key, item in zip(
            _NODE_COLUMNS, (feature, value, mode_id, *children, tracks), strict=True
        ):
            columns[key].append(item)
    encoded = {
        "tree_roots": [position[(tree, 0)] for tree in tree_ids],
        "nodes_featureids": columns["featureids"],
        "nodes_splits": onnx.numpy_helper.from_array(np.array(columns["splits"], np.float32)),
        "nodes_modes": onnx.numpy_helper.from_array(np.array(columns["modes"], np.uint8)),
        "nodes_truenodeids": columns["truenodeids"],
        "nodes_trueleafs": columns["trueleafs"],
        "nodes_falsenodeids": columns["falsenodeids"],
        "nodes_falseleafs": columns["falseleafs"],
        "leaf_targetids": [target for target, _ in distinct],
        "leaf_weights": onnx.numpy_helper.from_array(
            np.frombuffer(b"".join(bits for _, bits in distinct), np.float32)
        ),
    }
    if any(columns["missing"]):
        encoded["nodes_missing_value_tracks_true"] = columns["missing"]
    return encoded


_NODE_COLUMNS = (
    "featureids", "splits", "modes", "truenodeids", "trueleafs", "falsenodeids", "falseleafs",
    "missing",
)  # fmt: skip


def _classifier_outputs(
    name: str,
    scores: str,
    post: str,
    labels: list[Any],
    outputs: list[str],
    initializers: list[onnx.TensorProto],
) -> list[onnx.NodeProto]:
    """Probabilities and labels from the ensemble's scores, as TreeEnsembleClassifier gives
    them: binary [1 - p, p] (p the score, or its logistic), else the scores or their
    softmax; the label is
    the class of the largest probability (the first on a tie)."""
    make = onnx.helper.make_node
    probabilities = f"{name}_probabilities"
    nodes = []
    if len(labels) == 2:
        positive = scores
        if post == "LOGISTIC":
            nodes.append(make("Sigmoid", [scores], [f"{name}_p"]))
            positive = f"{name}_p"
        initializers.append(onnx.numpy_helper.from_array(np.array(1.0, np.float32), f"{name}_1"))
        nodes.append(make("Sub", [f"{name}_1", positive], [f"{name}_q"]))
        nodes.append(make("Concat", [f"{name}_q", positive], [probabilities], axis=1))
    elif post == "SOFTMAX":
        nodes.append(make("Softmax", [scores], [probabilities], axis=1))
    else:  # a multiclass forest's summed votes are its probabilities
        nodes.append(make("Identity", [scores], [probabilities]))
    dtype = np.int64 if isinstance(labels[0], int) else object
    initializers.append(
        onnx.numpy_helper.from_array(np.array(labels, dtype=dtype), f"{name}_classes")
    )
    nodes.append(make("ArgMax", [probabilities], [f"{name}_best"], axis=1, keepdims=0))
    nodes.append(make("Gather", [f"{name}_classes", f"{name}_best"], [outputs[0]], axis=0))
    nodes.append(make("Identity", [probabilities], [outputs[1]]))
    return nodes
