"""``onnxkit predict`` against the fake inference API (and moto for --env discovery)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, deploy_stack
from tests.support.cli import invoke
from tests.support.fake_api import score

BAD = {3, 17}


def write_rows(path: Path, n: int, bad: set[int] = frozenset()) -> list[dict[str, str]]:  # type: ignore[assignment]
    rows = [
        {
            "x": "abc" if i in bad else str(i % 7 - 3),
            "colour": ["red", "blue", ""][i % 3],
            "y": "yes",
        }
        for i in range(n)
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["x", "colour", "y"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def predict(runner: Any, **options: Any) -> Any:
    """``onnxkit predict`` with ``--<option> value`` per keyword (``True``: a bare flag)."""
    args: list[Any] = ["predict"]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        args += [flag] if value is True else [flag, value]
    return invoke(runner, *args)


def read_output(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def expected_record(i: int, row: dict[str, str]) -> dict[str, str]:
    label, probas = score({"x": float(row["x"])})
    return {
        "row": str(i),
        "prediction": label,
        "proba_no": str(probas[0]),
        "proba_yes": str(probas[1]),
        "model_version": "v1",
        "error": "",
    }


def test_scores_good_rows_and_reports_rejected_ones(tmp_path, runner, fake_api):
    api, url = fake_api
    rows = write_rows(tmp_path / "rows.csv", 25, BAD)
    out = tmp_path / "preds.csv"
    result = predict(runner, url=url, input=tmp_path / "rows.csv", output=out, batch_size=10)
    assert result.exit_code == 2, result.output
    records = read_output(out)
    assert [r["row"] for r in records] == [str(i) for i in range(25)]
    for i, record in enumerate(records):
        if i in BAD:
            # Read with the contract's rule, as the API reads it: rejected with its line.
            assert record["error"] == f"line {i + 2}: x: expected a number, got 'abc'"
            assert record["prediction"] == ""
        else:
            assert record == expected_record(i, rows[i])
    # Good rows of a batch with a bad row were scored once, not lost and not duplicated.
    assert len(api.scored_rows) == 23
    # The target column is not sent: only the model's signature is.
    assert all(set(inst) == {"x", "colour"} for inst in api.scored_rows)
    assert api.scored_rows[2]["colour"] is None  # empty cell -> missing
    assert "rows in 25 = 23 scored + 2 rejected" in result.stderr
    assert "x: expected a number, got 'abc'" in result.stderr


def test_retries_429_and_5xx_then_succeeds(tmp_path, runner, fake_api):
    api, url = fake_api
    api.script.extend([429, 503, 502])
    write_rows(tmp_path / "rows.csv", 12)
    out = tmp_path / "preds.csv"
    result = predict(runner, url=url, input=tmp_path / "rows.csv", output=out, batch_size=5)
    assert result.exit_code == 0, result.output
    assert len(read_output(out)) == 12
    assert api.predict_calls == 3 + 3
    assert "3 retries" in result.stderr
    assert "retrying" in result.stderr and "HTTP 429" in result.stderr


def test_gives_up_after_attempts_with_one_line(tmp_path, runner, fake_api):
    api, url = fake_api
    api.script.extend([503] * 3)
    write_rows(tmp_path / "rows.csv", 3)
    result = predict(runner, url=url, input=tmp_path / "rows.csv", attempts=3)
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: gave up after 3 attempts: HTTP 503")
    assert "Traceback" not in result.output
    assert api.predict_calls == 3


def test_connection_errors_are_retried_then_reported(tmp_path, runner):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "rows.csv").write_text("x\n1\n")
    result = predict(
        runner, url=f"http://127.0.0.1:{port}/", input=tmp_path / "rows.csv", attempts=3
    )
    assert result.exit_code == 1
    assert result.stderr.count("retrying") == 2
    assert "gave up after 3 attempts: cannot reach" in result.stderr.splitlines()[-1]


def test_interrupted_run_resumes_without_rescoring(tmp_path, runner, fake_api):
    api, url = fake_api
    rows = write_rows(tmp_path / "rows.csv", 45)
    out = tmp_path / "preds.csv"
    api.fail_after_rows = 20  # the API goes down after two batches of ten
    args = [
        "predict",
        "--url",
        url,
        "--input",
        tmp_path / "rows.csv",
        "--output",
        out,
        "--batch-size",
        10,
        "--attempts",
        2,
    ]
    first = invoke(runner, *args)
    assert first.exit_code == 1
    assert len(read_output(out)) == 20
    # A kill in the middle of a write leaves a torn line; the resume must drop it.
    with out.open("a") as handle:
        handle.write("20,ye")
    api.fail_after_rows = None
    api.scored_rows.clear()
    second = invoke(runner, *args)
    assert second.exit_code == 0, second.output
    assert "resuming after 20" in second.stderr
    records = read_output(out)
    assert records == [expected_record(i, row) for i, row in enumerate(rows)]
    # Only the rows after the ones already written were sent again.
    assert [inst["x"] for inst in api.scored_rows] == [float(r["x"]) for r in rows[20:]]


def test_resume_refuses_a_foreign_output(tmp_path, runner, fake_api):
    _, url = fake_api
    write_rows(tmp_path / "rows.csv", 5)
    out = tmp_path / "preds.csv"
    out.write_text("id,score\n1,0.5\n")
    result = predict(runner, url=url, input=tmp_path / "rows.csv", output=out)
    assert result.exit_code == 1
    assert "--overwrite" in result.stderr
    assert (
        predict(runner, url=url, input=tmp_path / "rows.csv", output=out, overwrite=True).exit_code
        == 0
    )
    assert len(read_output(out)) == 5


def test_413_halves_the_batch(tmp_path, runner, fake_api):
    api, url = fake_api
    api.max_instances = 4
    write_rows(tmp_path / "rows.csv", 10)
    out = tmp_path / "preds.csv"
    result = predict(runner, url=url, input=tmp_path / "rows.csv", output=out, batch_size=10)
    assert result.exit_code == 0, result.output
    assert len(api.scored_rows) == 10 and len(read_output(out)) == 10


def test_jsonl_in_and_out_with_unreadable_line(tmp_path, runner, fake_api):
    api, url = fake_api
    lines = [
        json.dumps({"x": 1, "colour": "red", "id": 7}),
        "{not json",
        "",
        json.dumps({"x": -2, "colour": "blue"}),
        json.dumps({"x": "abc", "colour": "blue"}),  # the API names it: isolated, not retried
        '{"x": NaN, "colour": "red"}',
        '{"x": 1e400, "colour": "red"}',
    ]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "preds.jsonl"
    result = predict(runner, url=url, input=tmp_path / "rows.jsonl", output=out)
    assert result.exit_code == 2, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["row"] for r in records] == [0, 1, 2, 3, 4, 5]
    assert records[0]["prediction"] == "yes" and records[0]["probabilities"]["yes"] == 0.9
    assert records[1]["error"].startswith("line 2: not valid JSON (")
    assert records[2]["prediction"] == "no"
    assert records[3]["error"] == "line 5: x: expected a number"
    assert records[4]["error"].startswith("line 6: not valid JSON (")
    assert (
        records[5]["error"] == "line 7: not valid JSON (number is infinity when parsed as double)"
    )
    assert api.scored_rows == [{"x": 1, "colour": "red"}, {"x": -2, "colour": "blue"}]
    assert "rows in 6 = 2 scored + 4 rejected" in result.stderr


def test_env_signs_with_sigv4_verified_by_the_server(tmp_path, runner, fake_api, moto):
    api, url = fake_api
    api.secret = SECRET_ACCESS_KEY
    deploy_stack(
        "OnnxKit-dev-Serving",
        {"ApiUrl": url, "AuthMode": "iam", "FunctionName": "f", "LiveAliasArn": "arn"},
    )
    write_rows(tmp_path / "rows.csv", 7)
    out = tmp_path / "preds.csv"
    result = predict(runner, env="dev", input=tmp_path / "rows.csv", output=out, batch_size=3)
    assert result.exit_code == 0, result.output
    assert api.auth_failures == []
    assert api.regions == [REGION] * 4  # GET model + three batches, all signed
    assert len(read_output(out)) == 7


@pytest.mark.parametrize(
    ("kind", "service"),
    [("rest", "execute-api"), ("http", "execute-api"), ("function_url", "lambda")],
)
def test_each_front_door_is_signed_for_its_service(tmp_path, runner, fake_api, moto, kind, service):
    """The stack's ApiKind picks the SigV4 service; the server checks scope and signature
    (its own SigV4 computation, and botocore's from the same fake credentials)."""
    api, url = fake_api
    api.secret, api.service, api.region, api.access_key = (
        SECRET_ACCESS_KEY, service, REGION, ACCESS_KEY_ID
    )  # fmt: skip
    deploy_stack("OnnxKit-dev-Serving", {"ApiUrl": url, "AuthMode": "iam", "ApiKind": kind})
    write_rows(tmp_path / "rows.csv", 5)
    out = tmp_path / "preds.csv"
    result = predict(runner, env="dev", input=tmp_path / "rows.csv", output=out, batch_size=2)
    assert result.exit_code == 0, result.output
    assert api.auth_failures == []
    assert api.services == [service] * 4 and api.regions == [REGION] * 4  # GET model + 3 POSTs
    assert len(read_output(out)) == 5


@pytest.mark.parametrize(
    ("kind", "expected", "region", "problem"),
    [
        ("rest", "lambda", REGION, "service execute-api, expected lambda"),
        ("function_url", "execute-api", REGION, "service lambda, expected execute-api"),
        ("function_url", "lambda", "us-east-2", f"region {REGION}, expected us-east-2"),
    ],
)
def test_a_signature_for_another_service_or_region_is_refused(
    tmp_path, runner, fake_api, moto, kind, expected, region, problem
):
    api, url = fake_api
    api.secret, api.service, api.region = SECRET_ACCESS_KEY, expected, region
    deploy_stack("OnnxKit-dev-Serving", {"ApiUrl": url, "AuthMode": "iam", "ApiKind": kind})
    write_rows(tmp_path / "rows.csv", 2)
    result = predict(runner, env="dev", input=tmp_path / "rows.csv")
    assert result.exit_code == 1
    assert len(api.auth_failures) == 1 and api.auth_failures[0].endswith(problem)
    assert result.stderr.strip().splitlines()[-1].startswith("error: HTTP 403")


def test_a_stack_without_api_kind_is_a_rest_api(tmp_path, runner, fake_api, moto):
    """Stacks deployed before the ApiKind output keep signing for execute-api."""
    api, url = fake_api
    api.secret, api.service, api.access_key = SECRET_ACCESS_KEY, "execute-api", ACCESS_KEY_ID
    deploy_stack("OnnxKit-dev-Serving", {"ApiUrl": url, "AuthMode": "iam"})
    write_rows(tmp_path / "rows.csv", 1)
    result = predict(runner, env="dev", input=tmp_path / "rows.csv")
    assert result.exit_code == 0, result.output
    assert api.services == ["execute-api"] * 2 and api.auth_failures == []


def test_bad_signature_is_a_clean_403(tmp_path, runner, fake_api, monkeypatch):
    api, url = fake_api
    api.secret = "the-real-secret"
    write_rows(tmp_path / "rows.csv", 2)
    result = predict(runner, url=url, auth="iam", region=REGION, input=tmp_path / "rows.csv")
    assert result.exit_code == 1
    assert api.auth_failures == ["signature mismatch"]
    assert result.stderr.strip().splitlines()[-1].startswith("error: HTTP 403")


def test_api_key_header(tmp_path, runner, fake_api, moto):
    api, url = fake_api
    api.api_key = "k-123"
    write_rows(tmp_path / "rows.csv", 3)
    ok = predict(runner, url=url, api_key="k-123", input=tmp_path / "rows.csv")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines()[0] == "row,prediction,proba_no,proba_yes,model_version,error"
    assert len(ok.stdout.splitlines()) == 4
    deploy_stack("OnnxKit-dev-Serving", {"ApiUrl": url, "AuthMode": "api_key"})
    missing = predict(runner, env="dev", input=tmp_path / "rows.csv")
    assert missing.exit_code == 1
    assert "--api-key" in missing.stderr


MISSING_STACK = (
    f"error: stack OnnxKit-dev-Serving not found in region {REGION}: deploy it with `cdk "
    "deploy` or select the region it lives in (AWS_REGION / --region)"
)


@pytest.mark.parametrize(
    "fixtures, unset, expected, whole",
    [
        # (fixtures, environment variable removed, the one line, whether it is the whole line)
        (["moto"], None, MISSING_STACK, True),
        (["moto", "no_credentials"], None, "error: no AWS credentials found", False),
        ([], "AWS_REGION", "error: no AWS region configured", False),
    ],
    ids=["missing stack", "missing credentials", "missing region"],
)
def test_a_kit_that_cannot_be_found_is_one_line(
    request, tmp_path, runner, monkeypatch, fixtures, unset, expected, whole
):
    for name in fixtures:
        request.getfixturevalue(name)
    if unset:
        monkeypatch.delenv(unset)
    write_rows(tmp_path / "rows.csv", 1)
    result = predict(runner, env="dev", input=tmp_path / "rows.csv")
    assert result.exit_code == 1
    if whole:
        assert result.stderr.strip() == expected
    else:
        assert result.stderr.strip().startswith(expected)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-size", "1001"], "--batch-size must be between 1 and 1000"),
        (["--env", "dev"], "exactly one of --env or --url"),
        (["--input", "nope.csv"], "not found"),
    ],
)
def test_bad_options_are_one_line(tmp_path, runner, fake_api, args, message):
    _, url = fake_api
    write_rows(tmp_path / "rows.csv", 1)
    base = ["predict", "--url", url, "--input", tmp_path / "rows.csv"]
    result = invoke(runner, *base, *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_ctrl_c_mid_file_keeps_written_batches_and_resumes(tmp_path, runner, fake_api, monkeypatch):
    from onnxkit.cloud import scoring

    api, url = fake_api
    rows = write_rows(tmp_path / "rows.csv", 45)
    out = tmp_path / "preds.csv"
    real = scoring.score_batch
    calls = []

    def interrupted_on_third(client, batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
        return real(client, batch)

    monkeypatch.setattr(scoring, "score_batch", interrupted_on_third)
    args = [
        "predict",
        "--url",
        url,
        "--input",
        tmp_path / "rows.csv",
        "--output",
        out,
        "--batch-size",
        10,
    ]
    first = invoke(runner, *args)
    assert first.exit_code == 130
    assert "interrupted: 20 of 45 rows are in" in first.stderr
    assert len(read_output(out)) == 20
    monkeypatch.setattr(scoring, "score_batch", real)
    second = invoke(runner, *args)
    assert second.exit_code == 0, second.output
    assert read_output(out) == [expected_record(i, row) for i, row in enumerate(rows)]
    assert len(api.scored_rows) == 45  # 20 before the interruption + 25 after, none twice


def test_binary_input_and_bom_csv(tmp_path, runner, fake_api):
    api, url = fake_api
    (tmp_path / "rows.csv").write_bytes(b"x,colour\n\xff\xfe\x00bad\n")
    result = predict(runner, url=url, input=tmp_path / "rows.csv")
    assert result.exit_code == 1
    assert "not a readable UTF-8 csv file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "bom.csv").write_bytes("\ufeffx,colour\n1,red\n".encode())
    result = predict(runner, url=url, input=tmp_path / "bom.csv")
    assert result.exit_code == 0, result.output
    assert api.scored_rows == [{"x": 1.0, "colour": "red"}]


def test_output_problems_are_one_line_and_foreign_files_untouched(tmp_path, runner, fake_api):
    _, url = fake_api
    write_rows(tmp_path / "rows.csv", 2)
    missing_dir = predict(
        runner, url=url, input=tmp_path / "rows.csv", output=tmp_path / "nope" / "preds.csv"
    )
    assert missing_dir.exit_code == 1 and "cannot write" in missing_dir.stderr
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text('{"a": 1}\n{"half')
    result = predict(runner, url=url, input=tmp_path / "rows.csv", output=foreign)
    assert result.exit_code == 1 and "not a prefix of this input" in result.stderr
    assert foreign.read_text() == '{"a": 1}\n{"half'  # not truncated: it is not ours


def test_sigv4_with_temporary_credentials_signs_the_session_token(
    tmp_path, runner, fake_api, monkeypatch
):
    api, url = fake_api
    api.secret = SECRET_ACCESS_KEY
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-from-sso")
    seen: list[tuple[str, bool]] = []
    real_check = api.check_auth

    def check(handler, body):
        headers = {k.lower(): v for k, v in handler.headers.items()}
        signed = "x-amz-security-token" in headers.get("authorization", "")
        seen.append((headers.get("x-amz-security-token", ""), signed))
        return real_check(handler, body)

    api.check_auth = check  # type: ignore[method-assign]
    write_rows(tmp_path / "rows.csv", 3)
    result = predict(runner, url=url, auth="iam", region=REGION, input=tmp_path / "rows.csv")
    assert result.exit_code == 0, result.output
    # Sent and covered by the signature, on GET /model and the one POST /predict.
    assert api.auth_failures == [] and seen == [("token-from-sso", True)] * 2


# --- every row accounted for (issue 10) ------------------------------------------------------
@pytest.fixture
def imputing_api(fake_api, monkeypatch):
    """The fake API, imputing a missing x as 0 as the real one imputes it; ``received`` are
    the instances as the CLI sent them."""
    api, url = fake_api
    real_predict, received = api.predict, []

    def predict(body):
        instances = json.loads(body)["instances"]
        received.extend(instances)
        imputed = [{**i, "x": 0 if i.get("x", 1) is None else i.get("x")} for i in instances]
        return real_predict(json.dumps({"instances": imputed}).encode())

    monkeypatch.setattr(api, "predict", predict)
    return api, url, received


def test_every_row_is_scored_or_rejected_with_its_line(tmp_path, runner, imputing_api):
    _, url, received = imputing_api
    lines = [
        "x,colour,y",
        "1,red,yes",  # row 0, line 2
        "nan,NA,no",  # a missing token in both columns: sent as null, scored
        "inf,red,no",  # not a number the API takes
        "1e400,red,no",  # beyond double range
        "1_000,red,no",  # float() would take it; the API does not
        "2,blue",  # short
        "",  # blank: not a row
        "3,red,yes,extra",  # long
        '"4","multi',
        'line",yes',  # a quoted newline: one row, starting at line 10
        "١٢,red,no",  # Arabic-Indic digits
        "1e39,red,no",  # beyond float32
        "-5,,no",
    ]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "preds.csv"
    result = predict(runner, url=url, input=tmp_path / "rows.csv", output=out)
    assert result.exit_code == 2, result.output
    errors = {int(r["row"]): r["error"] for r in read_output(out)}
    assert list(errors) == list(range(11))
    assert errors == {
        0: "",
        1: "",
        2: "line 4: x: expected a number, got 'inf'",
        3: "line 5: x: number must be finite",
        4: "line 6: x: expected a number, got '1_000'",
        5: "line 7: expected 3 fields (the header's), got 2",
        6: "line 9: expected 3 fields (the header's), got 4",
        7: "",
        8: "line 12: x: expected a number, got '١٢'",
        9: "line 13: x: number out of range (|x| <= 3.403e+38)",
        10: "",
    }
    assert received == [
        {"x": 1.0, "colour": "red"},
        {"x": None, "colour": None},
        {"x": 4.0, "colour": "multi\nline"},
        {"x": -5.0, "colour": None},
    ]
    assert "rows in 11 = 4 scored + 7 rejected" in result.stderr
    assert "│ 5   │ 7    │ expected 3 fields" in result.stderr  # row, line, reason


def test_unterminated_quote_stops_at_its_line_and_keeps_the_rows_before(tmp_path, runner, fake_api):
    api, url = fake_api
    rows = write_rows(tmp_path / "rows.csv", 21)
    lines = (tmp_path / "rows.csv").read_text().splitlines()
    broken = list(lines)
    broken[11] = broken[11].replace(",", ',"', 1)  # data row 11 (line 12): a quote never closed
    (tmp_path / "rows.csv").write_text("\n".join(broken) + "\n")
    out = tmp_path / "preds.csv"
    args = ["predict", "--url", url, "--input", tmp_path / "rows.csv", "--output", out]
    first = invoke(runner, *args, "--batch-size", 4)
    assert first.exit_code == 1, first.output
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'rows.csv'} line 12: a quoted field opened here")
    assert "the 10 rows before it are in" in last
    assert "Traceback" not in first.output
    assert "rows in 10 = 10 scored + 0 rejected" in first.stderr
    assert read_output(out) == [expected_record(i, row) for i, row in enumerate(rows[:10])]
    assert len(api.scored_rows) == 10  # the partial last batch (rows 8, 9) was sent and kept
    # Fixed, the same command resumes after the rows already written.
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    second = invoke(runner, *args)
    assert second.exit_code == 0, second.output
    assert "rows in 11 = 11 scored + 0 rejected" in second.stderr
    assert read_output(out) == [expected_record(i, row) for i, row in enumerate(rows)]


def test_cells_follow_the_served_models_missing_tokens(tmp_path):
    from onnxkit.cli.predict import _missing_values
    from onnxkit.cloud import scoring

    (tmp_path / "rows.csv").write_text("x,colour\nNA,NA\n1,N/A\n")
    signature = {"x": "numeric", "colour": "categorical"}
    default = list(scoring.read_rows(tmp_path / "rows.csv", signature, None))
    assert default == [
        (0, 2, {"x": None, "colour": None}),
        (1, 3, {"x": 1.0, "colour": None}),
    ]
    none = list(scoring.read_rows(tmp_path / "rows.csv", signature, []))
    assert none == [
        (0, 2, scoring.Rejected("x: expected a number, got 'NA'")),
        (1, 3, {"x": 1.0, "colour": "N/A"}),
    ]
    assert _missing_values({"signature": {"missing_values": []}}) == []
    assert _missing_values({"signature": {"missing_values": ["?"]}}) == ["?"]
    assert _missing_values({"signature": {}}) is None  # a model from before 1.1


@pytest.mark.xdist_group("trained-churn")
def test_tokens_score_exactly_as_missing_cells_through_onnxkit_serve(
    tmp_path, runner, train_artifact
):
    from onnxkit.contract.values import DEFAULT_MISSING_TOKENS
    from onnxkit.datasets import bundled
    from onnxkit.local.gateway import serving

    model_dir = train_artifact("customer_churn", model="logistic_regression")
    with bundled("customer_churn").path.open(newline="") as handle:
        source = list(csv.DictReader(handle))[:20]
    rows = []
    for i, token in enumerate(DEFAULT_MISSING_TOKENS):
        row = dict(source[i])
        for column in ("monthly_charges", "plan", "age"):  # numeric and categorical
            rows.append({**row, column: ""})
            rows.append({**row, column: token})
    data = tmp_path / "rows.csv"
    with data.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    jsonl = tmp_path / "rows.jsonl"
    text_columns = {"plan", "region", "payment_method", "churned"}

    def as_json(column: str, cell: str) -> object:
        # The same row as JSON: null for an empty cell, the token as a string, else a number.
        if cell == "":
            return None
        return cell if column in text_columns or cell in DEFAULT_MISSING_TOKENS else float(cell)

    jsonl.write_text(
        "".join(json.dumps({k: as_json(k, v) for k, v in row.items()}) + "\n" for row in rows)
    )
    outputs = {}
    with serving(str(model_dir)) as url:
        for name, path in (("csv", data), ("jsonl", jsonl)):
            out = tmp_path / f"preds-{name}.csv"
            result = predict(runner, url=url, input=path, output=out)
            assert result.exit_code == 0, result.output
            assert f"rows in {len(rows)} = {len(rows)} scored + 0 rejected" in result.stderr
            outputs[name] = read_output(out)
    for records in outputs.values():
        for empty, token in zip(records[::2], records[1::2], strict=True):
            assert {k: v for k, v in empty.items() if k != "row"} == {
                k: v for k, v in token.items() if k != "row"
            }
    assert outputs["csv"] == outputs["jsonl"]
