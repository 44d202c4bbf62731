"""Regenerate the bundled CSV datasets in onnxkit/datasets/ (deterministic; no network).

breast_cancer, iris and diabetes come from the copies scikit-learn ships; customer_churn is
synthetic, with categorical columns and missing values, so the mixed-type path is exercised.
Run: .venv/bin/python datasets/make_datasets.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

HERE = Path(__file__).resolve().parents[1] / "onnxkit" / "datasets"


def customer_churn(rows: int = 3000, seed: int = 7) -> pd.DataFrame:
    """A churn table: numeric and categorical features, about 5% missing, a yes/no label."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "standard", "premium"], rows, p=[0.5, 0.35, 0.15])
    region = rng.choice(["north", "south", "east", "west"], rows)
    payment = rng.choice(["card", "bank", "invoice"], rows, p=[0.5, 0.3, 0.2])
    tenure = rng.gamma(2.0, 12.0, rows).round(0)
    charges = (
        rng.normal(45, 12, rows) + np.select([plan == "standard", plan == "premium"], [20, 45], 0)
    ).round(2)
    calls = rng.poisson(1.5, rows).astype(float)
    age = rng.integers(18, 80, rows).astype(float)
    logit = (
        -1.0
        - 0.05 * tenure
        + 0.03 * (charges - 60)
        + 0.6 * calls
        + np.where(payment == "invoice", 1.0, 0.0)
        - np.where(plan == "premium", 0.8, 0.0)
    )
    churned = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": charges,
            "plan": plan,
            "region": region,
            "support_calls": calls,
            "payment_method": payment,
            "age": age,
            "churned": churned,
        }
    )
    for column in ("monthly_charges", "support_calls", "age", "region", "payment_method"):
        frame.loc[rng.random(rows) < 0.05, column] = np.nan
    return frame


def main() -> None:
    """Write every bundled dataset next to this file."""
    cancer = load_breast_cancer(as_frame=True).frame
    cancer.to_csv(HERE / "breast_cancer.csv", index=False)
    iris = load_iris(as_frame=True)
    frame = iris.frame.copy()
    frame["target"] = np.asarray(iris.target_names)[iris.target]
    frame.rename(columns={"target": "species"}).to_csv(HERE / "iris.csv", index=False)
    diabetes = load_diabetes(as_frame=True, scaled=False).frame
    diabetes.rename(columns={"target": "progression"}).to_csv(HERE / "diabetes.csv", index=False)
    customer_churn().to_csv(HERE / "customer_churn.csv", index=False)


if __name__ == "__main__":
    main()
