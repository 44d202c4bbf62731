"""Model monitoring: captured requests compared with the artifact's reference statistics.

:mod:`.drift` is the one drift computation, used by ``onnxkit drift`` on this machine and by the
scheduled drift function in the cloud (:mod:`.handler`, a thin adapter over :mod:`.check` and
the ports of :mod:`.ports`, on AWS in :mod:`.aws`). The computation and the check import only
numpy, msgspec and ``onnxkit.contract``: no scikit-learn, pandas, pydantic, onnxruntime or boto3.
"""
