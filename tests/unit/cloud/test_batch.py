"""onnxkit.cloud.batch's pure pieces: run names, locations, a failure's line, and the merge of one
part's records into the local scorer's bytes (float32 values of every magnitude included)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pytest

from functions.inference import table
from functions.inference.batch import RowResult
from onnxkit.cloud import batch
from onnxkit.cloud.errors import CloudError
from onnxkit.contract import scoring as contract

# Values whose float64 round trip prints otherwise than float32 does (orjson writes
# 0.000007414335 for one and 7.414335e-06 for the other; str() 287752200.0 vs 2.877522e+08).
AWKWARD = np.array(
    [7.414335e-06, 2.877522e08, -2.1770715e15, 3.4e38, 1e-45, 0.1, 151.25, 0.0],
    dtype=np.float32,
)


def test_run_names_are_readable_valid_and_keep_prefix_and_stamp():
    now = datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC)
    assert batch.run_name("data/my rows.v2.csv", now) == "score-my-rows-v2-20261128-120005"
    assert batch.run_name("s3://b/scoring/input/nightly/", now) == "score-nightly-20261128-120005"
    long = batch.run_name("x" * 200 + ".jsonl", now)
    assert len(long) == 80 and long.startswith("score-xxx") and long.endswith("-20261128-120005")


def test_output_locations():
    bucket = "kit"
    assert batch.locate_output(bucket, None, "r") == ("s3://kit/scoring/output/r/", None)
    assert batch.locate_output(bucket, "s3://kit/scoring/output/a/b", "r") == (
        "s3://kit/scoring/output/a/b/",
        None,
    )
    uri, local = batch.locate_output(bucket, "preds.csv", "r")
    assert uri == "s3://kit/scoring/output/r/" and str(local) == "preds.csv"
    with pytest.raises(CloudError, match="is outside s3://kit/scoring/output/"):
        batch.locate_output(bucket, "s3://other/scoring/output/a/", "r")


def test_a_lambda_failure_is_told_by_its_message():
    request = contract.ScoringRequest(input_uri="s3://b/k.csv", output_uri="s3://b/o/")
    state = batch.RunState(
        arn="arn", name="score-x", status="FAILED", request=request, error="PlanError",
        cause='{"errorType": "PlanError", "errorMessage": "no header\\nat all"}',
    )  # fmt: skip
    assert state.failure() == "execution score-x FAILED: PlanError: no header at all"
    timed_out = batch.RunState(arn="a", name="score-y", status="TIMED_OUT", request=request)
    assert timed_out.failure() == "execution score-y TIMED_OUT"


def _part(rows: int) -> contract.PartSummary:
    return contract.PartSummary(
        part=3, key="k", start=0, end=1, first_row=500, first_line=900, rows=rows, scored=rows,
        rejected=0,
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_a_part_merges_into_the_bytes_the_local_scorer_writes(fmt, task, monkeypatch):
    """A part written by the runtime's formatter (as the scoring function writes it) and merged
    gives what the same formatter writes for a local run, awkward float32 values included."""
    classes = ["no", 7] if task == "classification" else None
    model = batch.OutputModel("m", "v1", task, classes)
    n = len(AWKWARD)
    if classes:
        results = [
            RowResult(prediction="no", probabilities=np.array([v, AWKWARD[-1 - i]]))
            for i, v in enumerate(AWKWARD)
        ]
        results[2] = RowResult(reason="age: expected a number, got 'x'")
    else:
        results = [RowResult(prediction=v) for v in AWKWARD]
    ids = [f"id{i}" for i in range(n)]
    lines = [900 + 2 * i for i in range(n)]  # rows two lines apart
    as_part = table.format_records(
        model, table.Job("csv", "jsonl", None, "who"), results, ids, first_row=0,
        lines=[line - 899 for line in lines], lead={"part": 3}, row_field="part_row",
        line_field="part_line",
    )  # fmt: skip
    job = table.Job("csv", fmt, None, "who")
    local = table.format_records(model, job, results, ids, first_row=500, lines=lines)
    out = io.BytesIO()
    monkeypatch.setattr(batch, "MERGE_BATCH", 3)  # several batches within the part
    merged = batch.merge_part(_part(n), io.BytesIO(as_part.data), model, job, out, lambda n: None)
    assert merged == n
    assert out.getvalue() == local.data


def test_a_part_that_breaks_the_contract_is_one_line():
    model = batch.OutputModel("m", "v1", "regression", None)
    job = table.Job("csv", "jsonl", None, None)
    record = b'{"part":3,"part_row":1,"part_line":1,"prediction":1.0,"model_version":"v1"}\n'
    with pytest.raises(CloudError, match="record 0 has part_row 1"):
        batch.merge_part(_part(1), io.BytesIO(record), model, job, io.BytesIO(), lambda n: None)
    other = record.replace(b'"part_row":1', b'"part_row":0').replace(b'"v1"', b'"v0"')
    with pytest.raises(CloudError, match="scored by v0, not the run's v1"):
        batch.merge_part(_part(1), io.BytesIO(other), model, job, io.BytesIO(), lambda n: None)
    good = record.replace(b'"part_row":1', b'"part_row":0')
    with pytest.raises(CloudError, match=r"holds 1 records, summary\.json says 2"):
        batch.merge_part(_part(2), io.BytesIO(good), model, job, io.BytesIO(), lambda n: None)
