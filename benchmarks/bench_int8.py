"""int8 designs compared: served size, label agreement, 1000-row latency and row independence.

Trains an fp32 MLP with the real job (quantization=none) on each bundled dataset, at the
default (64,32) and at 256 hidden units per layer, then builds each int8 candidate from the
same fp32 graph: dynamic (onnxruntime's quantize_dynamic, one activation scale per call), weight
with DequantizeLinear (fused by onnxruntime into MatMulNBits), weight with Cast+Mul (the job's
``quantize_weights``, folded to fp32 at load) and static QDQ with 256 calibration rows. Latency
is the median of paired, interleaved ratios against fp32 (1000 rows, 2 threads); the probe is
the job's own ``row_independence``. Usage: .venv/bin/python benchmarks/bench_int8.py
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnxruntime.quantization import QuantType, quantize_dynamic

from onnxkit.contract.manifest import Manifest, load_manifest
from onnxkit.datasets import bundled
from onnxkit.local.training import arguments
from training_jobs import train
from training_jobs.data import Schema
from training_jobs.decision import extreme_rows, row_independence
from training_jobs.export import quantize, quantize_weights

CASES = [(name, "64,32") for name in ("breast_cancer", "customer_churn", "diabetes", "iris")] + [
    ("breast_cancer", "256,256"),
    ("customer_churn", "256,256"),
    ("diabetes", "256,256"),
    ("iris", "256"),
]


def dequantize_linear(src: Path, dst: Path) -> None:
    """The weight-only design with DequantizeLinear in place of Cast and Mul."""
    model, _ = quantize_weights(onnx.load(src))
    nodes = []
    for original in model.graph.node:
        node = original
        if node.op_type == "Cast" and node.input[0].endswith("_int8"):
            continue
        if node.op_type == "Mul" and node.input[0].endswith("_cast"):
            base = node.output[0]
            scale = next(i for i in model.graph.initializer if i.name == f"{base}_scale")
            values = onnx.numpy_helper.to_array(scale).ravel()
            scale.CopyFrom(onnx.numpy_helper.from_array(values, scale.name))
            node = onnx.helper.make_node(
                "DequantizeLinear", [f"{base}_int8", f"{base}_scale"], [base], axis=1
            )
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, dst)


def feeds_of(frame: pd.DataFrame, manifest: Manifest) -> dict[str, np.ndarray]:
    """One [N, 1] input per feature, as the job feeds the graph."""
    feeds = {}
    for feature in manifest.signature.features:
        column = frame[feature.name]
        if feature.kind == "numeric":
            numbers = pd.to_numeric(column, errors="coerce").to_numpy(np.float32)
            feeds[feature.onnx_input] = numbers.reshape(-1, 1)
        else:
            feeds[feature.onnx_input] = column.fillna("").astype(str).to_numpy(object)[:, None]
    return feeds


def session(path: Path) -> ort.InferenceSession:
    """The handler's kind of session: full optimization, 2 threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def paired_ratio(
    base: Callable[[], object], other: Callable[[], object], rounds: int = 31
) -> float:
    """Median of other/base over interleaved rounds of 5 calls each."""
    ratios = []
    for _ in range(rounds):
        times = []
        for call in (base, other):
            start = time.perf_counter_ns()
            for _ in range(5):
                call()
            times.append(time.perf_counter_ns() - start)
        ratios.append(times[1] / times[0])
    return float(np.median(ratios))


def main() -> None:
    """Print one markdown row per dataset, hidden sizes and design."""
    logging.getLogger().setLevel(logging.ERROR)
    print(
        "| dataset | hidden | design | size / fp32 | label agreement vs fp32 | max diff vs fp32 "
        "| 1000-row latency / fp32 | probe max diff (alone / extreme) | probe |"
    )
    print("|" + "---|" * 9)
    for dataset, hidden in CASES:
        data = bundled(dataset)
        with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(io.StringIO()):
            root = Path(scratch)
            hyper = {"target": data.target, "model": "mlp", "train": str(data.path)}
            hyper |= {"model-dir": scratch, "latency-runs": "0", "quantization": "none"}
            assert train.main(arguments({**hyper, "hidden_layer_sizes": hidden})) == 0
            manifest = load_manifest(root)
            fp32 = root / "model.onnx"
            frame = pd.read_csv(data.path)
            feeds = feeds_of(frame, manifest)
            big = {name: np.resize(values, (1000, 1)) for name, values in feeds.items()}
            schema = Schema(
                numeric=[f.name for f in manifest.signature.features if f.kind == "numeric"],
                categorical=[f.name for f in manifest.signature.features if f.kind != "numeric"],
                features=manifest.signature.feature_names,
                task=manifest.task,
            )
            X = frame[schema.features].copy()
            for column in schema.categorical:
                X[column] = X[column].fillna("").astype(str)
            extreme = extreme_rows(X, schema)
            designs = {"fp32": fp32}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(fp32, root / "dynamic.onnx", weight_type=QuantType.QInt8)
            designs["dynamic"] = root / "dynamic.onnx"
            dequantize_linear(fp32, root / "dql.onnx")
            designs["weight, DequantizeLinear"] = root / "dql.onnx"
            quantize(fp32, root / "weight.onnx", "weight")
            designs["weight, Cast+Mul (served)"] = root / "weight.onnx"
            rows = np.random.default_rng(0).choice(len(frame), min(256, len(frame)), replace=False)
            calibration = {name: values[rows] for name, values in feeds.items()}
            quantize(fp32, root / "qdq.onnx", "qdq", calibration)
            designs["static QDQ"] = root / "qdq.onnx"
            base = session(fp32)
            base_out = base.run(None, feeds)
            for name, path in designs.items():
                sess = session(path)
                out = sess.run(None, feeds)
                agree = (
                    f"{np.mean(np.asarray(out[0]) == np.asarray(base_out[0])):.4f}"
                    if manifest.task == "classification"
                    else "-"
                )
                diff = np.max(np.abs(np.asarray(out[-1]) - np.asarray(base_out[-1])))
                ratio = paired_ratio(lambda: base.run(None, big), lambda: sess.run(None, big))  # noqa: B023
                probe = row_independence(path, feeds, extreme, manifest.task)
                cells = [
                    dataset,
                    hidden,
                    name,
                    f"{path.stat().st_size / fp32.stat().st_size:.3f}",
                    agree,
                    f"{diff:.3g}",
                    f"{ratio:.2f}",
                    f"{probe.max_abs_diff_alone:.3g} / {probe.max_abs_diff_extreme:.3g}",
                    "pass" if probe.passed else f"**fail** ({probe.labels_changed} labels)",
                ]
                print("| " + " | ".join(cells) + " |", file=sys.__stdout__, flush=True)


if __name__ == "__main__":
    main()
