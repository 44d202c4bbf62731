"""The serving stack: function, live alias, REST API, alarms, dashboard, outputs."""

from __future__ import annotations

import json
from typing import Any

from infra.constructs.inference_api import STAGE_NAME
from infra.constructs.inference_function import INFERENCE_HANDLER
from tests.infra.conftest import SYNTH_GROUP, Synthesized

pytestmark = SYNTH_GROUP


def _function(kit: Synthesized) -> dict[str, Any]:
    functions = kit.resources("Serving", "AWS::Lambda::Function")
    (inference,) = [
        f for f in functions.values() if f["Properties"].get("Handler") == INFERENCE_HANDLER
    ]
    props: dict[str, Any] = inference["Properties"]
    return props


def test_inference_function(dev: Synthesized) -> None:
    props = _function(dev)
    assert props["Runtime"] == "python3.14"
    assert props["Architectures"] == ["arm64"]
    assert props["MemorySize"] == 1024
    assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["FunctionName"] == "onnxkit-dev-inference"
    env = props["Environment"]["Variables"]
    assert env["MODEL_SHA256"] == ""
    pointer = json.dumps(env["MODEL_URI"])
    assert "models/onnxkit-model/production.json" in pointer
    assert env["MAX_INSTANCES"] == "1000"


def test_config_reaches_the_function(prod: Synthesized, variant: Synthesized) -> None:
    assert _function(prod)["MemorySize"] == 2048
    assert _function(prod)["ReservedConcurrentExecutions"] == 100
    assert _function(variant)["Architectures"] == ["x86_64"]


def test_live_alias_points_at_a_published_version(dev: Synthesized) -> None:
    alias = dev.one("Serving", "AWS::Lambda::Alias")["Properties"]
    assert alias["Name"] == "live"
    version_id = alias["FunctionVersion"]["Fn::GetAtt"][0]
    assert dev.template("Serving")["Resources"][version_id]["Type"] == "AWS::Lambda::Version"


def test_api_uses_iam_auth_and_calls_the_alias(dev: Synthesized) -> None:
    methods = dev.resources("Serving", "AWS::ApiGateway::Method")
    assert len(methods) == 4  # POST /predict, GET /model, /health, /openapi.json
    alias_id = next(iter(dev.resources("Serving", "AWS::Lambda::Alias")))
    for method in methods.values():
        props = method["Properties"]
        assert props["AuthorizationType"] == "AWS_IAM"
        assert props.get("ApiKeyRequired") is not True
        assert alias_id in json.dumps(props["Integration"]["Uri"])
    assert not dev.resources("Serving", "AWS::ApiGateway::UsagePlan")


def test_api_key_mode_has_a_usage_plan(variant: Synthesized) -> None:
    for method in variant.resources("Serving", "AWS::ApiGateway::Method").values():
        assert method["Properties"]["ApiKeyRequired"] is True
        assert method["Properties"]["AuthorizationType"] == "NONE"
    plan = variant.one("Serving", "AWS::ApiGateway::UsagePlan")["Properties"]
    assert plan["Quota"] == {"Limit": 100000, "Period": "DAY"}
    assert plan["Throttle"] == {"RateLimit": 50, "BurstLimit": 100}
    assert variant.resources("Serving", "AWS::ApiGateway::ApiKey")
    assert variant.template("Serving")["Outputs"]["AuthMode"]["Value"] == "api_key"


