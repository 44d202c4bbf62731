"""Asset bundling without Docker: Lambda bundles and the training source tarball.

``cdk synth`` calls :class:`LocalPipBundling` through CDK's local bundling hook. It
pip-installs a function's requirements.txt for the Lambda platform (manylinux wheels only,
so nothing is compiled here), strips what Lambda never imports, and reuses the result from
``.cache/bundles/`` keyed by the requirements' hash, platform and Python version. The
function's own code and ``onnxkit/contract`` (which every function imports) are copied in.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import jsii
from aws_cdk import (
    AssetHashType,
    BundlingFileAccess,
    BundlingOptions,
    BundlingOutput,
    DockerImage,
    DockerVolume,
    ILocalBundling,
)
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
CACHE_ROOT: Final = REPO_ROOT / ".cache" / "bundles"
Architecture = Literal["arm64", "x86_64"]
# Every bundle carries the package markers and the kernel modules its code imports, no others.
CONTRACT_PACKAGE: Final = "onnxkit.contract"
CONTRACT_MARKERS: Final = ("onnxkit/__init__.py", "onnxkit/contract/__init__.py")
# Directories inside installed packages that Lambda never imports.
_STRIP_DIRS: Final = frozenset({"__pycache__", "tests", "test", "benchmarks"})
_STRIP_PACKAGE_PATHS: Final = (
    "bin",
    "numpy/_core/include",
    "numpy/_core/lib",
    "numpy/f2py",
    "numpy/_pyinstaller",
    "numpy/typing/tests",
    "onnxruntime/transformers",
    "onnxruntime/tools",
    "onnxruntime/quantization",
    "onnxruntime/datasets",
    # The Lambda runtime ships boto3/botocore (and their urllib3, dateutil, six); aws-xray-sdk
    # pulls a second copy in, which would shadow the runtime's matching set.
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "dateutil",
    "six.py",
    # protobuf: only onnxruntime's stripped tools and Powertools' Kafka parser import it.
    "google",
)
# What one function never loads, by bundle: each entry was absent from every module and every
# mapped file of the handler serving an int8 MLP and a forest from the bundle, in a clean
# interpreter, with X-Ray tracing on and off (tests/e2e/test_bundle.py runs the pruned bundle
# the same way; README "A lighter bundle"). Glob patterns, relative to the bundle's root.
_UNLOADED: Final[Mapping[str, tuple[str, ...]]] = {
    "inference": (
        # The ONNX Runtime C API for other languages: the Python extension carries the runtime
        # itself and loads only libonnxruntime_providers_shared.so beside it (25 MB on arm64).
        "onnxruntime/capi/libonnxruntime.so*",
        "onnxruntime/backend",
        # numpy's test extensions and the subpackages `import numpy` leaves to first use.
        "numpy/_core/_simd.*",
        "numpy/_core/_multiarray_tests.*",
        "numpy/_core/_umath_tests.*",
        "numpy/_core/_rational_tests.*",
        "numpy/_core/_struct_ufunc_tests.*",
        "numpy/_core/_operand_flag_tests.*",
        "numpy/random",
        "numpy/fft",
        "numpy/polynomial",
        "numpy/ma",
        "numpy/testing",
        "numpy/typing",
        "numpy/distutils",
        # Powertools: the function uses its Logger, Metrics and Tracer, not its event handler
        # (functions/inference/router.py replaced it).
        "aws_lambda_powertools/event_handler",
    ),
}
# Of these folders, only the entries named are loaded (the rest as in _UNLOADED): of Powertools'
# utilities, the Logger imports its jmespath helper.
_ONLY_LOADED: Final[Mapping[str, Mapping[str, frozenset[str]]]] = {
    "inference": {"aws_lambda_powertools/utilities": frozenset({"__init__.py", "jmespath_utils"})},
}
# Sources, headers and type stubs: never imported at run time.
_STRIP_SUFFIXES: Final = frozenset({".pyc", ".pyo", ".pyi", ".pxd", ".pyx", ".h", ".c", ".cpp"})
_STRIP_DIST_INFO: Final = (
    "botocore-", "boto3-", "s3transfer-", "urllib3-", "python_dateutil-", "six-", "protobuf-",
)  # fmt: skip
# Of a dist-info directory, keep what importlib.metadata reads.
_DIST_INFO_KEEP: Final = frozenset({"METADATA", "top_level.txt", "entry_points.txt"})


def platform_tags(architecture: Architecture) -> tuple[str, ...]:
    """The wheel platforms Lambda's Amazon Linux 2023 runtime loads, newest last."""
    machine = "aarch64" if architecture == "arm64" else "x86_64"
    return (f"manylinux2014_{machine}", f"manylinux_2_28_{machine}")


