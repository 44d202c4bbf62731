"""Inference speed, as ratios measured in one run: ``python benchmarks/bench_inference.py``.

Trains an int8 MLP and an fp32 random forest on the bundled breast-cancer data with the
training job, plus the same scikit-learn pipelines for comparison, then measures:

* warm requests through the whole Lambda handler (event in, response out) against a bare
  ``session.run`` on the same rows, for 1 and 1000 rows (JSON, CSV and .npy bodies);
* for context, the one-row path without Powertools, and the handler against its own one-row
  model call (``run_with_iobinding`` on a buffer bound once, which skips session.run's per-call
  input conversion; the goals stay against the bare ``session.run``);
* the single-row request against scikit-learn's ``predict_proba`` on the original pipeline;
* cold start: fresh processes importing the handler, loading the model and answering one
  request, against ``import numpy, onnxruntime`` and against scikit-learn + joblib;
* local server throughput (16 connections, 10 s, on 127.0.0.1 only) of ``onnxkit serve``
  against gunicorn with 2 workers serving the pickle with Flask.

Warm candidates run in interleaved rounds; a value is the median over rounds and a ratio the
median of the per-round ratios of the pair, so a noisy machine slows both sides of a pair alike.
Cold starts are medians of fresh processes. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
BIN = Path(sys.executable).parent

CONTEXT_ATTRS = {
    "function_name": "bench",
    "memory_limit_in_mb": 1769,
    "invoked_function_arn": "arn:aws:lambda:eu-west-1:123456789012:function:bench",
    "aws_request_id": "bench",
}


class Context:
    """What Powertools reads from a Lambda context."""

    def __init__(self) -> None:
        self.__dict__.update(CONTEXT_ATTRS)


# --- artifacts ----------------------------------------------------------------------------


def train(work: Path, model: str, extra: list[str]) -> tuple[Path, Path]:
    """The training job's model dir, and the same scikit-learn pipeline fitted and pickled."""
    import joblib

    from onnxkit.contract.values import ValueRule
    from onnxkit.datasets import bundled
    from training_jobs import train as job
    from training_jobs.data import infer_schema, prepare
    from training_jobs.estimators import build_pipeline, fit, make_estimator
    from training_jobs.hyperparameters import parse_args
    from training_jobs.table import read_table

    data = bundled("breast_cancer")
    model_dir = work / model / "model"
    argv = ["--target", data.target, "--model", model, "--train", str(data.path),
            "--model-dir", str(model_dir), "--output-dir", str(work / model / "out"),
            "--latency-runs", "0", *extra]  # fmt: skip
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        if job.main(argv) != 0:
            raise SystemExit(f"training {model} failed")
    args = parse_args(argv)
    rule = ValueRule.of(args.missing_tokens)
    table = read_table(args.train, "train", rule, text={args.target})
    schema = infer_schema(table, args.target, args.task, [], rule)
    X, y = prepare(table, schema, args.target)
    estimator = make_estimator(schema.task, model, args.estimator, args.seed)
    pipeline = fit(build_pipeline(schema, estimator), X, y)
    pickle = work / model / "model.joblib"
    joblib.dump(pipeline, pickle)
    return model_dir, pickle


def rows_of(n: int) -> list[list[float]]:
    """n rows of the bundled CSV (repeated as needed), target removed."""
    import csv

    from onnxkit.datasets import bundled

    with bundled("breast_cancer").path.open() as handle:
        records = list(csv.reader(handle))[1:]
    rows = [[float(value) for value in record[:-1]] for record in records]
    return [rows[i % len(rows)] for i in range(n)]


def feature_names() -> list[str]:
    from onnxkit.datasets import bundled

    with bundled("breast_cancer").path.open() as handle:
        return handle.readline().strip().split(",")[:-1]


# --- warm ---------------------------------------------------------------------------------


def npy_body(rows: list[list[float]], dtype: str) -> str:
    """An application/x-npy body as API Gateway hands it over: the .npy file, base64."""
    import base64
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.array(rows, dtype=dtype), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode()


