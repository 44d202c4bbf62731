"""A SageMaker script-mode training job, on this machine.

The job gets what SageMaker gives it: an ``/opt/ml``-like tree (``input/data/<channel>``,
``input/config/hyperparameters.json``, ``model``, ``output``, ``output/data``), the ``SM_*``
environment, and its hyperparameters as ``--name value`` arguments, decoded exactly as
SageMaker's training toolkit decodes them (:func:`decode_hyperparameters`). A failed job's reason is
the first line of ``output/failure``; a finished job's ``model`` directory is packed into
``output/model.tar.gz`` with the files at the archive root, as SageMaker packs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxkit.contract.layout import FAILURE_FILE
from onnxkit.contract.metrics import parse_curve, parse_metric_lines
from onnxkit.local.child import run_child

ARTIFACT_FILE = "model.tar.gz"
# The learning curve so far: (iteration, value) per curve name (onnxkit.contract.metrics).
Curve = dict[str, list[tuple[int, float]]]


class TrainingFailed(RuntimeError):
    """The job exited non-zero; the message is its FailureReason."""


@dataclass
class TrainingJob:
    """One job's directory tree and outcome."""

    name: str
    root: Path
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        """``/opt/ml/model``: what the script writes."""
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        """``/opt/ml/output``: the failure file and the packed artifact."""
        return self.root / "output"

    @property
    def artifact(self) -> Path:
        """The packed model.tar.gz."""
        return self.output_dir / ARTIFACT_FILE

    @property
    def log(self) -> Path:
        """The job's combined stdout and stderr (CloudWatch's role)."""
        return self.root / "training.log"

    def channel(self, name: str) -> Path:
        """``/opt/ml/input/data/<name>``."""
        return self.root / "input" / "data" / name


def train_script() -> Path:
    """training_jobs/train.py, the script SageMaker runs."""
    import training_jobs  # noqa: PLC0415 - only the local runner needs it

    # A namespace package (no __file__) when imported outside the repository's root.
    for folder in training_jobs.__path__:
        script = Path(folder) / "train.py"
        if script.is_file():
            return script.resolve()
    raise TrainingFailed("training_jobs/train.py is not installed with onnxkit")


def prepare(root: Path, name: str, channels: dict[str, Path]) -> TrainingJob:
    """Lay out the job's tree and copy each channel's data in (SageMaker downloads it)."""
    job = TrainingJob(name, root)
    for channel, source in channels.items():
        target = job.channel(channel)
        target.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target / source.name)
    for folder in (job.model_dir, job.output_dir / "data", root / "input" / "config"):
        folder.mkdir(parents=True, exist_ok=True)
    return job


# The toolkit's framework hyperparameters (sagemaker_program, ...): never script arguments.
SAGEMAKER_PREFIX = "sagemaker_"


def decode_hyperparameters(hyperparameters: Mapping[str, str]) -> dict[str, Any]:
    """hyperparameters.json as the toolkit reads it: each value JSON-decoded on its own.

    ``sagemaker_training.environment.read_hyperparameters``: a value that is not JSON stays
    the string it was (``"1.50"`` -> 1.5, ``"true"`` -> True, ``'"x"'`` -> "x",
    ``"null"`` -> None, ``"NaN"`` -> nan, ``"a,b"`` -> "a,b"). The framework's own
    ``sagemaker_*`` keys are split off (``Environment.hyperparameters`` excludes them).
    """
    decoded: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        if key.startswith(SAGEMAKER_PREFIX):
            continue
        try:
            decoded[key] = json.loads(value)
        except (ValueError, TypeError):
            decoded[key] = value
    return decoded


def _argument_value(value: Any) -> str:
    """``sagemaker_training.mapping.to_cmd_args``'s rendering of one decoded value."""
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin1")
    return str(value)


