"""Per-environment settings of a deployed (or local) onnxkit kit: typed, validated, no aws_cdk.

The CDK app picks an environment with ``-c env=<name>`` and may override single settings with
dotted context keys (``-c lambda.memory_mb=2048``); the local workflow reads the same object, so
a threshold changed here changes both. Every bad value is reported as one line naming the
setting (:class:`ConfigError`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from onnxkit.contract import layout
from onnxkit.contract.drift import DriftThresholds
from onnxkit.contract.gate import QualityGate

ENVIRONMENTS: Final = ("local", "dev", "prod")
DEFAULT_ENVIRONMENT: Final = "dev"
# Hyperparameters the pipeline sets itself; a config or a run may not override them.
RESERVED_HYPERPARAMETERS: Final = frozenset({"model_name"})
# Hyperparameters with a typed setting of their own (training.<name>).
_TYPED_HYPERPARAMETERS: Final = frozenset({"compression", "optimize_for"})
_REGION = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$"
_SCHEDULE = r"^(rate\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\)|cron\([^()]+\))$"
# CloudWatch Logs accepts only these retention periods.
_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)


class ConfigError(ValueError):
    """A setting is missing or invalid; ``str()`` is one line naming it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingSettings(_Section):
    """The SageMaker training job."""

    # Memory decides what data fits: training takes about 3 bytes per CSV byte plus 384 MiB
    # (training_jobs/data.py), so ml.m5.large (8 GiB) holds about 2.5 GB of CSV, ml.m5.xlarge
    # 5.4 GB, ml.m5.2xlarge 11 GB, ml.m5.4xlarge 22 GB (README: The training job). A random
    # forest is checked again after its fit: converting it takes about 1.2 kB a tree node.
    instance_type: str = Field("ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[0-9]*[a-z]+$")
    # The prebuilt scikit-learn container fits on one host; a second one would be paid for idle.
    instance_count: int = Field(1, ge=1)
    volume_size_gb: int = Field(10, ge=1, le=1024)
    max_runtime_minutes: int = Field(60, ge=1, le=5 * 24 * 60)
    use_spot: bool = True
    # With spot, the longest the job may wait for capacity plus run; at least the runtime.
    max_wait_minutes: int | None = Field(None, ge=1, le=5 * 24 * 60)
    checkpointing: bool = True
    framework_version: str = Field("1.9-0", pattern=r"^[0-9]+\.[0-9]+-[0-9]+$")
    estimator: str = Field("random_forest", min_length=1, description="train.py's --model.")
    target: str | None = Field(None, min_length=1, description="Default label column.")
    compression: Literal["auto", "none"] = Field(
        "auto",
        description="train.py's --compression: auto tries smaller variants of the fitted model "
        "(fewer or pruned trees, pruned hidden units) and serves one within the int8 "
        "tolerance; none serves the fitted model as it is.",
    )
    optimize_for: Literal["size", "latency"] = Field(
        "size",
        description="train.py's --optimize_for: which variant compression=auto serves, the "
        "smallest file or the fastest 1,000-row call.",
    )
    hyperparameters: dict[str, str] = Field(default_factory=dict)

    @field_validator("hyperparameters")
    @classmethod
    def _names(cls, values: dict[str, str]) -> dict[str, str]:
        for key in values:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", key):
                raise ValueError(f"hyperparameter name {key!r} is not snake_case")
            if key in RESERVED_HYPERPARAMETERS or key.startswith("sagemaker_"):
                raise ValueError(f"hyperparameter {key!r} is set by the pipeline")
            if key in _TYPED_HYPERPARAMETERS:
                raise ValueError(f"hyperparameter {key!r}: set training.{key} instead")
        return values

    @field_validator("instance_count")
    @classmethod
    def _one_instance(cls, count: int) -> int:
        if count != 1:
            raise ValueError(
                "SageMaker's scikit-learn container trains on one instance; "
                "choose a larger training.instance_type instead"
            )
        return count

    @model_validator(mode="after")
    def _spot(self) -> TrainingSettings:
        if self.max_wait_minutes is not None and self.max_wait_minutes < self.max_runtime_minutes:
            raise ValueError(
                "max_wait_minutes: must be at least max_runtime_minutes "
                f"({self.max_runtime_minutes})"
            )
        return self

    @property
    def max_wait(self) -> int:
        """Minutes a spot job may wait and run (twice the runtime unless set)."""
        return self.max_wait_minutes or min(2 * self.max_runtime_minutes, 5 * 24 * 60)

    def job_hyperparameters(self, model_name: str) -> dict[str, str]:
        """What every training job gets before the run's own hyperparameters."""
        base = {
            "model": self.estimator,
            "compression": self.compression,
            "optimize_for": self.optimize_for,
            **self.hyperparameters,
        }
        if self.target:
            base["target"] = self.target
        return {**base, "model_name": model_name}


