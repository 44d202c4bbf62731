"""Pipeline-step benchmark: what Evaluate and Promote cost next to the training job they follow.

Trains one real artifact per estimator (in-process), packs it as SageMaker does, then times
Evaluate (stream the tar, check digests, apply the gate) and Promote (verify, copy, publish,
move live, write the pointer) over a local work directory, and the cold import of the Lambda
handler module against importing scikit-learn (which Evaluate avoids). Compare the numbers as
ratios within one run. Usage: .venv/bin/python benchmarks/bench_pipeline.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from functions.pipeline.evaluate import evaluate  # noqa: E402
from functions.pipeline.promote import promote  # noqa: E402
from onnxkit.contract.gate import QualityGate  # noqa: E402
from onnxkit.datasets import bundled  # noqa: E402
from onnxkit.local.store import LocalServing, LocalStore  # noqa: E402
from onnxkit.local.training import arguments, pack  # noqa: E402
from training_jobs import train  # noqa: E402

CASES = [
    ("breast_cancer", "logistic_regression"),
    ("breast_cancer", "hist_gradient_boosting"),
    ("customer_churn", "mlp"),
]
EVALUATIONS = 30
PROMOTIONS = 15


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _cold_import(statement: str, runs: int = 3) -> float:
    """Median seconds of a fresh interpreter running ``statement``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", statement],
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Print one markdown row per estimator, then the import comparison."""
    gate = QualityGate.model_validate({"min_accuracy": 0.5})
    print(
        "| dataset | estimator | artifact KiB | train s | evaluate ms | promote ms "
        "| (evaluate+promote) / train |"
    )
    print("|---|---|---|---|---|---|---|")
    for dataset, model in CASES:
        data = bundled(dataset)
        with tempfile.TemporaryDirectory() as scratch_dir, open(os.devnull, "w") as quiet:
            scratch = Path(scratch_dir)
            stdout, sys.stdout = sys.stdout, quiet
            start = time.perf_counter()
            try:
                code = train.main(
                    arguments(
                        {
                            "target": data.target,
                            "model": model,
                            "train": str(data.path),
                            "model-dir": str(scratch / "model"),
                            "latency-runs": "0",
                            "model-name": "bench",
                        }
                    )
                )
            finally:
                sys.stdout = stdout
            trained = time.perf_counter() - start
            if code != 0:
                raise SystemExit(f"training {dataset}/{model} failed")
            artifact = pack(scratch / "model", scratch / "model.tar.gz")
            uri = artifact.as_uri()
            evaluations = []
            for _ in range(EVALUATIONS):
                start = time.perf_counter()
                decision = evaluate(LocalStore(scratch), "bench", uri, gate)
                evaluations.append(time.perf_counter() - start)
            promotions = []
            for index in range(PROMOTIONS):
                workdir = scratch / f"work{index}"
                start = time.perf_counter()
                promote(
                    LocalStore(workdir),
                    LocalServing(workdir),
                    None,
                    decision["candidate"],
                    "bench/1",
                )
                promotions.append(time.perf_counter() - start)
            steps = statistics.median(evaluations) + statistics.median(promotions)
            print(
                f"| {dataset} | {model} | {artifact.stat().st_size / 1024:.1f} "
                f"| {trained:.2f} | {_median_ms(evaluations):.2f} "
                f"| {_median_ms(promotions):.2f} | {steps / trained:.4f} |"
            )
    handler = _cold_import("import functions.pipeline.handlers")
    sklearn = _cold_import("import sklearn.ensemble, sklearn.pipeline")
    print()
    print(
        f"cold import: functions.pipeline.handlers {handler * 1000:.0f} ms, "
        f"scikit-learn {sklearn * 1000:.0f} ms, ratio {sklearn / handler:.1f}x"
    )


if __name__ == "__main__":
    main()
