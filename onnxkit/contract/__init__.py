"""The contract every part of onnxkit reads: the model manifest and the metric lines.

This subpackage depends on pydantic and the standard library only, because it is copied
into the SageMaker source bundle and into every Lambda bundle.
"""
