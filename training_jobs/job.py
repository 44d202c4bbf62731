"""The whole training job, step by step: data, fit, score, convert, compress, choose, write.

``train.main`` parses the hyperparameters and calls :func:`run`; each step lives in the module
it names (``data``, ``estimators``, ``evaluation``, ``export``, ``decision``, ``artifact``).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
from sklearn.pipeline import Pipeline

from onnxkit.contract.background import Background
from onnxkit.contract.layout import FP32_FILE, SERVING_FILE
from onnxkit.contract.manifest import Manifest
from onnxkit.contract.reference import FeatureStats, Reference
from onnxkit.contract.values import ValueRule
from training_jobs import artifact, compress
from training_jobs.data import (
    Schema,
    available_memory,
    choose_categories,
    forest_memory_problem,
    infer_schema,
    memory_problem,
    prepare,
    split,
)
from training_jobs.decision import (
    HeldOut,
    Int8Step,
    Tolerance,
    choose_compression,
    choose_int8,
    extreme_rows,
    fp32_report,
    quantization_methods,
    refuse_unservable,
    sklearn_report,
)
from training_jobs.errors import TrainingError
from training_jobs.estimators import build_pipeline, fit, make_estimator
from training_jobs.evaluation import (
    compute_metrics,
    measure_baseline,
    measure_importance,
    predict_onnx,
    predict_sklearn,
)
from training_jobs.export import feeds_for, session, to_onnx
from training_jobs.hyperparameters import Hyperparameters
from training_jobs.table import Table, channel_files, csv_size, read_table


@dataclass
class Inputs:
    """The channels as read, their schema, and the rows split for training and hold-out."""

    train: Table
    validation: Table | None
    schema: Schema
    X_train: pd.DataFrame
    y_train: np.ndarray
    X_valid: pd.DataFrame
    y_valid: np.ndarray

    def take_training_rows(self) -> pd.DataFrame:
        """The training rows, which this object then no longer holds (``X_train`` is gone:
        reading it raises AttributeError), so the fit can let them go."""
        rows = self.X_train
        del self.X_train
        return rows


@dataclass(frozen=True)
class TrainingRows:
    """What the job reads of the training rows after the fit, taken before it: the model's fit
    is the job's memory peak, and the rows (0.8 of the float32 data) are not held through it."""

    count: int
    extreme: dict[str, np.ndarray]  # the row-independence probe's rows far outside them
    calibration: dict[str, np.ndarray] | None  # what QDQ calibrates with, when it may be tried
    activations: pd.DataFrame  # the sample the MLP compression measures activations on
    background: Background  # what /explain measures against
    features: list[FeatureStats]  # what drift is measured against


