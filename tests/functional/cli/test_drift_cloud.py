"""``onnxkit drift --env``: the reports the scheduled check wrote (the real handler, over moto),
shown as the local command's table, with its exit codes and one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

from functions.monitor import handler
from functions.monitor.check import Settings
from onnxkit.contract.drift import parse_check
from onnxkit.contract.layout import drift_metric_namespace
from tests.conftest import ArtifactFactory
from tests.support.aws import create_bucket, deploy_stack, mocked
from tests.support.capture import Population, population, sample
from tests.support.cli import invoke
from tests.support.drift_cloud import S3Writer, promote_files, put_capture

pytestmark = pytest.mark.xdist_group("trained-churn")

DATASET = "customer_churn"
SHIFTED = "monthly_charges"
BUCKET = "kit-artifacts"
FIRST = datetime(2026, 12, 6, 6, 0, 5, tzinfo=UTC)  # drifted
SECOND = FIRST + timedelta(days=1)  # like the training data
THIRD = SECOND + timedelta(days=1)  # too few rows
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def pop(train_artifact: ArtifactFactory) -> Population:
    return population(train_artifact(DATASET), DATASET)


@pytest.fixture
def kit(monkeypatch: pytest.MonkeyPatch, train_artifact: ArtifactFactory) -> Iterator[Any]:
    """A deployed dev kit in moto: the bucket with the promoted model, the Serving stack's
    output, and the drift function's environment."""
    model_dir: Path = train_artifact(DATASET)
    with mocked(monkeypatch):
        s3 = create_bucket(BUCKET)
        pointer = promote_files(S3Writer(s3, BUCKET), model_dir)
        deploy_stack("OnnxKit-dev-Serving", {"DriftReportsUri": f"s3://{BUCKET}/drift/"})
        settings = Settings(model_name=pointer.model_name, namespace=drift_metric_namespace("dev"))
        monkeypatch.setenv("ARTIFACT_BUCKET", BUCKET)
        monkeypatch.setenv("MODEL_NAME", pointer.model_name)
        monkeypatch.setenv("DRIFT_SETTINGS", msgspec.json.encode(settings).decode())
        yield s3


def _check(s3: Any, pop: Population, at: datetime, rows: int, **shift: float) -> None:
    """Capture ``rows`` in the hour before ``at`` and run the scheduled check at ``at``."""
    put_capture(S3Writer(s3, BUCKET), at - HOUR, sample(pop, rows, rows, shift=shift or None))
    handler.lambda_handler({"time": at.isoformat()})


def test_the_latest_report_is_the_local_table_and_its_exit_code(
    runner: CliRunner, kit: Any, pop: Population
) -> None:
    _check(kit, pop, FIRST, 400, **{SHIFTED: 1.5})
    drifted = invoke(runner, "drift", "--env", "dev")
    assert drifted.exit_code == 3, drifted.output
    assert "400 captured rows" in drifted.output and "┃ feature" in drifted.output
    assert f"drift: {SHIFTED}" in drifted.output
    assert "check at 2026-12-06 06:00 UTC" in drifted.output

    _check(kit, pop, SECOND, 300)
    clean = invoke(runner, "drift", "--env", "dev", "--json")
    assert clean.exit_code == 0, clean.output
    check = parse_check(clean.output)
    assert (check.status, check.checked_at, check.capture_rows) == ("no_drift", SECOND, 300)


def test_since_shows_every_check_from_a_time_on(
    runner: CliRunner, kit: Any, pop: Population
) -> None:
    _check(kit, pop, FIRST, 400, **{SHIFTED: 1.5})
    _check(kit, pop, SECOND, 300)
    _check(kit, pop, THIRD, 20)
    every = invoke(runner, "drift", "--env", "dev", "--since", "2026-12-06T06:00:05")
    assert every.exit_code == 3, every.output
    assert every.output.count("check at ") == 3
    assert "not enough data: 20 captured rows" in every.output
    later = invoke(runner, "drift", "--env", "dev", "--since", "2026-12-06T07:00", "--json")
    assert later.exit_code == 0, later.output
    shown = json.loads(later.output)
    assert [c["status"] for c in shown] == ["no_drift", "not_enough_data"]
    none = invoke(runner, "drift", "--env", "dev", "--since", "2026-12-09")
    assert none.exit_code == 1 and "no drift report since 2026-12-09 00:00 UTC" in none.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--env", "dev"), "no drift report yet"),
        (("--env", "dev", "--since", "yesterday"), "--since 'yesterday' is neither a time"),
        (("--env", "dev", "--model", "m"), "--model: for a local comparison only"),
        (("--since", "12h"), "pass --model and --capture"),
        (("--model", "m", "--capture", ".", "--since", "12h"), "--since reads the cloud's"),
    ],
)
def test_bad_input_and_no_report_are_one_line_and_exit_1(
    runner: CliRunner, kit: Any, arguments: tuple[str, ...], message: str
) -> None:
    result = invoke(runner, "drift", *arguments)
    assert result.exit_code == 1
    assert message in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_a_stack_from_before_the_drift_check_says_so(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mocked(monkeypatch):
        deploy_stack("OnnxKit-dev-Serving", {"ApiUrl": "https://example.invalid/"})
        result = invoke(runner, "drift", "--env", "dev")
    assert result.exit_code == 1
    assert "has no drift check (no DriftReportsUri output)" in result.output
