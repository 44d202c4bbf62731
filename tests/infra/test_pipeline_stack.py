"""The pipeline stack: the state machine matches onnxkit.contract.workflow; IAM is scoped."""

from __future__ import annotations

import json
import re
from typing import Any

from infra.nag import flatten
from onnxkit.contract import workflow as wf
from onnxkit.contract.metrics import metric_definitions
from tests.infra.conftest import SYNTH_GROUP, Synthesized

pytestmark = SYNTH_GROUP


def render(value: Any) -> str:
    """A CloudFormation string value with intrinsics as ``<...>`` placeholders (no quotes)."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        delimiter, parts = value["Fn::Join"]
        return str(delimiter).join(render(part) for part in parts)
    if "Fn::Sub" in value:
        return re.sub(r"\$\{([^}]+)\}", r"<\1>", value["Fn::Sub"])
    if "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::ImportValue" in value:
        return f"<import:{value['Fn::ImportValue']}>"
    raise AssertionError(f"unexpected intrinsic {value}")


def definition(kit: Synthesized) -> dict[str, Any]:
    """The state machine's ASL, tokens rendered as ``<Logical.Attr>`` placeholders."""
    machine = kit.one("Pipeline", "AWS::StepFunctions::StateMachine")["Properties"]
    parsed: dict[str, Any] = json.loads(render(machine["DefinitionString"]))
    return parsed


def statements(kit: Synthesized, policy_prefix: str) -> list[dict[str, Any]]:
    """Statements of the policies whose logical id starts with ``policy_prefix``."""
    found = []
    for name, policy in kit.resources("Pipeline", "AWS::IAM::Policy").items():
        if name.startswith(policy_prefix):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    assert found, policy_prefix
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return list(resource) if isinstance(resource, list) else [resource]


def test_states_and_transitions_follow_the_workflow_spec(dev: Synthesized) -> None:
    asl = definition(dev)
    states = asl["States"]
    assert asl["StartAt"] == wf.START_AT
    assert set(states) == {step.name for step in wf.STEPS}
    for step in wf.STEPS:
        state = states[step.name]
        assert state["Type"].lower() == step.kind, step.name
        if step.kind == "choice":
            (choice,) = state["Choices"]
            assert choice == {
                "Variable": wf.GATE_CONDITION_PATH,
                "BooleanEquals": True,
                "Next": step.when_true,
            }
            assert state["Default"] == step.otherwise
        elif step.next is not None:
            assert state["Next"] == step.next, step.name
        if step.kind in ("succeed", "fail"):
            assert "Next" not in state


def test_every_task_has_a_catch_all_to_the_failure_route(dev: Synthesized) -> None:
    states = definition(dev)["States"]
    tasks = [name for name, state in states.items() if state["Type"] == "Task"]
    assert sorted(tasks) == sorted(wf.TASK_STATES)
    for name in tasks:
        catches = states[name]["Catch"]
        assert [c["ErrorEquals"] for c in catches] == [["States.ALL"]], name
        assert catches[0]["Next"] == wf.step(name).on_error
    # The failure notification ends in the Fail state, carrying the original error.
    assert states[wf.NOTIFY_FAILURE]["Next"] == wf.FAILED
    assert states[wf.FAILED]["ErrorPath"] == "$.error.Error"


def test_only_promote_changes_what_is_served(dev: Synthesized) -> None:
    states = definition(dev)["States"]
    # Every route into Promote passes the gate and Register; none leaves it half done.
    into_promote = [n for n, s in states.items() if s.get("Next") == wf.PROMOTE]
    assert into_promote == [wf.REGISTER]
    assert states[wf.PROMOTE]["Catch"][0]["Next"] == wf.NOTIFY_FAILURE
    assert wf.happy_path() == [
        wf.PREPARE, wf.TRAIN, wf.EVALUATE, wf.QUALITY_GATE, wf.REGISTER, wf.PROMOTE,
        wf.NOTIFY_PROMOTED, wf.PROMOTED,
    ]  # fmt: skip


def test_train_runs_script_mode_with_the_shared_metric_definitions(dev: Synthesized) -> None:
    train = definition(dev)["States"][wf.TRAIN]
    assert train["Resource"].endswith(":states:::sagemaker:createTrainingJob.sync")
    params = train["Parameters"]
    spec = params["AlgorithmSpecification"]
    assert spec["MetricDefinitions"] == metric_definitions()
    assert spec["TrainingImage"].endswith(".amazonaws.com/sagemaker-scikit-learn:1.9-0-cpu-py3")
    assert params["ResourceConfig"] == {
        "InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 10,
    }  # fmt: skip
    assert params["EnableManagedSpotTraining"] is True
    assert params["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 3600,
        "MaxWaitTimeInSeconds": 7200,
    }
    assert params["CheckpointConfig"] == {"S3Uri.$": "$.prepared.checkpoint_uri"}
    assert params["HyperParameters.$"] == "$.prepared.hyperparameters"
    assert params["InputDataConfig.$"] == "$.prepared.channels"
    assert params["OutputDataConfig"]["S3OutputPath"].endswith("/training/")
    assert {"Key": "onnxkit:execution", "Value.$": "$$.Execution.Name"} in params["Tags"]
    assert train["ResultPath"] == wf.TRAINING_PATH


