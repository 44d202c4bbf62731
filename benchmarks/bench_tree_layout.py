"""The TreeEnsemble (ai.onnx.ml 5) re-encoding's layout on bench_compress's forest: what the
shared leaves and the packed file save, and what they cost onnxruntime to load and serve.

Fits the default random forest on ``make_classification(100,000 x 50, 10 informative, seed
0)`` through the job's own steps (as ``bench_compress.py`` does), converts it, and writes:

- ``ml5 one leaf per node``: opset 5 with one leaf entry per leaf node and an explicit
  all-false missing-value column, written by ``onnx.save`` (the layout before shared leaves,
  byte for byte the same size);
- ``ml5 shared leaves``: the job's re-encoding, written by ``onnx.save``;
- ``ml5 shared leaves, packed``: the same written by ``save_packed`` (what the job serves);
- ``fp32 opset 3``: skl2onnx's TreeEnsembleClassifier, the uncompressed file.

All four answer every held-out row the same (checked). Then each is loaded and called on
1,000 rows in interleaved rounds whose order flips (one thread, as the job measures): medians
of the per-round ratios to the first file (the layout before), with their range. Usage:

    .venv/bin/python benchmarks/bench_tree_layout.py [--rows 100000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import onnx

from benchmarks.bench_compress import paired, synthetic
from onnxkit.local.training import arguments
from training_jobs.estimators import build_pipeline, fit, make_estimator
from training_jobs.export import feeds_for, save_packed, session, to_onnx, tree_ensemble_v5
from training_jobs.hyperparameters import parse_args
from training_jobs.job import read_inputs


def one_leaf_per_node(encoded: onnx.ModelProto) -> onnx.ModelProto:
    """``encoded`` with a leaf entry of its own for every reference to a leaf and the
    missing-value column spelled out: the layout before leaves were shared."""
    model = onnx.ModelProto()
    model.CopyFrom(encoded)
    node = next(n for n in model.graph.node if n.op_type == "TreeEnsemble")
    a: dict[str, Any] = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
    targets, weights = a["leaf_targetids"], onnx.numpy_helper.to_array(a["leaf_weights"])
    new_targets: list[int] = []
    new_weights: list[float] = []
    for side in ("true", "false"):
        ids, leafs = a[f"nodes_{side}nodeids"], a[f"nodes_{side}leafs"]
        for i, leaf in enumerate(leafs):
            if leaf:
                new_targets.append(targets[ids[i]])
                new_weights.append(float(weights[ids[i]]))
                ids[i] = len(new_targets) - 1
    a["leaf_targetids"] = new_targets
    a["leaf_weights"] = onnx.numpy_helper.from_array(np.array(new_weights, np.float32))
    a.setdefault("nodes_missing_value_tracks_true", [0] * len(a["nodes_featureids"]))
    del node.attribute[:]
    node.attribute.extend(onnx.helper.make_attribute(k, v) for k, v in sorted(a.items()))
    onnx.checker.check_model(model)
    return model


def main() -> None:
    """Fit, write the four files, check their answers, print the paired table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        argv = arguments(
            {"target": "label", "model": "random_forest", "model-dir": str(root / "m"),
             "train": str(synthetic(args.rows, root))}
        )  # fmt: skip
        hp = parse_args(argv)
        inputs = read_inputs(hp)
        estimator = make_estimator(inputs.schema.task, hp.model, hp.estimator, hp.seed)
        pipeline = fit(
            build_pipeline(inputs.schema, estimator), inputs.X_train, inputs.y_train, curve=False
        )
        feeds = feeds_for(inputs.X_valid, inputs.schema)
        original = to_onnx(pipeline, inputs.schema, inputs.schema.task)
        encoded, note = tree_ensemble_v5(original)
        if encoded is None:
            raise SystemExit(f"not re-encoded: {note}")
        # The layout before comes first: the ratios are against it.
        files = {
            "ml5 one leaf per node": root / "before.onnx",
            "ml5 shared leaves": root / "shared.onnx",
            "ml5 shared leaves, packed": root / "packed.onnx",
            "fp32 opset 3": root / "fp32.onnx",
        }
        onnx.save(original, files["fp32 opset 3"])
        onnx.save(one_leaf_per_node(encoded), files["ml5 one leaf per node"])
        onnx.save(encoded, files["ml5 shared leaves"])
        save_packed(encoded, files["ml5 shared leaves, packed"])
        answers = [session(path).run(None, feeds) for path in files.values()]
        for other in answers[1:]:
            for a, b in zip(answers[0], other, strict=True):
                np.testing.assert_array_equal(a, b)
        rows = len(next(iter(feeds.values())))
        print(f"{rows} held-out rows: the same labels and probabilities, bit for bit")
        print()
        print("| model | file | bytes | size / first | load ms | load / first | 1,000 rows ms "
              "| 1,000 rows / first |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(paired(files, feeds, "random_forest", args.rounds)))


if __name__ == "__main__":
    main()
