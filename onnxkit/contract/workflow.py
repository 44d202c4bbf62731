"""The training workflow as data: its states, transitions, failure routes and step payloads.

Both runners are built from this module so they cannot drift apart: the CDK pipeline stack
turns it into a Step Functions state machine, and the local (laptop) runner walks the same
states in the same order with the same payloads. It imports neither aws_cdk nor boto3.

The happy path is ``Prepare -> Train -> Evaluate -> QualityGate -> Register -> Promote ->
NotifyPromoted -> Promoted``. A candidate below the bar goes ``QualityGate ->
NotifyRejected -> Rejected`` (a successful execution whose ``$.evaluation.passed`` is false).
Any task error goes to ``NotifyFailure -> Failed``; Promote is the only step that changes what
is served and it is all-or-nothing, so no route ends with a half-promoted model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NotRequired, Required, TypedDict

from onnxkit.contract.gate import QualityGate

# --- State names (the Step Functions console shows exactly these) -------------------------
PREPARE: Final = "Prepare"
TRAIN: Final = "Train"
EVALUATE: Final = "Evaluate"
QUALITY_GATE: Final = "QualityGate"
REGISTER: Final = "Register"
PROMOTE: Final = "Promote"
NOTIFY_PROMOTED: Final = "NotifyPromoted"
NOTIFY_REJECTED: Final = "NotifyRejected"
NOTIFY_FAILURE: Final = "NotifyFailure"
PROMOTED: Final = "Promoted"  # Succeed
REJECTED: Final = "Rejected"  # Succeed: the run worked, the candidate did not clear the bar
FAILED: Final = "Failed"  # Fail

# --- Where each step's result lands in the execution state (JSONPath) ---------------------
PREPARED_PATH: Final = "$.prepared"
TRAINING_PATH: Final = "$.training"
EVALUATION_PATH: Final = "$.evaluation"
REGISTRATION_PATH: Final = "$.registration"
PROMOTION_PATH: Final = "$.promotion"
NOTIFICATION_PATH: Final = "$.notification"
ERROR_PATH: Final = "$.error"  # {"Error": str, "Cause": str}, set by every Catch

StateKind = Literal["pass", "task", "choice", "succeed", "fail"]


@dataclass(frozen=True)
class Step:
    """One state: what it is, where it goes next, and where its failure goes."""

    name: str
    kind: StateKind
    description: str
    next: str | None = None
    result_path: str | None = None
    # Catch-all target for a task's errors (States.ALL); None for non-task states.
    on_error: str | None = None
    # Choice only: the state taken when the condition holds, and the default otherwise.
    when_true: str | None = None
    otherwise: str | None = None
    # Lambda handler (module.function) for Lambda tasks, inside the function bundle.
    handler: str | None = None
    retried_errors: tuple[str, ...] = field(default_factory=tuple)

    @property
    def can_fail(self) -> bool:
        """Whether the step can raise (and therefore has a Catch)."""
        return self.kind == "task"

    def successors(self) -> tuple[str, ...]:
        """Every state reachable in one transition, the error route included."""
        targets = (self.next, self.when_true, self.otherwise, self.on_error)
        return tuple(t for t in targets if t is not None)


EVALUATE_HANDLER: Final = "functions.pipeline.handlers.evaluate"
PROMOTE_HANDLER: Final = "functions.pipeline.handlers.promote"
# The condition of the QualityGate Choice: Register when this boolean is true.
GATE_CONDITION_PATH: Final = f"{EVALUATION_PATH}.passed"

STEPS: Final[tuple[Step, ...]] = (
    Step(
        PREPARE,
        "pass",
        "Merge the execution's hyperparameters over the configured ones and name the training job.",
        next=TRAIN,
        result_path=PREPARED_PATH,
    ),
    Step(
        TRAIN,
        "task",
        "SageMaker training job (script mode, waits for completion); writes "
        "model.tar.gz with model.onnx and manifest.json.",
        next=EVALUATE,
        result_path=TRAINING_PATH,
        on_error=NOTIFY_FAILURE,
    ),
    Step(
        EVALUATE,
        "task",
        "Read the candidate's and production's manifests and apply the quality gate.",
        next=QUALITY_GATE,
        result_path=EVALUATION_PATH,
        on_error=NOTIFY_FAILURE,
        handler=EVALUATE_HANDLER,
    ),
    Step(
        QUALITY_GATE,
        "choice",
        "Register only a candidate that cleared the bar.",
        when_true=REGISTER,
        otherwise=NOTIFY_REJECTED,
    ),
    Step(
        REGISTER,
        "task",
        "Create an approved model package, with its metrics, in the model package group.",
        next=PROMOTE,
        result_path=REGISTRATION_PATH,
        on_error=NOTIFY_FAILURE,
        retried_errors=("SageMaker.SageMakerException", "ThrottlingException"),
    ),
    Step(
        PROMOTE,
        "task",
        "Copy the model to the model store, publish a Lambda version with "
        "its MODEL_URI, move the live alias, write the production pointer.",
        next=NOTIFY_PROMOTED,
        result_path=PROMOTION_PATH,
        on_error=NOTIFY_FAILURE,
        handler=PROMOTE_HANDLER,
    ),
    Step(
        NOTIFY_PROMOTED,
        "task",
        "Tell the topic a model was promoted.",
        next=PROMOTED,
        result_path=NOTIFICATION_PATH,
        on_error=FAILED,
    ),
    Step(
        NOTIFY_REJECTED,
        "task",
        "Tell the topic the candidate was rejected, and why.",
        next=REJECTED,
        result_path=NOTIFICATION_PATH,
        on_error=FAILED,
    ),
    Step(
        NOTIFY_FAILURE,
        "task",
        "Tell the topic the run failed, with the error.",
        next=FAILED,
        result_path=NOTIFICATION_PATH,
        on_error=FAILED,
    ),
    Step(PROMOTED, "succeed", "A new model is live."),
    Step(REJECTED, "succeed", "The candidate did not clear the bar; production is unchanged."),
    Step(FAILED, "fail", "The run failed; production is unchanged."),
)

START_AT: Final = PREPARE
BY_NAME: Final[Mapping[str, Step]] = {step.name: step for step in STEPS}
TERMINAL_STATES: Final = frozenset({PROMOTED, REJECTED, FAILED})
TASK_STATES: Final = tuple(step.name for step in STEPS if step.kind == "task")


def step(name: str) -> Step:
    """The step called ``name`` (KeyError for an unknown state)."""
    return BY_NAME[name]


def happy_path() -> list[str]:
    """State names from the start to Promoted, when every step succeeds and the gate passes."""
    path, current = [], START_AT
    while True:
        path.append(current)
        node = BY_NAME[current]
        if node.kind in ("succeed", "fail"):
            return path
        following = node.when_true if node.kind == "choice" else node.next
        if following is None:
            raise ValueError(f"state {current} has no successor")
        current = following


# --- Payloads -----------------------------------------------------------------------------
class ExecutionInput(TypedDict, total=False):
    """What a run starts with (the CLI and the schedule send this)."""

    train_s3_uri: str  # required
    validation_s3_uri: str
    hyperparameters: dict[str, str]


class EvaluateEvent(TypedDict):
    """The Evaluate Lambda's event. Its environment has ``ARTIFACT_BUCKET``."""

    model_name: str
    candidate_artifact_uri: str  # the training job's ModelArtifacts.S3ModelArtifacts
    gate: dict[str, float | None]  # QualityGate.model_dump(), a literal from the config