@dataclass(frozen=True)
class FunctionBundle:
    """What goes into one Lambda function's bundle."""

    name: str  # the folder under functions/
    python_version: str  # "3.13"
    architecture: Architecture
    prune: bool = True  # False: keep what the function never loads (the pruning's audit)

    @property
    def requirements(self) -> Path:
        """The function's requirements.txt."""
        return REPO_ROOT / "functions" / self.name / "requirements.txt"

    @property
    def sources(self) -> tuple[str, ...]:
        """Repository paths copied into the bundle as they are."""
        return ("functions/__init__.py", f"functions/{self.name}", *contract_sources(self.code))

    @property
    def unloaded(self) -> tuple[str, ...]:
        """Glob patterns of installed files this function never loads (pruned)."""
        return _UNLOADED.get(self.name, ()) if self.prune else ()

    @property
    def only_loaded(self) -> Mapping[str, frozenset[str]]:
        """Folders of which the function loads only the entries named (the rest is pruned)."""
        return _ONLY_LOADED.get(self.name, {}) if self.prune else {}

    @property
    def code(self) -> str:
        """The function's own package."""
        return f"functions/{self.name}"

    def dependency_key(self) -> str:
        """Cache key of the installed dependencies: requirements, platform and Python."""
        digest = hashlib.sha256(self.requirements.read_bytes())
        digest.update("|".join((*platform_tags(self.architecture), self.python_version)).encode())
        # A change to the strip rules must rebuild the cached dependencies.
        rules = (
            _STRIP_DIRS,
            _STRIP_PACKAGE_PATHS,
            _STRIP_SUFFIXES,
            _STRIP_DIST_INFO,
            _DIST_INFO_KEEP,
            self.unloaded,
        )
        digest.update(repr([sorted(rule) for rule in rules]).encode())
        digest.update(repr(sorted((k, sorted(v)) for k, v in self.only_loaded.items())).encode())
        name = self.name if self.prune else f"{self.name}-unpruned"
        return f"{name}-{self.architecture}-py{self.python_version}-{digest.hexdigest()[:16]}"

    def asset_hash(self) -> str:
        """Changes whenever the dependencies or any bundled source file change."""
        digest = hashlib.sha256(self.dependency_key().encode())
        for relative, path in _source_files(self.sources):
            digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()


