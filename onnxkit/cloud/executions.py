"""A pipeline execution as the CLI shows it: steps, training job, gate decision, promotion.

Step names come from :mod:`onnxkit.contract.workflow`, so the view follows the state machine the CDK
stack builds. The training job is read with the SageMaker SDK (``sagemaker.core``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from onnxkit.cloud.errors import CloudError
from onnxkit.contract import workflow
from onnxkit.contract.metrics import CURVE, parse_curve

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
_NAME_LIMIT = 80  # Step Functions execution names


@dataclass
class StepView:
    """One state of the run."""

    name: str
    status: str = "pending"  # pending | running | succeeded | failed | skipped
    started: datetime | None = None
    ended: datetime | None = None
    error: str = ""

    @property
    def seconds(self) -> float | None:
        """How long the step took (or has taken so far)."""
        if self.started is None:
            return None
        end = self.ended or datetime.now(self.started.tzinfo)
        return max(0.0, (end - self.started).total_seconds())


@dataclass
class RunView:
    """What ``onnxkit status`` shows for an execution."""

    arn: str
    name: str
    status: str
    started: datetime | None
    stopped: datetime | None
    steps: list[StepView]
    input: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # latest known execution state JSON
    training_job_name: str | None = None
    error: dict[str, str] | None = None
    last_state: str | None = None

    @property
    def evaluation(self) -> dict[str, Any] | None:
        """``$.evaluation``: ``passed``, ``reasons``, ``candidate``, ``production``."""
        value = self.state.get("evaluation")
        return value if isinstance(value, dict) else None

    @property
    def promotion(self) -> dict[str, Any] | None:
        """``$.promotion``: the promoted version and Lambda version."""
        value = self.state.get("promotion")
        return value if isinstance(value, dict) else None

    @property
    def outcome(self) -> str:
        """promoted | rejected | failed | running."""
        if self.status == "RUNNING":
            return "running"
        if self.status != "SUCCEEDED" or self.last_state == workflow.FAILED:
            return "failed"
        if self.last_state == workflow.REJECTED or (
            self.evaluation is not None and self.evaluation.get("passed") is False
        ):
            return "rejected"
        return "promoted"


def execution_arn(state_machine_arn: str, name_or_arn: str) -> str:
    """The execution ARN for an execution name under a state machine (ARNs pass through)."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    prefix, _, machine = state_machine_arn.rpartition(":stateMachine:")
    if not machine:
        raise CloudError(f"not a state machine ARN: {state_machine_arn}")
    return f"{prefix}:execution:{machine}:{name_or_arn}"


def execution_name(raw: str) -> str:
    """A valid, readable Step Functions execution name."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", raw).strip("-")
    if not cleaned:
        raise CloudError(f"--name {raw!r}: use letters, digits, '-' or '_'")
    if len(cleaned) > _NAME_LIMIT:
        # Keep the tail: it carries the timestamp that makes the name unique.
        cleaned = cleaned[-_NAME_LIMIT:].lstrip("-_")
    return cleaned


def latest_execution(sfn: Any, state_machine_arn: str) -> str:
    """The most recently started execution's ARN."""
    found = sfn.list_executions(stateMachineArn=state_machine_arn, maxResults=1)
    executions = found.get("executions", [])
    if not executions:
        raise CloudError("no executions yet: start one with `onnxkit train`")
    return str(executions[0]["executionArn"])


def _loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}  # truncated by Step Functions (over 256 KiB): show what else we have
    return value if isinstance(value, dict) else {}


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page.get("events", []))
        token = page.get("nextToken")
        if not token:
            return events
        kwargs["nextToken"] = token


def _job_name(state: dict[str, Any]) -> str | None:
    training = state.get("training")
    if isinstance(training, dict) and training.get("TrainingJobName"):
        return str(training["TrainingJobName"])
    prepared = state.get("prepared")
    if isinstance(prepared, dict):
        for key in ("training_job_name", "TrainingJobName", "job_name"):
            if prepared.get(key):
                return str(prepared[key])
    return None


