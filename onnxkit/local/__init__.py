"""The workflow on this machine: a SageMaker-like training job and the state walker."""