def per_round(
    candidates: dict[str, tuple[Callable[[], Any], int]], rounds: int
) -> dict[str, list[float]]:
    """Seconds per call of each candidate in each of ``rounds`` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, (call, number) in candidates.items():
            start = time.perf_counter()
            for _ in range(number):
                call()
            times[name].append((time.perf_counter() - start) / number)
    return times


def warm(model_dir: Path, pickle: Path, rounds: int) -> dict[str, list[float]]:
    """Handler vs bare session.run vs scikit-learn, one process, interleaved."""
    import joblib
    import orjson
    import pandas as pd

    from functions.inference.app import InferenceFunction
    from functions.inference.decode import numbers_only, rows_from_instances
    from functions.inference.feed import build_feed

    # What handler.py builds at import, for this model: importing the handler a second time
    # would hand back the first call's function (and model) from the module cache.
    handler = InferenceFunction.from_env(dict(os.environ, MODEL_URI=str(model_dir)))
    model = handler.runtime.model
    serving = json.loads((model_dir / "manifest.json").read_text())["serving"]
    assert model is not None and model.sha256 == serving["sha256"]
    base = json.loads((ROOT / "tests/events/inference_predict_list.json").read_text())
    one, thousand = rows_of(1), rows_of(1000)

    def event(body: str, content_type: str = "application/json") -> dict[str, Any]:
        headers = {"Content-Type": content_type}
        return dict(
            base, body=body, headers=headers, multiValueHeaders={"Content-Type": [content_type]}
        )

    csv_body = "\n".join(",".join(repr(v) for v in row) for row in thousand)
    events = {
        1: event(json.dumps({"instances": one})),
        1000: event(json.dumps({"instances": thousand})),
        "csv": event(csv_body, "text/csv"),
        # Binary bodies reach the function base64-encoded (the API's binaryMediaTypes).
        "npy": dict(
            event(npy_body(thousand, "float32"), "application/x-npy"), isBase64Encoded=True
        ),
        "npy64": dict(
            event(npy_body(thousand, "float64"), "application/x-npy"), isBase64Encoded=True
        ),
    }
    feed1, feed1000 = build_feed(one, model.features), build_feed(thousand, model.features)
    session, names = model.session, model.output_names
    context = Context()
    pipeline = joblib.load(pickle)
    frame1 = pd.DataFrame(one, columns=feature_names()).astype("float32")
    frame1000 = pd.DataFrame(thousand, columns=feature_names()).astype("float32")
    lambda_handler = handler.lambda_handler
    raw1 = events[1]["body"].encode()

    # What the handler's own model call costs for one row: session.run_with_iobinding on the
    # per-thread buffer bound once (see predictor.Model.run), without parsing or routing.
    one_row_feed = model.feed(one, True)
    assert model.feed.is_one_row_feed(one_row_feed)

    def bound() -> Any:
        return model.run(one_row_feed)

    from functions.inference import decode

    def without_simdjson(event: dict[str, Any]) -> Any:
        # The deployed runtime (CPython 3.14 on arm64) has no pysimdjson wheel: orjson path.
        found, decode._simdjson = decode._simdjson, lambda: None  # type: ignore[assignment]
        try:
            return lambda_handler(event, context)
        finally:
            decode._simdjson = found

    def core() -> str:
        # The handler's own work without the router, Powertools' logger and EMF flush.
        rows = rows_from_instances(orjson.loads(raw1)["instances"], model.features)
        result = model.predict(rows, numbers_only(raw1))
        return orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY).decode()

    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # EMF lines
        for name, ev in events.items():
            result = handler.lambda_handler(ev, context)
            assert result["statusCode"] == 200, (name, result["body"][:300])
        times = per_round(
            {
                "bare_1": (lambda: session.run(names, feed1), 300),
                "handler_1": (lambda: lambda_handler(events[1], context), 300),
                "core_1": (core, 300),
                "bound_1": (bound, 300),
                "bare_1000": (lambda: session.run(names, feed1000), 20),
                "handler_1000_json": (lambda: lambda_handler(events[1000], context), 20),
                "handler_1000_csv": (lambda: lambda_handler(events["csv"], context), 10),
                "handler_1000_json_orjson": (lambda: without_simdjson(events[1000]), 10),
                "handler_1000_csv_orjson": (lambda: without_simdjson(events["csv"]), 10),
                "handler_1000_npy": (lambda: lambda_handler(events["npy"], context), 20),
                "handler_1000_npy64": (lambda: lambda_handler(events["npy64"], context), 20),
                "sklearn_1": (lambda: pipeline.predict_proba(frame1), 30),
                "sklearn_1000": (lambda: pipeline.predict_proba(frame1000), 5),
            },
            rounds,
        )
    return times


# --- cold start ---------------------------------------------------------------------------

OURS = """
import json
from functions.inference import handler
event = json.loads(open({event!r}).read())
class Context:
    function_name = "bench"; memory_limit_in_mb = 1769; aws_request_id = "cold"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:bench"
