"""``onnxkit predict``: score a CSV/JSONL file through a deployed API or ``onnxkit serve``."""

from __future__ import annotations

import itertools
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from onnxkit.cli import present
from onnxkit.cloud import api as api_mod
from onnxkit.cloud import scoring
from onnxkit.cloud.api import SigV4Signer, kind_from_url, region_from_url, signing_service
from onnxkit.cloud.discovery import aws_session, discover
from onnxkit.cloud.errors import CloudError
from onnxkit.contract.layout import MAX_INSTANCES


def predict(
    *,
    input_path: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            help="rows.csv (header = feature names) or rows.jsonl (objects or arrays).",
        ),
    ],
    env: Annotated[
        str | None,
        typer.Option(
            help="Deployed environment: finds the API URL and auth mode from its stack outputs."
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="API base URL instead of --env, e.g. http://127.0.0.1:8080/ for `onnxkit serve`."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="ONNXKIT_API_KEY", show_envvar=True, help="Send x-api-key instead of SigV4."
        ),
    ] = None,
    auth: Annotated[
        str,
        typer.Option(
            help="auto | iam | api_key | none. auto: the stack's "
            "AuthMode, api_key when a key is given, SigV4 for an "
            "execute-api or lambda-url URL, else none."
        ),
    ] = "auto",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="preds.csv or preds.jsonl; resumed if it exists. Default: CSV on stdout.",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help=f"Rows per call (the API takes at most {MAX_INSTANCES}).")
    ] = MAX_INSTANCES,
    overwrite: Annotated[
        bool, typer.Option(help="Start the output afresh instead of resuming.")
    ] = False,
    attempts: Annotated[
        int, typer.Option(help="Tries per call on 429, 5xx and connection errors.")
    ] = 6,
    region: Annotated[
        str | None, typer.Option(help="AWS region (default: the standard chain).")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile.")] = None,
) -> None:
    """Score rows over HTTPS: batched, retried with backoff, written batch by batch, resumable.

    Every row is scored or rejected: rejected rows (cells the model's API would refuse, read
    with its missing tokens, or rows it refused) are written with their line and reason in the
    ``error`` column and listed at the end; the exit code is then 2. A file whose structure
    breaks (a quote that never closes) stops at that line, exit 1, keeping what was written.
    """
    code = _predict(
        input_path=input_path,
        env=env,
        url=url,
        api_key=api_key,
        auth=auth,
        output=output,
        batch_size=batch_size,
        overwrite=overwrite,
        attempts=attempts,
        region=region,
        profile=profile,
    )
    if code:
        raise typer.Exit(code)


def _predict(
    *,
    input_path: Path,
    env: str | None,
    url: str | None,
    api_key: str | None,
    auth: str,
    output: Path | None,
    batch_size: int,
    overwrite: bool,
    attempts: int,
    region: str | None,
    profile: str | None,
) -> int:
    if (env is None) == (url is None):
        raise CloudError("pass exactly one of --env or --url")
    if not 1 <= batch_size <= MAX_INSTANCES:
        raise CloudError(
            f"--batch-size must be between 1 and {MAX_INSTANCES} (the API's limit per call)"
        )
    if attempts < 1:
        raise CloudError("--attempts must be at least 1")
    if auth not in ("auto", "iam", "api_key", "none"):
        raise CloudError(f"--auth must be auto, iam, api_key or none, not {auth!r}")
    if not input_path.is_file():
        raise CloudError(f"input file {input_path} not found")
    scoring.input_format(input_path)
    if output is not None:
        scoring.input_format(output)  # same two formats for the output

    console = present.console(stderr=True, soft_wrap=True)
    base_url, mode, client_args = _endpoint(
        env=env, url=url, api_key=api_key, auth=auth, region=region, profile=profile
    )
    policy = replace(api_mod.DEFAULT_POLICY, attempts=attempts)

    def on_retry(reason: str) -> None:
        console.print(f"[yellow]retrying[/]: {reason}", highlight=False, markup=True)

    with api_mod.ApiClient(
        base_url, auth=mode, policy=policy, on_retry=on_retry, **client_args
    ) as client:
        model = client.get_model()
        classes = model.get("classes") if model.get("task") == "classification" else None
        signature = _signature(model)
        missing_values = _missing_values(model)
        expected = scoring.columns(classes)
        total = scoring.count_rows(input_path)
        done = 0
        if output is not None and not overwrite:
            done = scoring.completed_rows(output, expected)
            if done > total:
                raise CloudError(
                    f"{output} has {done} rows but {input_path} only {total}; "
                    "pass --overwrite or another --output"
                )
        report = scoring.Report(total=total, skipped=done)
        console.print(
            f"model {model.get('model_name', '?')} {model.get('model_version', '?')}"
            f" at {base_url} ({mode} auth); {total} rows"
            + (f", resuming after {done} already in {output}" if done else ""),
            highlight=False,
        )
        rows = itertools.islice(
            scoring.read_rows(input_path, signature, missing_values), done, None
        )
        handle: Any = sys.stdout
        if output is not None:
            fresh = overwrite or not output.exists() or output.stat().st_size == 0
            try:
                handle = output.open("w" if overwrite else "a", encoding="utf-8", newline="")
            except OSError as error:
                raise CloudError(f"cannot write {output}: {error.strerror}") from None
        else:
            fresh = True
        broken: scoring.BrokenInput | None = None
        try:
            fmt = "jsonl" if output is not None and output.suffix.lower() == ".jsonl" else "csv"
            writer = scoring.Writer(handle, fmt, classes, write_header=fresh)
            try:
                _run_with_progress(
                    console=console,
                    client=client,
                    rows=rows,
                    writer=writer,
                    batch_size=batch_size,
                    report=report,
                )
            except scoring.BrokenInput as error:
                broken = error
            except KeyboardInterrupt:
                written = done + report.scored + len(report.rejected)
                console.print(
                    f"interrupted: {written} of {total} rows are in {output or 'stdout'}"
                    "; run the same command again to resume",
                    highlight=False,
                )
                raise
        finally:
            if handle is not sys.stdout:
                handle.close()
    _summary(console, report, output)
    if broken is not None:
        kept = done + report.read
        raise CloudError(
            f"{broken}; stopped there: the {kept} rows before it are in {output or 'stdout'}"
            " (fix the file and run the same command again to resume)"
        )
    return 2 if report.rejected else 0