def _env_value(value: Any) -> str:
    """``sagemaker_training.mapping.to_env_vars``'s rendering (SM_HP_<NAME>, SM_HPS)."""
    if isinstance(value, bytes):
        return value.decode("latin1")
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def environment(job: TrainingJob, hyperparameters: dict[str, str]) -> dict[str, str]:
    """The SM_* variables SageMaker's training toolkit sets for a script."""
    decoded = decode_hyperparameters(hyperparameters)
    channels = sorted(p.name for p in (job.root / "input" / "data").iterdir() if p.is_dir())
    env = {
        "SM_MODEL_DIR": str(job.model_dir),
        "SM_OUTPUT_DIR": str(job.output_dir),
        "SM_OUTPUT_DATA_DIR": str(job.output_dir / "data"),
        "SM_INPUT_DIR": str(job.root / "input"),
        "SM_INPUT_CONFIG_DIR": str(job.root / "input" / "config"),
        "SM_HPS": _env_value(decoded),
        "SM_CHANNELS": json.dumps(channels),
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "TRAINING_JOB_NAME": job.name,
        "ORT_DISABLE_TELEMETRY": "1",
    }
    for channel in channels:
        env[f"SM_CHANNEL_{channel.upper()}"] = str(job.channel(channel))
    for key, value in decoded.items():
        env[f"SM_HP_{key.upper()}"] = _env_value(value)
    return env


def arguments(hyperparameters: Mapping[str, str]) -> list[str]:
    """train.py's arguments as the toolkit builds them from hyperparameters.json.

    Decoded values (:func:`decode_hyperparameters`), ``--name value`` in key order, ``-n``
    for a one-letter name (``sagemaker_training.mapping.to_cmd_args``).
    """
    decoded = decode_hyperparameters(hyperparameters)
    argv: list[str] = []
    for key in sorted(decoded):
        argv += [f"--{key}" if len(key) > 1 else f"-{key}", _argument_value(decoded[key])]
    return argv


def pack(model_dir: Path, target: Path) -> Path:
    """Tar and gzip a model directory with its files at the archive root."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as archive:
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            archive.add(path, arcname=path.relative_to(model_dir).as_posix())
    return target


class CurveTail:
    """The learning curve of a log that is still being written, read as it grows."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.offset = 0
        self.curve: Curve = {}

    def read(self) -> bool:
        """Read the complete lines written since the last call; True when the curve grew."""
        try:
            with self.log.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return False
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for next time
        self.offset += len(complete)
        grew = False
        for name, points in parse_curve(complete.decode(errors="replace")).items():
            self.curve.setdefault(name, []).extend(points)
            grew = True
        return grew


def run(
    job: TrainingJob,
    hyperparameters: dict[str, str],
    timeout: float | None = None,
    on_curve: Callable[[Curve], None] | None = None,
) -> None:
    """Run train.py in a subprocess with the SageMaker contract, then pack the artifact.

    ``on_curve`` gets the learning curve so far whenever it grows while the job runs.
    Raises TrainingFailed with the job's FailureReason.
    """
    (job.root / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps(hyperparameters, indent=2)
    )
    env = {**os.environ, **environment(job, hyperparameters)}
    command = [sys.executable, str(train_script()), *arguments(hyperparameters)]
    tail = CurveTail(job.log)
    with job.log.open("w") as log:
        try:
            # Dies with onnxkit: a killed or interrupted run leaves no train.py behind.
            completed = run_child(
                command,
                env=env,
                stdout=log,
                timeout=timeout,
                cwd=job.root,
                on_wait=None if on_curve is None else lambda: _follow(tail, on_curve),
            )
        except subprocess.TimeoutExpired:
            raise TrainingFailed(f"training stopped after {timeout:.0f} s") from None
    if on_curve is not None:
        _follow(tail, on_curve)
    job.metrics = parse_metric_lines(job.log.read_text(errors="replace"))
    if completed.returncode != 0:
        failure = job.output_dir / FAILURE_FILE
        reason = failure.read_text().strip().splitlines() if failure.is_file() else []
        raise TrainingFailed(
            reason[0]
            if reason
            else f"training exited with code {completed.returncode} "
            f"and no failure reason; see {job.log}"
        )
    pack(job.model_dir, job.artifact)


def _follow(tail: CurveTail, on_curve: Callable[[Curve], None]) -> None:
    if tail.read():
        on_curve(tail.curve)
