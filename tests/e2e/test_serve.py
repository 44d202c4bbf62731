"""``onnxkit serve`` end to end: a real subprocess on a free port, called over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.xdist_group("serve")

ONNXKIT = str(Path(sys.executable).with_name("onnxkit"))
KEY = "local-test-key"
CHURN_ROW = [25.0, 53.43, "standard", "east", 1.0, "bank", 55.0]


@dataclass
class Served:
    """A running ``onnxkit serve`` process and what it printed."""

    process: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=15)
        return code


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, ORT_DISABLE_TELEMETRY="1", NO_COLOR="1", **extra)
    env.pop("ONNXKIT_API_KEY", None)
    return env


def _start(args: list[str], env: dict[str, str] | None = None) -> Served:
    process = subprocess.Popen(
        [ONNXKIT, "serve", "--port", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env or _env(),
    )
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        if match:
            served = Served(process, match.group(1), lines)
            threading.Thread(
                target=lambda: lines.extend(iter(process.stderr.readline, "")),  # type: ignore[union-attr]
                daemon=True,
            ).start()
            return served
    process.kill()
    raise AssertionError("server did not start: " + "".join(lines))


@pytest.fixture(scope="module")
def churn_model(train_artifact: Callable[..., Path]) -> Path:
    return train_artifact("customer_churn", model="logistic_regression")


@pytest.fixture(scope="module")
def server(churn_model: Path) -> Iterator[Served]:
    served = _start(["--model", str(churn_model), "--api-key", KEY], _env(MAX_BODY_BYTES="4096"))
    yield served
    if served.process.poll() is None:
        served.process.kill()
        served.process.wait()


@pytest.fixture
def client(server: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=10) as http:
        yield http


def test_valid_and_bad_predictions_over_http(client: httpx.Client) -> None:
    response = client.post("/predict", json={"instances": [CHURN_ROW, CHURN_ROW]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["classes"] == ["no", "yes"] and len(body["predictions"]) == 2
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-amzn-requestid"]

    bad = client.post("/predict", json={"instances": [[1, 2]]})
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["problem"] == "expected 7 values, got 2"

    csv = client.post(
        "/predict",
        content=b"25,53.43,standard,east,1,bank,55\n",
        headers={"content-type": "text/csv"},
    )
    assert csv.status_code == 200 and csv.json()["predictions"] == body["predictions"][:1]


def test_explain_over_http(server: Served, client: httpx.Client) -> None:
    """``onnxkit serve`` serves /explain with /predict's key, bodies and errors."""
    response = client.post("/explain", json={"instances": [CHURN_ROW]}, params={"class": "yes"})
    assert response.status_code == 200, response.text
    (answer,) = response.json()["explanations"]
    assert answer["class"] == "yes"
    total = answer["base_value"] + sum(answer["contributions"].values())
    assert abs(total - answer["output"]) <= 1e-4
    csv = client.post(
        "/explain",
        content=b"25,53.43,standard,east,1,bank,55\n",
        headers={"content-type": "text/csv"},
        params={"class": "yes"},
    )
    assert csv.status_code == 200 and csv.json()["explanations"][0]["output"] == answer["output"]
    assert client.post("/explain", json={"instances": [[1, 2]]}).status_code == 400
    assert (
        client.post("/explain", json={"instances": [CHURN_ROW]}, params={"class": "x"}).json()[
            "error"
        ]["code"]
        == "invalid_class"
    )
    assert httpx.post(f"{server.url}/explain", json={"instances": [CHURN_ROW]}).status_code == 403


def test_routes_and_errors_over_http(client: httpx.Client) -> None:
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/model").json()["signature"]["target"] == "churned"
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")
    assert client.get("/nowhere").status_code == 404
    wrong = client.delete("/predict")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert (
        client.post("/predict", content=b"x=1", headers={"content-type": "text/plain"}).status_code
        == 415
    )
    assert client.post("/predict", content=b'{"instances": [[NaN]]}').status_code == 400
    too_big = client.post("/predict", content=b"[" + b"1," * 4000 + b"1]")
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "body_too_large"


def test_api_key_is_required(server: Served) -> None:
    assert httpx.get(f"{server.url}/health").status_code == 403
    wrong = httpx.get(f"{server.url}/health", headers={"x-api-key": "nope"})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"


def test_keep_alive_and_concurrent_clients(server: Served) -> None:
    def work() -> list[int]:
        with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}) as http:
            return [
                http.post("/predict", json={"instances": [CHURN_ROW]}).status_code
                for _ in range(20)
            ]

    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(work())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [code for batch in results for code in batch] == [200] * 80


def test_ctrl_c_stops_gracefully_with_one_log_line_per_request(churn_model: Path) -> None:
    served = _start(["--model", str(churn_model)])
    for _ in range(3):
        httpx.get(f"{served.url}/health")
    httpx.post(f"{served.url}/predict", json={"instances": [CHURN_ROW]})
    assert served.stop() == 0
    text = "".join(served.lines)
    assert len(re.findall(r"GET /health 200", text)) == 3
    assert len(re.findall(r"POST /predict 200", text)) == 1
    assert "stopping" in text and "Traceback" not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nonexistent/model"], "no model at /nonexistent/model"),
        (["--sha256", "0" * 64], "digest mismatch"),
    ],
)
def test_refusals_are_one_line_and_non_zero(
    args: list[str], message: str, churn_model: Path
) -> None:
    if args[0] == "--sha256":
        args = ["--model", str(churn_model), *args]
    result = subprocess.run(
        [ONNXKIT, "serve", "--port", "0", *args],
        check=False,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.stderr


def test_serving_context_manager(churn_model: Path) -> None:
    from onnxkit.local.gateway import serving

    with serving(str(churn_model)) as url:
        response = httpx.post(f"{url}/predict", json={"instances": [CHURN_ROW]})
        assert response.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)


