"""train.py as the cloud runs it: the state machine's hyperparameters, the source tarball the CDK
app uploads, and SageMaker's training toolkit (PyPI ``sagemaker-training``) starting the script
in a virtualenv with the scikit-learn 1.9-0 container's Python and library versions.

The chain under test is the one a deployed pipeline runs: Prepare's JSONata output becomes
``hyperparameters.json``; the toolkit's ``trainer.train`` imports the container's training
module, which hands the environment to ``entry_point.run``: it unpacks the tarball,
pip-installs its requirements.txt, JSON-decodes every hyperparameter and runs
``python train.py --name value ...``. Only S3 (a local tarball and channel folder stand in for
the downloads) and the container image itself are not exercised.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from onnxkit.contract import workflow as wf
from onnxkit.contract.layout import SERVING_FILE
from onnxkit.contract.manifest import load_manifest
from onnxkit.contract.metrics import parse_curve, parse_metric_lines
from onnxkit.datasets import bundled
from onnxkit.local.training import arguments, decode_hyperparameters
from tests.e2e.test_training_job import feeds
from tests.infra.conftest import REPO_ROOT, SYNTH_GROUP, Synthesized
from tests.infra.test_jsonata import evaluate
from tests.infra.test_pipeline_stack import definition

pytestmark = SYNTH_GROUP
CONTAINER_VENV = REPO_ROOT / ".venv-container"
TWIN = Path(__file__).resolve().parent / "sklearn_container"
# The versions the prebuilt scikit-learn 1.9-0 training image runs.
CONTAINER_VERSIONS = {"python": "3.12", "sklearn": "1.9.0", "numpy": "2.5.1", "pandas": "2.2.3"}
VERSIONS_PROBE = (
    "import json, sys, numpy, pandas, sklearn; print(json.dumps({'python': '%d.%d' % "
    "sys.version_info[:2], 'sklearn': sklearn.__version__, 'numpy': numpy.__version__, "
    "'pandas': pandas.__version__}))"
)


def _python_312_installed() -> bool:
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    return any(pyenv.glob("3.12*/bin/python3.12")) or shutil.which("python3.12") is not None


@pytest.fixture(scope="module")
def container_python() -> Path:
    """The container twin's interpreter (``make container`` builds it)."""
    python = CONTAINER_VENV / "bin" / "python"
    if not python.exists():
        if _python_312_installed():
            pytest.fail("Python 3.12 is here but .venv-container is not: run `make container`")
        pytest.skip("no Python 3.12 on this machine: the container's interpreter is absent")
    probe = subprocess.run(
        [str(python), "-c", VERSIONS_PROBE], capture_output=True, text=True, check=True
    )
    assert json.loads(probe.stdout) == CONTAINER_VERSIONS
    return python


def source_tarball(kit: Synthesized) -> Path:
    """The Training/Source asset exactly as ``cdk deploy`` would upload it."""
    assets = json.loads((kit.outdir / f"{kit.kit.config.stack_name('Pipeline')}.assets.json")
                        .read_text())  # fmt: skip
    (path,) = [
        kit.outdir / asset["source"]["path"]
        for asset in assets["files"].values()
        if asset.get("displayName") == "Training/Source"
    ]
    return path


def prepared_hyperparameters(kit: Synthesized, run_input: dict[str, Any]) -> dict[str, str]:
    """What CreateTrainingJob receives: Prepare's output, evaluated by the JSONata engine."""
    output = definition(kit)["States"][wf.PREPARE]["Output"]
    hyperparameters: dict[str, str] = evaluate(output, input=run_input)["prepared"][
        "hyperparameters"
    ]
    return hyperparameters


def write_config(root: Path, hyperparameters: dict[str, str]) -> None:
    """input/config as SageMaker writes it for a one-instance job with a train channel."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    channels = {"train": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}}
    hosts = {"current_host": "localhost", "hosts": ["localhost"]}
    for name, content in (("hyperparameters", hyperparameters), ("inputdataconfig", channels),
                          ("resourceconfig", hosts)):  # fmt: skip
        (config / f"{name}.json").write_text(json.dumps(content))


def job_tree(root: Path, hyperparameters: dict[str, str], tarball: Path, data: Path) -> Path:
    """/opt/ml as SageMaker lays it out, the submit directory pointing at a local tarball."""
    write_config(root, {**hyperparameters, "sagemaker_submit_directory": str(tarball)})
    channel = root / "input" / "data" / "train"
    channel.mkdir(parents=True)
    shutil.copy(data, channel / data.name)
    return root


def toolkit_environment(root: Path) -> dict[str, str]:
    """The container's environment: no SM_* of ours, the toolkit rooted at ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "VIRTUAL_ENV"))}
    env.update({
        "SAGEMAKER_BASE_DIR": str(root),
        "SAGEMAKER_TRAINING_MODULE": "sklearn_container_training:main",
        "PYTHONPATH": str(TWIN),
        "ORT_DISABLE_TELEMETRY": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    })  # fmt: skip
    return env


