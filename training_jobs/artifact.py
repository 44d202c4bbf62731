"""What the job leaves behind: the manifest, the run report, and SageMaker's failure file.

Every record of the manifest (``onnxkit.contract.manifest``) the job writes is built here,
and only here is one serialized, so a change to the manifest's definition touches this module
alone. The job's other modules build records through the ``make_*`` functions.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import skl2onnx
import sklearn
from sklearn.pipeline import Pipeline

from onnxkit.contract.background import BACKGROUND_ROWS, Background, encode_background
from onnxkit.contract.layout import (
    BACKGROUND_FILE,
    FAILURE_FILE,
    REFERENCE_FILE,
    SERVING_FILE,
    sha256_file,
)
from onnxkit.contract.manifest import (
    SCHEMA_VERSION,
    Baseline,
    Compression,
    CompressionVariant,
    DataFingerprint,
    Feature,
    FeatureImportance,
    FileInfo,
    Importance,
    Manifest,
    Outputs,
    Parity,
    Quantization,
    RowIndependence,
    Serving,
    Signature,
    VariantReport,
    validated,
    write_manifest,
)
from onnxkit.contract.metrics import BASELINE, metric_line
from onnxkit.contract.reference import (
    FeatureStats,
    Reference,
    categorical_stats,
    class_predictions,
    encode_reference,
    numeric_stats,
    value_predictions,
)
from training_jobs.data import (
    MISSING_CATEGORY,
    Schema,
    combined_digest,
    input_digests,
)
from training_jobs.export import onnx_input_name
from training_jobs.hyperparameters import Hyperparameters
from training_jobs.table import Table

EVALUATION_FILE = "evaluation.json"  # in SM_OUTPUT_DATA_DIR: every variant's report


# --------------------------------------------------------------------------- records


def make_parity(rows: int, max_abs_diff: float, label_agreement: float | None = None) -> Parity:
    """How a variant agrees with scikit-learn (``label_agreement`` for classification)."""
    return Parity(rows=rows, label_agreement=label_agreement, max_abs_diff=max_abs_diff)


def make_row_independence(
    *,
    rows: int,
    extreme_rows: int,
    max_abs_diff_alone: float,
    max_abs_diff_extreme: float,
    labels_changed: int,
    bound: float,
    passed: bool,
) -> RowIndependence:
    """The row-independence probe's result."""
    return RowIndependence(
        rows=rows,
        extreme_rows=extreme_rows,
        max_abs_diff_alone=max_abs_diff_alone,
        max_abs_diff_extreme=max_abs_diff_extreme,
        labels_changed=labels_changed,
        bound=bound,
        passed=passed,
    )


def make_baseline(
    *,
    strategy: Literal["prior", "mean"],
    metrics: dict[str, float],
    class_support: dict[str, int] | None = None,
) -> Baseline:
    """The naive model's metrics (and, for classification, held-out rows per class)."""
    return Baseline(strategy=strategy, metrics=metrics, class_support=class_support)


def make_variant_report(
    *,
    metrics: dict[str, float],
    size_bytes: int | None = None,
    parity: Parity | None = None,
    single_row_latency_us: float | None = None,
    row_independence: RowIndependence | None = None,
) -> VariantReport:
    """One variant's metrics, size, parity, latency and probe (scikit-learn has no file)."""
    return VariantReport(
        metrics=metrics,
        size_bytes=size_bytes,
        parity=parity,
        single_row_latency_us=single_row_latency_us,
        row_independence=row_independence,
    )


def make_compression_variant(
    *,
    name: str,
    description: str,
    size_bytes: int,
    load_ms: float,
    single_row_latency_us: float | None,
    batch_rows: int,
    batch_latency_us: float | None,
    metrics: dict[str, float],
    parity: Parity,
    row_independence: RowIndependence | None,
    chosen: bool,
    reason: str,
) -> CompressionVariant:
    """One variant the compression search tried, measured as a served file."""
    return CompressionVariant(
        name=name,
        description=description,
        size_bytes=size_bytes,
        load_ms=load_ms,
        single_row_latency_us=single_row_latency_us,
        batch_rows=batch_rows,
        batch_latency_us=batch_latency_us,
        metrics=metrics,
        parity=parity,
        row_independence=row_independence,
        chosen=chosen,
        reason=reason,
    )


def make_compression(
    *,
    optimize_for: Literal["size", "latency"],
    chosen: str,
    reason: str,
    seconds: float,
    variants: list[CompressionVariant],
) -> Compression:
    """The compression search: every variant tried, the one that serves, and why."""
    return Compression(
        optimize_for=optimize_for, chosen=chosen, reason=reason, seconds=seconds, variants=variants
    )


def make_quantization(
    *,
    method: str,
    quantized_operators: dict[str, int],
    decision: Literal["fp32", "int8"],
    reason: str,
    tolerance: dict[str, float],
) -> Quantization:
    """Whether the serving graph is int8, and why."""
    return Quantization(
        method=cast(Any, method),
        quantized_operators=quantized_operators,
        decision=decision,
        reason=reason,
        tolerance=tolerance,
    )


