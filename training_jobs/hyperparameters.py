"""The job's hyperparameters: parsed from ``--name value`` arguments and SageMaker's ``SM_*``.

SageMaker's training toolkit passes each hyperparameter as ``--name value`` (``-n`` for a
one-letter name), its values JSON-decoded and re-rendered, and says where the data and the
model go in ``SM_*`` variables. :func:`parse_args` checks them all and returns one frozen
:class:`Hyperparameters`; a bad one is a :class:`TrainingError` naming it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, NoReturn

from onnxkit.contract.values import parse_missing_tokens
from training_jobs.errors import TrainingError
from training_jobs.estimators import (
    ALL_ESTIMATOR_SETTINGS,
    MODELS,
    EstimatorSettings,
    refuse_foreign_settings,
)

# One-hot columns per categorical feature: the most frequent categories get their own, the
# rest share the all-zero "other" encoding that unseen categories get too. It bounds the
# graph, the manifest and the OpenAPI document for id-like columns.
DEFAULT_MAX_CATEGORIES = 100
TASKS = ("auto", "classification", "regression")
# "weight": int8 weights, fp32 activations (see export.quantize_weights); "qdq": static QDQ
# with activation ranges fixed by calibration rows. Both keep rows independent. "dynamic" (one
# activation scale per call) made a row's prediction depend on the others and is refused.
QUANTIZATION_MODES = ("auto", "weight", "qdq", "none")
# "auto": try smaller variants of the fitted model (training_jobs.compress) and serve the
# smallest, or with optimize_for=latency the fastest, within the int8 tolerance; "none": serve
# the fitted model as it is (the job before compression existed).
COMPRESSION_MODES = ("auto", "none")
OPTIMIZE_FOR = ("size", "latency")
# Where SageMaker puts the data and wants the model: not hyperparameters, never recorded.
LOCATIONS = ("model_dir", "train", "validation", "output_data_dir", "output_dir")


@dataclass(frozen=True)
class Hyperparameters:
    """Every hyperparameter of one job, checked, and the locations SageMaker gave it."""

    target: str
    task: str  # one of TASKS
    model: str  # one of MODELS
    model_name: str
    seed: int
    validation_fraction: float
    categorical: str  # comma-separated columns, as given
    missing_values: str | None  # as given; None: absent (the contract's default tokens)
    missing_tokens: tuple[str, ...]  # missing_values read by the contract's rule
    max_categories: int
    estimator: EstimatorSettings
    quantization: str  # one of QUANTIZATION_MODES
    compression: str  # one of COMPRESSION_MODES
    optimize_for: str  # one of OPTIMIZE_FOR
    calibration_rows: int
    min_label_agreement: float
    max_metric_drop: float
    max_probability_drift: float
    latency_runs: int
    model_dir: str
    train: str | None
    validation: str | None
    output_data_dir: str | None
    output_dir: str | None

    @property
    def categorical_columns(self) -> list[str]:
        """The columns to treat as categorical."""
        return [c.strip() for c in self.categorical.split(",") if c.strip()]

    def recorded(self) -> dict[str, Any]:
        """The hyperparameters as the manifest records them: JSON scalars, sorted by name."""
        values: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in LOCATIONS and f.name != "estimator"
        }
        values.update({name: getattr(self.estimator, name) for name in ALL_ESTIMATOR_SETTINGS})
        return {
            key: ",".join(map(str, value)) if isinstance(value, tuple) else value
            for key, value in sorted(values.items())
        }


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


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """Hyperparameters (SageMaker passes each as ``--name value``) and the SM_* locations."""
    parser = _Parser(description=description, allow_abbrev=False)

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
    # and one given to an estimator that does not take it is refused (ESTIMATOR_SETTINGS).
    option("n_estimators", type=_positive_int, default=None)
    option("max_depth", type=_positive_int, default=None)
    option("max_iter", type=_positive_int, default=None)
    option("learning_rate", type=_positive_float, default=None)
    option("hidden_layer_sizes", type=_layers, default=None)
    option("alpha", type=_non_negative_float, default=None, help="L2 regularization.")
    option("c", type=_positive_float, default=None, help="Inverse regularization (logistic).")
    option("quantization", type=_quantization, default="auto")
    option("compression", default="auto", choices=COMPRESSION_MODES)
    option("optimize_for", default="size", choices=OPTIMIZE_FOR)
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


def parse_args(
    argv: Sequence[str] | None = None, description: str | None = None
) -> Hyperparameters:
    """Parse hyperparameters; unknown ones (``sagemaker_*`` and others) are reported, not fatal."""
    namespace, unknown = build_parser(description).parse_known_args(argv)
    stray = [
        item
        for item in unknown
        if re.match(r"-{1,2}[A-Za-z]", item) and not item.startswith("--sagemaker_")
    ]
    if stray:
        print(f"ignoring unknown hyperparameters: {' '.join(stray)}", file=sys.stderr)
    values = vars(namespace)
    if values["max_metric_drop"] < 0 or values["max_probability_drift"] < 0:
        raise TrainingError("bad hyperparameter: tolerances cannot be negative")
    estimator = EstimatorSettings(**{name: values.pop(name) for name in ALL_ESTIMATOR_SETTINGS})
    refuse_foreign_settings(values["model"], estimator)
    try:
        missing_tokens = parse_missing_tokens(values["missing_values"])
    except ValueError as error:
        raise TrainingError(f"bad hyperparameter: {error}") from None
    return Hyperparameters(**values, estimator=estimator, missing_tokens=missing_tokens)
