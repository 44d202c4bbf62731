"""Reading, schema inference and preparation: the columnar reader against the one before it.

Each arm runs in its own process on the same CSV (bench_scaling.py's synthetic table): the
previous reader (tests/support/legacy_data.py: pandas, every cell a Python string) or the
columnar one (training_jobs.table), then infer_schema and prepare. Rounds are paired and
interleaved (the order flips every round), so load on a shared machine hits both alike; it
prints each arm's median seconds, the median of the per-round ratios (columnar / previous)
with their range, and each arm's peak resident memory above the interpreter's imports.
Usage: .venv/bin/python benchmarks/bench_reading.py [CSV] [--rounds 3]
(without CSV: bench_scaling.py's 100,000-row table, written on first use)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def arm(which: str, path: str) -> dict[str, float]:
    """One arm in this process: seconds and peak MiB (after imports, and overall)."""
    import resource

    sys.path.insert(0, str(ROOT))
    from onnxkit.contract.values import ValueRule
    from tests.support import legacy_data
    from training_jobs import data
    from training_jobs.table import read_table

    start_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if which == "previous":
        frame = legacy_data.read_channel(path, "train").frame
        previous = legacy_data.infer_schema(frame, "y", "auto", [])
        X, _ = legacy_data.prepare(frame, previous, "y")
        numeric = len(previous.numeric)
    else:
        table = read_table(path, "train", ValueRule(), text={"y"})
        schema = data.infer_schema(table, "y", "auto", [])
        X, _ = data.prepare(table, schema, "y")
        numeric = len(schema.numeric)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": seconds,
        "peak_mib": peak / 1024,
        "above_mib": (peak - start_peak) / 1024,
        "float32_mib": X.shape[0] * numeric * 4 / 2**20,
    }


def run_arm(which: str, path: Path) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--arm", which, str(path)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    """Paired, interleaved rounds; prints the medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, nargs="?")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--arm", choices=["previous", "columnar"])
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(arm(args.arm, str(args.csv))))
        return
    if args.csv is None:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_scaling import dataset

        directory = Path(tempfile.gettempdir()) / "onnxkit"
        directory.mkdir(parents=True, exist_ok=True)
        args.csv = dataset(directory, 100_000, 50)
    results: dict[str, list[dict[str, float]]] = {"previous": [], "columnar": []}
    for index in range(args.rounds):
        order = ["previous", "columnar"] if index % 2 == 0 else ["columnar", "previous"]
        for which in order:
            results[which].append(run_arm(which, args.csv))
    ratios = [
        c["seconds"] / p["seconds"]
        for p, c in zip(results["previous"], results["columnar"], strict=True)
    ]
    size = args.csv.stat().st_size / 1e6
    load = os.getloadavg()[0]
    print(f"{args.csv.name}: {size:.0f} MB of CSV, {args.rounds} paired rounds, load {load:.1f}")
    for which, runs in results.items():
        print(
            f"  {which:9s} median {statistics.median(r['seconds'] for r in runs):7.2f} s, "
            f"peak {max(r['peak_mib'] for r in runs):6.0f} MiB "
            f"({max(r['above_mib'] for r in runs):6.0f} above the imports; float32 data "
            f"{runs[0]['float32_mib']:.0f} MiB)"
        )
    print(
        f"  columnar / previous: median {statistics.median(ratios):.3f} "
        f"(range {min(ratios):.3f}-{max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