def run_container(python: Path, root: Path) -> subprocess.CompletedProcess[str]:
    """The image's entry point: ``train`` (``sagemaker_training.cli.train:main``)."""
    return subprocess.run(
        [str(python), "-c", "from sagemaker_training.cli.train import main; main()"],
        env=toolkit_environment(root), cwd=root, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip


def test_the_uploaded_tarball_holds_the_script_at_its_root(dev: Synthesized) -> None:
    with tarfile.open(source_tarball(dev)) as archive:
        names = archive.getnames()
    assert {"train.py", "requirements.txt"} <= set(names)
    assert any(name.startswith("onnxkit/contract/") for name in names)


def test_the_toolkit_builds_the_arguments_the_local_runner_builds(
    container_python: Path, tmp_path: Path
) -> None:
    # Values as Step Functions passes them (strings); the toolkit JSON-decodes each one.
    hyperparameters = {
        "target": "1.50", "flag": "true", "quoted": '"x"', "empty": "null", "n": "7",
        "listed": "[1, 2]", "mapped": '{"b": 1, "a": "y"}', "plain": "a,b", "nan": "NaN",
        "missing_values": "", "sagemaker_program": "train.py",
    }  # fmt: skip
    write_config(tmp_path, hyperparameters)
    probe = (
        "import json; from sagemaker_training import environment; e = environment.Environment();"
        "v = e.to_env_vars(); print(json.dumps({'args': e.to_cmd_args(), 'hps': v['SM_HPS'],"
        "'env': {k: v[k] for k in v if k.startswith('SM_HP_')}}))"
    )
    toolkit = subprocess.run(
        [str(container_python), "-c", probe], env=toolkit_environment(tmp_path), cwd=tmp_path,
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    seen = json.loads(toolkit.stdout)
    assert seen["args"] == arguments(hyperparameters)
    assert seen["args"][seen["args"].index("--target") + 1] == "1.5"
    decoded = decode_hyperparameters(hyperparameters)
    assert json.loads(seen["hps"], parse_constant=lambda c: c) == json.loads(
        json.dumps(decoded, allow_nan=True), parse_constant=lambda c: c
    )
    assert sorted(seen["env"]) == sorted(f"SM_HP_{key.upper()}" for key in decoded)


def test_a_pipeline_run_trains_through_the_toolkit(
    dev: Synthesized, container_python: Path, tmp_path: Path
) -> None:
    churn = bundled("customer_churn")
    run_input = {"train_s3_uri": "s3://b/data/train/",
                 "hyperparameters": {"target": churn.target, "model": "mlp", "max_iter": 60,
                                     "missing_values": "NA,null"}}  # fmt: skip
    hyperparameters = prepared_hyperparameters(dev, run_input)
    root = job_tree(tmp_path / "ml", hyperparameters, source_tarball(dev), churn.path)

    job = run_container(container_python, root)

    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert (root / "output" / "success").exists()
    assert not (root / "output" / "failure").exists()
    manifest = load_manifest(root / "model")
    assert manifest.library_versions["scikit-learn"] == CONTAINER_VERSIONS["sklearn"]
    assert manifest.signature.missing_values == ["NA", "null"]
    assert manifest.hyperparameters["max_iter"] == 60
    # The learning curve came out while the MLP fitted, through the toolkit's output, whole
    # lines that the MetricDefinitions' regexes read as the console will.
    curve = parse_curve(job.stdout)
    iterations = [iteration for iteration, _ in curve["train_loss"]]
    assert iterations == list(range(1, len(iterations) + 1)) and len(iterations) >= 2
    assert [iteration for iteration, _ in curve["validation_score"]] == iterations
    scraped = parse_metric_lines(job.stdout)
    assert scraped["curve:train_loss"] == curve["train_loss"][-1][1]
    # The artifact serves in this (the serving side's) onnxruntime.
    frame = pd.read_csv(churn.path).drop(columns=[churn.target]).head(50)
    session = ort.InferenceSession(str(root / "model" / SERVING_FILE))
    labels, probabilities = session.run(None, feeds(root / "model", frame))
    assert len(labels) == 50 and set(map(str, labels)) <= set(map(str, manifest.classes or []))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_a_failed_job_reports_train_pys_one_line(
    dev: Synthesized, container_python: Path, tmp_path: Path
) -> None:
    # A label column named 1.50 arrives as 1.5 in the cloud, and so it does locally.
    run_input = {"train_s3_uri": "s3://b/t/", "hyperparameters": {"target": "1.50"}}
    hyperparameters = prepared_hyperparameters(dev, run_input)
    root = job_tree(tmp_path / "ml", hyperparameters, source_tarball(dev),
                    bundled("iris").path)  # fmt: skip

    job = run_container(container_python, root)

    assert job.returncode != 0
    failure = (root / "output" / "failure").read_text()
    # train.py's own line is SageMaker's FailureReason, not the toolkit's wrapped traceback.
    assert failure.startswith("target column '1.5' not found;") and failure.count("\n") == 1
    assert "Traceback" not in job.stderr.split("ExecuteUserScriptError")[0]
