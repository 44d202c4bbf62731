"""Batch scoring speed, memory and per-part cost: ``python benchmarks/bench_score.py``.

Trains the bundled MLP through the training job on each dataset (breast cancer: 30 numeric
features; customer churn: numeric + categorical, missing values), builds a ``--rows`` CSV by
resampling the bundled table (fixed seed; extra columns such as the target stay in the file,
as users' files have them), then measures on this machine:

* ``onnxkit score`` (a fresh CLI process, default workers = one per core, JSONL out) against
  ``onnxkit predict`` through ``onnxkit serve`` (one server for the whole run, 1,000 rows per
  call) and against the bare ``session.run`` over the same rows, pre-parsed (outside the
  timing) into the session's inputs in the same chunks of 5,000 rows, run by as many
  processes as score's workers with one ONNX Runtime thread each, as score's workers run it.
  Rounds interleave them and alternate their order; a ratio is the median of the per-round
  ratios of the pair (a noisy machine slows both sides of a pair alike), with its range.
* Fair to both sides: the bare model's time is its ``session.run`` loop only (no process
  start, no model load), so score is compared by its **marginal** rate, the rows a second
  once its processes are up: ``(rows - 20,000) / (its time - a 20,000-row run's time)`` in
  the same round (start-up, model loads and worker spawns are in both runs and cancel). The
  wall-clock rate with start-up is printed beside it, and is what the ``predict`` ratio uses
  (both are CLI runs with their own start-up). Until 2026-12-06 the bare ratio divided
  score's wall-clock rate, start-up included, by the bare loop's: at 1M rows about a second
  of start-up against 0.09 s of model time set that ratio more than the scoring did.
* The same rows as Parquet (Arrow's inferred types; converted outside the timing).
* Where a row's time goes: CPU microseconds a row of each stage of one worker's chunk.
* Peak memory (VmHWM from /proc, polled every 0.1 s) of the score process and of each worker,
  for ``--rows`` and ``--big-rows`` (generated into the temp dir and deleted after).
* The cloud scoring function's per-part cost without S3 I/O: one ``--part-mib`` MiB part of
  the CSV split into records, then ``table.score_records`` + ``table.format_records`` (JSONL)
  in this process with one ONNX Runtime thread; and, for the API Gateway comparison, the
  Lambda handler's time for a 1,000-row JSON body (what ``onnxkit predict`` sends).

Timings on a shared machine are noisy: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
BATCH_ROWS = 5000  # onnxkit score's default chunk
SMALL_ROWS = 20_000  # the small run whose time is score's start-up (and four chunks)
DATASETS = ("breast_cancer", "customer_churn")
CPU_SECONDS: list[float] = []
SERVER_PID: list[int] = []  # user + system seconds of each run_timed command, in order


# --- artifacts ----------------------------------------------------------------------------


def train_mlp(work: Path, dataset: str) -> Path:
    """The training job's model dir for the bundled MLP on a bundled dataset."""
    from onnxkit.datasets import bundled
    from training_jobs import train as job

    data = bundled(dataset)
    model_dir = work / dataset / "model"
    argv = [
        "--target",
        data.target,
        "--model",
        "mlp",
        "--train",
        str(data.path),
        "--model-dir",
        str(model_dir),
        "--output-dir",
        str(work / dataset / "out"),
        "--latency-runs",
        "0",
    ]
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        if job.main(argv) != 0:
            raise SystemExit(f"training the MLP on {dataset} failed")
    return model_dir


def resample(dataset: str, rows: int, out: Path, seed: int = 12) -> Path:
    """``rows`` data rows drawn with replacement from the bundled table, its header first."""
    from onnxkit.datasets import bundled

    lines = bundled(dataset).path.read_bytes().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    rng = random.Random(seed)
    with out.open("wb") as handle:
        handle.write(header)
        left = rows
        while left:
            take = min(left, 100_000)
            handle.write(b"".join(rng.choices(body, k=take)))
            left -= take
    return out


# --- processes ----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in task.read_text().split()]
    return found


