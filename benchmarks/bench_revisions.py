"""The inference function of this checkout against the one at an earlier git revision: cold
start (import, model load, first request) and warm requests, as paired interleaved ratios.

For a restructure that must not make serving slower. Both trees serve the same trained model
from fresh interpreters, alternating each round; the table shows each side's median and the
median of the per-round ratios (this checkout / the revision; below 1 is faster).

    python benchmarks/bench_revisions.py [--before acd5941] [--rounds 9]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys, time
started = time.perf_counter()
from functions.inference import handler
imported = time.perf_counter()
event = json.loads(open(sys.argv[1]).read())
class Context:
    function_name = "bench"; memory_limit_in_mb = 1769; aws_request_id = "bench"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:bench"
context = Context()
one, thousand = (dict(event, body=json.dumps({"instances": rows})) for rows in json.load(
    open(sys.argv[2])))
assert handler.lambda_handler(one, context)["statusCode"] == 200
first = time.perf_counter()
def median(call, n):
    times = []
    for _ in range(n):
        t = time.perf_counter(); call(); times.append(time.perf_counter() - t)
    return sorted(times)[n // 2]
warm_1 = median(lambda: handler.lambda_handler(one, context), 300)
warm_1000 = median(lambda: handler.lambda_handler(thousand, context), 30)
print(json.dumps({"init_ms": (imported - started) * 1e3, "first_ms": (first - imported) * 1e3,
                  "warm_1_us": warm_1 * 1e6, "warm_1000_ms": warm_1000 * 1e3}),
      file=sys.__stderr__)
"""
MEASURES = {
    "init_ms": "import + model load, ms",
    "first_ms": "first request, ms",
    "warm_1_us": "warm 1-row request, us",
    "warm_1000_ms": "warm 1000-row JSON request, ms",
}


def train(work: Path) -> Path:
    """The bundled breast-cancer MLP, trained by this checkout's training job."""
    from onnxkit.datasets import bundled
    from training_jobs import train as job

    data = bundled("breast_cancer")
    argv = ["--target", data.target, "--model", "mlp", "--train", str(data.path),
            "--model-dir", str(work / "model"), "--output-dir", str(work / "out"),
            "--latency-runs", "0"]  # fmt: skip
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        if job.main(argv) != 0:
            raise SystemExit("training failed")
    return work / "model"


def rows(work: Path) -> Path:
    """One row and 1000 rows of the bundled table (target removed), as JSON."""
    import csv

    from onnxkit.datasets import bundled

    with bundled("breast_cancer").path.open() as handle:
        records = [[float(v) for v in r[:-1]] for r in list(csv.reader(handle))[1:]]
    path = work / "rows.json"
    path.write_text(json.dumps([records[:1], [records[i % len(records)] for i in range(1000)]]))
    return path


def revision_tree(revision: str, into: Path) -> Path:
    """The inference function and the kernel as they were at ``revision``."""
    archive = into / "before.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", revision, "onnxkit", "functions"], cwd=ROOT,
                       stdout=out, check=True)  # fmt: skip
    tree = into / "before"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def event_file() -> Path:
    """The REST API proxy event the tests use for ``POST /predict``."""
    return next(ROOT.glob("tests/**/inference_predict_list.json"))


def measure(tree: Path, model: Path, rows_path: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree), MODEL_URI=str(model), ORT_DISABLE_TELEMETRY="1")
    env.pop("POWERTOOLS_METRICS_DISABLED", None)
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(event_file()), str(rows_path)],
        cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        check=True,
    )  # fmt: skip
    values: dict[str, float] = json.loads(run.stderr.strip().splitlines()[-1])
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="acd5941")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, rows_path = train(work), rows(work)
        trees = {"now": ROOT, "before": revision_tree(args.before, work)}
        for tree in trees.values():  # warm the .pyc caches; not counted
            measure(tree, model, rows_path)
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for index in range(args.rounds):
            order = list(trees) if index % 2 == 0 else list(reversed(trees))
            for name in order:
                samples[name].append(measure(trees[name], model, rows_path))
    print(f"this checkout vs {args.before}: {args.rounds} interleaved rounds, fresh processes")
    print("| measure | before | now | now / before (median of per-round ratios) |")
    print("|---|---:|---:|---:|")
    for key, label in MEASURES.items():
        before = [s[key] for s in samples["before"]]
        now = [s[key] for s in samples["now"]]
        ratios = [n / b for n, b in zip(now, before, strict=True)]
        print(
            f"| {label} | {statistics.median(before):.1f} | {statistics.median(now):.1f} "
            f"| {statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f}) |"
        )


if __name__ == "__main__":
    main()
