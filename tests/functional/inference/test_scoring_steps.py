"""The scoring state machine's steps (Plan, a Distributed Map child, Summarize) over moto's S3.

Moto cannot run a Distributed Map, so the test walks it as Step Functions would: the handler
gets the Plan event, then one ``{"Items", "BatchInput"}`` event per batch of the plan's parts
(in a shuffled order, as concurrent children finish), then Summarize. The parts merged by the
summary's row offsets must equal a local ``onnxkit score`` of the same file row for row:
same predictions, same rejections, same line numbers, nothing lost or scored twice, whatever
the part size.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from onnxkit.contract import layout
from onnxkit.contract import scoring as contract
from onnxkit.datasets import bundled
from tests.support.aws import create_bucket, mocked

pytestmark = pytest.mark.xdist_group("inference")

BUCKET = "onnxkit-dev-artifacts-123456789012-eu-west-1"


@pytest.fixture(scope="module")
def cancer_model(train_artifact: Callable[..., Path]) -> Path:
    return train_artifact("breast_cancer", model="mlp")


@pytest.fixture(scope="module")
def churn_model(train_artifact: Callable[..., Path]) -> Path:
    return train_artifact("customer_churn", model="logistic_regression")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with mocked(monkeypatch):
        yield create_bucket(BUCKET)


def promote(s3: Any, model_dir: Path) -> str:
    """Upload a model version and its production pointer as Promote writes them."""
    manifest = json.loads((model_dir / layout.MANIFEST_FILE).read_text())
    name, version = manifest["model_name"], manifest["model_version"]
    prefix = layout.version_prefix(name, version)
    model_bytes = (model_dir / layout.SERVING_FILE).read_bytes()
    manifest_bytes = (model_dir / layout.MANIFEST_FILE).read_bytes()
    s3.put_object(Bucket=BUCKET, Key=prefix + layout.SERVING_FILE, Body=model_bytes)
    s3.put_object(Bucket=BUCKET, Key=prefix + layout.MANIFEST_FILE, Body=manifest_bytes)
    pointer = {
        "model_name": name,
        "model_version": version,
        "model_uri": f"s3://{BUCKET}/{prefix}{layout.SERVING_FILE}",
        "manifest_uri": f"s3://{BUCKET}/{prefix}{layout.MANIFEST_FILE}",
        "sha256": layout.sha256_bytes(model_bytes),
        "manifest_sha256": layout.sha256_bytes(manifest_bytes),
        "lambda_version": "3",
    }
    s3.put_object(Bucket=BUCKET, Key=layout.pointer_key(name), Body=json.dumps(pointer))
    return str(name)


def function(s3: Any, model_name: str, tmp_path: Path) -> Any:
    from functions.inference.scoring import Models, S3Store
    from functions.inference.scoring_app import ScoringFunction

    return ScoringFunction(BUCKET, model_name, S3Store(s3), Models(cache_dir=tmp_path / "cache"))


def run(
    handler: Any,
    input_uri: str,
    output_uri: str,
    *,
    part_bytes: int,
    per_child: int = 2,
    id_column: str | None = None,
    seed: int = 0,
    skip: frozenset[int] = frozenset(),
) -> dict[str, Any]:
    """Plan, the map's children (``skip``: parts whose child failed), Summarize."""
    request = {
        "input_uri": input_uri,
        "output_uri": output_uri,
        "id_column": id_column,
        "part_bytes": part_bytes,
    }
    plan = handler.handle({"step": "plan", "request": request})
    parts = json.loads(handler.store.read(BUCKET, plan["plan_key"]))
    batch_input = {key: plan[key] for key in ("bucket", "output_prefix", "format", "model")}
    batch_input["id_column"] = plan["id_column"]
    batches = [parts[i : i + per_child] for i in range(0, len(parts), per_child)]
    random.Random(seed).shuffle(batches)
    for batch in batches:
        items = [item for item in batch if item["part"] not in skip]
        if items:
            answer = handler.handle({"Items": items, "BatchInput": batch_input})
            assert [a["part"] for a in answer] == [item["part"] for item in items]
    return handler.handle({"step": "summarize", "plan": plan, "request": request})


