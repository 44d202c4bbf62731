"""The training workflow on this machine: the states of :mod:`onnxkit.contract.workflow`, walked in
the same order with the same payloads and failure routes as the Step Functions state machine, each
task backed by the same step code (:mod:`functions.pipeline`) over a work directory.

Work directory layout (the artifact bucket's, plus the local stand-ins)::

    jobs/<job>/            the training job's /opt/ml-like tree and output/model.tar.gz
    models/<name>/<ver>/   model.onnx, manifest.json, reference.json and the gate's
                           evaluation.json, immutable once promoted
    models/<name>/production.json
    registry/<name>/<ver>.json   every registered version with its metrics
    serving/function.json        the inference function's versions and its live alias
    notifications.jsonl          what the topic would have sent
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from functions.pipeline.evaluate import evaluate, read_artifact
from functions.pipeline.ports import StepError
from functions.pipeline.promote import promote, reconcile
from onnxkit.config import OnnxKitConfig, load_config
from onnxkit.contract import workflow
from onnxkit.contract.manifest import Manifest, ManifestError, load_manifest
from onnxkit.local import training
from onnxkit.local.store import LocalRegistry, LocalServing, LocalStore, workdir_lock

EXIT_CODES = {workflow.PROMOTED: 0, workflow.REJECTED: 3, workflow.FAILED: 1}
NOTIFICATIONS_FILE = "notifications.jsonl"

# on_event(state, phase, detail): phase is "start", "done", "error" or "end", and "progress"
# while Train runs, with the learning curve so far as detail["curve"] (training.Curve).
EventHandler = Callable[[str, str, dict[str, Any]], None]


def model_name_for(source: str) -> str:
    """A model name the config accepts (lower-case, digits and '-') from a dataset or file."""
    name = re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-")
    name = re.sub(r"^[^a-z]+", "", name)[:24].rstrip("-")
    return name or "onnxkit-model"


@dataclass
class RunRequest:
    """What ``onnxkit run`` was asked to do."""

    workdir: Path
    train: Path
    model_name: str
    hyperparameters: dict[str, str] = field(default_factory=dict)
    validation: Path | None = None
    config: OnnxKitConfig = field(default_factory=lambda: load_config("local"))
    timeout: float | None = None
    # Scripted task results by state name (tests): called with the execution state, they
    # return the task's result or raise, like Step Functions Local's mocked integrations.
    mocked_tasks: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(
        default_factory=dict
    )


@dataclass
class RunResult:
    """Where the run ended, the states it went through, and the execution state."""

    final_state: str
    path: list[str]
    state: dict[str, Any]
    job: training.TrainingJob | None = None
    manifest: Manifest | None = None
    # Every task failure's cause in order; a failing failure notification comes after the
    # failure it was reporting (the state's $.error holds the last, as in Step Functions).
    causes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 promoted, 3 rejected by the gate, 1 failed."""
        return EXIT_CODES[self.final_state]

    @property
    def error(self) -> str | None:
        """The first failure's readable cause, when the run failed."""
        if self.causes:
            return self.causes[0]
        error = self.state.get("error")
        return str(error["Cause"]) if error else None


