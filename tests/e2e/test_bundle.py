"""The inference bundle serves on its own: the handler, imported from the unzipped bundle in a
clean interpreter (``python -I -S``, nothing on ``sys.path`` but the bundle and, with X-Ray
tracing on, what Lambda's runtime provides), answers every event fixture in the three event
formats with the bundled breast_cancer int8 MLP and forest exactly as the checkout does.

x86_64 runs here with this interpreter, on a bundle built the deployed way for its Python
version. arm64 runs under qemu-user with Debian's arm64 Python, where ``make arm64-sysroot``
has set one up (``tests/support/arm64_sysroot.sh``); otherwise it is skipped, saying so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.bundling import FunctionBundle, write_bundle
from tests.support.inference import FORMATS, FakeContext, as_format, load_event
from tests.support.paths import EVENTS

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("bundle")]

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "tests/support/bundle_driver.py"
SYSROOT = Path(os.environ.get("ONNXKIT_ARM64_SYSROOT", REPO / ".cache/arm64-sysroot"))
# What Lambda's Python runtime provides beside the bundle (the bundle leaves them out).
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "dateutil", "urllib3", "six")
# A cold start must not pay for these (they came with Powertools' event handler).
NOT_AT_COLD_START = ("asyncio", "ssl", "aws_lambda_powertools.event_handler", "aws_xray_sdk")


@pytest.fixture(scope="module")
def models(train_artifact: Callable[..., Path]) -> list[Path]:
    """The bundled breast_cancer data as an int8 MLP and an fp32 random forest."""
    mlp = train_artifact("breast_cancer", model="mlp")
    forest = train_artifact("breast_cancer", model="random_forest", quantization="none")
    variant = json.loads((mlp / "manifest.json").read_text())["serving"]["variant"]
    assert variant == "int8"
    return [mlp, forest]


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    """Every event fixture, as each front door delivers it."""
    names = sorted(p.stem.removeprefix("inference_") for p in EVENTS.glob("inference_*.json"))
    return [as_format(load_event(name), fmt) for name in names for fmt in FORMATS]


@pytest.fixture(scope="module")
def expected(models: list[Path], events: list[dict[str, Any]]) -> dict[str, list[list[Any]]]:
    """What the checkout's handler answers (status and body), in this process."""
    from functions.inference.app import InferenceFunction
    from functions.inference.observability import Telemetry
    from functions.inference.runtime import Settings

    answers = {}
    for model in models:
        function = InferenceFunction(Settings(model_uri=str(model)), Telemetry(metrics=False))
        results = (function.lambda_handler(event, FakeContext()) for event in events)
        answers[str(model)] = [[r["statusCode"], r["body"]] for r in results]
    return answers


def runtime_dir(root: Path) -> Path:
    """A folder with what Lambda's runtime provides: boto3 and botocore (pure Python)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_PACKAGES:
        (root / runtime_source(name).name).symlink_to(runtime_source(name))
    return root


def runtime_source(name: str) -> Path:
    """This environment's copy of a package Lambda's runtime provides."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, name
    origin = Path(spec.origin).resolve()
    return origin.parent if origin.name == "__init__.py" else origin


def serve(
    interpreter: list[str],
    bundle: Path,
    models: list[Path],
    events: list[dict[str, Any]],
    work: Path,
    *,
    runtime: Path | None = None,
) -> dict[str, Any]:
    """Run the driver in ``interpreter`` over the bundle; its report. ``runtime``: Lambda-like,
    X-Ray tracing on, with the runtime's packages after the bundle."""
    environ = {"ORT_DISABLE_TELEMETRY": "1"}
    if runtime:  # what makes Powertools' Tracer trace: inside Lambda
        environ |= {"LAMBDA_TASK_ROOT": str(bundle), "AWS_LAMBDA_FUNCTION_NAME": "bundle"}
    request = {
        "path": [str(bundle)] + ([str(runtime)] if runtime else []),
        "models": [str(m) for m in models],
        "events": events,
        "environ": environ,
    }
    (work / "request.json").write_text(json.dumps(request))
    # -B: Lambda's /var/task is read-only, nothing is cached beside the sources.
    command = [*interpreter, "-I", "-S", "-B", str(DRIVER), "request.json", "result.json"]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False, env={})
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads((work / "result.json").read_text())
    return report


