"""``onnxkit predict`` overhead: the CLI (CSV parsing, typing, batching, fsynced output) against
bare HTTP calls with the same batches, both against ``onnxkit serve`` on this machine.

Prints ratios within one run (absolute times depend on the machine). Usage:
.venv/bin/python benchmarks/bench_predict.py [rows]
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from typer.testing import CliRunner

from onnxkit.cli import app
from onnxkit.cloud import scoring
from onnxkit.datasets import bundled
from onnxkit.local.gateway import serving
from training_jobs import train

CHURN = bundled("customer_churn").path


def main() -> None:
    """Train a churn model, serve it, and time both clients."""
    rows_wanted = int(sys.argv[1]) if len(sys.argv) > 1 else 30_000
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    argv = [
        "--target",
        "churned",
        "--model",
        "logistic_regression",
        "--train",
        str(CHURN),
        "--model-dir",
        str(work / "model"),
        "--output-dir",
        str(work / "out"),
        "--latency-runs",
        "0",
    ]
    if train.main(argv) != 0:
        raise SystemExit("training failed")
    with CHURN.open(newline="") as handle:
        base = list(csv.DictReader(handle))
    rows = [base[i % len(base)] for i in range(rows_wanted)]
    data = work / "rows.csv"
    with data.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("| batch | rows | bare HTTP s | onnxkit predict s | predict ÷ bare |")
    print("|---|---|---|---|---|")
    with serving(str(work / "model")) as url:
        with httpx.Client() as client:
            signature = {
                f["name"]: f["kind"]
                for f in client.get(f"{url}/model").json()["signature"]["features"]
            }
        instances = [instance for _, _, instance in scoring.read_rows(data, signature)]
        for batch in (100, 1000):
            chunks = [instances[i : i + batch] for i in range(0, len(instances), batch)]
            started = time.perf_counter()
            with httpx.Client() as client:
                for chunk in chunks:
                    client.post(f"{url}/predict", json={"instances": chunk}).raise_for_status()
            bare = time.perf_counter() - started
            out = work / f"preds-{batch}.csv"
            started = time.perf_counter()
            result = CliRunner().invoke(
                app,
                [
                    "predict",
                    "--url",
                    url,
                    "--input",
                    str(data),
                    "--output",
                    str(out),
                    "--batch-size",
                    str(batch),
                ],
            )
            cli = time.perf_counter() - started
            if result.exit_code != 0:
                raise SystemExit(result.output)
            print(f"| {batch} | {rows_wanted} | {bare:.2f} | {cli:.2f} | {cli / bare:.2f} |")


if __name__ == "__main__":
    main()