def _run_with_progress(
    *, console: Any, client: Any, rows: Any, writer: Any, batch_size: int, report: Any
) -> None:
    with present.scoring_progress(console, report.total, report.skipped) as advance:
        scoring.run(
            client, rows, writer=writer, batch_size=batch_size, report=report, advance=advance
        )


def _endpoint(
    *,
    env: str | None,
    url: str | None,
    api_key: str | None,
    auth: str,
    region: str | None,
    profile: str | None,
) -> tuple[str, Any, dict[str, Any]]:
    """Base URL, auth mode and ApiClient arguments for --env or --url."""
    session = None
    sign_region: str | None
    if env is not None:
        kit = discover(env, ("Serving",), region=region, profile=profile)
        base_url, session, sign_region = kit.api_url, kit.session, kit.region
        mode = kit.auth_mode if auth == "auto" else auth
        kind = kit.api_kind  # the stack says which front door, hence which SigV4 service
    else:
        assert url is not None
        if not url.startswith(("http://", "https://")):
            raise CloudError(f"--url must start with http:// or https://, not {url!r}")
        base_url = url
        sign_region = region_from_url(url) or region
        kind = kind_from_url(url) or "rest"
        if auth != "auto":
            mode = auth
        elif api_key:
            mode = "api_key"
        else:
            mode = "iam" if region_from_url(url) else "none"
    if mode == "api_key" and api_key is None and env is not None:
        raise CloudError(f"the {env} API uses API keys: pass --api-key or set ONNXKIT_API_KEY")
    args: dict[str, Any] = {"api_key": api_key}
    if mode == "iam":
        session = session or aws_session(sign_region, profile)
        sign_region = sign_region or session.region_name
        if not sign_region:
            raise CloudError("SigV4 needs a region: pass --region or set AWS_REGION")
        credentials = session.get_credentials()
        if credentials is None:
            raise CloudError(
                "no AWS credentials found to sign the request: configure a "
                "profile (AWS_PROFILE) or set AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, or use --api-key"
            )
        args["signer"] = SigV4Signer(credentials, sign_region, signing_service(kind))
    return base_url, mode, args


def _signature(model: dict[str, Any]) -> dict[str, str] | None:
    """Feature name -> kind from ``GET /model``, or None when it is not given."""
    features = (model.get("signature") or {}).get("features")
    if not isinstance(features, list):
        return None
    return {
        f["name"]: f.get("kind", "numeric") for f in features if isinstance(f, dict) and "name" in f
    }


def _missing_values(model: dict[str, Any]) -> list[str] | None:
    """The served model's missing tokens from ``GET /model`` (None: the contract's default)."""
    tokens = (model.get("signature") or {}).get("missing_values")
    if isinstance(tokens, list) and all(isinstance(token, str) for token in tokens):
        return tokens
    return None


def _summary(console: Any, report: Any, output: Path | None) -> None:
    present.print_scoring_summary(console, report, output)
    rejected = len(report.rejected)
    if report.read != report.scored + rejected:  # never expected: say so rather than hide it
        raise CloudError(
            f"internal error: {report.read} rows read but {report.scored} scored and "
            f"{rejected} rejected"
        )
    if report.rejected:
        present.print_rejected(console, report)
