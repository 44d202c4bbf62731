"""Fixtures shared by every tier: trained model artifacts, made once per test session, and
(from tests/support/aws.py) the moto server."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from onnxkit.datasets import bundled

ArtifactFactory = Callable[..., Path]

# The moto server fixtures (tests/support/aws.py), for any tier.
pytest_plugins = ["tests.support.aws"]


@pytest.fixture(scope="session")
def train_artifact(tmp_path_factory: pytest.TempPathFactory) -> ArtifactFactory:
    """Train (once per session and arguments) and return the model directory.

    ``train_artifact("customer_churn", model="mlp", quantization="none")`` runs
    training_jobs/train.py's ``main`` in-process on a bundled dataset with SM_* style paths;
    the directory holds ``model.onnx`` and ``manifest.json``.
    """
    from onnxkit.local.training import arguments
    from training_jobs import train

    cache: dict[tuple[object, ...], Path] = {}

    def make(dataset: str = "breast_cancer", model: str = "mlp", **hyperparameters: object) -> Path:
        key = (dataset, model, *sorted(hyperparameters.items()))
        if key in cache:
            return cache[key]
        data = bundled(dataset)
        root = tmp_path_factory.mktemp(f"artifact-{dataset}-{model}")
        argv = arguments(
            {
                "target": data.target,
                "model": model,
                "train": str(data.path),
                "model-dir": str(root / "model"),
                "output-dir": str(root / "output"),
                "latency-runs": "0",
                **{name: str(value) for name, value in hyperparameters.items()},
            }
        )
        code = train.main(argv)
        if code != 0:
            failure = (root / "output" / "failure").read_text()
            raise RuntimeError(f"training failed: {failure}")
        cache[key] = root / "model"
        return cache[key]

    return make
