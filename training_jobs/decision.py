"""Which graph serves: parity with scikit-learn, the row-independence probe, the int8 choice,
and the compression search.

Every variant is scored on the same held-out rows (:class:`HeldOut`). An int8 graph serves
only when it is smaller than fp32, within the tolerance of scikit-learn's answers, and passes
the probe; otherwise fp32 serves, and the manifest says why (:func:`choose_int8`). With
``compression=auto``, smaller variants of the fitted model go through the same int8 step and
the same tolerance, and the smallest (or fastest) serves (:func:`choose_compression`).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from sklearn.pipeline import Pipeline

from onnxkit.contract.manifest import (
    Compression,
    Parity,
    Quantization,
    RowIndependence,
    VariantReport,
)
from training_jobs import compress
from training_jobs.artifact import (
    make_compression,
    make_compression_variant,
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
    primary_score,
)
from training_jobs.export import (
    onnx_input_name,
    quantize,
    save_packed,
    session,
    to_onnx,
    tree_ensemble_v5,
)

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
        expected, answered = reference.labels, candidate.labels
        if expected.dtype.kind not in "iub" or answered.dtype.kind not in "iub":
            # Labels are compared as text: a graph may answer "1" where scikit-learn says 1.
            expected, answered = expected.astype(str), answered.astype(str)
        agreement = float(np.mean(expected == answered))
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


@dataclass(frozen=True)
class Scored:
    """A graph's answers on the held-out rows and how they compare with scikit-learn's."""

    prediction: Prediction
    score: float  # the primary metric, what a tolerance reads
    parity: Parity
    row_independence: RowIndependence
    every_metric: Callable[[], dict[str, float]] = field(compare=False, repr=False)

    @cached_property
    def metrics(self) -> dict[str, float]:
        """Every held-out metric, computed when a record first reads them: a refused int8
        candidate is judged by ``score`` alone (the rest cost 0.1 s at 200,000 rows)."""
        return self.every_metric()


@dataclass
class Candidate:
    """One quantized graph and how it fared."""

    method: str
    path: Path
    operators: dict[str, int]
    scored: Scored | None = None  # None when nothing was quantized
    problems: list[str] = field(default_factory=list)


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
    assert candidate.scored is not None
    return problems + scored_problems(candidate.scored, reference_metrics, primary, tolerance, task)


def scored_problems(
    scored: Scored,
    reference_metrics: dict[str, float],
    primary: str,
    tolerance: Tolerance,
    task: str,
) -> list[str]:
    """:func:`tolerance_problems` of a scored graph."""
    return tolerance_problems(
        scored.score,
        scored.parity,
        scored.row_independence,
        reference_metrics,
        primary,
        tolerance,
        task,
    )


def tolerance_problems(
    score: float,
    agreement: Parity,
    probe: RowIndependence | None,
    reference_metrics: dict[str, float],
    primary: str,
    tolerance: Tolerance,
    task: str,
) -> list[str]:
    """Every way a variant's answers stray from scikit-learn's beyond ``tolerance``, and a
    failed row-independence probe (empty when it may serve): the rule for int8 graphs and for
    compressed variants alike. ``score``: the variant's ``primary`` metric."""
    problems = []
    if task == "classification":
        share = agreement.label_agreement or 0.0
        if share < tolerance.min_label_agreement:
            problems.append(f"label agreement {share:.4f} < {tolerance.min_label_agreement}")
        if agreement.max_abs_diff > tolerance.max_probability_drift:
            problems.append(
                f"probabilities drift by up to {agreement.max_abs_diff:.3f} "
                f"> {tolerance.max_probability_drift}"
            )
    drop = reference_metrics[primary] - score
    if drop > tolerance.max_metric_drop:
        problems.append(f"{primary} drops by {drop:.4f} > {tolerance.max_metric_drop}")
    if probe is not None:
        problem = probe_problem(probe)
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


def score(path: Path, held_out: HeldOut) -> Scored:
    """A graph's predictions on the held-out rows, their metrics and parity, and the probe."""
    prediction = predict_onnx(session(path), held_out.feeds, held_out.task)
    return Scored(
        prediction=prediction,
        score=primary_score(held_out.task, held_out.y, prediction.labels, held_out.classes),
        every_metric=partial(held_out.metrics, prediction),
        parity=parity(held_out.reference, prediction, held_out.task),
        row_independence=row_independence(
            path,
            held_out.feeds,
            held_out.extreme,
            held_out.task,
            bound=row_bound(len(held_out.feeds)),
        ),
    )