def make_importance(
    *,
    metric: str,
    rows: int,
    held_out_rows: int,
    repeats: int,
    random_state: int,
    drops: dict[str, tuple[float, float]],
) -> Importance:
    """Permutation importance: per feature (signature order), the mean and std of the drop."""
    return Importance(
        method="permutation",
        metric=metric,
        rows=rows,
        held_out_rows=held_out_rows,
        repeats=repeats,
        random_state=random_state,
        features=[
            FeatureImportance(name=name, mean=mean, std=std) for name, (mean, std) in drops.items()
        ],
    )


def data_fingerprint(
    train: Table,
    validation: Table | None,
    train_rows: int,
    validation_rows: int,
    warnings: list[str],
) -> DataFingerprint:
    """Rows, columns and digests of the input files, and what the job noticed in them."""
    files = input_digests(train, validation)
    return DataFingerprint(
        rows=train.rows + (validation.rows if validation is not None else 0),
        columns=len(train.columns),
        files=files,
        sha256=combined_digest(files),
        train_rows=train_rows,
        validation_rows=validation_rows,
        validation_source="channel" if validation is not None else "split",
        warnings=warnings,
    )


def library_versions() -> dict[str, str]:
    """Versions of everything that shaped the model."""
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


# --------------------------------------------------------------------------- reference


def feature_statistics(schema: Schema, X_train: pd.DataFrame) -> list[FeatureStats]:
    """Each feature over the training rows as the graph reads them (float32 numbers with NaN,
    categories with "" for missing): what drift is measured against."""

    def stats(column: str) -> FeatureStats:
        values = X_train[column]
        if column in schema.numeric:
            return numeric_stats(str(column), values.to_numpy(np.float64))
        texts = [None if v == MISSING_CATEGORY else str(v) for v in values.tolist()]
        return categorical_stats(str(column), texts)

    # A column at a time on every core: numpy's partition and comparisons release the GIL.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as workers:
        return list(workers.map(stats, schema.features))


def reference_statistics(
    features: list[FeatureStats], task: str, classes: list[Any], predicted: np.ndarray
) -> Reference:
    """The training rows' ``features`` (:func:`feature_statistics`) and the served graph's
    predictions on the held-out rows (``predicted``: labels, or values)."""
    if task == "classification":
        predictions: Any = class_predictions(classes, predicted.ravel().tolist())
    else:
        predictions = value_predictions(np.asarray(predicted, dtype=np.float64).ravel())
    return Reference(features=features, predictions=predictions)


def write_reference(reference: Reference, model_dir: Path) -> Path:
    """Write ``reference.json`` beside the graphs (the manifest then lists its digest)."""
    path = Path(model_dir) / REFERENCE_FILE
    path.write_bytes(encode_reference(reference))
    return path


# --------------------------------------------------------------------------- background


def background_sample(
    schema: Schema, X_train: pd.DataFrame, seed: int, rows: int = BACKGROUND_ROWS
) -> Background:
    """A seeded sample of training rows as the graph reads them (float32-exact numbers, null
    for a missing one; categories, "" for a missing one): what /explain measures against."""
    sample = X_train.sample(min(rows, len(X_train)), random_state=seed)
    columns: list[list[Any]] = []
    for column in schema.features:
        values = sample[column]
        if column in schema.numeric:
            numbers = values.to_numpy(np.float64).astype(np.float32).astype(np.float64)
            columns.append([None if np.isnan(v) else float(v) for v in numbers])
        else:
            columns.append([str(v) for v in values.tolist()])
    return Background(
        features=[str(column) for column in schema.features],
        rows=[list(row) for row in zip(*columns, strict=True)],
        seed=seed,
        source_rows=len(X_train),
    )


def write_background(background: Background, model_dir: Path) -> Path:
    """Write ``background.json`` beside the graphs (the manifest then lists its digest)."""
    path = Path(model_dir) / BACKGROUND_FILE
    path.write_bytes(encode_background(background))
    return path


# --------------------------------------------------------------------------- manifest


def signature(hyperparameters: Hyperparameters, schema: Schema, pipeline: Pipeline) -> Signature:
    """The features in CSV order, each with its ONNX input and its one-hot categories."""
    features = []
    preprocess = pipeline.named_steps["preprocess"]
    for column in schema.features:
        categories = None
        if column in schema.categorical:
            encoder = preprocess.named_transformers_["categorical"]
            index = schema.categorical.index(column)
            categories = [str(c) for c in encoder.categories_[index] if str(c) != ""]
        features.append(
            Feature(
                name=str(column),
                onnx_input=onnx_input_name(column),
                kind="numeric" if column in schema.numeric else "categorical",
                dtype="float32" if column in schema.numeric else "string",
                nullable=True,
                categories=categories,
            )
        )
    return Signature(
        features=features,
        target=hyperparameters.target,
        missing_values=list(hyperparameters.missing_tokens),
    )


