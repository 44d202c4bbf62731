"""The local SageMaker-like training job: tree, environment, arguments, packing, failures."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from onnxkit.local import training
from onnxkit.local.runner import model_name_for


def _job(tmp_path: Path, validation: bool = True) -> training.TrainingJob:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data.csv"
    data.write_text("a,target\n1,0\n")
    channels = {"train": data}
    if validation:
        channels["validation"] = data
    return training.prepare(tmp_path / "job", "job-1", channels)


def test_the_tree_and_environment_follow_sagemaker(tmp_path: Path) -> None:
    job = _job(tmp_path)
    assert (job.channel("train") / "data.csv").is_file()
    env = training.environment(job, {"target": "target", "model": "ridge"})
    assert env["SM_MODEL_DIR"] == str(job.model_dir)
    assert env["SM_CHANNEL_TRAIN"] == str(tmp_path / "job/input/data/train")
    assert env["SM_CHANNEL_VALIDATION"] == str(tmp_path / "job/input/data/validation")
    assert env["SM_OUTPUT_DIR"] == str(tmp_path / "job/output")
    assert env["SM_OUTPUT_DATA_DIR"] == str(tmp_path / "job/output/data")
    assert json.loads(env["SM_CHANNELS"]) == ["train", "validation"]
    assert json.loads(env["SM_HPS"]) == {"target": "target", "model": "ridge"}
    no_validation = training.environment(_job(tmp_path / "b", validation=False), {})
    assert "SM_CHANNEL_VALIDATION" not in no_validation


def test_hyperparameters_are_name_value_arguments() -> None:
    assert training.arguments({"target": "y", "model": "mlp", "n_estimators": "5"}) == [
        "--model",
        "mlp",
        "--n_estimators",
        "5",
        "--target",
        "y",
    ]


# What sagemaker_training 5.1.4 makes of each value (environment.read_hyperparameters, then
# mapping.to_cmd_args); tests/infra/test_training_container.py checks the local arguments against
# the toolkit itself.
TOOLKIT_DECODING = [
    ("1.50", "1.5"),
    ("007", "007"),
    ("1e3", "1000.0"),
    ("1e400", "inf"),
    ("NaN", "nan"),
    ("-Infinity", "-inf"),
    ("true", "True"),
    ("false", "False"),
    ("null", ""),
    ('"x"', "x"),
    ('"1.50"', "1.50"),
    ("", ""),
    ("a,b", "a,b"),
    ("NA,null", "NA,null"),
    ("[64, 32]", "[64, 32]"),
    ('{"b": 2, "a": "x"}', "a=x,b=2"),
    (" 12 ", "12"),
    ("churned", "churned"),
]


@pytest.mark.parametrize(("raw", "passed"), TOOLKIT_DECODING)
def test_values_are_json_decoded_one_by_one_as_the_toolkit_does(raw: str, passed: str) -> None:
    assert training.arguments({"target": raw}) == ["--target", passed]


def test_one_letter_names_and_framework_keys_follow_the_toolkit(tmp_path: Path) -> None:
    hyperparameters = {"c": "0.5", "sagemaker_program": "train.py", "target": "1.50"}
    assert training.arguments(hyperparameters) == ["-c", "0.5", "--target", "1.5"]
    env = training.environment(_job(tmp_path), hyperparameters)
    assert json.loads(env["SM_HPS"]) == {"c": 0.5, "target": 1.5}
    assert (env["SM_HP_C"], env["SM_HP_TARGET"]) == ("0.5", "1.5")


def test_pack_puts_the_files_at_the_archive_root(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.onnx").write_bytes(b"graph")
    (model / "manifest.json").write_text("{}")
    target = training.pack(model, tmp_path / "out" / "model.tar.gz")
    with tarfile.open(target) as archive:
        assert sorted(archive.getnames()) == ["manifest.json", "model.onnx"]


def _fake_script(tmp_path: Path, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "train.py"
    script.write_text(body)
    monkeypatch.setattr(training, "train_script", lambda: script)


def test_a_failed_job_reports_its_failure_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_script(
        tmp_path,
        (
            "import os, pathlib, sys\n"
            "out = pathlib.Path(os.environ['SM_OUTPUT_DIR'])\n"
            "(out / 'failure').write_text('column x is not numeric\\nmore detail\\n')\n"
            "print('[metric] sklearn:accuracy=0.5')\n"
            "sys.exit(1)\n"
        ),
        monkeypatch,
    )
    job = _job(tmp_path)
    with pytest.raises(training.TrainingFailed, match=r"^column x is not numeric$"):
        training.run(job, {"target": "target"})
    assert job.metrics == {"sklearn:accuracy": 0.5}
    assert not job.artifact.exists()


def test_a_crash_without_a_failure_file_points_at_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_script(tmp_path, "raise SystemExit(7)\n", monkeypatch)
    job = _job(tmp_path)
    with pytest.raises(training.TrainingFailed, match="exited with code 7"):
        training.run(job, {})


def test_a_successful_job_is_packed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_script(
        tmp_path,
        (
            "import os, pathlib, sys\n"
            "model = pathlib.Path(os.environ['SM_MODEL_DIR'])\n"
            "assert sys.argv[1:] == ['--target', 'target'], sys.argv\n"
            "(model / 'model.onnx').write_bytes(b'graph')\n"
        ),
        monkeypatch,
    )
    job = _job(tmp_path)
    training.run(job, {"target": "target"})
    assert job.artifact.is_file()
    assert json.loads((job.root / "input/config/hyperparameters.json").read_text()) == {
        "target": "target"
    }


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("breast_cancer", "breast-cancer"),
        ("My Data.v2", "my-data-v2"),
        ("2024_sales", "sales"),
        ("___", "onnxkit-model"),
        ("a" * 40, "a" * 24),
    ],
)
def test_model_names_fit_the_config_pattern(source: str, name: str) -> None:
    assert model_name_for(source) == name


def test_the_curve_reaches_the_caller_while_the_job_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job prints its first iteration, then waits until the caller has seen it: a curve
    # read only after the job ended would never let it go on (it gives up after 60 s).
    go = tmp_path / "go"
    _fake_script(
        tmp_path,
        (
            "import pathlib, sys, time\n"
            "print('[curve] 1 train_loss=0.9', flush=True)\n"
            "print('[curve] 1 validation_score=0.5', flush=True)\n"
            f"go = pathlib.Path({str(go)!r})\n"
            "for _ in range(600):\n"
            "    if go.exists():\n"
            "        break\n"
            "    time.sleep(0.1)\n"
            "else:\n"
            "    sys.exit(3)\n"
            "print('[curve] 2 train_loss=0.5')\n"
            "print('[curve] 3 train_loss=0.25', end='')\n"  # never finished: not a point
        ),
        monkeypatch,
    )
    seen: list[dict[str, list[tuple[int, float]]]] = []

    def on_curve(curve: dict[str, list[tuple[int, float]]]) -> None:
        seen.append({name: list(points) for name, points in curve.items()})
        go.touch()

    training.run(_job(tmp_path), {"target": "target"}, on_curve=on_curve)
    assert seen[0]["train_loss"] == [(1, 0.9)]  # while the job waited for it
    assert seen[-1] == {"train_loss": [(1, 0.9), (2, 0.5)], "validation_score": [(1, 0.5)]}


def test_a_timeout_still_stops_a_job_whose_curve_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_script(tmp_path, "import time\ntime.sleep(60)\n", monkeypatch)
    with pytest.raises(training.TrainingFailed, match="stopped after 1 s"):
        training.run(_job(tmp_path), {}, timeout=1, on_curve=lambda curve: None)