def _imported_contract_modules(path: Path) -> set[str]:
    """The ``onnxkit.contract`` modules a Python file imports (deferred imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if ".".join(parts[:2]) == CONTRACT_PACKAGE and len(parts) > 2:
                found.add(".".join(parts[:3]))
    return {m for m in found if (REPO_ROOT / f"{m.replace('.', '/')}.py").is_file()}


def contract_sources(*roots: str) -> tuple[str, ...]:
    """The kernel files a runtime needs: the modules its code imports, and theirs in turn."""
    pending = [p for root in roots for _, p in _source_files((root,)) if p.suffix == ".py"]
    modules: set[str] = set()
    while pending:
        for module in _imported_contract_modules(pending.pop()) - modules:
            modules.add(module)
            pending.append(REPO_ROOT / f"{module.replace('.', '/')}.py")
    return (*CONTRACT_MARKERS, *sorted(f"{m.replace('.', '/')}.py" for m in modules))


def _source_files(sources: tuple[str, ...]) -> Iterator[tuple[str, Path]]:
    for source in sources:
        root = REPO_ROOT / source
        if not root.exists():
            raise FileNotFoundError(f"bundle source {source} does not exist")
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in paths:
            if path.is_file() and not _ignored(path.relative_to(REPO_ROOT)):
                yield path.relative_to(REPO_ROOT).as_posix(), path


def _ignored(relative: Path) -> bool:
    parts = set(relative.parts)
    return bool(parts & {"__pycache__", "tests", ".pytest_cache"}) or relative.suffix in {
        ".pyc",
        ".pyo",
    }


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two pytest-xdist workers may bundle the same function at once.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove(target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)


def prune_unloaded(
    root: Path, unloaded: Sequence[str], only_loaded: Mapping[str, frozenset[str]]
) -> list[str]:
    """Remove what a function never loads: ``unloaded`` glob patterns, and every entry of an
    ``only_loaded`` folder but those named. Returns the removed paths, relative to ``root``."""
    targets = {path for pattern in unloaded for path in root.glob(pattern)}
    for folder, keep in only_loaded.items():
        if (root / folder).is_dir():
            targets |= {p for p in (root / folder).iterdir() if p.name not in keep}
    for target in targets:
        _remove(target)
    return sorted(t.relative_to(root).as_posix() for t in targets)


def strip_tree(
    root: Path,
    unloaded: Sequence[str] = (),
    only_loaded: Mapping[str, frozenset[str]] | None = None,
) -> None:
    """Remove tests, caches, headers and dist-info extras from installed packages, and what
    the function never loads (:func:`prune_unloaded`)."""
    for relative in _STRIP_PACKAGE_PATHS:
        target = root / relative
        if target.is_file():
            target.unlink()
        shutil.rmtree(target, ignore_errors=True)
    prune_unloaded(root, unloaded, only_loaded or {})
    for path in sorted(root.rglob("*"), reverse=True):
        if not path.exists():
            continue
        if path.is_dir() and path.name in _STRIP_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_dir() and path.name.endswith(".dist-info"):
            if path.name.startswith(_STRIP_DIST_INFO):
                shutil.rmtree(path)
                continue
            for item in path.iterdir():
                if item.name not in _DIST_INFO_KEEP:
                    shutil.rmtree(item) if item.is_dir() else item.unlink()
        elif path.is_file() and path.suffix in _STRIP_SUFFIXES:
            path.unlink()


def ensure_dependencies(bundle: FunctionBundle) -> Path:
    """The installed, stripped dependencies of a function, built once per cache key."""
    target = CACHE_ROOT / bundle.dependency_key()
    with _locked(CACHE_ROOT / f"{bundle.dependency_key()}.lock"):
        if (target / ".complete").exists():
            return target
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-compile", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", bundle.python_version, "--target", str(staging),
            "-r", str(bundle.requirements),
        ]  # fmt: skip
        for tag in platform_tags(bundle.architecture):
            command += ["--platform", tag]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise RuntimeError(
                f"pip could not install {bundle.requirements.relative_to(REPO_ROOT)} for "
                f"{bundle.architecture}/py{bundle.python_version}: {lines[-1] if lines else '?'}"
            )
        strip_tree(staging, bundle.unloaded, bundle.only_loaded)
        (staging / ".complete").write_text(bundle.dependency_key() + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        prune_stale(bundle, CACHE_ROOT)
    return target


def prune_stale(bundle: FunctionBundle, cache_root: Path) -> list[str]:
    """Delete cached dependency sets of the same function and platform under older keys."""
    current = bundle.dependency_key()
    family = current.rsplit("-", 1)[0]
    removed = []
    for path in sorted(cache_root.glob(f"{family}-*")):
        if path.is_dir() and path.name != current and not path.name.endswith(".partial"):
            shutil.rmtree(path, ignore_errors=True)
            (cache_root / f"{path.name}.lock").unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def _link_or_copy(source: str, destination: str) -> None:
    # Hard links make a 100 MB bundle free to stage; fall back to copying across devices.
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def write_bundle(bundle: FunctionBundle, output_dir: Path) -> None:
    """Fill ``output_dir`` with the dependencies and the function's sources."""
    dependencies = ensure_dependencies(bundle)
    shutil.copytree(
        dependencies,
        output_dir,
        copy_function=_link_or_copy,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".complete"),
    )
    for relative, path in _source_files(bundle.sources):
        destination = output_dir / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


