"""What ``onnxkit serve --capture`` costs a warm one-row ``POST /predict``, and what the capture
hook costs with capture off.

Three ``onnxkit serve`` processes on the same trained model: ``off`` (this checkout),
``on`` (this checkout, ``--capture`` into a temporary folder) and, with ``--base REV``,
``base`` (that git revision's code, from ``git archive``, before the hook existed). One
keep-alive client sends one-row bodies; every round calls each server ``--calls`` times in a
shuffled order, and the per-round medians give paired ratios (on/off, off/base), whose median
and range over the rounds are printed: interleaving cancels the drift of a shared machine.

    python benchmarks/bench_capture.py [--rounds 15] [--calls 300] [--base cb61fee]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
ONNXKIT = [sys.executable, "-m", "onnxkit.cli"]


def train(folder: Path) -> Path:
    """A breast_cancer MLP artifact (the kit's demo model)."""
    from onnxkit.datasets import bundled
    from onnxkit.local.training import arguments
    from training_jobs import train as job

    data = bundled("breast_cancer")
    argv = arguments(
        {
            "target": data.target,
            "model": "mlp",
            "train": str(data.path),
            "model-dir": str(folder / "model"),
            "output-dir": str(folder / "output"),
            "latency-runs": "0",
        }
    )
    with contextlib.redirect_stdout(io.StringIO()):
        if job.main(argv) != 0:
            raise SystemExit("training failed")
    return folder / "model"


def checkout(revision: str, folder: Path) -> Path:
    """The code of ``revision`` in a folder of its own (no worktree, nothing else touched)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def start(
    model: Path, extra: list[str], pythonpath: Path | None
) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, ORT_DISABLE_TELEMETRY="1", NO_COLOR="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    process = subprocess.Popen(
        [*ONNXKIT, "serve", "--port", "0", "--model", str(model), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=pythonpath or ROOT,
    )
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        if found:
            # Drain stderr (one log line per request) so the pipe never fills.
            import threading

            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, found.group(1)
    raise SystemExit(f"server did not start: {extra}")


def median_us(client: httpx.Client, url: str, body: bytes, calls: int) -> float:
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        response = client.post(
            f"{url}/predict", content=body, headers={"content-type": "application/json"}
        )
        samples.append(time.perf_counter_ns() - started)
        response.raise_for_status()
    return statistics.median(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--base", default=None, help="a git revision before the capture hook")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        model = train(work / "artifact")
        arms: dict[str, tuple[list[str], Path | None]] = {
            "off": ([], None),
            "on": (["--capture", str(work / "capture")], None),
        }
        if args.base:
            arms["base"] = ([], checkout(args.base, work / "base"))
        servers = {name: start(model, extra, path) for name, (extra, path) in arms.items()}
        row = [
            [
                17.99,
                10.38,
                122.8,
                1001.0,
                0.1184,
                0.2776,
                0.3001,
                0.1471,
                0.2419,
                0.07871,
                1.095,
                0.9053,
                8.589,
                153.4,
                0.006399,
                0.04904,
                0.05373,
                0.01587,
                0.03003,
                0.006193,
                25.38,
                17.33,
                184.6,
                2019.0,
                0.1622,
                0.6656,
                0.7119,
                0.2654,
                0.4601,
                0.1189,
            ]
        ]
        body = ('{"instances": ' + str(row) + "}").encode()
        medians: dict[str, list[float]] = {name: [] for name in servers}
        try:
            with httpx.Client(timeout=30) as client:
                for _, url in servers.values():  # warm every server
                    median_us(client, url, body, 50)
                rng = random.Random(0)
                for _ in range(args.rounds):
                    order = list(servers)
                    rng.shuffle(order)
                    for name in order:
                        medians[name].append(median_us(client, servers[name][1], body, args.calls))
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=30)
        captured = sum(1 for p in (work / "capture").glob("*.jsonl") for _ in p.open("rb"))
    print(f"{args.rounds} rounds x {args.calls} one-row calls per server; {captured} rows captured")
    for name, values in medians.items():
        print(
            f"{name:>4}: median of round medians {statistics.median(values):.0f} us "
            f"({min(values):.0f} to {max(values):.0f})"
        )
    pairs = [("on", "off")] + ([("off", "base")] if "base" in medians else [])
    for a, b in pairs:
        ratios = [x / y for x, y in zip(medians[a], medians[b], strict=True)]
        print(
            f"{a}/{b}: median ratio {statistics.median(ratios):.3f} "
            f"({min(ratios):.3f} to {max(ratios):.3f})"
        )


if __name__ == "__main__":
    main()
