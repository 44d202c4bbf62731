"""The kernel: every contract the parts of onnxkit share, each owned by one module.

``manifest`` (the artifact's manifest), ``pointer`` (the production pointer and the promotion
record), ``layout`` (names, keys, environment variables, limits, the model-name rule), ``values``
(missing values and numbers), ``api`` (the inference API's media types and error body),
``workflow`` (the state machine as data), ``scoring`` (batch scoring in the cloud), ``metrics``
and ``gate``. It imports nothing else of
onnxkit (``make lint`` checks), only the standard library, msgspec and, for the gate, pydantic;
each Lambda bundle and the SageMaker source tarball copy the modules their code imports.
"""
