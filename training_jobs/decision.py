"""Which graph serves: parity with scikit-learn, the row-independence probe, the int8 choice.

Every variant is scored on the same held-out rows (:class:`HeldOut`). An int8 graph serves
only when it is smaller than fp32, within the tolerance of scikit-learn's answers, and passes
the probe; otherwise fp32 serves, and the manifest says why (:func:`choose_int8`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
from sklearn.pipeline import Pipeline

from onnxkit.contract.manifest import Parity, Quantization, RowIndependence, VariantReport
from training_jobs.artifact import (
    make_parity,
    make_quantization,
    make_row_independence,
    make_variant_report,
)
from training_jobs.data import Schema
from training_jobs.errors import TrainingError
from training_jobs.evaluation import (
    Prediction,
    compute_metrics,
    median_latency_us,
    predict_onnx,
    primary_metric,
)
from training_jobs.export import onnx_input_name, quantize, session

# The row-independence probe: held-out rows probed, how far the extreme rows go, and the largest
# difference allowed, relative to max(1, |output|) (one float32 ulp where a kernel differs by
# batch size: measured 1.5e-5 on a ridge value of about 150).
PROBE_ROWS = 200
EXTREME_FACTOR = 100.0
ROW_BOUND = 1e-6
# A batched and a one-row kernel may sum a row's F terms in another order: float32 rounding
# then differs by about unit * sqrt(F) (a random walk of roundings). Measured on logistic
# regression: 1.07e-6 at 50 features and 1.34e-6 at 800, past the flat 1e-6; dynamic int8's
# per-call scales differ by more than 0.1. The bound allows 16x the random walk.
FLOAT32_UNIT = 2.0**-24
ROUNDING_MARGIN = 16.0


def row_bound(features: int) -> float:
    """The probe's bound for a model of ``features`` inputs (at least ROW_BOUND)."""
    return max(ROW_BOUND, ROUNDING_MARGIN * FLOAT32_UNIT * math.sqrt(max(features, 1)))


def parity(reference: Prediction, candidate: Prediction, task: str) -> Parity:
    """How a variant agrees with scikit-learn row by row."""
    rows = len(reference.labels)
    if task == "classification":
        agreement = float(np.mean(reference.labels.astype(str) == candidate.labels.astype(str)))
        assert reference.probabilities is not None and candidate.probabilities is not None
        drift = float(np.max(np.abs(reference.probabilities - candidate.probabilities)))
        return make_parity(rows=rows, label_agreement=agreement, max_abs_diff=drift)
    drift = float(
        np.max(np.abs(reference.labels.astype(np.float64) - candidate.labels.astype(np.float64)))
    )
    return make_parity(rows=rows, max_abs_diff=drift)


def extreme_rows(X_train: pd.DataFrame, schema: Schema) -> dict[str, np.ndarray]:
    """Two valid rows far outside the training data, built from the signature: each numeric
    feature at +/-100x its largest training magnitude (clipped to float32), each categorical
    its most frequent training category."""
    limit = float(np.finfo(np.float32).max)
    feeds = {}
    for column in schema.features:
        values = X_train[column]
        if column in schema.numeric:
            peak = float(np.nanmax(np.abs(values.to_numpy(np.float64)), initial=0.0)) or 1.0
            far = min(peak * EXTREME_FACTOR, limit)
            feeds[onnx_input_name(column)] = np.array([[far], [-far]], dtype=np.float32)
        else:
            seen = values[values != ""]
            common = str(seen.mode().iloc[0]) if len(seen) else ""
            feeds[onnx_input_name(column)] = np.array([[common], [common]], dtype=object)
    return feeds


