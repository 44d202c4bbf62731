"""The scheduled drift check in the Serving stack: function, schedule, least-privilege role,
alarm to the serving alarm topic, dashboard widgets and the output the CLI reads."""

from __future__ import annotations

import json
from typing import Any

from functions.monitor.check import Settings
from onnxkit.contract import layout
from tests.infra.conftest import SYNTH_GROUP, Synthesized

pytestmark = SYNTH_GROUP


def _drift_function(kit: Synthesized) -> dict[str, Any]:
    functions = kit.resources("Serving", "AWS::Lambda::Function")
    (found,) = [
        f
        for f in functions.values()
        if f["Properties"].get("FunctionName") == layout.drift_function_name(kit.kit.config.env)
    ]
    return found


def _statements(kit: Synthesized) -> list[dict[str, Any]]:
    found = []
    for name, policy in kit.resources("Serving", "AWS::IAM::Policy").items():
        if name.startswith("DriftRole"):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    assert found
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_function_runs_the_monitor_code_with_the_configs_settings(dev: Synthesized) -> None:
    props = _drift_function(dev)["Properties"]
    assert props["Handler"] == "functions.monitor.handler.lambda_handler"
    assert props["Architectures"] == ["arm64"]
    env = props["Environment"]["Variables"]
    assert env["MODEL_NAME"] == dev.kit.config.model_name
    assert "TRAINING_STATE_MACHINE_ARN" not in env  # retraining on drift is off by default
    # What the CDK app writes is what the function reads.
    settings = Settings.parse(env["MODEL_NAME"], env["DRIFT_SETTINGS"])
    drift = dev.kit.config.drift
    assert settings.namespace == "OnnxKit/dev/Drift"
    assert (settings.window_hours, settings.min_rows, settings.max_rows) == (
        drift.window_hours,
        drift.min_rows,
        drift.max_rows,
    )
    assert settings.thresholds == drift.thresholds()


def test_a_schedule_invokes_it_every_interval(dev: Synthesized) -> None:
    rules = dev.resources("Serving", "AWS::Events::Rule")
    (rule,) = [r for r in rules.values() if "drift" in r["Properties"].get("Description", "")]
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 day)"
    (target,) = rule["Properties"]["Targets"]
    assert "DriftFunction" in json.dumps(target["Arn"])
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_the_role_reads_capture_and_the_model_writes_drift_and_one_namespace(
    dev: Synthesized,
) -> None:
    objects: dict[str, set[str]] = {}
    other: dict[str, list[Any]] = {}
    for statement in _statements(dev):
        for action in _as_list(statement["Action"]):
            for resource in _as_list(statement["Resource"]):
                if action.startswith("s3:") and action != "s3:ListBucket":
                    _, key = resource["Fn::Join"][1][-1].split("/", 1)
                    objects.setdefault(key, set()).add(action)
                else:
                    other.setdefault(action, []).append(statement.get("Condition"))
    read = {"s3:GetObject", "s3:GetObjectVersion"}
    assert objects == {
        "capture/*": read,
        f"models/{dev.kit.config.model_name}/*": read,
        "drift/*": {"s3:PutObject"},
    }
    assert other["cloudwatch:PutMetricData"] == [
        {"StringEquals": {"cloudwatch:namespace": "OnnxKit/dev/Drift"}}
    ]
    assert set(other) == {
        "cloudwatch:PutMetricData", "s3:ListBucket", "kms:Decrypt", "kms:Encrypt",
        "kms:GenerateDataKey", "logs:CreateLogStream", "logs:PutLogEvents",
        "xray:PutTraceSegments", "xray:PutTelemetryRecords",
    }  # fmt: skip


def test_retraining_on_drift_may_start_only_the_training_state_machine(
    variant: Synthesized,
) -> None:
    env = _drift_function(variant)["Properties"]["Environment"]["Variables"]
    machine = json.dumps(env["TRAINING_STATE_MACHINE_ARN"])
    assert "stateMachine:onnxkit-dev-training" in machine
    states = [
        s
        for s in _statements(variant)
        if any(a.startswith("states:") for a in _as_list(s["Action"]))
    ]
    (statement,) = states
    assert sorted(_as_list(statement["Action"])) == [
        "states:ListExecutions",
        "states:StartExecution",
    ]
    assert json.dumps(statement["Resource"]) == machine


def test_the_alarm_on_drifted_features_notifies_the_alarm_topic(dev: Synthesized) -> None:
    alarms = dev.resources("Serving", "AWS::CloudWatch::Alarm")
    (drift,) = [
        a["Properties"]
        for a in alarms.values()
        if a["Properties"].get("MetricName") == "DriftedFeatures"
    ]
    assert drift["Namespace"] == "OnnxKit/dev/Drift"
    assert drift["Dimensions"] == [{"Name": "Model", "Value": dev.kit.config.model_name}]
    assert (drift["Statistic"], drift["Period"], drift["Threshold"]) == ("Maximum", 86400, 1)
    assert drift["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert drift["TreatMissingData"] == "notBreaching"  # not enough data: no alarm
    topics = [n for n in dev.resources("Serving", "AWS::SNS::Topic") if "AlarmTopic" in n]
    assert drift["AlarmActions"] == [{"Ref": topics[0]}]
    errors = [a["Properties"] for name, a in alarms.items() if name.startswith("DriftErrorsAlarm")]
    assert errors and errors[0]["AlarmActions"] == [{"Ref": topics[0]}]


def _widgets(kit: Synthesized) -> list[dict[str, Any]]:
    """The dashboard's widgets, deploy-time tokens as "?"."""
    body = kit.one("Serving", "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"]
    _, pieces = body["Fn::Join"]
    widgets: list[dict[str, Any]] = json.loads(
        "".join(p if isinstance(p, str) else "?" for p in pieces)
    )["widgets"]
    return widgets


def test_the_dashboard_shows_every_features_score_and_the_output_names_the_reports(
    dev: Synthesized,
) -> None:
    widgets = {w["properties"].get("title"): w["properties"] for w in _widgets(dev)}
    scores = widgets["Drift score per feature (above 1: drifted)"]
    ((search,),) = [m for m in scores["metrics"]]
    name = dev.kit.config.model_name
    assert search["expression"] == (
        'SEARCH(\'{OnnxKit/dev/Drift,Model,Feature} MetricName="DriftScore" '
        f"Model=\"{name}\"', 'Maximum', 86400)"
    )
    assert scores["annotations"]["horizontal"][0]["value"] == 1
    counts = json.dumps(widgets["Drifted features and captured rows per check"]["metrics"])
    assert "DriftedFeatures" in counts and "CaptureRows" in counts
    assert len(widgets["Drift alarms"]["alarms"]) == 2
    output = dev.template("Serving")["Outputs"][layout.DRIFT_REPORTS_OUTPUT]["Value"]
    assert json.dumps(output).endswith('/drift/"]]}')


def test_the_interval_sets_the_schedule_and_the_alarm_period(variant: Synthesized) -> None:
    rules = variant.resources("Serving", "AWS::Events::Rule")
    (rule,) = [r for r in rules.values() if "drift" in r["Properties"].get("Description", "")]
    assert rule["Properties"]["ScheduleExpression"] == "rate(6 hours)"
    alarms = variant.resources("Serving", "AWS::CloudWatch::Alarm")
    periods = {a["Properties"]["Period"] for n, a in alarms.items() if n.startswith("Drift")}
    assert periods == {6 * 3600}
