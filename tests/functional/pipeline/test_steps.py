"""The pipeline's step logic over the local ports: evaluate, gate, promote, roll back."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest

from functions.pipeline.evaluate import (
    digest_problems,
    evaluate,
    gate_reasons,
    read_artifact,
    signature_changes,
)
from functions.pipeline.ports import StepError, TamperedArtifactError, read_pointer
from functions.pipeline.promote import (
    RolledBackError,
    Shift,
    StaleEvaluationError,
    promote,
    resolve,
)
from onnxkit.contract.gate import QualityGate
from onnxkit.contract.layout import pointer_key, sha256_bytes
from onnxkit.contract.manifest import Manifest
from onnxkit.local.store import LocalRegistry, LocalServing, LocalStore
from onnxkit.rollback import rollback
from tests.support.artifacts import artifact, manifest_dict, tarball
from tests.support.paths import REPO

GATE = QualityGate.model_validate({})


class Fault(Exception):
    """The injected failure."""


class Faulty:
    """Wraps a port and raises at the Nth call of any of its methods (calls shared by all
    wrappers built with the same counter)."""

    def __init__(self, inner: Any, counter: dict[str, int], methods: set[str]) -> None:
        self._inner, self._counter, self._methods = inner, counter, methods

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in self._methods:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._counter["calls"] += 1
            if self._counter["calls"] == self._counter["fail_at"]:
                raise Fault(f"injected at call {self._counter['calls']} ({name})")
            return attribute(*args, **kwargs)

        return call


def _stage(root: Path, version: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    manifest, data = artifact(version, **kwargs)
    path = root / "jobs" / version / "model.tar.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path.as_uri(), manifest


def _promote(root: Path, version: str, **kwargs: Any) -> dict[str, Any]:
    uri, _ = _stage(root, version, **kwargs)
    store, registry = LocalStore(root), LocalRegistry(root)
    decision = evaluate(store, "cancer", uri, GATE)
    assert decision["passed"], decision["reasons"]
    package = registry.register(
        Manifest.from_dict(manifest_dict(version, model_bytes=b"x", **kwargs)),
        uri,
        decision,
        "PendingManualApproval",
    )
    return promote(store, LocalServing(root), registry, decision["candidate"], package)


def _served_sha(root: Path) -> str | None:
    serving = LocalServing(root)
    version, weights = serving.live()
    assert not weights, "no traffic may be split after a promotion ends"
    return serving.model_of(version)[1] if version else None


# --- Evaluate -----------------------------------------------------------------------------
def test_read_artifact_streams_the_manifest_and_digests() -> None:
    _, data = artifact("v1")
    found = read_artifact(io.BytesIO(data), keep={"model.onnx"})
    assert found.manifest.model_version == "v1"
    assert found.files["model.onnx"] == b"onnx-graph-v1"
    assert digest_problems(found) == []


def test_a_tampered_model_is_a_digest_mismatch() -> None:
    manifest = manifest_dict("v1", model_bytes=b"onnx-graph-v1")
    found = read_artifact(io.BytesIO(tarball(manifest, b"onnx-graph-EVIL")))
    assert any("digest mismatch for model.onnx" in p for p in digest_problems(found))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a tarball", "not a readable tar.gz"),
        (tarball(manifest_dict("v1"))[:40], "not a readable"),
    ],
    ids=["not-gzip", "truncated"],
)
def test_unreadable_artifacts_raise_one_line(data: bytes, message: str) -> None:
    with pytest.raises(StepError, match=message):
        read_artifact(io.BytesIO(data))


def test_an_invalid_manifest_is_refused_readably() -> None:
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        raw = json.dumps({"model_name": "x"}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(raw)
        archive.addfile(info, io.BytesIO(raw))
    with pytest.raises(StepError, match="invalid manifest"):
        read_artifact(io.BytesIO(buffer.getvalue()))


def test_the_gate_reports_every_reason_not_just_the_first() -> None:
    live = Manifest.from_dict(manifest_dict("v1", accuracy=0.97))
    candidate = Manifest.from_dict(
        manifest_dict(
            "v2",
            accuracy=0.70,
            sklearn_accuracy=0.90,
            label_agreement=0.90,
            classes=["0", "1", "2"],
            baseline=0.60,
            features=[
                {
                    "name": "radius",
                    "onnx_input": "radius",
                    "kind": "categorical",
                    "dtype": "string",
                    "nullable": True,
                },
                {
                    "name": "area",
                    "onnx_input": "area",
                    "kind": "numeric",
                    "dtype": "float32",
                    "nullable": False,
                },
            ],
        )
    )
    reasons = gate_reasons(candidate, live, GATE.model_copy(update={"min_accuracy": 0.8}))
    text = "\n".join(reasons)
    assert "balanced_accuracy 0.7000 (int8) lifts 0.1000 over the naive baseline (prior)" in text
    assert "below the gate's minimum 0.8000" in text
    assert "parity: accuracy drops 0.2000 from scikit-learn to int8" in text
    assert "parity: balanced_accuracy drops 0.2000 from scikit-learn to int8" in text
    assert "agrees with scikit-learn on 0.9000 of labels" in text
    assert "balanced_accuracy 0.7000 is worse than production v1 (0.9700)" in text
    assert "feature 'texture' removed or renamed" in text
    assert "feature 'radius' changed type" in text
    assert "feature 'area' added and required" in text
    assert "classes changed" in text
    assert len(reasons) == 10


def test_a_good_candidate_passes_and_a_small_drop_is_allowed() -> None:
    live = Manifest.from_dict(manifest_dict("v1", accuracy=0.95))
    candidate = Manifest.from_dict(manifest_dict("v2", accuracy=0.945))
    assert gate_reasons(candidate, live, GATE) == []
    assert gate_reasons(candidate, None, GATE) == []


def test_an_added_imputed_feature_is_compatible() -> None:
    live = Manifest.from_dict(manifest_dict("v1"))
    features = [*manifest_dict("v2")["signature"]["features"]]
    features.append(
        {
            "name": "extra",
            "onnx_input": "extra",
            "kind": "numeric",
            "dtype": "float32",
            "nullable": True,
        }
    )
    assert signature_changes(live, Manifest.from_dict(manifest_dict("v2", features=features))) == []


def test_regression_uses_r2_and_the_threshold_comes_from_the_gate() -> None:
    candidate = Manifest.from_dict(manifest_dict("v1", task="regression", accuracy=0.5))
    assert gate_reasons(candidate, None, GATE) == []
    strict = GATE.model_copy(update={"min_r2": 0.6})
    assert gate_reasons(candidate, None, strict) == [
        "r2 0.5000 (int8) is below the gate's minimum 0.6000"
    ]


def test_evaluate_compares_with_production(tmp_path: Path) -> None:
    _promote(tmp_path, "v1", accuracy=0.97)
    uri, _ = _stage(tmp_path, "v2", accuracy=0.90)
    decision = evaluate(LocalStore(tmp_path), "cancer", uri, GATE)
    assert decision["passed"] is False
    assert decision["production"]["model_version"] == "v1"
    assert decision["production"]["lambda_version"] == "1"
    assert decision["candidate"]["metrics"] == {"accuracy": 0.90, "balanced_accuracy": 0.90}
    assert set(decision["candidate"]) == {
        "model_name",
        "model_version",
        "artifact_uri",
        "task",
        "primary_metric",
        "metrics",
        "serving_variant",
        "sha256",
    }
    assert any("worse than production" in r for r in decision["reasons"])


def test_evaluate_refuses_a_tampered_artifact(tmp_path: Path) -> None:
    manifest = manifest_dict("v1", model_bytes=b"onnx-graph-v1")
    path = tmp_path / "model.tar.gz"
    path.write_bytes(tarball(manifest, b"onnx-graph-EVIL"))
    decision = evaluate(LocalStore(tmp_path), "cancer", path.as_uri(), GATE)
    assert decision["passed"] is False
    assert any("digest mismatch" in r for r in decision["reasons"])


# --- Promote and roll back ----------------------------------------------------------------
def test_promote_twice_then_roll_back(tmp_path: Path) -> None:
    first = _promote(tmp_path, "v1")
    assert first["lambda_version"] == "1"
    assert first["previous_lambda_version"] is None
    assert (tmp_path / "models/cancer/v1/model.onnx").read_bytes() == b"onnx-graph-v1"
    second = _promote(tmp_path, "v2", accuracy=0.96)
    assert second["previous_lambda_version"] == "1"
    pointer = read_pointer(LocalStore(tmp_path), "cancer")
    assert pointer is not None
    assert (pointer.model_version, pointer.lambda_version) == ("v2", "2")
    assert [h["model_version"] for h in pointer.history] == ["v1"]
    assert LocalRegistry(tmp_path).versions("cancer")[1]["status"] == "Approved"

    back = rollback(LocalStore(tmp_path), LocalServing(tmp_path), "cancer")
    assert (back["from"], back["to"], back["lambda_version"]) == ("v2", "v1", "1")
    assert _served_sha(tmp_path) == first["sha256"]
    pointer = read_pointer(LocalStore(tmp_path), "cancer")
    assert pointer is not None and pointer.model_version == "v1" and pointer.history == []
    with pytest.raises(StepError, match="no previous version"):
        rollback(LocalStore(tmp_path), LocalServing(tmp_path), "cancer")


def test_rollback_to_a_named_version(tmp_path: Path) -> None:
    for version in ("v1", "v2", "v3"):
        _promote(tmp_path, version)
    with pytest.raises(StepError, match="v9 is not a previous version"):
        rollback(LocalStore(tmp_path), LocalServing(tmp_path), "cancer", "v9")
    back = rollback(LocalStore(tmp_path), LocalServing(tmp_path), "cancer", "v1")
    assert back["to"] == "v1"
    assert LocalServing(tmp_path).live()[0] == "1"


def test_promote_is_idempotent(tmp_path: Path) -> None:
    uri, _ = _stage(tmp_path, "v1")
    store, registry = LocalStore(tmp_path), LocalRegistry(tmp_path)
    decision = evaluate(store, "cancer", uri, GATE)
    package = registry.register(
        Manifest.from_dict(manifest_dict("v1")), uri, decision, "PendingManualApproval"
    )
    results = [
        promote(store, LocalServing(tmp_path), registry, decision["candidate"], package)
        for _ in range(3)
    ]
    assert results[0] == results[2]
    state = json.loads((tmp_path / "serving/function.json").read_text())
    assert list(state["versions"]) == ["1"]
    pointer = read_pointer(store, "cancer")
    assert pointer is not None and pointer.history == []


def test_a_tampered_artifact_is_never_promoted(tmp_path: Path) -> None:
    _promote(tmp_path, "v1")
    uri, _ = _stage(tmp_path, "v2")
    store = LocalStore(tmp_path)
    candidate = evaluate(store, "cancer", uri, GATE)["candidate"]
    manifest = manifest_dict("v2", model_bytes=b"onnx-graph-v2")
    Path(uri.removeprefix("file://")).write_bytes(tarball(manifest, b"onnx-graph-EVIL"))
    with pytest.raises(TamperedArtifactError, match="digest mismatch"):
        promote(store, LocalServing(tmp_path), None, candidate, "cancer/v2")
    # A consistent artifact that is not the evaluated one is refused too.
    other = manifest_dict("v2", model_bytes=b"another-graph")
    Path(uri.removeprefix("file://")).write_bytes(tarball(other, b"another-graph"))
    with pytest.raises(TamperedArtifactError, match="not the one that was evaluated"):
        promote(store, LocalServing(tmp_path), None, candidate, "cancer/v2")
    assert not (tmp_path / "models/cancer/v2").exists()
    assert LocalServing(tmp_path).live()[0] == "1"


def test_an_existing_version_with_other_content_is_immutable(tmp_path: Path) -> None:
    _promote(tmp_path, "v1")
    (tmp_path / "models/cancer/v2").mkdir(parents=True)
    (tmp_path / "models/cancer/v2/model.onnx").write_bytes(b"squatter")
    uri, _ = _stage(tmp_path, "v2")
    candidate = evaluate(LocalStore(tmp_path), "cancer", uri, GATE)["candidate"]
    with pytest.raises(StepError, match="immutable"):
        promote(LocalStore(tmp_path), LocalServing(tmp_path), None, candidate, "cancer/v2")
    assert LocalServing(tmp_path).live()[0] == "1"


# Every call of a promotion on the ports: get/head/put of the model, the manifest, the pointer
# and the promotion record, and the function's live/model_of/publish/route; approve.
SERVING_CALLS = {"publish", "route", "find_version", "live", "model_of", "follows_pointer"}
PROMOTION_CALLS = 16


@pytest.mark.parametrize("fail_at", range(1, PROMOTION_CALLS + 2))
def test_a_fault_at_any_call_leaves_the_previous_model_live(tmp_path: Path, fail_at: int) -> None:
    first = _promote(tmp_path, "v1")
    uri, _ = _stage(tmp_path, "v2")
    decision = evaluate(LocalStore(tmp_path), "cancer", uri, GATE)
    registry = LocalRegistry(tmp_path)
    package = registry.register(
        Manifest.from_dict(manifest_dict("v2")), uri, decision, "PendingManualApproval"
    )
    counter = {"calls": 0, "fail_at": fail_at}
    store = Faulty(LocalStore(tmp_path), counter, {"put", "get", "head", "open_uri"})
    serving = Faulty(LocalServing(tmp_path), counter, SERVING_CALLS)
    faulty_registry = Faulty(registry, counter, {"approve"})
    try:
        result = promote(store, serving, faulty_registry, decision["candidate"], package)
    except Fault:
        assert _served_sha(tmp_path) == first["sha256"]
        pointer = read_pointer(LocalStore(tmp_path), "cancer")
        assert pointer is not None and pointer.model_version == "v1"
        live = resolve(LocalStore(tmp_path), LocalServing(tmp_path), "cancer")
        assert live.pointer is not None and live.pointer.model_version == "v1"
        assert not live.stale
        # The retry (the state machine's, or the operator's) completes the promotion.
        result = promote(
            LocalStore(tmp_path), LocalServing(tmp_path), registry, decision["candidate"], package
        )
    else:
        assert counter["calls"] < fail_at, "the fault was never reached"
    assert _served_sha(tmp_path) == result["sha256"]
    pointer = read_pointer(LocalStore(tmp_path), "cancer")
    assert pointer is not None and pointer.model_version == "v2"
    assert [h["model_version"] for h in pointer.history] == ["v1"]


def test_the_gradual_shift_rolls_back_on_alarm(tmp_path: Path) -> None:
    first = _promote(tmp_path, "v1")
    uri, _ = _stage(tmp_path, "v2")
    store = LocalStore(tmp_path)
    candidate = evaluate(store, "cancer", uri, GATE)["candidate"]
    seen: list[dict[str, float]] = []
    serving = LocalServing(tmp_path)

    def alarm() -> bool:
        seen.append(copy.deepcopy(serving.live()[1]))
        return len(seen) == 2

    shift = Shift(weights=[0.1, 0.5], alarm=alarm, sleep=lambda _: None)
    with pytest.raises(RolledBackError, match="at 50%"):
        promote(store, serving, None, candidate, "cancer/v2", shift=shift)
    assert seen == [{"2": 0.1}, {"2": 0.5}]
    assert _served_sha(tmp_path) == first["sha256"]

    calm = Shift(weights=[0.1], alarm=lambda: False, sleep=lambda _: None)
    result = promote(store, serving, None, candidate, "cancer/v2", shift=calm)
    assert _served_sha(tmp_path) == result["sha256"]


def test_the_fault_range_covers_every_call_of_a_promotion(tmp_path: Path) -> None:
    _promote(tmp_path, "v1")
    uri, _ = _stage(tmp_path, "v2")
    decision = evaluate(LocalStore(tmp_path), "cancer", uri, GATE)
    registry = LocalRegistry(tmp_path)
    package = registry.register(
        Manifest.from_dict(manifest_dict("v2")), uri, decision, "PendingManualApproval"
    )
    counter = {"calls": 0, "fail_at": -1}
    store = Faulty(LocalStore(tmp_path), counter, {"put", "get", "head", "open_uri"})
    serving = Faulty(LocalServing(tmp_path), counter, SERVING_CALLS)
    promote(store, serving, Faulty(registry, counter, {"approve"}), decision["candidate"], package)
    # The parametrized fault test injects at every call and one more, a fault-free run.
    assert counter["calls"] == PROMOTION_CALLS


def test_evaluate_and_promote_load_neither_scikit_learn_nor_onnxruntime(tmp_path: Path) -> None:
    import subprocess
    import sys

    uri, _ = _stage(tmp_path, "v1")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from functions.pipeline import handlers\n"
        "from functions.pipeline.evaluate import evaluate\n"
        "from onnxkit.local.store import LocalServing, LocalStore\n"
        "from functions.pipeline.promote import promote\n"
        "from onnxkit.contract.gate import QualityGate\n"
        f"root = Path({str(tmp_path)!r})\n"
        f"decision = evaluate(LocalStore(root), 'cancer', {uri!r}, QualityGate())\n"
        "promote(LocalStore(root), LocalServing(root), None, decision['candidate'], 'p')\n"
        "heavy = {'sklearn', 'onnxruntime', 'numpy', 'pandas'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "models/cancer/production.json").is_file()


def test_runs_on_one_workdir_take_turns(tmp_path: Path) -> None:
    import threading
    import time

    from onnxkit.local.store import workdir_lock

    order: list[str] = []
    waiting = threading.Event()

    def second() -> None:
        waiting.set()
        with workdir_lock(tmp_path):
            order.append("second holds the lock")

    with workdir_lock(tmp_path):
        thread = threading.Thread(target=second)
        thread.start()
        waiting.wait()
        time.sleep(0.2)  # gives a broken lock the chance to let the second in early
        order.append("first releases")
    thread.join()
    assert order == ["first releases", "second holds the lock"]


def test_promote_copies_the_listed_companion_files(tmp_path: Path) -> None:
    """reference.json and background.json go beside the model (drift, /explain read them)."""
    from onnxkit.contract.layout import COMPANION_FILES

    model_bytes = b"onnx-graph-v1"
    manifest = manifest_dict("v1", model_bytes=model_bytes)
    extra = {name: f'{{"file": "{name}"}}'.encode() for name in COMPANION_FILES}
    for name, data in extra.items():
        manifest["files"][name] = {"size_bytes": len(data), "sha256": sha256_bytes(data)}
    path = tmp_path / "jobs" / "v1" / "model.tar.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(tarball(manifest, model_bytes, extra))
    store, registry = LocalStore(tmp_path), LocalRegistry(tmp_path)
    decision = evaluate(store, "cancer", path.as_uri(), GATE)
    package = registry.register(
        Manifest.from_dict(manifest), path.as_uri(), decision, "PendingManualApproval"
    )
    promote(store, LocalServing(tmp_path), registry, decision["candidate"], package)
    for name, data in extra.items():
        assert (tmp_path / "models/cancer/v1" / name).read_bytes() == data


# --- Promote refuses a verdict about a model that is no longer live -----------------------


class Crash(BaseException):
    """The process dies (not an exception the step could handle)."""


class DiesWritingThePointer:
    """A store whose process dies as it writes the production pointer: the alias has moved."""

    def __init__(self, inner: LocalStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put(self, key: str, data: bytes, content_type: str) -> str | None:
        if key == pointer_key("cancer"):
            raise Crash(key)
        return self._inner.put(key, data, content_type)


def _evaluated(root: Path, version: str) -> tuple[str, dict[str, Any]]:
    uri, _ = _stage(root, version)
    return uri, evaluate(LocalStore(root), "cancer", uri, GATE)


def _promote_evaluated(root: Path, decision: dict[str, Any], store: Any = None) -> Any:
    candidate = decision["candidate"]
    return promote(
        store or LocalStore(root),
        LocalServing(root),
        None,
        candidate,
        f"cancer/{candidate['model_version']}",
        evaluation=decision,
    )


def test_a_candidate_gated_against_a_replaced_model_is_not_promoted(tmp_path: Path) -> None:
    """Two runs overlap: v2 was gated against v1, but v3 was promoted meanwhile."""
    _promote(tmp_path, "v1")
    uri, late = _evaluated(tmp_path, "v2")
    assert late["production"]["model_version"] == "v1"
    _promote(tmp_path, "v3")
    with pytest.raises(StaleEvaluationError, match="live serves v3, but Evaluate compared the "):
        _promote_evaluated(tmp_path, late)
    pointer = read_pointer(LocalStore(tmp_path), "cancer")
    assert pointer is not None and pointer.model_version == "v3"
    assert not (tmp_path / "models/cancer/v2/evaluation.json").exists()

    again = evaluate(LocalStore(tmp_path), "cancer", uri, GATE)  # the next run's gate
    assert again["production"]["model_version"] == "v3"
    _promote_evaluated(tmp_path, again)
    kept = json.loads((tmp_path / "models/cancer/v2/evaluation.json").read_text())
    assert kept["production"]["model_version"] == "v3"


def test_after_a_promotion_died_past_the_alias_the_next_is_gated_against_it(
    tmp_path: Path,
) -> None:
    """The alias serves v2 but the pointer still names v1: Evaluate (which reads the pointer)
    compared v3 with v1, so Promote refuses; the records are reconciled for the next run."""
    _promote(tmp_path, "v1")
    _, decision = _evaluated(tmp_path, "v2")
    with pytest.raises(Crash):
        _promote_evaluated(tmp_path, decision, DiesWritingThePointer(LocalStore(tmp_path)))
    pointer = read_pointer(LocalStore(tmp_path), "cancer")
    assert pointer is not None and pointer.model_version == "v1"  # behind the alias
    uri, stale = _evaluated(tmp_path, "v3")
    assert stale["production"]["model_version"] == "v1"
    with pytest.raises(StaleEvaluationError, match=r"live serves v2, but .* with v1"):
        _promote_evaluated(tmp_path, stale)
    assert _served_sha(tmp_path) == decision["candidate"]["sha256"]
    again = evaluate(LocalStore(tmp_path), "cancer", uri, GATE)
    assert again["production"]["model_version"] == "v2"
    assert _promote_evaluated(tmp_path, again)["model_version"] == "v3"


def test_a_retry_of_a_committed_promotion_is_not_refused(tmp_path: Path) -> None:
    """Promote retried after it committed: live is the candidate itself, not a stale verdict."""
    _promote(tmp_path, "v1")
    _, decision = _evaluated(tmp_path, "v2")
    first = _promote_evaluated(tmp_path, decision)
    assert _promote_evaluated(tmp_path, decision) == first