def test_prepare_sets_script_mode_and_channels(dev: Synthesized) -> None:
    prepare = definition(dev)["States"][wf.PREPARE]
    assert prepare["QueryLanguage"] == "JSONata"
    output = prepare["Output"]
    assert output.startswith("{% ") and output.endswith(" %}")
    for piece in (
        '"sagemaker_program": "train.py"',
        '"sagemaker_submit_directory": "s3://',
        '"sagemaker_region": "us-east-1"',
        '"model_name": "onnxkit-model"',
        "'ChannelName': 'train'",
        "$exists($states.input.validation_s3_uri)",
        "'onnxkit-model-' & $uuid()",
    ):
        assert piece in output, piece


def test_on_demand_training_has_no_spot_settings(variant: Synthesized) -> None:
    params = definition(variant)["States"][wf.TRAIN]["Parameters"]
    assert "EnableManagedSpotTraining" not in params
    assert "CheckpointConfig" not in params
    assert params["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}


def test_evaluate_gets_the_configured_gate(dev: Synthesized) -> None:
    evaluate = definition(dev)["States"][wf.EVALUATE]
    payload = evaluate["Parameters"]  # payload_response_only: the event itself
    # Unset (None) thresholds are left out; the Evaluate Lambda reads them back as off.
    assert payload["gate"] == dev.kit.config.gate.model_dump(exclude_none=True)
    assert type(dev.kit.config.gate).model_validate(payload["gate"]) == dev.kit.config.gate
    assert payload["model_name"] == "onnxkit-model"
    assert payload["candidate_artifact_uri.$"] == wf.TRAINED_ARTIFACT_PATH
    assert evaluate["ResultPath"] == wf.EVALUATION_PATH
    promote = definition(dev)["States"][wf.PROMOTE]["Parameters"]
    assert promote == {f"{k}.$": v for k, v in wf.PROMOTE_EVENT_PATHS.items()}


def test_register_creates_an_approved_package_with_metrics(dev: Synthesized) -> None:
    register = definition(dev)["States"][wf.REGISTER]
    assert register["Resource"].endswith(":states:::aws-sdk:sagemaker:createModelPackage")
    args = register["Arguments"]
    assert args["ModelPackageGroupName"] == "onnxkit-dev-onnxkit-model"
    assert args["ModelApprovalStatus"] == "Approved"
    assert "$states.input.evaluation.package_metadata" in args["CustomerMetadataProperties"]
    assert "registration" in register["Output"]


def test_logging_tracing_and_outputs(dev: Synthesized) -> None:
    machine = dev.one("Pipeline", "AWS::StepFunctions::StateMachine")["Properties"]
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    outputs = dev.template("Pipeline")["Outputs"]
    assert {"StateMachineArn", "NotificationTopicArn"} <= set(outputs)
    topic = dev.one("Pipeline", "AWS::SNS::Topic")["Properties"]
    assert "KmsMasterKeyId" in topic


def test_sync_iam_is_complete_and_scoped(dev: Synthesized) -> None:
    found = statements(dev, "WorkflowStateMachineRole")
    by_action = {a: s for s in found for a in _actions(s)}
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        assert flatten(by_action[action]["Resource"]).endswith(
            ":rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule"
        )
    for action in (
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:StopTrainingJob",
        "sagemaker:AddTags",
    ):
        assert flatten(by_action[action]["Resource"]).endswith(":training-job/onnxkit-model-*")
    pass_role = by_action["iam:PassRole"]
    assert flatten(pass_role["Resource"]).startswith("<TrainingRole")
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert by_action["sagemaker:CreateModelPackage"]
    assert by_action["kms:GenerateDataKey"]


def test_promote_may_only_touch_the_inference_function(dev: Synthesized) -> None:
    found = statements(dev, "PromoteRole")
    lambda_statements = [s for s in found if any(a.startswith("lambda:") for a in _actions(s))]
    assert {a for s in lambda_statements for a in _actions(s)} == {
        "lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration",
        "lambda:PublishVersion", "lambda:ListVersionsByFunction", "lambda:GetAlias",
        "lambda:UpdateAlias", "lambda:CreateAlias",
    }  # fmt: skip
    resources = {flatten(r) for s in lambda_statements for r in _resources(s)}
    assert resources == {
        "arn:aws:lambda:us-east-1:<AWS::AccountId>:function:onnxkit-dev-inference",
        "arn:aws:lambda:us-east-1:<AWS::AccountId>:function:onnxkit-dev-inference:*",
    }
    writes = [s for s in found if "s3:PutObject" in _actions(s)]
    assert [flatten(r) for s in writes for r in _resources(s)] == [
        "arn:aws:s3:::onnxkit-dev-artifacts-<AWS::AccountId>-us-east-1/models/*"
    ]


def test_schedule_starts_retraining_when_configured(dev: Synthesized, variant: Synthesized) -> None:
    assert not dev.resources("Pipeline", "AWS::Events::Rule")
    rule = variant.one("Pipeline", "AWS::Events::Rule")["Properties"]
    assert rule["ScheduleExpression"] == "rate(7 days)"
    (target,) = rule["Targets"]
    assert "train_s3_uri" in flatten(target["Input"])


def test_the_registry_card_needs_no_new_grant(dev: Synthesized) -> None:
    """The card rides on CreateModelPackage (CustomerMetadataProperties) and on Promote's writes
    under models/: no model card action, and Evaluate, which builds it, still writes nothing."""
    found = statements(dev, "WorkflowStateMachineRole")
    assert {a for s in found for a in _actions(s) if a.startswith("sagemaker:")} == {
        "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob",
        "sagemaker:StopTrainingJob", "sagemaker:AddTags", "sagemaker:CreateModelPackage",
    }  # fmt: skip
    evaluate = statements(dev, "EvaluateRole")
    assert not [a for s in evaluate for a in _actions(s) if a.startswith("s3:Put")]
