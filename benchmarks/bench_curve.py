"""Live learning curve benchmark: fit time with and without the ``[curve]`` lines.

Fits the training job's own Pipeline (``training_jobs.estimators``: build_pipeline, fit) with
``curve=True`` and ``curve=False`` on the same rows, paired and interleaved (the order flips
every round, so drift on a shared machine hits both arms alike), and prints per case the
median fit time of each arm, the median of the per-round ratios (with / without) and their
range. stdout goes to /dev/null during the fits: the curve's writes and flushes are still
system calls, as into SageMaker's pipe. Fits use one thread (threadpoolctl): the curve's
cost is single-threaded Python per iteration, and OpenMP threads on a shared 2-core machine
swing HistGradientBoosting's fit time by several times from round to round. Last, the cost
of parsing and printing one iteration's lines alone, in microseconds.
Usage: .venv/bin/python benchmarks/bench_curve.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onnxkit.datasets import bundled
from training_jobs.curve import CurveStream
from training_jobs.data import Schema, infer_schema, prepare
from training_jobs.estimators import EstimatorSettings, build_pipeline, fit, make_estimator

Case = tuple[str, Callable[[], tuple[pd.DataFrame, np.ndarray, Schema]], str, EstimatorSettings]


def bundled_table(name: str) -> Callable[[], tuple[pd.DataFrame, np.ndarray, Schema]]:
    """A bundled dataset as the job reads it (every cell text, then the contract's rule)."""

    def load() -> tuple[pd.DataFrame, np.ndarray, Schema]:
        data = bundled(name)
        frame = pd.read_csv(data.path, dtype=str, keep_default_na=False)
        schema = infer_schema(frame, data.target, "auto", [], None)
        X, y = prepare(frame, schema, data.target)
        return X, y, schema

    return load


def synthetic(rows: int, features: int) -> Callable[[], tuple[pd.DataFrame, np.ndarray, Schema]]:
    """A seeded binary classification table of float32 features."""

    def load() -> tuple[pd.DataFrame, np.ndarray, Schema]:
        rng = np.random.default_rng(0)
        values = rng.normal(size=(rows, features)).astype(np.float32)
        weights = rng.normal(size=features)
        y = (values @ weights + rng.normal(scale=2.0, size=rows) > 0).astype(np.int64)
        names = [f"x{i}" for i in range(features)]
        return pd.DataFrame(values, columns=names), y, Schema(names, [], names, "classification")

    return load


CASES: list[Case] = [
    # Cheap iterations (about 1 ms each): the curve's per-iteration cost shows most here.
    ("breast_cancer 455 rows", bundled_table("breast_cancer"), "mlp", EstimatorSettings()),
    (
        "synthetic 20,000 x 20",
        synthetic(20_000, 20),
        "mlp",
        EstimatorSettings(max_iter=30),
    ),
    # Above 10,000 rows HistGradientBoosting's early stopping (and its scores) are on.
    (
        "synthetic 20,000 x 20",
        synthetic(20_000, 20),
        "hist_gradient_boosting",
        EstimatorSettings(max_iter=100),
    ),
]


def fit_seconds(
    model: str, settings: EstimatorSettings, table: tuple[pd.DataFrame, np.ndarray, Schema], *,
    curve: bool,
) -> float:  # fmt: skip
    """One fit of a fresh Pipeline, in seconds."""
    X, y, schema = table
    pipeline = build_pipeline(schema, make_estimator(schema.task, model, settings, seed=42))
    started = time.perf_counter()
    fit(pipeline, X, y, curve=curve)
    return time.perf_counter() - started


def main() -> None:
    """Run every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    rounds = parser.parse_args().rounds
    print(
        "| data | estimator | iterations | fit s without (median) | fit s with (median) "
        "| with / without (median of rounds) | range |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, load, model, settings in CASES:
        table = load()
        times: dict[bool, list[float]] = {True: [], False: []}
        ratios = []
        with open(os.devnull, "w") as sink, threadpool_limits(1):
            real, sys.stdout = sys.stdout, sink
            try:
                fit_seconds(model, settings, table, curve=True)  # warm-up, not counted
                for round_ in range(rounds):
                    order = (True, False) if round_ % 2 == 0 else (False, True)
                    taken = {arm: fit_seconds(model, settings, table, curve=arm) for arm in order}
                    for arm, seconds in taken.items():
                        times[arm].append(seconds)
                    ratios.append(taken[True] / taken[False])
            finally:
                sys.stdout = real
        X, y, schema = table
        estimator = make_estimator(schema.task, model, settings, seed=42)
        fitted = fit(build_pipeline(schema, estimator), X, y, curve=False)
        iterations = fitted.named_steps["model"].n_iter_
        print(
            f"| {label} | {model} | {iterations} | {statistics.median(times[False]):.3f} "
            f"| {statistics.median(times[True]):.3f} | {statistics.median(ratios):.3f} "
            f"| {min(ratios):.3f} to {max(ratios):.3f} |",
            flush=True,
        )
    print()
    print("| verbose lines of one iteration | µs to parse and print (median of 5 x 10,000) |")
    print("|---|---|")
    for label, lines in ITERATION_LINES:
        print(f"| {label} | {per_iteration_us(lines):.1f} |")


ITERATION_LINES = [
    ("MLP: loss and validation score", ["Iteration 12, loss = 0.04123456\n",
                                        "Validation score: 0.973684\n"]),
    ("HistGradientBoosting, early stopping on", ["[3/100] ", "1 tree, 31 leaves, max depth = 5, "
                                                 "train loss: 0.32911, val loss: 0.32447, in "
                                                 "0.039s\n"]),
]  # fmt: skip


def per_iteration_us(lines: list[str]) -> float:
    """The median time CurveStream takes for one iteration's writes, in microseconds."""
    samples = []
    with open(os.devnull, "w") as sink:
        stream = CurveStream(sink)
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(10_000):
                for piece in lines:
                    stream.write(piece)
            samples.append((time.perf_counter() - started) / 10_000 * 1e6)
    return statistics.median(samples)


if __name__ == "__main__":
    main()