def fp32_report(
    path: Path, held_out: HeldOut, latency_runs: int, scored: Scored | None = None
) -> VariantReport:
    """Metrics, size, parity, latency and the probe of the fp32 graph (``scored``: what is
    already known of the same file)."""
    fp32_session = session(path)
    scored = scored or score(path, held_out)
    return make_variant_report(
        metrics=scored.metrics,
        size_bytes=path.stat().st_size,
        parity=scored.parity,
        single_row_latency_us=_latency(fp32_session, held_out.one_row, latency_runs),
        row_independence=scored.row_independence,
    )


def _latency(sess: ort.InferenceSession, one_row: dict[str, np.ndarray], runs: int) -> float | None:
    return median_latency_us(lambda: sess.run(None, one_row), runs)


@dataclass(frozen=True)
class Int8Choice:
    """What :func:`choose_int8` decided, and what the manifest records of it."""

    graph: Path | None  # the int8 graph to serve; None: fp32 serves
    quantization: Quantization
    describe: Callable[[], VariantReport | None] = field(
        default=lambda: None, compare=False, repr=False
    )
    scored: Scored | None = None  # the chosen graph's, when one was chosen

    @cached_property
    def report(self) -> VariantReport | None:
        """The int8 variant's record, when a graph had anything quantized, measured when first
        read: the compression search runs the int8 step on every variant, and the manifest
        keeps this record for the variant that serves only."""
        return self.describe()


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
        return Int8Choice(None, _quantization(None, None, reason, tolerance))
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
    report = partial(_int8_report, shown, held_out, latency_runs)
    if chosen is not None:
        ratio = fp32_size / chosen.path.stat().st_size
        reason = f"{chosen.method} int8 is {ratio:.1f}x smaller and within tolerance"
        quantization = _quantization(chosen, chosen, reason, tolerance)
        return Int8Choice(chosen.path, quantization, report, chosen.scored)
    reasons = "; ".join(f"{c.method}: {', '.join(c.problems)}" for c in tried)
    recorded = shown or (tried[0] if tried else None)
    quantization = _quantization(None, recorded, f"kept fp32: {reasons}", tolerance)
    return Int8Choice(None, quantization, report)


def _int8_report(
    shown: Candidate | None, held_out: HeldOut, latency_runs: int
) -> VariantReport | None:
    """The manifest's int8 variant: ``shown``'s metrics, size, parity, latency and probe."""
    if shown is None:
        return None
    assert shown.scored is not None
    return make_variant_report(
        metrics=shown.scored.metrics,
        size_bytes=shown.path.stat().st_size,
        parity=shown.scored.parity,
        single_row_latency_us=_latency(session(shown.path), held_out.one_row, latency_runs),
        row_independence=shown.scored.row_independence,
    )


def _measured(candidate: Candidate, held_out: HeldOut) -> Candidate:
    """A candidate with its metrics, parity and probe, when anything was quantized."""
    if candidate.operators:
        candidate.scored = score(candidate.path, held_out)
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


# --------------------------------------------------------------------------- compression

# A 1,000-row call is what the compression search times besides one row (held-out rows
# repeated when there are fewer); session loads are timed this many times.
BATCH_ROWS = 1000
LOAD_RUNS = 3
# Under optimize_for=latency a variant must be this much faster than the original at 1,000
# rows, so timing noise alone never swaps the model.
LATENCY_MARGIN = 0.9
# The re-encoded ensemble must answer as its source does, up to float32 rounding of sums.
REENCODING_BOUND = 1e-5


@dataclass
class Tried:
    """One variant the compression search built: its fp32 graph, the int8 step's choice on
    it, the served file's record, and every reason it may not serve."""

    name: str
    description: str
    pipeline: Pipeline
    fp32_path: Path
    int8: Int8Choice
    scored: Scored | None = None  # the served file's
    record: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def served(self) -> Path:
        """The file that would serve: the int8 graph when the int8 step chose one."""
        return self.int8.graph or self.fp32_path

    @property
    def fp32_scored(self) -> Scored | None:
        """The fp32 graph's scores, when it is the file that would serve (else not taken)."""
        return self.scored if self.int8.graph is None else None


@dataclass(frozen=True)
class CompressionChoice:
    """What :func:`choose_compression` decided: the graphs that serve, and the record."""

    fp32_path: Path
    int8: Int8Choice
    record: Compression
    fp32_scored: Scored | None  # the fp32 graph's answers, when the search scored them


@dataclass(frozen=True)
class Int8Step:
    """How the int8 step runs on every variant (as :func:`choose_int8` on the original)."""

    mode: str
    tolerance: Tolerance
    calibration: dict[str, np.ndarray] | None
    latency_runs: int


