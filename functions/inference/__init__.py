"""The inference function: a thin Powertools handler over a plain ONNX Runtime predictor.

Only onnxruntime, numpy, orjson and aws-lambda-powertools are imported at serving time (plus
``onnxkit.contract``); boto3 is imported only when the model lives in S3.
"""
