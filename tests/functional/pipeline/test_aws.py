"""The Evaluate and Promote Lambda handlers against moto: a versioned S3 bucket, the inference
function's published versions and ``live`` alias, SageMaker model packages.

Faults are injected by wrapping the boto3 clients the handlers create: the wrapper raises at
the Nth AWS call, for every N a promotion makes, and each time the test checks that ``live``
still serves the previous model and the production pointer still names it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, cast

import boto3
import pytest

from functions.pipeline import handlers
from functions.pipeline.aws import LambdaServing, S3Store, split_s3_uri
from functions.pipeline.ports import StepError, TamperedArtifactError, read_pointer
from functions.pipeline.promote import reconcile, resolve
from onnxkit.contract import workflow
from onnxkit.contract.gate import QualityGate
from onnxkit.rollback import rollback
from tests.support.artifacts import artifact, manifest_dict, tarball
from tests.support.aws import mocked, moto_serving, pipeline_function_env

BUCKET = "onnxkit-artifacts"
FUNCTION = "onnxkit-inference"
REGION = "us-east-1"
GATE = QualityGate.model_validate({})

pytestmark = pytest.mark.xdist_group("pipeline-moto")


class InjectedFault(Exception):
    """The fault the wrapper raises."""


class FaultyClient:
    """A boto3 client that raises at the Nth API call (counted across all wrapped clients)."""

    def __init__(self, inner: Any, counter: dict[str, Any]) -> None:
        self._inner, self._counter = inner, counter

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute) or name.startswith(("get_paginator", "get_waiter", "meta")):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._counter["calls"] += 1
            self._counter["names"].append(name)
            if self._counter["calls"] == self._counter["fail_at"]:
                raise InjectedFault(f"call {self._counter['calls']}: {name}")
            return attribute(*args, **kwargs)

        return call


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto with the artifact bucket, the inference function (version 1, the CDK-managed one
    reading the production pointer) and its ``live`` alias."""
    pipeline_function_env(monkeypatch, BUCKET, FUNCTION)
    with mocked(monkeypatch, REGION):
        s3, lam, cdk_version = moto_serving(
            REGION,
            BUCKET,
            FUNCTION,
            {
                "MODEL_URI": f"s3://{BUCKET}/models/cancer/production.json",
                "MODEL_SHA256": "",
                "POWERTOOLS_SERVICE_NAME": "onnxkit",
            },
        )
        yield {"s3": s3, "lambda": lam, "cdk_version": cdk_version}


def _upload(s3: Any, version: str, data: bytes) -> str:
    key = f"training/{version}/output/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    return f"s3://{BUCKET}/{key}"