def merged(s3: Any, output_prefix: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The run's records in input order with the input's row and line, and its summary."""
    summary = json.loads(
        s3.get_object(Bucket=BUCKET, Key=output_prefix + "summary.json")["Body"].read()
    )
    records = []
    for part in summary["parts"]:
        data_key, _ = contract.part_keys(output_prefix, part["part"])
        body = s3.get_object(Bucket=BUCKET, Key=data_key)["Body"].read().decode()
        for line in body.splitlines():
            record = json.loads(line)
            assert record.pop("part") == part["part"]
            record = {
                "row": part["first_row"] + record.pop("part_row"),
                "line": part["first_line"] + record.pop("part_line") - 1,
                **record,
            }
            records.append(record)
    return records, summary


def local_score(
    model_dir: Path, source: Path, tmp_path: Path, id_column: str | None = None
) -> list[dict[str, Any]]:
    from onnxkit.local import scoring

    output = tmp_path / "local.jsonl"
    scoring.score_file(
        model_ref=scoring.ModelRef(str(model_dir)),
        input_path=source,
        output=output,
        id_column=id_column,
        batch_rows=97,
        overwrite=True,
    )
    return [json.loads(line) for line in output.read_text().splitlines()]


def messy_cancer_csv(tmp_path: Path) -> Path:
    """The bundled table with blank lines, quoted cells, a short row and a bad number."""
    lines = bundled("breast_cancer").path.read_text().splitlines()
    header, rows = lines[0], lines[1:151]
    rows[3] = ",".join(f'"{cell}"' for cell in rows[3].split(","))
    rows[10] = rows[10].rsplit(",", 2)[0]  # two cells short
    cells = rows[20].split(",")
    cells[0] = "12,5x"
    rows[20] = ",".join(cells[:1]) + "," + ",".join(cells[1:])
    rows.insert(30, "")
    rows.insert(31, "")
    path = tmp_path / "cancer.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize("part_bytes", [37, 700, 4096, 1 << 24])
def test_parts_merged_equal_a_local_run_row_for_row(
    s3: Any, cancer_model: Path, tmp_path: Path, part_bytes: int
) -> None:
    source = messy_cancer_csv(tmp_path)
    s3.upload_file(str(source), BUCKET, "scoring/input/run/cancer.csv")
    handler = function(s3, promote(s3, cancer_model), tmp_path)
    done = run(
        handler,
        f"s3://{BUCKET}/scoring/input/run/cancer.csv",
        f"s3://{BUCKET}/scoring/output/run/",
        part_bytes=part_bytes,
        per_child=3,
        seed=part_bytes,
    )
    records, summary = merged(s3, "scoring/output/run/")
    expected = local_score(cancer_model, source, tmp_path)
    assert records == expected
    assert done["complete"] and summary["failed_parts"] == []
    assert summary["rows"] == len(expected) == done["rows"]
    assert summary["rejected"] == sum(1 for r in expected if r["error"]) > 0
    rejected_lines = [r["line"] for r in summary["rejected_rows"]]
    assert rejected_lines == [r["line"] for r in expected if r["error"]]
    assert summary["model"]["version"] == expected[0]["model_version"]


def test_a_prefix_of_jsonl_objects_with_an_id_column_and_categoricals(
    s3: Any, churn_model: Path, tmp_path: Path
) -> None:
    with bundled("customer_churn").path.open() as handle:
        rows = list(csv.DictReader(handle))
    rows = [{"customer": f"c{i}", **row} for i, row in enumerate(rows[:500])]
    rows[7]["tenure_months"] = "not a number"
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in rows[:300]))
    second.write_text("".join(json.dumps(r) + "\n" for r in rows[300:]) + "{broken\n")
    for path in (first, second):
        s3.upload_file(str(path), BUCKET, f"scoring/input/run/{path.name}")
    handler = function(s3, promote(s3, churn_model), tmp_path)
    run(
        handler,
        f"s3://{BUCKET}/scoring/input/run/",
        f"s3://{BUCKET}/scoring/output/run2",
        part_bytes=5000,
        id_column="customer",
    )
    records, summary = merged(s3, "scoring/output/run2/")
    both = tmp_path / "both.jsonl"
    both.write_text(first.read_text() + second.read_text())
    expected = local_score(churn_model, both, tmp_path, id_column="customer")
    # One file locally, two objects in the cloud: rows number through, lines restart per object.
    assert [r["row"] for r in records] == list(range(501))
    for cloud, local in zip(records, expected, strict=True):
        assert {k: v for k, v in cloud.items() if k != "line"} == {
            k: v for k, v in local.items() if k != "line"
        }
    assert records[-1]["error"] and records[-1]["line"] == 201
    assert summary["rejected"] == sum(1 for r in expected if r["error"]) >= 1


def test_a_child_that_failed_leaves_its_part_reported_and_a_retry_counts_once(
    s3: Any, cancer_model: Path, tmp_path: Path
) -> None:
    source = bundled("breast_cancer").path
    s3.upload_file(str(source), BUCKET, "scoring/input/r/x.csv")
    handler = function(s3, promote(s3, cancer_model), tmp_path)
    args = (handler, f"s3://{BUCKET}/scoring/input/r/x.csv", f"s3://{BUCKET}/scoring/output/r/")
    done = run(*args, part_bytes=10_000, skip=frozenset({1}))
    assert not done["complete"] and done["failed_parts"] == 1
    summary = json.loads(
        s3.get_object(Bucket=BUCKET, Key="scoring/output/r/summary.json")["Body"].read()
    )
    assert [p["part"] for p in summary["failed_parts"]] == [1]
    assert summary["parts"][1]["first_line"] is None  # unknown after a missing part
    total = len(source.read_text().splitlines()) - 1
    assert summary["rows"] < total
    # The redriven child (and every other child run twice) rewrites the same keys.
    done = run(*args, part_bytes=10_000, seed=7)
    assert done["complete"] and done["rows"] == total


@pytest.mark.parametrize(
    ("request_changes", "message"),
    [
        ({"input_uri": "s3://other-bucket/scoring/input/x.csv"}, "outside s3://"),
        ({"input_uri": f"s3://{BUCKET}/data/x.csv"}, "outside s3://"),
        ({"output_uri": f"s3://{BUCKET}/models/"}, "outside s3://"),
        ({"input_uri": f"s3://{BUCKET}/scoring/input/x.parquet"}, "name a .csv or .jsonl"),
        ({"input_uri": f"s3://{BUCKET}/scoring/input/missing.csv"}, "does not exist"),
        ({"input_uri": f"s3://{BUCKET}/scoring/input/none/"}, "no .csv or .jsonl objects"),
        ({"input_uri": f"s3://{BUCKET}/scoring/input/short.csv"}, "missing feature column"),
        ({"id_column": "nope"}, "no id column 'nope'"),
        ({"input_uri": "gs://x/y"}, "is not an s3://bucket/key uri"),
    ],
)
def test_plan_refuses_with_one_line(
    s3: Any, cancer_model: Path, tmp_path: Path, request_changes: dict[str, Any], message: str
) -> None:
    source = bundled("breast_cancer").path
    s3.upload_file(str(source), BUCKET, "scoring/input/x.csv")
    s3.put_object(Bucket=BUCKET, Key="scoring/input/short.csv", Body=b"mean radius,x\n1,2\n")
    handler = function(s3, promote(s3, cancer_model), tmp_path)
    request = {
        "input_uri": f"s3://{BUCKET}/scoring/input/x.csv",
        "output_uri": f"s3://{BUCKET}/scoring/output/r/",
    } | request_changes
    with pytest.raises(contract.ScoringError, match=message) as caught:
        handler.handle({"step": "plan", "request": request})
    assert "\n" not in str(caught.value)


def test_plan_without_a_promoted_model_says_so(s3: Any, tmp_path: Path) -> None:
    handler = function(s3, "cancer", tmp_path)
    request = {
        "input_uri": f"s3://{BUCKET}/scoring/input/x.csv",
        "output_uri": f"s3://{BUCKET}/scoring/output/r/",
    }
    with pytest.raises(contract.ScoringError, match="no cancer model has been promoted yet"):
        handler.handle({"step": "plan", "request": request})


@pytest.mark.parametrize(
    "event",
    [
        [],
        {"Items": [{"part": "x"}], "BatchInput": {}},
        {"Items": [], "BatchInput": None},
        {"step": "explode", "request": {"input_uri": "s3://b/k", "output_uri": "s3://b/o/"}},
        {"step": "plan"},
    ],
)
def test_malformed_events_are_one_line_errors(s3: Any, tmp_path: Path, event: Any) -> None:
    handler = function(s3, "cancer", tmp_path)
    with pytest.raises(contract.ScoringError) as caught:
        handler.handle(event)
    assert "\n" not in str(caught.value)


def test_the_lambda_entry_builds_the_function_from_its_environment(
    s3: Any, cancer_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib
    import sys

    name = promote(s3, cancer_model)
    monkeypatch.setenv(layout.ARTIFACT_BUCKET_ENV, BUCKET)
    monkeypatch.setenv(layout.MODEL_NAME_ENV, name)
    monkeypatch.setenv(layout.PART_BYTES_ENV, "4096")
    monkeypatch.delitem(sys.modules, "functions.inference.scoring_handler", raising=False)
    entry = importlib.import_module("functions.inference.scoring_handler")
    s3.upload_file(str(bundled("breast_cancer").path), BUCKET, "scoring/input/e/x.csv")
    request = {
        "input_uri": f"s3://{BUCKET}/scoring/input/e/x.csv",
        "output_uri": f"s3://{BUCKET}/scoring/output/e/",
    }
    planned = entry.lambda_handler({"step": "plan", "request": request}, None)
    size = bundled("breast_cancer").path.stat().st_size
    assert planned["parts"] == -(
        -(size - len(bundled("breast_cancer").path.read_bytes().split(b"\n")[0]) - 1) // 4096
    )
    assert planned["model"]["name"] == name
