"""Quality-gate thresholds: set per environment in config, passed by the state machine to the
Evaluate step, and used unchanged by the local workflow.

The default bar is relative, so it means the same on any dataset: the served variant must beat
the naive baseline the training job measured on the same held-out rows (manifest
``baseline``) by a margin. Classification compares balanced accuracy, the mean of per-class
recall: any model that ignores the features (always the majority class, or labels drawn at
random) scores 1/n_classes in expectation however imbalanced the classes are, while plain
accuracy rewards answering the majority class (0.95 on 95/5 data). Regression compares R²,
about 0 for the training mean. The margin is the larger of ``min_lift_over_baseline`` and
``chance_sigmas`` standard deviations of a feature-blind classifier's balanced accuracy on
those rows, so a small held-out set cannot pass a lucky model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

# The metric the baseline lift and the production comparison use, per task.
GATE_METRIC = {"classification": "balanced_accuracy", "regression": "r2"}


class QualityGate(BaseModel):
    """The bar a candidate model must clear before it is registered and promoted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_lift_over_baseline: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Served variant's balanced accuracy (classification) or R² (regression) "
        "minus the naive baseline's, at least.",
    )
    chance_sigmas: float = Field(
        2.0,
        ge=0,
        le=10,
        description="Classification: the lift must also reach this many standard deviations of "
        "a feature-blind classifier's balanced accuracy on the held-out rows (0: off).",
    )
    min_accuracy: float | None = Field(
        None, ge=0, le=1, description="Optional absolute bar (classification, served variant)."
    )
    min_r2: float | None = Field(
        None, ge=-1, le=1, description="Optional absolute bar (regression, served variant)."
    )
    max_regression_vs_production: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Largest allowed drop of the gate metric (balanced accuracy or R²) against "
        "the production model.",
    )
    min_label_agreement: float = Field(
        0.995, ge=0, le=1, description="Served ONNX variant vs scikit-learn, on held-out rows."
    )
    max_parity_metric_drop: float = Field(
        0.005,
        ge=0,
        le=1,
        description="Largest allowed drop of accuracy, balanced accuracy or R² from "
        "scikit-learn to the served ONNX variant.",
    )


def chance_std(class_support: Mapping[str, float]) -> float:
    """An upper bound of the standard deviation of balanced accuracy for a classifier that
    ignores the features, on held-out rows with these class counts.

    Such a classifier answers class k with some probability q_k, independently of the row, so
    class k's recall is Binomial(n_k, q_k) / n_k; the bound takes q_k(1 - q_k) at its largest,
    1/4. Balanced accuracy is the mean of the recalls of the classes present.
    """
    counts = [n for n in class_support.values() if n > 0]
    if not counts:
        return 0.0
    return math.sqrt(sum(0.25 / n for n in counts)) / len(counts)


def required_lift(gate: QualityGate, class_support: Mapping[str, float] | None) -> float:
    """The margin over the baseline the gate metric must reach."""
    noise = gate.chance_sigmas * chance_std(class_support) if class_support else 0.0
    return max(gate.min_lift_over_baseline, noise)
