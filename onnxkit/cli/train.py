"""``onnxkit train``: upload data, start the training pipeline, optionally follow it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from boto3.s3.transfer import TransferConfig

from onnxkit.cli import present
from onnxkit.cli.status import EXIT_CODES, watch
from onnxkit.cloud.discovery import discover
from onnxkit.cloud.errors import CloudError
from onnxkit.cloud.executions import execution_link, execution_name
from onnxkit.contract.layout import KMS_KEY_OUTPUT

# Multipart above 8 MiB, in 8 MiB parts (S3's minimum part is 5 MiB).
MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024


def train(
    env: Annotated[str, typer.Option(envvar="ONNXKIT_ENV", help="Deployed environment.")],
    data: Annotated[
        str, typer.Option(help="Training data: a local CSV file or directory, or an s3:// prefix.")
    ],
    validation: Annotated[
        str | None, typer.Option(help="Optional validation CSV (local or s3://).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Estimator, e.g. mlp, hist_gb, logistic (hyperparameter `model`)."),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Target column (hyperparameter `target`).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Extra hyperparameter key=value; repeatable.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Execution name (default: <data>-<model>-<UTC time>).")
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Follow the run to its end; exit 0 promoted, 3 rejected, 1 failed.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes with --wait.")] = 10.0,
    region: Annotated[str | None, typer.Option(help="AWS region.")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile.")] = None,
) -> None:
    """Upload training data to the kit's data location and start a pipeline execution."""
    hyperparameters = parse_sets(set_ or [])
    if model:
        hyperparameters["model"] = model
    if target:
        hyperparameters["target"] = target
    run_name = execution_name(name or _default_name(data, model))

    kit = discover(env, ("Artifacts", "Pipeline"), region=region, profile=profile)
    run_prefix = f"{kit.data_uri}{run_name}/"
    execution_input: dict[str, Any] = {
        "train_s3_uri": _stage(kit, data, f"{run_prefix}train/"),
        "hyperparameters": hyperparameters,
    }
    if validation:
        execution_input["validation_s3_uri"] = _stage(kit, validation, f"{run_prefix}validation/")
    sfn = kit.client("stepfunctions")
    started = sfn.start_execution(
        stateMachineArn=kit.state_machine_arn, name=run_name, input=json.dumps(execution_input)
    )
    arn = started["executionArn"]
    typer.echo(f"started {run_name}")
    typer.echo(f"  data  {execution_input['train_s3_uri']}")
    typer.echo(f"  arn   {arn}")
    typer.echo(f"  console {execution_link(kit.region, arn)}")
    if not wait:
        typer.echo(f"follow it with: onnxkit status {run_name} --env {env} --follow")
        return
    outcome = watch(kit, arn, follow=True, interval=interval)
    if EXIT_CODES[outcome]:
        raise typer.Exit(EXIT_CODES[outcome])


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; values stay strings (the contract)."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise CloudError(f"--set {pair!r}: expected key=value with a name-like key")
        found[key] = value
    return found


def _default_name(data: str, model: str | None) -> str:
    stem = Path(data.rstrip("/")).stem or "data"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stem}-{model or 'default'}-{stamp}"


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise CloudError(f"not an s3:// URI: {uri}")
    return bucket, key


def _stage(kit: Any, source: str, destination: str) -> str:
    """Upload a local file or directory under ``destination``; s3:// sources pass through."""
    if source.startswith("s3://"):
        _split_s3(source)
        return source
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        files = [path]
    else:
        raise CloudError(f"data {source} not found (a local file or directory, or s3://...)")
    if not files:
        raise CloudError(f"no files in {source}")
    base = path if path.is_dir() else path.parent
    upload(kit, [(f, destination + f.relative_to(base).as_posix()) for f in files])
    return destination


def upload(kit: Any, pairs: list[tuple[Path, str]]) -> None:
    """Upload files to s3 URIs with a progress bar, multipart above 8 MiB, SSE-KMS when the
    kit has a key."""
    s3 = kit.client("s3")
    config = TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD,
        multipart_chunksize=MULTIPART_CHUNK,
        max_concurrency=4,
    )
    extra: dict[str, str] = {}
    kms = kit.outputs.get(KMS_KEY_OUTPUT)
    if kms:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms}
    total = sum(p.stat().st_size for p, _ in pairs)
    with present.upload_progress(total) as advance:
        for path, uri in pairs:
            bucket, key = _split_s3(uri)
            s3.upload_file(
                str(path), bucket, key, ExtraArgs=extra or None, Config=config, Callback=advance
            )
