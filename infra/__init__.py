"""The onnxkit CDK app: artifact, serving and pipeline stacks (run by ``cdk.json``)."""