def _hwm_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _is_worker(pid: int) -> bool:
    """A process pool's worker (not multiprocessing's resource tracker)."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def run_timed(argv: list[str], env: dict[str, str]) -> tuple[float, dict[int, float]]:
    """Seconds the command took, and the peak RSS (MiB) of it and each descendant by pid
    (the command's own pid first)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peaks: dict[int, float] = {proc.pid: 0.0}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            pids = [proc.pid]
            for pid in pids:  # grows as children are found: the whole tree
                pids += [c for c in _children(pid) if c not in pids]
            for pid in pids:
                hwm = _hwm_mib(pid)
                if hwm is not None and (pid == proc.pid or _is_worker(pid)):
                    peaks[pid] = max(peaks.get(pid, 0.0), hwm)
            stop.wait(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # CPU of it and its reaped workers
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    CPU_SECONDS.append(usage.ru_utime + usage.ru_stime)
    stop.set()
    poller.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{stderr.decode()[-2000:]}")
    return elapsed, peaks


@contextlib.contextmanager
def served(model: Path, env: dict[str, str]) -> Iterator[str]:
    """``onnxkit serve`` on a free port for the block; its base URL."""
    from benchmarks.bench_inference import free_port, process

    port = free_port()
    argv = [str(BIN / "onnxkit"), "serve", "--model", str(model), "--port", str(port)]
    with process(argv, env, ROOT) as server:
        url = f"http://127.0.0.1:{port}"
        _wait_model(url)
        SERVER_PID[:] = [server.pid]
        yield url


def process_cpu(pid: int) -> float:
    """User + system seconds a live process has used (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_model(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/model", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


# --- the bare model -----------------------------------------------------------------------


def bare_feeds(model: Any, data: Path, share: int, of: int) -> list[dict[str, Any]]:
    """The session inputs of every ``of``-th chunk of ``data`` (starting at ``share``), parsed
    with the csv module and the FeedBuilder (not timed)."""
    from functions.inference.batch import feature_positions

    feeds = []
    with data.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        positions = feature_positions([spec.name for spec in model.features], header)
        numeric = [spec.numeric for spec in model.features]
        chunk: list[list[Any]] = []
        index = 0

        def flush() -> None:
            nonlocal index
            if index % of == share:
                feeds.append(model.feed(chunk))
            index += 1

        for record in reader:
            row = [record[p] for p in positions]
            chunk.append(
                [(float(v) if v else None) if n else v for v, n in zip(row, numeric, strict=True)]
            )
            if len(chunk) == BATCH_ROWS:
                flush()
                chunk = []
        if chunk:
            flush()
    return feeds


def bare_worker(model_dir: str, data: str, share: int, of: int) -> None:
    """One bare process: parse its chunks, say ready, wait for go, time session.run over them."""
    from onnxkit.local.scoring import ModelRef, load

    model = load(ModelRef(model_dir), threads=1)
    feeds = bare_feeds(model, Path(data), share, of)
    session, names = model.session, model.output_names
    session.run(names, feeds[0])
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    for feed in feeds:
        session.run(names, feed)
    print(time.perf_counter() - started, flush=True)


def run_bare(model: Path, data: Path, workers: int, env: dict[str, str]) -> float:
    """Wall seconds of ``workers`` processes running session.run over their share of chunks."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--bare-worker",
                str(model),
                str(data),
                str(share),
                str(workers),
            ],
            env=env,
            cwd=ROOT,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for share in range(workers)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    seconds = []
    for proc in procs:
        out, _ = proc.communicate()
        seconds.append(float(out.strip()))
    return max(seconds)


# --- per part -----------------------------------------------------------------------------


class _MemoryStore:
    """The scoring steps' object store over a dict (no S3 I/O in the measurement)."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def read(self, bucket: str, key: str) -> bytes | None:
        return self.objects.get(key)

    def listing(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        return sorted((k, len(v)) for k, v in self.objects.items() if k.startswith(prefix))

    def size(self, bucket: str, key: str) -> int | None:
        return len(self.objects[key]) if key in self.objects else None

    def lines(self, bucket: str, key: str, start: int) -> Iterator[bytes]:
        return iter(io.BytesIO(self.objects[key][start:]))

    def write(self, bucket: str, key: str, data: bytes) -> None:
        self.objects[key] = data


def part_cost(model_dir: Path, data: Path, part_mib: int, reps: int) -> dict[str, Any]:
    """One part of whole CSV rows through the cloud scoring function's own code for a part
    (``functions.inference.scoring.score_part``), reading from and writing to memory."""
    from functions.inference import scoring, table
    from onnxkit.contract import scoring as contract
    from onnxkit.local.scoring import ModelRef, load

    model = load(ModelRef(str(model_dir)), threads=1)
    with data.open("rb") as handle:
        head = handle.readline()
        raw = handle.read(part_mib << 20)
    raw = raw[: raw.rindex(b"\n") + 1]
    header = table.parse_header(head)
    store = _MemoryStore({"scoring/input/x.csv": head + raw})
    part = contract.Part(
        part=0, key="scoring/input/x.csv", start=len(head), end=len(head) + len(raw),
        size=len(head) + len(raw), header=header, data_start=len(head), first_line=2,
    )  # fmt: skip
    pinned = contract.PinnedModel(name="m", version="v", uri="-", sha256="0" * 64)
    batch_input = contract.BatchInput(
        bucket="b", output_prefix="scoring/output/r/", format="csv", model=pinned
    )
    scored: list[float] = []
    result = None
    for _ in range(reps):
        started = time.perf_counter()
        result = scoring.score_part(part, batch_input, model, store=store)
        scored.append(time.perf_counter() - started)
    assert result is not None and result.scored == result.rows
    out = store.objects[contract.part_keys("scoring/output/r/", 0)[0]]
    return {
        "rows": result.rows,
        "in_bytes": len(raw),
        "out_bytes": len(out),
        "score_ms": [s * 1e3 for s in scored],
    }


def handler_call_ms(model_dir: Path, data: Path, rows: int, reps: int) -> list[float]:
    """The Lambda handler's milliseconds for one ``rows``-row JSON body (as predict sends)."""
    import orjson

    from benchmarks.bench_inference import Context
    from onnxkit.local.gateway import load_function

    function = load_function(str(model_dir))
    with data.open(newline="") as handle:
        reader = csv.DictReader(handle)
        model = function.runtime.model
        assert model is not None
        names = [spec.name for spec in model.features]
        numeric = {spec.name: spec.numeric for spec in model.features}
        instances = []
        for record, _ in zip(reader, range(rows), strict=False):
            instances.append(
                {
                    n: (
                        (float(record[n]) if record[n] else None)
                        if numeric[n]
                        else record[n] or None
                    )
                    for n in names
                }
            )
    base = json.loads((ROOT / "tests/events/inference_predict_list.json").read_text())
    event = dict(
        base,
        body=orjson.dumps({"instances": instances}).decode(),
        headers={"Content-Type": "application/json"},
        multiValueHeaders={"Content-Type": ["application/json"]},
    )
    context = Context()
    assert function.lambda_handler(event, context)["statusCode"] == 200
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        function.lambda_handler(event, context)
        times.append((time.perf_counter() - started) * 1e3)
    return times


# --- report -------------------------------------------------------------------------------


def med_range(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}-{fmt.format(max(values))})"
    )


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def rounds_for(
    dataset: str,
    model: Path,
    data: Path,
    work: Path,
    rounds: int,
    workers: int,
    env: dict[str, str],
    predict: bool = True,
) -> dict[str, list[float]]:
    """Interleaved rounds of score (CSV, a small CSV and Parquet), predict via serve and the
    bare model; rows/s each, and the ratios of each round's pairs."""
    n_rows = sum(1 for _ in data.open("rb")) - 1
    small = resample(dataset, SMALL_ROWS, work / dataset / "small.csv")
    parquet = as_parquet(data)
    got: dict[str, list[float]] = {
        "score": [], "score_small": [], "score_parquet": [], "predict": [], "bare": [],
        "main_mib": [], "score_cpu": [], "predict_cpu": [], "worker_mib": [], "startup_s": [],
        "score_marginal": [],
    }  # fmt: skip
    seconds_of: dict[str, float] = {}
    with served(model, env) if predict else contextlib.nullcontext("") as url:

        def score(source: Path, keep: bool) -> float:
            out = work / "score.jsonl"
            seconds, peaks = run_timed(
                [
                    str(BIN / "onnxkit"), "score", "--model", str(model), "-i", str(source),
                    "-o", str(out), "--overwrite",
                ],
                env,
            )  # fmt: skip
            if keep:
                main, *workers_ = peaks.values()
                got["main_mib"].append(main)
                got["worker_mib"] += workers_
                got["score_cpu"].append(CPU_SECONDS[-1])
            return seconds

        def predict_rows() -> float:
            out = work / "predict.csv"
            server = process_cpu(SERVER_PID[0])
            seconds, _ = run_timed(
                [
                    str(BIN / "onnxkit"), "predict", "--url", url, "-i", str(data), "-o",
                    str(out), "--overwrite",
                ],
                env,
            )  # fmt: skip
            got["predict_cpu"].append(CPU_SECONDS[-1] + process_cpu(SERVER_PID[0]) - server)
            return seconds

        candidates: dict[str, tuple[Callable[[], float], int]] = {
            "score": (lambda: score(data, True), n_rows),
            "score_small": (lambda: score(small, False), SMALL_ROWS),
            "score_parquet": (lambda: score(parquet, False), n_rows),
            "bare": (lambda: run_bare(model, data, workers, env), n_rows),
        }
        if predict:
            candidates["predict"] = (predict_rows, n_rows)
        for round_ in range(rounds):
            order = list(candidates) if round_ % 2 == 0 else list(reversed(candidates))
            for name in order:
                run, rows = candidates[name]
                seconds_of[name] = run()
                got[name].append(rows / seconds_of[name])
                print(
                    f"{dataset} round {round_ + 1} {name}: {rows / seconds_of[name]:,.0f} rows/s "
                    f"(load {loadavg()})",
                    file=sys.stderr,
                    flush=True,
                )
            # What a row costs once the processes are up: the big run less the small one
            # (start-up, model loads, worker spawns and the first chunks are in both).
            extra = seconds_of["score"] - seconds_of["score_small"]
            got["score_marginal"].append((n_rows - SMALL_ROWS) / extra)
            got["startup_s"].append(
                seconds_of["score_small"] - SMALL_ROWS * extra / (n_rows - SMALL_ROWS)
            )
    pairs = {
        "vs_predict": ("score", "predict"),
        "vs_bare": ("score_marginal", "bare"),
        "vs_bare_wall": ("score", "bare"),
        "parquet_vs_csv": ("score_parquet", "score"),
    }
    for key, (top, bottom) in pairs.items():
        got[key] = [t / b for t, b in zip(got[top], got[bottom], strict=False)]
    got["cpu_ratio"] = [p / s for s, p in zip(got["score_cpu"], got["predict_cpu"], strict=False)]
    return got


