"""The registry as the CLI shows it: SageMaker model packages plus the production pointers.

Each model package in the environment's ``ModelPackageGroupName`` is one registered version.
Its ``CustomerMetadataProperties`` are the version's compact card
(:func:`onnxkit.contract.card.package_metadata`: ``model_name``, ``model_version``, ``sha256``,
one ``metric.<name>`` per metric, the top features, production's metrics at the gate, ...) plus
the Register state's ``execution``; packages registered before the card carry fewer, and no
``model_name`` (the group holds one model). Which version is live comes from the production pointers
``s3://<bucket>/models/<model_name>/production.json``, checked against what the function's
``live`` alias serves when the Serving stack is known (:func:`live_pointers`, the promotion
states of docs/CONTRACTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from onnxkit.cloud.discovery import DiscoveryError, Kit, discover
from onnxkit.contract.card import METRIC_KEY, is_card_key, production_at_gate, top_features
from onnxkit.contract.layout import FUNCTION_NAME_OUTPUT, MODELS_PREFIX, intent_key, pointer_key
from onnxkit.contract.pointer import Pointer, PointerError, parse_pointer

_NON_METRIC = frozenset({"model_name", "model_version", "sha256", "lambda_version", "execution"})


@dataclass
class Version:
    """One registered model version."""

    package_arn: str
    package_version: int | None
    model_name: str
    model_version: str
    status: str
    created: str
    metrics: dict[str, float] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    live: bool = False
    # The package's card (onnxkit/contract/card.py): features by permutation importance, and
    # the production model the version was gated against.
    top_features: list[dict[str, Any]] = field(default_factory=list)
    production_at_gate: dict[str, Any] | None = None


def version_of(
    properties: dict[str, str],
    *,
    package_arn: str,
    package_version: int | None,
    status: str,
    created: str,
    group: str,
) -> Version:
    """A registered version from its metadata properties (a model package's, or the local
    registry's record of the same)."""
    return Version(
        package_arn=package_arn,
        package_version=package_version,
        model_name=properties.get("model_name", group),
        model_version=properties.get("model_version", str(package_version or "?")),
        status=status,
        created=created,
        metrics=_metrics(properties),
        properties=properties,
        top_features=[msgspec.to_builtins(f) for f in top_features(properties)],
        production_at_gate=production_at_gate(properties),
    )


def _metrics(properties: dict[str, str]) -> dict[str, float]:
    """``metric.<name>`` properties (what the Register step writes); failing those, any
    numeric property that is not part of the card."""
    prefixed = {
        k.removeprefix(METRIC_KEY): v for k, v in properties.items() if k.startswith(METRIC_KEY)
    }
    candidates = prefixed or {
        k: v for k, v in properties.items() if k not in _NON_METRIC and not is_card_key(k)
    }
    found = {}
    for key, value in candidates.items():
        try:
            found[key] = float(value)
        except (TypeError, ValueError):
            continue
    return found


def list_versions(sagemaker: Any, group: str) -> list[Version]:
    """Every model package of a group, newest first, with its metadata and metrics."""
    versions = []
    paginator = sagemaker.get_paginator("list_model_packages")
    for page in paginator.paginate(
        ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending"
    ):
        for summary in page.get("ModelPackageSummaryList", []):
            arn = summary["ModelPackageArn"]
            described = sagemaker.describe_model_package(ModelPackageName=arn)
            props = dict(described.get("CustomerMetadataProperties") or {})
            number = described.get("ModelPackageVersion", summary.get("ModelPackageVersion"))
            created = described.get("CreationTime") or summary.get("CreationTime")
            versions.append(
                version_of(
                    props,
                    package_arn=arn,
                    package_version=number,
                    status=str(
                        described.get("ModelApprovalStatus")
                        or summary.get("ModelApprovalStatus")
                        or "?"
                    ),
                    created=created.isoformat(timespec="seconds")
                    if hasattr(created, "isoformat")
                    else str(created or ""),
                    group=group,
                )
            )
    return versions


def local_version(record: dict[str, Any]) -> Version:
    """A version of the local registry (``registry/<name>/<version>.json``); records from
    before the card carry no ``metadata``: their served variant's metrics stand in."""
    properties = dict(record.get("metadata") or {})
    version = version_of(
        properties,
        package_arn=record["package_id"],
        package_version=None,
        status=record["status"],
        created=record["registered_at"],
        group=record["model_name"],
    )
    version.model_name, version.model_version = record["model_name"], record["model_version"]
    if not version.metrics:
        version.metrics = dict(record["metrics"].get(record.get("serving_variant"), {}))
    return version


def _model_names(s3: Any, bucket: str) -> list[str]:
    """Every model with a folder under ``models/``."""
    paginator = s3.get_paginator("list_objects_v2")
    return [
        p["Prefix"][len(MODELS_PREFIX) :].rstrip("/")
        for page in paginator.paginate(Bucket=bucket, Prefix=MODELS_PREFIX, Delimiter="/")
        for p in page.get("CommonPrefixes", [])
    ]


def production_pointers(s3: Any, bucket: str) -> dict[str, Pointer]:
    """model_name -> production pointer, for every model with one in the bucket."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    pointers: dict[str, Pointer] = {}
    for name in _model_names(s3, bucket):
        try:
            body = s3.get_object(Bucket=bucket, Key=pointer_key(name))["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                continue
            raise
        try:
            pointer = parse_pointer(body)
        except PointerError:
            continue  # an unreadable pointer: that model shows nothing live
        pointers[pointer.model_name] = pointer
    return pointers


def live_pointers(
    s3: Any, bucket: str, lambda_client: Any, function_name: str
) -> tuple[dict[str, Pointer], list[str]]:
    """model_name -> the live model as a pointer, resolved from the ``live`` alias, the pointer
    and the promotion record (reads only), and one note per model whose records fell behind."""
    from functions.pipeline.aws import LambdaServing, S3Store  # noqa: PLC0415

    store, serving = S3Store(s3, bucket), LambdaServing(lambda_client, function_name)
    recorded = set(production_pointers(s3, bucket))
    names = [
        name
        for name in sorted(recorded | set(_model_names(s3, bucket)))
        # never promoted, unless a first promotion killed early left its record
        if name in recorded or store.get(intent_key(name)) is not None
    ]
    return resolve_pointers(store, serving, names)


def resolve_pointers(
    store: Any, serving: Any, names: list[str]
) -> tuple[dict[str, Pointer], list[str]]:
    """model_name -> the live model of each name over the pipeline's ports (S3 and Lambda, or a
    work directory), read only; one note per model whose records fell behind or are unreadable."""
    from functions.pipeline.ports import StepError  # noqa: PLC0415
    from functions.pipeline.promote import resolve  # noqa: PLC0415

    pointers: dict[str, Pointer] = {}
    notes: list[str] = []
    for name in names:
        try:
            live = resolve(store, serving, name)
        except StepError as error:
            notes.append(f"{name}: {error}")
            continue
        if live.pointer is not None:
            pointers[name] = live.pointer
            if live.note():
                notes.append(f"{name}: {live.note().replace('now records', 'will record')}")
    return pointers, notes


def current_pointers(kit: Kit) -> tuple[dict[str, Pointer], list[str]]:
    """model_name -> the live model of a discovered kit (its Artifacts stack), and notes.

    The live alias is the commit point: with the Serving stack, what it serves is live, whatever
    a pointer left behind by an interrupted promotion says; without it, the pointers alone."""
    s3 = kit.client("s3")
    try:
        serving = discover(kit.env, ("Serving",), session=kit.session)
        function = serving.get(FUNCTION_NAME_OUTPUT)
    except DiscoveryError:
        return production_pointers(s3, kit.bucket), []
    return live_pointers(s3, kit.bucket, serving.client("lambda"), function)


def mark_live(versions: list[Version], pointers: dict[str, Pointer]) -> None:
    """Flag the version each production pointer names (by model name and version)."""
    # Register writes no model_name: a group with one promoted model takes that model's name.
    only = next(iter(pointers.values())) if len(pointers) == 1 else None
    for version in versions:
        if "model_name" not in version.properties and only is not None:
            version.model_name = only.model_name
        pointer = pointers.get(version.model_name)
        version.live = pointer is not None and pointer.model_version == version.model_version
