"""Quality-gate thresholds: set per environment in config, passed by the state machine to the
Evaluate step, and used unchanged by the local workflow."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class QualityGate(BaseModel):
    """The bar a candidate model must clear before it is registered and promoted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_accuracy: float = Field(0.80, ge=0, le=1, description="Classification, served variant.")
    min_r2: float = Field(0.30, ge=-1, le=1, description="Regression, served variant.")
    max_regression_vs_production: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Largest allowed drop of the primary metric against the production model.",
    )
    min_label_agreement: float = Field(
        0.995, ge=0, le=1, description="Served ONNX variant vs scikit-learn, on held-out rows."
    )
    max_parity_metric_drop: float = Field(
        0.005,
        ge=0,
        le=1,
        description="Largest allowed drop of the primary metric from scikit-learn to the served "
        "ONNX variant.",
    )