assert handler.lambda_handler(event, Context())["statusCode"] == 200
"""
SKLEARN = """
import joblib, pandas as pd, sklearn
pipeline = joblib.load({pickle!r})
row = pd.DataFrame([{row!r}], columns={columns!r}).astype("float32")
pipeline.predict_proba(row)
"""


def cold(model_dir: Path, pickle: Path, runs: int) -> dict[str, list[float]]:
    """Wall time of fresh processes, interleaved; the first (pyc-warming) run is dropped."""
    env = dict(os.environ, MODEL_URI=str(model_dir), PYTHONPATH=str(ROOT))
    env.pop("POWERTOOLS_METRICS_DISABLED", None)
    event = str(ROOT / "tests/events/inference_predict_list.json")
    scripts = {
        "floor": "import numpy, onnxruntime",
        "ours": OURS.format(event=event),
        "sklearn": SKLEARN.format(pickle=str(pickle), row=rows_of(1)[0], columns=feature_names()),
    }
    times: dict[str, list[float]] = {name: [] for name in scripts}
    for attempt in range(runs + 1):
        for name, script in scripts.items():
            start = time.perf_counter()
            subprocess.run([PYTHON, "-c", script], env=env, check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            if attempt:
                times[name].append(time.perf_counter() - start)
    return times


# --- throughput ---------------------------------------------------------------------------

FLASK_APP = """
import joblib, pandas as pd
from flask import Flask, jsonify, request
pipeline = joblib.load({pickle!r})
COLUMNS = {columns!r}
app = Flask(__name__)