class _Run:
    """One execution: the task implementations of the workflow's states."""

    def __init__(self, request: RunRequest, emit: EventHandler) -> None:
        self.request = request
        self.emit = emit
        root = request.workdir.resolve()
        self.store = LocalStore(root)
        self.serving = LocalServing(root)
        self.registry = LocalRegistry(root)
        self.state: dict[str, Any] = {"input": {"train": str(request.train)}}
        self.job: training.TrainingJob | None = None
        self.manifest: Manifest | None = None
        self.causes: list[str] = []

    def prepare(self) -> dict[str, Any]:
        config = self.request.config
        hyperparameters = workflow.merge_hyperparameters(
            config.training.job_hyperparameters(self.request.model_name),
            self.request.hyperparameters,
        )
        hyperparameters["model_name"] = self.request.model_name
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
        return {
            "job_name": f"{self.request.model_name}-{stamp}"[:63],
            "hyperparameters": hyperparameters,
        }

    def train(self) -> dict[str, Any]:
        prepared = self.state["prepared"]
        channels = {"train": self.request.train}
        if self.request.validation is not None:
            channels["validation"] = self.request.validation
        root = self.request.workdir.resolve() / "jobs" / prepared["job_name"]
        self.job = training.prepare(root, prepared["job_name"], channels)
        training.run(
            self.job,
            prepared["hyperparameters"],
            timeout=self.request.timeout,
            on_curve=lambda curve: self.emit(workflow.TRAIN, "progress", {"curve": curve}),
        )
        try:
            self.manifest = load_manifest(self.job.model_dir)
        except ManifestError as error:
            raise StepError(str(error)) from None
        # The fields of DescribeTrainingJob the state machine reads.
        return {
            "TrainingJobName": self.job.name,
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": self.job.artifact.as_uri()},
            "FinalMetricDataList": [
                {"MetricName": name, "Value": value} for name, value in self.job.metrics.items()
            ],
        }

    def evaluate(self) -> dict[str, Any]:
        # The work directory's lock is held from here on: first make the production pointer
        # record what live serves (an earlier run may have been killed mid-promotion).
        reconcile(self.store, self.serving, self.request.model_name)
        event = workflow.evaluate_event(
            self.request.model_name,
            self.state["training"]["ModelArtifacts"]["S3ModelArtifacts"],
            self.request.config.gate,
        )
        return evaluate(
            self.store,
            event["model_name"],
            event["candidate_artifact_uri"],
            self.request.config.gate,
        )

    def candidate_manifest(self) -> Manifest:
        """The evaluated candidate's manifest, read back from its artifact."""
        if self.manifest is None:
            uri = self.state["evaluation"]["candidate"]["artifact_uri"]
            with self.store.open_uri(uri) as stream:
                self.manifest = read_artifact(stream).manifest
        return self.manifest

    def register(self) -> dict[str, Any]:
        package = self.registry.register(
            self.candidate_manifest(),
            self.state["evaluation"]["candidate"]["artifact_uri"],
            self.state["evaluation"],
            "Approved",
        )
        return {"model_package_arn": package}

    def promote(self) -> dict[str, Any]:
        event = workflow.promote_event(
            cast(workflow.EvaluateResult, self.state["evaluation"]),
            self.state["registration"]["model_package_arn"],
        )
        return promote(
            self.store,
            self.serving,
            self.registry,
            dict(event["candidate"]),
            event["model_package_arn"],
            evaluation=dict(event["evaluation"]) if "evaluation" in event else None,
        )

    def _notify(self, subject: str, message: dict[str, Any]) -> dict[str, Any]:
        record = {"at": datetime.now(UTC).isoformat(), "subject": subject, "message": message}
        path = self.request.workdir / NOTIFICATIONS_FILE
        with path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        return {"subject": subject}

    def notify_promoted(self) -> dict[str, Any]:
        promotion = self.state["promotion"]
        return self._notify(
            f"{self.request.model_name} {promotion['model_version']} promoted", promotion
        )

    def notify_rejected(self) -> dict[str, Any]:
        evaluation = self.state["evaluation"]
        return self._notify(
            f"{self.request.model_name} {evaluation['candidate']['model_version']} rejected",
            {"reasons": evaluation["reasons"]},
        )

    def notify_failure(self) -> dict[str, Any]:
        return self._notify(f"{self.request.model_name} run failed", self.state["error"])

    def task(self, name: str) -> Callable[[], dict[str, Any]]:
        mocked = self.request.mocked_tasks.get(name)
        if mocked is not None:
            return lambda: mocked(self.state)
        tasks: dict[str, Callable[[], dict[str, Any]]] = {
            workflow.PREPARE: self.prepare,
            workflow.TRAIN: self.train,
            workflow.EVALUATE: self.evaluate,
            workflow.REGISTER: self.register,
            workflow.PROMOTE: self.promote,
            workflow.NOTIFY_PROMOTED: self.notify_promoted,
            workflow.NOTIFY_REJECTED: self.notify_rejected,
            workflow.NOTIFY_FAILURE: self.notify_failure,
        }
        if name not in tasks:
            raise NotImplementedError(f"the local runner has no implementation of {name}")
        return tasks[name]


def _key(result_path: str) -> str:
    return result_path.removeprefix("$.")


def run_workflow(request: RunRequest, on_event: EventHandler | None = None) -> RunResult:
    """Execute the workflow locally, state by state, as the state machine would."""
    emit = on_event or (lambda state, phase, detail: None)
    request.workdir.mkdir(parents=True, exist_ok=True)
    run = _Run(request, emit)
    with ExitStack() as locked:
        path = _walk(run, emit, locked)
    if run.manifest is None and "evaluation" in run.state:
        run.candidate_manifest()
    return RunResult(path[-1], path, run.state, run.job, run.manifest, run.causes)


def _walk(run: _Run, emit: EventHandler, locked: ExitStack) -> list[str]:
    path: list[str] = []
    current: str | None = workflow.START_AT
    while current is not None:
        node = workflow.step(current)
        path.append(current)
        if node.kind in ("succeed", "fail"):
            emit(current, "end", {})
            break
        emit(current, "start", {})
        if node.kind == "choice":
            evaluation = cast(workflow.EvaluateResult, run.state["evaluation"])
            current = workflow.next_state(current, evaluation=evaluation)
            emit(node.name, "done", {"next": current})
            continue
        try:
            if current == workflow.EVALUATE:
                # From reading production to writing it, runs on one work directory take turns
                # (training, the long part, runs in parallel).
                locked.enter_context(workdir_lock(run.request.workdir))
            result = run.task(current)()
        except (StepError, training.TrainingFailed, OSError, ValueError) as error:
            if node.on_error is None:
                raise
            cause = str(error) or type(error).__name__
            run.causes.append(cause)
            run.state[_key(workflow.ERROR_PATH)] = {"Error": type(error).__name__, "Cause": cause}
            emit(current, "error", {"cause": cause})
            current = workflow.next_state(current, error=True)
            continue
        if node.result_path:
            run.state[_key(node.result_path)] = result
        emit(current, "done", result)
        current = workflow.next_state(current)
    return path
