"""Metric names, the line format the training job prints, and the regexes that parse it.

SageMaker scrapes the training job's log with ``METRIC_DEFINITIONS`` so the console graphs
the metrics; the CDK pipeline passes exactly this constant to ``CreateTrainingJob``.
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

_NUMBER = r"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"


def metric_line(variant: str, name: str, value: float) -> str:
    """The one log line the training job prints for a metric."""
    return f"[metric] {variant}:{name}={value:.6g}"


def _definitions() -> tuple[tuple[str, str], ...]:
    pairs = []
    for variant in VARIANTS:
        for name in (*CLASSIFICATION_METRICS, *REGRESSION_METRICS):
            pairs.append((f"{variant}:{name}", rf"\[metric\] {variant}:{name}={_NUMBER}"))
    for name in BASELINE_METRICS:
        pairs.append((f"{BASELINE}:{name}", rf"\[metric\] {BASELINE}:{name}={_NUMBER}"))
    return tuple(pairs)


# (name, regex) pairs, in SageMaker's MetricDefinitions shape once turned into dicts.
METRIC_DEFINITIONS: Final[tuple[tuple[str, str], ...]] = _definitions()


def metric_definitions() -> list[dict[str, str]]:
    """METRIC_DEFINITIONS as SageMaker's ``[{"Name": ..., "Regex": ...}]``."""
    return [{"Name": name, "Regex": regex} for name, regex in METRIC_DEFINITIONS]


def parse_metric_lines(text: str) -> dict[str, float]:
    """Every metric found in a log, parsed with the same regexes SageMaker uses."""
    found: dict[str, float] = {}
    for name, regex in METRIC_DEFINITIONS:
        for match in re.finditer(regex, text):
            found[name] = float(match.group(1))
    return found