def training_rows(hp: Hyperparameters, inputs: Inputs) -> TrainingRows:
    """Everything later steps read of ``inputs.X_train``."""
    X_train, schema = inputs.X_train, inputs.schema
    return TrainingRows(
        count=len(X_train),
        extreme=extreme_rows(X_train, schema),
        calibration=calibration_feeds(hp, inputs),
        activations=compress.activation_sample(X_train, hp.seed),
        background=artifact.background_sample(schema, X_train, hp.seed),
        features=artifact.feature_statistics(schema, X_train),
    )


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Print how long a step took and the job's peak memory so far, as one log line:
    ``[phase] fit 48.20 s, peak 612 MiB`` (benchmarks/bench_scaling.py reads these)."""
    start = time.perf_counter()
    yield
    # ru_maxrss: the resident peak of the whole process so far, in KiB on Linux (bytes on
    # macOS, where the job does not run).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mib = peak / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    print(
        f"[phase] {name} {time.perf_counter() - start:.2f} s, peak {peak_mib:.0f} MiB", flush=True
    )


def run(hp: Hyperparameters) -> Manifest:
    """The whole job; returns the manifest it wrote."""
    with phase("start"):  # the peak after the imports: what the data adds is above it
        pass
    inputs = read_inputs(hp)
    schema = inputs.schema
    print(
        f"task={schema.task} model={hp.model} rows train={len(inputs.X_train)} "
        f"validation={len(inputs.X_valid)} numeric={len(schema.numeric)} "
        f"categorical={len(schema.categorical)}",
        flush=True,
    )
    estimator = make_estimator(
        schema.task, hp.model, hp.estimator, hp.seed, rows=len(inputs.X_train)
    )
    with phase("summary"):  # what later steps read of the training rows, gone after the fit
        rows = training_rows(hp, inputs)
        baseline = measure_baseline(
            schema.task, inputs.X_train, inputs.y_train, inputs.X_valid, inputs.y_valid
        )
    with phase("fit"):
        pipeline = fit(build_pipeline(schema, estimator), inputs.take_training_rows, inputs.y_train)
    refuse_unconvertible(pipeline, hp)
    with phase("evaluate"):
        held_out = hold_out(pipeline, inputs, rows.extreme)
        variants = {"sklearn": sklearn_report(pipeline, held_out, hp.latency_runs)}
        importance = measure_importance(
            pipeline, inputs.X_valid, inputs.y_valid, schema.task, hp.seed
        )
    print(
        f"importance: permutation, {importance.metric}, {importance.rows} of "
        f"{importance.held_out_rows} held-out rows, {importance.repeats} repeats",
        flush=True,
    )
    model_dir = Path(hp.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tolerance = Tolerance(hp.min_label_agreement, hp.max_metric_drop, hp.max_probability_drift)
    compression = None
    with tempfile.TemporaryDirectory() as scratch:
        fp32_path = Path(scratch) / FP32_FILE
        with phase("convert"):
            onnx.save(to_onnx(pipeline, schema, schema.task), fp32_path)
        if hp.compression == "none":
            with phase("parity"):
                variants["fp32"] = fp32_report(fp32_path, held_out, hp.latency_runs)
            with phase("quantize"):  # int8's own parity and latency included
                choice = choose_int8(
                    fp32_path,
                    held_out,
                    hp.quantization,
                    tolerance,
                    rows.calibration,
                    hp.latency_runs,
                )
                int8_report = choice.report  # measured here (its latency), within the phase
        else:
            with phase("compress"):  # each variant's conversion, int8 step and parity included
                step = Int8Step(hp.quantization, tolerance, rows.calibration, hp.latency_runs)
                compressed = choose_compression(
                    pipeline, fp32_path, held_out, schema, rows.activations, step, hp.optimize_for
                )
                fp32_path, choice, compression = (
                    compressed.fp32_path,
                    compressed.int8,
                    compressed.record,
                )
                int8_report = choice.report  # the served variant's, measured within the phase
            with phase("parity"):
                variants["fp32"] = fp32_report(
                    fp32_path, held_out, hp.latency_runs, compressed.fp32_scored
                )
        if int8_report is not None:
            variants["int8"] = int8_report
        refuse_unservable(choice, variants["fp32"])
        place_graphs(model_dir, fp32_path, choice.graph)
    with phase("reference"):
        artifact.write_reference(reference_statistics(model_dir, rows, held_out), model_dir)
        artifact.write_background(rows.background, model_dir)
    with phase("write"):  # the manifest, evaluation.json and the metric lines
        manifest = artifact.build_manifest(
            hyperparameters=hp,
            schema=schema,
            pipeline=pipeline,
            model_dir=model_dir,
            variants=variants,
            baseline=baseline,
            quantization=choice.quantization,
            data=artifact.data_fingerprint(
                inputs.train,
                inputs.validation,
                rows.count,
                len(inputs.X_valid),
                schema.warnings,
            ),
            importance=importance,
            compression=compression,
        )
        artifact.write(manifest, model_dir)
        artifact.report(manifest, hp.output_data_dir)
    return manifest


def refuse_unconvertible(pipeline: Pipeline, hp: Hyperparameters) -> None:
    """A forest too big to convert in the memory left fails here, after its fit, with one
    line: its size follows the data (unlike the other estimators'), and converting it takes
    several times what fitting it did, so an out-of-memory kill would come minutes later."""
    size = compress.forest_size(pipeline[-1])
    if size is None:
        return
    print(f"forest: {size.trees} trees, {size.nodes:,} nodes", flush=True)
    compressed = hp.compression != "none"
    problem = forest_memory_problem(size.nodes, size.leaf_weights, compressed, available_memory())
    if problem:
        raise TrainingError(problem)


def read_inputs(hp: Hyperparameters) -> Inputs:
    """Read the channels, infer the schema, and hold rows out (or take the validation channel).

    Data that would not fit in memory fails here with one line, not as an out-of-memory kill."""
    channels = [(hp.train, "train"), *([(hp.validation, "validation")] if hp.validation else [])]
    data_bytes = sum(csv_size(p) for c, n in channels for p in channel_files(c, n)[1])
    problem = memory_problem(data_bytes, available_memory())
    if problem:
        raise TrainingError(problem)
    rule = ValueRule.of(hp.missing_tokens)
    # The target and the named categorical columns are read as text; the others are numbers
    # where the sample says so (infer_schema judges the rest by their full columns).
    text = {hp.target, *hp.categorical_columns}
    with phase("read"):
        train = read_table(hp.train, "train", rule, text=text)
        validation = None
        if hp.validation:
            # Read before the schema is inferred, as before: its reading errors come first.
            validation = read_table(hp.validation, "validation", rule, text=text)
    with phase("prepare"):
        return _prepared(hp, rule, train, validation)


def _prepared(
    hp: Hyperparameters, rule: ValueRule, train: Table, validation: Table | None
) -> Inputs:
    """The schema, the features and labels, and the hold-out."""
    schema = infer_schema(train, hp.target, hp.task, hp.categorical_columns, rule)
    if validation is not None and set(schema.categorical) & set(validation.numbers):
        # Categories that look like numbers in the validation rows: their texts are the values.
        validation = read_table(hp.validation, "validation", rule, numeric=schema.numeric)
    X, y = prepare(train, schema, hp.target)
    if schema.task == "classification" and len(np.unique(y)) < 2:
        raise TrainingError(
            f"target {hp.target!r} has a single class ({y[0]!r}); classification needs at least two"
        )
    if validation is not None:
        if validation.columns != train.columns:
            raise TrainingError("validation columns differ from the training columns")
        X_train, y_train = X, y
        X_valid, y_valid = prepare(validation, schema, hp.target)
    else:
        X_train, X_valid, y_train, y_valid = split(
            X, y, schema.task, hp.validation_fraction, hp.seed
        )
    choose_categories(X_train, schema, hp.max_categories)
    train.release()  # the split copied the rows: the block read would double the memory
    if validation is not None:
        validation.release()
    return Inputs(train, validation, schema, X_train, y_train, X_valid, y_valid)


def hold_out(pipeline: Pipeline, inputs: Inputs, extreme: dict[str, np.ndarray]) -> HeldOut:
    """The held-out rows, scikit-learn's answers on them, and the probe's ``extreme`` rows."""
    schema = inputs.schema
    classes = list(pipeline.classes_) if schema.task == "classification" else []
    reference = predict_sklearn(pipeline, inputs.X_valid, schema.task)
    return HeldOut(
        task=schema.task,
        rows=inputs.X_valid,
        y=inputs.y_valid,
        classes=classes,
        feeds=feeds_for(inputs.X_valid, schema),
        extreme=extreme,
        reference=reference,
        reference_metrics=compute_metrics(
            schema.task, inputs.y_valid, reference.labels, reference.probabilities, classes
        ),
    )


def reference_statistics(model_dir: Path, rows: TrainingRows, held_out: HeldOut) -> Reference:
    """The training rows' statistics and the served graph's predictions on the held-out rows
    (the graph clients get answers from, so a capture compares like with like)."""
    served = session(model_dir / SERVING_FILE)
    predicted = predict_onnx(served, held_out.feeds, held_out.task)
    return artifact.reference_statistics(
        rows.features, held_out.task, held_out.classes, predicted.labels
    )


def calibration_feeds(hp: Hyperparameters, inputs: Inputs) -> dict[str, np.ndarray] | None:
    """The training rows QDQ calibrates with (a seeded sample), when QDQ may be tried."""
    if "qdq" not in quantization_methods(hp.quantization):
        return None
    rows = inputs.X_train.sample(
        min(hp.calibration_rows, len(inputs.X_train)), random_state=hp.seed
    )
    return feeds_for(rows, inputs.schema)


def place_graphs(model_dir: Path, fp32_path: Path, int8_path: Path | None) -> None:
    """The serving graph into ``model_dir``, and the fp32 one beside it when int8 serves."""
    serving_source = int8_path or fp32_path
    (model_dir / SERVING_FILE).write_bytes(serving_source.read_bytes())
    if int8_path:
        (model_dir / FP32_FILE).write_bytes(fp32_path.read_bytes())
    elif (model_dir / FP32_FILE).exists():
        (model_dir / FP32_FILE).unlink()
