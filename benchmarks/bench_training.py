"""Training benchmark: per estimator, fp32/int8 sizes, metrics, parity and single-row latency.

Runs the real training job (in-process) on the bundled datasets and prints a markdown table
from the manifests it writes. Latencies are medians of single-row calls in one process, so
compare them as ratios within one run. Usage: .venv/bin/python benchmarks/bench_training.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onnxkit.contract.manifest import Manifest, load_manifest
from onnxkit.datasets import bundled
from onnxkit.local.training import arguments
from training_jobs import train

CASES = [
    ("breast_cancer", "logistic_regression"),
    ("breast_cancer", "mlp"),
    ("breast_cancer", "random_forest"),
    ("breast_cancer", "hist_gradient_boosting"),
    ("customer_churn", "mlp"),
    ("customer_churn", "hist_gradient_boosting"),
    ("diabetes", "ridge"),
    ("diabetes", "mlp"),
    ("diabetes", "random_forest"),
    ("diabetes", "hist_gradient_boosting"),
]


def main() -> None:
    """Train every case and print the table."""
    header = (
        "| dataset | estimator | served | fp32 B | int8 B | metric | sklearn | fp32 | int8 "
        "| agreement / max drift (served) | sklearn µs | fp32 µs | int8 µs | sklearn / served |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for dataset, model in CASES:
        data = bundled(dataset)
        with tempfile.TemporaryDirectory() as scratch, open(os.devnull, "w") as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                code = train.main(
                    arguments(
                        {
                            "target": data.target,
                            "model": model,
                            "train": str(data.path),
                            "model-dir": scratch,
                            "latency-runs": "500",
                        }
                    )
                )
            finally:
                sys.stdout = stdout
            if code:
                print(f"| {dataset} | {model} | failed |")
                continue
            m = load_manifest(Path(scratch))
        print(row(dataset, model, m))


def _num(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def row(dataset: str, model: str, m: Manifest) -> str:
    """One markdown table row from a manifest."""
    metric, variants = m.primary_metric, m.variants
    fp32, int8, sk = variants["fp32"], variants.get("int8"), variants["sklearn"]
    served = variants[m.serving.variant]
    parity = served.parity
    agreement = (
        "-"
        if parity is None
        else (f"{_num(parity.label_agreement, '.3f')} / {parity.max_abs_diff:.3g}")
    )
    speedup = (sk.single_row_latency_us or 0) / (served.single_row_latency_us or 1)
    cells = [
        dataset,
        model,
        m.serving.variant,
        str(fp32.size_bytes),
        str(int8.size_bytes) if int8 else "-",
        metric,
        _num(sk.metrics[metric]),
        _num(fp32.metrics[metric]),
        _num(int8.metrics.get(metric) if int8 else None),
        agreement,
        _num(sk.single_row_latency_us, ".0f"),
        _num(fp32.single_row_latency_us, ".1f"),
        _num(int8.single_row_latency_us if int8 else None, ".1f"),
        f"{speedup:.0f}x",
    ]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    main()
