"""Run every benchmark in this folder, one after another, and keep their output.

``make bench`` calls this. Each ``bench_*.py`` runs with its defaults in a fresh interpreter
(they measure cold starts and import times, so they must not share one); its output is
printed and saved to ``benchmarks/results/<name>.txt``. A failing benchmark is reported and the
others still run; the exit status is non-zero when any failed.

    python benchmarks/run_all.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="e.g. --only manifest server")
    args = parser.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        started = time.perf_counter()
        run = subprocess.run(
            [sys.executable, str(script)],
            check=False,
            cwd=HERE.parent,
            capture_output=True,
            text=True,
        )
        output = run.stdout + (f"\n[stderr]\n{run.stderr}" if run.returncode else "")
        (results / f"{script.stem}.txt").write_text(output)
        print(run.stdout, flush=True)
        elapsed = time.perf_counter() - started
        if run.returncode:
            failed.append(script.name)
            print(f"!! {script.name} failed ({run.returncode}); see results/{script.stem}.txt")
        print(f"-- {script.name}: {elapsed:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
