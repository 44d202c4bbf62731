"""The scheduled drift check: the Lambda handler over moto (S3, CloudWatch, Step Functions) and
the plain check over fakes, on a trained customer_churn model promoted into the bucket and
capture objects laid out as the cloud capture delivers them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import msgspec
import pytest

from functions.monitor import handler
from functions.monitor.check import Settings, evaluate, metric_data, run_check
from functions.monitor.ports import MonitorError
from onnxkit.contract.drift import PREDICTIONS, DriftThresholds, parse_check
from onnxkit.contract.layout import (
    CAPTURE_ROWS_METRIC,
    DRIFT_LATEST_KEY,
    DRIFT_SCORE_METRIC,
    DRIFTED_METRIC,
    REFERENCE_FILE,
    drift_metric_namespace,
    drift_report_key,
)
from onnxkit.contract.manifest import load_manifest
from onnxkit.contract.pointer import Pointer
from tests.conftest import ArtifactFactory
from tests.support.aws import REGION, create_bucket, mocked
from tests.support.capture import Population, population, sample
from tests.support.drift_cloud import (
    FakeMetrics,
    FakeStore,
    FakeTrainer,
    S3Writer,
    promote_files,
    put_capture,
    without_reference,
)

pytestmark = pytest.mark.xdist_group("trained-churn")

DATASET = "customer_churn"
SHIFTED = "monthly_charges"
BUCKET = "kit-artifacts"
NAMESPACE = drift_metric_namespace("dev")
CHECKED_AT = datetime(2026, 12, 6, 6, 0, 5, tzinfo=UTC)  # the schedule's time
HOUR = timedelta(hours=1)
LAST_HOUR = datetime(2026, 12, 6, 5, tzinfo=UTC)  # the newest complete hour before the check


@pytest.fixture(scope="module")
def model_dir(train_artifact: ArtifactFactory) -> Path:
    return train_artifact(DATASET)


@pytest.fixture(scope="module")
def pop(model_dir: Path) -> Population:
    return population(model_dir, DATASET)


def _settings(model_name: str, **changes: Any) -> Settings:
    return Settings(model_name=model_name, namespace=NAMESPACE, **changes)


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> Iterator[tuple[Any, Pointer]]:
    """moto with the artifact bucket holding the promoted model, and the function's env."""
    with mocked(monkeypatch):
        s3 = create_bucket(BUCKET)
        pointer = promote_files(S3Writer(s3, BUCKET), model_dir)
        settings = msgspec.json.encode(_settings(pointer.model_name)).decode()
        monkeypatch.setenv("ARTIFACT_BUCKET", BUCKET)
        monkeypatch.setenv("MODEL_NAME", pointer.model_name)
        monkeypatch.setenv("DRIFT_SETTINGS", settings)
        yield s3, pointer


def _invoke() -> dict[str, Any]:
    event = {"source": "aws.events", "time": "2026-12-06T06:00:05Z", "detail": {}}
    return handler.lambda_handler(event)


def _metrics() -> dict[tuple[str, str | None], float]:
    """(metric, feature) -> the value published at the check's time."""
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    found = {}
    for metric in cloudwatch.list_metrics(Namespace=NAMESPACE)["Metrics"]:
        dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        stats = cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=metric["MetricName"],
            Dimensions=metric["Dimensions"],
            StartTime=CHECKED_AT - HOUR,
            EndTime=CHECKED_AT + HOUR,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
        assert len(stats) == 1, metric
        found[(metric["MetricName"], dimensions.get("Feature"))] = stats[0]["Maximum"]
    return found