def summarize(description: dict[str, Any], events: list[dict[str, Any]]) -> RunView:
    """Fold a DescribeExecution answer and its history into a RunView."""
    order = workflow.happy_path()
    steps: dict[str, StepView] = {name: StepView(name) for name in order}
    state = _loads(description.get("input"))
    job_name: str | None = None
    error: dict[str, str] | None = None
    last_state: str | None = None
    current: str | None = None
    for event in events:
        kind = str(event.get("type", ""))
        when = event.get("timestamp")
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            view = steps.setdefault(name, StepView(name))
            view.status, view.started, view.ended = "running", when, None
            current = last_state = name
        elif kind.endswith("StateExited"):
            details = event["stateExitedEventDetails"]
            view = steps.setdefault(details["name"], StepView(details["name"]))
            if view.status != "failed":
                view.status = "succeeded"
            view.ended = when
            state = _loads(details.get("output")) or state
            current = None
        elif kind == "TaskScheduled":
            params = _loads(event.get("taskScheduledEventDetails", {}).get("parameters"))
            job_name = job_name or params.get("TrainingJobName")
        elif kind.endswith("Failed") or kind.endswith("TimedOut") or kind.endswith("Aborted"):
            failure: dict[str, Any] = next(
                (v for k, v in event.items() if k.endswith("EventDetails")), {}
            )
            error = {
                "error": str(failure.get("error", kind)),
                "cause": str(failure.get("cause", "")),
            }
            if current is not None and current in steps and not kind.startswith("Execution"):
                failed = steps[current]
                failed.status, failed.error, failed.ended = "failed", error["error"], when
    status = str(description.get("status", "RUNNING"))
    if status in TERMINAL:
        state = _loads(description.get("output")) or state
        for view in steps.values():
            if view.status == "running":
                view.status = "failed" if status != "SUCCEEDED" else "succeeded"
            elif view.status == "pending":
                view.status = "skipped"
    if isinstance(state.get("error"), dict) and error is None:
        error = {
            "error": str(state["error"].get("Error", "")),
            "cause": str(state["error"].get("Cause", "")),
        }
    # The happy path first, then whatever else ran (NotifyRejected, NotifyFailure, ...).
    ordered = [steps[n] for n in order] + [v for n, v in steps.items() if n not in order]
    ordered = [v for v in ordered if v.status != "skipped" or v.name in order]
    return RunView(
        arn=str(description["executionArn"]),
        name=str(description.get("name", "")),
        status=status,
        started=description.get("startDate"),
        stopped=description.get("stopDate"),
        steps=ordered,
        input=_loads(description.get("input")),
        state=state,
        training_job_name=_job_name(state) or job_name,
        error=error,
        last_state=last_state,
    )


def describe_run(sfn: Any, arn: str) -> RunView:
    """Read an execution and its history."""
    return summarize(sfn.describe_execution(executionArn=arn), _history(sfn, arn))


# --- training job ----------------------------------------------------------------------------
@dataclass
class TrainingView:
    """A training job's status, secondary status transitions and final metrics."""

    name: str
    status: str
    secondary_status: str
    failure_reason: str | None
    transitions: list[tuple[str, str, datetime | None, datetime | None]]  # status, msg, start, end
    metrics: dict[str, float]


def _given(value: Any) -> Any:
    # sagemaker.core marks absent fields with an ``Unassigned`` sentinel, not None.
    return None if type(value).__name__ == "Unassigned" else value


def training_job(session: Any, region: str, name: str) -> TrainingView:
    """Read a training job with ``sagemaker.core.resources.TrainingJob.get``."""
    from sagemaker.core.resources import TrainingJob  # noqa: PLC0415 - a 2 s import

    job = TrainingJob.get(training_job_name=name, session=session, region=region)
    if job is None:
        raise CloudError(f"training job {name} not found")
    transitions = [
        (
            str(t.status),
            str(_given(t.status_message) or ""),
            _given(t.start_time),
            _given(t.end_time),
        )
        for t in (_given(job.secondary_status_transitions) or [])
    ]
    metrics = {
        str(m.metric_name): float(m.value)
        for m in (_given(job.final_metric_data_list) or [])
        if _given(m.metric_name) is not None and _given(m.value) is not None
    }
    return TrainingView(
        name=name,
        status=str(_given(job.training_job_status) or "?"),
        secondary_status=str(_given(job.secondary_status) or "?"),
        failure_reason=_given(job.failure_reason),
        transitions=transitions,
        metrics=metrics,
    )


# SageMaker writes a training job's stdout and stderr to this group, one stream per host:
# ``<job name>/algo-1-<epoch seconds>``.
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# A CloudWatch Logs filter pattern: a quoted term is matched as the exact text.
_CURVE_FILTER = f'"[{CURVE}]"'
MAX_CURVE_EVENTS = 50_000  # about 25,000 iterations of two values: more is not drawn anyway


def training_curve(logs: Any, name: str) -> dict[str, list[tuple[int, float]]]:
    """The learning curve the job has printed so far, read from its CloudWatch log with the
    contract's parser; empty until the job's log exists."""
    try:
        # The job's own streams by name: "<job>/" is no other job's prefix (a name has no "/").
        found = logs.describe_log_streams(
            logGroupName=TRAINING_LOG_GROUP, logStreamNamePrefix=f"{name}/", limit=50
        )
    except ClientError as error:
        # No log group yet (the region's first job has not started): no curve yet.
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return {}
        raise
    streams = [str(stream["logStreamName"]) for stream in found.get("logStreams", [])]
    if not streams:
        return {}
    lines: list[str] = []
    kwargs: dict[str, Any] = {
        "logGroupName": TRAINING_LOG_GROUP,
        "logStreamNames": streams,
        "filterPattern": _CURVE_FILTER,
    }
    while len(lines) < MAX_CURVE_EVENTS:
        page = logs.filter_log_events(**kwargs)
        lines += [str(event.get("message", "")).rstrip("\n") for event in page.get("events", [])]
        token = page.get("nextToken")
        if not token:
            break
        kwargs["nextToken"] = token
    return parse_curve("\n".join(lines))


# --- console links ---------------------------------------------------------------------------
def execution_link(region: str, arn: str) -> str:
    """The Step Functions console page of an execution."""
    return (
        f"https://{region}.console.aws.amazon.com/states/home?region={region}"
        f"#/v2/executions/details/{arn}"
    )


def training_job_link(region: str, name: str) -> str:
    """The SageMaker console page of a training job (its metric graphs are there)."""
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/jobs/{name}"
