"""Serve models through the inference handler from a Lambda bundle, in a clean interpreter.

Run as ``python -I -S bundle_driver.py REQUEST.json RESULT.json``: no site-packages, no
environment-driven path, only the paths the request names (the unzipped bundle first, then what
the Lambda runtime itself provides, e.g. botocore for the Tracer). It imports the handler as
Lambda does (``functions.inference.handler``, configured by the environment), answers every
event with every model, and writes what it answered and what the process loaded: the modules,
the files they came from and the shared objects mapped (``/proc/self/maps``). Standard library
only, besides the bundle: this file is not importable from the bundle's interpreter otherwise.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time


class Context:
    """The Lambda context attributes the handler reads."""

    function_name = "onnxkit-inference-bundle"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:onnxkit-bundle"
    aws_request_id = "bundle-check"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def loaded_files() -> list[str]:
    """Every file a module came from, and every file mapped into the process."""
    files = {getattr(module, "__file__", None) for module in list(sys.modules.values())}
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/"):
                files.add(parts[5].strip())
    return sorted(os.path.realpath(f) for f in files if f)


def main() -> int:
    with open(sys.argv[1]) as handle:
        request = json.load(handle)
    sys.path[:0] = request["path"]
    os.environ.update(request.get("environ", {}))
    answers: dict[str, list[list[object]]] = {}
    started = time.perf_counter()
    logs = io.StringIO()  # EMF lines and logs: stdout is the handler's, not this report's
    with contextlib.redirect_stdout(logs), contextlib.redirect_stderr(logs):
        os.environ["MODEL_URI"] = request["models"][0]
        from functions.inference import handler  # as Lambda's init does

        imported = time.perf_counter() - started
        functions = [handler.FUNCTION] + [
            handler.InferenceFunction.from_env(dict(os.environ, MODEL_URI=model))
            for model in request["models"][1:]
        ]
        for model, function in zip(request["models"], functions, strict=True):
            answers[model] = [
                [answer["statusCode"], answer["body"]]
                for answer in (function.lambda_handler(e, Context()) for e in request["events"])
            ]
    result = {
        "python": sys.version,
        "machine": os.uname().machine,
        "import_seconds": imported,
        "answers": answers,
        "modules": sorted(sys.modules),
        "files": loaded_files(),
        "tracer": type(handler.FUNCTION.telemetry.tracer).__name__,
    }
    with open(sys.argv[2], "w") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