def _run(s3: Any, version: str, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Evaluate, and promote when the gate passes (as the state machine would)."""
    _, data = artifact(version, **kwargs)
    uri = _upload(s3, version, data)
    decision = handlers.evaluate(dict(workflow.evaluate_event("cancer", uri, GATE)))
    if not decision["passed"]:
        return decision, None
    event = workflow.promote_event(
        cast("workflow.EvaluateResult", decision), f"arn:aws:sagemaker:{REGION}:1:model-package/x/1"
    )
    return decision, handlers.promote(dict(event))


def _served(lam: Any) -> tuple[str, str]:
    """(version, MODEL_SHA256) behind live, and no traffic split."""
    alias = lam.get_alias(FunctionName=FUNCTION, Name="live")
    assert not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
    config = lam.get_function_configuration(
        FunctionName=FUNCTION, Qualifier=alias["FunctionVersion"]
    )
    return alias["FunctionVersion"], config["Environment"]["Variables"]["MODEL_SHA256"]


def test_first_promotion_then_a_better_one(aws: dict[str, Any]) -> None:
    s3, lam = aws["s3"], aws["lambda"]
    decision, first = _run(s3, "v1")
    assert decision["passed"] and decision["production"] is None
    assert first is not None
    assert set(first) == set(workflow.PromoteResult.__annotations__)
    assert first["previous_lambda_version"] == aws["cdk_version"]
    bucket, key, version_id = split_s3_uri(first["model_uri"])
    assert (bucket, key) == (BUCKET, "models/cancer/v1/model.onnx")
    assert version_id, "the model uri is pinned to the S3 object version"
    assert _served(lam) == (first["lambda_version"], first["sha256"])
    config = lam.get_function_configuration(
        FunctionName=FUNCTION, Qualifier=first["lambda_version"]
    )
    assert config["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "onnxkit"

    decision, second = _run(s3, "v2", accuracy=0.96)
    assert decision["production"]["model_version"] == "v1"
    assert second is not None and second["previous_lambda_version"] == first["lambda_version"]
    pointer = json.loads(
        s3.get_object(Bucket=BUCKET, Key="models/cancer/production.json")["Body"].read()
    )
    assert set(pointer) == {
        "model_name",
        "model_version",
        "model_uri",
        "manifest_uri",
        "sha256",
        "manifest_sha256",
        "lambda_version",
        "promoted_at",
        "history",
    }
    assert pointer["model_version"] == "v2"
    manifest = s3.get_object(Bucket=BUCKET, Key="models/cancer/v2/manifest.json")["Body"].read()
    assert pointer["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    config = lam.get_function_configuration(
        FunctionName=FUNCTION, Qualifier=second["lambda_version"]
    )
    assert config["Environment"]["Variables"]["MODEL_MANIFEST_SHA256"] == pointer["manifest_sha256"]
    assert [h["model_version"] for h in pointer["history"]] == ["v1"]
    assert "history" not in pointer["history"][0]


def test_a_worse_candidate_is_rejected_and_production_is_unchanged(aws: dict[str, Any]) -> None:
    s3, lam = aws["s3"], aws["lambda"]
    _, first = _run(s3, "v1", accuracy=0.97)
    decision, promoted = _run(s3, "v2", accuracy=0.85)
    assert promoted is None and decision["passed"] is False
    assert decision["reasons"] == [
        "balanced_accuracy 0.8500 is worse than production v1 (0.9700) by more than 0.0100"
    ]
    assert first is not None and _served(lam)[1] == first["sha256"]


def test_a_tampered_artifact_is_refused(aws: dict[str, Any]) -> None:
    s3, lam = aws["s3"], aws["lambda"]
    _, first = _run(s3, "v1")
    manifest, good = artifact("v2")
    uri = _upload(s3, "v2", good)
    decision = handlers.evaluate(dict(workflow.evaluate_event("cancer", uri, GATE)))
    assert decision["passed"]
    # Someone swaps model.onnx in the bucket between Evaluate and Promote.
    _upload(s3, "v2", tarball(manifest, b"onnx-graph-EVIL"))
    with pytest.raises(TamperedArtifactError, match=r"digest mismatch for model\.onnx"):
        handlers.promote(
            dict(workflow.promote_event(cast("workflow.EvaluateResult", decision), "arn:pkg"))
        )
    assert first is not None and _served(lam)[1] == first["sha256"]
    assert S3Store(s3, BUCKET).head("models/cancer/v2/model.onnx") is None


def test_a_fault_at_any_aws_call_of_promote_leaves_the_previous_model_live(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, lam = aws["s3"], aws["lambda"]
    _, first = _run(s3, "v1")
    assert first is not None
    _, data = artifact("v2")
    uri = _upload(s3, "v2", data)
    decision = handlers.evaluate(dict(workflow.evaluate_event("cancer", uri, GATE)))
    event = dict(workflow.promote_event(cast("workflow.EvaluateResult", decision), "arn:pkg"))
    real = boto3.client
    n = 0
    while True:
        n += 1
        counter: dict[str, Any] = {"calls": 0, "fail_at": n, "names": []}
        monkeypatch.setattr(
            handlers.boto3, "client", lambda *a, c=counter, **k: FaultyClient(real(*a, **k), c)
        )
        try:
            result = handlers.promote(event)
        except InjectedFault:
            assert _served(lam) == (first["lambda_version"], first["sha256"]), counter["names"]
            pointer = read_pointer(S3Store(s3, BUCKET), "cancer")
            assert pointer is not None and pointer.model_version == "v1"
            live = resolve(S3Store(s3, BUCKET), LambdaServing(lam, FUNCTION), "cancer")
            assert live.pointer is not None and live.pointer.model_version == "v1"
            continue
        break
    # The loop reached a run with no fault: every call of a promotion was faulted once.
    assert n > 10, counter["names"]
    assert _served(lam) == (result["lambda_version"], result["sha256"])
    assert result["previous_lambda_version"] == first["lambda_version"]
    pointer = read_pointer(S3Store(s3, BUCKET), "cancer")
    assert pointer is not None and [h["model_version"] for h in pointer.history] == ["v1"]
    # Retries reused the version they published instead of publishing one per attempt.
    versions = lam.list_versions_by_function(FunctionName=FUNCTION)["Versions"]
    shas = [v["Environment"]["Variables"]["MODEL_SHA256"] for v in versions[1:]]
    assert len(shas) == len(set(shas))


class InjectedCrash(BaseException):
    """A crash: no ``except Exception`` clean-up runs (as when the process is killed)."""


class CrashAfter:
    """A boto3 client whose process "dies" right after the Nth call succeeded (a Lambda timeout
    or a killed CLI): the call's effect is kept, nothing after it runs."""

    def __init__(self, inner: Any, counter: dict[str, Any]) -> None:
        self._inner, self._counter = inner, counter

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute) or name.startswith(("get_paginator", "get_waiter", "meta")):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            self._counter["calls"] += 1
            self._counter["names"].append(name)
            if self._counter["calls"] == self._counter["crash_at"]:
                raise InjectedCrash(f"crashed after call {self._counter['calls']}: {name}")
            return result

        return call