class LambdaSettings(_Section):
    """The inference function."""

    memory_mb: int = Field(1024, ge=128, le=10240)
    architecture: Literal["arm64", "x86_64"] = "arm64"
    timeout_seconds: int = Field(10, ge=1, le=29, description="API Gateway stops at 29 s.")
    reserved_concurrency: int | None = Field(None, ge=1, le=1000)
    snapstart: bool = True
    system_log_level: Literal["DEBUG", "INFO", "WARN"] = Field(
        "WARN",
        description="Lambda's own log lines: WARN drops START/END/REPORT (docs/deploy.md).",
    )
    max_instances: int = Field(
        layout.MAX_INSTANCES, ge=1, le=100_000, description="Rows per /predict call."
    )
    max_explain_instances: int = Field(
        layout.MAX_EXPLAIN_INSTANCES,
        ge=1,
        le=1_000,
        description="Rows per /explain call: each costs ~16k model rows (README, Explanations).",
    )
    request_metrics: Literal["auto", "on", "off"] = Field(
        "auto",
        description="The function's per-request EMF line (Instances, Latency, errors): auto is "
        "on behind the REST API, off behind http and function_url, whose own AWS metrics the "
        "alarms read (docs/deploy.md).",
    )


class ApiSettings(_Section):
    """The front door of the ``live`` alias: a REST API, an HTTP API or a function URL."""

    kind: layout.ApiKind = Field(
        "rest", description="rest (API Gateway REST), http (API Gateway HTTP API) or function_url."
    )
    auth_mode: Literal["iam", "api_key"] = "iam"
    throttle_rate_limit: float = Field(
        50, gt=0, le=10_000, description="Requests per second (rest, http)."
    )
    throttle_burst_limit: int = Field(100, ge=1, le=5_000, description="rest, http.")
    quota_per_day: int | None = Field(None, ge=1, description="api_key mode only.")

    @model_validator(mode="after")
    def _kind(self) -> ApiSettings:
        if self.auth_mode == "api_key" and self.kind != "rest":
            raise ValueError(
                "kind: auth_mode=api_key needs kind=rest (HTTP APIs and function URLs have "
                "no API keys or usage plans); use auth_mode=iam"
            )
        return self


class ScoringSettings(_Section):
    """Batch scoring: the scoring function and the Distributed Map over the input's parts.

    The scoring function is the inference code under its own name, so its reserved concurrency
    (= ``max_concurrency``) caps what batch runs take from the account's Lambda concurrency and
    the inference function's own capacity is never spent on them.
    """

    memory_mb: int = Field(2048, ge=512, le=10240)
    timeout_seconds: int = Field(300, ge=30, le=900, description="One child: its parts.")
    max_concurrency: int = Field(
        50, ge=1, le=1000, description="Children at once; also the function's reserved concurrency."
    )
    tolerated_failure_percentage: float = Field(0, ge=0, le=100)
    part_mb: int = Field(16, ge=1, le=256, description="Input bytes per part (unit of work).")
    parts_per_child: int = Field(1, ge=1, le=100)
    output_retention_days: int = Field(30, ge=1, le=3650, description="scoring/ expires after.")


class AlarmSettings(_Section):
    """CloudWatch alarms on the serving path."""

    p99_latency_ms: float = Field(1000, gt=0, le=29_000)
    api_5xx_count: int = Field(5, ge=1, description="5xx responses per period.")
    throttle_count: int = Field(10, ge=1, description="Throttled Lambda invocations per period.")
    lambda_error_count: int = Field(5, ge=1)
    period_minutes: Literal[1, 5, 15, 60] = 5
    evaluation_periods: int = Field(2, ge=1, le=24)
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


_DRIFT: Final = DriftThresholds()  # the defaults are the contract's


