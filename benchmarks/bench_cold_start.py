"""Cold start of the inference function, paired: ``python benchmarks/bench_cold_start.py``.

Each candidate is a fresh interpreter that imports the handler as Lambda's init does (the model
loaded, its session warmed), answers one REST ``POST /predict`` and exits; the floor only runs
``import numpy, onnxruntime``. Candidates run in interleaved rounds (the order rotating each
round), so a busy machine slows every side of a pair alike; a value is the median over rounds,
and "above the floor" the median of the per-round differences.

* ``ours``: this checkout, X-Ray tracing off (outside Lambda, or ``POWERTOOLS_TRACE_DISABLED``);
* ``ours, Lambda-like``: the same with Lambda's environment variables set, so Powertools' Tracer
  is created (aws_xray_sdk, and botocore patched, as in the deployed function);
* ``before``: the same handler as of ``--before`` (default: the merge base with main), from a
  ``git archive`` of its functions/ and onnxkit/, with this environment's packages.

The int8 MLP and the fp32 random forest are trained on the bundled breast-cancer data first.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchmarks.bench_inference import train  # noqa: E402  # the same artifacts as the warm benchmark

EVENT = ROOT / "tests/events/inference_predict_list.json"
ONE_REQUEST = f"""
import json
from functions.inference import handler
class Context:
    function_name = "bench"; memory_limit_in_mb = 1769; aws_request_id = "cold"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:bench"
event = json.loads(open({str(EVENT)!r}).read())
assert handler.lambda_handler(event, Context())["statusCode"] == 200
"""
FLOOR = "import numpy, onnxruntime"
# What Lambda sets and Powertools' Tracer reads to decide that it is inside Lambda.
LAMBDA_ENV = {
    "LAMBDA_TASK_ROOT": str(ROOT),
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.14",
}


def checkout_at(revision: str, work: Path) -> Path:
    """functions/ and onnxkit/ as of ``revision``, unpacked under ``work``."""
    target = work / f"at-{revision[:12]}"
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "functions", "onnxkit"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    target.mkdir()
    archive_path = work / "checkout.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(target, filter="data")
    return target


def run_once(script: str, env: dict[str, str], cwd: Path) -> float:
    """Seconds for one fresh interpreter running ``script`` in ``cwd``."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=cwd,  # not the checkout: ``-c`` puts the working directory first on sys.path
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="Interleaved rounds.")
    parser.add_argument(
        "--before", default="", help="Revision to compare (default: merge base; none: skip)."
    )
    args = parser.parse_args(argv)
    before = (
        args.before
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )

    work = Path(tempfile.mkdtemp(prefix="onnxkit-cold-"))
    try:
        print("training the int8 MLP and the fp32 random forest...", file=sys.stderr)
        mlp, _ = train(work, "mlp", [])
        forest, _ = train(work, "random_forest", ["--quantization", "none"])
        old = None if before == "none" else checkout_at(before, work)
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("POWERTOOLS_", "AWS_LAMBDA_", "LAMBDA_", "_X_AMZN"))
        }
        base |= {"ORT_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT)}
        candidates = {
            "floor": (FLOOR, base),
            "ours, int8 MLP": (ONE_REQUEST, base | {"MODEL_URI": str(mlp)}),
            "ours, forest": (ONE_REQUEST, base | {"MODEL_URI": str(forest)}),
            "ours, int8 MLP, Lambda-like (tracing on)": (
                ONE_REQUEST,
                base | LAMBDA_ENV | {"MODEL_URI": str(mlp)},
            ),
        }
        if old is not None:  # older code may refuse today's manifest: --before none skips it
            candidates |= {
                f"before ({before[:7]}), int8 MLP": (
                    ONE_REQUEST,
                    base | {"MODEL_URI": str(mlp), "PYTHONPATH": str(old)},
                ),
                f"before ({before[:7]}), int8 MLP, Lambda-like (tracing on)": (
                    ONE_REQUEST,
                    base | LAMBDA_ENV | {"MODEL_URI": str(mlp), "PYTHONPATH": str(old)},
                ),
            }
        names = list(candidates)
        times: dict[str, list[float]] = {name: [] for name in names}
        print(f"{args.rounds} interleaved rounds...", file=sys.stderr)
        for attempt in range(args.rounds + 1):
            order = names[attempt % len(names) :] + names[: attempt % len(names)]
            for name in order:
                seconds = run_once(*candidates[name], work)
                if attempt:  # the first round writes the bytecode caches
                    times[name].append(seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    floor = times["floor"]
    print(f"cold start: fresh interpreter, import + model load + one request; {args.rounds} "
          "interleaved rounds; medians (min-max of the per-round differences)\n")  # fmt: skip
    print("| candidate | median ms | above the floor, median of paired differences |")
    print("|---|---:|---:|")
    for name in names:
        median = statistics.median(times[name]) * 1e3
        if name == "floor":
            print(f"| `{FLOOR}` | {median:.0f} | |")
            continue
        above = [(t - f) * 1e3 for t, f in zip(times[name], floor, strict=True)]
        print(
            f"| {name} | {median:.0f} | +{statistics.median(above):.0f} ms "
            f"({min(above):+.0f} to {max(above):+.0f}) |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
