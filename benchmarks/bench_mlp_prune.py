"""How the MLP's hidden units are chosen, and whether a fine-tune helps: the 512x512 MLP of
benchmarks/bench_compress.py (the job's steps on make_classification, 50 features), pruned
by each plan the compression search tries, with

- ``norm``: ``training_jobs.compress.mlp_pruned(..., pick="norm")``, the units with the largest
  outgoing weight norm x RMS activation (the every-layer series' pick), then the ridge refit;
- ``forward``: the same with least-squares forward selection (the last-layer series' pick);
- ``+distill``: either, then fine-tuned for ``--epochs`` epochs to reproduce the original's
  logits (output-layer pre-activations) on the training rows: a scikit-learn MLPRegressor
  of the pruned shape, warm-started from the pruned weights, trained by its own Adam.

Compared with scikit-learn's answers of the original on the held-out rows (the rows the job's
tolerance uses; before the int8 step): label agreement, largest and 99th-percentile
probability drift, accuracy; and the seconds each step took against the fit's. Usage:

    .venv/bin/python benchmarks/bench_mlp_prune.py [--rows 20000] [--epochs 10] [--lr 3e-4]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_compress import synthetic  # this folder
from sklearn.neural_network import MLPRegressor
from sklearn.neural_network._base import ACTIVATIONS

from onnxkit.local.training import arguments
from training_jobs import compress
from training_jobs.estimators import build_pipeline, fit, make_estimator
from training_jobs.hyperparameters import parse_args
from training_jobs.job import read_inputs

PLANS = {"last-0.5": (1.0, 0.5), "last-0.35": (1.0, 0.35), "units-0.75": (0.75, 0.75),
         "units-0.5": (0.5, 0.5), "units-0.35": (0.35, 0.35)}  # fmt: skip


def logits(mlp: Any, X: np.ndarray) -> np.ndarray:
    """The output layer's pre-activations."""
    values = np.asarray(X, dtype=np.float64)
    for weights, bias in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1], strict=True):
        values = values @ weights + bias
        ACTIVATIONS[mlp.activation](values)
    return values @ mlp.coefs_[-1] + mlp.intercepts_[-1]


def distilled(pruned: Any, target: np.ndarray, X: np.ndarray, epochs: int, lr: float) -> Any:
    """``pruned`` fine-tuned by Adam to reproduce ``target`` (the original's logits) on X."""
    student = MLPRegressor(
        hidden_layer_sizes=pruned.hidden_layer_sizes, activation=pruned.activation,
        alpha=0.0, learning_rate_init=lr, max_iter=1, random_state=0,
        n_iter_no_change=epochs + 1, tol=0.0,
    )  # fmt: skip
    y = target.ravel() if target.shape[1] == 1 else target
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the epochs are bounded on purpose
        student.fit(X[:2], y[:2])  # sets up the fitted state; the weights are replaced next
        student.coefs_ = [w.copy() for w in pruned.coefs_]
        student.intercepts_ = [b.copy() for b in pruned.intercepts_]
        student.set_params(warm_start=True, max_iter=epochs)
        student.fit(X, y)
    tuned = copy.copy(pruned)
    tuned.coefs_, tuned.intercepts_ = student.coefs_, student.intercepts_
    return tuned


def main() -> None:
    """Fit once, then one row per plan, pick and fine-tune; a markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        csv = synthetic(args.rows, Path(scratch))
        settings = {"target": "label", "model": "mlp", "train": str(csv),
                    "model-dir": f"{scratch}/m", "hidden_layer_sizes": "512,512"}  # fmt: skip
        hp = parse_args(arguments(settings))
        inputs = read_inputs(hp)
    started = time.perf_counter()
    estimator = make_estimator(inputs.schema.task, hp.model, hp.estimator, hp.seed)
    pipeline = build_pipeline(inputs.schema, estimator)
    pipeline = fit(pipeline, inputs.X_train, inputs.y_train, curve=False)
    fit_s = time.perf_counter() - started
    mlp = pipeline.steps[-1][1]
    X_train = np.asarray(pipeline[:-1].transform(inputs.X_train), dtype=np.float64)
    X_held = np.asarray(pipeline[:-1].transform(inputs.X_valid), dtype=np.float64)
    sample = compress.activation_sample(X_train, hp.seed)
    reference = mlp.predict_proba(X_held)[:, 1]
    labels = mlp.predict(X_held)
    target = logits(mlp, X_train)
    accuracy = np.mean(mlp.predict(X_held) == inputs.y_valid)
    print(f"fit {fit_s:.1f} s ({mlp.n_iter_} epochs), held-out accuracy {accuracy:.4f}")
    print("| plan | hidden | pick | fine-tune | agreement | max drift | p99 drift | accuracy "
          "| seconds (x fit) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, keeps in PLANS.items():
        for pick in ("norm", "forward"):
            started = time.perf_counter()
            pruned = compress.mlp_pruned(mlp, keeps, sample, pick)
            prune_s = time.perf_counter() - started
            variants = [("none", pruned, prune_s)]
            started = time.perf_counter()
            tuned = distilled(pruned, target, X_train, args.epochs, args.lr)
            variants.append((f"{args.epochs} epochs", tuned, time.perf_counter() - started))
            for tune, model, seconds in variants:
                drift = np.abs(model.predict_proba(X_held)[:, 1] - reference)
                print(
                    f"| {name} | {','.join(map(str, pruned.hidden_layer_sizes))} | {pick} | "
                    f"{tune} | {np.mean(model.predict(X_held) == labels):.4f} | "
                    f"{drift.max():.3f} | {np.quantile(drift, 0.99):.3f} | "
                    f"{np.mean(model.predict(X_held) == inputs.y_valid):.4f} | "
                    f"{seconds:.1f} ({seconds / fit_s:.3f}) |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
