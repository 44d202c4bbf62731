"""``onnxkit run`` and ``onnxkit rollback`` end to end: real training jobs in subprocesses,
the pipeline's step code over a work directory, exit codes a CI script relies on."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from onnxkit.cli import app

# Fast, deterministic estimators; latency_runs=0 skips the training job's latency benchmark.
FAST = ["--hp", "latency_runs=0"]
GOOD = ["--model", "logistic_regression", *FAST]
WORSE = ["--model", "random_forest", "--hp", "n_estimators=1", "--hp", "max_depth=1", *FAST]
NAME = "breast-cancer"


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(
        app,
        list(args),
        catch_exceptions=False,
        env={"COLUMNS": "120", "ORT_DISABLE_TELEMETRY": "1"},
    )


def _pointer(workdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / "models" / NAME / "production.json").read_text())
    return data


def _live(workdir: Path) -> tuple[str, str]:
    state = json.loads((workdir / "serving" / "function.json").read_text())
    version = state["alias"]["version"]
    return version, state["versions"][version]["MODEL_SHA256"]


def test_promote_reject_promote_and_roll_back(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    first = _invoke("run", "--workdir", str(workdir), *GOOD)
    assert first.exit_code == 0, first.output
    assert "Promoted" in first.output and "gate: passed" in first.output
    # The summary names the compressed variant that serves and the search's reason.
    assert re.search(r"compression: \S+, [0-9.]+ KiB \(.+; \d variants tried in ", first.output)
    v1 = _pointer(workdir)
    assert v1["lambda_version"] == "1" and v1["history"] == []
    # Paths relative to the work directory, so a copied one serves its own files.
    assert v1["model_uri"] == f"models/{NAME}/{v1['model_version']}/model.onnx"
    assert (workdir / v1["model_uri"]).is_file()
    assert _live(workdir) == ("1", v1["sha256"])

    worse = _invoke("run", "--workdir", str(workdir), *WORSE)
    assert worse.exit_code == 3, worse.output
    assert "worse than production" in worse.output
    assert f"production unchanged: {v1['model_version']}" in worse.output
    assert _pointer(workdir) == v1
    assert _live(workdir) == ("1", v1["sha256"])

    second = _invoke("run", "--workdir", str(workdir), "--hp", "c=0.5", *GOOD)
    assert second.exit_code == 0, second.output
    v2 = _pointer(workdir)
    assert v2["model_version"] != v1["model_version"]
    assert [h["model_version"] for h in v2["history"]] == [v1["model_version"]]
    assert _live(workdir) == ("2", v2["sha256"])
    registry = sorted((workdir / "registry" / NAME).glob("*.json"))
    assert len(registry) == 2  # the rejected candidate was never registered
    assert all(json.loads(p.read_text())["metrics"]["sklearn"] for p in registry)
    _check_cards(workdir, v1["model_version"], v2["model_version"])

    back = _invoke("rollback", "--workdir", str(workdir))
    assert back.exit_code == 0, back.output
    assert f"{v2['model_version']} -> {v1['model_version']}" in back.output
    restored = _pointer(workdir)
    assert {k: restored[k] for k in ("model_version", "sha256", "lambda_version")} == {
        k: v1[k] for k in ("model_version", "sha256", "lambda_version")
    }
    assert _live(workdir) == ("1", v1["sha256"])

    again = _invoke("rollback", "--workdir", str(workdir))
    assert again.exit_code == 1
    assert again.output.strip() == (f"error: {NAME} {v1['model_version']} has no previous version")


def _check_cards(workdir: Path, v1: str, v2: str) -> None:
    """Each promoted version's card says what production was when it was gated, and the local
    registry lists the versions with their top features, as the cloud's does."""
    cards = {}
    for version in (v1, v2):
        result = _invoke("card", "--model", str(workdir / "models" / NAME / version), "--json")
        assert result.exit_code == 0, result.output
        cards[version] = json.loads(result.output)
    assert cards[v1]["gate"]["production"] is None and cards[v1]["gate"]["passed"]
    assert cards[v2]["gate"]["production"]["model_version"] == v1
    assert (
        cards[v2]["metrics"]["production_at_gate"]["metrics"]
        == (cards[v1]["metrics"]["variants"][cards[v1]["model"]["serving"]["variant"]])
    )
    listed = json.loads(_invoke("models", "--workdir", str(workdir), "--json").output)
    assert [(v["model_version"], v["live"]) for v in listed] == [(v2, True), (v1, False)]
    ranked = sorted(cards[v2]["importance"]["features"], key=lambda f: -f["mean"])
    assert [f["name"] for f in listed[0]["top_features"]] == [f["name"] for f in ranked[:5]]
    assert listed[0]["production_at_gate"]["model_version"] == v1
    table = CliRunner().invoke(app, ["models", "--workdir", str(workdir)], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "top features" in table.output, table.output
    assert f"{ranked[0]['name']}, {ranked[1]['name']}," in table.output
    neither = _invoke("models")
    assert neither.exit_code == 1 and "give --env ENV (deployed) or --workdir" in neither.output


def test_a_bad_csv_fails_with_the_training_jobs_failure_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n1,x,0\n2,y,1\n3,z\n")
    workdir = tmp_path / "work"
    result = _invoke(
        "run", "--workdir", str(workdir), "--data", str(bad), "--target", "missing", *FAST
    )
    assert result.exit_code == 1, result.output
    failures = list(workdir.glob("jobs/*/output/failure"))
    assert len(failures) == 1
    reason = failures[0].read_text().strip()
    assert "missing" in reason
    assert f"failed: {reason}" in result.output
    assert "Traceback" not in result.output
    assert not (workdir / "models").exists()
    notes = [
        json.loads(line) for line in (workdir / "notifications.jsonl").read_text().splitlines()
    ]
    assert notes[-1]["message"] == {"Error": "TrainingFailed", "Cause": reason}


def test_the_gate_threshold_comes_from_config(tmp_path: Path) -> None:
    result = _invoke("run", "--workdir", str(tmp_path), "--set", "gate.min_accuracy=0.999", *GOOD)
    assert result.exit_code == 3, result.output
    assert "below the gate's minimum 0.9990" in result.output
    assert not (tmp_path / "models" / NAME / "production.json").exists()


def test_regression_and_mixed_categorical_datasets(tmp_path: Path) -> None:
    regression = _invoke(
        "run", "--workdir", str(tmp_path), "--dataset", "diabetes", "--model", "ridge", *FAST
    )
    assert regression.exit_code == 0, regression.output
    assert "r2" in regression.output
    churn = _invoke(
        "run",
        "--workdir",
        str(tmp_path),
        "--dataset",
        "customer_churn",
        "--model",
        "logistic_regression",
        "--set",
        "gate.min_accuracy=0.5",
        *FAST,
    )
    assert churn.exit_code == 0, churn.output
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["customer-churn", "diabetes"]
    two = _invoke("rollback", "--workdir", str(tmp_path))
    assert two.exit_code == 1 and "several models" in two.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "x.csv", "--dataset", "iris"], "not both"),
        (["--data", "/no/such.csv", "--target", "y"], "does not exist"),
        (["--dataset", "nope"], "unknown dataset"),
        (["--set", "gate.min_accuracy=2"], "invalid setting gate.min_accuracy"),
        (["--set", "nonsense"], "is not key=value"),
        (["--hp", "model_name=x"], "set by the pipeline"),
        (["--name", "../escape"], "invalid --name"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = _invoke("run", "--workdir", str(tmp_path), *args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "jobs").exists()


# --- processes, signals and the work directory (issue 10 §3) ---------------------------------
REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from onnxkit.cli import main; main()"]
# Long enough that the run is still training when it is stopped, whatever the machine's load.
SLOW = ["--model", "random_forest", "--hp", "n_estimators=20000", *FAST]


def _wait_for(predicate: Callable[[], Any], what: str, limit: float = 180.0) -> Any:
    """Poll until ``predicate`` is truthy (a liveness wait, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def _trainers(workdir: Path) -> list[int]:
    """Live train.py processes working in ``workdir`` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        trains = any(part.endswith(b"train.py") for part in command)
        if trains and state != "Z" and cwd.startswith(str(workdir.resolve())):
            found.append(int(entry.name))
    return found


def _start(args: list[str], tmp_path: Path, ignore_sigint: bool = False) -> subprocess.Popen[str]:
    def setup() -> None:
        if ignore_sigint:  # what a non-interactive shell does to a background job
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen(
        [*CLI, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=setup,  # noqa: PLW1509 - one signal() call
        env={**os.environ, "COLUMNS": "120", "ORT_DISABLE_TELEMETRY": "1"},
    )


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    ("sig", "code", "line", "ignore_sigint"),
    [
        (signal.SIGTERM, 143, "error: terminated", False),
        (signal.SIGINT, 130, "error: interrupted", True),
        (signal.SIGKILL, -signal.SIGKILL, None, False),
    ],
    ids=["sigterm", "sigint-from-a-non-interactive-shell", "sigkill"],
)
def test_a_stopped_run_leaves_no_training_behind(
    tmp_path: Path, sig: int, code: int, line: str | None, ignore_sigint: bool
) -> None:
    workdir = tmp_path / "work"
    run = _start(["run", "--workdir", str(workdir), *SLOW], tmp_path, ignore_sigint)
    try:
        trainer = _wait_for(lambda: _trainers(workdir), "train.py to start")[0]
        run.send_signal(sig)
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == code, stderr
        if line is not None:
            assert stderr.strip().splitlines() == [line], stderr
        _wait_for(lambda: trainer not in _trainers(workdir), "train.py to end", 60)
    finally:
        run.kill()
        for pid in _trainers(workdir):
            os.kill(pid, signal.SIGKILL)
    assert not list(workdir.glob("jobs/*/output/model.tar.gz"))


def test_predict_ends_on_sigterm_with_one_line(tmp_path: Path) -> None:
    """A predict waiting on an API that never answers, stopped by SIGTERM then by SIGINT."""
    data = tmp_path / "rows.csv"
    data.write_text("a,b\n1,2\n")
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.settimeout(120)  # a predict that never connects fails the test, not hangs it
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        for sig, code, line in (
            (signal.SIGTERM, 143, "error: terminated"),
            (signal.SIGINT, 130, "error: interrupted"),
        ):
            args = ["predict", "--input", str(data), "--url", url]
            predict = _start(args, tmp_path, ignore_sigint=True)
            try:
                connection, _ = silent.accept()  # the request arrived; no answer will come
                predict.send_signal(sig)
                _, stderr = predict.communicate(timeout=60)
                connection.close()
            finally:
                predict.kill()
            assert predict.returncode == code, stderr
            assert line in stderr and "Traceback" not in stderr, stderr


def test_a_copied_work_directory_serves_its_own_files(tmp_path: Path) -> None:
    original = tmp_path / "original"
    assert _invoke("run", "--workdir", str(original), *GOOD).exit_code == 0
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    # Make the original's model unusable: the copy must not be reading it.
    for model in original.glob("models/*/*/model.onnx"):
        model.write_bytes(b"not the model")
    from onnxkit.local.serving import production_model_dir

    folder = production_model_dir(copy, NAME)
    assert folder.is_relative_to(copy.resolve())
    state = json.loads((copy / "serving" / "function.json").read_text())
    assert all(not Path(v["MODEL_URI"]).is_absolute() for v in state["versions"].values())
    # The copy's pointer loads, with both digests checked, from the copy.
    from functions.inference.source import ModelLocator

    pointer = copy / "models" / NAME / "production.json"
    located = ModelLocator(cache_dir=tmp_path / "cache").locate(str(pointer))
    assert located.model_path.resolve().is_relative_to(copy.resolve())
    # And a second run in the copy promotes on top of the copy's model.
    second = _invoke("run", "--workdir", str(copy), "--hp", "c=0.5", *GOOD)
    assert second.exit_code == 0, second.output
    assert len(_pointer(copy)["history"]) == 1


def _as_nobody() -> Callable[[], None] | None:
    """When the tests run as root (who may write anywhere), a child without the capabilities
    that bypass file permissions: it is refused writes to a read-only folder like anyone."""
    if os.geteuid() != 0:
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2

    def drop() -> None:
        # Dropped from the bounding set, the capabilities are gone after exec.
        for cap in (cap_dac_override, cap_dac_read_search):
            if prctl(pr_capbset_drop, cap) != 0:
                os._exit(99)

    return drop


def test_a_read_only_work_directory_gives_one_line(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    assert _invoke("run", "--workdir", str(workdir), *GOOD).exit_code == 0
    assert _invoke("run", "--workdir", str(workdir), "--hp", "c=0.5", *GOOD).exit_code == 0
    tmp_path.chmod(0o755)
    for path in [workdir, *workdir.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    env = {**os.environ, "COLUMNS": "120", "HOME": str(tmp_path), "ORT_DISABLE_TELEMETRY": "1"}
    try:
        back = subprocess.run(
            [*CLI, "rollback", "--workdir", str(workdir)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            env=env,
            preexec_fn=_as_nobody(),
        )
        assert back.returncode == 1, back.stderr
        assert "Traceback" not in back.stderr
        assert back.stderr.strip().splitlines() == [
            f"error: cannot lock the work directory {workdir}: Permission denied"
        ]
        run = subprocess.run(
            [*CLI, "run", "--workdir", str(workdir), *GOOD],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            env=env,
            preexec_fn=_as_nobody(),
        )
        assert run.returncode == 1, run.stdout + run.stderr
        assert "Traceback" not in run.stdout + run.stderr
        failed = [ln for ln in run.stdout.splitlines() if ln.startswith("failed:")]
        # The first failure (the training job's folder), not the notification written after it.
        assert len(failed) == 1 and "Permission denied" in failed[0], run.stdout
        assert "jobs" in failed[0] and "notifications" not in failed[0], run.stdout
    finally:
        for path in [workdir, *workdir.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_the_mlps_learning_curve_shows_under_train(tmp_path: Path) -> None:
    result = _invoke(
        "run", "--workdir", str(tmp_path), "--model", "mlp", "--hp", "max_iter=15", *FAST
    )
    assert result.exit_code in (0, 3), result.output
    lines = [line.strip() for line in result.output.splitlines()]
    train = next(i for i, line in enumerate(lines) if line.startswith("✓ Train"))
    # Early stopping may end the fit before max_iter, never before n_iter_no_change (10) + 1.
    spark = r"[▁▂▃▄▅▆▇█]+ \S+ \(iteration (1[1-5])\)"
    assert re.fullmatch(f"train_loss {spark}", lines[train + 1]), result.output
    assert re.fullmatch(f"validation_score {spark}", lines[train + 2]), result.output
