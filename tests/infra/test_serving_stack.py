"""The serving stack: function, live alias, its front door (REST API, HTTP API or function URL),
alarms, dashboard, outputs."""

from __future__ import annotations

import json
from typing import Any

from infra.constructs.inference_api import STAGE_NAME
from infra.constructs.inference_function import INFERENCE_HANDLER
from tests.infra.conftest import SYNTH_GROUP, Synthesized
from tests.support.access_log import render

# The access-log bytes per request docs/deploy.md counts ("Per million predictions, by front
# door"), for a one-row call signed by an assumed role (tests/support/access_log.py).
ACCESS_LOG_BYTES = 227

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
    assert env["MAX_EXPLAIN_INSTANCES"] == "10"


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
    assert len(methods) == 5  # POST /predict, /explain, GET /model, /health, /openapi.json
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


def _assert_access_log(log_format: str, *, who: str) -> None:
    """What identifies a call and its outcome, in one compact line within the costed bytes."""
    fields = json.loads(log_format)
    assert fields["id"] == "$context.requestId" and fields["who"] == who
    assert fields["st"] == "$context.status" and fields["ms"] == "$context.responseLatency"
    assert fields["req"].startswith("$context.httpMethod $context.")
    assert {"ip", "len", "err"} <= set(fields)
    line = render(log_format)
    assert "$context" not in line and json.loads(line)["st"] == "200"
    assert len(line.encode()) <= ACCESS_LOG_BYTES, (len(line.encode()), line)


def test_rest_access_log_is_short_and_names_the_caller(
    dev: Synthesized, variant: Synthesized
) -> None:
    stage = dev.one("Serving", "AWS::ApiGateway::Stage")["Properties"]
    _assert_access_log(stage["AccessLogSetting"]["Format"], who="$context.identity.userArn")
    keyed = variant.one("Serving", "AWS::ApiGateway::Stage")["Properties"]
    _assert_access_log(keyed["AccessLogSetting"]["Format"], who="$context.identity.apiKeyId")


def test_function_logs_are_json_and_lambda_own_lines_warn_only(
    dev: Synthesized, variant: Synthesized
) -> None:
    config = _function(dev)["LoggingConfig"]
    assert (config["LogFormat"], config["SystemLogLevel"]) == ("JSON", "WARN")
    # INFO, not stricter: Lambda files the EMF line (no "level" key) as INFO.
    assert config["ApplicationLogLevel"] == "INFO"
    assert "Ref" in config["LogGroup"]  # still the function's own group, with its retention
    assert _function(variant)["LoggingConfig"]["SystemLogLevel"] == "INFO"


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
    assert len(post) == 2  # /predict and /explain: the same bodies, the same validation
    for method in post:
        assert "RequestValidatorId" in method and "application/json" in method["RequestModels"]
    assert post[0]["RequestModels"] == post[1]["RequestModels"]


def test_explain_is_a_rest_route_like_predict(dev: Synthesized, variant: Synthesized) -> None:
    """POST /explain: IAM (or the API key, with the usage plan's throttle) as /predict, and
    its optional ?class= declared."""
    for kit, auth in ((dev, "AWS_IAM"), (variant, "NONE")):
        resources = kit.resources("Serving", "AWS::ApiGateway::Resource")
        paths = {r["Properties"]["PathPart"]: name for name, r in resources.items()}
        assert {"predict", "explain"} <= set(paths)
        methods = {
            m["Properties"]["ResourceId"]["Ref"]: m["Properties"]
            for m in kit.resources("Serving", "AWS::ApiGateway::Method").values()
        }
        explain, predict = methods[paths["explain"]], methods[paths["predict"]]
        assert explain["HttpMethod"] == predict["HttpMethod"] == "POST"
        assert explain["AuthorizationType"] == predict["AuthorizationType"] == auth
        assert explain.get("ApiKeyRequired") == predict.get("ApiKeyRequired")
        assert explain["Integration"] == predict["Integration"]
        assert explain["RequestParameters"] == {"method.request.querystring.class": False}


