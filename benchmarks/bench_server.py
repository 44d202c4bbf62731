"""HTTP server candidates for ``onnxkit serve``: ``python benchmarks/bench_server.py``.

The same inference handler and ASGI app (onnxkit.local.gateway.InferenceApp) behind uvicorn with
httptools (what ``onnxkit serve`` runs), hypercorn and granian, against gunicorn with 2 workers
serving the scikit-learn pickle with Flask; 1-row JSON bodies, 16 connections (wrk), 127.0.0.1
only. Each round starts every server fresh (start-up = spawn to the first 200), loads it for
``--seconds``, and stops it; rounds interleave the candidates, and the report gives medians and
the median of the per-round ratios to gunicorn. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent

from benchmarks.bench_inference import (  # noqa: E402
    FLASK_APP,
    feature_names,
    free_port,
    process,
    rows_of,
    train,
)


def app_factory() -> Any:
    """The InferenceApp for the model in ONNXKIT_BENCH_MODEL (granian imports this)."""
    from onnxkit.local.gateway import InferenceApp, Limits, load_function

    function = load_function(os.environ["ONNXKIT_BENCH_MODEL"])
    return InferenceApp(function.lambda_handler, None, Limits())


def run_candidate(name: str, port: int) -> None:
    """Serve the app with one candidate server until killed."""
    if name == "hypercorn":
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        asyncio.run(serve(app_factory(), config))
    elif name == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        Granian(
            "benchmarks.bench_server:app_factory",
            address="127.0.0.1",
            port=port,
            interface=Interfaces.ASGI,
            factory=True,
            workers=1,
            log_enabled=False,
        ).serve()
    else:
        raise SystemExit(f"unknown candidate {name}")


def command(name: str, port: int, model: Path, work: Path) -> tuple[list[str], Path]:
    if name == "onnxkit serve (uvicorn+httptools)":
        return [str(BIN / "onnxkit"), "serve", "--model", str(model), "--port", str(port)], ROOT
    if name == "gunicorn -w 2 + Flask + pickle":
        return [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "flask_app:app"], work
    return [sys.executable, __file__, "--serve", name, "--port", str(port)], ROOT


def wait_ready(url: str, body: str, timeout: float = 60) -> float:
    import httpx

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            headers = {"content-type": "application/json"}
            if httpx.post(url, content=body, headers=headers, timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"{url} did not come up")


def wrk(url: str, body: str, work: Path, seconds: int) -> tuple[float, float]:
    """Requests per second and p99 latency (ms) with 16 connections."""
    script = work / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = [=[{body}]=]\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')  # fmt: skip
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise SystemExit(f"{url}: failed responses under load\n{out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert rps and p99, out
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    return float(rps.group(1)), float(p99.group(1)) * scale


CANDIDATES = [
    "onnxkit serve (uvicorn+httptools)",
    "hypercorn",
    "granian",
    "gunicorn -w 2 + Flask + pickle",
]
BASELINE = CANDIDATES[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        run_candidate(args.serve, args.port)
        return 0
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="onnxkit-bench-server-"))
    try:
        model, pickle = train(work, "mlp", [])
        (work / "flask_app.py").write_text(
            FLASK_APP.format(pickle=str(pickle), columns=feature_names())
        )
        body = '{"instances": ' + str(rows_of(1)) + "}"
        env = dict(os.environ, PYTHONPATH=str(ROOT), ONNXKIT_BENCH_MODEL=str(model))
        results: dict[str, dict[str, list[float]]] = {
            name: {"rps": [], "p99": [], "start": [], "ratio": []} for name in CANDIDATES
        }
        for round_ in range(args.rounds):
            measured: dict[str, float] = {}
            for name in CANDIDATES:
                port = free_port()
                argv_, cwd = command(name, port, model, work)
                with process(argv_, env, cwd):
                    url = f"http://127.0.0.1:{port}/predict"
                    started = wait_ready(url, body)
                    rps, p99 = wrk(url, body, work, args.seconds)
                results[name]["rps"].append(rps)
                results[name]["p99"].append(p99)
                results[name]["start"].append(started)
                measured[name] = rps
                print(f"round {round_ + 1} {name}: {rps:,.0f} req/s", file=sys.stderr)
            for name in CANDIDATES:
                results[name]["ratio"].append(measured[name] / measured[BASELINE])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| server | req/s (median) | p99 ms (median) | start-up s (median) | vs gunicorn |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        med = {key: statistics.median(values) for key, values in r.items()}
        print(f"| {name} | {med['rps']:,.0f} | {med['p99']:.1f} | {med['start']:.2f} | "
              f"{med['ratio']:.2f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
