"""Where the model comes from (paths, tar.gz, S3 via moto, production pointers), and refusals."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.inference import runtime as runtime_module
from functions.inference.app import InferenceFunction
from functions.inference.runtime import Settings
from functions.inference.source import ModelLocator, ModelSourceError, NoModelYet, S3Location
from tests.support.aws import create_bucket, mocked
from tests.support.inference import assert_error, call, load_event
from tests.support.paths import REPO

pytestmark = pytest.mark.xdist_group("inference")
BUCKET = "onnxkit-artifacts-test"


@pytest.fixture(scope="module")
def model_dir(train_artifact: Callable[..., Path]) -> Path:
    """The int8 breast-cancer MLP."""
    return train_artifact("breast_cancer", model="mlp")


@pytest.fixture
def digest(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / "model.onnx").read_bytes()).hexdigest()


@pytest.fixture
def tarball(model_dir: Path, tmp_path: Path) -> Path:
    """model.tar.gz as SageMaker writes it: the files at the archive root."""
    path = tmp_path / "model.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in ("model.onnx", "manifest.json"):
            tar.add(model_dir / name, arcname=name)
    return path


def _pointer(model_uri: str, sha256: str, **fields: Any) -> str:
    """A production pointer as promotion writes it (docs/CONTRACTS.md), as JSON."""
    pointer = {
        "model_name": "cancer",
        "model_version": "v1",
        "model_uri": model_uri,
        "manifest_uri": model_uri.rsplit("/", 1)[0] + "/manifest.json",
        "sha256": sha256,
        "lambda_version": "2",
        "promoted_at": "2026-11-28T18:00:00Z",
        "history": [],
    }
    return json.dumps(pointer | fields)


def _function(uri: str, tmp_path: Path, sha256: str = "", **kwargs: Any) -> InferenceFunction:
    locator = ModelLocator(cache_dir=tmp_path / "cache", **kwargs)
    return InferenceFunction(Settings(model_uri=uri, model_sha256=sha256), locator=locator)


@pytest.mark.parametrize("form", ["directory", "onnx_file", "manifest_file", "tarball", "file_uri"])
def test_local_forms_load_the_same_model(
    form: str, model_dir: Path, tarball: Path, tmp_path: Path, digest: str
) -> None:
    uri = {
        "directory": str(model_dir),
        "onnx_file": str(model_dir / "model.onnx"),
        "manifest_file": str(model_dir / "manifest.json"),
        "tarball": str(tarball),
        "file_uri": f"file://{model_dir}",
    }[form]
    function = _function(uri, tmp_path, sha256=digest)
    runtime = function.runtime
    assert runtime.problem is None
    assert runtime.model is not None and runtime.model.sha256 == digest
    status, _, body = call(function, load_event("predict_list"))
    assert status == 200, body


def test_tarball_is_extracted_once_into_a_digest_keyed_cache(tarball: Path, tmp_path: Path) -> None:
    locator = ModelLocator(cache_dir=tmp_path / "cache")
    first = locator.locate(str(tarball))
    second = locator.locate(str(tarball))
    assert first.model_path == second.model_path
    archive_digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert first.model_path.parent.name == f"tar-{archive_digest}"


def test_a_tarball_with_a_path_escape_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../escaped")
    with pytest.raises(ModelSourceError):
        ModelLocator(cache_dir=tmp_path / "cache").locate(str(evil))
    assert not (tmp_path / "escaped").exists()


def test_digest_mismatch_refuses_to_serve(model_dir: Path, tmp_path: Path) -> None:
    function = _function(str(model_dir), tmp_path, sha256="0" * 64)
    runtime = function.runtime
    assert runtime.model is None
    assert runtime.problem is not None and runtime.problem.code == "model_unavailable"
    assert "digest mismatch" in runtime.reason
    for event in ("predict_list", "get_model"):
        status, _, body = call(function, load_event(event))
        assert status == 503
        assert_error(body, "model_unavailable")
        assert "0000000000" not in body["error"]["message"]  # details stay in the log
    status, _, body = call(function, load_event("get_health"))
    assert status == 503 and body["status"] == "unavailable"


def test_a_swapped_model_file_is_refused_against_its_manifest(
    model_dir: Path, tmp_path: Path
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(model_dir, tampered)
    (tampered / "model.onnx").write_bytes((model_dir / "model.fp32.onnx").read_bytes())
    function = _function(str(tampered), tmp_path)
    runtime = function.runtime
    assert runtime.model is None and runtime.problem is not None
    assert "digest mismatch" in runtime.reason


def test_an_expected_digest_the_manifest_does_not_describe_is_refused(
    model_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    manifest = json.loads((other / "manifest.json").read_text())
    fp32 = other / "model.fp32.onnx"
    (other / "model.onnx").write_bytes(fp32.read_bytes())
    new_digest = hashlib.sha256(fp32.read_bytes()).hexdigest()
    (other / "manifest.json").write_text(json.dumps(manifest))
    function = _function(str(other), tmp_path, sha256=new_digest)
    runtime = function.runtime
    assert runtime.model is None and runtime.problem is not None
    assert "describes sha256" in runtime.reason


def test_an_invalid_manifest_is_refused(model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["task"] = "clustering"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    function = _function(str(broken), tmp_path)
    runtime = function.runtime
    assert runtime.problem is not None and "invalid manifest" in runtime.reason


def test_without_a_model_uri_predict_and_model_are_503_health_and_openapi_200(
    tmp_path: Path,
) -> None:
    function = _function("", tmp_path)
    for name in ("predict_list", "get_model"):
        status, _, body = call(function, load_event(name))
        assert status == 503
        assert_error(body, "no_model")
        assert body["error"]["message"] == "no model has been promoted yet"
    status, _, body = call(function, load_event("get_health"))
    assert (status, body["status"]) == (200, "no_model")
    status, _, body = call(function, load_event("get_openapi"))
    assert status == 200 and body["openapi"].startswith("3.")


# --- S3 (moto) ----------------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with mocked(monkeypatch):
        yield create_bucket(BUCKET)


def _upload_model(s3: Any, model_dir: Path, prefix: str) -> str:
    response = {}
    for name in ("model.onnx", "manifest.json"):
        put = s3.put_object(
            Bucket=BUCKET, Key=f"{prefix}/{name}", Body=(model_dir / name).read_bytes()
        )
        response[name] = put["VersionId"]
    return response["model.onnx"]


def test_s3_model_with_version_id_is_downloaded_once(
    s3: Any, model_dir: Path, tmp_path: Path, digest: str
) -> None:
    version = _upload_model(s3, model_dir, "models/cancer/v1")
    # A later overwrite of the same key must not change what the pinned version serves.
    s3.put_object(Bucket=BUCKET, Key="models/cancer/v1/model.onnx", Body=b"not a model")
    uri = f"s3://{BUCKET}/models/cancer/v1/model.onnx?versionId={version}"
    function = _function(uri, tmp_path, sha256=digest)
    runtime = function.runtime
    assert runtime.problem is None, runtime.reason
    assert (tmp_path / "cache" / digest / "model.onnx").is_file()
    # Second cold start: served from the cache without touching S3.
    s3.delete_object(Bucket=BUCKET, Key="models/cancer/v1/manifest.json")
    again = _function(uri, tmp_path, sha256=digest).runtime
    assert again.model is not None


def test_s3_overwritten_model_is_refused(
    s3: Any, model_dir: Path, tmp_path: Path, digest: str
) -> None:
    _upload_model(s3, model_dir, "models/cancer/v1")
    s3.put_object(
        Bucket=BUCKET,
        Key="models/cancer/v1/model.onnx",
        Body=(model_dir / "model.fp32.onnx").read_bytes(),
    )
    function = _function(f"s3://{BUCKET}/models/cancer/v1/model.onnx", tmp_path, sha256=digest)
    runtime = function.runtime
    assert runtime.model is None and runtime.problem is not None
    assert runtime.problem.code == "model_unavailable"


def test_s3_tarball(s3: Any, tarball: Path, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key="jobs/j1/output/model.tar.gz", Body=tarball.read_bytes())
    function = _function(f"s3://{BUCKET}/jobs/j1/output/model.tar.gz", tmp_path)
    runtime = function.runtime
    assert runtime.problem is None and runtime.model is not None


def test_s3_pointer_before_and_after_the_first_promotion(
    s3: Any, model_dir: Path, tmp_path: Path, digest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pointer_uri = f"s3://{BUCKET}/models/cancer/production.json"
    function = _function(pointer_uri, tmp_path)
    runtime = function.runtime
    assert runtime.problem is not None and runtime.problem.code == "no_model"
    status, _, body = call(function, load_event("predict_list"))
    assert status == 503
    assert_error(body, "no_model")

    version = _upload_model(s3, model_dir, "models/cancer/v1")
    pointer = {
        "model_name": "cancer",
        "model_version": "v1",
        "model_uri": f"s3://{BUCKET}/models/cancer/v1/model.onnx?versionId={version}",
        "manifest_uri": f"s3://{BUCKET}/models/cancer/v1/manifest.json",
        "sha256": digest,
        "lambda_version": "2",
        "promoted_at": "2026-11-28T18:00:00Z",
        "history": [],
    }
    s3.put_object(Bucket=BUCKET, Key="models/cancer/production.json", Body=json.dumps(pointer))
    monkeypatch.setattr(runtime_module, "POINTER_RECHECK_SECONDS", 0.0)
    status, _, body = call(function, load_event("predict_list"))
    assert status == 200, body


def test_s3_pointer_with_a_wrong_digest_is_refused(
    s3: Any, model_dir: Path, tmp_path: Path
) -> None:
    _upload_model(s3, model_dir, "models/cancer/v1")
    pointer = _pointer(f"s3://{BUCKET}/models/cancer/v1/model.onnx", "1" * 64)
    s3.put_object(Bucket=BUCKET, Key="models/cancer/production.json", Body=pointer)
    function = _function(f"s3://{BUCKET}/models/cancer/production.json", tmp_path)
    runtime = function.runtime
    assert runtime.problem is not None and runtime.problem.code == "model_unavailable"
    assert "digest mismatch" in runtime.reason


def test_missing_s3_object_is_a_clear_error(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="does not exist"):
        ModelLocator(cache_dir=tmp_path).locate(f"s3://{BUCKET}/nothing/model.onnx")


def test_s3_uri_parsing() -> None:
    assert S3Location.parse("s3://b/k/model.onnx?versionId=abc") == S3Location(
        "b", "k/model.onnx", "abc"
    )
    assert S3Location.parse("s3://b/k/model.onnx").sibling("manifest.json") == S3Location(
        "b", "k/manifest.json"
    )
    assert S3Location.parse("s3://b/k;1/m#2.onnx") == S3Location("b", "k;1/m#2.onnx")
    for bad in ("s3://", "s3://bucket", "s3:///key", "http://b/k"):
        with pytest.raises(ModelSourceError):
            S3Location.parse(bad)


def test_empty_uri_is_no_model_yet(tmp_path: Path) -> None:
    with pytest.raises(NoModelYet):
        ModelLocator(cache_dir=tmp_path).locate("  ")


def test_an_s3_read_failure_is_retried_later(
    s3: Any, model_dir: Path, tmp_path: Path, digest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = "s3://late-bucket/models/cancer/v1/model.onnx"
    function = _function(uri, tmp_path, sha256=digest)
    runtime = function.runtime
    assert runtime.problem is not None and runtime.problem.code == "model_unavailable"
    assert "NoSuchBucket" in runtime.reason
    create_bucket("late-bucket", versioned=False)
    for name in ("model.onnx", "manifest.json"):
        s3.put_object(
            Bucket="late-bucket",
            Key=f"models/cancer/v1/{name}",
            Body=(model_dir / name).read_bytes(),
        )
    monkeypatch.setattr(runtime_module, "POINTER_RECHECK_SECONDS", 0.0)
    status, _, body = call(function, load_event("predict_list"))
    assert status == 200, body


def test_a_refused_model_is_not_retried(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    function = _function(str(model_dir), tmp_path, sha256="0" * 64)
    runtime = function.runtime
    monkeypatch.setattr(runtime_module, "POINTER_RECHECK_SECONDS", 0.0)
    loads = []
    monkeypatch.setattr(runtime, "_load", lambda: loads.append(1))
    status, _, _ = call(function, load_event("predict_list"))
    assert status == 503 and loads == []


@pytest.mark.parametrize(
    ("dataset", "model"),
    [("breast_cancer", "mlp"), ("customer_churn", "logistic_regression"), ("diabetes", "ridge")],
)
def test_real_manifests_are_served_as_the_contract_reads_them(
    dataset: str, model: str, train_artifact: Callable[..., Path]
) -> None:
    from functions.inference.manifest import read_serving_manifest
    from onnxkit.contract.manifest import parse_manifest

    path = train_artifact(dataset, model=model) / "manifest.json"
    manifest = parse_manifest(path.read_bytes())
    served = read_serving_manifest(path)
    assert served.public == manifest.public()
    assert [f.name for f in served.features] == manifest.signature.feature_names
    assert served.serving_sha256 == manifest.serving.sha256


def test_session_threads_do_not_spin_between_requests() -> None:
    from functions.inference.predictor import session_options

    options = session_options(2)
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


# --- the manifest is pinned with the model (issue 9 §7) --------------------------------------
def _reversed_classes(model_dir: Path, target: Path) -> Path:
    """A copy whose manifest lists the classes in reverse: still a valid manifest, the same
    model.onnx, but every probability attributed to the wrong class."""
    shutil.copytree(model_dir, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["classes"] = list(reversed(manifest["classes"]))
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_a_manifest_with_reversed_classes_is_refused_when_pinned(
    model_dir: Path, tmp_path: Path, digest: str
) -> None:
    pinned = hashlib.sha256((model_dir / "manifest.json").read_bytes()).hexdigest()
    tampered = _reversed_classes(model_dir, tmp_path / "tampered")
    # Unpinned, the reversed manifest is a valid one and would be served:
    unpinned = _function(str(tampered), tmp_path, sha256=digest).runtime
    assert unpinned.problem is None
    settings = Settings(model_uri=str(tampered), model_sha256=digest, model_manifest_sha256=pinned)
    function = InferenceFunction(settings, locator=ModelLocator(cache_dir=tmp_path / "cache"))
    runtime = function.runtime
    assert runtime.model is None and runtime.problem is not None
    assert "manifest digest mismatch" in runtime.reason
    status, _, body = call(function, load_event("predict_list"))
    assert status == 503
    assert_error(body, "model_unavailable")
    # The genuine manifest with the same pin is served.
    good = Settings(model_uri=str(model_dir), model_sha256=digest, model_manifest_sha256=pinned)
    served = InferenceFunction(good, locator=ModelLocator(cache_dir=tmp_path / "c2"))
    assert served.runtime.problem is None


def test_the_settings_read_the_manifest_pin_from_the_environment() -> None:
    settings = Settings.from_env({"MODEL_URI": "x", "MODEL_MANIFEST_SHA256": "ab" * 32})
    assert settings.model_manifest_sha256 == "ab" * 32


def test_the_function_reads_a_mapping_and_writes_no_environment(
    model_dir: Path, tmp_path: Path, digest: str
) -> None:
    import os

    before = dict(os.environ)
    env = {"MODEL_URI": str(model_dir), "MODEL_SHA256": digest, "MAX_BODY_BYTES": "100"}
    function = InferenceFunction.from_env({**env, "TMPDIR": str(tmp_path)})
    assert dict(os.environ) == before
    settings = function.runtime.settings
    assert (settings.model_sha256, settings.max_body_bytes) == (digest, 100)
    assert settings.cache_dir == tmp_path / "onnxkit-models"
    assert function.runtime.model is not None and function.runtime.model.sha256 == digest
    status, _, body = call(function, load_event("body_too_large"))
    assert status == 413 and body["error"]["message"] == "the body exceeds 100 bytes"


def test_a_pointer_pins_the_manifest_too(model_dir: Path, tmp_path: Path, digest: str) -> None:
    """A work directory's pointer with relative paths, as promotion writes it."""
    workdir = tmp_path / "work"
    version = workdir / "models" / "cancer" / "v1"
    _reversed_classes(model_dir, version)
    pinned = hashlib.sha256((model_dir / "manifest.json").read_bytes()).hexdigest()
    pointer = workdir / "models" / "cancer" / "production.json"
    pointer.write_text(_pointer("models/cancer/v1/model.onnx", digest, manifest_sha256=pinned))
    function = _function(str(pointer), tmp_path)
    runtime = function.runtime
    assert runtime.problem is not None and "manifest digest mismatch" in runtime.reason
    (version / "manifest.json").write_bytes((model_dir / "manifest.json").read_bytes())
    function = _function(str(pointer), tmp_path)
    runtime = function.runtime
    assert runtime.problem is None and runtime.model is not None


