"""What ``POST /explain`` costs per row, against a one-row ``POST /predict``, for every estimator.

For each dataset and estimator (the kit's default settings) the training job runs once; then
the inference function (the Lambda handler, in process, REST events) answers one-row
``/predict`` and one-row ``/explain`` calls of the same row, interleaved in shuffled order
within each round. Each round gives both medians and their ratio; the median and range of the
ratios over the rounds are printed (pairing cancels the drift of a shared machine), with the
explanation's method and its model rows per explained row (coalitions x background rows).

    python benchmarks/bench_explain.py [--rounds 7] [--calls 15] [--only breast_cancer:mlp ...]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF lines on stdout
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support, ahead of any other "tests" package

from tests.support.inference import FakeContext, event_with  # noqa: E402

MODELS = [
    ("breast_cancer", "logistic_regression"),
    ("breast_cancer", "mlp"),
    ("breast_cancer", "random_forest"),
    ("breast_cancer", "hist_gradient_boosting"),
    ("diabetes", "ridge"),
    ("diabetes", "mlp"),
    ("diabetes", "random_forest"),
    ("diabetes", "hist_gradient_boosting"),
    ("customer_churn", "logistic_regression"),
    ("customer_churn", "random_forest"),
]


def train(dataset: str, estimator: str, folder: Path) -> Path:
    """The training job's artifact for one bundled dataset and estimator (default settings)."""
    from onnxkit.datasets import bundled
    from onnxkit.local.training import arguments
    from training_jobs import train as job

    data = bundled(dataset)
    argv = arguments(
        {
            "target": data.target,
            "model": estimator,
            "train": str(data.path),
            "model-dir": str(folder / "model"),
            "output-dir": str(folder / "output"),
            "latency-runs": "0",
        }
    )
    with contextlib.redirect_stdout(io.StringIO()):
        if job.main(argv) != 0:
            raise SystemExit(f"training {dataset} {estimator} failed")
    return folder / "model"


def first_row(dataset: str) -> dict[str, Any]:
    """The bundled file's first row as a JSON instance (the target dropped)."""
    from onnxkit.datasets import bundled

    data = bundled(dataset)
    with data.path.open(newline="") as handle:
        record = next(csv.DictReader(handle))
    record.pop(data.target)
    row: dict[str, Any] = {}
    for name, text in record.items():
        try:
            row[name] = float(text) if text else None
        except ValueError:
            row[name] = text
    return row


def median_us(handler: Any, request: dict[str, Any], calls: int) -> float:
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        result = handler(request, FakeContext())
        samples.append(time.perf_counter_ns() - started)
        assert result["statusCode"] == 200, result["body"]
    return statistics.median(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--only", nargs="*", default=None, help="dataset:estimator ...")
    args = parser.parse_args()
    from functions.inference.app import InferenceFunction
    from functions.inference.runtime import Settings

    chosen = [m for m in MODELS if not args.only or f"{m[0]}:{m[1]}" in args.only]
    print(f"{args.rounds} rounds x {args.calls} calls of each route, one row, per model")
    print(f"{'model':<38} {'method':<15} {'rows/row':>8} {'predict':>9} {'explain':>10} ratio")
    with tempfile.TemporaryDirectory() as scratch:
        for dataset, estimator in chosen:
            model = train(dataset, estimator, Path(scratch) / f"{dataset}-{estimator}")
            handler = InferenceFunction(Settings(model_uri=str(model))).lambda_handler
            body = json.dumps({"instances": [first_row(dataset)]})
            requests = {
                path: event_with("predict_objects", path=f"/{path}", body=body)
                for path in ("predict", "explain")
            }
            answer = json.loads(handler(requests["explain"], FakeContext())["body"])
            evaluated = answer["coalitions"] * answer["background_rows"]
            for request in requests.values():  # warm both routes
                median_us(handler, request, 3)
            medians: dict[str, list[float]] = {name: [] for name in requests}
            rng = random.Random(0)
            for _ in range(args.rounds):
                order = list(requests)
                rng.shuffle(order)
                for name in order:
                    medians[name].append(median_us(handler, requests[name], args.calls))
            ratios = [e / p for e, p in zip(medians["explain"], medians["predict"], strict=True)]
            print(
                f"{dataset + ' ' + estimator:<38} {answer['method']:<15} {evaluated:>8} "
                f"{statistics.median(medians['predict']):>7.0f}us "
                f"{statistics.median(medians['explain']) / 1000:>8.1f}ms "
                f"{statistics.median(ratios):.0f}x ({min(ratios):.0f} to {max(ratios):.0f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
