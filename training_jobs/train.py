"""SageMaker script-mode training job: CSV -> scikit-learn Pipeline -> ONNX -> int8 -> artifact.

Runs unchanged in SageMaker's prebuilt scikit-learn container and on a laptop. It reads the
train (and optional validation) channel, fits one Pipeline (imputation, scaling, one-hot and
the estimator) so the ONNX graph is the whole model, converts it with skl2onnx, quantizes it
with onnxruntime, checks parity of scikit-learn vs ONNX fp32 vs ONNX int8 on held-out rows,
and writes ``model.onnx`` plus a validated ``manifest.json`` into ``SM_MODEL_DIR``.

Bad input ends the job with exit code 1, one readable line on stderr and the same line in
``$SM_OUTPUT_DIR/failure`` (SageMaker's FailureReason).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import re
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, cast

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import msgspec
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import skl2onnx
import sklearn
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from onnxkit.contract.layout import FP32_FILE, SERVING_FILE, sha256_file
from onnxkit.contract.manifest import (
    SCHEMA_VERSION,
    Baseline,
    DataFingerprint,
    Feature,
    FileInfo,
    Manifest,
    Outputs,
    Parity,
    Quantization,
    RowIndependence,
    Serving,
    Signature,
    VariantReport,
    validated,
    write_manifest,
)
from onnxkit.contract.metrics import BASELINE, metric_line
from onnxkit.contract.values import (
    DEFAULT_MISSING_TOKENS,
    FLOAT32_MAX,
    NUMBER_PATTERN,
    ValueRule,
    number_problem,
    parse_missing_tokens,
)

MODELS = ("logistic_regression", "ridge", "mlp", "random_forest", "hist_gradient_boosting")
# The estimator settings each model takes (make_estimator maps them to scikit-learn's names).
ESTIMATOR_SETTINGS: dict[str, frozenset[str]] = {
    "logistic_regression": frozenset({"c", "max_iter"}),
    "ridge": frozenset({"alpha"}),
    "mlp": frozenset({"hidden_layer_sizes", "max_iter", "learning_rate", "alpha"}),
    "random_forest": frozenset({"n_estimators", "max_depth"}),
    "hist_gradient_boosting": frozenset({"max_iter", "learning_rate", "max_depth"}),
}
ALL_ESTIMATOR_SETTINGS = (
    "n_estimators",
    "max_depth",
    "max_iter",
    "learning_rate",
    "hidden_layer_sizes",
    "alpha",
    "c",
)
# One-hot columns per categorical feature: the most frequent categories get their own, the
# rest share the all-zero "other" encoding that unseen categories get too. It bounds the
# graph, the manifest and the OpenAPI document for id-like columns.
DEFAULT_MAX_CATEGORIES = 100
TASKS = ("auto", "classification", "regression")
# "weight": int8 weights, fp32 activations (see quantize_weights); "qdq": static QDQ with
# activation ranges fixed by calibration rows. Both keep rows independent. "dynamic" (one
# activation scale per call) made a row's prediction depend on the others and is refused.
QUANTIZATION_MODES = ("auto", "weight", "qdq", "none")
# The row-independence probe: held-out rows probed, how far the extreme rows go, and the largest
# difference allowed, relative to max(1, |output|) (one float32 ulp where a kernel differs by
# batch size: measured 1.5e-5 on a ridge value of about 150).
PROBE_ROWS = 200
EXTREME_FACTOR = 100.0
ROW_BOUND = 1e-6
# Weight matrices smaller than this stay fp32: int8 saves less than its scales and nodes cost.
MIN_QUANTIZED_WEIGHTS = 64
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
# A numeric-looking target with at most this many distinct integer values is a class label.
MAX_AUTO_CLASSES = 20
# A column whose non-missing values are at least this share numbers is numeric: the rest are
# typos, reported as unparseable rather than silently turning the column categorical.
NUMERIC_SHARE = 0.9
# Operators that only exist in a quantized graph.
QUANTIZED_OPS = frozenset(
    {
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeLinear",
        "QLinearMatMul",
        "QLinearConv",
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QGemm",
        "QLinearAdd",
        "QLinearMul",
    }
)


class TrainingError(Exception):
    """A problem with the job's input, reported as one line and SageMaker's FailureReason."""


# --------------------------------------------------------------------------- arguments


def _env_path(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting 2."""

    def error(self, message: str) -> NoReturn:
        raise TrainingError(f"bad hyperparameter: {message}")


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return number


def _at_least_two(value: str) -> int:
    number = int(value)
    if number < 2:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 2, got {value}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return number