def test_npy_bodies_are_binary_and_not_held_to_the_json_schema(dev: Synthesized) -> None:
    from onnxkit.local.gateway import BINARY_MEDIA_TYPES

    api = dev.one("Serving", "AWS::ApiGateway::RestApi")["Properties"]
    assert "application/x-npy" in api["BinaryMediaTypes"]
    assert set(api["BinaryMediaTypes"]) == BINARY_MEDIA_TYPES  # onnxkit serve does the same
    posts = [
        m["Properties"]
        for m in dev.resources("Serving", "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "POST"
    ]
    assert len(posts) == 2  # /predict and /explain
    # The schema model is mapped to application/json only (no $default): API Gateway skips
    # body validation for a content type without a model, so .npy and CSV reach the function.
    for post in posts:
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


def _serving_alarms(kit: Synthesized) -> dict[str, dict[str, Any]]:
    """The serving path's alarms, the request capture's among them (the drift check's have their
    own test module)."""
    alarms = kit.resources("Serving", "AWS::CloudWatch::Alarm")
    return {name: alarm for name, alarm in alarms.items() if not name.startswith("Drift")}


def _inference_permissions(kit: Synthesized) -> list[dict[str, Any]]:
    """Resource policies on the inference function (the drift check's schedule has its own)."""
    permissions = kit.resources("Serving", "AWS::Lambda::Permission")
    return [p for name, p in permissions.items() if not name.startswith("Drift")]


def test_alarms_dashboard_and_outputs(dev: Synthesized) -> None:
    alarms = _serving_alarms(dev).values()
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
        ("DeliveryToS3.DataFreshness", "Maximum"),  # request capture (on by default)
    }
    latency = next(a for a in alarms if a["Properties"]["MetricName"] == "Latency")
    assert latency["Properties"]["Threshold"] == 1000
    assert all(a["Properties"]["AlarmActions"] for a in alarms)
    assert dev.resources("Serving", "AWS::CloudWatch::Dashboard")
    outputs = dev.template("Serving")["Outputs"]
    assert {"ApiUrl", "FunctionName", "LiveAliasArn", "AuthMode", "ApiKind"} <= set(outputs)
    assert outputs["AuthMode"]["Value"] == "iam"
    assert outputs["ApiKind"]["Value"] == "rest"
    assert json.dumps(outputs["ApiUrl"]["Value"]).endswith('/"]]}')


def test_inference_role_reads_only_the_model_store(dev: Synthesized) -> None:
    policies = dev.resources("Serving", "AWS::IAM::Policy")
    role_policy = next(p for name, p in policies.items() if name.startswith("InferenceRole"))
    statements = role_policy["Properties"]["PolicyDocument"]["Statement"]
    text = json.dumps(statements)
    assert "s3:PutObject" not in text
    gets = [s for s in statements if "s3:GetObject" in s["Action"]]
    assert gets and all("/models/*" in json.dumps(s["Resource"]) for s in gets)


# --- the cheaper front doors (api.kind) -------------------------------------------------------
def _alarm_metrics(kit: Synthesized) -> dict[str, tuple[str, str, str, dict[str, Any]]]:
    """Alarm logical-id prefix -> (namespace, metric, statistic, dimensions)."""
    out = {}
    for name, alarm in _serving_alarms(kit).items():
        props = alarm["Properties"]
        stat = props.get("ExtendedStatistic", props.get("Statistic"))
        dims = {d["Name"]: d["Value"] for d in props["Dimensions"]}
        out[name.removeprefix("Monitoring")[:-8]] = (
            props["Namespace"],
            props["MetricName"],
            stat,
            dims,
        )
    return out


def _dashboard_metrics(kit: Synthesized) -> str:
    body = kit.one("Serving", "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"]
    return json.dumps(body)


def test_only_the_chosen_front_door_is_built(
    dev: Synthesized, http_kit: Synthesized, url_kit: Synthesized
) -> None:
    rest_types = ("AWS::ApiGateway::RestApi", "AWS::ApiGateway::Stage")
    http_types = ("AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage")
    for kit, present, absent in (
        (dev, rest_types, (*http_types, "AWS::Lambda::Url")),
        (http_kit, http_types, (*rest_types, "AWS::Lambda::Url")),
        (url_kit, ("AWS::Lambda::Url",), (*rest_types, *http_types)),
    ):
        for kind in present:
            assert kit.resources("Serving", kind), (kit.kit.config.api.kind, kind)
        for kind in absent:
            assert not kit.resources("Serving", kind), (kit.kit.config.api.kind, kind)
    # The REST API keeps its logical ids: choosing rest changes nothing that was deployed.
    assert any(name.startswith("ApiRestApi") for name in dev.template("Serving")["Resources"])


def test_http_api_routes_use_iam_payload_2_and_the_alias(http_kit: Synthesized) -> None:
    api = http_kit.one("Serving", "AWS::ApiGatewayV2::Api")["Properties"]
    assert (api["ProtocolType"], api["Name"]) == ("HTTP", "onnxkit-dev")
    routes = http_kit.resources("Serving", "AWS::ApiGatewayV2::Route").values()
    keys = {route["Properties"]["RouteKey"] for route in routes}
    assert keys == {
        "POST /predict", "POST /explain", "GET /model", "GET /health", "GET /openapi.json",
        "$default",
    }  # fmt: skip
    assert all(route["Properties"]["AuthorizationType"] == "AWS_IAM" for route in routes)
    (integration,) = http_kit.resources("Serving", "AWS::ApiGatewayV2::Integration").values()
    props = integration["Properties"]
    assert (props["IntegrationType"], props["PayloadFormatVersion"]) == ("AWS_PROXY", "2.0")
    alias_id = next(iter(http_kit.resources("Serving", "AWS::Lambda::Alias")))
    assert props["IntegrationUri"] == {"Ref": alias_id}
    assert props["TimeoutInMillis"] <= 30_000  # the HTTP API's ceiling
    # API Gateway may invoke the alias only, from this API.
    for permission in _inference_permissions(http_kit):
        assert permission["Properties"]["FunctionName"] == {"Ref": alias_id}
        assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"


