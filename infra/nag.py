"""cdk-nag acknowledgements: every one names the exact finding, on one construct, with a reason.

IAM5 findings name the wildcard as cdk-nag prints it (``Resource::arn:aws:s3:::bucket/data/*``).
:func:`allow` adds a policy statement and acknowledges exactly the wildcards it contains, with
the reason given next to it, so a wildcard cannot be added without saying why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, cast

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from constructs import IConstruct

# A cdk-nag finding (``AwsSolutions-IAM5[Resource::*]``) or a CDK annotation id.
_FINDING = re.compile(r"^(AwsSolutions-[A-Za-z]+[0-9]+(\[.+\])?|Annotation::@aws-cdk/\S+)$")


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (e.g. ``AwsSolutions-IAM5[Resource::*]``) on a scope."""
    if not _FINDING.match(finding) or len(reason.split()) < 5:
        raise ValueError(f"acknowledgement of {finding!r} needs an exact finding and a reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=finding, reason=reason))


def flatten(value: Any) -> str:
    """A resolved CloudFormation value as cdk-nag prints it in a finding id.

    Mirrors cdk-nag 3's ``flattenCfnReference``: Join concatenates, GetAtt is
    ``<Logical.Attr>``, Ref is ``<Name>``, ImportValue is its export name.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("${", "<").replace("}", ">")
    if isinstance(value, dict):
        if "Fn::Join" in value:
            delimiter, items = value["Fn::Join"]
            return str(delimiter).join(flatten(item) for item in items)
        if "Fn::Sub" in value:
            return flatten(value["Fn::Sub"])
        if "Fn::GetAtt" in value:
            resource, attribute = value["Fn::GetAtt"]
            return f"<{flatten(resource)}.{flatten(attribute)}>"
        if "Fn::ImportValue" in value:
            return flatten(value["Fn::ImportValue"])
        if "Ref" in value:
            return f"<{flatten(value['Ref'])}>"
    return json.dumps(value, separators=(",", ":"))


def resource_finding(scope: IConstruct, resource: str) -> str:
    """The IAM5 finding id cdk-nag reports for a wildcard resource used in ``scope``'s stack."""
    return f"AwsSolutions-IAM5[Resource::{flatten(Stack.of(scope).resolve(resource))}]"


def acknowledge_resources(role: IConstruct, resources: Sequence[str], reason: str) -> None:
    """Acknowledge the IAM5 findings of wildcard resources a construct added to ``role``."""
    for resource in resources:
        acknowledge(role, resource_finding(role, resource), reason)


def allow(
    principal: iam.IGrantable,
    actions: Sequence[str],
    resources: Sequence[str],
    *,
    reason: str | None = None,
    conditions: dict[str, Any] | None = None,
) -> iam.PolicyStatement:
    """Add an Allow statement to ``principal``; acknowledge its wildcards with ``reason``."""
    statement = iam.PolicyStatement(
        actions=list(actions), resources=list(resources), conditions=conditions
    )
    principal.grant_principal.add_to_principal_policy(statement)
    if not hasattr(principal.grant_principal, "node"):  # an imported principal: no construct
        return statement
    scope = cast(IConstruct, principal.grant_principal)
    findings = [f"AwsSolutions-IAM5[Action::{a}]" for a in actions if "*" in a]
    findings += [resource_finding(scope, r) for r in resources]
    findings = [f for f in findings if "*" in f.split("::", 1)[1]]
    if findings and not reason:
        raise ValueError(f"wildcard permissions need a reason: {', '.join(findings)}")
    for finding in findings:
        acknowledge(scope, finding, reason or "")
    return statement
