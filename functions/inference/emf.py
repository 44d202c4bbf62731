"""Powertools' CloudWatch EMF metrics provider, made cheap enough for a per-request flush.

The handler records two metrics and flushes one EMF blob per request (``@metrics.log_metrics``).
Powertools' own path validates the same name and unit again on every ``add_metric`` (and formats
a debug message it then drops), and its flush re-reads two environment variables, encodes with
the stdlib ``json`` module and rebuilds the unchanged default dimensions: together ~45 us, most
of a one-row model run. This provider is a Powertools provider (``Metrics(provider=...)``): it
keeps Powertools' metric set, its validation (the first time a name, unit and resolution are
seen) and its EMF document (``serialize_metric_set``), and changes only what is repeated per
request. Anything unusual (metadata, extra dimension sets, metrics switched off, a full metric
set) takes Powertools' own path.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.constants import MAX_METRICS


class FastEMFProvider(AmazonCloudWatchEMFProvider):
    """``AmazonCloudWatchEMFProvider`` that validates a metric's name and unit once and flushes
    with orjson, clearing only the metrics when the dimensions are the defaults."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # (name, unit, resolution) as passed -> (name, unit, resolution) as Powertools stores them
        self._validated: dict[tuple[Any, Any, Any], tuple[str, str, int]] = {}
        self._steady: dict[str, str] | None = None  # dimensions as flushed after a full reset
        self._service_added = False  # whether serialize adds "service" to those defaults

    def add_metric(self, name: str, unit: Any, value: float, resolution: Any = 60) -> None:
        """Powertools' ``add_metric``; a known metric's first value per flush skips checks."""
        known = self._validated.get((name, unit, resolution))
        kind = type(value)
        if (
            known is None
            or (kind is not float and kind is not int)
            or known[0] in self.metric_set
            or len(self.metric_set) >= MAX_METRICS - 1
        ):
            super().add_metric(name=name, unit=unit, value=value, resolution=resolution)
            stored = name.strip()
            metric = self.metric_set.get(stored)
            if metric is not None:
                key = (stored, metric["Unit"], metric["StorageResolution"])
                self._validated[(name, unit, resolution)] = key
            return
        stored_name, stored_unit, stored_resolution = known
        self.metric_set[stored_name] = {
            "Unit": stored_unit,
            "StorageResolution": stored_resolution,
            "Value": [float(value)],
        }

    def add_dimension(self, name: str, value: str) -> None:
        """Powertools' ``add_dimension``, after dropping a service dimension kept from the last
        flush: Powertools' reset would have dropped it, and serialize re-adds it last."""
        if self._service_added and self.dimension_set == self._steady:
            del self.dimension_set["service"]
        super().add_dimension(name=name, value=value)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        """Print the EMF blob, as Powertools does, then drop the metrics (dimensions stay)."""
        environ = os.environ  # either switch set (to anything): Powertools' flush decides
        if (
            not self.metric_set
            or self.metadata_set
            or self.dimension_sets
            or "POWERTOOLS_METRICS_DISABLED" in environ
            or "POWERTOOLS_DEV" in environ
        ):
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)
            if self.metric_set and is_metrics_disabled():
                # Powertools' switched-off flush keeps the metrics, and add_metric prints the
                # set anyway once a metric holds 100 values (then the next flush warns of none).
                self.clear_metrics()
            self._steady = None
            return
        print(orjson.dumps(self.serialize_metric_set()).decode())
        if self._steady is not None and self.dimension_set == self._steady:
            # What clear_metrics leaves: the defaults. A service dimension that serialize added
            # stays until a dimension is added (see add_dimension), sparing its re-adding.
            self.metric_set.clear()
            return
        self.clear_metrics()
        self._steady = dict(self.dimension_set)
        self._service_added = bool(self.service) and not self._steady.get("service")
        if self._service_added:
            self._steady["service"] = str(self.service)