def _scored(
    sess: ort.InferenceSession, feeds: dict[str, np.ndarray], task: str
) -> tuple[np.ndarray | None, np.ndarray]:
    """Labels (classification) and the numbers compared: probabilities, or values."""
    outputs = sess.run(None, feeds)
    labels = np.asarray(outputs[0]).ravel().astype(str) if task == "classification" else None
    values = np.asarray(outputs[1 if task == "classification" else 0], dtype=np.float64)
    return labels, values.reshape(len(values), -1)


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| relative to max(1, |a|); a NaN on one side only counts as infinite."""
    both_nan = np.isnan(a) & np.isnan(b)
    gap = np.abs(a - b) / np.maximum(1.0, np.abs(np.nan_to_num(a)))
    gap = np.where(both_nan, 0.0, np.nan_to_num(gap, nan=np.inf))
    return float(min(np.max(gap, initial=0.0), np.finfo(np.float32).max))


def row_independence(
    path: Path,
    feeds: dict[str, np.ndarray],
    extreme: dict[str, np.ndarray],
    task: str,
    bound: float = ROW_BOUND,
) -> RowIndependence:
    """Score held-out rows one by one, as one batch, and as the batch plus extreme rows."""
    sess = session(path)
    rows = min(PROBE_ROWS, len(next(iter(feeds.values()))))
    batch_feeds = {name: values[:rows] for name, values in feeds.items()}
    labels, batch = _scored(sess, batch_feeds, task)
    alone = [
        _scored(sess, {n: v[i : i + 1] for n, v in batch_feeds.items()}, task) for i in range(rows)
    ]
    alone_values = np.vstack([values for _, values in alone])
    appended = {name: np.concatenate([v, extreme[name]]) for name, v in batch_feeds.items()}
    extreme_labels, with_extreme = _scored(sess, appended, task)
    changed = 0
    if labels is not None and extreme_labels is not None:
        alone_labels = np.concatenate([label for label, _ in alone if label is not None])
        changed = int(np.sum((alone_labels != labels) | (extreme_labels[:rows] != labels)))
    diff_alone = _gap(batch, alone_values)
    diff_extreme = _gap(batch, with_extreme[:rows])
    return make_row_independence(
        rows=rows,
        extreme_rows=len(next(iter(extreme.values()))),
        max_abs_diff_alone=diff_alone,
        max_abs_diff_extreme=diff_extreme,
        labels_changed=changed,
        bound=bound,
        passed=max(diff_alone, diff_extreme) <= bound and changed == 0,
    )


def probe_problem(probe: RowIndependence) -> str | None:
    """Why a variant may not serve by the row-independence probe (None when it may)."""
    if probe.passed:
        return None
    return (
        f"outputs depend on the other rows of a call (max |diff| {probe.max_abs_diff_alone:.3g} "
        f"one by one, {probe.max_abs_diff_extreme:.3g} next to an extreme row, "
        f"{probe.labels_changed} labels changed; bound {probe.bound:g})"
    )


@dataclass(frozen=True)
class Tolerance:
    """When an int8 graph may replace the fp32 one."""

    min_label_agreement: float
    max_metric_drop: float
    max_probability_drift: float

    def as_dict(self) -> dict[str, float]:
        """For the manifest."""
        return {
            "min_label_agreement": self.min_label_agreement,
            "max_metric_drop": self.max_metric_drop,
            "max_probability_drift": self.max_probability_drift,
        }


@dataclass
class Candidate:
    """One quantized graph and how it fared."""

    method: str
    path: Path
    operators: dict[str, int]
    metrics: dict[str, float] = field(default_factory=dict)
    parity: Parity | None = None
    problems: list[str] = field(default_factory=list)
    row_independence: RowIndependence | None = None


def judge(
    candidate: Candidate,
    reference_metrics: dict[str, float],
    fp32_size: int,
    primary: str,
    tolerance: Tolerance,
    task: str,
) -> list[str]:
    """Every reason this int8 graph may not serve (empty when it may)."""
    problems = []
    if not candidate.operators:
        return ["no quantizable operators in the graph"]
    size = candidate.path.stat().st_size
    if size >= fp32_size:
        problems.append(f"int8 file ({size} B) is not smaller than fp32 ({fp32_size} B)")
    assert candidate.parity is not None
    if task == "classification":
        agreement = candidate.parity.label_agreement or 0.0
        if agreement < tolerance.min_label_agreement:
            problems.append(f"label agreement {agreement:.4f} < {tolerance.min_label_agreement}")
        if candidate.parity.max_abs_diff > tolerance.max_probability_drift:
            problems.append(
                f"probabilities drift by up to {candidate.parity.max_abs_diff:.3f} "
                f"> {tolerance.max_probability_drift}"
            )
    drop = reference_metrics[primary] - candidate.metrics[primary]
    if drop > tolerance.max_metric_drop:
        problems.append(f"{primary} drops by {drop:.4f} > {tolerance.max_metric_drop}")
    if candidate.row_independence is not None:
        problem = probe_problem(candidate.row_independence)
        if problem:
            problems.append(problem)
    return problems


@dataclass(frozen=True)
class HeldOut:
    """The held-out rows every variant is scored on, and scikit-learn's answers on them."""

    task: str
    rows: pd.DataFrame  # the features, as the Pipeline takes them
    y: np.ndarray
    classes: list[Any]
    feeds: dict[str, np.ndarray]  # the rows as ONNX inputs
    extreme: dict[str, np.ndarray]  # the probe's rows far outside the training data
    reference: Prediction  # scikit-learn's
    reference_metrics: dict[str, float]

    @property
    def one_row(self) -> dict[str, np.ndarray]:
        """The first row alone: what single-row latency is measured on."""
        return {name: values[:1] for name, values in self.feeds.items()}

    def metrics(self, prediction: Prediction) -> dict[str, float]:
        """The held-out metrics of a variant's predictions."""
        return compute_metrics(
            self.task, self.y, prediction.labels, prediction.probabilities, self.classes
        )