class DriftSettings(_Section):
    """When captured requests count as drifted from the training data (``onnxkit drift``), and
    the cloud's scheduled check (how often, over which window, what it does on drift).

    Each measure must exceed its threshold and also what chance gives at the capture's and the
    reference's sizes with probability ``significance`` (onnxkit/contract/drift.py).
    """

    psi: float = Field(
        _DRIFT.psi, gt=0, le=10, description="Population stability index of a feature."
    )
    missing_rate: float = Field(
        _DRIFT.missing_rate, gt=0, le=1, description="Absolute change of a missing share."
    )
    unseen_rate: float = Field(
        _DRIFT.unseen_rate,
        gt=0,
        le=1,
        description="Share of categories outside the reference's, above its own.",
    )
    prediction_psi: float = Field(
        _DRIFT.prediction_psi, gt=0, le=10, description="Index of the predictions."
    )
    significance: float = Field(
        _DRIFT.significance,
        gt=0,
        lt=0.5,
        description="Chance of a measure passing its chance limit with no drift.",
    )

    # The scheduled check in the cloud (infra/constructs/drift_monitor.py).
    interval_hours: int = Field(
        24,
        ge=1,
        le=168,
        description="Hours between scheduled checks; also the drift alarm's period.",
    )
    window_hours: int = Field(
        24, ge=1, le=168, description="Hours of capture each check reads (complete UTC hours)."
    )
    min_rows: int = Field(
        100, ge=10, description="Fewer captured rows of the live version: not enough data."
    )
    max_rows: int = Field(
        50_000,
        ge=100,
        le=1_000_000,
        description="Rows a check reads at most (newest hours first): bounds its memory.",
    )
    retrain_on_drift: bool = Field(
        False, description="Start the training state machine on data/train/ when drift is found."
    )

    def thresholds(self) -> DriftThresholds:
        """The contract's thresholds."""
        return DriftThresholds(**self.model_dump(include=set(DriftThresholds.__struct_fields__)))


class CaptureSettings(_Section):
    """Request capture: a sample of the deployed function's answered ``/predict`` calls (each
    row's features, prediction, probabilities, model version, time and request id; never
    headers or credentials) lands in the artifact bucket under ``capture/`` for the drift check.

    On by default at 1%: the bucket already holds the training data these rows resemble (same
    key, same access), a captured call costs the function about 30 us (so 1% adds about 0.3 us
    to the average one-row call, within its noise; 5% measured 1.04x), a million captured records
    cost about a dollar (docs/deploy.md), and drift needs a few hundred rows per window (raise
    the rate for low traffic). 0 turns capture off and creates no capture resources.
    """

    sample_rate: float = Field(
        0.01, ge=0, le=1, description="Share of answered /predict calls captured (all rows)."
    )
    retention_days: int = Field(
        30, ge=1, le=3650, description="capture/ objects expire after this many days."
    )
    buffer_seconds: int = Field(
        300,
        ge=60,
        le=900,
        description="Firehose writes an object at least this often while records arrive.",
    )

    @property
    def enabled(self) -> bool:
        """Whether anything is captured (and the capture resources exist)."""
        return self.sample_rate > 0


UNSET_INTENDED_USE: Final = "Not stated: set card.intended_use in the config."
UNSET_LIMITATIONS: Final = "Not stated: set card.limitations in the config."


class CardSettings(_Section):
    """What the model card (``onnxkit card``) says the model is for; the rest comes from the
    manifest. The defaults say they are unset rather than guess."""

    intended_use: str = Field(UNSET_INTENDED_USE, min_length=1)
    limitations: str = Field(UNSET_LIMITATIONS, min_length=1)


class OnnxKitConfig(_Section):
    """Everything one environment needs."""

    env: str = Field(pattern=r"^[a-z][a-z0-9]{0,15}$")
    region: str = Field("us-east-1", pattern=_REGION)
    model_name: str = Field(
        "onnxkit-model",
        pattern=f"^{layout.MODEL_NAME_PATTERN}$",
        description="Also the training job name prefix, so short and DNS-like.",
    )
    gate: QualityGate = Field(default_factory=lambda: QualityGate.model_validate({}))
    training: TrainingSettings = Field(default_factory=lambda: TrainingSettings.model_validate({}))
    function: LambdaSettings = Field(
        default_factory=lambda: LambdaSettings.model_validate({}), alias="lambda"
    )
    api: ApiSettings = Field(default_factory=lambda: ApiSettings.model_validate({}))
    alarms: AlarmSettings = Field(default_factory=lambda: AlarmSettings.model_validate({}))
    scoring: ScoringSettings = Field(default_factory=lambda: ScoringSettings.model_validate({}))
    capture: CaptureSettings = Field(default_factory=lambda: CaptureSettings.model_validate({}))
    drift: DriftSettings = Field(default_factory=lambda: DriftSettings.model_validate({}))
    card: CardSettings = Field(default_factory=lambda: CardSettings.model_validate({}))
    retraining_schedule: str | None = None
    removal_policy: Literal["destroy", "retain"] = "destroy"
    log_retention_days: int = 30
    noncurrent_version_days: int = Field(30, ge=1, le=3650)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("retraining_schedule")
    @classmethod
    def _schedule(cls, expression: str | None) -> str | None:
        if expression is not None and not re.fullmatch(_SCHEDULE, expression):
            raise ValueError("expected an EventBridge rate(...) or cron(...) expression")
        return expression

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, days: int) -> int:
        if days not in _RETENTION_DAYS:
            raise ValueError(f"must be one of {', '.join(map(str, _RETENTION_DAYS))}")
        return days

    @model_validator(mode="after")
    def _consistent(self) -> OnnxKitConfig:
        if self.retraining_schedule and not self.training.target:
            raise ValueError("training.target: a retraining schedule needs the label column")
        if self.drift.retrain_on_drift and not self.training.target:
            raise ValueError("training.target: retraining on drift needs the label column")
        if self.drift.min_rows > self.drift.max_rows:
            raise ValueError("drift.min_rows: must not exceed drift.max_rows")
        if self.api.quota_per_day is not None and self.api.auth_mode != "api_key":
            raise ValueError("api.quota_per_day: needs api.auth_mode=api_key")
        if self.api.kind == "function_url" and self.function.reserved_concurrency is None:
            raise ValueError(
                "api.kind: a function URL has no throttling of its own; set "
                "lambda.reserved_concurrency to bound its concurrency"
            )
        return self

    @property
    def request_metrics(self) -> bool:
        """Whether the inference function writes its per-request EMF metrics line."""
        setting = self.function.request_metrics
        return self.api.kind == "rest" if setting == "auto" else setting == "on"

    @property
    def retained(self) -> bool:
        """Whether stateful resources outlive their stack (and stacks are protected)."""
        return self.removal_policy == "retain"

    def stack_name(self, part: layout.StackPart) -> str:
        """This environment's stack of one part (onnxkit/contract/layout.py names them)."""
        return layout.stack_name(self.env, part)


