"""Find a deployed kit from its CloudFormation stack outputs, by environment name.

Stack names and output ids are the kernel's (:mod:`onnxkit.contract.layout`,
docs/CONTRACTS.md): ``OnnxKit-<env>-Artifacts``, ``-Pipeline``, ``-Serving`` and
``-Scoring``. AWS access uses boto3's standard credential chain and region (environment,
profile, SSO, instance role); ``AWS_ENDPOINT_URL`` is honoured, which is how the tests point
everything at moto.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onnxkit.cloud.errors import CloudError, describe_aws_error
from onnxkit.contract.layout import (
    API_KIND_OUTPUT,
    API_URL_OUTPUT,
    AUTH_MODE_OUTPUT,
    BUCKET_OUTPUT,
    DATA_URI_OUTPUT,
    MODEL_PACKAGE_GROUP_OUTPUT,
    STACK_OUTPUTS,
    STACK_PARTS,
    STATE_MACHINE_OUTPUT,
    StackPart,
    stack_name,
)

if TYPE_CHECKING:
    import boto3

_ENV_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,30}$")


class DiscoveryError(CloudError):
    """The kit could not be found: no stack, no credentials, no region, or a missing output."""


def aws_session(region: str | None = None, profile: str | None = None) -> boto3.Session:
    """A boto3 session from the standard chain; a bad profile becomes a DiscoveryError."""
    import boto3  # noqa: PLC0415 - keep CLI start-up fast
    from botocore.exceptions import ProfileNotFound  # noqa: PLC0415

    try:
        session = boto3.Session(region_name=region, profile_name=profile)
    except ProfileNotFound as error:
        raise DiscoveryError(str(error)) from None
    if session.region_name is None and os.environ.get("AWS_REGION"):
        # botocore reads AWS_DEFAULT_REGION only; the AWS CLI and SDKs also honour AWS_REGION.
        session = boto3.Session(region_name=os.environ["AWS_REGION"], profile_name=profile)
    return session


@dataclass(frozen=True)
class Kit:
    """The outputs of a deployed environment's stacks, and the session that found them."""

    env: str
    region: str
    outputs: dict[str, str]
    stacks: dict[str, str] = field(default_factory=dict)  # part -> stack name found
    session: Any = field(default=None, repr=False, compare=False)

    def get(self, key: str) -> str:
        """One output value; a clear error naming the stack when it is missing."""
        try:
            return self.outputs[key]
        except KeyError:
            part = next((p for p, keys in STACK_OUTPUTS.items() if key in keys), None)
            where = stack_name(self.env, part) if part else f"the {self.env} stacks"
            raise DiscoveryError(
                f"stack output {key!r} not found in {where} ({self.region}); "
                "is the stack fully deployed with this version of onnxkit?"
            ) from None

    def client(self, service: str) -> Any:
        """A boto3 client in the kit's region, with the discovering session's credentials."""
        return self.session.client(service, region_name=self.region)

    @property
    def api_url(self) -> str:
        """Base URL of the inference API, ending with ``/``."""
        url = self.get(API_URL_OUTPUT)
        return url if url.endswith("/") else url + "/"

    @property
    def auth_mode(self) -> str:
        """``iam`` (SigV4) or ``api_key``."""
        return self.outputs.get(AUTH_MODE_OUTPUT, "iam")

    @property
    def api_kind(self) -> str:
        """The front door: ``rest``, ``http`` or ``function_url`` (stacks from before the
        ``ApiKind`` output had a REST API)."""
        return self.outputs.get(API_KIND_OUTPUT, "rest")

    @property
    def state_machine_arn(self) -> str:
        """ARN of the training pipeline's state machine."""
        return self.get(STATE_MACHINE_OUTPUT)

    @property
    def data_uri(self) -> str:
        """S3 prefix for training data, ending with ``/``."""
        uri = self.get(DATA_URI_OUTPUT)
        return uri if uri.endswith("/") else uri + "/"

    @property
    def bucket(self) -> str:
        """The artifact bucket."""
        return self.get(BUCKET_OUTPUT)

    @property
    def model_package_group(self) -> str:
        """The SageMaker model package group that is the registry."""
        return self.get(MODEL_PACKAGE_GROUP_OUTPUT)


def discover(
    env: str,
    parts: tuple[StackPart, ...] = STACK_PARTS,
    *,
    region: str | None = None,
    profile: str | None = None,
    session: Any = None,
) -> Kit:
    """Describe the environment's stacks and return their outputs.

    Raises DiscoveryError with one readable line when the region or credentials are missing,
    when a stack does not exist in the region (the usual sign of a wrong region), or when the
    stack is not in a usable state.
    """
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    if not _ENV_NAME.match(env):
        raise DiscoveryError(f"invalid environment name {env!r}: letters, digits and '-' only")
    session = session or aws_session(region, profile)
    region_name = session.region_name
    if not region_name:
        raise DiscoveryError(
            "no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION) or pass --region"
        )
    outputs: dict[str, str] = {}
    found: dict[str, str] = {}
    try:
        cfn = session.client("cloudformation", region_name=region_name)
        for part in parts:
            name = stack_name(env, part)
            try:
                stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
            except ClientError as error:
                message = error.response.get("Error", {}).get("Message", "")
                if "does not exist" in message:
                    raise DiscoveryError(
                        f"stack {name} not found in region {region_name}: deploy it with "
                        f"`cdk deploy` or select the region it lives in (AWS_REGION / --region)"
                    ) from None
                raise
            status = stack.get("StackStatus", "")
            if (
                status.endswith("_FAILED")
                or status.startswith(("DELETE", "ROLLBACK"))
                or (status == "REVIEW_IN_PROGRESS")
            ):
                raise DiscoveryError(f"stack {name} is in state {status}; fix or redeploy it")
            found[part] = name
            for output in stack.get("Outputs", []):
                outputs[output["OutputKey"]] = output["OutputValue"]
    except (BotoCoreError, ClientError) as error:
        raise DiscoveryError(describe_aws_error(error)) from None
    return Kit(env=env, region=region_name, outputs=outputs, stacks=found, session=session)
