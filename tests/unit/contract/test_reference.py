"""The reference statistics' rules and the capture records' file format."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from onnxkit.contract.capture import CaptureError, CaptureRecord, decode_records, encode_records
from onnxkit.contract.reference import (
    NUMERIC_BINS,
    Reference,
    ReferenceError,
    bin_counts,
    categorical_stats,
    class_predictions,
    encode_reference,
    numeric_stats,
    parse_reference,
    quantile_edges,
)


def test_a_value_on_an_edge_falls_in_the_bin_above_it() -> None:
    edges = [1.0, 2.0]
    values = np.array([0.5, 1.0, 1.5, 2.0, 9.0, np.nan])
    assert bin_counts(edges, values) == [1, 2, 2]


def test_quantile_edges_are_distinct_values_of_the_data() -> None:
    values = np.array([0.0] * 70 + [1.0] * 30 + [np.nan] * 5)
    edges = quantile_edges(values)
    assert edges == [0.0, 1.0]
    assert bin_counts(edges, values) == [0, 70, 30]


def test_numeric_stats_count_every_row_once() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=1000)
    values[::10] = np.nan
    stats = numeric_stats("x", values)
    assert stats.rows == 1000 and stats.missing == 100
    assert sum(stats.counts) == 900
    assert len(stats.counts) == len(stats.edges) + 1 == 10
    assert max(stats.counts) - min(stats.counts) <= 2  # quantile bins: equal shares


def test_categorical_stats_list_the_most_frequent_and_count_the_rest() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c", "d"] + [None] * 2
    stats = categorical_stats("c", values, listed=2)
    assert stats.frequencies == {"a": 5, "b": 3}
    assert (stats.other, stats.missing, stats.distinct, stats.rows) == (2, 2, 4, 12)


def test_a_reference_round_trips_and_refuses_counts_that_do_not_add_up() -> None:
    reference = Reference(
        features=[numeric_stats("x", np.arange(20.0)), categorical_stats("c", ["a", None])],
        predictions=class_predictions([0, 1], [0, 0, 1]),
    )
    raw = encode_reference(reference)
    assert parse_reference(raw) == reference
    broken = raw.replace(b'"rows": 3', b'"rows": 4')
    with pytest.raises(ReferenceError, match="prediction counts do not sum"):
        parse_reference(broken)
    with pytest.raises(ReferenceError, match="unsupported reference schema"):
        parse_reference(raw.replace(b'"1.0"', b'"2.0"'))


def test_capture_lines_round_trip_and_a_partial_last_line_is_skipped() -> None:
    record = CaptureRecord(
        request_id="r",
        row=0,
        captured_at=datetime(2026, 1, 2, tzinfo=UTC),
        model_name="m",
        model_version="v",
        features={"x": 1.5, "c": None, "d": "a"},
        prediction=1,
        probabilities=[0.25, 0.75],
    )
    raw = encode_records([record, record])
    assert decode_records(raw) == [record, record]
    assert decode_records(raw + raw[:20]) == [record, record]  # a writer mid-line
    with pytest.raises(CaptureError, match=r"f\.jsonl:2: not a capture record"):
        decode_records(raw[: raw.index(b"\n") + 1] + b'{"row": -1}\n', "f.jsonl")


@pytest.mark.parametrize("seed", range(20))
def test_bin_counts_are_the_binary_searchs(seed: int) -> None:
    """Counting by comparisons gives what searchsorted (bin = edges <= x) gives, ties on
    the edges, signed zeros and infinities included."""
    rng = np.random.default_rng(seed)
    values = rng.choice(np.array([-np.inf, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0, np.inf, np.nan]), 500)
    values = np.concatenate([values, rng.normal(size=500)])
    edges = sorted({float(e) for e in rng.choice(values[~np.isnan(values)], rng.integers(0, 12))})
    present = values[~np.isnan(values)]
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), present, side="right")
    assert bin_counts(edges, values) == np.bincount(index, minlength=len(edges) + 1).tolist()


@pytest.mark.parametrize("seed", range(20))
def test_quantile_edges_are_numpys_quantiles_of_the_values_as_given(seed: int) -> None:
    """The edges come from the sorted values: they must be numpy's inverted-CDF quantiles of
    the values in their own order (ties, signed zeros, infinities and NaN included)."""
    rng = np.random.default_rng(seed)
    pool = np.array([-np.inf, -1.0, -0.0, 0.0, 0.5, 1.0, np.inf, np.nan])
    values = np.concatenate([rng.choice(pool, 300), rng.normal(size=rng.integers(1, 3000))])
    rng.shuffle(values)
    present = values[~np.isnan(values)]
    levels = np.linspace(0.0, 1.0, NUMERIC_BINS + 1)[1:-1]
    expected = np.unique(np.quantile(present, levels, method="inverted_cdf"))
    assert np.array_equal(np.asarray(quantile_edges(values)), expected)