@app.post("/predict")
def predict():
    rows = request.get_json()["instances"]
    frame = pd.DataFrame(rows, columns=COLUMNS).astype("float32")
    return jsonify(predictions=pipeline.predict(frame).tolist(),
                   probabilities=pipeline.predict_proba(frame).tolist())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, body: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.post(url, content=body, headers={"content-type": "application/json"})
            if response.status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load(url: str, body: str, work: Path, seconds: int) -> float:
    """Requests per second with 16 connections for ``seconds`` (wrk, else a Python client)."""
    if shutil.which("wrk"):
        script = work / "post.lua"
        # A level-1 long bracket: the JSON body itself contains "]]".
        script.write_text(f'wrk.method = "POST"\nwrk.body = [=[{body}]=]\n'
                          'wrk.headers["Content-Type"] = "application/json"\n')  # fmt: skip
        out = subprocess.run(
            ["wrk", "-t2", "-c16", f"-d{seconds}s", "-s", str(script), url],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non_2xx:
            raise SystemExit(f"{url}: {non_2xx.group(1)} failed responses under load")
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        assert match, out
        return float(match.group(1))
    return python_load(url, body, seconds)


def python_load(url: str, body: str, seconds: int) -> float:
    """A bounded keep-alive load generator: 16 threads, one connection each."""
    import threading

    import httpx

    counts = [0] * 16
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        with httpx.Client(headers={"content-type": "application/json"}) as client:
            while time.monotonic() < stop:
                client.post(url, content=body).raise_for_status()
                counts[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def throughput(model_dir: Path, pickle: Path, work: Path, seconds: int) -> dict[str, float]:
    """onnxkit serve vs gunicorn (2 workers) + Flask + the pickle, one row per request."""
    body = json.dumps({"instances": rows_of(1)})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    results: dict[str, float] = {}
    port = free_port()
    serve = [str(BIN / "onnxkit"), "serve", "--model", str(model_dir), "--port", str(port)]
    with process(serve, env, ROOT):
        url = f"http://127.0.0.1:{port}/predict"
        wait_for(url, body)
        results["onnxkit serve"] = load(url, body, work, seconds)
    (work / "flask_app.py").write_text(
        FLASK_APP.format(pickle=str(pickle), columns=feature_names())
    )
    port = free_port()
    gunicorn = [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "flask_app:app"]
    with process(gunicorn, env, work):
        url = f"http://127.0.0.1:{port}/predict"
        wait_for(url, body)
        results["gunicorn+flask"] = load(url, body, work, seconds)
    return results


# --- report -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="Interleaved warm rounds.")
    parser.add_argument("--cold-runs", type=int, default=7, help="Fresh processes per kind.")
    parser.add_argument("--seconds", type=int, default=10, help="Load duration per server.")
    parser.add_argument("--skip-load", action="store_true", help="Skip the server comparison.")
    parser.add_argument("--skip-cold", action="store_true", help="Skip the cold-start runs.")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="onnxkit-bench-"))
    try:
        print("training the int8 MLP and the fp32 random forest...", file=sys.stderr)
        mlp = train(work, "mlp", [])
        forest = train(work, "random_forest", ["--quantization", "none"])
        for path in (mlp[0], forest[0]):
            manifest = json.loads((path / "manifest.json").read_text())
            print(
                f"  {manifest['estimator']}: serving {manifest['serving']['variant']}",
                file=sys.stderr,
            )
        print("warm requests...", file=sys.stderr)
        warm_results = {
            "int8 MLP": warm(*mlp, args.rounds),
            "fp32 random forest": warm(*forest, args.rounds),
        }
        print("cold starts...", file=sys.stderr)
        cold_results = {} if args.skip_cold else cold(*mlp, args.cold_runs)
        load_results = {} if args.skip_load else throughput(*mlp, work, args.seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(warm_results, cold_results, load_results)
    return 0


def report(
    warm_results: dict[str, dict[str, list[float]]],
    cold_results: dict[str, list[float]],
    load_results: dict[str, float],
) -> None:
    """The markdown table: measure, values, ratio, goal, verdict."""

    def us(seconds: float) -> str:
        return f"{seconds * 1e6:,.0f} us"

    rows: list[tuple[str, str, str, str, bool | None]] = []
    for name, times in warm_results.items():
        # Values are medians over rounds; ratios the median of the per-round (paired) ratios.
        r = {key: statistics.median(values) for key, values in times.items()}

        def paired(top: str, bottom: str, times: dict[str, list[float]] = times) -> float:
            return statistics.median(a / b for a, b in zip(times[top], times[bottom], strict=True))

        one = paired("handler_1", "bare_1")
        rows.append(
            (
                f"{name}: 1 row, handler vs bare session.run",
                f"{us(r['handler_1'])} vs {us(r['bare_1'])}",
                f"{one:.2f}x",
                "<= 2x",
                one <= 2,
            )
        )
        for body in ("json", "csv", "json_orjson", "csv_orjson"):
            many = paired(f"handler_1000_{body}", "bare_1000")
            kind, _, parser = body.partition("_")
            rows.append(
                (
                    f"{name}: 1000 rows, {kind.upper()} body, handler vs bare"
                    + (" (no pysimdjson: the py3.14 arm64 Lambda)" if parser else ""),
                    f"{us(r[f'handler_1000_{body}'])} vs {us(r['bare_1000'])}",
                    f"{many:.2f}x",
                    "<= 5x",
                    many <= 5,
                )
            )
        for body, dtype in (("npy", "float32"), ("npy64", "float64")):
            many = paired(f"handler_1000_{body}", "bare_1000")
            rows.append(
                (
                    f"{name}: 1000 rows, .npy {dtype} body (base64), handler vs bare",
                    f"{us(r[f'handler_1000_{body}'])} vs {us(r['bare_1000'])}",
                    f"{many:.2f}x",
                    "<= 5x",
                    many <= 5,
                )
            )
        core = paired("core_1", "bare_1")
        rows.append(
            (
                f"{name}: 1 row, same path without Powertools (router, logger, EMF)",
                f"{us(r['core_1'])} vs {us(r['bare_1'])}",
                f"{core:.2f}x",
                "(context)",
                None,
            )
        )
        bound = paired("handler_1", "bound_1")
        rows.append(
            (
                f"{name}: 1 row, handler vs its own model call (IOBinding, bound once)",
                f"{us(r['handler_1'])} vs {us(r['bound_1'])}",
                f"{bound:.2f}x",
                "(context)",
                None,
            )
        )
        faster = paired("sklearn_1", "handler_1")
        rows.append(
            (
                f"{name}: 1 row, scikit-learn predict_proba vs handler",
                f"{us(r['sklearn_1'])} vs {us(r['handler_1'])}",
                f"{faster:.1f}x faster",
                ">= 10x",
                faster >= 10,
            )
        )
    if cold_results:
        floor, ours, sk = (statistics.median(cold_results[k]) for k in ("floor", "ours", "sklearn"))
        low = {k: min(v) * 1e3 for k, v in cold_results.items()}
        rows.append(
            (
                "cold start: import handler + load + 1 request vs scikit-learn + joblib",
                f"{ours * 1e3:.0f} ms vs {sk * 1e3:.0f} ms (minima {low['ours']:.0f} / "
                f"{low['sklearn']:.0f} ms)",
                f"{ours / sk:.2f}x",
                "<= 0.2x",
                ours / sk <= 0.2,
            )
        )
        above = (ours - floor) * 1e3
        rows.append(
            (
                f"cold start above `import numpy, onnxruntime` ({floor * 1e3:.0f} ms)",
                f"+{above:.0f} ms (minima +{low['ours'] - low['floor']:.0f} ms)",
                "",
                "<= +100 ms",
                above <= 100,
            )
        )
    if load_results:
        ours_rps, theirs = load_results["onnxkit serve"], load_results["gunicorn+flask"]
        rows.append(
            (
                "server, 1-row POST, 16 conns, 10 s: onnxkit serve vs gunicorn -w 2 + Flask",
                f"{ours_rps:,.0f} vs {theirs:,.0f} req/s",
                f"{ours_rps / theirs:.2f}x",
                ">= 1.5x",
                ours_rps / theirs >= 1.5,
            )
        )
    print("| measure | values | ratio | goal | |")
    print("|---|---|---|---|---|")
    for measure, values, ratio, goal, ok in rows:
        verdict = "" if ok is None else "met" if ok else "**missed**"
        print(f"| {measure} | {values} | {ratio} | {goal} | {verdict} |")


if __name__ == "__main__":
    raise SystemExit(main())
