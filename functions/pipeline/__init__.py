"""The pipeline's step logic: evaluate and promote a model.

Pure modules over small storage / serving / registry interfaces (:mod:`.ports`), so the same
code runs in the cloud (S3, a Lambda alias, a CloudWatch alarm; :mod:`.aws`) and on a laptop
(a work directory with the same layout: :mod:`onnxkit.local.store`, in the shell, as is the
CLI-only :mod:`onnxkit.rollback`). :mod:`.handlers` holds the thin
Lambda entry points the state machine calls. Only boto3, ``onnxkit.contract`` (msgspec, and
pydantic for the gate) are imported, because this package is bundled into a Lambda function.
"""