def test_http_api_stage_throttles_and_logs(http_kit: Synthesized) -> None:
    stage = http_kit.one("Serving", "AWS::ApiGatewayV2::Stage")["Properties"]
    assert (stage["StageName"], stage["AutoDeploy"]) == ("$default", True)
    throttle = stage["DefaultRouteSettings"]
    assert (throttle["ThrottlingRateLimit"], throttle["ThrottlingBurstLimit"]) == (50, 100)
    logs = stage["AccessLogSettings"]
    assert "DestinationArn" in logs
    _assert_access_log(logs["Format"], who="$context.identity.userArn")  # the SigV4 caller
    assert json.loads(logs["Format"])["err"] == "$context.integrationErrorMessage"
    api_id = next(iter(http_kit.resources("Serving", "AWS::ApiGatewayV2::Api")))
    url = http_kit.template("Serving")["Outputs"]["ApiUrl"]["Value"]
    assert url == {"Fn::Join": ["", [{"Fn::GetAtt": [api_id, "ApiEndpoint"]}, "/"]]}
    assert http_kit.template("Serving")["Outputs"]["ApiKind"]["Value"] == "http"


def test_http_api_alarms_and_dashboard_read_http_api_metrics(http_kit: Synthesized) -> None:
    alarms = _alarm_metrics(http_kit)
    api_id = next(iter(http_kit.resources("Serving", "AWS::ApiGatewayV2::Api")))
    assert alarms["Api5xx"] == ("AWS/ApiGateway", "5xx", "Sum", {"ApiId": {"Ref": api_id}})
    assert alarms["ApiLatencyP99"] == (
        "AWS/ApiGateway",
        "Latency",
        "p99",
        {"ApiId": {"Ref": api_id}},
    )
    assert alarms["LambdaThrottles"][1] == "Throttles"
    dashboard = _dashboard_metrics(http_kit)
    for metric in ("Count", "4xx", "5xx", "Latency"):
        assert f'\\"AWS/ApiGateway\\",\\"{metric}\\",\\"ApiId\\"' in dashboard, metric
    assert "4XXError" not in dashboard and "ApiName" not in dashboard


def test_function_url_is_iam_on_the_live_alias(url_kit: Synthesized) -> None:
    url = url_kit.one("Serving", "AWS::Lambda::Url")["Properties"]
    assert url["AuthType"] == "AWS_IAM"
    assert url["Qualifier"] == "live"
    assert url["InvokeMode"] == "BUFFERED"
    function_id = next(
        name
        for name, f in url_kit.resources("Serving", "AWS::Lambda::Function").items()
        if f["Properties"].get("Handler") == INFERENCE_HANDLER
    )
    assert url["TargetFunctionArn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    # No resource policy opens it: callers need lambda:InvokeFunctionUrl in their own policy.
    assert not _inference_permissions(url_kit)
    # Its only bound is the function's reserved concurrency.
    assert _function(url_kit)["ReservedConcurrentExecutions"] == 10
    outputs = url_kit.template("Serving")["Outputs"]
    url_id = next(iter(url_kit.resources("Serving", "AWS::Lambda::Url")))
    assert outputs["ApiUrl"]["Value"] == {"Fn::GetAtt": [url_id, "FunctionUrl"]}
    assert (outputs["ApiKind"]["Value"], outputs["AuthMode"]["Value"]) == ("function_url", "iam")


def test_function_url_alarms_and_dashboard_read_url_metrics(url_kit: Synthesized) -> None:
    alarms = _alarm_metrics(url_kit)
    live = {"FunctionName": "onnxkit-dev-inference", "Resource": "onnxkit-dev-inference:live"}
    assert alarms["Api5xx"] == ("AWS/Lambda", "Url5xxCount", "Sum", live)
    # Lambda documents UrlRequestLatency for Average and Maximum; the p99 alarm reads the
    # alias's Duration, which has percentiles.
    assert alarms["ApiLatencyP99"] == ("AWS/Lambda", "Duration", "p99", live)
    assert {alarms["LambdaThrottles"][1], alarms["LambdaErrors"][1]} == {"Throttles", "Errors"}
    dashboard = _dashboard_metrics(url_kit)
    for metric in ("UrlRequestCount", "Url4xxCount", "Url5xxCount", "UrlRequestLatency"):
        assert f'\\"AWS/Lambda\\",\\"{metric}\\"' in dashboard, metric
    assert "AWS/ApiGateway" not in dashboard


def test_request_metrics_are_on_behind_rest_and_off_behind_the_cheaper_doors(
    dev: Synthesized, http_kit: Synthesized, url_kit: Synthesized
) -> None:
    """The per-request EMF line is most of a cheap door's log bytes; nothing alarms on it."""
    for kit, disabled in ((dev, "false"), (http_kit, "true"), (url_kit, "true")):
        function = _function(kit)
        assert function["Environment"]["Variables"]["POWERTOOLS_METRICS_DISABLED"] == disabled
        alarms = kit.resources("Serving", "AWS::CloudWatch::Alarm").values()
        assert all(a["Properties"].get("Namespace") != "onnxkit" for a in alarms)