def as_parquet(data: Path) -> Path:
    """The CSV as Parquet (Arrow's inferred types, 64k-row groups), beside it (not timed)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = data.with_suffix(".parquet")
    pq.write_table(pacsv.read_csv(data), path, row_group_size=65_536)
    return path


def stage_costs(model_dir: Path, data: Path, reps: int) -> dict[str, float]:
    """CPU microseconds a row of each stage of one worker's chunk (BATCH_ROWS rows, one ONNX
    Runtime thread; the least of ``reps`` runs, as a worker runs it over a warm chunk)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from functions.inference import batch, table
    from onnxkit.local import columnar
    from onnxkit.local.scoring import ModelRef, chunks, load

    model = load(ModelRef(str(model_dir)), threads=1)
    with data.open("rb") as handle:
        header = tuple(table.parse_header(handle.readline()))
        start = handle.tell()
        chunk = next(chunks(handle, "csv", batch_rows=BATCH_ROWS, first_row=0, line=2))
    block, rows = chunk.block, chunk.size
    job = table.Job("csv", "jsonl", header, None)
    positions = batch.feature_positions([spec.name for spec in model.features], header)
    types = {f"c{p}": pa.float64() for p in positions}
    convert = pacsv.ConvertOptions(column_types=types, include_columns=list(types))
    options = columnar._read_options(len(header), block)
    parsed = pacsv.read_csv(pa.py_buffer(block), options, columnar.PARSE, convert)
    matrix = np.stack([parsed.column(name).to_numpy() for name in types])
    feed = model.feed.from_matrix(matrix.T)
    assert feed is not None
    answer = model.predict_feed(feed)

    def cpu_us(work: Callable[[], Any]) -> float:
        best = float("inf")
        for _ in range(reps):
            started = time.process_time()
            work()
            best = min(best, time.process_time() - started)
        return best / rows * 1e6

    def read_block() -> None:
        with data.open("rb") as handle:
            handle.seek(start)
            next(chunks(handle, "csv", batch_rows=BATCH_ROWS, first_row=0, line=2))

    stages = {
        "main process: read the block, find its rows (scoring.chunks)": read_block,
        "worker: checks (quote, CR, NUL, blank line, UTF-8)": lambda: (
            [b in block for b in (b'"', b"\r", b"\0", b"\n\n")],
            table.is_utf8(block),
        ),
        "worker: Arrow's CSV parse, float64 columns": lambda: pacsv.read_csv(
            pa.py_buffer(block), options, columnar.PARSE, convert
        ),
        "worker: float64 columns -> float32 feed (checks included)": lambda: model.feed.from_matrix(
            np.stack([parsed.column(name).to_numpy() for name in types]).T
        ),
        "worker: session.run (the bare model)": lambda: model.session.run(model.output_names, feed),
        "worker: JSON Lines out (table.answer_records)": lambda: table.answer_records(
            model, job, answer, None, rows=rows, first_row=0, first_line=2
        ),
        "worker: the whole chunk (columnar.score_csv_block)": lambda: columnar.score_csv_block(
            model, job, block, first_row=0, first_line=2
        ),
    }
    return {name: cpu_us(work) for name, work in stages.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=10_000_000, help="0: skip")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--part-mib", type=int, default=16)
    parser.add_argument("--part-reps", type=int, default=9)
    parser.add_argument("--stage-reps", type=int, default=15, help="0: skip the stage costs")
    parser.add_argument(
        "--no-predict", action="store_true", help="skip predict via serve (a quick run)"
    )
    parser.add_argument("--skip-part", action="store_true", help="skip the per-part costs")
    parser.add_argument("--bare-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_worker:
        model_dir, data, share, of = args.bare_worker
        bare_worker(model_dir, data, int(share), int(of))
        return 0
    workers = len(os.sched_getaffinity(0))
    env = dict(os.environ, PYTHONPATH=str(ROOT), ORT_DISABLE_TELEMETRY="1")
    work = Path(tempfile.mkdtemp(prefix="onnxkit-bench-score-"))
    started_load = loadavg()
    results: dict[str, dict[str, list[float]]] = {}
    extra: dict[str, Any] = {}
    try:
        for dataset in args.datasets:
            model = train_mlp(work, dataset)
            data = resample(dataset, args.rows, work / dataset / "rows.csv")
            results[dataset] = rounds_for(
                dataset, model, data, work, args.rounds, workers, env, not args.no_predict
            )
            if args.stage_reps:
                extra.setdefault("stages", {})[dataset] = stage_costs(model, data, args.stage_reps)
            if dataset == DATASETS[0] and not args.skip_part:
                extra["part"] = part_cost(model, data, args.part_mib, args.part_reps)
                extra["call_ms"] = handler_call_ms(model, data, 1000, 50)
            if args.big_rows and dataset == DATASETS[0]:
                big = resample(dataset, args.big_rows, work / "big.csv")
                out = work / "big.jsonl"
                seconds, peaks = run_timed(
                    [
                        str(BIN / "onnxkit"),
                        "score",
                        "--model",
                        str(model),
                        "-i",
                        str(big),
                        "-o",
                        str(out),
                        "--overwrite",
                    ],
                    env,
                )
                main_peak, *worker_peaks = peaks.values()
                extra["big"] = (seconds, main_peak, worker_peaks)
                big.unlink()
                out.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"# onnxkit score, {time.strftime('%Y-%m-%d')}: {cpu_model()}, {workers} cores, "
        f"Python {platform.python_version()}; load average {started_load} at the start, "
        f"{loadavg()} at the end"
    )
    print(
        f"\n{args.rows:,} rows, {args.rounds} interleaved rounds (order alternating); "
        "median (min-max) of the rounds, a ratio the median of each round's pair. score: "
        "workers = cores, JSONL out, wall-clock with start-up; score marginal: the rows a "
        f"second past start-up, ({args.rows:,} - {SMALL_ROWS:,}) / (its time - a "
        f"{SMALL_ROWS:,}-row run's, same round); predict: through onnxkit serve, 1,000 "
        "rows/call; bare: session.run over pre-parsed inputs in 5,000-row chunks, "
        f"{workers} processes x 1 thread, timing session.run only.\n"
    )
    print(
        "| dataset | score rows/s | score marginal rows/s | score start-up s | "
        "Parquet score rows/s | predict via serve rows/s | bare session.run rows/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for dataset, r in results.items():
        print(
            f"| {dataset} | {med_range(r['score'])} | {med_range(r['score_marginal'])} | "
            f"{med_range(r['startup_s'], '{:.2f}')} | {med_range(r['score_parquet'])} | "
            f"{med_range(r['predict']) if r['predict'] else '-'} | {med_range(r['bare'])} |"
        )
    print(
        "\n| dataset | score ÷ predict (goal ≥ 10) | score marginal ÷ bare (goal ≥ 0.3) | "
        "score with start-up ÷ bare | Parquet ÷ CSV score |"
    )
    print("|---|---|---|---|---|")
    for dataset, r in results.items():
        vs_predict = f"{med_range(r['vs_predict'], '{:.1f}')}x" if r["vs_predict"] else "-"
        print(
            f"| {dataset} | {vs_predict} | {med_range(r['vs_bare'], '{:.3f}')}x | "
            f"{med_range(r['vs_bare_wall'], '{:.3f}')}x | "
            f"{med_range(r['parquet_vs_csv'], '{:.2f}')}x |"
        )
    for dataset, stages in extra.get("stages", {}).items():
        print(
            f"\nWhere a row's time goes ({dataset}; CPU us a row, the least of "
            f"{args.stage_reps} runs over one {BATCH_ROWS:,}-row chunk, one thread):\n"
        )
        print("| stage | CPU us/row |")
        print("|---|---|")
        for name, micros in stages.items():
            print(f"| {name} | {micros:.3f} |")
    print("\nCPU seconds (user + system, the CLI with its workers; predict adds the server's):\n")
    print("| dataset | score CPU s | predict via serve CPU s | predict ÷ score CPU |")
    print("|---|---|---|---|")
    for dataset, r in results.items():
        if not r["predict_cpu"]:
            continue
        print(
            f"| {dataset} | {med_range(r['score_cpu'], '{:.1f}')} | "
            f"{med_range(r['predict_cpu'], '{:.1f}')} | {med_range(r['cpu_ratio'], '{:.1f}')}x |"
        )
    print("\n| dataset | rows | score main process peak RSS MiB | each worker's peak RSS MiB |")
    print("|---|---|---|---|")
    for dataset, r in results.items():
        print(
            f"| {dataset} | {args.rows:,} | {med_range(r['main_mib'])} | "
            f"{med_range(r['worker_mib'])} |"
        )
    if "big" in extra:
        seconds, main_peak, worker_peaks = extra["big"]
        print(
            f"| {DATASETS[0]} | {args.big_rows:,} | {main_peak:,.0f} | "
            f"{', '.join(f'{w:,.0f}' for w in worker_peaks)} ({args.big_rows / seconds:,.0f} "
            "rows/s, one run) |"
        )
    if "part" in extra:
        part = extra["part"]
        print(
            f"\nPer part ({DATASETS[0]}, MLP, one process, 1 ONNX Runtime thread, "
            f"{args.part_reps} reps; median (min-max)):\n"
        )
        print("| part MiB | rows/part | input bytes/row | JSONL bytes/row | score_part ms |")
        print("|---|---|---|---|---|")
        print(
            f"| {args.part_mib} | {part['rows']:,} | {part['in_bytes'] / part['rows']:.1f} | "
            f"{part['out_bytes'] / part['rows']:.1f} | {med_range(part['score_ms'])} |"
        )
        print(
            f"\nLambda handler, one 1,000-row JSON body (as onnxkit predict sends), 50 calls: "
            f"{med_range(extra['call_ms'], '{:.1f}')} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