def test_the_server_takes_the_function_it_serves_and_writes_no_environment(
    churn_model: Path, tmp_path: Path
) -> None:
    from onnxkit.local.gateway import create_server, load_function

    before = dict(os.environ)
    env = {"MAX_INSTANCES": "1", "TMPDIR": str(tmp_path)}
    function = load_function(str(churn_model), env=env)
    # No MODEL_URI, no POWERTOOLS_* left behind (ORT_DISABLE_TELEMETRY, which onnxruntime reads
    # only from the process's environment, is set for every test already).
    assert dict(os.environ) == before
    assert function.runtime.settings.model_uri == str(churn_model)
    assert function.runtime.settings.max_instances == 1
    assert function.runtime.locator.cache_dir == tmp_path / "onnxkit-models"
    assert function.telemetry.metrics is None  # no EMF blobs on a laptop's stdout
    server = create_server(function, port=0)
    try:
        assert server.app.handler is function.lambda_handler
        assert server.model is function.runtime.model
    finally:
        server.close()


def _npy(array: Any) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_npy_bodies_over_http(train_artifact: Callable[..., Path], client: httpx.Client) -> None:
    import numpy as np

    from onnxkit.local.gateway import proxy_event

    # A binary media type arrives base64-encoded, as from API Gateway, even when its bytes are
    # UTF-8 (a .npy file never is: its magic starts with 0x93).
    event = proxy_event(
        "POST", "/predict", [("content-type", "application/x-npy")], b"npy?", "127.0.0.1", "r"
    )
    assert event["isBase64Encoded"] is True and event["body"] == "bnB5Pw=="

    npy = {"content-type": "application/x-npy"}
    # The churn server's model has categorical features: .npy is refused with a clear 415.
    refused = client.post("/predict", content=_npy(np.zeros((1, 7))), headers=npy)
    assert refused.status_code == 415
    assert "all-numeric model" in refused.json()["error"]["message"]

    served = _start(["--model", str(train_artifact("breast_cancer", model="mlp"))])
    try:
        with httpx.Client(base_url=served.url, timeout=10) as http:
            rows = np.linspace(0.0, 2.0, 4 * 30).reshape(4, 30) * 100
            rows[1, 3] = np.nan
            expected = http.post(
                "/predict",
                json={
                    "instances": [
                        [None if np.isnan(v) else v for v in row] for row in rows.tolist()
                    ]
                },
            )
            assert expected.status_code == 200, expected.text
            for dtype in (np.float64, np.float32):
                array = rows.astype(dtype)
                response = http.post("/predict", content=_npy(array), headers=npy)
                assert response.status_code == 200, response.text
                if dtype == np.float64:  # the model reads float32: same input, same answer
                    assert response.json() == expected.json()
                assert len(response.json()["predictions"]) == 4
            rows[2, 5] = np.inf
            bad = http.post("/predict", content=_npy(rows), headers=npy)
            assert bad.status_code == 400
            assert bad.json()["error"]["details"][0]["instance"] == 2
            for garbage in (b"\x93NUMPY\x01\x00garbage", b"plain text"):
                refused = http.post("/predict", content=garbage, headers=npy)
                assert refused.status_code == 400
                error = refused.json()["error"]
                assert error["code"] == "invalid_npy"
                assert "base64" not in error["message"]  # it did arrive base64-encoded
    finally:
        assert served.stop() == 0


def test_no_emf_blobs_or_powertools_warnings_from_serve(churn_model: Path) -> None:
    # Switched-off metrics used to print an EMF blob every 100 requests, then warn.
    process = subprocess.Popen(
        [ONNXKIT, "serve", "--port", "0", "--model", str(churn_model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert process.stderr is not None and process.stdout is not None
    url = None
    while url is None:
        line = process.stderr.readline()
        assert line, "server did not start"
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        url = match.group(1) if match else None
    with httpx.Client(base_url=url, timeout=10) as http:
        for _ in range(250):
            assert http.post("/predict", json={"instances": [CHURN_ROW]}).status_code == 200
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert stdout == ""
    assert "Warning" not in stderr and "Traceback" not in stderr


HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


@pytest.mark.parametrize(
    ("dataset", "estimator", "npy_features"),
    [("customer_churn", "logistic_regression", 0), ("breast_cancer", "mlp", 30)],
)
def test_schemathesis_finds_nothing(
    train_artifact: Callable[..., Path],
    tmp_path: Path,
    dataset: str,
    estimator: str,
    npy_features: int,
) -> None:
    """Every operation of the served /openapi.json, positive and negative data, all checks."""
    served = _start(["--model", str(train_artifact(dataset, model=estimator))])
    try:
        env = _env(
            PYTHONPATH=str(HOOKS.parent),
            SCHEMATHESIS_HOOKS=HOOKS.stem,
            ONNXKIT_NPY_FEATURES=str(npy_features),
        )
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(HOOKS.with_name("schemathesis.toml")),
                "run",
                f"{served.url}/openapi.json",
                "--checks=all",
                "--mode=all",
                "--max-examples=150",
                "--workers=1",
                "--seed=1",
                "--generation-database=none",
                "--continue-on-failure",
            ],
            cwd=tmp_path,  # its report folder stays out of the repository
            capture_output=True,
            text=True,
            env=env,
            timeout=240,
            check=False,
        )
        summary = result.stdout[-3000:]
        assert result.returncode == 0, summary
        assert re.search(r"\d+ generated, \d+ passed", result.stdout), summary
    finally:
        assert served.stop() == 0