def tree_size(root: Path) -> int:
    """Bytes of the regular files under ``root`` (what Lambda counts as unzipped size)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


class _LocalBundler:
    """CDK's local bundling hook (``ILocalBundling``); subclasses write the bundle."""

    def try_bundle(
        self,
        output_dir: str,
        *,
        image: DockerImage,
        bundling_file_access: BundlingFileAccess | None = None,
        command: Sequence[str] | None = None,
        entrypoint: Sequence[str] | None = None,
        environment: Mapping[str, str] | None = None,
        local: ILocalBundling | None = None,
        network: str | None = None,
        output_type: BundlingOutput | None = None,
        platform: str | None = None,
        security_opt: str | None = None,
        user: str | None = None,
        volumes: Sequence[DockerVolume | dict[str, Any]] | None = None,
        volumes_from: Sequence[str] | None = None,
        working_directory: str | None = None,
    ) -> bool:
        """Write the bundle into ``output_dir``; True tells CDK not to try Docker."""
        self.write(Path(output_dir))
        return True

    def write(self, output_dir: Path) -> None:
        """Fill ``output_dir``."""
        raise NotImplementedError


@jsii.implements(ILocalBundling)
class LocalPipBundling(_LocalBundler):
    """Local bundling of a Lambda function: pip for the Lambda platform, no Docker."""

    def __init__(self, bundle: FunctionBundle) -> None:
        self.bundle = bundle

    def write(self, output_dir: Path) -> None:
        """The dependencies and the function's sources."""
        write_bundle(self.bundle, output_dir)


def function_code(scope: Construct, bundle: FunctionBundle) -> lambda_.Code:
    """Lambda code for ``functions/<name>``, bundled locally, hashed by content."""
    del scope  # kept for symmetry with training_source; assets are created by the Function
    runtime = lambda_.Runtime(f"python{bundle.python_version}", lambda_.RuntimeFamily.PYTHON)
    return lambda_.Code.from_asset(
        str(REPO_ROOT / "functions" / bundle.name),
        asset_hash=bundle.asset_hash(),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(
            image=runtime.bundling_image,
            local=LocalPipBundling(bundle),
            output_type=BundlingOutput.NOT_ARCHIVED,
        ),
    )


# --- The training job's source: SageMaker script mode wants a tar.gz submit directory. -----
# The script and its requirements sit at the archive root, as script mode expects; the job's
# modules keep their package path (training_jobs/<module>.py) beside onnxkit/contract, so
# train.py imports them as training_jobs.<module> from the tarball as from a checkout.
TRAINING_SCRIPT_FILES: Final = ("training_jobs/train.py", "training_jobs/requirements.txt")
SOURCE_TARBALL: Final = "sourcedir.tar.gz"


def _training_files() -> list[tuple[str, Path]]:
    present = ("training_jobs", *contract_sources("training_jobs"))
    files = []
    for relative, path in _source_files(present):
        arcname = relative
        if relative in TRAINING_SCRIPT_FILES:
            arcname = relative.removeprefix("training_jobs/")
        files.append((arcname, path))
    return files


def write_source_tarball(destination: Path) -> list[str]:
    """A reproducible sourcedir.tar.gz (sorted, zero mtimes and owners); returns its names."""
    buffer = io.BytesIO()
    names = []
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for arcname, path in sorted(_training_files()):
            data = path.read_bytes()
            info = tarfile.TarInfo(arcname)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
            names.append(arcname)
    with (
        destination.open("wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz,
    ):
        gz.write(buffer.getvalue())
    return names


def training_source_hash() -> str:
    """Content hash of the training source files."""
    digest = hashlib.sha256()
    for arcname, path in sorted(_training_files()):
        digest.update(arcname.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class SourceTarballBundling(_LocalBundler):
    """Writes the single sourcedir.tar.gz the training job's script mode downloads."""

    def write(self, output_dir: Path) -> None:
        """The reproducible tarball."""
        write_source_tarball(output_dir / SOURCE_TARBALL)


def training_source(scope: Construct, construct_id: str) -> s3_assets.Asset:
    """The training_jobs/ source (+ onnxkit.contract) as one tar.gz object in the asset bucket."""
    return s3_assets.Asset(
        scope,
        construct_id,
        path=str(REPO_ROOT / "training_jobs"),
        asset_hash=training_source_hash(),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(
            image=DockerImage.from_registry("unused-local-bundling-only"),
            local=SourceTarballBundling(),
            output_type=BundlingOutput.ARCHIVED,
        ),
    )


def describe(value: Any) -> str:
    """Human size for reports (MB with one decimal)."""
    return f"{int(value) / 1_000_000:.1f} MB"