def _layers(value: str) -> tuple[int, ...]:
    # SageMaker's toolkit JSON-decodes values: a list hyperparameter arrives as "[64, 32]".
    text = value.replace(" ", "").removeprefix("[").removesuffix("]")
    try:
        sizes = tuple(int(part) for part in text.split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 64,32, got {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected sizes like 64,32, got {value!r}")
    return sizes


def _quantization(value: str) -> str:
    if value == "dynamic":
        raise argparse.ArgumentTypeError(
            "dynamic is no longer offered: its per-call activation scale makes a row's "
            "prediction depend on the other rows of the call; use auto, weight, qdq or none"
        )
    if value not in QUANTIZATION_MODES:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(QUANTIZATION_MODES)}, got {value!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """Hyperparameters (SageMaker passes each as ``--name value``) and the SM_* locations."""
    parser = _Parser(description=__doc__, allow_abbrev=False)

    def option(name: str, **kwargs: Any) -> None:
        # SageMaker users write snake_case keys, CLI users kebab-case: accept both.
        flags = {f"--{name}", f"--{name.replace('_', '-')}"}
        if len(name) == 1:
            flags.add(f"-{name}")  # SageMaker's toolkit passes a one-letter name as -c
        parser.add_argument(*sorted(flags), dest=name, **kwargs)

    option("target", required=True, help="Label column.")
    option("task", default="auto", choices=TASKS)
    option("model", default="random_forest", choices=MODELS)
    option("model_name", default="onnxkit-model")
    option("seed", type=int, default=42)
    option("validation_fraction", type=_fraction, default=0.2)
    option("categorical", default="", help="Comma-separated columns to treat as categorical.")
    option(
        "missing_values",
        default=None,
        help="Comma-separated cell texts read as missing (empty: only empty cells); "
        "absent: onnxkit.contract.values.DEFAULT_MISSING_TOKENS.",
    )
    option(
        "max_categories",
        type=_at_least_two,
        default=DEFAULT_MAX_CATEGORIES,
        help="One-hot columns per categorical feature; rarer categories share the 'other' one.",
    )
    # Estimator settings default to None ("not given"): each applies to some estimators only,
    # and one given to an estimator that does not take it is refused (see ESTIMATOR_SETTINGS).
    option("n_estimators", type=_positive_int, default=None)
    option("max_depth", type=_positive_int, default=None)
    option("max_iter", type=_positive_int, default=None)
    option("learning_rate", type=_positive_float, default=None)
    option("hidden_layer_sizes", type=_layers, default=None)
    option("alpha", type=_non_negative_float, default=None, help="L2 regularization.")
    option("c", type=_positive_float, default=None, help="Inverse regularization (logistic).")
    option("quantization", type=_quantization, default="auto")
    option("calibration_rows", type=_positive_int, default=256)
    option("min_label_agreement", type=_fraction, default=0.995)
    option("max_metric_drop", type=float, default=0.005)
    option("max_probability_drift", type=float, default=0.1)
    option("latency_runs", type=int, default=200)
    parser.add_argument("--model-dir", default=_env_path("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--train", default=_env_path("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", default=_env_path("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--output-data-dir", default=_env_path("SM_OUTPUT_DATA_DIR"))
    parser.add_argument("--output-dir", default=_env_path("SM_OUTPUT_DIR"))
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse hyperparameters; unknown ones (``sagemaker_*`` and others) are reported, not fatal."""
    args, unknown = build_parser().parse_known_args(argv)
    stray = [
        item
        for item in unknown
        if re.match(r"-{1,2}[A-Za-z]", item) and not item.startswith("--sagemaker_")
    ]
    if stray:
        print(f"ignoring unknown hyperparameters: {' '.join(stray)}", file=sys.stderr)
    if args.max_metric_drop < 0 or args.max_probability_drift < 0:
        raise TrainingError("bad hyperparameter: tolerances cannot be negative")
    _refuse_foreign_settings(args)
    try:
        args.missing_tokens = parse_missing_tokens(args.missing_values)
    except ValueError as error:
        raise TrainingError(f"bad hyperparameter: {error}") from None
    return args


def _refuse_foreign_settings(args: argparse.Namespace) -> None:
    """An estimator setting the chosen estimator does not take is an error, never ignored."""
    accepted = ESTIMATOR_SETTINGS[args.model]
    given = [name for name in ALL_ESTIMATOR_SETTINGS if getattr(args, name) is not None]
    foreign = [name for name in given if name not in accepted]
    if foreign:
        raise TrainingError(
            f"bad hyperparameter: {args.model} does not take {', '.join(foreign)} "
            f"(it takes {', '.join(sorted(accepted))})"
        )


def hyperparameters_of(args: argparse.Namespace) -> dict[str, Any]:
    """The hyperparameters as recorded in the manifest (JSON scalars)."""
    skip = {"model_dir", "train", "validation", "output_data_dir", "output_dir"}
    recorded: dict[str, Any] = {}
    for key, value in sorted(vars(args).items()):
        if key in skip:
            continue
        recorded[key] = ",".join(map(str, value)) if isinstance(value, tuple) else value
    return recorded


# --------------------------------------------------------------------------- data

# What a categorical ONNX input is fed for a missing value: the inference function feeds the
# same (functions/inference/instances.py MISSING_CATEGORY), so "" is one category of its own.
MISSING_CATEGORY = ""
# A categorical column with at least this many values, all different, is likely an identifier.
ID_LIKE_MIN_ROWS = 20
_BLANK = " \t"
# "12,345" or "1,234,567.89": a number written with thousands separators.
_THOUSANDS = r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]*)?"


@dataclass
class Dataset:
    """A table read from a channel: every cell as its text, verbatim, and the file digests."""

    frame: pd.DataFrame
    files: dict[str, str]  # relative file name -> sha256


def _read_csv_text(path: Path, name: str, label: str) -> pd.DataFrame:
    """One CSV file, header and cells as text; the header row is read here, not by pandas.

    No NA handling by pandas (the contract's rule decides what is missing), no stripping
    (a category is its text verbatim), and no renaming of duplicate names to ``x.1``.
    """
    try:
        raw = pd.read_csv(
            path, dtype=str, header=None, keep_default_na=False, na_filter=False, encoding="utf-8"
        )
    except pd.errors.EmptyDataError:
        raise TrainingError(f"{name} file {label} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[-1]
        raise TrainingError(f"{name} file {label} is not a readable CSV: {reason}") from None
    header = [str(cell) for cell in raw.iloc[0]]
    for column, count in Counter(header).items():
        if count > 1:
            raise TrainingError(
                f"{name} file {label}: column name {column!r} appears {count} times in the "
                "header; column names must be unique"
            )
    if any(not column.strip(_BLANK) for column in header):
        raise TrainingError(f"{name} file {label} needs a header row with non-empty names")
    frame = raw.iloc[1:].reset_index(drop=True)
    frame.columns = pd.Index(header, dtype=object)
    return frame.fillna("")


def read_channel(channel: str | None, name: str) -> Dataset:
    """Concatenate every CSV file of a channel directory (recursively, sorted by name)."""
    if not channel:
        raise TrainingError(f"no {name} channel: set SM_CHANNEL_{name.upper()} or --{name}")
    root = Path(channel)
    if not root.exists():
        raise TrainingError(f"{name} channel {root} does not exist")
    paths = (
        [root]
        if root.is_file()
        else sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in {".csv", ".gz"} and not p.name.startswith(".")
        )
    )
    if not paths:
        raise TrainingError(f"{name} channel {root} has no CSV files")
    frames: list[pd.DataFrame] = []
    files: dict[str, str] = {}
    header: list[str] | None = None
    sources: list[tuple[str, int, int]] = []
    for path in paths:
        label = path.name if root.is_file() else str(path.relative_to(root))
        frame = _read_csv_text(path, name, label)
        if header is None:
            header = list(frame.columns)
        elif list(frame.columns) != header:
            raise TrainingError(
                f"{name} file {label} has columns {list(frame.columns)}, "
                f"expected {header} as in the first file"
            )
        sources.append((label, sum(len(f) for f in frames), len(frame)))
        frames.append(frame)
        files[label] = sha256_file(path)
    data = pd.concat(frames, ignore_index=True)
    if data.empty:
        raise TrainingError(f"{name} channel {root} has a header but no rows")
    # Where each file's rows start, so that errors name the file and its line.
    data.attrs["sources"] = sources if len(sources) > 1 else []
    return Dataset(data, files)


def _where(frame: pd.DataFrame, index: Any) -> str:
    """``row N`` (the file's line, header = 1), with the file's name when there are several."""
    position = int(index)
    for label, start, rows in frame.attrs.get("sources", []):
        if start <= position < start + rows:
            return f"{label} row {position - start + 2}"
    return f"row {position + 2}"


@dataclass
class Schema:
    """Feature kinds and the task, inferred from the training table."""

    numeric: list[str]
    categorical: list[str]
    features: list[str]  # CSV order, target removed
    task: str
    rule: ValueRule = field(default_factory=ValueRule)
    # Categories that get a one-hot column, per categorical feature (empty: all, learned).
    categories: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _texts(column: pd.Series) -> pd.Series:
    # Frames built in code may hold NaN/None for missing; a CSV read here never does.
    return column.fillna("").astype(str)


def missing_mask(column: pd.Series, rule: ValueRule) -> pd.Series:
    """Cells the contract reads as missing (``ValueRule.is_missing``, vectorized)."""
    stripped = _texts(column).str.strip(_BLANK)
    return (stripped == "") | stripped.isin(rule.missing_tokens)


def number_mask(column: pd.Series) -> pd.Series:
    """Cells whose text is a number in the contract's grammar (range not checked)."""
    return _texts(column).str.strip(_BLANK).str.fullmatch(NUMBER_PATTERN).fillna(False)


def parse_numbers(column: pd.Series, rule: ValueRule, name: str, frame: pd.DataFrame) -> pd.Series:
    """A numeric column as ``ValueRule.number`` reads it (NaN for missing), vectorized.

    Raises TrainingError naming the first invalid cell's row, column and text.
    """
    texts = _texts(column)
    readable = ~missing_mask(texts, rule) & number_mask(texts)
    values = pd.Series(np.nan, index=texts.index, dtype=np.float64)
    # float() per cell, as ValueRule.number does (numpy's str -> float64 cast calls it).
    values[readable] = texts[readable].str.strip(_BLANK).to_numpy(dtype=object).astype(np.float64)
    bad = ~missing_mask(texts, rule) & ~readable
    out_of_range = readable & ~(values.abs() <= FLOAT32_MAX)
    problems = bad | out_of_range
    if problems.any():
        index = problems.idxmax()
        where, text = _where(frame, index), texts[index]
        if bad[index]:
            hint = _not_a_number_hint(text, rule)
            raise TrainingError(f"column {name!r} {where}: {text!r} is not a number{hint}")
        problem = number_problem(float(values[index]))
        raise TrainingError(f"column {name!r} {where}: {text!r}: {problem}")
    return values


def _not_a_number_hint(text: str, rule: ValueRule) -> str:
    stripped = text.strip(_BLANK)
    if re.fullmatch(_THOUSANDS, stripped):
        return " (remove the thousands separators, or pass categorical=... if it is a category)"
    if stripped in DEFAULT_MISSING_TOKENS and stripped not in rule.missing_tokens:
        return f" (add {stripped!r} to missing_values to read it as missing)"
    return " (pass categorical=... if it is a category)"


def _toolkit_spelling(column: str) -> str:
    """How SageMaker's training toolkit passes a hyperparameter whose value is ``column``."""
    try:
        decoded = json.loads(column)
    except ValueError:
        return column
    return "" if decoded is None else str(decoded)


def infer_schema(
    frame: pd.DataFrame,
    target: str,
    task: str,
    categorical: Sequence[str],
    rule: ValueRule | None = None,
) -> Schema:
    """Decide numeric vs categorical for each column and classification vs regression."""
    rule = rule or ValueRule()
    if target not in frame.columns:
        message = (
            f"target column {target!r} not found; columns are {', '.join(map(str, frame.columns))}"
        )
        decoded = [c for c in frame.columns if c != target and _toolkit_spelling(c) == target]
        if decoded:
            message += (
                f" (SageMaker JSON-decodes hyperparameters: {decoded[0]!r} arrives as "
                f"{target!r}; write it as {json.dumps(decoded[0])!r} to keep it)"
            )
        raise TrainingError(message)
    unknown = sorted(set(categorical) - set(frame.columns))
    if unknown:
        raise TrainingError(f"categorical columns not found: {', '.join(unknown)}")
    features = [c for c in frame.columns if c != target]
    if not features:
        raise TrainingError("the data has no feature columns besides the target")
    numeric, strings, notes = [], [], []
    for column in features:
        texts = _texts(frame[column])
        present = texts[~missing_mask(texts, rule)]
        parsed = number_mask(present)
        if column in categorical:
            strings.append(column)
        elif present.empty or parsed.all():
            numeric.append(column)
        elif parsed.mean() >= NUMERIC_SHARE:
            parse_numbers(texts, rule, column, frame)  # raises, naming the first bad cell
        else:
            strings.append(column)
            thousands = present.str.strip(_BLANK).str.fullmatch(_THOUSANDS)
            if thousands.any() and (parsed | thousands).mean() >= NUMERIC_SHARE:
                example = present[thousands].iloc[0]
                notes.append(
                    f"{column}: numbers with thousands separators (like {example!r}) read as "
                    "categories; remove the separators to read them as numbers"
                )
    for column in strings:
        notes.extend(_category_notes(column, _texts(frame[column]), rule))
    labels = _texts(frame[target])
    missing = missing_mask(labels, rule)
    if missing.any():
        index = missing.idxmax()
        token = labels[index].strip(_BLANK)
        hint = (
            f" ({token!r} is a missing-value token; set missing_values to change that)"
            if token
            else ""
        )
        raise TrainingError(
            f"target column {target!r} has missing values (first at {_where(frame, index)})" + hint
        )
    numbers = number_mask(labels)
    if task == "auto":
        if not numbers.all():
            task = "classification"
        else:
            values = labels.str.strip(_BLANK).to_numpy(dtype=object).astype(np.float64)
            integral = bool(np.all(values == np.round(values)))
            few = len(np.unique(values)) <= MAX_AUTO_CLASSES
            task = "classification" if integral and few else "regression"
    if task == "regression" and not numbers.all():
        bad = labels[~numbers].iloc[0]
        raise TrainingError(f"regression target {target!r} has a non-numeric value {bad!r}")
    for note in notes:
        print(f"warning: {note}", flush=True)
    return Schema(numeric, strings, features, task, rule=rule, warnings=notes)


def _category_notes(column: str, texts: pd.Series, rule: ValueRule) -> list[str]:
    """What the log and manifest say about a categorical column: tokens read as missing."""
    stripped = texts.str.strip(_BLANK)
    tokens = stripped[stripped.isin(rule.missing_tokens)]
    return [
        f"{column}: {count} cells {token!r} read as missing"
        for token, count in sorted(Counter(tokens.tolist()).items())
    ]


def choose_categories(X: pd.DataFrame, schema: Schema, max_categories: int) -> None:
    """Pick each categorical feature's one-hot categories (the most frequent ones).

    skl2onnx cannot convert OneHotEncoder's own infrequent-category bucket, so the bucket is
    made here: categories beyond ``max_categories`` get no column and encode as all zeros,
    as an unseen category does. Warnings go to the log and the manifest.
    """
    for column in schema.categorical:
        counts = X[column].value_counts(sort=False)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        present = int(counts.drop(MISSING_CATEGORY, errors="ignore").sum())
        distinct = len(counts.drop(MISSING_CATEGORY, errors="ignore"))
        notes = []
        if distinct == present >= ID_LIKE_MIN_ROWS:
            notes.append(f"{column}: every one of its {present} values is different (an id?)")
        kept = ranked[:max_categories]
        if len(ranked) > max_categories:
            rest = sum(n for _, n in ranked[max_categories:])
            notes.append(
                f"{column}: {len(ranked)} categories; the {max_categories} most frequent are "
                f"one-hot encoded and the other {len(ranked) - max_categories} ({rest} rows) "
                "share the 'other' encoding (max_categories)"
            )
        for note in notes:
            print(f"warning: {note}", flush=True)
        schema.warnings.extend(notes)
        schema.categories[column] = sorted(str(value) for value, _ in kept)


def prepare(frame: pd.DataFrame, schema: Schema, target: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Features typed as the ONNX graph takes them (float32 with NaN, strings with '') and y."""
    X = pd.DataFrame(index=frame.index)
    for column in schema.features:
        if column in schema.numeric:
            X[column] = parse_numbers(frame[column], schema.rule, column, frame).astype(np.float32)
        else:
            texts = _texts(frame[column])
            X[column] = texts.where(~missing_mask(texts, schema.rule), MISSING_CATEGORY)
    labels = _texts(frame[target]).str.strip(_BLANK)
    if schema.task == "regression":
        return X, parse_numbers(labels, schema.rule, target, frame).to_numpy(dtype=np.float64)
    if number_mask(labels).all():
        values = labels.to_numpy(dtype=object).astype(np.float64)
        if np.all(values == np.round(values)):
            return X, values.astype(np.int64)
    return X, labels.to_numpy(dtype=object).astype(str)


# --------------------------------------------------------------------------- model


def make_estimator(task: str, model: str, args: argparse.Namespace) -> Any:
    """The estimator a hyperparameter names, as classifier or regressor by task.

    Only the settings in ``ESTIMATOR_SETTINGS[model]`` are read (parse_args refuses others);
    a setting not given takes scikit-learn's default, except where noted.
    """
    seed = args.seed

    def given(name: str, default: Any) -> Any:
        value = getattr(args, name)
        return default if value is None else value

    if model == "logistic_regression":
        if task != "classification":
            raise TrainingError("logistic_regression is for classification; use ridge")
        # 1000 iterations rather than 100: lbfgs rarely converges in 100 on unscaled one-hots.
        return LogisticRegression(C=given("c", 1.0), max_iter=given("max_iter", 1000))
    if model == "ridge":
        if task != "regression":
            raise TrainingError("ridge is for regression; use logistic_regression")
        return Ridge(alpha=given("alpha", 1.0))
    classify = task == "classification"
    if model == "mlp":
        kind = MLPClassifier if classify else MLPRegressor
        return kind(
            hidden_layer_sizes=given("hidden_layer_sizes", (64, 32)),
            max_iter=given("max_iter", 300),
            learning_rate_init=given("learning_rate", 0.001),
            alpha=given("alpha", 0.0001),
            early_stopping=True,
            random_state=seed,
        )
    if model == "random_forest":
        forest = RandomForestClassifier if classify else RandomForestRegressor
        return forest(
            n_estimators=given("n_estimators", 100),
            max_depth=args.max_depth,
            random_state=seed,
        )
    boosting = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
    return boosting(
        max_iter=given("max_iter", 100),
        learning_rate=given("learning_rate", 0.1),
        max_depth=args.max_depth,
        random_state=seed,
    )


def build_pipeline(schema: Schema, estimator: Any) -> Pipeline:
    """Imputation, scaling and one-hot in the same Pipeline as the estimator."""
    transformers: list[tuple[str, Any, list[str]]] = []
    if schema.numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                schema.numeric,
            )
        )
    if schema.categorical:
        # Missing categories arrive as '' (MISSING_CATEGORY) and are a category of their own;
        # categories never seen in training, or beyond max_categories, encode as all zeros.
        categories: Any = (
            [schema.categories[c] for c in schema.categorical] if schema.categories else "auto"
        )
        # HistGradientBoosting refuses sparse input; its one-hot block is bounded by
        # max_categories, so dense costs little. The others keep the sparse encoding.
        hist = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
        dense = isinstance(estimator, hist)
        encoder = OneHotEncoder(
            categories=categories, handle_unknown="ignore", sparse_output=not dense
        )
        transformers.append(("categorical", encoder, schema.categorical))
    return Pipeline([("preprocess", ColumnTransformer(transformers)), ("model", estimator)])


def fit(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray) -> Pipeline:
    """Fit, with convergence warnings logged rather than raised."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*converge.*")
        pipeline.fit(X, y)
    return pipeline


def split(
    X: pd.DataFrame, y: np.ndarray, task: str, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """A seeded hold-out, stratified for classification."""
    stratify = None
    if task == "classification":
        counts = Counter(y.tolist())
        rare = sorted(str(label) for label, n in counts.items() if n < 2)
        if rare:
            raise TrainingError(
                f"class {', '.join(rare)} has only one row; each class needs "
                "at least two to hold some out for validation"
            )
        stratify = y
    try:
        X_train, X_valid, y_train, y_valid = train_test_split(
            X, y, test_size=fraction, random_state=seed, stratify=stratify
        )
    except ValueError as error:
        raise TrainingError(f"cannot hold out validation rows: {error}") from None
    return X_train, X_valid, y_train, y_valid


# --------------------------------------------------------------------------- metrics


def compute_metrics(
    task: str,
    y_true: np.ndarray,
    predicted: np.ndarray,
    probabilities: np.ndarray | None,
    classes: Sequence[Any],
) -> dict[str, float]:
    """Held-out metrics: classification or regression."""
    if task == "regression":
        return {
            "rmse": float(np.sqrt(mean_squared_error(y_true, predicted))),
            "mae": float(mean_absolute_error(y_true, predicted)),
            "r2": float(r2_score(y_true, predicted)),
        }
    with warnings.catch_warnings():
        # Predicted classes absent from the held-out rows do not count; that is the intent.
        warnings.simplefilter("ignore", category=UserWarning)
        balanced = float(balanced_accuracy_score(y_true, predicted))
    scores = {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "balanced_accuracy": balanced,
        "f1_macro": float(f1_score(y_true, predicted, average="macro", zero_division=0)),
        "precision_macro": float(
            precision_score(y_true, predicted, average="macro", zero_division=0)
        ),
        "recall_macro": float(recall_score(y_true, predicted, average="macro", zero_division=0)),
    }
    if probabilities is not None:
        clipped = np.clip(probabilities.astype(np.float64), 1e-15, 1.0)
        clipped /= clipped.sum(axis=1, keepdims=True)
        scores["log_loss"] = float(log_loss(y_true, clipped, labels=list(classes)))
        if len(classes) == 2 and len(set(y_true.tolist())) == 2:
            scores["roc_auc"] = float(roc_auc_score(y_true == classes[1], clipped[:, 1]))
    return scores


def measure_baseline(
    task: str,
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_valid: pd.DataFrame,
    y_valid: np.ndarray,
) -> Baseline:
    """The naive model the quality gate measures lift from, on the same rows: the training
    class prior (it answers the majority class) or the training mean."""
    if task == "regression":
        regressor = DummyRegressor(strategy="mean").fit(X_train, y_train)
        predicted = regressor.predict(X_valid)
        return Baseline(
            strategy="mean", metrics=compute_metrics(task, y_valid, predicted, None, [])
        )
    classifier = DummyClassifier(strategy="prior").fit(X_train, y_train)
    labels, counts = np.unique(y_valid, return_counts=True)
    return Baseline(
        strategy="prior",
        metrics=compute_metrics(
            task,
            y_valid,
            classifier.predict(X_valid),
            classifier.predict_proba(X_valid),
            list(classifier.classes_),
        ),
        class_support={str(_plain(label)): int(n) for label, n in zip(labels, counts, strict=True)},
    )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


# --------------------------------------------------------------------------- ONNX


def onnx_input_name(column: str) -> str:
    """The graph input name skl2onnx gives a column (it keeps only [A-Za-z0-9_])."""
    return "".join(ch if (ch.isalnum() and ch.isascii()) or ch == "_" else "_" for ch in column)


def dedupe_opsets(model: onnx.ModelProto) -> onnx.ModelProto:
    """Keep one opset_import per domain (the highest).

    skl2onnx 1.20 can write the default domain twice (seen with zipmap=False), which
    onnxruntime.quantization.quantize_dynamic rejects.
    """
    highest: dict[str, int] = {}
    for entry in model.opset_import:
        highest[entry.domain] = max(entry.version, highest.get(entry.domain, 0))
    if len(highest) != len(model.opset_import):
        del model.opset_import[:]
        for domain, version in sorted(highest.items()):
            model.opset_import.append(onnx.helper.make_opsetid(domain, version))
    return model


def to_onnx(pipeline: Pipeline, schema: Schema, task: str) -> onnx.ModelProto:
    """Convert the fitted Pipeline: one input per feature, plain probability tensor, no ZipMap."""
    initial_types: list[tuple[str, Any]] = [
        (
            onnx_input_name(column),
            FloatTensorType([None, 1]) if column in schema.numeric else StringTensorType([None, 1]),
        )
        for column in schema.features
    ]
    names = [name for name, _ in initial_types]
    if len(set(names)) != len(names):
        raise TrainingError(
            "two column names differ only in characters ONNX drops; rename one of them"
        )
    estimator = pipeline.steps[-1][1]
    options = {id(estimator): {"zipmap": False}} if task == "classification" else {}
    # The ColumnTransformer selects columns by their original names; skl2onnx matches those
    # against the (sanitized) input names, so it is fed a pipeline whose columns use them.
    renamed = _with_onnx_column_names(pipeline)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_sklearn(
            renamed, initial_types=initial_types, options=options, target_opset=TARGET_OPSET
        )
    model = dedupe_opsets(model)
    onnx.checker.check_model(model)
    return model


def _with_onnx_column_names(pipeline: Pipeline) -> Pipeline:
    from sklearn.base import clone  # noqa: PLC0415 - only needed here

    preprocess: ColumnTransformer = pipeline.named_steps["preprocess"]
    if all(onnx_input_name(c) == c for _, _, cols in preprocess.transformers for c in cols):
        return pipeline
    copy = clone(pipeline)
    fitted = copy.named_steps["preprocess"]
    # Reuse the fitted state; only the column selectors change.
    fitted.__dict__.update(preprocess.__dict__)
    fitted.transformers = [
        (n, t, [onnx_input_name(c) for c in cols]) for n, t, cols in preprocess.transformers
    ]
    fitted.transformers_ = [
        (n, t, [onnx_input_name(c) for c in cols] if isinstance(cols, list) else cols)
        for n, t, cols in preprocess.transformers_
    ]
    fitted.feature_names_in_ = np.array(
        [onnx_input_name(c) for c in preprocess.feature_names_in_], dtype=object
    )
    copy.steps[-1] = pipeline.steps[-1]
    return copy


def op_counts(model: onnx.ModelProto) -> Counter[str]:
    """How many nodes of each operator type a graph has."""
    return Counter(node.op_type for node in model.graph.node)


class _Rows(CalibrationDataReader):
    """Feeds calibration rows one at a time to quantize_static."""

    def __init__(self, feeds: dict[str, np.ndarray]) -> None:
        rows = len(next(iter(feeds.values())))
        self._iter: Iterator[dict[str, np.ndarray]] = (
            {name: values[i : i + 1] for name, values in feeds.items()} for i in range(rows)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)


def quantize(
    fp32_path: Path, int8_path: Path, method: str, calibration: dict[str, np.ndarray] | None = None
) -> dict[str, int]:
    """Quantize to int8 and return the operators that were replaced (op type -> count)."""
    # onnxruntime.quantization logs advice through the root logger; keep the job log clean.
    logging.getLogger().setLevel(logging.ERROR)
    if method == "weight":
        model, replaced = quantize_weights(onnx.load(fp32_path))
        onnx.save(model, int8_path)
        return replaced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method != "qdq":
            raise ValueError(f"unknown quantization method {method!r}")
        else:
            if calibration is None:
                raise ValueError("QDQ quantization needs calibration rows")
            quantize_static(
                fp32_path,
                int8_path,
                _Rows(calibration),
                quant_format=QuantFormat.QDQ,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                op_types_to_quantize=["MatMul", "Gemm"],
            )
    return _qdq_wrapped_ops(onnx.load(int8_path))


def quantize_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Weight-only int8: each MatMul/Gemm weight matrix is stored as int8 with one float scale
    per output column (symmetric, +/-127) and restored by Cast and Mul.

    onnxruntime constant-folds Cast and Mul of initializers when it loads the graph, so the
    session runs the fp32 graph's own kernels on fp32 activations: the same speed, and a row's
    outputs never depend on the other rows. A DequantizeLinear instead is fused into
    MatMulNBits, measured about 2x slower on 1000 rows with twice the error.
    """
    initializers = {init.name: init for init in model.graph.initializer}
    graph_inputs = {value.name for value in model.graph.input}
    nodes: list[onnx.NodeProto] = []
    replaced: Counter[str] = Counter()
    done: set[str] = set()
    for node in model.graph.node:
        name = node.input[1] if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 else ""
        init = initializers.get(name)
        if init is not None and name not in graph_inputs and name not in done:
            weights = onnx.numpy_helper.to_array(init)
            if (
                weights.dtype == np.float32
                and weights.ndim == 2
                and weights.size >= MIN_QUANTIZED_WEIGHTS
            ):
                trans_b = node.op_type == "Gemm" and any(
                    a.name == "transB" and a.i for a in node.attribute
                )
                axis = 1 if trans_b else 0  # reduce over K, one scale per output column
                peak = np.max(np.abs(weights), axis=axis, keepdims=True)
                scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
                codes = np.clip(np.rint(weights / scale), -127, 127).astype(np.int8)
                model.graph.initializer.remove(init)
                model.graph.initializer.extend(
                    [
                        onnx.numpy_helper.from_array(codes, f"{name}_int8"),
                        onnx.numpy_helper.from_array(scale, f"{name}_scale"),
                    ]
                )
                nodes.append(
                    onnx.helper.make_node(
                        "Cast", [f"{name}_int8"], [f"{name}_cast"], to=onnx.TensorProto.FLOAT
                    )
                )
                nodes.append(
                    onnx.helper.make_node("Mul", [f"{name}_cast", f"{name}_scale"], [name])
                )
                replaced[node.op_type] += 1
                done.add(name)
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model, dict(replaced)


def _qdq_wrapped_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Operators fed by a DequantizeLinear: a QDQ graph keeps them, wrapped, not replaced."""
    dequantized = {
        out
        for node in model.graph.node
        if node.op_type == "DequantizeLinear"
        for out in node.output
    }
    wrapped = Counter(
        node.op_type
        for node in model.graph.node
        if node.op_type not in {"QuantizeLinear", "DequantizeLinear"}
        and dequantized.intersection(node.input)
    )
    return dict(wrapped)


def session(path: Path) -> ort.InferenceSession:
    """A single-threaded CPU session (deterministic, fair latency figures)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds_for(X: pd.DataFrame, schema: Schema) -> dict[str, np.ndarray]:
    """ONNX inputs for a feature frame: one [N, 1] array per column."""
    feeds = {}
    for column in schema.features:
        values = X[[column]].to_numpy()
        dtype = np.float32 if column in schema.numeric else object
        feeds[onnx_input_name(column)] = values.astype(dtype)
    return feeds


@dataclass
class Prediction:
    """Predicted labels (or values) and class probabilities."""

    labels: np.ndarray
    probabilities: np.ndarray | None


def predict_onnx(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], task: str) -> Prediction:
    """Run a graph; classification graphs return (label, probabilities)."""
    outputs = sess.run(None, feeds)
    if task == "classification":
        return Prediction(np.asarray(outputs[0]).ravel(), np.asarray(outputs[1]))
    return Prediction(np.asarray(outputs[0]).ravel(), None)


def predict_sklearn(pipeline: Pipeline, X: pd.DataFrame, task: str) -> Prediction:
    """Predictions of the fitted Pipeline itself."""
    if task == "classification":
        return Prediction(pipeline.predict(X), pipeline.predict_proba(X))
    return Prediction(pipeline.predict(X), None)


def parity(reference: Prediction, candidate: Prediction, task: str) -> Parity:
    """How a variant agrees with scikit-learn row by row."""
    rows = len(reference.labels)
    if task == "classification":
        agreement = float(np.mean(reference.labels.astype(str) == candidate.labels.astype(str)))
        assert reference.probabilities is not None and candidate.probabilities is not None
        drift = float(np.max(np.abs(reference.probabilities - candidate.probabilities)))
        return Parity(rows=rows, label_agreement=agreement, max_abs_diff=drift)
    drift = float(
        np.max(np.abs(reference.labels.astype(np.float64) - candidate.labels.astype(np.float64)))
    )
    return Parity(rows=rows, max_abs_diff=drift)


def median_latency_us(call: Callable[[], Any], runs: int) -> float | None:
    """Median wall time of a call in microseconds (after one warm-up); None when runs is 0."""
    if runs <= 0:
        return None
    call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return float(np.median(samples) / 1000)


def extreme_rows(X_train: pd.DataFrame, schema: Schema) -> dict[str, np.ndarray]:
    """Two valid rows far outside the training data, built from the signature: each numeric
    feature at +/-100x its largest training magnitude (clipped to float32), each categorical
    its most frequent training category."""
    limit = float(np.finfo(np.float32).max)
    feeds = {}
    for column in schema.features:
        values = X_train[column]
        if column in schema.numeric:
            peak = float(np.nanmax(np.abs(values.to_numpy(np.float64)), initial=0.0)) or 1.0
            far = min(peak * EXTREME_FACTOR, limit)
            feeds[onnx_input_name(column)] = np.array([[far], [-far]], dtype=np.float32)
        else:
            seen = values[values != ""]
            common = str(seen.mode().iloc[0]) if len(seen) else ""
            feeds[onnx_input_name(column)] = np.array([[common], [common]], dtype=object)
    return feeds


def _scored(
    sess: ort.InferenceSession, feeds: dict[str, np.ndarray], task: str
) -> tuple[np.ndarray | None, np.ndarray]:
    """Labels (classification) and the numbers compared: probabilities, or values."""
    outputs = sess.run(None, feeds)
    labels = np.asarray(outputs[0]).ravel().astype(str) if task == "classification" else None
    values = np.asarray(outputs[1 if task == "classification" else 0], dtype=np.float64)
    return labels, values.reshape(len(values), -1)


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| relative to max(1, |a|); a NaN on one side only counts as infinite."""
    both_nan = np.isnan(a) & np.isnan(b)
    gap = np.abs(a - b) / np.maximum(1.0, np.abs(np.nan_to_num(a)))
    gap = np.where(both_nan, 0.0, np.nan_to_num(gap, nan=np.inf))
    return float(min(np.max(gap, initial=0.0), np.finfo(np.float32).max))


def row_independence(
    path: Path,
    feeds: dict[str, np.ndarray],
    extreme: dict[str, np.ndarray],
    task: str,
    bound: float = ROW_BOUND,
) -> RowIndependence:
    """Score held-out rows one by one, as one batch, and as the batch plus extreme rows."""
    sess = session(path)
    rows = min(PROBE_ROWS, len(next(iter(feeds.values()))))
    batch_feeds = {name: values[:rows] for name, values in feeds.items()}
    labels, batch = _scored(sess, batch_feeds, task)
    alone = [
        _scored(sess, {n: v[i : i + 1] for n, v in batch_feeds.items()}, task) for i in range(rows)
    ]
    alone_values = np.vstack([values for _, values in alone])
    appended = {name: np.concatenate([v, extreme[name]]) for name, v in batch_feeds.items()}
    extreme_labels, with_extreme = _scored(sess, appended, task)
    changed = 0
    if labels is not None and extreme_labels is not None:
        alone_labels = np.concatenate([label for label, _ in alone if label is not None])
        changed = int(np.sum((alone_labels != labels) | (extreme_labels[:rows] != labels)))
    diff_alone = _gap(batch, alone_values)
    diff_extreme = _gap(batch, with_extreme[:rows])
    return RowIndependence(
        rows=rows,
        extreme_rows=len(next(iter(extreme.values()))),
        max_abs_diff_alone=diff_alone,
        max_abs_diff_extreme=diff_extreme,
        labels_changed=changed,
        bound=bound,
        passed=max(diff_alone, diff_extreme) <= bound and changed == 0,
    )


def probe_problem(probe: RowIndependence) -> str | None:
    """Why a variant may not serve by the row-independence probe (None when it may)."""
    if probe.passed:
        return None
    return (
        f"outputs depend on the other rows of a call (max |diff| {probe.max_abs_diff_alone:.3g} "
        f"one by one, {probe.max_abs_diff_extreme:.3g} next to an extreme row, "
        f"{probe.labels_changed} labels changed; bound {probe.bound:g})"
    )


# --------------------------------------------------------------------------- decision


@dataclass
class Tolerance:
    """When an int8 graph may replace the fp32 one."""

    min_label_agreement: float
    max_metric_drop: float
    max_probability_drift: float

    def as_dict(self) -> dict[str, float]:
        """For the manifest."""
        return {
            "min_label_agreement": self.min_label_agreement,
            "max_metric_drop": self.max_metric_drop,
            "max_probability_drift": self.max_probability_drift,
        }


@dataclass
class Candidate:
    """One quantized graph and how it fared."""

    method: str
    path: Path
    operators: dict[str, int]
    metrics: dict[str, float] = field(default_factory=dict)
    parity: Parity | None = None
    problems: list[str] = field(default_factory=list)
    row_independence: RowIndependence | None = None


def judge(
    candidate: Candidate,
    reference_metrics: dict[str, float],
    fp32_size: int,
    primary: str,
    tolerance: Tolerance,
    task: str,
) -> list[str]:
    """Every reason this int8 graph may not serve (empty when it may)."""
    problems = []
    if not candidate.operators:
        return ["no quantizable operators in the graph"]
    size = candidate.path.stat().st_size
    if size >= fp32_size:
        problems.append(f"int8 file ({size} B) is not smaller than fp32 ({fp32_size} B)")
    assert candidate.parity is not None
    if task == "classification":
        agreement = candidate.parity.label_agreement or 0.0
        if agreement < tolerance.min_label_agreement:
            problems.append(f"label agreement {agreement:.4f} < {tolerance.min_label_agreement}")
        if candidate.parity.max_abs_diff > tolerance.max_probability_drift:
            problems.append(
                f"probabilities drift by up to {candidate.parity.max_abs_diff:.3f} "
                f"> {tolerance.max_probability_drift}"
            )
    drop = reference_metrics[primary] - candidate.metrics[primary]
    if drop > tolerance.max_metric_drop:
        problems.append(f"{primary} drops by {drop:.4f} > {tolerance.max_metric_drop}")
    if candidate.row_independence is not None:
        problem = probe_problem(candidate.row_independence)
        if problem:
            problems.append(problem)
    return problems


# --------------------------------------------------------------------------- job


def fingerprint(
    train: Dataset, validation: Dataset | None, rows_train: int, rows_valid: int
) -> DataFingerprint:
    """Rows, columns and digests of the input files."""
    files = {f"train/{k}": v for k, v in train.files.items()}
    if validation is not None:
        files.update({f"validation/{k}": v for k, v in validation.files.items()})
    combined = hashlib.sha256("\n".join(f"{k}={v}" for k, v in sorted(files.items())).encode())
    total = len(train.frame) + (len(validation.frame) if validation is not None else 0)
    return DataFingerprint(
        rows=total,
        columns=len(train.frame.columns),
        files=files,
        sha256=combined.hexdigest(),
        train_rows=rows_train,
        validation_rows=rows_valid,
        validation_source="channel" if validation is not None else "split",
    )


def library_versions() -> dict[str, str]:
    """Versions of everything that shaped the model."""
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def run(args: argparse.Namespace) -> Manifest:
    """The whole job; returns the manifest it wrote."""
    train_data = read_channel(args.train, "train")
    validation_data = read_channel(args.validation, "validation") if args.validation else None
    categorical = [c.strip() for c in args.categorical.split(",") if c.strip()]
    missing_tokens = args.missing_tokens
    rule = ValueRule.of(missing_tokens)
    schema = infer_schema(train_data.frame, args.target, args.task, categorical, rule)
    X, y = prepare(train_data.frame, schema, args.target)
    if schema.task == "classification" and len(set(y.tolist())) < 2:
        raise TrainingError(
            f"target {args.target!r} has a single class "
            f"({y[0]!r}); classification needs at least two"
        )
    if validation_data is not None:
        if list(validation_data.frame.columns) != list(train_data.frame.columns):
            raise TrainingError("validation columns differ from the training columns")
        X_train, y_train = X, y
        X_valid, y_valid = prepare(validation_data.frame, schema, args.target)
    else:
        X_train, X_valid, y_train, y_valid = split(
            X, y, schema.task, args.validation_fraction, args.seed
        )
    choose_categories(X_train, schema, args.max_categories)
    print(
        f"task={schema.task} model={args.model} rows train={len(X_train)} "
        f"validation={len(X_valid)} numeric={len(schema.numeric)} "
        f"categorical={len(schema.categorical)}",
        flush=True,
    )

    pipeline = fit(
        build_pipeline(schema, make_estimator(schema.task, args.model, args)), X_train, y_train
    )
    classes = list(pipeline.classes_) if schema.task == "classification" else []
    primary = "accuracy" if schema.task == "classification" else "r2"

    reference = predict_sklearn(pipeline, X_valid, schema.task)
    baseline = measure_baseline(schema.task, X_train, y_train, X_valid, y_valid)
    reports: dict[Any, dict[str, Any]] = {
        "sklearn": {
            "metrics": compute_metrics(
                schema.task, y_valid, reference.labels, reference.probabilities, classes
            )
        }
    }
    feeds = feeds_for(X_valid, schema)
    one_row_frame = X_valid.iloc[:1]
    one_row_feeds = {name: values[:1] for name, values in feeds.items()}
    reports["sklearn"]["single_row_latency_us"] = median_latency_us(
        lambda: pipeline.predict(one_row_frame), min(args.latency_runs, 50)
    )

    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        fp32_path = Path(scratch) / FP32_FILE
        onnx.save(to_onnx(pipeline, schema, schema.task), fp32_path)
        fp32_session = session(fp32_path)
        fp32_prediction = predict_onnx(fp32_session, feeds, schema.task)
        reports["fp32"] = {
            "metrics": compute_metrics(
                schema.task, y_valid, fp32_prediction.labels, fp32_prediction.probabilities, classes
            ),
            "size_bytes": fp32_path.stat().st_size,
            "parity": parity(reference, fp32_prediction, schema.task),
            "single_row_latency_us": median_latency_us(
                lambda: fp32_session.run(None, one_row_feeds), args.latency_runs
            ),
            "row_independence": row_independence(
                fp32_path, feeds, extreme_rows(X_train, schema), schema.task
            ),
        }
        tolerance = Tolerance(
            args.min_label_agreement, args.max_metric_drop, args.max_probability_drift
        )
        chosen, decision_reason, tried = _choose_int8(
            args,
            schema,
            fp32_path,
            X_train,
            feeds,
            one_row_feeds,
            reference,
            y_valid,
            classes,
            primary,
            tolerance,
            reports,
        )
        fp32_problem = probe_problem(reports["fp32"]["row_independence"])
        if chosen is None and fp32_problem:
            # Nothing may serve: an fp32 graph whose rows depend on each other is a bug to fix.
            raise TrainingError(f"the fp32 graph's {fp32_problem}; no variant can be served")
        serving_source = chosen.path if chosen else fp32_path
        serving_path = model_dir / SERVING_FILE
        serving_path.write_bytes(serving_source.read_bytes())
        if chosen:
            (model_dir / FP32_FILE).write_bytes(fp32_path.read_bytes())
        elif (model_dir / FP32_FILE).exists():
            (model_dir / FP32_FILE).unlink()

    quantization = Quantization(
        method=cast(Any, tried.method if tried and tried.operators else "none"),
        quantized_operators=tried.operators if tried else {},
        decision="int8" if chosen else "fp32",
        reason=decision_reason,
        tolerance=tolerance.as_dict(),
    )
    files = {
        p.name: FileInfo(size_bytes=p.stat().st_size, sha256=sha256_file(p))
        for p in sorted(model_dir.glob("*.onnx"))
    }
    serving_info = files[SERVING_FILE]
    created = datetime.now(UTC).replace(microsecond=0)
    outputs = (
        Outputs(label="label", probabilities="probabilities")
        if schema.task == "classification"
        else Outputs(value="variable")
    )
    features = []
    preprocess = pipeline.named_steps["preprocess"]
    for column in schema.features:
        categories = None
        if column in schema.categorical:
            encoder = preprocess.named_transformers_["categorical"]
            index = schema.categorical.index(column)
            categories = [str(c) for c in encoder.categories_[index] if str(c) != ""]
        features.append(
            Feature(
                name=str(column),
                onnx_input=onnx_input_name(column),
                kind="numeric" if column in schema.numeric else "categorical",
                dtype="float32" if column in schema.numeric else "string",
                nullable=True,
                categories=categories,
            )
        )
    manifest = validated(
        Manifest(
            schema_version=SCHEMA_VERSION,
            model_name=args.model_name,
            model_version=f"{created:%Y%m%d%H%M%S}-{serving_info.sha256[:8]}",
            created_at=created,
            task=schema.task,  # type: ignore[arg-type]
            estimator=args.model,
            signature=Signature(
                features=features, target=args.target, missing_values=list(missing_tokens)
            ),
            classes=[c.item() if hasattr(c, "item") else c for c in classes] or None,
            outputs=outputs,
            serving=Serving(
                file=SERVING_FILE,
                variant="int8" if chosen else "fp32",
                sha256=serving_info.sha256,
                size_bytes=serving_info.size_bytes,
            ),
            files=files,
            variants={name: VariantReport(**report) for name, report in reports.items()},
            baseline=baseline,
            quantization=quantization,
            hyperparameters=hyperparameters_of(args),
            library_versions=library_versions(),
            data=msgspec.structs.replace(
                fingerprint(train_data, validation_data, len(X_train), len(X_valid)),
                warnings=schema.warnings,
            ),
        )
    )
    write_manifest(manifest, model_dir)
    _report(manifest, args.output_data_dir)
    return manifest


def _choose_int8(
    args: argparse.Namespace,
    schema: Schema,
    fp32_path: Path,
    X_train: pd.DataFrame,
    feeds: dict[str, np.ndarray],
    one_row_feeds: dict[str, np.ndarray],
    reference: Prediction,
    y_valid: np.ndarray,
    classes: list[Any],
    primary: str,
    tolerance: Tolerance,
    reports: dict[str, dict[str, Any]],
) -> tuple[Candidate | None, str, Candidate | None]:
    """Try the quantization methods asked for; return (chosen, reason, reported candidate).

    The int8 variant reported in the manifest is the chosen one, else the first graph that
    had anything quantized, so a rejected int8 still shows why it was rejected.
    """
    if args.quantization == "none":
        return None, "quantization disabled by hyperparameter", None
    methods = ["weight", "qdq"] if args.quantization == "auto" else [args.quantization]
    extreme = extreme_rows(X_train, schema)
    fp32_size = fp32_path.stat().st_size
    tried: list[Candidate] = []
    for method in methods:
        path = fp32_path.with_name(f"model.int8-{method}.onnx")
        calibration = None
        if method == "qdq":
            rows = X_train.sample(min(args.calibration_rows, len(X_train)), random_state=args.seed)
            calibration = feeds_for(rows, schema)
        try:
            candidate = Candidate(method, path, quantize(fp32_path, path, method, calibration))
        except Exception as error:  # noqa: BLE001 - a failed quantization keeps fp32
            tried.append(
                Candidate(
                    method, path, {}, problems=[f"failed ({type(error).__name__}: {error})"[:300]]
                )
            )
            continue
        if candidate.operators:
            prediction = predict_onnx(session(path), feeds, schema.task)
            candidate.metrics = compute_metrics(
                schema.task, y_valid, prediction.labels, prediction.probabilities, classes
            )
            candidate.parity = parity(reference, prediction, schema.task)
            candidate.row_independence = row_independence(path, feeds, extreme, schema.task)
        candidate.problems = judge(
            candidate, reports["sklearn"]["metrics"], fp32_size, primary, tolerance, schema.task
        )
        tried.append(candidate)
        if not candidate.problems or not candidate.operators:
            break  # a keeper, or nothing to quantize (no other method finds anything either)
    chosen = next((c for c in tried if not c.problems), None)
    shown = chosen or next((c for c in tried if c.operators), None)
    if shown is not None:
        int8_session = session(shown.path)
        reports["int8"] = {
            "metrics": shown.metrics,
            "size_bytes": shown.path.stat().st_size,
            "parity": shown.parity,
            "single_row_latency_us": median_latency_us(
                lambda: int8_session.run(None, one_row_feeds), args.latency_runs
            ),
            "row_independence": shown.row_independence,
        }
    if chosen is not None:
        ratio = fp32_size / chosen.path.stat().st_size
        return chosen, f"{chosen.method} int8 is {ratio:.1f}x smaller and within tolerance", chosen
    reasons = "; ".join(f"{c.method}: {', '.join(c.problems)}" for c in tried)
    return None, f"kept fp32: {reasons}", shown or (tried[0] if tried else None)


def _report(manifest: Manifest, output_data_dir: str | None) -> None:
    """Print the metric lines SageMaker scrapes, and save a report in the output data."""
    for variant, report in manifest.variants.items():
        for name, value in report.metrics.items():
            print(metric_line(variant, name, value), flush=True)
    if manifest.baseline is not None:
        for name, value in manifest.baseline.metrics.items():
            print(metric_line(BASELINE, name, value), flush=True)
    print(
        f"serving={manifest.serving.variant} size={manifest.serving.size_bytes} "
        f"sha256={manifest.serving.sha256} reason={manifest.quantization.reason}",
        flush=True,
    )
    if output_data_dir:
        out = Path(output_data_dir)
        out.mkdir(parents=True, exist_ok=True)
        evaluation: dict[str, Any] = {name: r.to_dict() for name, r in manifest.variants.items()}
        if manifest.baseline is not None:
            evaluation["baseline"] = manifest.baseline.to_dict()
        (out / "evaluation.json").write_text(json.dumps(evaluation, indent=2))


def _fail(message: str, output_dir: str | None) -> int:
    """Report a failure as SageMaker expects: one line on stderr and in output/failure."""
    line = " ".join(message.split())
    print(f"error: {line}", file=sys.stderr, flush=True)
    if output_dir:
        try:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "failure").write_text(line + "\n")
        except OSError as error:
            print(f"error: could not write the failure file: {error}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: SageMaker calls ``python train.py --name value ...``."""
    output_dir = os.environ.get("SM_OUTPUT_DIR")
    try:
        args = parse_args(argv)
        output_dir = args.output_dir
        run(args)
    except TrainingError as error:
        return _fail(str(error), output_dir)
    except MemoryError:
        return _fail("out of memory: use a larger instance type or fewer rows", output_dir)
    except Exception as error:  # noqa: BLE001 - reported as the job's FailureReason
        # A bug of ours, not the caller's: keep the traceback for the logs.
        import traceback  # noqa: PLC0415

        traceback.print_exc()
        return _fail(f"internal error: {type(error).__name__}: {error}", output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
