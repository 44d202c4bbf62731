"""A fitted estimator as the job's ONNX opset (one float input ``X``, no ZipMap)."""

from __future__ import annotations

import onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

from training_jobs.export import TARGET_OPSET


def convert(model: object, features: int) -> onnx.ModelProto:
    """skl2onnx's graph of ``model`` at the job's target opsets."""
    options = {id(model): {"zipmap": False}} if hasattr(model, "classes_") else {}
    return convert_sklearn(
        model,
        initial_types=[("X", FloatTensorType([None, features]))],
        options=options,
        target_opset=TARGET_OPSET,
    )
