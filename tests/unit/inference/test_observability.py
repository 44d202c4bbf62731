"""The inference function's EMF provider writes what Powertools' own provider writes."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.exceptions import MetricUnitError, MetricValueError
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)

from functions.inference.observability import FastEMFProvider


def _blobs(provider: AmazonCloudWatchEMFProvider, steps: list[Any]) -> list[dict[str, Any]]:
    """Run add/dimension/flush steps on a provider; its EMF lines, without timestamps."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for step in steps:
            step(provider)
    blobs = [json.loads(line) for line in out.getvalue().splitlines()]
    for blob in blobs:
        del blob["_aws"]["Timestamp"]
    return blobs


def _request(latency: float, instances: int) -> Any:
    def step(p: AmazonCloudWatchEMFProvider) -> None:
        p.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=latency)
        p.add_metric(name="Instances", unit="Count", value=instances)
        p.flush_metrics()

    return step


def _make(kind: type[AmazonCloudWatchEMFProvider]) -> AmazonCloudWatchEMFProvider:
    provider = kind(namespace="onnxkit", service="inference")
    provider.set_default_dimensions(model_version="v1")
    return provider


STEPS: list[Any] = [
    _request(1.5, 1),
    _request(2.0, 1000),
    lambda p: p.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=3.0),
    lambda p: p.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=4),  # appended
    lambda p: p.add_dimension(name="route", value="/predict"),  # this flush only
    lambda p: p.flush_metrics(),
    _request(5.0, 2),
    lambda p: p.add_metadata(key="request", value="abc"),
    _request(6.0, 3),
    # A new model: what Telemetry.use_model does through Metrics.
    lambda p: (
        p.default_dimensions.clear(),
        p.clear_metrics(),
        p.set_default_dimensions(model_version="v2"),
    ),
    _request(7.0, 4),
    lambda p: p.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=True),
    lambda p: p.flush_metrics(),
]


def test_emf_lines_match_powertools_own_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    ours = _blobs(_make(FastEMFProvider), STEPS)
    theirs = _blobs(_make(AmazonCloudWatchEMFProvider), STEPS)
    assert len(ours) == 7
    assert ours == theirs
    assert ours[2]["Latency"] == [3.0, 4.0] and ours[2]["route"] == "/predict"
    assert "route" not in ours[3] and ours[5]["model_version"] == "v2"


def test_metrics_can_still_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    assert _blobs(_make(FastEMFProvider), [_request(1.0, 1), _request(2.0, 2)]) == []


def test_switched_off_metrics_stay_off_past_a_hundred_requests(
    monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    # Powertools' own switched-off flush keeps the values: the 100th printed a blob anyway.
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    assert _blobs(_make(FastEMFProvider), [_request(float(i), 1) for i in range(250)]) == []
    assert not [w for w in recwarn if "No application metrics" in str(w.message)]


def test_bad_metrics_are_refused_even_once_a_name_is_known() -> None:
    provider = _make(FastEMFProvider)
    provider.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=1.0)
    provider.metric_set.clear()
    with pytest.raises(MetricValueError):
        provider.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value="slow")  # type: ignore[arg-type]
    with pytest.raises(MetricUnitError):
        provider.add_metric(name="Latency", unit="Fortnights", value=1.0)