def test_a_shifted_feature_is_flagged_alone_reported_and_published(
    cloud: tuple[Any, Pointer], pop: Population
) -> None:
    s3, pointer = cloud
    writer = S3Writer(s3, BUCKET)
    # Two hours of the window, gzip and plain objects, plus what the check must not read: the
    # hour it runs in and an hour before the 24-hour window.
    put_capture(writer, LAST_HOUR, sample(pop, 300, 1, shift={SHIFTED: 1.5}), compressed=True)
    shifted = sample(pop, 300, 2, shift={SHIFTED: 1.5})
    put_capture(writer, LAST_HOUR - 3 * HOUR, shifted, compressed=False)
    put_capture(writer, LAST_HOUR + HOUR, sample(pop, 500, 3))
    put_capture(writer, LAST_HOUR - 24 * HOUR, sample(pop, 500, 4))

    summary = _invoke()

    assert summary["status"] == "drift"
    assert summary["capture_rows"] == 600
    assert set(summary["drifted"]) - {PREDICTIONS} == {SHIFTED}
    key = drift_report_key(CHECKED_AT)
    assert summary["report_key"] == key
    stored = parse_check(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    latest = parse_check(s3.get_object(Bucket=BUCKET, Key=DRIFT_LATEST_KEY)["Body"].read())
    assert stored == latest
    assert stored.model_version == pointer.model_version
    assert stored.window_start == datetime(2026, 12, 5, 6, tzinfo=UTC)
    assert stored.window_end == datetime(2026, 12, 6, 6, tzinfo=UTC)
    assert stored.report is not None
    flagged = {f.name: f.drifted for f in stored.report.features if f.drifted}
    assert flagged == {SHIFTED: ["psi"]}

    metrics = _metrics()
    features = [f.name for f in stored.report.features]
    assert set(metrics) == {
        (CAPTURE_ROWS_METRIC, None),
        (DRIFTED_METRIC, None),
        (DRIFT_SCORE_METRIC, PREDICTIONS),
        *((DRIFT_SCORE_METRIC, name) for name in features),
    }
    assert metrics[(CAPTURE_ROWS_METRIC, None)] == 600
    assert metrics[(DRIFTED_METRIC, None)] == len(stored.report.drifted) >= 1
    assert metrics[(DRIFT_SCORE_METRIC, SHIFTED)] > 1
    assert all(metrics[(DRIFT_SCORE_METRIC, name)] < 1 for name in features if name != SHIFTED)


def test_captures_like_the_training_data_flag_nothing(
    cloud: tuple[Any, Pointer], pop: Population
) -> None:
    s3, _ = cloud
    writer = S3Writer(s3, BUCKET)
    for index in range(4):
        hour = LAST_HOUR - index * 5 * HOUR
        put_capture(writer, hour, sample(pop, 150, 10 + index), compressed=index % 2 == 0)

    summary = _invoke()

    assert (summary["status"], summary["capture_rows"], summary["drifted"]) == ("no_drift", 600, [])
    metrics = _metrics()
    assert metrics[(DRIFTED_METRIC, None)] == 0
    assert max(v for (name, _), v in metrics.items() if name == DRIFT_SCORE_METRIC) < 1


def test_records_of_another_version_are_left_out(
    cloud: tuple[Any, Pointer], pop: Population
) -> None:
    s3, _ = cloud
    writer = S3Writer(s3, BUCKET)
    mine = sample(pop, 200, 20)
    # The version before, whose traffic was shifted: were it compared, it would drift.
    older = [
        msgspec.structs.replace(r, model_version="20260101000000-00000000")
        for r in sample(pop, 400, 21, shift={SHIFTED: 2.0})
    ]
    put_capture(writer, LAST_HOUR, older[:200] + mine[:100] + older[200:], name="a")
    put_capture(writer, LAST_HOUR, mine[100:], name="b", compressed=False)

    summary = _invoke()

    assert (summary["status"], summary["capture_rows"]) == ("no_drift", 200)
    check = parse_check(s3.get_object(Bucket=BUCKET, Key=DRIFT_LATEST_KEY)["Body"].read())
    assert check.other_rows == 400


def test_too_few_records_report_not_enough_data_and_publish_no_score(
    cloud: tuple[Any, Pointer], pop: Population
) -> None:
    s3, _ = cloud
    writer = S3Writer(s3, BUCKET)
    put_capture(writer, LAST_HOUR, sample(pop, 99, 30, shift={SHIFTED: 3.0}))

    summary = _invoke()

    assert (summary["status"], summary["capture_rows"]) == ("not_enough_data", 99)
    check = parse_check(s3.get_object(Bucket=BUCKET, Key=DRIFT_LATEST_KEY)["Body"].read())
    assert check.report is None and not check.any_drift
    assert "99 captured rows" in check.detail and "at least 100" in check.detail
    # No DriftedFeatures data point: the alarm treats missing data as not breaching.
    assert _metrics() == {(CAPTURE_ROWS_METRIC, None): 99}


def test_drift_starts_the_training_state_machine_when_enabled(
    cloud: tuple[Any, Pointer], pop: Population, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, _ = cloud
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(
        name="onnxkit-dev-training",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/training",
    )["stateMachineArn"]
    monkeypatch.setenv("TRAINING_STATE_MACHINE_ARN", machine)
    put_capture(S3Writer(s3, BUCKET), LAST_HOUR, sample(pop, 400, 40, shift={SHIFTED: 1.5}))

    summary = _invoke()

    assert summary["status"] == "drift"
    executions = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in executions] == ["drift-20261206T060005Z"]
    assert summary["training_execution"] == executions[0]["executionArn"]
    started = sfn.describe_execution(executionArn=executions[0]["executionArn"])
    assert json.loads(started["input"]) == {
        "train_s3_uri": f"s3://{BUCKET}/data/train/",
        "hyperparameters": {},
    }


# --- the plain check over fakes ---------------------------------------------------------------


@pytest.fixture
def store(model_dir: Path) -> FakeStore:
    store = FakeStore(BUCKET)
    promote_files(store, model_dir)
    return store


def _name(store: FakeStore) -> str:
    key = next(k for k in store.objects if k.endswith("production.json"))
    return key.split("/")[1]


def test_nothing_promoted_is_unavailable_without_metrics() -> None:
    store, metrics = FakeStore(BUCKET), FakeMetrics()
    check = run_check(store, metrics, _settings("churn"), CHECKED_AT)
    assert (check.status, check.model_version) == ("unavailable", None)
    assert "no model of churn has been promoted yet" in check.detail
    assert metrics.calls == []
    assert parse_check(store.get(DRIFT_LATEST_KEY) or b"") == check


def test_a_model_without_reference_statistics_is_unavailable(
    model_dir: Path, tmp_path: Path
) -> None:
    old = without_reference(model_dir, tmp_path / "old")
    manifest = load_manifest(old)
    store, metrics = FakeStore(BUCKET), FakeMetrics()
    promote_files(store, old, reference=False)
    check = run_check(store, metrics, _settings(manifest.model_name), CHECKED_AT)
    assert (check.status, check.model_version) == ("unavailable", manifest.model_version)
    assert "has no reference statistics" in check.detail
    assert metrics.calls == [] and check.report is None


def test_a_listed_reference_that_is_missing_is_an_error(model_dir: Path) -> None:
    store = FakeStore(BUCKET)
    promote_files(store, model_dir, reference=False)
    with pytest.raises(MonitorError, match=r"reference\.json does not exist"):
        evaluate(store, _settings(_name(store)), CHECKED_AT)


def test_a_reference_that_does_not_match_the_manifest_is_refused(
    store: FakeStore, pop: Population
) -> None:
    name = _name(store)
    key = next(k for k in store.objects if k.endswith(REFERENCE_FILE))
    store.write(key, (store.get(key) or b"") + b" ")  # still valid JSON, other bytes
    put_capture(store, LAST_HOUR, sample(pop, 200, 50))
    with pytest.raises(MonitorError, match="does not match its sha256"):
        run_check(store, FakeMetrics(), _settings(name), CHECKED_AT)
    assert store.get(DRIFT_LATEST_KEY) is None


def test_a_manifest_other_than_the_pinned_one_is_refused(store: FakeStore) -> None:
    name = _name(store)
    key = next(k for k in store.objects if k.endswith("manifest.json"))
    store.objects[key][-1] = store.objects[key][-1].replace(b"{", b"{ ", 1)
    with pytest.raises(MonitorError, match="does not match its sha256"):
        evaluate(store, _settings(name), CHECKED_AT)


def test_unreadable_objects_are_skipped_and_named(store: FakeStore, pop: Population) -> None:
    name = _name(store)
    put_capture(store, LAST_HOUR, sample(pop, 200, 60), name="good")
    bad = f"{LAST_HOUR:capture/%Y/%m/%d/%H/}broken.gz"
    store.write(bad, b"\x1f\x8b" + b"not really gzip")
    store.write(f"{LAST_HOUR:capture/%Y/%m/%d/%H/}notes.jsonl", b'{"hello": 1}\n')
    check = evaluate(store, _settings(name), CHECKED_AT)
    assert check.status == "no_drift"
    assert check.capture_rows == 200
    assert sorted(check.unreadable_objects) == [
        bad,
        f"{LAST_HOUR:capture/%Y/%m/%d/%H/}notes.jsonl",
    ]


def test_the_row_cap_reads_the_newest_hours_first(store: FakeStore, pop: Population) -> None:
    name = _name(store)
    put_capture(store, LAST_HOUR, sample(pop, 150, 70))
    put_capture(store, LAST_HOUR - 2 * HOUR, sample(pop, 150, 71, shift={SHIFTED: 3.0}))
    check = evaluate(store, _settings(name, max_rows=150), CHECKED_AT)
    assert (check.status, check.capture_rows, check.truncated) == ("no_drift", 150, True)
    full = evaluate(store, _settings(name, max_rows=1000), CHECKED_AT)
    assert (full.status, full.capture_rows, full.truncated) == ("drift", 300, False)


def test_a_record_without_a_final_newline_still_counts(store: FakeStore, pop: Population) -> None:
    name = _name(store)
    records = sample(pop, 120, 80)
    from onnxkit.contract.capture import encode_records

    store.write(f"{LAST_HOUR:capture/%Y/%m/%d/%H/}last.jsonl", encode_records(records).rstrip())
    assert evaluate(store, _settings(name, min_rows=120), CHECKED_AT).capture_rows == 120


def test_retraining_starts_once_and_not_over_a_running_one(
    store: FakeStore, pop: Population
) -> None:
    name = _name(store)
    put_capture(store, LAST_HOUR, sample(pop, 300, 90, shift={SHIFTED: 1.5}))
    idle, busy = FakeTrainer(), FakeTrainer(busy=True)
    started = evaluate(store, _settings(name), CHECKED_AT, idle)
    assert started.training_execution is not None
    assert idle.started == [
        (
            "drift-20261206T060005Z",
            {"train_s3_uri": f"s3://{BUCKET}/data/train/", "hyperparameters": {}},
        )
    ]
    skipped = evaluate(store, _settings(name), CHECKED_AT, busy)
    assert skipped.training_execution is None and busy.started == []
    assert "already in progress" in skipped.detail
    # Without drift nothing starts.
    clean = FakeStore(BUCKET)
    clean.objects = {k: v for k, v in store.objects.items() if not k.startswith("capture/")}
    put_capture(clean, LAST_HOUR, sample(pop, 300, 91))
    assert evaluate(clean, _settings(name), CHECKED_AT, idle).training_execution is None
    assert len(idle.started) == 1


def test_thresholds_come_from_the_settings(store: FakeStore, pop: Population) -> None:
    name = _name(store)
    put_capture(store, LAST_HOUR, sample(pop, 300, 95, shift={SHIFTED: 0.7}))
    strict = evaluate(store, _settings(name), CHECKED_AT)
    lax = evaluate(store, _settings(name, thresholds=DriftThresholds(psi=5.0)), CHECKED_AT)
    assert SHIFTED in strict.report.drifted  # type: ignore[union-attr]
    assert SHIFTED not in lax.report.drifted  # type: ignore[union-attr]


def test_metric_scores_cross_1_exactly_where_a_measure_drifted(
    store: FakeStore, pop: Population
) -> None:
    name = _name(store)
    put_capture(store, LAST_HOUR, sample(pop, 400, 99, shift={SHIFTED: 1.0, "age": 0.1}))
    check = evaluate(store, _settings(name), CHECKED_AT)
    assert check.report is not None
    scores = {
        next(d["Value"] for d in datum["Dimensions"] if d["Name"] == "Feature"): datum["Value"]
        for datum in metric_data(check)
        if datum["MetricName"] == DRIFT_SCORE_METRIC
    }
    for feature in check.report.features:
        assert (scores[feature.name] > 1) == bool(feature.drifted), feature
    assert check.report.predictions is not None
    assert (scores[PREDICTIONS] > 1) == check.report.predictions.drifted


def test_settings_refuse_bad_json() -> None:
    with pytest.raises(MonitorError, match="invalid drift settings"):
        Settings.parse("churn", '{"namespace": "n", "window_hours": "a day"}')
    with pytest.raises(MonitorError, match="invalid drift settings"):
        Settings.parse("churn", '{"namespace": "n", "windows": 3}')
    assert Settings.parse("churn", '{"namespace": "n"}').window_hours == 24
