"""Pure pieces of the cloud commands: backoff, names, hyperparameters, run summaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from onnxkit.cli.train import execution_name, parse_sets
from onnxkit.cloud.api import RetryPolicy, kind_from_url, region_from_url, signing_service
from onnxkit.cloud.errors import CloudError
from onnxkit.cloud.executions import execution_arn, summarize
from onnxkit.contract import workflow


def test_backoff_grows_exponentially_is_capped_and_jittered():
    policy = RetryPolicy(attempts=8, base=0.5, cap=8.0)
    assert [policy.delay(n, rand=lambda: 1.0) for n in range(6)] == [0.5, 1, 2, 4, 8, 8]
    assert policy.delay(3, rand=lambda: 0.25) == 1.0  # full jitter: U(0, ceiling)
    assert policy.delay(0, retry_after=3.0, rand=lambda: 0.1) == 3.0  # Retry-After wins
    assert policy.delay(0, retry_after=60.0, rand=lambda: 0.1) == 8.0  # but stays capped


def test_region_from_execute_api_urls_only():
    assert region_from_url("https://abc123.execute-api.eu-west-1.amazonaws.com/prod/") == (
        "eu-west-1"
    )
    assert region_from_url("http://127.0.0.1:8080/") is None


def test_function_urls_sign_for_lambda_and_api_gateway_for_execute_api():
    url = "https://p4zbqhkd3xgwzy5kkgqbnjzc2e0ucdhk.lambda-url.eu-west-2.on.aws/"
    assert (region_from_url(url), kind_from_url(url)) == ("eu-west-2", "function_url")
    gateway = "https://abc123.execute-api.us-east-1.amazonaws.com/"
    assert (region_from_url(gateway), kind_from_url(gateway)) == ("us-east-1", "rest")
    assert kind_from_url("http://127.0.0.1:8080/") is None
    assert kind_from_url("https://lambda-url.example.com.on.aws/") is None
    services = [signing_service(kind) for kind in ("rest", "http", "function_url")]
    assert services == ["execute-api", "execute-api", "lambda"]


def test_execution_names_are_readable_and_valid():
    assert execution_name("churn.csv mlp 2026") == "churn-csv-mlp-2026"
    long = execution_name("x" * 100 + "-20261128-120000")
    assert len(long) == 80 and long.endswith("-20261128-120000")
    with pytest.raises(CloudError):
        execution_name("###")


def test_set_values_stay_strings_and_bad_pairs_fail():
    assert parse_sets(["max_iter=200", "note=a=b", "empty="]) == {
        "max_iter": "200",
        "note": "a=b",
        "empty": "",
    }
    for bad in ("noequals", "=1", "1abc=2"):
        with pytest.raises(CloudError):
            parse_sets([bad])


def test_execution_arn_from_name():
    machine = "arn:aws:states:eu-west-1:123456789012:stateMachine:onnxkit-dev"
    assert execution_arn(machine, "run-1") == (
        "arn:aws:states:eu-west-1:123456789012:execution:onnxkit-dev:run-1"
    )
    assert execution_arn(machine, "arn:x") == "arn:x"


def _event(kind: str, seconds: int, **details: object) -> dict[str, object]:
    return {
        "type": kind,
        "timestamp": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds),
        **details,
    }


def test_summary_of_a_run_that_failed_in_train():
    events = [
        _event("ExecutionStarted", 0),
        _event("PassStateEntered", 1, stateEnteredEventDetails={"name": workflow.PREPARE}),
        _event(
            "PassStateExited",
            2,
            stateExitedEventDetails={
                "name": workflow.PREPARE,
                "output": '{"prepared": {"training_job_name": "j-1"}}',
            },
        ),
        _event("TaskStateEntered", 3, stateEnteredEventDetails={"name": workflow.TRAIN}),
        _event(
            "TaskScheduled",
            3,
            taskScheduledEventDetails={
                "resourceType": "sagemaker",
                "parameters": '{"TrainingJobName": "j-1"}',
            },
        ),
        _event(
            "TaskFailed",
            90,
            taskFailedEventDetails={"error": "States.TaskFailed", "cause": "AlgorithmError"},
        ),
    ]
    run = summarize(
        {
            "executionArn": "arn:e",
            "name": "e",
            "status": "RUNNING",
            "input": '{"train_s3_uri": "s3://b/"}',
        },
        events,
    )
    steps = {s.name: s for s in run.steps}
    assert steps[workflow.PREPARE].status == "succeeded"
    assert steps[workflow.TRAIN].status == "failed" and steps[workflow.TRAIN].seconds == 87
    assert steps[workflow.EVALUATE].status == "pending"
    assert run.training_job_name == "j-1"
    assert run.error == {"error": "States.TaskFailed", "cause": "AlgorithmError"}
