"""Lambda entry point: ``functions.inference.handler.lambda_handler`` (API Gateway REST proxy
events, payload 1.0; HTTP API and function URL events, payload 2.0).

The function is built once, here at import, from the function's environment: Lambda's init,
which SnapStart snapshots with the model loaded and its session warmed. Nothing is rebound
after that; the routes are :mod:`.app`'s, which ``onnxkit serve`` builds for itself instead of
importing this module. ``CAPTURE_SAMPLE_RATE`` turns on request capture (:mod:`.capture`).
"""

from __future__ import annotations

import os

from .app import InferenceFunction
from .capture import capture_from_env

FUNCTION = InferenceFunction.from_env(os.environ, capture_from_env(os.environ))
lambda_handler = FUNCTION.lambda_handler