def measure_served(
    path: Path, held_out: HeldOut, latency_runs: int, scored: Scored
) -> dict[str, Any]:
    """Size, load time, 1-row and 1,000-row latency, and ``scored``'s metrics, parity and probe
    of a file."""
    session(path)  # the first load in a process pays one-time costs; it is not the file's
    loads = []
    for _ in range(LOAD_RUNS):
        start = time.perf_counter_ns()
        sess = session(path)
        loads.append(time.perf_counter_ns() - start)
    rows = len(next(iter(held_out.feeds.values())))
    index = np.arange(BATCH_ROWS) % rows
    batch = {name: np.take(values, index, axis=0) for name, values in held_out.feeds.items()}
    return {
        "size_bytes": path.stat().st_size,
        "load_ms": float(np.median(loads) / 1e6),
        "single_row_latency_us": _latency(sess, held_out.one_row, latency_runs),
        "batch_rows": BATCH_ROWS,
        "batch_latency_us": median_latency_us(
            lambda: sess.run(None, batch), max(3, latency_runs // 20) if latency_runs else 0
        ),
        "metrics": scored.metrics,
        "parity": scored.parity,
        "row_independence": scored.row_independence,
    }


def choose_compression(
    pipeline: Pipeline,
    fp32_path: Path,
    held_out: HeldOut,
    schema: Schema,
    activation_rows: pd.DataFrame,
    step: Int8Step,
    optimize_for: str,
) -> CompressionChoice:
    """Try smaller variants of the fitted model (``training_jobs.compress``), each through the
    int8 step, and serve the smallest (or fastest) whose served file stays within the int8
    tolerance of scikit-learn's answers and passes the row-independence probe.

    ``fp32_path`` holds the original graph; each variant's graphs are written beside it. The
    original is measured the same way, and serves unless a variant beats it. In an ordered
    series (stronger pruning, fewer trees, fewer units) the search stops at the first variant
    outside tolerance: the stronger ones would miss it further.
    """
    started = time.perf_counter()
    int8_started = time.perf_counter()
    original = _try(
        "original", "the fitted model as converted", pipeline, fp32_path, held_out, step
    )
    original_int8_seconds = time.perf_counter() - int8_started
    tried = [original]
    estimator = pipeline.steps[-1][1]
    kind = compress.family(estimator)

    def attempt(candidates: Iterable[compress.Shrunk]) -> list[Tried]:
        done = []
        # Sliced before iterating: an MLP series prunes each candidate only when it is taken.
        for candidate in itertools.islice(candidates, compress.MAX_CANDIDATES + 1 - len(tried)):
            smaller = Pipeline([*pipeline.steps[:-1], ("model", candidate.estimator)])
            # A folder per variant: the int8 step writes its graphs beside the fp32 one.
            path = fp32_path.parent / candidate.name / fp32_path.name
            path.parent.mkdir()
            graph = compress.factorized(to_onnx(smaller, schema, schema.task), candidate.factors)
            onnx.save(graph, path)
            result = _try(candidate.name, candidate.description, smaller, path, held_out, step)
            done.append(result)
            tried.append(result)
            if result.problems:
                break
        return done

    if kind == "forest":
        pruned = attempt(compress.forest_pruning_candidates(estimator))
        kept = [t for t in pruned if not t.problems]
        base = None
        if kept:
            name = kept[-1].name
            base = compress.Shrunk(name, "", kept[-1].pipeline.steps[-1][1])
        attempt(compress.forest_prefix_candidates(estimator, base))
    elif kind == "boosting":
        attempt(compress.boosting_candidates(estimator))
    elif kind == "mlp":
        transformed = pipeline[:-1].transform(activation_rows)
        dense = transformed.toarray() if hasattr(transformed, "toarray") else transformed
        for series in compress.mlp_candidates(estimator, np.asarray(dense)):
            attempt(series)
    note = ""
    if kind in ("forest", "boosting"):
        # Lossless, so tried once, on the variant that would serve so far.
        source = _pick(tried, optimize_for, kind)[0]
        encoded, note = _reencoded(source, fp32_path.parent, held_out, step)
        if encoded is not None:
            tried.append(encoded)
            note = ""
    chosen, reason = _pick(tried, optimize_for, kind)
    if note:
        reason += f"; TreeEnsemble (ai.onnx.ml 5) not tried: {note}"
    record = make_compression(
        optimize_for=cast(Any, optimize_for),
        chosen=chosen.name,
        reason=reason,
        seconds=max(0.0, time.perf_counter() - started - original_int8_seconds),
        variants=[
            make_compression_variant(
                name=t.name,
                description=t.description,
                chosen=t is chosen,
                reason=_why(t, chosen, optimize_for),
                **t.record,
            )
            for t in tried
        ],
    )
    return CompressionChoice(chosen.fp32_path, chosen.int8, record, chosen.fp32_scored)


def _try(
    name: str,
    description: str,
    pipeline: Pipeline,
    fp32_path: Path,
    held_out: HeldOut,
    step: Int8Step,
) -> Tried:
    """Run the int8 step on a variant's fp32 graph, then measure and judge what would serve.

    Every variant goes through the whole int8 step, even one whose fp32 graph is outside
    tolerance: its int8 graph can land inside it (on the bundled breast_cancer MLP, the
    pruned ``units-0.5`` flips a held-out label in fp32 and none in int8)."""
    int8 = choose_int8(
        fp32_path, held_out, step.mode, step.tolerance, step.calibration, step.latency_runs
    )
    tried = Tried(name, description, pipeline, fp32_path, int8)
    if int8.graph is not None:
        tried.description += f", then {int8.quantization.method} int8"
    # Each file is scored once: the int8 step has scored the graph it chose.
    tried.scored = int8.scored or score(fp32_path, held_out)
    tried.record = measure_served(tried.served, held_out, step.latency_runs, tried.scored)
    tried.problems = scored_problems(
        tried.scored,
        held_out.reference_metrics,
        primary_metric(held_out.task),
        step.tolerance,
        held_out.task,
    )
    return tried


def _reencoded(
    source: Tried, root: Path, held_out: HeldOut, step: Int8Step
) -> tuple[Tried | None, str]:
    """``source`` with its tree ensemble re-encoded as ai.onnx.ml TreeEnsemble (opset 5),
    measured like any variant; refused when its answers differ from ``source``'s at all
    (beyond float32 rounding). None and why when the graph cannot be re-encoded."""
    encoded, note = tree_ensemble_v5(onnx.load(source.fp32_path))
    if encoded is None:
        return None, note
    name = "ml5" if source.name == "original" else f"{source.name}+ml5"
    path = root / name / source.fp32_path.name
    path.parent.mkdir()
    save_packed(encoded, path)
    description = f"{source.description}; {note}"
    result = _try(name, description, source.pipeline, path, held_out, step)
    assert source.scored is not None and result.scored is not None
    same = parity(source.scored.prediction, result.scored.prediction, held_out.task)
    if (same.label_agreement or 1.0) < 1.0 or same.max_abs_diff > REENCODING_BOUND:
        result.problems.append(
            f"re-encoding changed the answers of {source.name} (label agreement "
            f"{same.label_agreement}, max |diff| {same.max_abs_diff:.3g})"
        )
    return result, note


def _pick(tried: list[Tried], optimize_for: str, kind: str) -> tuple[Tried, str]:
    """The variant that serves and why: the smallest (or fastest) within tolerance, when it
    beats the original (at 1,000 rows by ``LATENCY_MARGIN``); else the original."""
    original = tried[0]
    if kind == "linear":
        return original, compress.LINEAR_REASON
    within = [t for t in tried[1:] if not t.problems]
    if not within:
        return original, "no smaller variant stayed within tolerance"
    if optimize_for == "latency":
        if original.record["batch_latency_us"] is None:
            return original, "latency not measured (latency_runs=0): nothing to compare"
        best = min(within, key=lambda t: t.record["batch_latency_us"])
        ratio = best.record["batch_latency_us"] / original.record["batch_latency_us"]
        if ratio > LATENCY_MARGIN:
            return original, f"no variant within tolerance is {LATENCY_MARGIN:g}x as fast or faster"
        return best, f"fastest within tolerance: {ratio:.2f}x the original's 1,000-row latency"
    best = min(within, key=lambda t: t.record["size_bytes"])
    ratio = best.record["size_bytes"] / original.record["size_bytes"]
    if ratio >= 1:
        return original, "no variant within tolerance is smaller"
    return best, f"smallest within tolerance: {ratio:.3f}x the original's size"


def _why(tried: Tried, chosen: Tried, optimize_for: str) -> str:
    """One variant's line in the record: chosen, outside tolerance, or beaten by another."""
    if tried is chosen:
        return "chosen"
    if tried.problems:
        return "; ".join(tried.problems)
    better = "faster" if optimize_for == "latency" else "smaller"
    return f"within tolerance, but {chosen.name} is {better}"
