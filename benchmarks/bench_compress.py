"""Compression benchmark: the training job's search on a 100k x 50 random forest and a 512x512
MLP, and the served file against the uncompressed one (size, session load, 1,000-row latency).

Uses the job's own steps (read, fit, hold out, convert, ``choose_compression``) on a synthetic
table (scikit-learn's ``make_classification``: 50 features, 10 informative, seed 0), fits each
model once and runs the search three times: with the job's default tolerance (the int8 one),
with a looser label agreement and probability drift (0.98, 0.25), and with the metric drop
alone (0.5 points, the goal's criterion). For the MLP, every variant of the low-rank series
(``compress.rank_series``, the whole series, not stopped at a refusal) also goes through the
int8 step at the default tolerance: size, agreement, largest and 99th-percentile probability
drift against scikit-learn's answers on the held-out rows, the same before int8, and before
int8 without the refit of the next layer. Then the served
files and the uncompressed one are loaded and called in interleaved, order-flipping rounds;
the table gives the median per-round ratio to the uncompressed file and its range. One thread
per session (as the job measures). Usage:

    .venv/bin/python benchmarks/bench_compress.py [--rows 100000] [--mlp-rows 20000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import onnx
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.pipeline import Pipeline

from onnxkit.contract.layout import FP32_FILE
from onnxkit.local.training import arguments
from training_jobs import compress
from training_jobs.decision import (
    HeldOut,
    Int8Step,
    Tolerance,
    choose_compression,
    choose_int8,
)
from training_jobs.estimators import build_pipeline, fit, make_estimator
from training_jobs.evaluation import Prediction, predict_onnx
from training_jobs.export import session, to_onnx
from training_jobs.hyperparameters import parse_args
from training_jobs.job import Inputs, hold_out, read_inputs, training_rows

DEFAULT = Tolerance(0.995, 0.005, 0.1)
LOOSE = Tolerance(0.98, 0.005, 0.25)
# The goal's own criterion: the metric may drop by 0.5 points; agreement and drift unbounded.
METRIC_ONLY = Tolerance(0.5, 0.005, 1.0)


def synthetic(rows: int, folder: Path) -> Path:
    """The table as a CSV, as the job reads it."""
    X, y = make_classification(n_samples=rows, n_features=50, n_informative=10, random_state=0)
    frame = pd.DataFrame(X.astype(np.float32), columns=[f"x{i}" for i in range(50)])
    frame["label"] = y
    path = folder / "train.csv"
    frame.to_csv(path, index=False)
    return path


def search(model: str, rows: int, extra: dict[str, str], scratch: Path, rounds: int) -> list[str]:
    """Fit once, run the search with both tolerances, and compare the files; table rows."""
    csv = synthetic(rows, scratch)
    argv = arguments(
        {"target": "label", "model": model, "train": str(csv), "model-dir": str(scratch / "m"),
         "latency-runs": "50", **extra}
    )  # fmt: skip
    hp = parse_args(argv)
    inputs = read_inputs(hp)
    schema = inputs.schema
    started = time.perf_counter()
    estimator = make_estimator(schema.task, hp.model, hp.estimator, hp.seed)
    pipeline = fit(build_pipeline(schema, estimator), inputs.X_train, inputs.y_train, curve=False)
    fit_s = time.perf_counter() - started
    training = training_rows(hp, inputs)
    held_out = hold_out(pipeline, inputs, training.extreme)
    original = scratch / "original" / FP32_FILE
    original.parent.mkdir()
    started = time.perf_counter()
    onnx.save(to_onnx(pipeline, schema, schema.task), original)
    convert_s = time.perf_counter() - started
    started = time.perf_counter()
    calibration = training.calibration
    baseline = choose_int8(
        original, held_out, hp.quantization, DEFAULT, calibration, hp.latency_runs
    )
    int8_s = time.perf_counter() - started
    print(
        f"{model}: {rows} rows, fit {fit_s:.1f} s, convert {convert_s:.1f} s, "
        f"int8 step {int8_s:.1f} s, fp32 {original.stat().st_size} B",
        flush=True,
    )
    served: dict[str, Path] = {"fp32 (uncompressed)": original}
    if baseline.graph is not None:
        served["int8 (compression=none)"] = baseline.graph
    lines = []
    for label, tolerance in (("default", DEFAULT), ("loose", LOOSE), ("metric-only", METRIC_ONLY)):
        root = scratch / f"search-{label}"
        root.mkdir()
        copy = root / FP32_FILE
        shutil.copy(original, copy)
        started = time.perf_counter()
        choice = choose_compression(
            pipeline, copy, held_out, schema, training.activations,
            Int8Step(hp.quantization, tolerance, calibration, hp.latency_runs), "size",
        )  # fmt: skip
        search_s = time.perf_counter() - started
        record = choice.record
        chosen = next(v for v in record.variants if v.chosen)
        metric = "accuracy"
        drop = record.variants[0].metrics[metric] - chosen.metrics[metric]
        print(
            f"  {label}: chose {record.chosen} in {search_s:.1f} s "
            f"({search_s / fit_s:.2f}x the fit): {record.reason}",
            flush=True,
        )
        for v in record.variants:
            print(
                f"    {v.name}: {v.size_bytes} B, {metric} {v.metrics[metric]:.4f}, agreement "
                f"{v.parity.label_agreement:.4f}, drift {v.parity.max_abs_diff:.3f}: {v.reason}",
                flush=True,
            )
        served[f"{record.chosen} ({label} tolerance)"] = choice.int8.graph or choice.fp32_path
        lines.append(
            f"| {model} {rows:,} | {label} | {record.chosen} | {len(record.variants)} | "
            f"{search_s:.0f} s ({search_s / fit_s:.2f}x fit {fit_s:.0f} s) | "
            f"{drop * 100:+.2f} pt | {chosen.parity.label_agreement:.4f} | "
            f"{chosen.parity.max_abs_diff:.3f} |"
        )
    if model == "mlp":
        step = Int8Step(hp.quantization, DEFAULT, calibration, hp.latency_runs)
        ranks, files = rank_variants(pipeline, held_out, inputs, hp.seed, scratch, step)
        lines += ranks
        served.update(files)
    return [*lines, "", *paired(served, held_out.feeds, model, rounds)]


def drifts(reference: Prediction, probabilities: np.ndarray) -> tuple[float, float, float]:
    """Label agreement, largest and 99th-percentile probability drift against ``reference``."""
    assert reference.probabilities is not None
    drift = np.max(np.abs(probabilities - reference.probabilities), axis=1)
    agreement = np.argmax(probabilities, axis=1) == np.argmax(reference.probabilities, axis=1)
    return float(np.mean(agreement)), float(drift.max()), float(np.quantile(drift, 0.99))


def rank_variants(
    pipeline: Pipeline,
    held_out: HeldOut,
    inputs: Inputs,
    seed: int,
    scratch: Path,
    step: Int8Step,
) -> tuple[list[str], dict[str, Path]]:
    """Every variant of the low-rank series through the int8 step (default tolerance), with
    its scikit-learn answers before int8 and those without the refit; table rows and the
    served files."""
    mlp = pipeline.steps[-1][1]
    rows = compress.activation_sample(inputs.X_train, seed)
    sample = np.asarray(pipeline[:-1].transform(rows), dtype=np.float64)
    X_held = pipeline[:-1].transform(held_out.rows)
    fp32_size = (scratch / "original" / FP32_FILE).stat().st_size
    lines, files = [], {}
    for candidate in compress.rank_series(mlp, sample):
        smaller = Pipeline([*pipeline.steps[:-1], ("model", candidate.estimator)])
        path = scratch / f"bench-{candidate.name}" / FP32_FILE
        path.parent.mkdir()
        graph = to_onnx(smaller, inputs.schema, inputs.schema.task)
        onnx.save(compress.factorized(graph, candidate.factors), path)
        int8 = choose_int8(path, held_out, step.mode, step.tolerance, step.calibration, 0)
        file = int8.graph or path
        answers = predict_onnx(session(file), held_out.feeds, held_out.task).probabilities
        assert answers is not None
        agreement, drift, p99 = drifts(held_out.reference, answers)
        before = drifts(held_out.reference, candidate.estimator.predict_proba(X_held))
        unrefit = drifts(held_out.reference, without_refit(mlp, candidate).predict_proba(X_held))
        verdict = "within" if int8.graph is not None else f"refused: {int8.quantization.reason}"
        lines.append(
            f"| {candidate.name} | {', '.join(f'{f.first.shape[1]}' for f in candidate.factors)} "
            f"| {file.stat().st_size:,} | {file.stat().st_size / fp32_size:.3f} | {agreement:.4f} "
            f"| {drift:.3f} | {p99:.3f} | {before[0]:.4f}, {before[1]:.3f}, {before[2]:.3f} "
            f"| {unrefit[0]:.4f}, {unrefit[1]:.3f}, {unrefit[2]:.3f} | {verdict[:120]} |"
        )  # fmt: skip
        files[f"{candidate.name} (whole series, int8 step)"] = file
    return lines, files


def without_refit(mlp: Any, candidate: compress.Shrunk) -> Any:
    """The candidate with the layer after each factored one as fitted (the refit undone):
    exactly the bottleneck alone where one layer is factored, as in the 512,512 network."""
    plain = copy.copy(candidate.estimator)
    plain.coefs_ = list(plain.coefs_)
    plain.intercepts_ = list(plain.intercepts_)
    for layer, weights in enumerate(plain.coefs_[:-1]):
        if any(np.array_equal(weights, f.product) for f in candidate.factors):
            plain.coefs_[layer + 1] = mlp.coefs_[layer + 1]
            plain.intercepts_[layer + 1] = mlp.intercepts_[layer + 1]
    return plain


def paired(
    files: dict[str, Path], feeds: dict[str, np.ndarray], model: str, rounds: int
) -> list[str]:
    """Size, session load and 1,000-row latency of each file against the first one, in
    interleaved rounds whose order flips; medians and ranges of the per-round ratios."""
    rows = len(next(iter(feeds.values())))
    index = np.arange(1000) % rows
    batch = {name: np.take(values, index, axis=0) for name, values in feeds.items()}
    names = list(files)
    loads: dict[str, list[float]] = {n: [] for n in names}
    calls: dict[str, list[float]] = {n: [] for n in names}
    for name in names:
        session(files[name])  # one-time costs of the first session in the process
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            sess = session(files[name])
            loads[name].append(time.perf_counter() - start)
            sess.run(None, batch)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                sess.run(None, batch)
                times.append(time.perf_counter() - start)
            calls[name].append(float(np.median(times)))
    first = names[0]
    size0 = files[first].stat().st_size
    out = []
    for name in names:
        load = np.array(loads[name]) / np.array(loads[first])
        call = np.array(calls[name]) / np.array(calls[first])
        out.append(
            f"| {model} | {name} | {files[name].stat().st_size:,} | "
            f"{files[name].stat().st_size / size0:.3f} | {np.median(loads[name]) * 1e3:.1f} | "
            f"{np.median(load):.2f} ({load.min():.2f}-{load.max():.2f}) | "
            f"{np.median(calls[name]) * 1e3:.2f} | "
            f"{np.median(call):.2f} ({call.min():.2f}-{call.max():.2f}) |"
        )
    return out


def main() -> None:
    """Both models; prints the log, then the markdown tables."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--mlp-rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", choices=["random_forest", "mlp"], default=None)
    args = parser.parse_args()
    cases = [
        ("random_forest", args.rows, {}),
        ("mlp", args.mlp_rows, {"hidden_layer_sizes": "512,512"}),
    ]
    tables = []
    for model, rows, extra in cases:
        if args.only and model != args.only:
            continue
        with tempfile.TemporaryDirectory() as scratch:
            tables.append(search(model, rows, extra, Path(scratch), args.rounds))
    print()
    print("| data | tolerance | served | variants tried | search time | accuracy drop "
          "| agreement | max drift |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for table in tables:
        print("\n".join(line for line in table if line.startswith("| ") and " pt |" in line))
    print()
    print("| variant | rank | bytes | size / fp32 | agreement | max drift | p99 drift "
          "| before int8 (agreement, max, p99) | no refit, before int8 | int8 step |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    # Only the MLP's table has rank rows: a table without any prints nothing (no blank line).
    print("\n".join(line for table in tables for line in table if line.startswith("| rank-")))
    print()
    print("| model | file | bytes | size / first | load ms | load / first | 1,000 rows ms "
          "| 1,000 rows / first |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for table in tables:
        print(
            "\n".join(
                line
                for line in table
                if line.startswith("| ") and " pt |" not in line and not line.startswith("| rank-")
            )
        )


if __name__ == "__main__":
    main()
