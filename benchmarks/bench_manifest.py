"""What reading the manifest costs a cold start: the msgspec contract against the two readers it
replaced (the pydantic model, and the serving side's JSON-Schema interpreter).

Each reader runs in a fresh interpreter that has already imported what the inference function
imports anyway (numpy, orjson, hashlib, Powertools' Logger), so the import time measured is
what the reader adds to a cold start.
Rounds interleave the readers; the table shows medians and the median of per-round ratios.
The replaced readers are taken from git (``--before``, default the last commit that had them).

    python benchmarks/bench_manifest.py [--rounds 15] [--before acd5941]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys, time
# What the inference function has imported before it reads a manifest.
import hashlib, numpy, orjson
from aws_lambda_powertools import Logger, Metrics
raw = open(sys.argv[1], "rb").read()
started = time.perf_counter()
{setup}
imported = time.perf_counter()
check(raw)
first = time.perf_counter()
for _ in range(200):
    check(raw)
done = time.perf_counter()
print(json.dumps({{"import_ms": (imported - started) * 1e3, "first_ms": (first - imported) * 1e3,
                  "parse_us": (done - first) / 200 * 1e6}}))
"""

READERS = {
    "msgspec contract (now)": (
        "new",
        "from onnxkit.contract.manifest import parse_manifest as check",
    ),
    "pydantic model (before)": (
        "old",
        "from onnxkit.contract.manifest import parse_manifest as check",
    ),
    "JSON-Schema interpreter (before, serving)": (
        "old",
        "from functions.inference.manifest import validate_manifest as check",
    ),
}


def make_manifest(workdir: Path) -> Path:
    """A real manifest: the training job on the bundled churn table (logistic regression)."""
    from onnxkit.datasets import bundled
    from onnxkit.local.training import arguments
    from training_jobs import train

    data = bundled("customer_churn")
    argv = arguments(
        {
            "target": data.target,
            "model": "logistic_regression",
            "train": str(data.path),
            "model-dir": str(workdir / "model"),
            "output-dir": str(workdir / "output"),
            "latency-runs": "0",
        }
    )
    if train.main(argv) != 0:
        raise SystemExit("training failed")
    return workdir / "model" / "manifest.json"


def old_tree(revision: str, into: Path) -> Path:
    """The replaced readers' source at ``revision``."""
    archive = into / "old.tar"
    with archive.open("wb") as out:
        subprocess.run(
            ["git", "archive", revision, "onnxkit/__init__.py", "onnxkit/contract",
             "functions/__init__.py", "functions/inference"],
            cwd=ROOT, stdout=out, check=True,
        )  # fmt: skip
    tree = into / "old"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def measure(tree: Path, setup: str, manifest: Path) -> dict[str, float]:
    code = PROBE.format(setup=setup)
    result = subprocess.run(
        [sys.executable, "-c", code, str(manifest)],
        cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    values: dict[str, float] = json.loads(result.stdout)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--before", default="acd5941")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest = make_manifest(work)
        trees = {"new": ROOT, "old": old_tree(args.before, work)}
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in READERS}
        for _ in range(args.rounds):
            for name, (tree, setup) in READERS.items():
                samples[name].append(measure(trees[tree], setup, manifest))
        size = manifest.stat().st_size
    base = "msgspec contract (now)"
    print(f"{size} byte manifest, {args.rounds} interleaved rounds, medians")
    print("| reader | import ms | first parse ms | parse us | import vs msgspec |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in samples.items():
        ratios = [r["import_ms"] / b["import_ms"] for r, b in zip(runs, samples[base], strict=True)]
        print(
            f"| {name} | {statistics.median(r['import_ms'] for r in runs):.1f} "
            f"| {statistics.median(r['first_ms'] for r in runs):.2f} "
            f"| {statistics.median(r['parse_us'] for r in runs):.0f} "
            f"| {statistics.median(ratios):.1f}x |"
        )


if __name__ == "__main__":
    main()
