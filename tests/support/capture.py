"""A bundled dataset as the served model reads and answers it, and capture records drawn from it:
what the drift tests compare with a model's reference statistics; and what the cloud capture's
Firehose stream makes of a record CloudWatch Logs sends it."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from functions.inference.capture import Scored, records
from functions.inference.predictor import Model, load_model
from functions.inference.source import ModelLocator
from onnxkit.contract.capture import CaptureRecord
from onnxkit.contract.values import ValueRule
from onnxkit.datasets import bundled
from training_jobs.data import infer_schema, prepare
from training_jobs.export import feeds_for
from training_jobs.table import read_table


@dataclass(frozen=True)
class Population:
    """Every row of a dataset: the feed the model reads, the model, and its answers."""

    model: Model
    feed: dict[str, np.ndarray]
    rows: int

    def answer(self, feed: dict[str, np.ndarray]) -> dict[str, Any]:
        """The model's response body for a feed."""
        return self.model.predict_feed(feed)


def population(model_dir: Path, dataset: str) -> Population:
    """All rows of a bundled dataset read with the model's training rule, and the model."""
    data = bundled(dataset)
    model = load_model(ModelLocator(model_dir).locate(str(model_dir)))
    categorical = [spec.name for spec in model.features if not spec.numeric]
    frame = read_table(str(data.path), "train", ValueRule(), text={data.target, *categorical})
    schema = infer_schema(frame, data.target, "auto", categorical)
    X, _ = prepare(frame, schema, data.target)
    feed = feeds_for(X, schema)
    return Population(model, feed, len(X))


def sample(
    pop: Population,
    rows: int,
    seed: int,
    *,
    shift: dict[str, float] | None = None,
) -> list[CaptureRecord]:
    """``rows`` rows drawn with replacement, numeric features in ``shift`` moved by that many
    of their standard deviations, scored by the model and captured as the server captures."""
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, pop.rows, size=rows)
    feed = {name: values[picked] for name, values in pop.feed.items()}
    for spec in pop.model.features:
        if shift and spec.name in shift:
            column = feed[spec.onnx_input].astype(np.float64)
            spread = float(np.nanstd(pop.feed[spec.onnx_input]))
            feed[spec.onnx_input] = (column + shift[spec.name] * spread).astype(np.float32)
    scored = Scored(
        f"seed-{seed}", datetime.now(UTC).timestamp(), pop.model, feed, pop.answer(feed)
    )
    return records(scored)


def firehose_processed(record: bytes) -> bytes:
    """What the capture stream writes for one record CloudWatch Logs sent it: the gzip'd
    payload decompressed ("Decompression"), only the log events' messages, one per line
    ("CloudWatchLogProcessing" with message extraction, docs.aws.amazon.com/firehose/latest/dev/
    Message_extraction.html), a newline after the record ("AppendDelimiterToRecord"), gzip'd
    (the stream's CompressionFormat). Control messages carry no log events and yield nothing."""
    payload = json.loads(gzip.decompress(record))
    if payload.get("messageType") != "DATA_MESSAGE":
        return gzip.compress(b"")
    messages = "\n".join(event["message"] for event in payload["logEvents"])
    return gzip.compress(messages.encode() + b"\n")