def test_stage_throttling_logging_and_tracing(dev: Synthesized, prod: Synthesized) -> None:
    stage = dev.one("Serving", "AWS::ApiGateway::Stage")["Properties"]
    assert stage["StageName"] == STAGE_NAME
    assert stage["TracingEnabled"] is True
    assert "DestinationArn" in stage["AccessLogSetting"]
    (settings,) = stage["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (50, 100)
    assert settings["LoggingLevel"] == "ERROR"
    prod_stage = prod.one("Serving", "AWS::ApiGateway::Stage")["Properties"]
    assert prod_stage["MethodSettings"][0]["ThrottlingRateLimit"] == 200


def test_predict_body_is_validated_against_a_schema(dev: Synthesized) -> None:
    validator = dev.one("Serving", "AWS::ApiGateway::RequestValidator")["Properties"]
    assert validator["ValidateRequestBody"] is True
    model = dev.one("Serving", "AWS::ApiGateway::Model")["Properties"]
    schema = model["Schema"]
    assert schema["required"] == ["instances"]
    assert schema["properties"]["instances"]["type"] == "array"
    post = [
        m["Properties"]
        for m in dev.resources("Serving", "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "POST"
    ]
    assert len(post) == 1 and "RequestValidatorId" in post[0]
    assert "application/json" in post[0]["RequestModels"]


def test_npy_bodies_are_binary_and_not_held_to_the_json_schema(dev: Synthesized) -> None:
    from onnxkit.local.gateway import BINARY_MEDIA_TYPES

    api = dev.one("Serving", "AWS::ApiGateway::RestApi")["Properties"]
    assert "application/x-npy" in api["BinaryMediaTypes"]
    assert set(api["BinaryMediaTypes"]) == BINARY_MEDIA_TYPES  # onnxkit serve does the same
    (post,) = [
        m["Properties"]
        for m in dev.resources("Serving", "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "POST"
    ]
    # The schema model is mapped to application/json only (no $default): API Gateway skips
    # body validation for a content type without a model, so .npy and CSV reach the function.
    assert set(post["RequestModels"]) == {"application/json"}
    (model,) = dev.resources("Serving", "AWS::ApiGateway::Model").values()
    assert model["Properties"]["ContentType"] == "application/json"


def test_gateway_errors_keep_the_api_error_shape(dev: Synthesized) -> None:
    responses = dev.resources("Serving", "AWS::ApiGateway::GatewayResponse")
    kinds = {r["Properties"]["ResponseType"] for r in responses.values()}
    assert kinds == {"DEFAULT_4XX", "DEFAULT_5XX"}
    for response in responses.values():
        template = response["Properties"]["ResponseTemplates"]["application/json"]
        assert template.startswith('{"error": {"code": "$context.error.responseType"')


def test_alarms_dashboard_and_outputs(dev: Synthesized) -> None:
    alarms = dev.resources("Serving", "AWS::CloudWatch::Alarm").values()
    metrics = {
        (
            a["Properties"]["MetricName"],
            a["Properties"].get("ExtendedStatistic", a["Properties"].get("Statistic")),
        )
        for a in alarms
    }
    assert metrics == {
        ("5XXError", "Sum"),
        ("Latency", "p99"),
        ("Throttles", "Sum"),
        ("Errors", "Sum"),
    }
    latency = next(a for a in alarms if a["Properties"]["MetricName"] == "Latency")
    assert latency["Properties"]["Threshold"] == 1000
    assert all(a["Properties"]["AlarmActions"] for a in alarms)
    assert dev.resources("Serving", "AWS::CloudWatch::Dashboard")
    outputs = dev.template("Serving")["Outputs"]
    assert {"ApiUrl", "FunctionName", "LiveAliasArn", "AuthMode"} <= set(outputs)
    assert outputs["AuthMode"]["Value"] == "iam"
    assert json.dumps(outputs["ApiUrl"]["Value"]).endswith('/"]]}')


def test_inference_role_reads_only_the_model_store(dev: Synthesized) -> None:
    policies = dev.resources("Serving", "AWS::IAM::Policy")
    role_policy = next(p for name, p in policies.items() if name.startswith("InferenceRole"))
    statements = role_policy["Properties"]["PolicyDocument"]["Statement"]
    text = json.dumps(statements)
    assert "s3:PutObject" not in text
    gets = [s for s in statements if "s3:GetObject" in s["Action"]]
    assert gets and all("/models/*" in json.dumps(s["Resource"]) for s in gets)
