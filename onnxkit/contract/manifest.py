"""The model manifest: the self-describing contract of a training job's artifact.

The training job writes it; the inference function, the pipeline steps and the CLI read it
and validate it with :func:`load_manifest` / :meth:`Manifest.model_validate_json`. A change
that breaks readers bumps ``SCHEMA_VERSION``'s major number.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION: Final = "1.1"
MANIFEST_FILE: Final = "manifest.json"
SERVING_FILE: Final = "model.onnx"
FP32_FILE: Final = "model.fp32.onnx"

Task = Literal["classification", "regression"]
Variant = Literal["fp32", "int8"]
Scalar = str | int | float | bool | None
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    """One input column, in the training CSV's order (the target removed)."""

    name: str = Field(min_length=1)
    onnx_input: str = Field(
        min_length=1, description="Graph input fed with this column (skl2onnx sanitizes names)."
    )
    kind: Literal["numeric", "categorical"]
    dtype: Literal["float32", "string"]
    nullable: bool = Field(description="True when the model imputes a missing value.")
    categories: list[str] | None = Field(
        default=None,
        description="Categories with their own one-hot column; any other (unseen, or rarer "
        "than the max_categories most frequent in training) is encoded as all-zero.",
    )

    @model_validator(mode="after")
    def _dtype_matches_kind(self) -> Feature:
        expected = "float32" if self.kind == "numeric" else "string"
        if self.dtype != expected:
            raise ValueError(f"feature {self.name!r}: {self.kind} features have dtype {expected}")
        return self


class Signature(_Strict):
    """What the model takes: one ONNX input of shape [N, 1] per feature (``Feature.onnx_input``)."""

    features: list[Feature] = Field(min_length=1)
    target: str
    missing_values: list[str] | None = Field(
        default=None,
        description="Cell texts read as missing besides empty cells (onnxkit.contract.values); "
        "absent in manifests before 1.1, which read the default tokens.",
    )

    @field_validator("features")
    @classmethod
    def _unique_names(cls, features: list[Feature]) -> list[Feature]:
        for attribute in ("name", "onnx_input"):
            names = [getattr(f, attribute) for f in features]
            if len(set(names)) != len(names):
                raise ValueError(f"feature {attribute}s must be unique")
        return features

    @property
    def feature_names(self) -> list[str]:
        """Feature names in signature order."""
        return [f.name for f in self.features]


class Outputs(_Strict):
    """ONNX output names: ``label`` and ``probabilities`` (classification) or ``value``."""

    label: str | None = None
    probabilities: str | None = None
    value: str | None = None


class FileInfo(_Strict):
    """A file of the artifact."""

    size_bytes: int = Field(ge=0)
    sha256: Sha256


class Serving(_Strict):
    """The file the inference function loads."""

    file: str
    variant: Variant
    sha256: Sha256
    size_bytes: int = Field(gt=0)


class Parity(_Strict):
    """How an ONNX variant agrees with scikit-learn on the held-out rows."""

    rows: int = Field(ge=0)
    label_agreement: float | None = Field(default=None, ge=0, le=1)
    max_abs_diff: float = Field(ge=0, description="Of probabilities, or of predicted values.")


class RowIndependence(_Strict):
    """The training job's probe: are a row's outputs the same whatever else is in the call?

    Held-out rows are scored one by one and as one batch, and the batch again with extreme
    rows appended (each numeric feature at +/-100x its largest training magnitude, clipped to
    float32; categoricals their most frequent category). A variant that fails is never served.
    """

    rows: int = Field(ge=0, description="Held-out rows probed.")
    extreme_rows: int = Field(ge=0)
    max_abs_diff_alone: float = Field(ge=0, description="One row per call vs all in one call.")
    max_abs_diff_extreme: float = Field(ge=0, description="The batch vs the batch plus extremes.")
    labels_changed: int = Field(ge=0, description="Labels that differ in either comparison.")
    bound: float = Field(ge=0, description="Largest difference allowed (relative to max(1, |y|)).")
    passed: bool


