"""One handler for three front doors, and what it costs the REST path:
``python benchmarks/bench_front_doors.py [--rounds 41] [--before 7631c33]``.

Trains the int8 MLP on the bundled breast-cancer data (as ``bench_inference.py`` does) and
builds two inference functions over it in one process: this checkout's, which serves REST
(payload 1.0), HTTP API (2.0) and function URL events, and the one-format ``app.py`` of the
``--before`` commit (loaded from git). Warm one-row ``POST /predict`` requests run in
interleaved rounds: the REST event through both (and through the old one twice, as an A/A
control of the noise), and the same request as an HTTP API and a function URL event through the
new one. A value is the median over rounds, a ratio the median of the per-round paired ratios.
EMF lines go to /dev/null on both sides alike. For the cost arithmetic (docs/deploy.md) it also
times a 1000-row JSON body per format through the new handler, parsed without pysimdjson as on
the Lambda runtime (no wheel for CPython 3.14 on arm64), and prints the size of one EMF line
and of each API Gateway kind's access log line.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_inference import Context, per_round, rows_of, train  # noqa: E402


def app_at(revision: str, work: Path) -> ModuleType:
    """``functions/inference/app.py`` as it was at ``revision``, importable beside today's."""
    source = subprocess.run(
        ["git", "show", f"{revision}:functions/inference/app.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = work / "app_before.py"
    path.write_text(source)
    # In the package, so its relative imports (decode, runtime, ...) are today's modules.
    spec = importlib.util.spec_from_file_location("functions.inference._app_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--calls", type=int, default=400, help="calls per candidate per round")
    parser.add_argument("--before", default="7631c33", help="the one-format handler's commit")
    args = parser.parse_args(argv)

    from functions.inference import app as after
    from functions.inference.observability import Telemetry
    from functions.inference.runtime import Settings
    from tests.support.inference import as_format

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir, _ = train(work, "mlp", [])
        before = app_at(args.before, work)
        settings = Settings(model_uri=str(model_dir))
        telemetry = Telemetry()  # one Logger per service: both functions share it
        old = before.InferenceFunction(settings, telemetry).lambda_handler
        old_again = before.InferenceFunction(settings, telemetry).lambda_handler
        new = after.InferenceFunction(settings, telemetry).lambda_handler

    from functions.inference import decode

    rest = json.loads((ROOT / "tests/events/inference_predict_list.json").read_text())
    http, url = as_format(rest, "http"), as_format(rest, "function_url")
    big = dict(rest, body=json.dumps({"instances": rows_of(1000)}))
    big_events = {fmt: as_format(big, fmt) for fmt in ("rest", "http", "function_url")}
    context = Context()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        expected = old(rest, context)
        for handler, event in ((new, rest), (new, http), (new, url)):
            result: dict[str, Any] = handler(event, context)
            assert (result["statusCode"], result["body"]) == (200, expected["body"])

    candidates = {
        "before_rest": (lambda: old(rest, context), args.calls),
        "after_rest": (lambda: new(rest, context), args.calls),
        "before_rest_again": (lambda: old_again(rest, context), args.calls),
        "after_http": (lambda: new(http, context), args.calls),
        "after_function_url": (lambda: new(url, context), args.calls),
    }
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        per_round(candidates, 3)  # warm-up
        times = per_round(candidates, args.rounds)
        decode.SIMDJSON_MIN_BYTES = 10**9  # the orjson path: Lambda's runtime has no pysimdjson
        batch_calls: dict[str, tuple[Callable[[], Any], int]] = {
            f"1000 rows {fmt}": (functools.partial(new, e, context), 5)
            for fmt, e in big_events.items()
        }
        batches = per_round(batch_calls, max(5, args.rounds // 4))
    emf = io.StringIO()
    with contextlib.redirect_stdout(emf):
        new(rest, context)

    base = times["before_rest"]
    print(f"warm 1-row POST /predict, int8 MLP, {args.rounds} interleaved rounds of "
          f"{args.calls} calls; before = {args.before}\n")  # fmt: skip
    print("| handler, event | median us | vs before, REST (median of paired ratios) |")
    print("|---|---:|---:|")
    for name, values in times.items():
        ratios = [value / b for value, b in zip(values, base, strict=True)]
        low, high = min(ratios), max(ratios)
        print(
            f"| {name.replace('_', ' ')} | {statistics.median(values) * 1e6:,.1f} | "
            f"{statistics.median(ratios):.3f} (range {low:.2f}-{high:.2f}) |"
        )
    print("\n| 1000-row JSON body (orjson path), new handler | median us |\n|---|---:|")
    for name, values in batches.items():
        print(f"| {name} | {statistics.median(values) * 1e6:,.0f} |")
    body_kb = len(big["body"]) / 1024
    emf_bytes = len(emf.getvalue().rstrip("\n").encode())
    print(f"\n1000-row request body: {body_kb:.0f} KiB; one EMF line: {emf_bytes} bytes")
    print_access_log_bytes()
    return 0


def print_access_log_bytes() -> None:
    """The access log line of each API Gateway kind, as its synthesized format renders a signed
    one-row call (tests/support/access_log.py), for docs/deploy.md's arithmetic."""
    from infra.constructs.front_door import access_log_format
    from infra.constructs.http_api import ACCESS_LOG_FIELDS
    from infra.constructs.inference_api import rest_access_log_fields
    from tests.support.access_log import render

    for name, fields in (
        ("http", ACCESS_LOG_FIELDS),
        ("rest, iam", rest_access_log_fields(iam=True)),
        ("rest, api_key", rest_access_log_fields(iam=False)),
    ):
        print(f"access log line, {name}: {len(render(access_log_format(fields)).encode())} bytes")


if __name__ == "__main__":
    raise SystemExit(main())