class CandidateSummary(TypedDict):
    """A model as Evaluate reports it."""

    model_name: str
    model_version: str
    artifact_uri: str
    task: str
    primary_metric: str
    metrics: dict[str, float]
    serving_variant: str
    sha256: str


class EvaluateResult(TypedDict, total=False):
    """What Evaluate returns; the state machine stores it at ``$.evaluation``."""

    passed: Required[bool]
    reasons: Required[list[str]]
    candidate: Required[CandidateSummary]
    production: Required[dict[str, Any] | None]  # the live model's summary when it was gated
    gate_metric: str  # what the gate compared with the baseline and with production
    evaluated_at: str
    # The registered version's card: Register's CustomerMetadataProperties
    # (onnxkit/contract/card.py package_metadata).
    package_metadata: dict[str, str]


class PromoteEvent(TypedDict):
    """The Promote Lambda's event. Environment: ``ARTIFACT_BUCKET``, ``FUNCTION_NAME``,
    ``ALIAS_NAME``."""

    candidate: CandidateSummary  # $.evaluation.candidate
    model_package_arn: str  # $.registration.model_package_arn
    # $.evaluation: stored beside the promoted version as evaluation.json (the gate's record).
    evaluation: NotRequired[EvaluateResult]


class PromoteResult(TypedDict):
    """What Promote returns; the state machine stores it at ``$.promotion``."""

    model_version: str
    lambda_version: str
    model_uri: str
    sha256: str
    previous_lambda_version: str | None


