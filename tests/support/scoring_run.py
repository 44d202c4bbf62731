"""A cloud scoring run's outputs, built on this machine to the letter of onnxkit.contract.scoring.

:func:`build_run` plays Plan, the Distributed Map's children and Summarize over one input file:
the local scorer reads its records (``onnxkit.local.scoring.chunks``), and each part is scored
and formatted by the runtime's table code as the scoring function formats it (``part``,
``part_row``, ``part_line`` counted from the part's first byte), so the parts hold exactly the
values a local ``onnxkit score`` run writes. It shares nothing with the cloud's own
Plan/Score/Summarize code: the CLI's merge is checked against the contract, not against the code
that implements it.

:class:`ScoringCloud` drives moto's in-process Step Functions backend: moto stores the state
machine and starts executions but cannot run a Distributed Map, so while the CLI polls, it ends
the execution the way the real one would (the run's objects written in shuffled order, then the
status), and answers ListMapRuns / DescribeMapRun with the parts' counts.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from functions.inference import table
from onnxkit.contract import scoring as contract
from onnxkit.contract.layout import MANIFEST_FILE, SERVING_FILE, sha256_bytes, version_prefix
from onnxkit.local import scoring as local
from tests.support.aws import REGION

STARTED = "2026-11-28T12:00:00+00:00"


@dataclass
class BuiltRun:
    """A run's objects by key (parts, plan, summary, the model's manifest) and its summary."""

    summary: contract.Summary
    parts: dict[str, bytes] = field(default_factory=dict)  # parts/<n>.jsonl and .json
    others: dict[str, bytes] = field(default_factory=dict)  # plan.json, the manifest


def build_run(
    model_dir: Path,
    input_path: Path,
    *,
    bucket: str,
    input_key: str,
    output_prefix: str,
    id_column: str | None = None,
    rows_per_part: int = 25,
    failed: Sequence[int] = (),
) -> BuiltRun:
    """Score ``input_path`` (the object ``input_key``) in parts of ``rows_per_part`` records with
    the model in ``model_dir``; the parts numbered in ``failed`` get no objects (a child that
    never finished) and are listed in the summary's ``failed_parts``."""
    model = local.load(local.ModelRef(str(model_dir)))
    manifest = (model_dir / MANIFEST_FILE).read_bytes()
    versions = version_prefix(model.model_name, model.model_version)
    pinned = contract.PinnedModel(
        name=model.model_name,
        version=model.model_version,
        uri=f"s3://{bucket}/{versions}{SERVING_FILE}",
        sha256=model.sha256,
        manifest_sha256=sha256_bytes(manifest),
    )
    fmt = local.input_format(input_path)
    size = input_path.stat().st_size
    header, data_start, line = local.read_header(input_path) if fmt == "csv" else (None, 0, 1)
    job = table.Job(fmt, "jsonl", tuple(header) if header else None, id_column)
    run = BuiltRun(summary=None)  # type: ignore[arg-type]  # set below
    plan: list[contract.Part] = []
    parts: list[contract.PartSummary] = []
    failed_parts: list[contract.Part] = []
    rejected: list[contract.RejectedRow] = []
    start, first_line, row = 0, 1, 0
    with input_path.open("rb") as handle:
        handle.seek(data_start)
        pieces = list(local.chunks(handle, fmt, batch_rows=rows_per_part, first_row=0, line=line))
    for number, chunk in enumerate(pieces):
        end = size if number == len(pieces) - 1 else chunk.end_offset
        part = contract.Part(
            part=number,
            key=input_key,
            start=start,
            end=end,
            size=size,
            header=header,
            data_start=data_start,
            first_line=1 if number == 0 else None,
        )
        plan.append(part)
        if number in failed:
            failed_parts.append(part)
        else:
            results, ids = table.score_records(model, job, chunk.split())
            out = table.format_records(
                model,
                job,
                results,
                ids,
                first_row=0,
                lines=[n - first_line + 1 for n in chunk.lines],
                lead={"part": number},
                row_field="part_row",
                line_field="part_line",
                keep_rejections=contract.MAX_REJECTED_IN_SUMMARY,
            )
            result = contract.PartResult(
                part=number,
                key=input_key,
                rows=chunk.size,
                scored=out.scored,
                rejected=out.rejected,
                lines=chunk.next_line - first_line,
                rejections=[
                    contract.Rejection(part_row=r, part_line=n, reason=why)
                    for r, n, why in out.rejections
                ],
                model_version=model.model_version,
                seconds=0.01,
            )
            records_key, result_key = contract.part_keys(output_prefix, number)
            run.parts[records_key] = out.data
            run.parts[result_key] = contract.encode(result)
            parts.append(
                contract.PartSummary(
                    part=number,
                    key=input_key,
                    start=start,
                    end=end,
                    first_row=row,
                    first_line=first_line,
                    rows=result.rows,
                    scored=result.scored,
                    rejected=result.rejected,
                )
            )
            rejected += [
                contract.RejectedRow(
                    row=row + r.part_row,
                    line=first_line + r.part_line - 1,
                    key=input_key,
                    reason=r.reason,
                )
                for r in result.rejections
            ]
        start, first_line, row = chunk.end_offset, chunk.next_line, row + chunk.size
    run.summary = contract.Summary(
        input_uri=f"s3://{bucket}/{input_key}",
        output_uri=f"s3://{bucket}/{output_prefix}",
        format=fmt,
        model=pinned,
        rows=sum(p.rows for p in parts),
        scored=sum(p.scored for p in parts),
        rejected=sum(p.rejected for p in parts),
        rejected_rows=rejected[: contract.MAX_REJECTED_IN_SUMMARY],
        failed_parts=failed_parts,
        parts=parts,
        started_at=STARTED,
        finished_at="2026-11-28T12:01:03+00:00",
        seconds=63.0,
    )
    run.others[output_prefix + contract.PLAN_FILE] = contract.encode(plan)
    run.others[versions + MANIFEST_FILE] = manifest
    return run


