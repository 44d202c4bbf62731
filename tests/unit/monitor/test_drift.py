"""The drift computation on hand-made references and captures."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from functions.monitor.drift import (
    DriftInputError,
    chi2_quantile,
    compare,
    psi,
    select,
)
from onnxkit.contract.capture import CaptureRecord
from onnxkit.contract.drift import PREDICTIONS, DriftThresholds, encode_report, parse_report
from onnxkit.contract.reference import (
    Reference,
    categorical_stats,
    class_predictions,
    numeric_stats,
)


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    assert psi([10, 20, 30], [20, 40, 60]) == pytest.approx(0.0, abs=1e-3)  # smoothing only
    assert 0 < psi([50, 50], [60, 40]) < psi([50, 50], [80, 20])
    assert np.isfinite(psi([100, 0], [0, 100]))  # empty bins stay finite


@pytest.mark.parametrize(
    ("df", "p", "table"),
    [(1, 0.95, 3.841), (9, 0.95, 16.919), (9, 0.9999, 33.72), (49, 0.99, 74.92)],
)
def test_chi2_quantile_is_close_to_the_tables(df: int, p: float, table: float) -> None:
    assert chi2_quantile(df, p) == pytest.approx(table, rel=0.05)


def _reference(rng: np.random.Generator) -> Reference:
    numbers = rng.normal(size=2000)
    numbers[:100] = np.nan
    colours = rng.choice(["red", "green", "blue"], size=2000, p=[0.5, 0.3, 0.2]).tolist()
    return Reference(
        features=[numeric_stats("x", numbers), categorical_stats("colour", colours)],
        predictions=class_predictions(["no", "yes"], ["no"] * 1500 + ["yes"] * 500),
    )


def _records(rows: int, rng: np.random.Generator, **change: Any) -> list[CaptureRecord]:
    x = rng.normal(loc=change.get("x_shift", 0.0), size=rows)
    missing = rng.random(rows) < change.get("x_missing", 0.05)
    colours = rng.choice(
        ["red", "green", "blue", "purple"], size=rows, p=change.get("colours", [0.5, 0.3, 0.2, 0])
    )
    yes = rng.random(rows) < change.get("yes", 0.25)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        CaptureRecord(
            request_id=f"r{i}",
            row=0,
            captured_at=at,
            model_name="m",
            model_version="v1",
            features={"x": None if missing[i] else float(x[i]), "colour": str(colours[i])},
            prediction="yes" if yes[i] else "no",
        )
        for i in range(rows)
    ]


def _compare(records: list[CaptureRecord], reference: Reference) -> Any:
    return compare(reference, records, model_name="m", model_version="v1")


def test_a_sample_of_the_reference_population_does_not_drift() -> None:
    rng = np.random.default_rng(1)
    report = _compare(_records(1000, rng), _reference(rng))
    assert report.drifted == []
    assert {f.name: f.drifted for f in report.features} == {"x": [], "colour": []}


def test_each_measure_names_what_moved() -> None:
    rng = np.random.default_rng(2)
    reference = _reference(rng)
    shifted = _compare(_records(1000, rng, x_shift=1.0), reference)
    assert shifted.drifted == ["x"]
    assert shifted.features[0].drifted == ["psi"]
    assert shifted.features[0].psi > shifted.features[0].psi_limit
    missing = _compare(_records(1000, rng, x_missing=0.4), reference)
    assert missing.features[0].drifted == ["missing_rate"]
    unseen = _compare(_records(1000, rng, colours=[0.4, 0.25, 0.15, 0.2]), reference)
    assert unseen.drifted == ["colour"]
    assert set(unseen.features[1].drifted) == {"psi", "unseen_rate"}
    assert unseen.features[1].unseen_rate == pytest.approx(0.2, abs=0.04)
    predictions = _compare(_records(1000, rng, yes=0.6), reference)
    assert predictions.drifted == [PREDICTIONS]


def test_a_tiny_capture_is_held_to_what_chance_allows() -> None:
    rng = np.random.default_rng(3)
    report = _compare(_records(5, rng), _reference(rng))
    assert report.features[0].psi_limit > DriftThresholds().psi


def test_the_report_round_trips_as_json() -> None:
    rng = np.random.default_rng(4)
    report = _compare(_records(200, rng), _reference(rng))
    assert parse_report(encode_report(report)) == report


def test_records_of_another_version_or_feature_set_are_refused() -> None:
    rng = np.random.default_rng(5)
    records = _records(10, rng)
    with pytest.raises(DriftInputError, match="no capture records of model version v2"):
        select(records, "v2")
    reference = _reference(rng)
    renamed = [
        CaptureRecord(
            request_id=r.request_id,
            row=r.row,
            captured_at=r.captured_at,
            model_name=r.model_name,
            model_version=r.model_version,
            features={"y": 1.0, "colour": "red"},
            prediction=r.prediction,
        )
        for r in records
    ]
    with pytest.raises(DriftInputError, match="lack feature 'x'"):
        _compare(renamed, reference)
    with pytest.raises(DriftInputError, match="no capture records"):
        _compare([], reference)