def sklearn_report(pipeline: Pipeline, held_out: HeldOut, latency_runs: int) -> VariantReport:
    """Metrics and single-row latency of the fitted Pipeline itself (at most 50 runs)."""
    one_row = held_out.rows.iloc[:1]
    return make_variant_report(
        metrics=held_out.reference_metrics,
        single_row_latency_us=median_latency_us(
            lambda: pipeline.predict(one_row), min(latency_runs, 50)
        ),
    )


def fp32_report(path: Path, held_out: HeldOut, latency_runs: int) -> VariantReport:
    """Metrics, size, parity, latency and the probe of the fp32 graph."""
    fp32_session = session(path)
    prediction = predict_onnx(fp32_session, held_out.feeds, held_out.task)
    one_row = held_out.one_row
    return make_variant_report(
        metrics=held_out.metrics(prediction),
        size_bytes=path.stat().st_size,
        parity=parity(held_out.reference, prediction, held_out.task),
        single_row_latency_us=_latency(fp32_session, one_row, latency_runs),
        row_independence=row_independence(
            path,
            held_out.feeds,
            held_out.extreme,
            held_out.task,
            bound=row_bound(len(held_out.feeds)),
        ),
    )


def _latency(sess: ort.InferenceSession, one_row: dict[str, np.ndarray], runs: int) -> float | None:
    return median_latency_us(lambda: sess.run(None, one_row), runs)


@dataclass(frozen=True)
class Int8Choice:
    """What :func:`choose_int8` decided, and what the manifest records of it."""

    graph: Path | None  # the int8 graph to serve; None: fp32 serves
    quantization: Quantization
    report: VariantReport | None  # the int8 variant's, when a graph had anything quantized


def refuse_unservable(choice: Int8Choice, fp32: VariantReport) -> None:
    """Nothing may serve when fp32 stays and its rows depend on each other (a bug to fix)."""
    probe = fp32.row_independence
    problem = probe_problem(probe) if probe is not None else None
    if choice.graph is None and problem:
        raise TrainingError(f"the fp32 graph's {problem}; no variant can be served")


