"""A local promotion or rollback killed (a real SIGKILL of a subprocess) after every write, or in
the middle of one: the next reader, the next promotion and a rollback all see one live model.

The child process replaces the local ports' one write function (``_atomic_write``) with one that
kills the process after the Nth write, or between writing the Nth file's temporary copy and
renaming it; nothing in the code under test knows about it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from functions.pipeline.ports import read_pointer
from functions.pipeline.promote import promote, reconcile, resolve
from onnxkit.contract.manifest import Manifest
from onnxkit.local.serving import production_model_dir
from onnxkit.local.store import LocalRegistry, LocalServing, LocalStore, workdir_lock
from onnxkit.rollback import rollback
from tests.support.artifacts import artifact
from tests.support.paths import REPO

CHILD = r"""
import json, os, signal, sys
from pathlib import Path
from onnxkit.local import store as local
from functions.pipeline.promote import promote
from onnxkit.rollback import rollback

root, action, mode, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
real_write, real_replace = local._atomic_write, os.replace
count = 0

def replace(src, dst):
    if mode == "inside" and count + 1 == n:
        os.kill(os.getpid(), signal.SIGKILL)  # the temporary file is written, not renamed
    real_replace(src, dst)

def write(path, data):
    global count
    real_write(path, data)
    count += 1
    print(Path(path).relative_to(root.resolve()).as_posix(), flush=True)
    if mode == "after" and count == n:
        os.kill(os.getpid(), signal.SIGKILL)

local._atomic_write = write
os.replace = replace
store, serving = local.LocalStore(root), local.LocalServing(root)
with local.workdir_lock(root):
    if action == "promote":
        candidate = json.loads(sys.argv[5])
        package = "cancer/" + candidate["model_version"]
        promote(store, serving, local.LocalRegistry(root), candidate, package)
    else:
        rollback(store, serving, "cancer")
"""


def _stage(root: Path, version: str) -> dict[str, Any]:
    """Write a job's model.tar.gz, register it, and return the evaluated candidate."""
    manifest, data = artifact(version)
    path = root / "jobs" / version / "model.tar.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    LocalRegistry(root).register(
        Manifest.from_dict(manifest),
        path.as_uri(),
        {"passed": True, "reasons": []},
        "PendingManualApproval",
    )
    return {
        "artifact_uri": path.as_uri(),
        "sha256": manifest["serving"]["sha256"],
        "model_name": "cancer",
        "model_version": version,
    }


def _promote(root: Path, version: str) -> dict[str, Any]:
    with workdir_lock(root):
        return promote(
            LocalStore(root),
            LocalServing(root),
            LocalRegistry(root),
            _stage(root, version),
            f"cancer/{version}",
        )


def _child(root: Path, action: str, mode: str, n: int, candidate: Any = None) -> Any:
    args = [sys.executable, "-c", CHILD, str(root), action, mode, str(n)]
    return subprocess.run(
        [*args, json.dumps(candidate)] if candidate else args,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def _writes(tmp_path: Path, action: str) -> list[str]:
    """The files one undisturbed promotion (or rollback) writes, in order."""
    root = tmp_path / "trace"
    candidate = _setup(root, action)
    done = _child(root, action, "after", 0, candidate)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _setup(root: Path, action: str) -> dict[str, Any] | None:
    """v1 live; for a promotion, v2 staged (the candidate); for a rollback, v2 live too."""
    _promote(root, "v1")
    if action == "rollback":
        _promote(root, "v2")
        return None
    return _stage(root, "v2")


def _one_live_model(root: Path) -> str:
    """The live model's version, after checking every reader agrees on it."""
    store, serving = LocalStore(root), LocalServing(root)
    live = resolve(store, serving, "cancer")
    assert live.pointer is not None
    alias, weights = serving.live()
    assert alias is not None and not weights
    # The function serves what resolve names, and so does the local server.
    assert serving.model_of(alias)[1] == live.pointer.sha256
    folder = production_model_dir(root, "cancer")
    assert folder == root.resolve() / "models" / "cancer" / live.pointer.model_version
    # What every run and rollback does first: clean leftovers and bring the pointer up to date.
    with workdir_lock(root):
        reconcile(store, serving, "cancer")
    assert not list(root.rglob("*.partial")), "a temporary file was left behind"
    for model in root.glob("models/*/*/model.onnx"):
        assert (model.parent / "manifest.json").is_file(), f"{model.parent} is incomplete"
    pointer = read_pointer(store, "cancer")
    assert pointer is not None and pointer.model_version == live.pointer.model_version
    return live.pointer.model_version


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_a_kill_between_any_two_writes_leaves_one_live_model(tmp_path: Path, action: str) -> None:
    writes = _writes(tmp_path, action)
    # The alias is the commit point: the function.json write after the promotion record.
    alias_write = writes.index("models/cancer/promotion.json") + 2
    assert writes[alias_write - 1] == "serving/function.json"
    before, after = ("v1", "v2") if action == "promote" else ("v2", "v1")
    cases = [("after", n) for n in range(1, len(writes))]
    cases += [("inside", n) for n in range(1, len(writes) + 1)]
    for mode, n in cases:
        root = tmp_path / f"{mode}-{n}"
        candidate = _setup(root, action)
        killed = _child(root, action, mode, n, candidate)
        assert killed.returncode == -signal.SIGKILL, (mode, n, killed.stderr)
        committed = n >= alias_write if mode == "after" else n > alias_write
        live = _one_live_model(root)
        assert live == (after if committed else before), (mode, n, writes)

        # The next run promotes on top of whatever is live; a rollback returns to it.
        _promote(root, "v3")
        assert _one_live_model(root) == "v3"
        with workdir_lock(root):
            back = rollback(LocalStore(root), LocalServing(root), "cancer")
        assert (back["from"], back["to"]) == ("v3", live), (mode, n)
        assert _one_live_model(root) == live


def test_a_pointer_behind_the_alias_is_reconciled_and_rollback_says_so(tmp_path: Path) -> None:
    """The state the issue found: live moved to v3, the pointer still names v2 (written by a
    version without the promotion record). Rollback goes v3 -> v2, not v2 -> v1."""
    for version in ("v1", "v2", "v3"):
        _promote(tmp_path, version)
    store = LocalStore(tmp_path)
    stale = read_pointer(store, "cancer")
    assert stale is not None
    older = stale.history[0]
    (tmp_path / "models/cancer/promotion.json").unlink()
    (tmp_path / "models/cancer/production.json").write_text(
        json.dumps({**older, "history": stale.history[1:]})
    )
    live = resolve(store, LocalServing(tmp_path), "cancer")
    assert live.state == "drift" and live.pointer is not None
    assert live.pointer.model_version == "v3"
    assert [h["model_version"] for h in live.pointer.history] == ["v2", "v1"]
    with workdir_lock(tmp_path):
        back = rollback(store, LocalServing(tmp_path), "cancer")
    assert (back["from"], back["to"]) == ("v3", "v2")
    assert "v3" in back["note"] and "v2" in back["note"]
    assert _one_live_model(tmp_path) == "v2"
