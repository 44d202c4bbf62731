"""Builders of valid manifests and model.tar.gz archives for the pipeline step tests.

The "model" bytes are arbitrary: the steps never load the graph, they check digests.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

from onnxkit.contract.manifest import Manifest


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_dict(
    version: str = "v1",
    *,
    name: str = "cancer",
    accuracy: float = 0.95,
    sklearn_accuracy: float | None = None,
    label_agreement: float = 1.0,
    features: list[dict[str, Any]] | None = None,
    classes: list[str] | None = None,
    model_bytes: bytes = b"onnx-graph-v1",
    task: str = "classification",
    balanced_accuracy: float | None = None,
    baseline: float | None = None,
    with_baseline: bool = True,
    importance: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A valid manifest; serving variant int8 with the given metrics.

    ``accuracy`` is the primary metric (R² for regression); balanced accuracy defaults to it.
    The naive baseline's gate metric defaults to its value by construction (1/n_classes, or
    R² 0) on 50 held-out rows; ``with_baseline=False`` writes a manifest from before it.
    ``importance`` maps each feature (in signature order) to its permutation importance.
    """
    features = features or [
        {
            "name": "radius",
            "onnx_input": "radius",
            "kind": "numeric",
            "dtype": "float32",
            "nullable": True,
        },
        {
            "name": "texture",
            "onnx_input": "texture",
            "kind": "numeric",
            "dtype": "float32",
            "nullable": False,
        },
    ]
    sha = _sha(model_bytes)
    metric = "accuracy" if task == "classification" else "r2"
    served = {metric: accuracy}
    sk = {metric: accuracy if sklearn_accuracy is None else sklearn_accuracy}
    labels = (classes or ["0", "1"]) if task == "classification" else []
    if task == "classification":
        served["balanced_accuracy"] = accuracy if balanced_accuracy is None else balanced_accuracy
        sk["balanced_accuracy"] = sk[metric] - accuracy + served["balanced_accuracy"]
    gate_metric = "balanced_accuracy" if task == "classification" else "r2"
    naive: dict[str, Any] = {
        "strategy": "prior" if task == "classification" else "mean",
        "metrics": {
            gate_metric: (1 / len(labels) if labels else 0.0) if baseline is None else baseline
        },
    }
    if labels:
        naive["class_support"] = {label: 50 // len(labels) for label in labels}
    parity = {
        "rows": 50,
        "max_abs_diff": 0.001,
        "label_agreement": label_agreement if task == "classification" else None,
    }
    return {
        "schema_version": "1.0",
        "model_name": name,
        "model_version": version,
        "created_at": "2026-11-28T18:00:00+00:00",
        "task": task,
        "estimator": "logistic_regression",
        "signature": {"features": features, "target": "target"},
        "classes": (classes or ["0", "1"]) if task == "classification" else None,
        "outputs": {"label": "label", "probabilities": "probabilities"}
        if task == "classification"
        else {"value": "variable"},
        "serving": {
            "file": "model.onnx",
            "variant": "int8",
            "sha256": sha,
            "size_bytes": len(model_bytes),
        },
        "files": {"model.onnx": {"size_bytes": len(model_bytes), "sha256": sha}},
        "variants": {
            "sklearn": {"metrics": sk},
            "fp32": {"metrics": served, "parity": parity},
            "int8": {"metrics": served, "parity": parity, "size_bytes": len(model_bytes)},
        },
        **({"baseline": naive} if with_baseline else {}),
        **(
            {
                "importance": {
                    "method": "permutation",
                    "metric": metric,
                    "rows": 50,
                    "held_out_rows": 50,
                    "repeats": 5,
                    "random_state": 0,
                    "features": [
                        {"name": name, "mean": mean, "std": 0.01}
                        for name, mean in importance.items()
                    ],
                }
            }
            if importance is not None
            else {}
        ),
        "quantization": {
            "method": "dynamic",
            "decision": "int8",
            "reason": "within tolerance",
            "tolerance": {"accuracy": 0.005},
        },
        "hyperparameters": {"target": "target", "model": "logistic_regression"},
        "library_versions": {"scikit-learn": "1.9.0"},
        "data": {
            "rows": 200,
            "columns": 3,
            "files": {"train.csv": "0" * 64},
            "sha256": "0" * 64,
            "train_rows": 150,
            "validation_rows": 50,
            "validation_source": "split",
        },
    }


def tarball(
    manifest: dict[str, Any],
    model_bytes: bytes | None = None,
    extra: dict[str, bytes] | None = None,
) -> bytes:
    """model.tar.gz as SageMaker packs it: the files at the archive root."""
    Manifest.from_dict(manifest)  # the builders only make valid manifests
    if model_bytes is None:
        model_bytes = b"onnx-graph-" + manifest["model_version"].encode()
    files = {
        "model.onnx": model_bytes,
        "manifest.json": json.dumps(manifest).encode(),
        **(extra or {}),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def artifact(version: str, **kwargs: Any) -> tuple[dict[str, Any], bytes]:
    """(manifest, model.tar.gz) of a consistent version."""
    model_bytes = b"onnx-graph-" + version.encode()
    manifest = manifest_dict(version, model_bytes=model_bytes, **kwargs)
    return manifest, tarball(manifest, model_bytes)
