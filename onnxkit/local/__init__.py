"""The workflow on this machine: a SageMaker-like training job, the state walker, the work
directory standing in for the bucket, the function and the registry, and local serving."""
