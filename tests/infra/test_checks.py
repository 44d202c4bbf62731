"""cdk-nag (AwsSolutions, as a CDK validation plugin) and cfn-lint over every template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.nag import acknowledge, flatten
from onnxkit.contract.layout import STACK_PARTS
from tests.infra.conftest import SYNTH_GROUP, Synthesized, cdk_json_context

ACKNOWLEDGED = "aws:cdk:acknowledged-rules"
# Actions that take no resource (or only "*"): the only ones allowed on Resource "*".
RESOURCELESS = {
    "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
    "xray:GetSamplingTargets", "ecr:GetAuthorizationToken", "cloudwatch:PutMetricData",
    "logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies", "logs:GetLogDelivery", "logs:ListLogDeliveries",
    "logs:PutResourcePolicy", "logs:UpdateLogDelivery",
}  # fmt: skip


@SYNTH_GROUP
def test_no_unacknowledged_nag_findings(
    dev: Synthesized,
    prod: Synthesized,
    variant: Synthesized,
    http_kit: Synthesized,
    url_kit: Synthesized,
) -> None:
    # Under pytest CDK runs "in memory": an unacknowledged finding already failed synth.
    # The report on disk says the same, for each environment and each front door.
    for kit in (dev, prod, variant, http_kit, url_kit):
        report = json.loads((kit.outdir / "validation-report.json").read_text())
        violations = [v for r in report["pluginReports"] for v in r["violations"]]
        assert violations == [], kit.kit.config.env


@SYNTH_GROUP
def test_every_acknowledgement_names_one_finding_with_a_reason(
    dev: Synthesized, variant: Synthesized, http_kit: Synthesized, url_kit: Synthesized
) -> None:
    seen = {}
    for kit in (dev, variant, http_kit, url_kit):
        for construct in kit.kit.app.node.find_all():
            for entry in construct.node.metadata:
                if entry.type == ACKNOWLEDGED:
                    for finding, reason in entry.data.items():
                        seen[(construct.node.path, finding)] = reason
    assert len(seen) > 20
    for (path, finding), reason in seen.items():
        assert "AwsSolutions-" in finding or "@aws-cdk/" in finding, (path, finding)
        # A wildcard finding names the exact permission, never the whole rule.
        if "IAM5" in finding or "IAM4" in finding:
            assert "[" in finding, (path, finding)
        assert len(reason.split()) >= 5, (path, finding)
    # The API-key acknowledgement exists only where API keys are configured.
    apig4 = [p for (p, f) in seen if f.endswith("AwsSolutions-APIG4")]
    assert apig4 == ["OnnxKit-dev-Serving/Api/RestApi"]
    # The HTTP API and the function URL need none of the REST API's acknowledgements
    # (WAF, Cognito, API keys, the account's logging role): nothing else to acknowledge.
    rest_only = {p for (p, f) in seen if p.startswith("OnnxKit-dev-Serving/Api/")}
    assert rest_only and not {p for (p, _) in seen if "/HttpApi/" in p or "/FunctionUrl/" in p}


def test_acknowledge_refuses_vague_entries() -> None:
    from aws_cdk import App

    app = App()
    with pytest.raises(ValueError, match="exact finding"):
        acknowledge(app, "AwsSolutions-IAM5", "")
    with pytest.raises(ValueError, match="exact finding"):
        acknowledge(app, "IAM5[Resource::*]", "because it is needed for the thing")


def test_flatten_matches_cdk_nag_rendering() -> None:
    joined = {"Fn::Join": ["", [{"Fn::GetAtt": ["Logs1234", "Arn"]}, ":log-stream:*"]]}
    assert flatten(joined) == "<Logs1234.Arn>:log-stream:*"
    account = {"Fn::Join": ["", ["arn:aws:s3:::kit-", {"Ref": "AWS::AccountId"}, "/data/*"]]}
    assert flatten(account) == "arn:aws:s3:::kit-<AWS::AccountId>/data/*"
    assert flatten({"Fn::Sub": "arn:${AWS::Partition}:x"}) == "arn:<AWS::Partition>:x"


@pytest.mark.xdist_group("cdk-nag-negative")
def test_nag_fails_synth_on_a_new_wildcard(tmp_path: Path) -> None:
    """The plugin is wired into the app: one stray wildcard is exactly one finding."""
    from aws_cdk import App
    from aws_cdk import aws_iam as iam

    from infra.app import build
    from onnxkit.config import load_config

    app = App(
        outdir=str(tmp_path), context=cdk_json_context(), builtin_cloud_formation_validation=False
    )
    kit = build(app, load_config("dev"))
    stray = iam.Role(kit.pipeline, "Stray", assumed_by=iam.ServicePrincipal("s3.amazonaws.com"))
    stray.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=["*"]))
    with pytest.raises(Exception, match=r"ValidationFailed") as failure:
        app.synth()
    message = str(failure.value)
    assert "AwsSolutions-IAM5[Resource::*]" in message
    assert "OnnxKit-dev-Pipeline/Stray/DefaultPolicy" in message
    assert message.count("Acknowledge with") == 1, message


@SYNTH_GROUP
def test_cfn_lint_finds_no_errors(
    dev: Synthesized,
    prod: Synthesized,
    variant: Synthesized,
    http_kit: Synthesized,
    url_kit: Synthesized,
) -> None:
    kits = (dev, prod, variant, http_kit, url_kit)
    templates = sorted(str(p) for kit in kits for p in kit.outdir.glob("*.template.json"))
    assert len(templates) == 5 * len(STACK_PARTS)  # dev, prod, variant, http, url
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", "--", *templates],
        capture_output=True,
        text=True,
        check=False,
    )
    # Exit status bits: 2 errors, 4 warnings, 8 informational.
    print(result.stdout)
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert result.returncode & 2 == 0 and not errors, result.stdout + result.stderr
    assert result.returncode in (0, 4, 8, 12), result.stderr


@SYNTH_GROUP
def test_resource_star_only_for_actions_without_resources(
    dev: Synthesized, variant: Synthesized
) -> None:
    """An ``IAM5[Resource::*]`` acknowledgement covers a whole policy; this pins what is in it."""
    checked = 0
    for kit in (dev, variant):
        for template in kit.templates.values():
            for name, resource in template["Resources"].items():
                documents = []
                if resource["Type"] == "AWS::IAM::Policy":
                    documents.append(resource["Properties"]["PolicyDocument"])
                if resource["Type"] == "AWS::IAM::Role":
                    documents += [
                        p["PolicyDocument"] for p in resource["Properties"].get("Policies", [])
                    ]
                for document in documents:
                    for statement in document["Statement"]:
                        resources = statement["Resource"]
                        if resources == "*" or "*" in list(resources):
                            actions = statement["Action"]
                            actions = {actions} if isinstance(actions, str) else set(actions)
                            assert actions <= RESOURCELESS, (name, actions - RESOURCELESS)
                            checked += 1
    assert checked >= 5