def build_manifest(
    *,
    hyperparameters: Hyperparameters,
    schema: Schema,
    pipeline: Pipeline,
    model_dir: Path,
    variants: dict[str, VariantReport],
    baseline: Baseline,
    quantization: Quantization,
    data: DataFingerprint,
    importance: Importance | None = None,
    compression: Compression | None = None,
) -> Manifest:
    """The manifest of the files in ``model_dir``: the serving graph, the fp32 one when int8
    serves, the reference statistics and the explanation background."""
    paths = [*model_dir.glob("*.onnx"), model_dir / REFERENCE_FILE, model_dir / BACKGROUND_FILE]
    files = {
        p.name: FileInfo(size_bytes=p.stat().st_size, sha256=sha256_file(p))
        for p in sorted(paths)
        if p.is_file()
    }
    serving_info = files[SERVING_FILE]
    created = datetime.now(UTC).replace(microsecond=0)
    classification = schema.task == "classification"
    classes = list(pipeline.classes_) if classification else []
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        model_name=hyperparameters.model_name,
        model_version=f"{created:%Y%m%d%H%M%S}-{serving_info.sha256[:8]}",
        created_at=created,
        task=cast(Any, schema.task),
        estimator=hyperparameters.model,
        signature=signature(hyperparameters, schema, pipeline),
        classes=[c.item() if hasattr(c, "item") else c for c in classes] or None,
        outputs=(
            Outputs(label="label", probabilities="probabilities")
            if classification
            else Outputs(value="variable")
        ),
        serving=Serving(
            file=SERVING_FILE,
            variant=quantization.decision,
            sha256=serving_info.sha256,
            size_bytes=serving_info.size_bytes,
        ),
        files=files,
        variants=cast(Any, variants),
        baseline=baseline,
        quantization=quantization,
        hyperparameters=hyperparameters.recorded(),
        library_versions=library_versions(),
        data=data,
        importance=importance,
        compression=compression,
    )
    return validated(manifest)  # type-checked, nested parts as structs


def write(manifest: Manifest, model_dir: Path) -> Path:
    """Write ``manifest.json`` beside the graphs."""
    return write_manifest(manifest, model_dir)


# --------------------------------------------------------------------------- report


def report(manifest: Manifest, output_data_dir: str | None) -> None:
    """Print the metric lines SageMaker scrapes, and save a report in the output data."""
    for variant, variant_report in manifest.variants.items():
        for name, value in variant_report.metrics.items():
            print(metric_line(variant, name, value), flush=True)
    if manifest.baseline is not None:
        for name, value in manifest.baseline.metrics.items():
            print(metric_line(BASELINE, name, value), flush=True)
    print(
        f"serving={manifest.serving.variant} size={manifest.serving.size_bytes} "
        f"sha256={manifest.serving.sha256} reason={manifest.quantization.reason}",
        flush=True,
    )
    if manifest.compression is not None:
        for line in compression_lines(manifest.compression, manifest.primary_metric):
            print(line, flush=True)
    if output_data_dir:
        out = Path(output_data_dir)
        out.mkdir(parents=True, exist_ok=True)
        evaluation: dict[str, Any] = {name: r.to_dict() for name, r in manifest.variants.items()}
        if manifest.baseline is not None:
            evaluation["baseline"] = manifest.baseline.to_dict()
        if manifest.compression is not None:
            evaluation["compression"] = manifest.compression.to_dict()
        (out / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2))


def compression_lines(compression: Compression, metric: str) -> list[str]:
    """The compression search as the job log shows it: one line per variant tried."""
    lines = [
        f"compression: optimize_for={compression.optimize_for} chosen={compression.chosen} "
        f"search {compression.seconds:.1f} s: {compression.reason}"
    ]
    for v in compression.variants:
        agreement = v.parity.label_agreement
        lines.append(
            f"  {'*' if v.chosen else ' '} {v.name}: {v.size_bytes} B, load {v.load_ms:.1f} ms, "
            f"1 row {_us(v.single_row_latency_us)}, {v.batch_rows} rows "
            f"{_us(v.batch_latency_us)}, {metric} {v.metrics.get(metric, float('nan')):.4f}, "
            + (f"agreement {agreement:.4f}, " if agreement is not None else "")
            + f"max diff {v.parity.max_abs_diff:.3g}: {v.reason}"
        )
    return lines


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} us"


def fail(message: str, output_dir: str | None) -> int:
    """Report a failure as SageMaker expects: one line on stderr and in output/failure."""
    line = " ".join(message.split())
    print(f"error: {line}", file=sys.stderr, flush=True)
    if output_dir:
        try:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / FAILURE_FILE).write_text(line + "\n")
        except OSError as error:
            print(f"error: could not write the failure file: {error}", file=sys.stderr)
    return 1
