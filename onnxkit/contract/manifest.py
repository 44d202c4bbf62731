"""The model manifest: the self-describing contract of a training job's artifact.

ONE definition and ONE rule set for everyone: the training job writes it, the inference
function validates it at cold start, the pipeline steps and the CLI read it. The definition is
a set of msgspec structs: decoding checks types, bounds and patterns, and each struct's
``__post_init__`` holds its cross-field rules, so :func:`parse_manifest` is the whole check on
every side. msgspec costs the cold path a few milliseconds where pydantic cost 100-250 ms
(``benchmarks/bench_manifest.py``). Constructing a struct in Python runs the cross-field rules
but not the type checks; :func:`write_manifest` round-trips through :func:`parse_manifest`, so
nothing invalid is ever written. A change that breaks readers bumps ``SCHEMA_VERSION``'s major.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from onnxkit.contract.layout import (
    MANIFEST_FILE,
    MODEL_NAME_PATTERN,
    MODEL_VERSION_PATTERN,
    model_name_problem,
)

SCHEMA_VERSION: Final = "1.3"
_MODEL_VERSION: Final = re.compile(MODEL_VERSION_PATTERN)

Task = Literal["classification", "regression"]
Variant = Literal["fp32", "int8"]
Scalar = str | int | float | bool | None
# Patterns are searches, and "$" also matches before a trailing newline: the length pins it.
Sha256 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$", min_length=64, max_length=64)]
NonNegative = Annotated[int, Meta(ge=0)]
Positive = Annotated[int, Meta(gt=0)]
NonNegativeFloat = Annotated[float, Meta(ge=0)]


class ManifestError(ValueError):
    """A manifest is missing, unreadable or invalid."""


class _Strict(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Unknown fields are errors; instances are immutable."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (datetimes as RFC 3339 strings)."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


class Feature(_Strict, kw_only=True, frozen=True):
    """One input column, in the training CSV's order (the target removed)."""

    name: Annotated[str, Meta(min_length=1)]
    onnx_input: Annotated[
        str,
        Meta(min_length=1, description="Graph input fed with this column (skl2onnx sanitizes)."),
    ]
    kind: Literal["numeric", "categorical"]
    dtype: Literal["float32", "string"]
    nullable: Annotated[bool, Meta(description="True when the model imputes a missing value.")]
    categories: (
        Annotated[
            list[str],
            Meta(
                description="Categories with their own one-hot column; any other (unseen, or "
                "rarer than the max_categories most frequent in training) is encoded as all-zero."
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        expected = "float32" if self.kind == "numeric" else "string"
        if self.dtype != expected:
            raise ValueError(f"feature {self.name!r}: {self.kind} features have dtype {expected}")


class Signature(_Strict, kw_only=True, frozen=True):
    """What the model takes: one ONNX input of shape [N, 1] per feature (``Feature.onnx_input``)."""

    features: Annotated[list[Feature], Meta(min_length=1)]
    target: str
    missing_values: (
        Annotated[
            list[str],
            Meta(
                description="Cell texts read as missing besides empty cells "
                "(onnxkit.contract.values); absent in manifests before 1.1, which read the "
                "default tokens."
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        for attribute in ("name", "onnx_input"):
            names = [getattr(f, attribute) for f in self.features]
            if len(set(names)) != len(names):
                raise ValueError(f"feature {attribute}s must be unique")

    @property
    def feature_names(self) -> list[str]:
        """Feature names in signature order."""
        return [f.name for f in self.features]


class Outputs(_Strict, kw_only=True, frozen=True):
    """ONNX output names: ``label`` and ``probabilities`` (classification) or ``value``."""

    label: str | None = None
    probabilities: str | None = None
    value: str | None = None


class FileInfo(_Strict, kw_only=True, frozen=True):
    """A file of the artifact."""

    size_bytes: NonNegative
    sha256: Sha256


class Serving(_Strict, kw_only=True, frozen=True):
    """The file the inference function loads."""

    file: str
    variant: Variant
    sha256: Sha256
    size_bytes: Positive


class Parity(_Strict, kw_only=True, frozen=True):
    """How an ONNX variant agrees with scikit-learn on the held-out rows."""

    rows: NonNegative
    label_agreement: Annotated[float, Meta(ge=0, le=1)] | None = None
    max_abs_diff: Annotated[
        float, Meta(ge=0, description="Of probabilities, or of predicted values.")
    ]


class RowIndependence(_Strict, kw_only=True, frozen=True):
    """The training job's probe: are a row's outputs the same whatever else is in the call?

    Held-out rows are scored one by one and as one batch, and the batch again with extreme
    rows appended (each numeric feature at +/-100x its largest training magnitude, clipped to
    float32; categoricals their most frequent category). A variant that fails is never served.
    """

    rows: Annotated[int, Meta(ge=0, description="Held-out rows probed.")]
    extreme_rows: NonNegative
    max_abs_diff_alone: Annotated[
        float, Meta(ge=0, description="One row per call vs all in one call.")
    ]
    max_abs_diff_extreme: Annotated[
        float, Meta(ge=0, description="The batch vs the batch plus extremes.")
    ]
    labels_changed: Annotated[
        int, Meta(ge=0, description="Labels that differ in either comparison.")
    ]
    bound: Annotated[
        float, Meta(ge=0, description="Largest difference allowed (relative to max(1, |y|)).")
    ]
    passed: bool


class VariantReport(_Strict, kw_only=True, frozen=True):
    """Metrics, size and parity of one model variant."""

    metrics: dict[str, float]
    size_bytes: int | None = None
    parity: Parity | None = None
    single_row_latency_us: float | None = None
    # Absent for scikit-learn and in manifests before the probe.
    row_independence: RowIndependence | None = None


class CompressionVariant(_Strict, kw_only=True, frozen=True):
    """One smaller variant of the fitted model the training job tried, as a served file.

    Scored on the same held-out rows as every other variant, against scikit-learn's answers;
    the latencies are medians on one thread in the training job (compare them within a job).
    """

    name: Annotated[str, Meta(min_length=1)]
    description: str
    size_bytes: Positive
    load_ms: Annotated[float, Meta(ge=0, description="Median onnxruntime session creation.")]
    single_row_latency_us: NonNegativeFloat | None = None
    batch_rows: NonNegative
    batch_latency_us: (
        Annotated[float, Meta(ge=0, description="Median of one call with batch_rows rows.")] | None
    ) = None
    metrics: dict[str, float]
    parity: Parity
    row_independence: RowIndependence | None = None
    chosen: bool
    reason: Annotated[str, Meta(description="Why it was, or was not, chosen.")]


class Compression(_Strict, kw_only=True, frozen=True):
    """The training job's search for a smaller (or faster) model within the int8 tolerance.

    Absent in manifests before 1.3 and when the ``compression`` hyperparameter is ``none``.
    ``original`` is the fitted model itself; the chosen variant is the one that serves (after
    the int8 step, which its figures include where the model has weights to quantize).
    """

    optimize_for: Literal["size", "latency"]
    chosen: str
    reason: str
    seconds: Annotated[float, Meta(ge=0, description="Training time the search added.")]
    variants: list[CompressionVariant]

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("compression variant names must be unique")
        chosen = [v.name for v in self.variants if v.chosen]
        if self.variants and chosen != [self.chosen]:
            raise ValueError(f"compression marks {chosen} as chosen, not [{self.chosen!r}]")


class Baseline(_Strict, kw_only=True, frozen=True):
    """A naive model (scikit-learn's DummyClassifier / DummyRegressor) fitted on the same
    training rows and scored on the same held-out rows: what the quality gate's lift is
    measured from."""

    strategy: Literal["prior", "most_frequent", "mean", "median"]
    metrics: dict[str, float]
    # Held-out rows per class (classification), keyed by str(class): sets the gate's
    # allowance for chance.
    class_support: dict[str, int] | None = None


class Quantization(_Strict, kw_only=True, frozen=True):
    """Whether the serving graph is int8, and why."""

    # "dynamic" is no longer written (its per-call activation scale made rows depend on each
    # other) but stays readable in older manifests.
    method: Literal["weight", "qdq", "dynamic", "none"]
    quantized_operators: dict[str, int] = msgspec.field(default_factory=dict)
    decision: Variant
    reason: str
    tolerance: dict[str, float]


class DataFingerprint(_Strict, kw_only=True, frozen=True):
    """What the model was trained on."""

    rows: Positive
    columns: Positive
    files: dict[str, Sha256]
    sha256: Sha256
    train_rows: Positive
    validation_rows: Positive
    validation_source: Literal["channel", "split"]
    # What the training job noticed in the data and worked around (also in its log):
    # missing-value tokens in categorical columns, bucketed or id-like columns.
    warnings: list[str] = msgspec.field(default_factory=list)


class FeatureImportance(_Strict, kw_only=True, frozen=True):
    """How much the metric drops when one feature's held-out values are shuffled."""

    name: Annotated[str, Meta(min_length=1)]
    mean: Annotated[float, Meta(description="Mean drop over the repeats (negative: noise).")]
    std: NonNegativeFloat

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std)):
            raise ValueError(f"importance of {self.name!r} is not a finite number")


class Importance(_Strict, kw_only=True, frozen=True):
    """Global feature importance: scikit-learn's permutation importance of the fitted Pipeline
    on (a seeded sample of) the held-out rows, scored with the primary metric."""

    method: Literal["permutation"]
    metric: str
    rows: Annotated[int, Meta(gt=0, description="Held-out rows scored (a seeded sample).")]
    held_out_rows: Positive
    repeats: Positive
    random_state: int
    # In signature order, one per feature; ``ranked()`` sorts them.
    features: Annotated[list[FeatureImportance], Meta(min_length=1)]

    def __post_init__(self) -> None:
        if self.rows > self.held_out_rows:
            raise ValueError("importance scored more rows than were held out")

    def ranked(self) -> list[FeatureImportance]:
        """Features, the largest drop first (ties in signature order)."""
        return sorted(self.features, key=lambda f: -f.mean)


class Manifest(_Strict, kw_only=True, frozen=True):
    """Everything a reader needs to serve, evaluate or promote a model."""

    schema_version: str = SCHEMA_VERSION
    model_name: Annotated[str, Meta(pattern=f"^{MODEL_NAME_PATTERN}$")]
    model_version: Annotated[str, Meta(pattern=f"^{MODEL_VERSION_PATTERN}$")]
    created_at: datetime
    task: Task
    estimator: str
    signature: Signature
    # All strings or all integers (msgspec unions take one array type, so the rule is below).
    classes: list[str | int] | None = None
    outputs: Outputs
    serving: Serving
    files: dict[str, FileInfo]
    variants: dict[Literal["sklearn", "fp32", "int8"], VariantReport]
    # Absent in manifests written before the baseline was measured.
    baseline: Baseline | None = None
    quantization: Quantization
    hyperparameters: dict[str, Scalar]
    library_versions: dict[str, str]
    data: DataFingerprint
    # Absent in manifests before 1.2 (and in any that did not measure it).
    importance: Importance | None = None
    # Absent in manifests before 1.3 and when compression is off.
    compression: Compression | None = None

    def __post_init__(self) -> None:
        problem = model_name_problem(self.model_name)
        if problem:
            raise ValueError(problem)
        if _MODEL_VERSION.fullmatch(self.model_version) is None:
            raise ValueError(f"{self.model_version!r} is not a model version")
        if self.schema_version.split(".", maxsplit=1)[0] != SCHEMA_VERSION.split(".")[0]:
            raise ValueError(
                f"unsupported manifest schema {self.schema_version}; this reader knows "
                f"{SCHEMA_VERSION}"
            )
        if self.classes is not None and len({type(c) for c in self.classes}) > 1:
            raise ValueError("classes are all strings or all integers")
        if self.task == "classification":
            if not self.classes or len(self.classes) < 2:
                raise ValueError("a classification manifest lists at least two classes")
            if not (self.outputs.label and self.outputs.probabilities):
                raise ValueError("a classification manifest names label and probabilities outputs")
        elif not self.outputs.value:
            raise ValueError("a regression manifest names the value output")
        if self.serving.file not in self.files:
            raise ValueError(f"serving file {self.serving.file!r} is not among the files")
        listed = self.files[self.serving.file]
        if (listed.sha256, listed.size_bytes) != (self.serving.sha256, self.serving.size_bytes):
            raise ValueError("serving digest or size disagrees with the file list")
        if self.serving.variant != self.quantization.decision:
            raise ValueError("serving variant disagrees with the quantization decision")
        if self.importance is not None and [f.name for f in self.importance.features] != (
            self.signature.feature_names
        ):
            raise ValueError("importance lists the signature's features, in its order")

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """A validated manifest from parsed JSON; ManifestError with one line otherwise."""
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as error:
            raise ManifestError(f"invalid manifest: {error}") from None

    @property
    def primary_metric(self) -> str:
        """The metric a quality gate looks at first."""
        return "accuracy" if self.task == "classification" else "r2"

    @property
    def serving_metrics(self) -> dict[str, float]:
        """Metrics of the variant that is served."""
        return self.variants[self.serving.variant].metrics

    def public(self) -> dict[str, Any]:
        """The part the inference API shows at ``GET /model``."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "created_at": self.created_at.isoformat(),
            "task": self.task,
            "estimator": self.estimator,
            "signature": self.signature.to_dict(),
            "classes": self.classes,
            "serving": self.serving.to_dict(),
            "metrics": {name: report.metrics for name, report in self.variants.items()},
            "quantization": {
                "decision": self.quantization.decision,
                "reason": self.quantization.reason,
            },
            "importance": self.importance.to_dict() if self.importance else None,
            # What the metrics are measured against: the naive model on the same rows.
            "baseline": self.baseline.to_dict() if self.baseline else None,
        }


_DECODER: Final = msgspec.json.Decoder(Manifest)


def parse_manifest(raw: bytes | str) -> Manifest:
    """Validate manifest JSON; any problem is one ManifestError line naming where it is."""
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError as error:  # ValidationError is a DecodeError
        raise ManifestError(f"invalid manifest: {error}") from None


def load_manifest(model_dir: Path) -> Manifest:
    """Read and validate ``manifest.json`` from a model directory."""
    path = Path(model_dir) / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ManifestError(f"cannot read {path}: {error.strerror}") from None
    return parse_manifest(raw)


def encode_manifest(manifest: Manifest) -> bytes:
    """The manifest's JSON bytes (fields in definition order, indented), validated first."""
    raw = msgspec.json.encode(manifest)
    parse_manifest(raw)  # a struct built in Python skipped the type checks: run them now
    return msgspec.json.format(raw, indent=2) + b"\n"


def validated(manifest: Manifest) -> Manifest:
    """The manifest with every type check run and every nested part a struct: a manifest
    built in Python from plain dicts comes back as decoded structs, or ManifestError."""
    return parse_manifest(msgspec.json.encode(manifest))


def write_manifest(manifest: Manifest, model_dir: Path) -> Path:
    """Write ``manifest.json`` into a model directory (after validating it)."""
    path = Path(model_dir) / MANIFEST_FILE
    path.write_bytes(encode_manifest(manifest))
    return path


def json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema, for readers outside Python."""
    schema: dict[str, Any] = msgspec.json.schema(Manifest)
    schema["title"] = f"onnxkit model manifest {SCHEMA_VERSION}"
    return schema