def quantization_methods(mode: str) -> list[str]:
    """The int8 methods a ``quantization`` hyperparameter tries, in order."""
    if mode == "none":
        return []
    return ["weight", "qdq"] if mode == "auto" else [mode]


def choose_int8(
    fp32_path: Path,
    held_out: HeldOut,
    mode: str,
    tolerance: Tolerance,
    calibration: dict[str, np.ndarray] | None,
    latency_runs: int,
) -> Int8Choice:
    """Try the quantization methods ``mode`` asks for, in order, and keep the first that passes.

    ``calibration`` holds the training rows QDQ calibrates with (None when it is not tried).
    The int8 variant reported in the manifest is the chosen one, else the first graph that
    had anything quantized, so a rejected int8 still shows why it was rejected.
    """
    if mode == "none":
        reason = "quantization disabled by hyperparameter"
        return Int8Choice(None, _quantization(None, None, reason, tolerance), None)
    fp32_size = fp32_path.stat().st_size
    primary = primary_metric(held_out.task)
    tried: list[Candidate] = []
    for method in quantization_methods(mode):
        path = fp32_path.with_name(f"model.int8-{method}.onnx")
        try:
            operators = quantize(fp32_path, path, method, calibration)
        except Exception as error:  # noqa: BLE001 - a failed quantization keeps fp32
            problem = f"failed ({type(error).__name__}: {error})"[:300]
            tried.append(Candidate(method, path, {}, problems=[problem]))
            continue  # the next method may still work
        candidate = _measured(Candidate(method, path, operators), held_out)
        candidate.problems = judge(
            candidate, held_out.reference_metrics, fp32_size, primary, tolerance, held_out.task
        )
        tried.append(candidate)
        if not candidate.problems or not candidate.operators:
            break  # a keeper, or nothing to quantize (no other method finds anything either)
    chosen = next((c for c in tried if not c.problems), None)
    shown = chosen or next((c for c in tried if c.operators), None)
    report = None
    if shown is not None:
        report = make_variant_report(
            metrics=shown.metrics,
            size_bytes=shown.path.stat().st_size,
            parity=shown.parity,
            single_row_latency_us=_latency(session(shown.path), held_out.one_row, latency_runs),
            row_independence=shown.row_independence,
        )
    if chosen is not None:
        ratio = fp32_size / chosen.path.stat().st_size
        reason = f"{chosen.method} int8 is {ratio:.1f}x smaller and within tolerance"
        return Int8Choice(chosen.path, _quantization(chosen, chosen, reason, tolerance), report)
    reasons = "; ".join(f"{c.method}: {', '.join(c.problems)}" for c in tried)
    recorded = shown or (tried[0] if tried else None)
    quantization = _quantization(None, recorded, f"kept fp32: {reasons}", tolerance)
    return Int8Choice(None, quantization, report)


def _measured(candidate: Candidate, held_out: HeldOut) -> Candidate:
    """A candidate with its metrics, parity and probe, when anything was quantized."""
    if candidate.operators:
        prediction = predict_onnx(session(candidate.path), held_out.feeds, held_out.task)
        candidate.metrics = held_out.metrics(prediction)
        candidate.parity = parity(held_out.reference, prediction, held_out.task)
        candidate.row_independence = row_independence(
            candidate.path,
            held_out.feeds,
            held_out.extreme,
            held_out.task,
            bound=row_bound(len(held_out.feeds)),
        )
    return candidate


def _quantization(
    chosen: Candidate | None, recorded: Candidate | None, reason: str, tolerance: Tolerance
) -> Quantization:
    """The manifest's record: the method and operators of ``recorded``, the decision, why."""
    quantized = recorded is not None and bool(recorded.operators)
    return make_quantization(
        method=recorded.method if recorded is not None and quantized else "none",
        quantized_operators=recorded.operators if recorded is not None else {},
        decision="int8" if chosen is not None else "fp32",
        reason=reason,
        tolerance=tolerance.as_dict(),
    )
