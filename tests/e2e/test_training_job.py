"""training_jobs/train.py run as SageMaker runs it: a subprocess with the SM_* environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest

from onnxkit.contract.manifest import FP32_FILE, SERVING_FILE, load_manifest, sha256_file
from onnxkit.contract.metrics import parse_metric_lines
from onnxkit.datasets import bundled

TRAIN = Path(__file__).resolve().parents[2] / "training_jobs" / "train.py"
QUANTIZED_OPS = {"MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"}


@dataclass
class Job:
    """The finished process and its /opt/ml-like tree."""

    returncode: int
    stdout: str
    stderr: str
    root: Path

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def failure(self) -> Path:
        return self.root / "output" / "failure"


def run_job(
    root: Path, *hyperparameters: str, train: Path | None, validation: Path | None = None
) -> Job:
    """Run train.py with SageMaker's environment contract rooted at ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update(
        {
            "SM_MODEL_DIR": str(root / "model"),
            "SM_OUTPUT_DIR": str(root / "output"),
            "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
            "ORT_DISABLE_TELEMETRY": "1",
        }
    )
    if train is not None:
        env["SM_CHANNEL_TRAIN"] = str(train)
    if validation is not None:
        env["SM_CHANNEL_VALIDATION"] = str(validation)
    result = subprocess.run(
        [sys.executable, str(TRAIN), "--latency_runs", "20", *hyperparameters],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Job(result.returncode, result.stdout, result.stderr, root)


def channel(root: Path, name: str, *files: tuple[str, str]) -> Path:
    """A channel directory holding the given (file name, CSV text) pairs."""
    directory = root / "input" / "data" / name
    directory.mkdir(parents=True)
    for file_name, text in files:
        (directory / file_name).write_text(text)
    return directory


def bundled_channel(root: Path, dataset: str) -> Path:
    directory = root / "input" / "data" / "train"
    directory.mkdir(parents=True)
    shutil.copy(bundled(dataset).path, directory / "part-0000.csv")
    return directory


def feeds(manifest_dir: Path, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """ONNX feeds built only from the manifest (as the inference function does)."""
    manifest = load_manifest(manifest_dir)
    built = {}
    for feature in manifest.signature.features:
        column = rows[feature.name]
        if feature.kind == "numeric":
            built[feature.onnx_input] = column.to_numpy(np.float32).reshape(-1, 1)
        else:
            built[feature.onnx_input] = (
                column.fillna("").astype(str).to_numpy(object).reshape(-1, 1)
            )
    return built


CASES = [
    ("customer_churn", "logistic_regression", "classification"),
    ("customer_churn", "mlp", "classification"),
    ("customer_churn", "random_forest", "classification"),
    ("customer_churn", "hist_gradient_boosting", "classification"),
    ("iris", "mlp", "classification"),
    ("diabetes", "ridge", "regression"),
    ("diabetes", "mlp", "regression"),
    ("diabetes", "random_forest", "regression"),
    ("diabetes", "hist_gradient_boosting", "regression"),
]


@pytest.mark.parametrize(("dataset", "model", "task"), CASES)
def test_every_estimator_writes_a_valid_served_artifact(
    tmp_path: Path, dataset: str, model: str, task: str
) -> None:
    data = bundled(dataset)
    job = run_job(
        tmp_path,
        "--target",
        data.target,
        "--model",
        model,
        "--n_estimators",
        "30",
        train=bundled_channel(tmp_path, dataset),
    )
    assert job.returncode == 0, job.stderr
    assert not job.failure.exists()
    manifest = load_manifest(job.model_dir)
    assert (manifest.task, manifest.estimator) == (task, model)
    serving = job.model_dir / SERVING_FILE
    assert sha256_file(serving) == manifest.serving.sha256 == manifest.files[SERVING_FILE].sha256
    assert serving.stat().st_size == manifest.serving.size_bytes

    # The metric lines SageMaker scrapes carry every variant's metrics, to the printed precision.
    scraped = parse_metric_lines(job.stdout)
    for variant, report in manifest.variants.items():
        for name, value in report.metrics.items():
            assert scraped[f"{variant}:{name}"] == pytest.approx(value, rel=1e-5, abs=1e-9)

    # Never a file called int8 that is not: the decision matches the graph's operators.
    ops = {node.op_type for node in onnx.load(serving).graph.node}
    if manifest.serving.variant == "int8":
        assert ops & QUANTIZED_OPS
        assert manifest.quantization.quantized_operators
        assert (job.model_dir / FP32_FILE).exists()
        assert manifest.files[FP32_FILE].size_bytes > manifest.serving.size_bytes
    else:
        assert not ops & QUANTIZED_OPS
        assert not (job.model_dir / FP32_FILE).exists()
    if model in {"random_forest", "hist_gradient_boosting", "logistic_regression", "ridge"}:
        assert manifest.serving.variant == "fp32"
        assert "no quantizable operators" in manifest.quantization.reason

    # The served graph reproduces the manifest's metrics on the held-out rows it reports.
    fp32 = manifest.variants["fp32"]
    assert fp32.parity is not None and fp32.parity.rows == manifest.data.validation_rows
    if task == "classification":
        assert fp32.parity.label_agreement is not None and fp32.parity.label_agreement >= 0.99
        assert manifest.classes is not None and len(manifest.classes) >= 2
    frame = pd.read_csv(data.path)
    session = ort.InferenceSession(str(serving), providers=["CPUExecutionProvider"])
    outputs = session.run(None, feeds(job.model_dir, frame.head(25)))
    assert len(outputs[0]) == 25
    if task == "classification":
        np.testing.assert_allclose(outputs[1].sum(axis=1), 1.0, atol=1e-4)
        assert set(map(str, outputs[0])) <= set(map(str, manifest.classes or []))


def test_categorical_and_missing_values_are_described_in_the_signature(tmp_path: Path) -> None:
    job = run_job(
        tmp_path,
        "--target",
        "churned",
        "--model",
        "logistic_regression",
        train=bundled_channel(tmp_path, "customer_churn"),
    )
    assert job.returncode == 0, job.stderr
    manifest = load_manifest(job.model_dir)
    features = {f.name: f for f in manifest.signature.features}
    assert list(features) == [
        c for c in pd.read_csv(bundled("customer_churn").path).columns if c != "churned"
    ]
    assert features["plan"].kind == "categorical" and features["plan"].dtype == "string"
    assert features["plan"].categories == ["basic", "premium", "standard"]
    assert features["age"].kind == "numeric" and features["age"].nullable
    assert manifest.classes == ["no", "yes"]
    # Missing numbers (NaN) and categories ('', or never seen) are scored, not rejected.
    row = pd.DataFrame(
        [
            {
                "tenure_months": np.nan,
                "monthly_charges": 50.0,
                "plan": "gold",
                "region": None,
                "support_calls": 2.0,
                "payment_method": "",
                "age": np.nan,
            }
        ]
    )
    session = ort.InferenceSession(str(job.model_dir / SERVING_FILE))
    label, probabilities = session.run(None, feeds(job.model_dir, row))
    assert label[0] in {"no", "yes"} and probabilities.shape == (1, 2)


def test_validation_channel_and_several_train_files(tmp_path: Path) -> None:
    lines = bundled("breast_cancer").path.read_text().splitlines()
    header, body = lines[0], lines[1:]
    train = channel(
        tmp_path,
        "train",
        ("a.csv", "\n".join([header, *body[:250]]) + "\n"),
        ("b.csv", "\n".join([header, *body[250:450]]) + "\n"),
    )
    validation = channel(tmp_path, "validation", ("v.csv", "\n".join([header, *body[450:]])))
    job = run_job(
        tmp_path, "--target", "target", "--model", "mlp", train=train, validation=validation
    )
    assert job.returncode == 0, job.stderr
    manifest = load_manifest(job.model_dir)
    assert manifest.data.validation_source == "channel"
    assert (manifest.data.train_rows, manifest.data.validation_rows) == (450, len(body) - 450)
    assert set(manifest.data.files) == {"train/a.csv", "train/b.csv", "validation/v.csv"}
    assert manifest.classes == [0, 1]


CSV_OK = "x,colour,y\n" + "".join(
    f"{i}.5,{'red' if i % 2 else 'blue'},{'a' if i % 2 else 'b'}\n" for i in range(1, 21)
)


@pytest.mark.parametrize(
    ("files", "hyperparameters", "expected"),
    [
        (None, ["--target", "y"], "no train channel"),
        ([], ["--target", "y"], "has no CSV files"),
        ([("notes.txt", "hello")], ["--target", "y"], "has no CSV files"),
        ([("a.csv", "")], ["--target", "y"], "is empty"),
        ([("a.csv", "x,y\n")], ["--target", "y"], "has a header but no rows"),
        ([("a.csv", CSV_OK)], ["--target", "label"], "target column 'label' not found"),
        ([("a.csv", "x,y\n1,a\n2,a\n3,a\n")], ["--target", "y"], "single class"),
        ([("a.csv", CSV_OK)], ["--target", "y", "--model", "xgboost"], "invalid choice: 'xgboost'"),
        ([("a.csv", CSV_OK)], ["--target", "y", "--task", "ranking"], "invalid choice: 'ranking'"),
        (
            [("a.csv", CSV_OK.replace("3.5,", "3.5kg,"))],
            ["--target", "y"],
            "column 'x' row 4: '3.5kg' is not a number",
        ),
        (
            [("a.csv", CSV_OK.replace("4.5,blue,b", "4.5,blue,"))],
            ["--target", "y"],
            "target column 'y' has missing values (first at row 5)",
        ),
        (
            [("a.csv", CSV_OK)],
            ["--target", "y", "--n_estimators", "many"],
            "argument --n-estimators/--n_estimators: invalid _positive_int value: 'many'",
        ),
        ([("a.csv", CSV_OK)], ["--target", "y", "--model", "ridge"], "ridge is for regression"),
        ([("a.csv", CSV_OK), ("b.csv", "x,z,y\n1,2,3\n")], ["--target", "y"], "has columns"),
        (
            [("a.csv", "x,colour\n1,red\n2,blue\n")],
            ["--target", "colour", "--task", "regression"],
            "regression target 'colour' has a non-numeric value 'red'",
        ),
    ],
    ids=[
        "no-channel",
        "empty-channel",
        "no-csv",
        "empty-file",
        "header-only",
        "no-target",
        "single-class",
        "unknown-model",
        "unknown-task",
        "unparseable-number",
        "missing-target",
        "wrong-type",
        "model-task-mismatch",
        "mismatched-headers",
        "non-numeric-regression",
    ],
)
def test_bad_input_fails_with_one_readable_line(
    tmp_path: Path, files: list[tuple[str, str]] | None, hyperparameters: list[str], expected: str
) -> None:
    train = None if files is None else channel(tmp_path, "train", *files)
    job = run_job(tmp_path, *hyperparameters, train=train)
    assert job.returncode == 1
    assert "Traceback" not in job.stderr
    lines = job.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), job.stderr
    assert expected in lines[0]
    # SageMaker shows this file as the training job's FailureReason.
    assert job.failure.read_text().strip() == lines[0].removeprefix("error: ")
    assert not (job.model_dir / SERVING_FILE).exists()