def _live_everywhere(s3: Any, lam: Any) -> str:
    """The live model's version, after checking the alias, resolve and (once reconciled, as the
    next promotion or rollback does) the stored pointer agree on it."""
    store, serving = S3Store(s3, BUCKET), LambdaServing(lam, FUNCTION)
    live = resolve(store, serving, "cancer")
    assert live.pointer is not None
    version, sha = _served(lam)
    if not serving.follows_pointer(version):
        assert sha == live.pointer.sha256
    reconcile(store, serving, "cancer")
    pointer = read_pointer(store, "cancer")
    assert pointer is not None and pointer.model_version == live.pointer.model_version
    return live.pointer.model_version


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_a_crash_after_any_aws_call_leaves_one_live_model(
    monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """Unlike a fault (the call fails and the step's clean-up runs), a crash keeps the call's
    effect and runs nothing after it. After each, the next promotion and a rollback land on the
    designed state: the model ``live`` served is the live one."""
    monkeypatch.setenv("ARTIFACT_BUCKET", BUCKET)
    monkeypatch.setenv("FUNCTION_NAME", FUNCTION)
    real = boto3.client
    n = 0
    while True:
        n += 1
        with mocked(monkeypatch, REGION):
            s3, lam, _ = moto_serving(
                REGION,
                BUCKET,
                FUNCTION,
                {"MODEL_URI": f"s3://{BUCKET}/models/cancer/production.json", "MODEL_SHA256": ""},
            )
            _run(s3, "v1")
            if action == "rollback":
                _run(s3, "v2")
                step: Any = lambda: rollback(  # noqa: E731
                    S3Store(boto3.client("s3"), BUCKET),
                    LambdaServing(boto3.client("lambda"), FUNCTION),
                    "cancer",
                )
            else:
                _, data = artifact("v2")
                uri = _upload(s3, "v2", data)
                decision = handlers.evaluate(dict(workflow.evaluate_event("cancer", uri, GATE)))
                event = workflow.promote_event(cast("workflow.EvaluateResult", decision), "arn:p")
                step = lambda e=event: handlers.promote(dict(e))  # noqa: E731
            before = _live_everywhere(s3, lam)
            counter: dict[str, Any] = {"calls": 0, "crash_at": n, "names": []}
            monkeypatch.setattr(
                boto3, "client", lambda *a, c=counter, **k: CrashAfter(real(*a, **k), c)
            )
            try:
                step()
            except InjectedCrash:
                crashed = True
            else:
                crashed = False
            finally:
                monkeypatch.setattr(boto3, "client", real)
            names = counter["names"]
            moved = "update_alias" in names or "create_alias" in names
            live = _live_everywhere(s3, lam)
            if action == "promote":
                assert live == ("v2" if moved else before), names
            else:
                assert live == ("v1" if moved else before), names
            # The next run: v3 on top of whatever is live; a rollback returns to it.
            _, third = _run(s3, "v3", accuracy=0.96)
            assert third is not None and _live_everywhere(s3, lam) == "v3"
            back = rollback(S3Store(s3, BUCKET), LambdaServing(lam, FUNCTION), "cancer")
            assert (back["from"], back["to"]) == ("v3", live), names
            assert _live_everywhere(s3, lam) == live
        if not crashed:
            break
    assert n > 8, names


def test_rollback_moves_live_and_the_pointer_back(aws: dict[str, Any]) -> None:
    s3, lam = aws["s3"], aws["lambda"]
    _, first = _run(s3, "v1")
    _, second = _run(s3, "v2")
    assert first is not None and second is not None
    result = rollback(S3Store(s3, BUCKET), LambdaServing(lam, FUNCTION), "cancer")
    assert result["to"] == "v1"
    assert _served(lam) == (first["lambda_version"], first["sha256"])
    pointer = read_pointer(S3Store(s3, BUCKET), "cancer")
    assert pointer is not None and pointer.model_version == "v1"


def test_gradual_shift_rolls_back_when_the_alarm_fires(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, lam = aws["s3"], aws["lambda"]
    _, first = _run(s3, "v1")
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName="fn-errors",
        MetricName="Errors",
        Namespace="AWS/Lambda",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName="fn-errors", StateValue="ALARM", StateReason="test")
    monkeypatch.setenv("SHIFT_WEIGHTS", "0.1,0.5")
    monkeypatch.setenv("ALARM_NAME", "fn-errors")
    with pytest.raises(StepError, match="alarm during the shift"):
        _run(s3, "v2")
    assert first is not None and _served(lam) == (first["lambda_version"], first["sha256"])
    cloudwatch.set_alarm_state(AlarmName="fn-errors", StateValue="OK", StateReason="test")
    _, second = _run(s3, "v3")
    assert second is not None and _served(lam)[1] == second["sha256"]


def test_bad_events_fail_readably(aws: dict[str, Any]) -> None:
    with pytest.raises(StepError, match="bad Evaluate event"):
        handlers.evaluate({"model_name": "cancer"})
    with pytest.raises(StepError, match="bad Evaluate event"):
        handlers.evaluate(
            {
                "model_name": "cancer",
                "candidate_artifact_uri": "s3://b/k",
                "gate": {"min_accuracy": 7},
            }
        )
    with pytest.raises(StepError, match="does not exist"):
        handlers.evaluate(
            dict(workflow.evaluate_event("cancer", f"s3://{BUCKET}/nope/model.tar.gz", GATE))
        )
    with pytest.raises(StepError, match="bad Promote event"):
        handlers.promote({"candidate": {}})


def test_manifest_builder_is_valid() -> None:
    # Guards the fixtures: a builder drifting from the contract would make tests vacuous.
    from onnxkit.contract.manifest import Manifest

    Manifest.from_dict(manifest_dict("v1", task="regression", accuracy=0.5))


def test_the_gate_record_and_the_package_card(aws: dict[str, Any]) -> None:
    """Promote keeps what the gate compared beside each version; the package metadata Evaluate
    builds is accepted by SageMaker (moto) and reads back as the registry's card."""
    from onnxkit.cloud import registry
    from onnxkit.contract.card import metadata_problems, parse_evaluation

    s3 = aws["s3"]
    importance = {"radius": 0.02, "texture": 0.2}
    first, _ = _run(s3, "v1", importance=importance)
    decision, promoted = _run(s3, "v2", accuracy=0.96, importance=importance)
    assert promoted is not None
    records = {
        version: parse_evaluation(
            s3.get_object(Bucket=BUCKET, Key=f"models/cancer/{version}/evaluation.json")[
                "Body"
            ].read()
        )
        for version in ("v1", "v2")
    }
    assert records["v1"].production is None and records["v1"].passed
    gated = records["v2"]
    assert gated.production is not None and gated.production.model_version == "v1"
    assert gated.production.metrics["accuracy"] == 0.95
    assert gated.candidate.metrics["accuracy"] == 0.96
    assert gated.gate_metric == "balanced_accuracy" and gated.evaluated_at

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model_package_group(ModelPackageGroupName="cancer-models")
    for evaluation, execution in ((first, "run-1"), (decision, "run-2")):
        # What the Register state sends (its JSONata is checked in tests/infra/test_jsonata.py).
        properties = {**evaluation["package_metadata"], "execution": execution}
        assert metadata_problems(properties) == []
        sagemaker.create_model_package(
            ModelPackageGroupName="cancer-models",
            ModelApprovalStatus="Approved",
            CustomerMetadataProperties=properties,
            InferenceSpecification={
                "Containers": [{"Image": "sklearn", "ModelDataUrl": "s3://b/m.tar.gz"}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
    newest, oldest = registry.list_versions(sagemaker, "cancer-models")
    assert (newest.model_name, newest.model_version) == ("cancer", "v2")
    assert [f["name"] for f in newest.top_features] == ["texture", "radius"]
    assert newest.production_at_gate == {
        "model_version": "v1",
        "metrics": {"accuracy": 0.95, "balanced_accuracy": 0.95},
    }
    assert newest.metrics == {"accuracy": 0.96, "balanced_accuracy": 0.96}
    assert oldest.production_at_gate is None
