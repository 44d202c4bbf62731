"""``onnxkit predict`` against ``onnxkit serve`` with a model trained on the bundled churn data:
the real API contract (GET /model signature, categorical and missing values, error details)."""

from __future__ import annotations

import csv

import pytest

from tests.support.cli import invoke

pytestmark = pytest.mark.xdist_group("trained-churn")


def test_predict_file_through_onnxkit_serve(tmp_path, runner, train_artifact):
    from onnxkit.datasets import bundled
    from onnxkit.local.gateway import serving

    model_dir = train_artifact("customer_churn", model="logistic_regression")
    source = bundled("customer_churn").path
    with source.open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:300]
    rows[5]["tenure_months"] = "twelve"  # one bad row in the second batch
    data = tmp_path / "rows.csv"
    with data.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "preds.csv"
    with serving(str(model_dir), api_key="k") as url:
        result = invoke(
            runner,
            "predict",
            "--url",
            url,
            "--api-key",
            "k",
            "--input",
            data,
            "--output",
            out,
            "--batch-size",
            128,
        )
    assert result.exit_code == 2, result.output
    with out.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert [int(r["row"]) for r in records] == list(range(300))
    assert records[5]["prediction"] == "" and "tenure_months" in records[5]["error"]
    scored = [r for i, r in enumerate(records) if i != 5]
    assert all(r["error"] == "" and r["prediction"] in ("yes", "no") for r in scored)
    assert all(abs(float(r["proba_no"]) + float(r["proba_yes"]) - 1) < 1e-4 for r in scored)
    agree = sum(r["prediction"] == rows[i]["churned"] for i, r in enumerate(records) if i != 5)
    assert agree / len(scored) > 0.6  # a trained model, not a constant