# What differs from the defaults, per environment. prod keeps its data and pays for capacity.
PRESETS: Final[Mapping[str, Mapping[str, Any]]] = {
    "local": {"training": {"use_spot": False, "checkpointing": False}},
    "dev": {},
    "prod": {
        "removal_policy": "retain",
        "log_retention_days": 365,
        "noncurrent_version_days": 90,
        "training": {"instance_type": "ml.m5.xlarge", "max_runtime_minutes": 120},
        "lambda": {"memory_mb": 2048, "reserved_concurrency": 100},
        "api": {"throttle_rate_limit": 200, "throttle_burst_limit": 400},
        "alarms": {"p99_latency_ms": 500, "evaluation_periods": 3},
        "scoring": {"max_concurrency": 200},
        "capture": {"retention_days": 90},
    },
}


def _field_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location)


def _one_line(error: ValidationError, given: Mapping[str, Any]) -> str:
    first = error.errors()[0]
    path = _field_path(first["loc"]) or "config"
    message = str(first["msg"]).removeprefix("Value error, ")
    # Cross-field validators start their message with the setting they blame.
    named = re.match(r"^([a-z_0-9]+(?:\.[a-z_0-9]+)*): (.*)$", message)
    if named:
        path = named.group(1) if path == "config" else f"{path}.{named.group(1)}"
        message = named.group(2)
    value = given.get(path, first.get("input"))
    shown = "" if isinstance(value, dict) else f"={value!r}"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more)" if more else ""
    return f"invalid setting {path}{shown}: {message}{suffix}"


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = target
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"invalid setting {dotted}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _decode(value: Any) -> Any:
    # CLI context values arrive as strings; JSON objects (hyperparameters) and null need parsing.
    if (isinstance(value, str) and value[:1] in "{[") or value == "null":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def setting_keys() -> frozenset[str]:
    """Every dotted setting name a context override may use."""
    keys: set[str] = set()
    for name, info in OnnxKitConfig.model_fields.items():
        key = info.alias or name
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.update(f"{key}.{sub}" for sub in annotation.model_fields)
        keys.add(key)
    return frozenset(keys)


def load_config(
    env: str | None = None, overrides: Mapping[str, Any] | None = None
) -> OnnxKitConfig:
    """The environment's settings with dotted overrides applied, validated.

    Raises ConfigError with one line naming the bad setting.
    """
    name = env or DEFAULT_ENVIRONMENT
    if name not in PRESETS:
        raise ConfigError(f"invalid setting env={name!r}: expected one of {', '.join(PRESETS)}")
    data: dict[str, Any] = json.loads(json.dumps(PRESETS[name]))
    data["env"] = name
    known = setting_keys()
    given: dict[str, Any] = {}
    for key, raw in sorted((overrides or {}).items()):
        if key not in known:
            raise ConfigError(f"invalid setting {key}: unknown setting")
        if key == "env":
            continue
        value = _decode(raw)
        given[key] = value
        _set_dotted(data, key, value)
    try:
        return OnnxKitConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_one_line(error, given)) from None


def overrides_from_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context entries that are settings (CDK adds its own keys, which are skipped)."""
    sections = {key.split(".")[0] for key in setting_keys() if "." in key}
    top = {key for key in setting_keys() if "." not in key}
    picked = {}
    for key, value in context.items():
        head = key.split(".")[0]
        if key in top or ("." in key and head in sections):
            picked[key] = value
    return picked
