"""Metric names, the line formats the training job prints, and the regexes that parse them.

SageMaker scrapes the training job's log with ``METRIC_DEFINITIONS`` so the console graphs
the metrics; the CDK pipeline passes exactly this constant to ``CreateTrainingJob``. Two kinds
of line: ``[metric] <variant>:<name>=<value>`` once per metric after fitting, and the learning
curve ``[curve] <iteration> <name>=<value>`` while the estimator fits.
"""

from __future__ import annotations

import re
from typing import Final

CLASSIFICATION_METRICS: Final = (
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "log_loss",
    "roc_auc",
)
REGRESSION_METRICS: Final = ("rmse", "mae", "r2")
VARIANTS: Final = ("sklearn", "fp32", "int8")
# The naive baseline (manifest ``baseline``) prints lines as variant "baseline"; SageMaker
# graphs the ones the quality gate compares (40 definitions at most per job).
BASELINE: Final = "baseline"
BASELINE_METRICS: Final = ("accuracy", "balanced_accuracy", "r2")

# Metrics where a larger value is better; the rest (log_loss, rmse, mae) are losses.
HIGHER_IS_BETTER: Final = frozenset(
    {
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
        "precision_macro",
        "recall_macro",
        "roc_auc",
        "r2",
    }
)

# The learning curve, one line per value per iteration while the estimator fits (the MLP's
# training loss and validation score; HistGradientBoosting's training and validation loss when
# its early stopping is on). SageMaker graphs each name over time as ``curve:<name>``.
CURVE: Final = "curve"
CURVE_METRICS: Final = ("train_loss", "validation_loss", "validation_score")
# SageMaker's CreateTrainingJob limits: MetricDefinitions items, Name and Regex lengths.
MAX_DEFINITIONS: Final = 40
MAX_NAME_LENGTH: Final = 255
MAX_REGEX_LENGTH: Final = 500

_NUMBER = r"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"


def metric_line(variant: str, name: str, value: float) -> str:
    """The one log line the training job prints for a metric."""
    return f"[metric] {variant}:{name}={value:.6g}"


def curve_line(iteration: int, name: str, value: float) -> str:
    """The one log line the training job prints for a learning-curve value."""
    return f"[curve] {iteration} {name}={value:.6g}"


def _definitions() -> tuple[tuple[str, str], ...]:
    pairs = []
    for variant in VARIANTS:
        for name in (*CLASSIFICATION_METRICS, *REGRESSION_METRICS):
            pairs.append((f"{variant}:{name}", rf"\[metric\] {variant}:{name}={_NUMBER}"))
    for name in BASELINE_METRICS:
        pairs.append((f"{BASELINE}:{name}", rf"\[metric\] {BASELINE}:{name}={_NUMBER}"))
    for name in CURVE_METRICS:
        pairs.append((f"{CURVE}:{name}", rf"\[curve\] [0-9]+ {name}={_NUMBER}"))
    return tuple(pairs)


# (name, regex) pairs, in SageMaker's MetricDefinitions shape once turned into dicts.
METRIC_DEFINITIONS: Final[tuple[tuple[str, str], ...]] = _definitions()


def metric_definitions() -> list[dict[str, str]]:
    """METRIC_DEFINITIONS as SageMaker's ``[{"Name": ..., "Regex": ...}]``."""
    return [{"Name": name, "Regex": regex} for name, regex in METRIC_DEFINITIONS]


def parse_metric_lines(text: str) -> dict[str, float]:
    """Every metric found in a log, parsed with the same regexes SageMaker uses (the last
    value of each, as SageMaker's ``FinalMetricDataList``)."""
    found: dict[str, float] = {}
    for name, regex in METRIC_DEFINITIONS:
        for match in re.finditer(regex, text):
            found[name] = float(match.group(1))
    return found


_CURVE_LINE = re.compile(
    rf"^\[curve\] ([0-9]+) ({'|'.join(CURVE_METRICS)})={_NUMBER}$", re.MULTILINE
)


def parse_curve(text: str) -> dict[str, list[tuple[int, float]]]:
    """The learning curve in a log: ``(iteration, value)`` per curve name, in log order."""
    curve: dict[str, list[tuple[int, float]]] = {}
    for match in _CURVE_LINE.finditer(text):
        curve.setdefault(match.group(2), []).append((int(match.group(1)), float(match.group(3))))
    return curve
