"""Config: typed settings per environment; a bad value is one line naming the setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onnxkit.config import (
    ConfigError,
    load_config,
    overrides_from_context,
    setting_keys,
)
from onnxkit.contract.gate import QualityGate

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_environments_differ_where_they_should() -> None:
    dev, prod, local = load_config("dev"), load_config("prod"), load_config("local")
    assert (dev.removal_policy, prod.removal_policy) == ("destroy", "retain")
    assert prod.retained and not dev.retained
    assert prod.function.memory_mb > dev.function.memory_mb
    assert not local.training.use_spot
    assert isinstance(dev.gate, QualityGate)
    assert dev.stack_name("Serving") == "OnnxKit-dev-Serving"


def test_overrides_are_typed_and_validated() -> None:
    config = load_config("dev", {
        "lambda.memory_mb": "2048",
        "training.use_spot": "false",
        "gate.min_accuracy": "0.9",
        "training.hyperparameters": '{"n_estimators": "300"}',
        "lambda.reserved_concurrency": "null",
    })  # fmt: skip
    assert config.function.memory_mb == 2048
    assert config.training.use_spot is False
    assert config.gate.min_accuracy == 0.9
    assert config.training.job_hyperparameters("m") == {
        "model": "random_forest", "compression": "auto", "optimize_for": "size",
        "n_estimators": "300", "model_name": "m",
    }  # fmt: skip
    latency = load_config(
        "dev", {"training.optimize_for": "latency", "training.compression": "none"}
    )
    assert latency.training.job_hyperparameters("m")["optimize_for"] == "latency"
    assert latency.training.job_hyperparameters("m")["compression"] == "none"


def test_the_gate_defaults_to_a_margin_over_the_baseline_in_every_environment() -> None:
    for env in ("local", "dev", "prod"):
        gate = load_config(env).gate
        assert (gate.min_accuracy, gate.min_r2) == (None, None)
        assert gate.min_lift_over_baseline == 0.05 and gate.chance_sigmas == 2
    set_then_off = load_config("local", {"gate.min_r2": "0.4", "gate.min_accuracy": "null"})
    assert (set_then_off.gate.min_r2, set_then_off.gate.min_accuracy) == (0.4, None)
    lift = load_config("dev", {"gate.min_lift_over_baseline": "0.1", "gate.chance_sigmas": "0"})
    assert (lift.gate.min_lift_over_baseline, lift.gate.chance_sigmas) == (0.1, 0)


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        ({"gate.chance_sigmas": "-1"}, "invalid setting gate.chance_sigmas='-1'"),
        (
            {"lambda.memory_mb": "64"},
            "invalid setting lambda.memory_mb='64': Input should be greater than or equal to 128",
        ),
        ({"lambda.architecture": "arm"}, "invalid setting lambda.architecture='arm'"),
        ({"api.auth_mode": "cognito"}, "invalid setting api.auth_mode='cognito'"),
        ({"gate.min_accuracy": "1.5"}, "invalid setting gate.min_accuracy='1.5'"),
        (
            {"training.instance_typ": "ml.m5.large"},
            "invalid setting training.instance_typ: unknown setting",
        ),
        (
            {"training.max_wait_minutes": "5"},
            "invalid setting training.max_wait_minutes='5': "
            "must be at least max_runtime_minutes (60)",
        ),
        (
            {"retraining_schedule": "daily"},
            "invalid setting retraining_schedule='daily': "
            "expected an EventBridge rate(...) or cron(...) expression",
        ),
        (
            {"retraining_schedule": "rate(1 day)"},
            "invalid setting training.target: a retraining schedule needs the label column",
        ),
        (
            {"drift.retrain_on_drift": "true"},
            "invalid setting training.target: retraining on drift needs the label column",
        ),
        (
            {"drift.min_rows": "500", "drift.max_rows": "400"},
            "invalid setting drift.min_rows='500': must not exceed drift.max_rows",
        ),
        (
            {"drift.interval_hours": "0"},
            "invalid setting drift.interval_hours='0': Input should be greater than or equal to 1",
        ),
        (
            {"api.quota_per_day": "10"},
            "invalid setting api.quota_per_day='10': needs api.auth_mode=api_key",
        ),
        (
            {"training.hyperparameters": '{"sagemaker_program": "x.py"}'},
            "invalid setting training.hyperparameters",
        ),
        ({"log_retention_days": "10"}, "invalid setting log_retention_days='10'"),
        ({"training.compression": "max"}, "invalid setting training.compression='max'"),
        ({"training.optimize_for": "speed"}, "invalid setting training.optimize_for='speed'"),
        (
            {"training.hyperparameters": '{"compression": "none"}'},
            "invalid setting training.hyperparameters",
        ),
        ({"api.kind": "grpc"}, "invalid setting api.kind='grpc': Input should be 'rest', 'http'"),
        (
            {"api.kind": "function_url", "api.auth_mode": "api_key"},
            "invalid setting api.kind='function_url': auth_mode=api_key needs kind=rest",
        ),
        (
            {"api.kind": "http", "api.auth_mode": "api_key"},
            "invalid setting api.kind='http': auth_mode=api_key needs kind=rest",
        ),
        (
            {"api.kind": "function_url"},
            "invalid setting api.kind='function_url': a function URL has no throttling of its "
            "own; set lambda.reserved_concurrency",
        ),
        (
            {"training.instance_count": "2"},
            "invalid setting training.instance_count='2': SageMaker's scikit-learn container "
            "trains on one instance; choose a larger training.instance_type instead",
        ),
        (
            {"training.instance_count": "0"},
            "invalid setting training.instance_count='0': "
            "Input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_values_are_one_line_naming_the_setting(overrides: dict[str, str], line: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config("dev", overrides)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(line), message


def test_the_front_door_is_a_setting() -> None:
    assert load_config("dev").api.kind == "rest"  # today's REST API stays the default
    assert load_config("dev", {"api.kind": "http"}).api.kind == "http"
    url = load_config("dev", {"api.kind": "function_url", "lambda.reserved_concurrency": "5"})
    assert (url.api.kind, url.function.reserved_concurrency) == ("function_url", 5)
    # prod reserves concurrency already, so a function URL needs nothing more there.
    assert load_config("prod", {"api.kind": "function_url"}).api.kind == "function_url"
    assert "api.kind" in setting_keys()


def test_unknown_environment() -> None:
    with pytest.raises(ConfigError, match=r"^invalid setting env='qa': expected one of"):
        load_config("qa")


def test_context_keys_that_are_settings() -> None:
    context = {
        "env": "dev",
        "lambda.memory_mb": "512",
        "@aws-cdk/core:flag": True,
        "aws:cdk:enable-path-metadata": True,
        "training.bogus": "1",
    }
    assert overrides_from_context(context) == {
        "env": "dev", "lambda.memory_mb": "512", "training.bogus": "1",
    }  # fmt: skip
    assert {"lambda.memory_mb", "gate.min_accuracy", "api.auth_mode"} <= setting_keys()


def test_the_app_exits_with_one_line_on_a_bad_setting(tmp_path: Path) -> None:
    """What ``cdk synth -c lambda.memory_mb=64`` runs: the app, with context from the CLI."""
    env = {
        **os.environ,
        "CDK_OUTDIR": str(tmp_path),
        "CDK_CONTEXT_JSON": json.dumps({"env": "prod", "lambda.memory_mb": "64"}),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    result = subprocess.run(
        [sys.executable, "-m", "infra.app"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "onnxkit: invalid setting lambda.memory_mb='64': Input should be greater "
        "than or equal to 128"
    ], result.stderr
    assert not list(tmp_path.iterdir())  # nothing synthesized


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, True),
        ({"api.kind": "http"}, False),
        ({"api.kind": "function_url", "lambda.reserved_concurrency": "5"}, False),
        ({"api.kind": "http", "lambda.request_metrics": "on"}, True),
        ({"lambda.request_metrics": "off"}, False),
    ],
)
def test_request_metrics_follow_the_front_door_unless_set(
    overrides: dict[str, str], expected: bool
) -> None:
    assert load_config("dev", overrides).request_metrics is expected


def test_capture_settings() -> None:
    dev = load_config("dev")
    assert dev.capture.sample_rate == 0.01 and dev.capture.enabled
    assert load_config("prod").capture.retention_days == 90
    off = load_config("dev", {"capture.sample_rate": "0"})
    assert not off.capture.enabled
    assert load_config("dev", {"capture.sample_rate": "1"}).capture.sample_rate == 1.0
    for key, value in (
        ("capture.sample_rate", "1.5"),
        ("capture.sample_rate", "-0.1"),
        ("capture.sample_rate", "nan"),
        ("capture.retention_days", "0"),
        ("capture.buffer_seconds", "30"),
        ("capture.buffer_seconds", "901"),
    ):
        with pytest.raises(ConfigError, match=f"invalid setting {key}"):
            load_config("dev", {key: value})
