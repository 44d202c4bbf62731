"""What the deployed function's capture costs a warm one-row ``POST /predict``, in process.

The Lambda handler (``InferenceFunction``, EMF metrics on, as behind the REST API) is called
with one-row REST events; its stdout is a pipe read by another process (``cat``), as Lambda's
platform reads it, and written through on every line as Lambda's Python runtime does. Arms:

- ``off``: no capture sink (``capture.sample_rate`` 0).
- ``lines@1``: :class:`~functions.inference.capture.LogCapture` capturing every call (the
  chosen transport's whole cost on the response path: build, encode, write, flush).
- ``lines@<rate>``: the same at the config's default rate.
- ``firehose@1``: the rejected alternative, a synchronous Firehose ``PutRecordBatch`` of the
  call's lines before returning (the only way to flush before Lambda may freeze the
  environment without an extension). Measured without the network: a botocore ``before-send``
  hook answers, so this is serialization and SigV4 signing only, a lower bound (a real call
  adds a round trip to the Firehose endpoint).

Every round runs each arm ``--calls`` times in a shuffled order; per-round medians give paired
ratios against ``off`` in the same round, whose median and range over the rounds are printed.

    python benchmarks/bench_cloud_capture.py [--rounds 15] [--calls 400]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


class _Raw(io.BytesIO):
    def stream(self, **_: Any) -> Any:  # what botocore reads a response body with
        yield self.getvalue()


def firehose_sink(records: Callable[[Any], Any], encode: Callable[[Any], bytes]) -> Any:
    """A sink that sends the call's lines with a synchronous PutRecordBatch (answered locally)."""
    import boto3
    from botocore.awsrequest import AWSResponse

    client = boto3.client(
        "firehose",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="fake",
    )

    def answer(request: Any, **_: Any) -> AWSResponse:
        body = json.dumps(
            {"FailedPutCount": 0, "Encrypted": True, "RequestResponses": [{"RecordId": "1"}]}
        ).encode()
        return AWSResponse(
            request.url, 200, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body)
        )

    client.meta.events.register("before-send.firehose.PutRecordBatch", answer)

    def sink(call: Any) -> None:
        lines = encode(records(call)).splitlines(keepends=True)
        client.put_record_batch(
            DeliveryStreamName="onnxkit-capture", Records=[{"Data": line} for line in lines]
        )

    return sink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()

    from bench_capture import train

    from functions.inference.app import InferenceFunction
    from functions.inference.capture import LogCapture, records
    from functions.inference.runtime import Settings
    from onnxkit.config import load_config
    from onnxkit.contract.capture import encode_records

    default_rate = load_config("dev").capture.sample_rate
    reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert reader.stdin is not None
    # Lambda's Python runtime writes stdout through (every print reaches the pipe at once).
    pipe = io.TextIOWrapper(reader.stdin, encoding="utf-8", write_through=True)
    with tempfile.TemporaryDirectory() as scratch:
        with contextlib.redirect_stdout(io.StringIO()):
            model = train(Path(scratch) / "artifact")
        settings = Settings(model_uri=str(model), cache_dir=Path(scratch) / "cache")
        sinks: dict[str, Any] = {
            "off": None,
            "lines@1": LogCapture(1.0),
            f"lines@{default_rate:g}": LogCapture(default_rate),
            "firehose@1": firehose_sink(records, encode_records),
        }
        functions = {
            name: InferenceFunction(settings, capture=sink) for name, sink in sinks.items()
        }
        width = len(functions["off"].runtime.require().features)
        base = json.loads((ROOT / "tests/events/inference_predict_list.json").read_text())
        row = [[round(0.1 + i / 7, 4) for i in range(width)]]
        event = dict(base, body=json.dumps({"instances": row}))

        class Context:
            function_name, memory_limit_in_mb = "bench", 1024
            invoked_function_arn, aws_request_id = "arn:aws:lambda:::function:bench", "r"

        context = Context()
        medians: dict[str, list[float]] = {name: [] for name in functions}
        rng = random.Random(0)
        with contextlib.redirect_stdout(pipe):
            for function in functions.values():  # warm every arm
                for _ in range(200):
                    function.lambda_handler(event, context)
            for _ in range(args.rounds):
                order = list(functions)
                rng.shuffle(order)
                for name in order:
                    handler = functions[name].lambda_handler
                    samples = []
                    for _ in range(args.calls):
                        started = time.perf_counter_ns()
                        response = handler(event, context)
                        samples.append(time.perf_counter_ns() - started)
                    assert response["statusCode"] == 200
                    medians[name].append(statistics.median(samples) / 1000)
        pipe.close()
        reader.wait(timeout=30)
        captured = {n: s.records for n, s in sinks.items() if isinstance(s, LogCapture)}
    print(
        f"{args.rounds} rounds x {args.calls} warm one-row calls per arm, in process; "
        f"records written: {captured}; pid {os.getpid()}"
    )
    for name, values in medians.items():
        print(
            f"{name:>12}: median of round medians {statistics.median(values):.1f} us "
            f"({min(values):.1f} to {max(values):.1f})"
        )
    for name in functions:
        if name == "off":
            continue
        ratios = [x / y for x, y in zip(medians[name], medians["off"], strict=True)]
        print(
            f"{name:>12}/off: median ratio {statistics.median(ratios):.3f} "
            f"({min(ratios):.3f} to {max(ratios):.3f})"
        )


if __name__ == "__main__":
    main()