class ScoringCloud:
    """The scoring state machine's behaviour under moto (in-process, ``mocked()``).

    ``outcome``: ``succeed`` (objects, then SUCCEEDED), ``failed_parts`` (objects without the
    ``failed`` parts, a summary naming them, then FAILED as the Map fails past its tolerance),
    ``fail`` (FAILED with ``error`` / ``cause``, no summary). ``drop`` leaves objects out (by
    name under the output folder) to break the contract. The run ends on the
    ``ends_at_poll``-th DescribeExecution of the execution."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        model_dir: Path,
        *,
        outcome: str = "succeed",
        failed: Sequence[int] = (),
        rows_per_part: int = 25,
        ends_at_poll: int = 2,
        error: str = "States.TaskFailed",
        cause: str = "",
        seed: int = 7,
        drop: Sequence[str] = (),
    ) -> None:
        from moto.stepfunctions.models import StepFunctionBackend

        self.model_dir = model_dir
        self.outcome = outcome
        self.failed = failed
        self.rows_per_part = rows_per_part
        self.ends_at_poll = ends_at_poll
        self.error, self.cause = error, cause
        self.random = random.Random(seed)
        self.drop = drop  # names under the output folder left unwritten (a broken run)
        self.polls: dict[str, int] = {}
        self.parts: dict[str, int] = {}  # parts per execution, once it ended
        self.written: list[str] = []  # keys, in the order they were put
        self.run: BuiltRun | None = None
        # On the class: mock_aws resets its backends' instances when the test's block ends.
        describe = StepFunctionBackend.describe_execution
        monkeypatch.setattr(
            StepFunctionBackend,
            "describe_execution",
            lambda backend, arn: self._poll(describe(backend, arn)),
        )
        monkeypatch.setattr(
            StepFunctionBackend, "list_map_runs", lambda _, arn: self._map_runs(arn)
        )
        monkeypatch.setattr(
            StepFunctionBackend, "describe_map_run", lambda _, arn: self._map_run(arn)
        )

    def _poll(self, execution: Any) -> Any:
        arn = execution.execution_arn
        self.polls[arn] = self.polls.get(arn, 0) + 1
        if execution.status == "RUNNING" and self.polls[arn] >= self.ends_at_poll:
            self._end(execution)
        return execution

    def _end(self, execution: Any) -> None:
        import boto3

        request = contract.decode(execution.execution_input, contract.ScoringRequest)
        bucket, key = contract.parse_s3_uri(request.input_uri)
        _, output_prefix = contract.parse_s3_uri(request.output_uri)
        execution.stop_date = datetime.now(UTC)
        if self.outcome == "fail":
            execution.status, execution.error, execution.cause = "FAILED", self.error, self.cause
            return
        s3 = boto3.client("s3", region_name=REGION)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(key).name
            path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            self.run = build_run(
                self.model_dir,
                path,
                bucket=bucket,
                input_key=key,
                output_prefix=output_prefix,
                id_column=request.id_column,
                rows_per_part=self.rows_per_part,
                failed=self.failed if self.outcome == "failed_parts" else (),
            )
        keys = list(self.run.parts)
        self.random.shuffle(keys)  # children finish in any order
        listed = list(self.run.summary.parts)
        self.random.shuffle(listed)  # nor does the contract order the summary's parts
        self.run.summary = msgspec.structs.replace(self.run.summary, parts=listed)
        objects = [*((k, self.run.parts[k]) for k in keys), *self.run.others.items()]
        objects.append((output_prefix + contract.SUMMARY_FILE, contract.encode(self.run.summary)))
        for name, body in objects:
            if name.removeprefix(output_prefix) in self.drop:
                continue
            s3.put_object(Bucket=bucket, Key=name, Body=body)
            self.written.append(name)
        self.parts[execution.execution_arn] = len(self.run.summary.parts) + len(
            self.run.summary.failed_parts
        )
        if self.outcome == "failed_parts":
            execution.status, execution.error = "FAILED", "States.ExceedToleratedFailureThreshold"
            execution.cause = "The specified tolerated failure threshold was exceeded"
        else:
            execution.status, execution.output = "SUCCEEDED", "{}"

    def _map_runs(self, execution_arn: str) -> dict[str, Any]:
        if execution_arn not in self.parts:
            return {"mapRuns": []}  # the map has not started (Plan runs first)
        return {
            "mapRuns": [
                {
                    "executionArn": execution_arn,
                    "mapRunArn": f"{execution_arn}/Score:1",
                    "stateMachineArn": execution_arn,
                    "startDate": datetime.now(UTC),
                }
            ]
        }

    def _map_run(self, map_run_arn: str) -> dict[str, Any]:
        total = self.parts[map_run_arn.rsplit("/", 1)[0]]
        failed = len(self.failed) if self.outcome == "failed_parts" else 0
        counts = {"pending": 0, "running": 0, "succeeded": total - failed, "failed": failed}
        counts.update(timedOut=0, aborted=0, total=total, resultsWritten=total)
        return {"mapRunArn": map_run_arn, "itemCounts": counts}