# JSONPath sources of each Lambda event field, as the state machine fills them. The
# ``gate`` and ``model_name`` fields are literals from config (see evaluate_event).
TRAINED_ARTIFACT_PATH: Final = f"{TRAINING_PATH}.ModelArtifacts.S3ModelArtifacts"
PROMOTE_EVENT_PATHS: Final[Mapping[str, str]] = {
    "candidate": f"{EVALUATION_PATH}.candidate",
    "model_package_arn": f"{REGISTRATION_PATH}.model_package_arn",
    "evaluation": EVALUATION_PATH,
}
# The Promote event fields that are JSON objects (the rest are strings).
PROMOTE_EVENT_OBJECTS: Final = frozenset({"candidate", "evaluation"})


def evaluate_event(
    model_name: str, candidate_artifact_uri: str, gate: QualityGate
) -> EvaluateEvent:
    """The Evaluate event for a candidate, with the environment's gate."""
    return {
        "model_name": model_name,
        "candidate_artifact_uri": candidate_artifact_uri,
        "gate": gate.model_dump(),
    }


def promote_event(evaluation: EvaluateResult, model_package_arn: str) -> PromoteEvent:
    """The Promote event built from Evaluate's result and Register's package ARN."""
    return {
        "candidate": evaluation["candidate"],
        "model_package_arn": model_package_arn,
        "evaluation": evaluation,
    }


def gate_passed(evaluation: EvaluateResult) -> bool:
    """The QualityGate Choice: true sends the candidate on to Register."""
    return evaluation["passed"] is True


def merge_hyperparameters(
    configured: Mapping[str, str], requested: Mapping[str, str] | None
) -> dict[str, str]:
    """The training job's hyperparameters: the run's values over the configured ones."""
    merged = dict(configured)
    merged.update(requested or {})
    bad = sorted(k for k, v in merged.items() if not isinstance(v, str))
    if bad:
        raise ValueError(f"hyperparameter values must be strings: {', '.join(bad)}")
    return merged


def next_state(
    current: str, *, error: bool = False, evaluation: EvaluateResult | None = None
) -> str | None:
    """The state after ``current``: its error route when ``error``, the gate's choice for
    QualityGate, else its ``next``; None after a terminal state."""
    node = BY_NAME[current]
    if error:
        if node.on_error is None:
            raise ValueError(f"state {current} cannot fail")
        return node.on_error
    if node.kind == "choice":
        if evaluation is None:
            raise ValueError(f"state {current} needs the evaluation")
        return node.when_true if gate_passed(evaluation) else node.otherwise
    return node.next