def test_serve_exits_1_on_a_pointer_whose_manifest_was_changed(
    model_dir: Path, tmp_path: Path, digest: str
) -> None:
    import subprocess
    import sys

    workdir = tmp_path / "work"
    _reversed_classes(model_dir, workdir / "models" / "cancer" / "v1")
    pinned = hashlib.sha256((model_dir / "manifest.json").read_bytes()).hexdigest()
    pointer = workdir / "models" / "cancer" / "production.json"
    pointer.write_text(_pointer("models/cancer/v1/model.onnx", digest, manifest_sha256=pinned))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from onnxkit.cli import main; main()",
            "serve",
            "--model",
            str(pointer),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 1, done.stderr
    assert "manifest digest mismatch" in done.stderr
    assert "Traceback" not in done.stderr


# --- archives on any Python 3.11 (issue 9 §8) ------------------------------------------------
@pytest.mark.parametrize(
    "damage",
    ["truncated", "garbage", "empty", "not_gzip_tar"],
)
def test_a_malformed_tarball_is_a_503_not_a_crash(
    damage: str, tarball: Path, tmp_path: Path
) -> None:
    data = tarball.read_bytes()
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "garbage": data[:20] + b"\x00garbage" * 100,
            "empty": b"",
            "not_gzip_tar": b"\x1f\x8b\x08\x00" + b"\xff" * 64,
        }[damage]
    )
    function = _function(str(broken), tmp_path)
    runtime = function.runtime
    assert runtime.model is None and runtime.problem is not None
    assert runtime.problem.status == 503
    status, _, body = call(function, load_event("predict_list"))
    assert status == 503
    assert_error(body, "model_unavailable")


def test_extraction_does_not_need_the_tarfile_filter_argument(
    tarball: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.11.0-3.11.3 have no ``filter`` argument: extraction must not use it."""

    def old_extractall(self: tarfile.TarFile, path: Any = ".", members: Any = None) -> None:
        raise AssertionError("extractall is not used")

    monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    located = ModelLocator(cache_dir=tmp_path / "cache").locate(str(tarball))
    assert located.model_path.is_file() and located.manifest_path.is_file()


@pytest.mark.parametrize("kind", ["symlink", "absolute", "device"])
def test_an_archive_with_a_link_or_an_absolute_path_is_refused(kind: str, tmp_path: Path) -> None:
    import io

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo({"absolute": "/tmp/onnxkit-escape"}.get(kind, "model.onnx"))
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        elif kind == "device":
            info.type = tarfile.CHRTYPE
            tar.addfile(info)
        else:
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ModelSourceError):
        ModelLocator(cache_dir=tmp_path / "cache").locate(str(evil))
    assert not Path("/tmp/onnxkit-escape").exists()
