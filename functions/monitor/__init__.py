"""Model monitoring: captured requests compared with the artifact's reference statistics.

:mod:`.drift` is the one drift computation, used by ``onnxkit drift`` on this machine and, later,
by the scheduled drift function in the cloud. Only numpy, msgspec and ``onnxkit.contract`` are
imported: no scikit-learn, pandas, pydantic or onnxruntime.
"""
