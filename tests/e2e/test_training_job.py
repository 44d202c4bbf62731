"""training_jobs/train.py run as SageMaker runs it: a subprocess with the SM_* environment."""

from __future__ import annotations

import csv
import importlib.resources
import io
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

from functions.inference.decode import rows_from_csv
from functions.inference.feed import build_feed
from functions.inference.manifest import read_serving_manifest
from onnxkit.contract.layout import FP32_FILE, SERVING_FILE, sha256_file
from onnxkit.contract.manifest import load_manifest
from onnxkit.contract.metrics import parse_curve, parse_metric_lines
from onnxkit.contract.values import DEFAULT_MISSING_TOKENS
from onnxkit.datasets import bundled
from training_jobs.estimators import MODELS

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


def score_file(model_dir: Path, text: str, target: str) -> list[np.ndarray]:
    """A training file's rows (target dropped) scored as the API scores a text/csv body."""
    records = list(csv.reader(io.StringIO(text)))
    keep = [i for i, name in enumerate(records[0]) if name != target]
    body = io.StringIO()
    csv.writer(body, lineterminator="\n").writerows([[r[i] for i in keep] for r in records])
    served = read_serving_manifest(model_dir / "manifest.json")
    rows = rows_from_csv(body.getvalue(), served.features)
    assert len(rows) == len(records) - 1
    session = ort.InferenceSession(str(model_dir / SERVING_FILE))
    return session.run(served.output_names, build_feed(rows, served.features))


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
    # Each estimator's own iteration setting (others would be refused).
    fast = {
        "random_forest": ["--n_estimators", "30"],
        "hist_gradient_boosting": ["--max_iter", "30"],
    }
    job = run_job(
        tmp_path,
        "--target",
        data.target,
        "--model",
        model,
        *fast.get(model, []),
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

    # The learning curve was printed while the MLP fitted: one loss and one validation score
    # per iteration, from the first on, before the metric lines (customer_churn has fewer
    # than 10,000 rows, so HistGradientBoosting's early stopping and its scores are off).
    curve = parse_curve(job.stdout)
    if model == "mlp":
        losses = [iteration for iteration, _ in curve["train_loss"]]
        assert losses == list(range(1, len(losses) + 1)) and len(losses) >= 2
        assert [i for i, _ in curve["validation_score"]] == losses
        assert job.stdout.index("[curve] ") < job.stdout.index("[metric] ")
        assert scraped["curve:train_loss"] == curve["train_loss"][-1][1]
    else:
        assert curve == {}

    # Never a file called int8 that is not: the decision matches the graph's operators.
    graph = onnx.load(serving).graph
    ops = {node.op_type for node in graph.node}
    int8_weights = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    if manifest.serving.variant == "int8":
        # Weight-only int8: int8 initializers restored by Cast+Mul (or a QDQ fallback).
        assert int8_weights or ops & QUANTIZED_OPS
        assert manifest.quantization.quantized_operators
        assert (job.model_dir / FP32_FILE).exists()
        assert manifest.files[FP32_FILE].size_bytes > manifest.serving.size_bytes
    else:
        assert not ops & QUANTIZED_OPS and not int8_weights
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
    # Hashed while being read: each digest is its own file's.
    for label, digest in manifest.data.files.items():
        assert digest == sha256_file(tmp_path / "input" / "data" / label), label
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
            [("a.csv", CSV_OK.replace("\n3.5,", "\n3.5kg,"))],
            ["--target", "y"],
            "column 'x' row 4: '3.5kg' is not a number",
        ),
        (
            [("a.csv", CSV_OK.replace("\n4.5,blue,b", "\n4.5,blue,"))],
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
        (
            [("a.csv", CSV_OK.replace("x,colour,y", "x,x,y"))],
            ["--target", "y"],
            "train file a.csv: column name 'x' appears 2 times in the header",
        ),
        (
            [("a.csv", CSV_OK.replace("\n3.5,", "\ninf,"))],
            ["--target", "y"],
            "column 'x' row 4: 'inf' is not a number",
        ),
        (
            [("a.csv", CSV_OK.replace("\n3.5,", "\n1e400,"))],
            ["--target", "y"],
            "column 'x' row 4: '1e400': number must be finite",
        ),
        (
            [("a.csv", CSV_OK.replace("\n3.5,", "\n-4e38,"))],
            ["--target", "y"],
            "column 'x' row 4: '-4e38': number out of range",
        ),
        (
            [("a.csv", CSV_OK.replace("\n3.5,", "\nNA,"))],
            ["--target", "y", "--missing_values", ""],
            "column 'x' row 4: 'NA' is not a number (add 'NA' to missing_values",
        ),
        (
            [("a.csv", CSV_OK.replace("\n3.5,", "\n-999,"))],
            ["--target", "y", "--missing_values", "NA,-999"],
            "bad hyperparameter: missing_values token '-999' is a number",
        ),
        (
            [("a.csv", CSV_OK)],
            ["--target", "y", "--model", "hist_gradient_boosting", "--n_estimators", "50"],
            "hist_gradient_boosting does not take n_estimators (it takes learning_rate, "
            "max_depth, max_iter)",
        ),
        (
            [("a.csv", CSV_OK)],
            ["--target", "1.5"],
            "target column '1.5' not found",
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
        "duplicate-column",
        "inf-cell",
        "beyond-float64",
        "beyond-float32",
        "na-without-tokens",
        "number-token",
        "foreign-setting",
        "target-not-found",
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


def penguins_channel(root: Path) -> Path:
    """The palmerpenguins package's table: R's CSV, NA in numeric and categorical columns."""
    source = importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"
    text = source.read_text()
    assert ",NA," in text  # the property this test needs from the public table
    return channel(root, "train", ("penguins.csv", text))


def test_a_public_table_with_na_in_numeric_columns_trains(tmp_path: Path) -> None:
    job = run_job(
        tmp_path,
        "--target",
        "species",
        "--model",
        "hist_gradient_boosting",
        train=penguins_channel(tmp_path),
    )
    assert job.returncode == 0, job.stderr
    manifest = load_manifest(job.model_dir)
    assert manifest.signature.missing_values == list(DEFAULT_MISSING_TOKENS)
    kinds = {f.name: f.kind for f in manifest.signature.features}
    assert kinds["bill_length_mm"] == kinds["body_mass_g"] == "numeric"
    assert kinds["sex"] == "categorical"
    sex = next(f for f in manifest.signature.features if f.name == "sex")
    assert sex.categories == ["female", "male"]  # 'NA' is missing, not a category
    # The job log and the manifest say so.
    assert manifest.data.warnings == ["sex: 11 cells 'NA' read as missing"]
    assert "warning: sex: 11 cells 'NA' read as missing" in job.stdout
    assert manifest.classes == ["Adelie", "Chinstrap", "Gentoo"]
    # Its own file scores, and a row carrying 'NA' scores exactly as the row with the cell empty.
    text = (tmp_path / "input" / "data" / "train" / "penguins.csv").read_text()
    records = list(csv.reader(io.StringIO(text)))
    sex = records[0].index("sex")
    tokens = [i for i, record in enumerate(records[1:]) if record[sex] == "NA"]
    assert len(tokens) == 11
    blanked = [[*r[:sex], "" if r[sex] == "NA" else r[sex], *r[sex + 1 :]] for r in records]
    body = io.StringIO()
    csv.writer(body, lineterminator="\n").writerows(blanked)
    labels, probabilities = score_file(job.model_dir, text, "species")
    blank_labels, blank_probabilities = score_file(job.model_dir, body.getvalue(), "species")
    assert np.array_equal(probabilities, blank_probabilities)
    assert np.array_equal(labels, blank_labels)
    species = [record[0] for record in records[1:]]
    assert np.mean(labels.astype(str) == np.array(species)) >= 0.95


def test_with_missing_values_empty_a_category_named_na_is_kept(tmp_path: Path) -> None:
    rows = [("NA", 1.0, "yes"), ("EU", -1.0, "no"), ("APAC", 0.0, "no")] * 20
    text = "region,x,y\n" + "".join(
        f"{r},{x + i % 3 * 0.1},{y}\n" for i, (r, x, y) in enumerate(rows)
    )
    train = channel(tmp_path, "train", ("a.csv", text))
    job = run_job(
        tmp_path, "--target", "y", "--model", "logistic_regression", "--missing_values", "",
        train=train,
    )  # fmt: skip
    assert job.returncode == 0, job.stderr
    manifest = load_manifest(job.model_dir)
    assert manifest.signature.missing_values == []
    region = next(f for f in manifest.signature.features if f.name == "region")
    assert region.categories == ["APAC", "EU", "NA"]
    assert manifest.data.warnings == []
    # 'NA' is scored as the category it was trained as, not as a missing value.
    session = ort.InferenceSession(str(job.model_dir / SERVING_FILE))
    sample = pd.DataFrame({"region": ["NA", "", "EU"], "x": [0.0, 0.0, 0.0]})
    _, probabilities = session.run(None, feeds(job.model_dir, sample))
    assert abs(probabilities[0, 1] - probabilities[1, 1]) > 0.05


def levels_csv(levels: int, regression: bool, rows: int = 300) -> str:
    """x (numeric) and a categorical of ``levels`` levels; the target y depends on both."""
    rng = np.random.default_rng(levels)
    level = np.arange(rows) % levels
    x = rng.normal(size=rows)
    score = x + (level % 3 - 1) * 2.0
    labels = (
        [f"{c:.5f}" for c in score] if regression else ["yes" if c > 0 else "no" for c in score]
    )
    return "x,level,y\n" + "".join(
        f"{a:.4f},L{b:02d},{c}\n" for a, b, c in zip(x, level, labels, strict=True)
    )


@pytest.mark.parametrize(
    ("model", "levels"),
    [*((model, 30) for model in MODELS), ("hist_gradient_boosting", 7)],
)
def test_every_estimator_trains_on_a_many_level_categorical_and_scores_its_file(
    tmp_path: Path, model: str, levels: int
) -> None:
    # The reproduction: 1 numeric + 1 categorical of 7+ levels made the one-hot block
    # sparse, which HistGradientBoosting refused with a traceback ("Sparse data was passed").
    task = "regression" if model == "ridge" else "classification"
    text = levels_csv(levels, regression=task == "regression")
    fast = {
        "random_forest": ["--n_estimators", "30"],
        "hist_gradient_boosting": ["--max_iter", "30"],
    }
    job = run_job(
        tmp_path, "--target", "y", "--model", model, *fast.get(model, []),
        train=channel(tmp_path, "train", ("a.csv", text)),
    )  # fmt: skip
    assert job.returncode == 0, job.stderr
    assert "Traceback" not in job.stderr
    manifest = load_manifest(job.model_dir)
    assert manifest.task == task
    level = next(f for f in manifest.signature.features if f.name == "level")
    assert level.kind == "categorical" and level.categories is not None
    assert len(level.categories) == levels
    fp32 = manifest.variants["fp32"]
    assert fp32.parity is not None
    if task == "classification":
        assert fp32.parity.label_agreement == 1.0
    # The served model scores every row of its own training file, as the API reads it.
    outputs = score_file(job.model_dir, text, "y")
    frame = pd.read_csv(io.StringIO(text))
    if task == "classification":
        assert set(map(str, outputs[0])) <= set(map(str, manifest.classes or []))
        majority = float(frame["y"].value_counts(normalize=True).max())
        accuracy = float(np.mean(outputs[0].astype(str) == frame["y"].astype(str)))
        assert accuracy >= majority + 0.05, (accuracy, majority)  # it learned from the file
    else:
        truth = frame["y"].to_numpy()
        residual = np.sum((outputs[0].ravel() - truth) ** 2)
        assert 1 - residual / np.sum((truth - truth.mean()) ** 2) >= 0.5


def test_id_like_and_thousands_separated_columns_warn_and_stay_bounded(tmp_path: Path) -> None:
    rows = 3000
    text = "customer_id,revenue,plan,y\n" + "".join(
        f'C{i:06d},"{1000 + i * 7:,}",{"abc"[i % 3]},{"yes" if i % 3 else "no"}\n'
        for i in range(rows)
    )
    job = run_job(
        tmp_path, "--target", "y", "--model", "logistic_regression", "--max_categories", "20",
        train=channel(tmp_path, "train", ("a.csv", text)),
    )  # fmt: skip
    assert job.returncode == 0, job.stderr
    manifest = load_manifest(job.model_dir)
    warnings = "\n".join(manifest.data.warnings)
    assert "revenue: numbers with thousands separators (like '1,000')" in warnings
    assert "customer_id: every one of its 2400 values is different" in warnings
    assert "customer_id: 2400 categories; the 20 most frequent" in warnings
    for warning in manifest.data.warnings:
        assert f"warning: {warning}" in job.stdout
    features = {f.name: f for f in manifest.signature.features}
    assert features["customer_id"].categories is not None
    assert len(features["customer_id"].categories) == 20
    assert features["plan"].categories == ["a", "b", "c"]
    assert (job.model_dir / "manifest.json").stat().st_size < 20_000
