"""The CDK app: ``cdk synth -c env=dev`` (cdk.json runs ``python -m infra.app``).

A bad setting ends the app with one line on stderr naming it, before any stack is built.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from infra.stacks.artifacts import ArtifactsStack
from infra.stacks.pipeline import PipelineStack
from infra.stacks.scoring import ScoringStack
from infra.stacks.serving import ServingStack
from onnxkit.config import ConfigError, OnnxKitConfig, load_config, setting_keys


@dataclass(frozen=True)
class Kit:
    """The app and its four stacks, for tests and for ``main``."""

    app: App
    config: OnnxKitConfig
    artifacts: ArtifactsStack
    serving: ServingStack
    pipeline: PipelineStack
    scoring: ScoringStack


def config_from_context(app: App) -> OnnxKitConfig:
    """The environment named by ``-c env=...`` with any dotted setting overrides."""
    env = app.node.try_get_context("env")
    overrides = {}
    for key in setting_keys():
        value = app.node.try_get_context(key)
        if value is not None and key != "env":
            overrides[key] = value
    return load_config(env, overrides)


def build(app: App, config: OnnxKitConfig, *, nag: bool = True) -> Kit:
    """Add the four stacks (and the cdk-nag AwsSolutions plugin) to ``app``."""
    # The region is concrete (the SageMaker image lookup needs it); the account stays a
    # deploy-time value so templates (and cdk-nag's finding ids) are the same everywhere.
    env = Environment(region=config.region)
    tags = {"project": "onnxkit", "onnxkit:env": config.env}
    artifacts = ArtifactsStack(
        app,
        config.stack_name("Artifacts"),
        config=config,
        env=env,
        tags=tags,
        description="onnxkit: key, artifact bucket, registry",
    )
    serving = ServingStack(
        app,
        config.stack_name("Serving"),
        config=config,
        artifacts=artifacts.artifacts,
        env=env,
        tags=tags,
        description="onnxkit: inference function, live alias, REST API",
    )
    pipeline = PipelineStack(
        app,
        config.stack_name("Pipeline"),
        config=config,
        artifacts=artifacts.artifacts,
        inference_function=serving.function,
        env=env,
        tags=tags,
        description="onnxkit: training state machine",
    )
    scoring = ScoringStack(
        app,
        config.stack_name("Scoring"),
        config=config,
        artifacts=artifacts.artifacts,
        env=env,
        tags=tags,
        description="onnxkit: batch scoring function and Distributed Map state machine",
    )
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return Kit(app, config, artifacts, serving, pipeline, scoring)


def main() -> int:
    """Synthesize the app; a bad setting is one line on stderr and exit status 1."""
    app = App()
    try:
        config = config_from_context(app)
    except ConfigError as error:
        print(f"onnxkit: {error}", file=sys.stderr)
        return 1
    build(app, config)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
