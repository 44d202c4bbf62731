"""How long the scheduled drift check takes and how much memory it holds, at the row cap.

The check over an in-memory bucket (tests/support/drift_cloud.py's FakeStore, so S3 latency is
not in it) holding ``--rows`` capture records of a trained model in gzip objects of 1,000
records spread over a 24-hour window. Reports the median and spread of ``--rounds`` runs of
:func:`functions.monitor.check.run_check` and the peak traced Python allocation of one run. The
Lambda figure in docs/deploy.md adds S3 reads on top. Needs a trained model folder:

    python benchmarks/bench_drift_check.py --model onnxkit-work/models/<name>/<version> \
        --dataset customer_churn
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from functions.monitor.check import Settings, run_check
from onnxkit.contract.layout import drift_metric_namespace
from tests.support.capture import population, sample
from tests.support.drift_cloud import FakeMetrics, FakeStore, promote_files, put_capture

CHECKED_AT = datetime(2026, 12, 6, 6, 0, 5, tzinfo=UTC)
PER_OBJECT = 1000


def main() -> None:
    """Print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--dataset", default="customer_churn")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pop = population(args.model, args.dataset)
    store = FakeStore()
    pointer = promote_files(store, args.model)
    records = sample(pop, args.rows, 0)
    for index, first in enumerate(range(0, args.rows, PER_OBJECT)):
        hour = CHECKED_AT - timedelta(hours=1 + index % 24)
        put_capture(store, hour, records[first : first + PER_OBJECT], name=f"part-{index}")
    settings = Settings(
        model_name=pointer.model_name,
        namespace=drift_metric_namespace("bench"),
        max_rows=args.rows,
    )
    seconds = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        check = run_check(store, FakeMetrics(), settings, CHECKED_AT)
        seconds.append(time.perf_counter() - started)
        assert check.capture_rows == args.rows, check.detail
    tracemalloc.start()
    run_check(store, FakeMetrics(), settings, CHECKED_AT)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    features = len(pop.model.features)
    print(
        f"{args.dataset} ({features} features), {args.rows} rows: median "
        f"{statistics.median(seconds):.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f}, "
        f"{args.rounds} rounds); peak traced allocation {peak / 1e6:.0f} MB"
    )


if __name__ == "__main__":
    main()
