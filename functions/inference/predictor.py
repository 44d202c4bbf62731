"""The predictor: a verified ONNX Runtime session plus the manifest facts serving needs.

No HTTP here: :func:`load_model` checks the digest before any session exists, and
:meth:`Model.predict` runs one ``session.run`` for all rows of a call. ONNX Runtime's own
telemetry is switched off by the process's environment (``ORT_DISABLE_TELEMETRY=1``: the
function's, set by its construct; the CLI's, set by its entry).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from onnxkit.contract.layout import sha256_file

from .feed import FeatureSpec, FeedBuilder
from .source import LocatedModel, ModelSourceError

log = logging.getLogger(__name__)


class DigestMismatch(ModelSourceError):
    """The model file is not the one the deployment names: refuse to serve it."""


# Why a row's answer is withheld: float32 arithmetic overflowed on its values (a value near
# float32's range makes an MLP's logits infinite and its softmax NaN), so its label is arbitrary.
NON_FINITE_PROBLEM = (
    "the model's output is not finite for this row (its values overflow the model's float32 "
    "arithmetic); no prediction"
)


def non_finite_rows(answer: dict[str, Any]) -> list[int]:
    """Positions of the rows whose probabilities (classification) or prediction (regression) are
    NaN or infinite: answers no one should act on."""
    values = answer.get("probabilities")
    if values is None:
        values = answer["predictions"]
    if not isinstance(values, np.ndarray) or values.dtype.kind != "f":
        return []
    finite = np.isfinite(values)
    if finite.all():
        return []
    return np.flatnonzero(~finite.reshape(len(finite), -1).all(axis=1)).tolist()


def vcpus() -> int:
    """CPUs this process may run on (a Lambda function's vCPUs)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Options that fit Lambda: one thread per vCPU (not spinning), full graph optimization,
    sequential."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or vcpus()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle intra-op threads otherwise spin after each run, taking the cores the request's own
    # Python (parsing, routing, EMF) needs next: measured 1.4x slower one-row forest requests on
    # 2 vCPUs. A parallel section now pays a thread wake-up instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


@dataclass
class Model:
    """A loaded, verified model ready to predict."""

    session: ort.InferenceSession
    model_name: str
    model_version: str
    task: str
    features: tuple[FeatureSpec, ...]
    classes: list[Any] | None
    output_names: list[str]
    public: dict[str, Any]
    sha256: str
    signature: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # the manifest's files: name -> sha256

    def __post_init__(self) -> None:
        self.feed = FeedBuilder(self.features)
        self._local = threading.local()  # per-thread IOBinding of the one-row buffer
        outputs = {node.name: node.type for node in self.session.get_outputs()}
        # copy_outputs_to_cpu returns numeric tensors; string labels take session.run.
        self._bindable = all(
            outputs.get(name, "").startswith("tensor(") and outputs[name] != "tensor(string)"
            for name in self.output_names
        )

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One session.run over every row of the call.

        A one-row numeric feed lives in a per-thread buffer (``FeedBuilder``); its inputs are
        bound once to an IOBinding (OrtValues over the buffer's memory, no copy on CPU), which
        saves session.run converting and checking F inputs on every call: a third of a one-row
        run. Everything else goes through session.run."""
        if self._bindable and self.feed.is_one_row_feed(feed):
            binding = getattr(self._local, "binding", None)
            if binding is None:
                binding = self._local.binding = self._bind(feed)
            self.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()
        return self.session.run(self.output_names, feed)

    def _bind(self, feed: dict[str, np.ndarray]) -> ort.IOBinding:
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        return binding

    def predict(self, rows: Sequence[Sequence[Any]], numbers_only: bool = False) -> dict[str, Any]:
        """Response body for rows in signature order (validated by :class:`FeedBuilder`)."""
        return self.predict_feed(self.feed(rows, numbers_only))

    def predict_feed(self, feed: dict[str, np.ndarray]) -> dict[str, Any]:
        """Response body for a validated feed (from :class:`FeedBuilder`)."""
        outputs = self.run(feed)
        if self.task == "classification":
            labels, probabilities = outputs
            return {
                "model_version": self.model_version,
                "predictions": labels if labels.dtype != object else labels.tolist(),
                "probabilities": probabilities,
                "classes": self.classes,
            }
        return {"model_version": self.model_version, "predictions": outputs[0].reshape(-1)}

    def warm_up(self) -> None:
        """One run at init so a SnapStart snapshot holds a ready, allocated session."""
        row = [
            (None if spec.nullable else 0.0) if spec.numeric else ("" if spec.nullable else "x")
            for spec in self.features
        ]
        self.run(self.feed([row]))


def verify_digest(located: LocatedModel, manifest_sha256: str) -> str:
    """The model file's digest, if it is the one expected; raises DigestMismatch otherwise."""
    actual = sha256_file(located.model_path)
    expected = located.expected_sha256 or manifest_sha256
    if actual != expected:
        raise DigestMismatch(
            f"model digest mismatch for {located.uri}: file has sha256 {actual}, expected "
            f"{expected}; refusing to serve it"
        )
    if located.expected_sha256 and located.expected_sha256 != manifest_sha256:
        raise DigestMismatch(
            f"manifest beside {located.uri} describes sha256 {manifest_sha256}, not the expected "
            f"{located.expected_sha256}; refusing to serve it"
        )
    return actual


def load_model(located: LocatedModel, threads: int | None = None) -> Model:
    """Validate the manifest, verify the digest, then create and warm up the session."""
    from .manifest import read_serving_manifest  # noqa: PLC0415  # keeps this module light

    if not located.model_path.is_file():
        raise ModelSourceError(f"no model file at {located.model_path}")
    manifest = read_serving_manifest(located.manifest_path)
    digest = verify_digest(located, manifest.serving_sha256)
    session = ort.InferenceSession(
        str(located.model_path),
        sess_options=session_options(threads),
        providers=["CPUExecutionProvider"],
    )
    inputs = {node.name: node for node in session.get_inputs()}
    for spec in manifest.features:
        if spec.onnx_input not in inputs:
            raise ModelSourceError(f"the graph has no input {spec.onnx_input!r} ({spec.name})")
    model = Model(
        session=session,
        model_name=manifest.model_name,
        model_version=manifest.model_version,
        task=manifest.task,
        features=manifest.features,
        classes=manifest.classes,
        output_names=manifest.output_names,
        public=manifest.public,
        sha256=digest,
        signature=manifest.public.get("signature", {}),
        files=manifest.files or {},
    )
    model.warm_up()
    log.info("model %s %s loaded (sha256 %s)", model.model_name, model.model_version, digest)
    return model