class VariantReport(_Strict):
    """Metrics, size and parity of one model variant."""

    metrics: dict[str, float]
    size_bytes: int | None = None
    parity: Parity | None = None
    single_row_latency_us: float | None = None
    row_independence: RowIndependence | None = Field(
        default=None, description="Absent for scikit-learn and in manifests before the probe."
    )


class Baseline(_Strict):
    """A naive model (scikit-learn's DummyClassifier / DummyRegressor) fitted on the same
    training rows and scored on the same held-out rows: what the quality gate's lift is
    measured from."""

    strategy: Literal["prior", "most_frequent", "mean", "median"]
    metrics: dict[str, float]
    class_support: dict[str, int] | None = Field(
        default=None,
        description="Held-out rows per class (classification), keyed by str(class): sets the "
        "gate's allowance for chance.",
    )


class Quantization(_Strict):
    """Whether the serving graph is int8, and why."""

    # "dynamic" is no longer written (its per-call activation scale made rows depend on each
    # other) but stays readable in older manifests.
    method: Literal["weight", "qdq", "dynamic", "none"]
    quantized_operators: dict[str, int] = Field(default_factory=dict)
    decision: Variant
    reason: str
    tolerance: dict[str, float]


class DataFingerprint(_Strict):
    """What the model was trained on."""

    rows: int = Field(gt=0)
    columns: int = Field(gt=0)
    files: dict[str, Sha256]
    sha256: Sha256
    train_rows: int = Field(gt=0)
    validation_rows: int = Field(gt=0)
    validation_source: Literal["channel", "split"]
    warnings: list[str] = Field(
        default_factory=list,
        description="What the training job noticed in the data and worked around (also in its "
        "log): missing-value tokens in categorical columns, bucketed or id-like columns.",
    )


class Manifest(_Strict):
    """Everything a reader needs to serve, evaluate or promote a model."""

    schema_version: str = SCHEMA_VERSION
    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    model_version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    created_at: datetime
    task: Task
    estimator: str
    signature: Signature
    classes: list[str] | list[int] | None = None
    outputs: Outputs
    serving: Serving
    files: dict[str, FileInfo]
    variants: dict[Literal["sklearn", "fp32", "int8"], VariantReport]
    baseline: Baseline | None = Field(
        default=None, description="Absent in manifests written before the baseline was measured."
    )
    quantization: Quantization
    hyperparameters: dict[str, Scalar]
    library_versions: dict[str, str]
    data: DataFingerprint

    @field_validator("schema_version")
    @classmethod
    def _known_major(cls, version: str) -> str:
        if version.split(".", maxsplit=1)[0] != SCHEMA_VERSION.split(".")[0]:
            raise ValueError(
                f"unsupported manifest schema {version}; this reader knows {SCHEMA_VERSION}"
            )
        return version

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
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
        return self

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
            "signature": self.signature.model_dump(mode="json"),
            "classes": self.classes,
            "serving": self.serving.model_dump(mode="json"),
            "metrics": {name: report.metrics for name, report in self.variants.items()},
            "quantization": {
                "decision": self.quantization.decision,
                "reason": self.quantization.reason,
            },
        }


class ManifestError(ValueError):
    """A manifest is missing, unreadable or invalid."""


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def parse_manifest(raw: bytes | str) -> Manifest:
    """Validate manifest JSON, turning pydantic's report into one readable ManifestError."""
    try:
        return Manifest.model_validate_json(raw)
    except ValueError as error:  # pydantic.ValidationError is a ValueError
        first = str(error).splitlines()
        raise ManifestError(f"invalid manifest: {' '.join(first[:3])}") from None


def load_manifest(model_dir: Path) -> Manifest:
    """Read and validate ``manifest.json`` from a model directory."""
    path = Path(model_dir) / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ManifestError(f"cannot read {path}: {error.strerror}") from None
    return parse_manifest(raw)


def write_manifest(manifest: Manifest, model_dir: Path) -> Path:
    """Write ``manifest.json`` (sorted, indented) into a model directory."""
    path = Path(model_dir) / MANIFEST_FILE
    path.write_text(manifest.model_dump_json(indent=2) + "\n")
    return path


def json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema, for readers outside Python."""
    schema = Manifest.model_json_schema()
    schema["title"] = f"onnxkit model manifest {SCHEMA_VERSION}"
    return schema
