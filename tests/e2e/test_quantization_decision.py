"""The int8-or-fp32 decision, through the real job on a bundled dataset."""

from __future__ import annotations

import onnx

from onnxkit.contract.layout import FP32_FILE, SERVING_FILE
from onnxkit.contract.manifest import load_manifest
from tests.conftest import ArtifactFactory


def test_static_qdq_quantization_with_calibration_rows(train_artifact: ArtifactFactory) -> None:
    model_dir = train_artifact("breast_cancer", model="mlp", quantization="qdq")
    manifest = load_manifest(model_dir)
    assert manifest.serving.variant == "int8"
    assert manifest.quantization.method == "qdq"
    assert manifest.quantization.quantized_operators.get("MatMul") == 3
    ops = {node.op_type for node in onnx.load(model_dir / SERVING_FILE).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_outside_tolerance_keeps_fp32_and_says_why(train_artifact: ArtifactFactory) -> None:
    # No drift at all is allowed: any int8 graph fails, weight-only and QDQ alike.
    model_dir = train_artifact(
        "breast_cancer", model="mlp", max_probability_drift=0, max_metric_drop=0
    )
    manifest = load_manifest(model_dir)
    assert manifest.serving.variant == manifest.quantization.decision == "fp32"
    reason = manifest.quantization.reason
    assert reason.startswith("kept fp32:") and "weight:" in reason and "qdq:" in reason
    assert "probabilities drift" in reason
    # The rejected int8 graph is still measured, so the choice is informed.
    assert manifest.variants["int8"].parity is not None
    assert manifest.quantization.quantized_operators
    assert not (model_dir / FP32_FILE).exists()
    ops = {node.op_type for node in onnx.load(model_dir / SERVING_FILE).graph.node}
    assert "MatMulInteger" not in ops and "QuantizeLinear" not in ops


def test_quantization_none_is_recorded(train_artifact: ArtifactFactory) -> None:
    manifest = load_manifest(train_artifact("iris", model="mlp", quantization="none"))
    assert (manifest.serving.variant, manifest.quantization.method) == ("fp32", "none")
    assert "int8" not in manifest.variants


def test_default_int8_is_weight_only_and_passes_the_row_independence_probe(
    train_artifact: ArtifactFactory,
) -> None:
    # compression=none: the int8 step on the 256-unit network itself (compression would
    # prune it first; tests/e2e/test_compression.py covers that).
    model_dir = train_artifact(
        "breast_cancer", model="mlp", hidden_layer_sizes="256,256", compression="none"
    )
    manifest = load_manifest(model_dir)
    assert (manifest.serving.variant, manifest.quantization.method) == ("int8", "weight")
    for variant in ("fp32", "int8"):
        probe = manifest.variants[variant].row_independence
        assert probe is not None and probe.passed and probe.extreme_rows == 2, probe
    # The goal for MLPs with >= 256 hidden units: at most 0.3x the fp32 file.
    assert manifest.serving.size_bytes <= 0.3 * (model_dir / FP32_FILE).stat().st_size
    assert (manifest.variants["int8"].parity.label_agreement or 0) >= 0.995