def check(report: dict[str, Any], expected: dict[str, Any], bundle: Path, python: str) -> None:
    """Same answers, and nothing loaded from outside the bundle but the interpreter's own."""
    assert report["answers"].keys() == expected.keys()
    for model, answers in expected.items():  # one event at a time: a readable failure
        for index, (got, want) in enumerate(zip(report["answers"][model], answers, strict=True)):
            assert got == want, (model, index)
    assert report["python"].startswith(python + "."), report["python"]
    answered = [status for answers in report["answers"].values() for status, _ in answers]
    assert answered.count(200) >= 2 * 6, answered  # predictions, /model, /health, /openapi.json
    allowed = (str(bundle), *(str(runtime_source(name)) for name in RUNTIME_PACKAGES))
    outside = [
        f
        for f in report["files"]
        if f.endswith((".py", ".so")) and "/site-packages/" in f and not f.startswith(allowed)
    ]
    assert not outside, outside[:5]


def bundle_for(architecture: Any, python: str, root: Path) -> Path:
    """The inference bundle as ``cdk synth`` writes it, for ``python`` on ``architecture``."""
    target = root / f"bundle-{architecture}"
    write_bundle(FunctionBundle("inference", python, architecture), target)
    assert not list(target.glob("onnxruntime/capi/libonnxruntime.so*"))
    return target.resolve()


def test_x86_64_bundle_serves_from_a_clean_interpreter(
    models: list[Path],
    events: list[dict[str, Any]],
    expected: dict[str, Any],
    tmp_path: Path,
) -> None:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    bundle = bundle_for("x86_64", python, tmp_path)
    plain = serve([sys.executable], bundle, models, events, tmp_path)
    check(plain, expected, bundle, python)
    assert plain["machine"] == "x86_64" and plain["tracer"] == "NoneType"
    loaded = set(plain["modules"])
    assert not [m for m in loaded for n in NOT_AT_COLD_START if m == n or m.startswith(n + ".")]

    traced = serve(
        [sys.executable], bundle, models, events, tmp_path, runtime=runtime_dir(tmp_path / "rt")
    )
    check(traced, expected, bundle, python)
    assert traced["tracer"] == "Tracer" and "aws_xray_sdk" in traced["modules"]
    print(f"\nx86_64 bundle: imported the handler in {plain['import_seconds']:.2f} s (plain)")


def test_every_pruned_path_exists_and_is_never_loaded(
    models: list[Path], events: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The pruning's audit: from the bundle with nothing pruned, the same runs (tracing off and
    on) load none of what the pruned bundle leaves out, and every rule removes something."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    pruned = FunctionBundle("inference", python, "x86_64")
    full = tmp_path / "full"
    write_bundle(FunctionBundle("inference", python, "x86_64", prune=False), full)
    full = full.resolve()
    runtime = runtime_dir(tmp_path / "rt")
    loaded = {
        Path(f)
        for report in (
            serve([sys.executable], full, models, events, tmp_path),
            serve([sys.executable], full, models, events, tmp_path, runtime=runtime),
        )
        for f in report["files"]
    }
    removed = {pattern: list(full.glob(pattern)) for pattern in pruned.unloaded}
    for folder, keep in pruned.only_loaded.items():
        removed[folder] = [p for p in (full / folder).iterdir() if p.name not in keep]
    for rule, paths in removed.items():
        assert paths, f"{rule} removes nothing"
        for path in paths:
            used = [f for f in loaded if f == path or path in f.parents]
            assert not used, (rule, used[:3])
    kept = {p for p in loaded if full in p.parents}
    print(f"\nloaded {sum(p.stat().st_size for p in kept) / 1e6:.1f} MB of the full bundle")


def _arm64_interpreter() -> tuple[list[str], str]:
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    pythons = sorted(SYSROOT.glob("usr/bin/python3.[0-9]*"))
    if qemu is None or not pythons:
        pytest.skip(f"no qemu-aarch64 or no arm64 Python under {SYSROOT}: make arm64-sysroot")
    return [qemu, "-L", str(SYSROOT), str(pythons[-1])], pythons[-1].name.removeprefix("python")


def test_arm64_bundle_serves_under_emulation(
    models: list[Path],
    events: list[dict[str, Any]],
    expected: dict[str, Any],
    tmp_path: Path,
) -> None:
    interpreter, python = _arm64_interpreter()
    bundle = bundle_for("arm64", python, tmp_path)
    # As deployed: X-Ray tracing on, boto3 and botocore from the runtime (pure Python).
    report = serve(
        interpreter, bundle, models, events, tmp_path, runtime=runtime_dir(tmp_path / "rt")
    )
    check(report, expected, bundle, python)
    assert report["machine"] == "aarch64" and report["tracer"] == "Tracer"
