"""Training at scale: train.py end to end on 10k to 10M rows x 50 features, per estimator.

Writes a seeded binary classification table (50 float32 features, shortest-round-trip text,
about 550 bytes of CSV a row) once per size under --data, then runs train.py as SageMaker
does (a subprocess, ``--name value`` arguments) for each estimator, and prints one markdown
row per run from the job's ``[phase]`` log lines: seconds per step (read = CSV to columns
and float32; prepare = schema, labels, hold-out; summary = what later steps read of the
training rows (their reference statistics, samples, the baseline), taken before the fit lets
them go; evaluate = scikit-learn's held-out answers and permutation importance; convert =
skl2onnx; parity = the fp32 graph against scikit-learn; quantize = int8 with its own parity,
with compression=none; compress = the search for a compressed variant, its int8 steps and
parities included, with compression=auto; reference = the served graph's held-out
predictions for drift; write = the manifest), everything outside fit as a multiple of fit, and
the process's peak resident memory (wait4's ru_maxrss) beside the data's float32 size.

Each run happens once: on a shared machine the seconds are noisy (the load average is
printed with each row); the ratios within a row are steadier than the absolute times.
Usage: .venv/bin/python benchmarks/bench_scaling.py [--sizes 10000,100000,1000000]
    [--models mlp,random_forest,hist_gradient_boosting] [--features 50] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
PHASES = [
    "read", "prepare", "summary", "fit", "evaluate", "convert", "parity", "quantize", "compress",
    "reference", "write",
]  # fmt: skip
_PHASE = re.compile(r"^\[phase\] (\w+) ([0-9.]+) s, peak ([0-9]+) MiB$")


def dataset(directory: Path, rows: int, features: int) -> Path:
    """A seeded table: y = 1 when a noisy linear score is positive. Written in 1M-row parts
    so 10M rows never sit in memory at once."""
    path = directory / f"synthetic_{rows}x{features}.csv"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    weights = rng.normal(size=features)
    partial = path.with_suffix(".partial")
    with pa.OSFile(str(partial), "wb") as sink:
        writer = None
        for start in range(0, rows, 1_000_000):
            count = min(1_000_000, rows - start)
            X = rng.normal(size=(count, features)).astype(np.float32)
            y = (X @ weights + rng.normal(scale=2.0, size=count) > 0).astype(np.int64)
            columns = {f"x{i}": X[:, i] for i in range(features)} | {"y": y}
            batch = pa.table(columns)
            if writer is None:
                writer = pacsv.CSVWriter(sink, batch.schema)
            writer.write_table(batch)
        if writer is not None:
            writer.close()
    partial.rename(path)
    return path


def train(path: Path, model: str) -> tuple[dict[str, tuple[float, int]], int, float]:
    """One train.py run: its phases (seconds, peak MiB so far), peak KiB, wall seconds."""
    with tempfile.TemporaryDirectory() as scratch:
        argv = [
            sys.executable,
            str(ROOT / "training_jobs" / "train.py"),
            "--target",
            "y",
            "--model",
            model,
            "--train",
            str(path),
            "--model-dir",
            scratch,
            "--output-data-dir",
            scratch,
            "--latency-runs",
            "50",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SM_OUTPUT_DIR": scratch}
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    if status:
        tail = output.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"train.py {model} on {path.name} failed: {tail[0]}")
    phases: dict[str, tuple[float, int]] = {}
    for line in output.splitlines():
        match = _PHASE.match(line)
        if match:
            # A phase logged twice counts its seconds twice; the peak is the later one.
            seconds = phases.get(match[1], (0.0, 0))[0] + float(match[2])
            phases[match[1]] = (seconds, int(match[3]))
    return phases, usage.ru_maxrss, wall


def main() -> None:
    """Write the tables, train on each, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--models", default="mlp,random_forest,hist_gradient_boosting")
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "onnxkit")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    header = (
        "| rows | model | CSV MB | "
        + " | ".join(PHASES)
        + " | total s | outside fit / fit | start MiB | peak MiB | float32 MiB | peak / float32 "
        "| above start / float32 | load |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1), flush=True)
    for rows in (int(size) for size in args.sizes.split(",")):
        path = dataset(args.data, rows, args.features)
        for model in args.models.split(","):
            load = os.getloadavg()[0]
            phases, peak_kib, wall = train(path, model)
            seconds = {name: phases[name][0] for name in phases}
            fit = seconds.get("fit", 0.0)
            outside = sum(seconds.values()) - fit
            float32 = rows * args.features * 4 / 2**20
            peak = peak_kib / 1024
            start = phases.get("start", (0.0, 0))[1]
            cells = [
                f"{rows:,}",
                model,
                f"{path.stat().st_size / 1e6:.0f}",
                *(f"{seconds[name]:.2f}" if name in seconds else "-" for name in PHASES),
                f"{wall:.1f}",
                f"{outside / fit:.2f}" if fit else "-",
                f"{start}",
                f"{peak:.0f}",
                f"{float32:.0f}",
                f"{peak / float32:.1f}",
                f"{(peak - start) / float32:.1f}",
                f"{load:.1f}",
            ]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
