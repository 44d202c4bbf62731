"""The inference function: a small router over a plain ONNX Runtime predictor.

``handler`` (the Lambda entry point) builds an ``app.InferenceFunction`` once (``app``'s routes
on ``router``'s event formats); ``runtime`` holds the settings and the model's lifecycle,
``source`` finds the model, ``predictor`` runs it, ``decode`` turns request bodies into feeds
(``feed``), ``observability`` logs and counts.
Only onnxruntime, numpy, orjson, msgspec and aws-lambda-powertools (its Logger and Metrics) are
imported at serving time (plus ``onnxkit.contract``); boto3 is imported only when the model lives
in S3, and the Tracer (aws-xray-sdk) only where X-Ray tracing is on.
"""
