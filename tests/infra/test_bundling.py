"""Docker-free bundles: contents, platform, size, cache reuse, and the training tarball."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from infra import bundling
from infra.bundling import FunctionBundle, platform_tags, strip_tree, tree_size
from tests.infra.conftest import SYNTH_GROUP, Synthesized

LAMBDA_LIMIT = 250 * 1024 * 1024  # unzipped deployment package
INFERENCE_BUDGET = 80_000_000  # the arm64 inference bundle, unzipped (issue 14)


def asset_dir(kit: Synthesized, part: str, handler: str) -> Path:
    """The staged (unzipped) asset of the function with ``handler`` in a stack."""
    for fn in kit.resources(part, "AWS::Lambda::Function").values():
        if fn["Properties"].get("Handler") == handler:
            key = fn["Properties"]["Code"]["S3Key"]
            return kit.outdir / f"asset.{key.removesuffix('.zip')}"
    raise AssertionError(handler)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@SYNTH_GROUP
def test_inference_bundle_fits_lambda(dev: Synthesized) -> None:
    root = asset_dir(dev, "Serving", "functions.inference.handler.lambda_handler")
    size = tree_size(root)
    print(f"\ninference bundle (arm64, unzipped): {size / 1e6:.1f} MB = {size / 2**20:.1f} MiB")
    assert size < LAMBDA_LIMIT
    assert size <= INFERENCE_BUDGET  # 104.6 MB before pruning what the function never loads
    files = _files(root)
    for required in (
        "functions/__init__.py",
        "functions/inference/handler.py",
        "onnxkit/__init__.py",
        "onnxkit/contract/__init__.py",
        "onnxkit/contract/manifest.py",
        "onnxkit/contract/layout.py",
        "onnxkit/contract/pointer.py",
        "onnxkit/contract/values.py",
        "onnxkit/contract/api.py",
        "onnxruntime/__init__.py",
        "numpy/__init__.py",
        "aws_lambda_powertools/__init__.py",
    ):
        assert required in files, required
    assert not any("/__pycache__/" in f or f.endswith(".pyc") for f in files)
    assert not any("/tests/" in f for f in files)
    assert not any(f.startswith(("botocore/", "boto3/", "functions/pipeline/")) for f in files)
    # Only the kernel modules the function imports: the gate (pydantic), the workflow and the
    # metric lines belong to other runtimes.
    contract = {f for f in files if f.startswith("onnxkit/")}
    assert not contract & {
        "onnxkit/contract/gate.py",
        "onnxkit/contract/workflow.py",
        "onnxkit/contract/metrics.py",
    }
    assert not any(f.startswith("pydantic") for f in files)
    # dist-info keeps only what importlib.metadata reads.
    dist_info = {f.split("/", 1)[1] for f in files if f.split("/")[0].endswith(".dist-info")}
    assert dist_info <= {"METADATA", "top_level.txt", "entry_points.txt"}
    native = [f for f in files if f.startswith("onnxruntime/capi/") and f.endswith(".so")]
    assert native and all("x86_64" not in f for f in native)
    assert any("aarch64" in f for f in native)
    # Never loaded by the function (tests/e2e/test_bundle.py serves without them).
    assert not any(f.startswith("onnxruntime/capi/libonnxruntime.so") for f in files)
    assert not any(
        f.startswith(("aws_lambda_powertools/event_handler/", "numpy/random/")) for f in files
    )


@SYNTH_GROUP
def test_architecture_switches_the_wheels(variant: Synthesized) -> None:
    root = asset_dir(variant, "Serving", "functions.inference.handler.lambda_handler")
    native = [f for f in _files(root) if f.startswith("onnxruntime/capi/") and ".cpython-" in f]
    assert native and all("x86_64" in f for f in native)
    print(f"\ninference bundle (x86_64, unzipped): {tree_size(root) / 1e6:.1f} MB")


@SYNTH_GROUP
def test_pipeline_bundle_has_only_what_the_steps_import(dev: Synthesized) -> None:
    root = asset_dir(dev, "Pipeline", "functions.pipeline.handlers.evaluate")
    files = _files(root)
    assert "functions/pipeline/handlers.py" in files
    assert "onnxkit/contract/gate.py" in files
    assert any(f.startswith("pydantic_core/") and "aarch64" in f for f in files)
    assert not any(f.startswith(("onnxruntime/", "numpy/", "functions/inference/")) for f in files)
    assert root == asset_dir(dev, "Pipeline", "functions.pipeline.handlers.promote")


@SYNTH_GROUP
def test_drift_bundle_has_the_check_numpy_and_msgspec_only(dev: Synthesized) -> None:
    root = asset_dir(dev, "Serving", "functions.monitor.handler.lambda_handler")
    files = _files(root)
    for module in ("handler", "check", "drift", "aws", "ports"):
        assert f"functions/monitor/{module}.py" in files, module
    contract = {f for f in files if f.startswith("onnxkit/contract/") and f.endswith(".py")}
    assert contract == {
        f"onnxkit/contract/{m}.py"
        for m in ("__init__", "capture", "drift", "layout", "manifest", "pointer", "reference")
    }
    assert any(f.startswith("numpy/_core/") and "aarch64" in f for f in files)
    assert "msgspec/__init__.py" in files
    assert not any(
        f.startswith(("onnxruntime/", "pydantic", "functions/inference/", "functions/pipeline/"))
        for f in files
    )
    print(f"\ndrift bundle (arm64, unzipped): {tree_size(root) / 1e6:.1f} MB")


@SYNTH_GROUP
def test_training_source_is_one_script_mode_tarball(dev: Synthesized) -> None:
    tarballs = [p for p in dev.outdir.glob("asset.*.tar.gz") if p.stat().st_size]
    assert len(tarballs) == 1
    with tarfile.open(tarballs[0], "r:gz") as archive:
        names = set(archive.getnames())
    assert {
        "train.py",
        "onnxkit/__init__.py",
        "onnxkit/contract/metrics.py",
        "onnxkit/contract/manifest.py",
    } <= names
    if (bundling.REPO_ROOT / "training_jobs/requirements.txt").exists():
        assert "requirements.txt" in names
    assert not any("__pycache__" in n for n in names)


def test_source_tarball_holds_the_script_at_its_root_and_every_module_as_a_package(
    tmp_path: Path,
) -> None:
    names = bundling.write_source_tarball(tmp_path / "source.tar.gz")
    modules = {
        f"training_jobs/{path.name}"
        for path in (bundling.REPO_ROOT / "training_jobs").glob("*.py")
        if path.name != "train.py"
    }
    assert {"training_jobs/__init__.py", "training_jobs/job.py"} <= modules <= set(names)
    assert "train.py" in names and "training_jobs/train.py" not in names
    assert "training_jobs/requirements.txt" not in names


def test_source_tarball_is_reproducible(tmp_path: Path) -> None:
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    names = bundling.write_source_tarball(first)
    bundling.write_source_tarball(second)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as archive:
        assert {m.mtime for m in archive.getmembers()} == {0}
        assert archive.getnames() == names


def test_platform_tags() -> None:
    assert platform_tags("arm64") == ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
    assert platform_tags("x86_64") == ("manylinux2014_x86_64", "manylinux_2_28_x86_64")


def test_cache_key_depends_on_platform_and_python() -> None:
    keys = {
        FunctionBundle("pipeline", v, a).dependency_key()
        for v in ("3.13", "3.14")
        for a in ("arm64", "x86_64")
    }
    assert len(keys) == 4


@SYNTH_GROUP
def test_cached_dependencies_are_reused_without_pip(
    dev: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pip(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        raise AssertionError("pip ran although the cache is warm")

    monkeypatch.setattr(bundling.subprocess, "run", no_pip)
    bundle = FunctionBundle("inference", "3.14", "arm64")
    cached = bundling.ensure_dependencies(bundle)
    assert (cached / ".complete").read_text().strip() == bundle.dependency_key()


def test_strip_tree_removes_what_lambda_never_imports(tmp_path: Path) -> None:
    for name in (
        "pkg/mod.py",
        "pkg/mod.pyi",
        "pkg/tests/test_mod.py",
        "pkg/__pycache__/m.pyc",
        "pkg/ext.c",
        "bin/tool",
        "botocore/client.py",
        "foo-1.0.dist-info/METADATA",
        "foo-1.0.dist-info/RECORD",
        "foo-1.0.dist-info/licenses/LICENSE",
        "botocore-1.0.dist-info/METADATA",
        "six.py",
    ):
        _touch(tmp_path / name)
    strip_tree(tmp_path)
    assert _files(tmp_path) == {"pkg/mod.py", "foo-1.0.dist-info/METADATA"}


def test_prune_unloaded_removes_the_patterns_and_keeps_only_what_is_named(tmp_path: Path) -> None:
    for name in (
        "ort/capi/libonnxruntime.so.1.31.1",
        "ort/capi/libonnxruntime_providers_shared.so",
        "ort/capi/_pybind_state.py",
        "np/random/mtrand.so",
        "np/_core/_simd.cpython-314-aarch64-linux-gnu.so",
        "np/_core/_simd_helpers.py",
        "pt/utilities/__init__.py",
        "pt/utilities/jmespath_utils/__init__.py",
        "pt/utilities/parser/models.py",
        "pt/utilities/batch.py",
    ):
        _touch(tmp_path / name)
    removed = bundling.prune_unloaded(
        tmp_path,
        ("ort/capi/libonnxruntime.so*", "np/random", "np/_core/_simd.*", "absent/*"),
        {"pt/utilities": frozenset({"__init__.py", "jmespath_utils"}), "absent": frozenset()},
    )
    assert removed == [
        "np/_core/_simd.cpython-314-aarch64-linux-gnu.so", "np/random",
        "ort/capi/libonnxruntime.so.1.31.1", "pt/utilities/batch.py", "pt/utilities/parser",
    ]  # fmt: skip
    assert _files(tmp_path) == {
        "ort/capi/libonnxruntime_providers_shared.so", "ort/capi/_pybind_state.py",
        "np/_core/_simd_helpers.py", "pt/utilities/__init__.py",
        "pt/utilities/jmespath_utils/__init__.py",
    }  # fmt: skip


def test_only_the_inference_bundle_is_pruned_and_its_rules_key_the_cache() -> None:
    inference = FunctionBundle("inference", "3.14", "arm64")
    assert "onnxruntime/capi/libonnxruntime.so*" in inference.unloaded
    assert FunctionBundle("pipeline", "3.14", "arm64").unloaded == ()
    assert FunctionBundle("monitor", "3.14", "arm64").only_loaded == {}


def test_asset_hash_follows_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "functions/__init__.py",
        "functions/demo/requirements.txt",
        "functions/demo/app.py",
        "onnxkit/__init__.py",
        "onnxkit/contract/__init__.py",
        "onnxkit/contract/x.py",
        "onnxkit/contract/y.py",
        "onnxkit/contract/unused.py",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n")
    # The function imports x (deferred, inside a function), and x imports y.
    (tmp_path / "functions/demo/app.py").write_text(
        "def f():\n    from onnxkit.contract import x\n"
    )
    (tmp_path / "onnxkit/contract/x.py").write_text("from onnxkit.contract.y import Y\n")
    monkeypatch.setattr(bundling, "REPO_ROOT", tmp_path)
    bundle = FunctionBundle("demo", "3.14", "arm64")
    assert {"onnxkit/contract/x.py", "onnxkit/contract/y.py"} <= set(bundle.sources)
    assert "onnxkit/contract/unused.py" not in bundle.sources
    before = bundle.asset_hash()
    (tmp_path / "functions/demo/__pycache__").mkdir()
    (tmp_path / "functions/demo/__pycache__/app.cpython-311.pyc").write_bytes(b"\0")
    assert bundle.asset_hash() == before  # caches do not change the bundle
    (tmp_path / "onnxkit/contract/unused.py").write_text("changed")
    assert bundle.asset_hash() == before  # not in the bundle
    (tmp_path / "onnxkit/contract/y.py").write_text("Y = 1\n")
    assert bundle.asset_hash() != before


def test_stale_cache_entries_are_pruned(tmp_path: Path) -> None:
    bundle = FunctionBundle("pipeline", "3.14", "arm64")
    current = bundle.dependency_key()
    family = current.rsplit("-", 1)[0]
    for name in (
        current,
        f"{family}-0000000000000000",
        f"{family}-1111111111111111.partial",
        "pipeline-x86_64-py3.14-2222222222222222",
        "inference-arm64-py3.14-3333",
    ):
        (tmp_path / name).mkdir()
    (tmp_path / f"{family}-0000000000000000.lock").write_text("")
    assert bundling.prune_stale(bundle, tmp_path) == [f"{family}-0000000000000000"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        current, f"{family}-1111111111111111.partial",
        "pipeline-x86_64-py3.14-2222222222222222", "inference-arm64-py3.14-3333",
    ])  # fmt: skip
