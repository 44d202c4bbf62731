"""The compression search through the real job on bundled datasets: every estimator, the
tolerance refusals, compression=none, and the served variant behind the inference function."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from onnxkit.contract.layout import SERVING_FILE
from onnxkit.contract.manifest import Manifest, load_manifest
from onnxkit.datasets import bundled
from onnxkit.local.training import arguments
from tests.conftest import ArtifactFactory
from training_jobs import compress
from training_jobs.decision import Int8Step, Tolerance, choose_compression
from training_jobs.estimators import build_pipeline, fit, make_estimator
from training_jobs.evaluation import compute_metrics, predict_onnx
from training_jobs.export import feeds_for, quantize, session, to_onnx
from training_jobs.hyperparameters import parse_args
from training_jobs.job import Inputs, hold_out, read_inputs, training_rows

# Every estimator with its default hyperparameters (the artifacts other tests train too).
MODELS = [
    ("breast_cancer", "logistic_regression"),
    ("breast_cancer", "mlp"),
    ("breast_cancer", "random_forest"),
    ("breast_cancer", "hist_gradient_boosting"),
    ("iris", "random_forest"),
    ("diabetes", "ridge"),
    ("diabetes", "random_forest"),
]


def _inputs(dataset: str, model: str, tmp_path: Path) -> tuple[Inputs, list[str]]:
    """The job's own reading and split of a bundled dataset (the rows it held out)."""
    data = bundled(dataset)
    argv = arguments(
        {"target": data.target, "model": model, "train": str(data.path),
         "model-dir": str(tmp_path)}
    )  # fmt: skip
    return read_inputs(parse_args(argv)), argv


def _served_metrics(model_dir: Path, inputs: Inputs, manifest: Manifest) -> dict[str, float]:
    """The metrics of the served file, recomputed from its answers on the held-out rows."""
    prediction = predict_onnx(
        session(model_dir / SERVING_FILE), feeds_for(inputs.X_valid, inputs.schema), manifest.task
    )
    return compute_metrics(
        manifest.task,
        inputs.y_valid,
        prediction.labels,
        prediction.probabilities,
        manifest.classes or [],
    )


@pytest.mark.parametrize(("dataset", "model"), MODELS)
def test_every_estimator_serves_a_variant_within_tolerance_and_records_every_try(
    train_artifact: ArtifactFactory, dataset: str, model: str, tmp_path: Path
) -> None:
    model_dir = train_artifact(dataset, model=model)
    manifest = load_manifest(model_dir)
    compression = manifest.compression
    assert compression is not None and compression.optimize_for == "size"
    assert manifest.hyperparameters["compression"] == "auto"
    variants = {v.name: v for v in compression.variants}
    assert compression.variants[0].name == "original"
    assert len(variants) <= compress.MAX_CANDIDATES + 2  # the candidates, original, ml5
    chosen = variants[compression.chosen]
    assert chosen.chosen and chosen.reason == "chosen"
    # The chosen variant is the served file, and no larger than the fitted model's.
    assert chosen.size_bytes == manifest.serving.size_bytes
    assert chosen.size_bytes <= variants["original"].size_bytes
    tolerance = manifest.quantization.tolerance
    primary = manifest.primary_metric
    reference = manifest.variants["sklearn"].metrics[primary]
    for variant in compression.variants:
        assert variant.row_independence is not None and variant.load_ms > 0
        assert variant.batch_rows == 1000
        if variant.chosen:
            continue
        within = variant.reason.startswith("within tolerance, but ")
        assert within or any(
            word in variant.reason
            for word in ("label agreement", "drift", "drops by", "re-encoding changed")
        ), variant.reason
        if within:  # then it is larger than the chosen one
            assert variant.size_bytes >= chosen.size_bytes
    if chosen.name != "original":
        assert reference - chosen.metrics[primary] <= tolerance["max_metric_drop"]
        if manifest.task == "classification":
            assert (chosen.parity.label_agreement or 0) >= tolerance["min_label_agreement"]
            assert chosen.parity.max_abs_diff <= tolerance["max_probability_drift"]
    if model in ("logistic_regression", "ridge"):
        assert list(variants) == ["original"]
        assert compression.reason == compress.LINEAR_REASON
    # The served file's answers give the metrics the manifest records for it.
    inputs, _ = _inputs(dataset, model, tmp_path)
    served = _served_metrics(model_dir, inputs, manifest)
    for name, value in served.items():
        assert manifest.serving_metrics[name] == pytest.approx(value, abs=1e-9), name
        assert chosen.metrics[name] == pytest.approx(value, abs=1e-9), name


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris"])
def test_the_forest_serves_the_re_encoded_ensemble(
    train_artifact: ArtifactFactory, dataset: str
) -> None:
    """Binary, and 3 classes with string labels (each pure leaf keeps its one vote)."""
    model_dir = train_artifact(dataset, model="random_forest")
    manifest = load_manifest(model_dir)
    assert manifest.compression is not None
    assert manifest.compression.chosen.endswith("ml5")
    graph = onnx.load(model_dir / SERVING_FILE)
    assert "TreeEnsemble" in {node.op_type for node in graph.graph.node}
    # Default tolerance: the lossy variants of this small forest drift too far, so what
    # serves is the lossless re-encoding, shared leaves and a packed file: about a sixth of
    # the original file (a third before the leaves were shared).
    original = manifest.compression.variants[0]
    assert manifest.serving.size_bytes < 0.25 * original.size_bytes


def test_variants_outside_tolerance_are_recorded_and_not_chosen(
    train_artifact: ArtifactFactory,
) -> None:
    # No label may change and probabilities may barely move: every pruned MLP is refused,
    # and so is its int8 graph, so the fitted fp32 model serves as it is.
    model_dir = train_artifact(
        "breast_cancer", model="mlp", hidden_layer_sizes="128,128", max_probability_drift=0.001
    )
    manifest = load_manifest(model_dir)
    compression = manifest.compression
    assert compression is not None
    assert compression.chosen == "original"
    assert compression.reason == "no smaller variant stayed within tolerance"
    refused = [v for v in compression.variants if not v.chosen]
    assert refused and all("probabilities drift by up to" in v.reason for v in refused)
    # Each series stops at its first refusal: one variant of each measured, not eight.
    assert [v.name for v in refused] == ["last-0.5", "units-0.75", "rank-0.25"]
    assert manifest.serving.variant == "fp32"


def test_optimize_for_latency_serves_a_faster_variant_or_the_original(
    train_artifact: ArtifactFactory,
) -> None:
    manifest = load_manifest(
        train_artifact("diabetes", model="random_forest", optimize_for="latency", latency_runs=40)
    )
    compression = manifest.compression
    assert compression is not None and compression.optimize_for == "latency"
    variants = {v.name: v for v in compression.variants}
    chosen, original = variants[compression.chosen], variants["original"]
    assert chosen.batch_latency_us is not None and original.batch_latency_us is not None
    if chosen is not original:
        assert chosen.batch_latency_us <= 0.9 * original.batch_latency_us
        assert compression.reason.startswith("fastest within tolerance")
    # Unmeasured latency (latency_runs=0) cannot pick a faster variant.
    unmeasured = load_manifest(
        train_artifact("diabetes", model="random_forest", optimize_for="latency")
    )
    assert unmeasured.compression is not None
    assert unmeasured.compression.chosen == "original"


def _normalized(graph: onnx.ModelProto) -> bytes:
    # skl2onnx names every graph with a fresh uuid: the only byte that differs run to run.
    graph.graph.name = "graph"
    return graph.SerializeToString()


@pytest.mark.parametrize("model", ["random_forest", "mlp"])
def test_compression_none_serves_the_fitted_model_as_before(
    train_artifact: ArtifactFactory, model: str, tmp_path: Path
) -> None:
    model_dir = train_artifact("breast_cancer", model=model, compression="none")
    manifest = load_manifest(model_dir)
    assert manifest.compression is None
    assert manifest.hyperparameters["compression"] == "none"
    # The job before compression: fit, convert, and (MLP) weight-only int8 of that graph.
    inputs, argv = _inputs("breast_cancer", model, tmp_path)
    hp = parse_args(argv)
    estimator = make_estimator(inputs.schema.task, hp.model, hp.estimator, hp.seed)
    pipeline = fit(build_pipeline(inputs.schema, estimator), inputs.X_train, inputs.y_train)
    fp32 = tmp_path / "fp32.onnx"
    onnx.save(to_onnx(pipeline, inputs.schema, inputs.schema.task), fp32)
    expected = fp32
    if model == "mlp":
        expected = tmp_path / "int8.onnx"
        quantize(fp32, expected, "weight")
        assert manifest.serving.variant == "int8"
    served = onnx.load(model_dir / SERVING_FILE)
    assert _normalized(served) == _normalized(onnx.load(expected))


def test_the_inference_function_serves_every_chosen_variant_without_scikit_learn(
    train_artifact: ArtifactFactory,
) -> None:
    cases = [
        (train_artifact(dataset, model=model), dataset)
        for dataset, model in MODELS
        if model not in ("logistic_regression", "ridge")
    ]
    cases.append((train_artifact("breast_cancer", model="mlp", hidden_layer_sizes="256,256"), ""))
    script = textwrap.dedent(
        """
        import json, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("sklearn", "skl2onnx", "pandas"):
                    raise ImportError(f"{name} is not in the inference bundle")
        sys.meta_path.insert(0, Block())
        from functions.inference.app import InferenceFunction
        from functions.inference.runtime import Settings
        from tests.support.inference import call, event_with
        out = []
        for model_dir, rows in json.loads(sys.stdin.read()):
            function = InferenceFunction(Settings(model_uri=model_dir))
            body = json.dumps({"instances": rows})
            status, _, answer = call(function, event_with(body=body))
            out.append([status, answer])
        print("ANSWERS " + json.dumps(out))  # the handler logs to stdout too
        """
    )
    requests, expected = [], []
    for model_dir, dataset in cases:
        manifest = load_manifest(model_dir)
        data = bundled(dataset or "breast_cancer")
        frame = pd.read_csv(data.path).head(5)
        features = manifest.signature.features
        requests.append(
            [str(model_dir), frame[manifest.signature.feature_names].to_dict("records")]
        )
        feeds = {f.onnx_input: frame[[f.name]].to_numpy(np.float32) for f in features}
        expected.append(session(model_dir / SERVING_FILE).run(None, feeds)[0].ravel().tolist())
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("ANSWERS "))
    answers = json.loads(line.removeprefix("ANSWERS "))
    assert len(answers) == len(cases) == 6
    for (status, answer), labels in zip(answers, expected, strict=True):
        assert status == 200, answer
        numeric = not isinstance(labels[0], str)  # iris answers its species by name
        assert answer["predictions"] == (pytest.approx(labels, rel=1e-6) if numeric else labels)


@pytest.mark.parametrize("drift", [0.001, 1.0])
def test_every_variant_goes_through_the_int8_step_and_records_what_would_serve(
    tmp_path: Path, drift: float
) -> None:
    """A pruned variant is quantized whether or not its fp32 graph is within tolerance (its
    int8 graph may be), and its record holds the metrics of the file that would serve it:
    the int8 graph the step chose, else the fp32 one."""
    inputs, argv = _inputs("breast_cancer", "mlp", tmp_path)
    hp = parse_args(argv)
    schema = inputs.schema
    estimator = make_estimator(schema.task, "mlp", hp.estimator, hp.seed, rows=len(inputs.X_train))
    pipeline = fit(build_pipeline(schema, estimator), inputs.X_train, inputs.y_train)
    rows = training_rows(hp, inputs)
    held_out = hold_out(pipeline, inputs, rows.extreme)
    fp32_path = tmp_path / "search" / "model.fp32.onnx"
    fp32_path.parent.mkdir()
    onnx.save(to_onnx(pipeline, schema, schema.task), fp32_path)
    # Labels may all change and the metric may drop: only the drift decides.
    step = Int8Step("weight", Tolerance(0.0, 1.0, drift), None, 0)
    choice = choose_compression(
        pipeline, fp32_path, held_out, schema, rows.activations, step, "size"
    )
    pruned = [v for v in choice.record.variants if v.name != "original"]
    assert pruned
    for variant in pruned:
        folder = fp32_path.parent / variant.name
        int8_file = folder / "model.int8-weight.onnx"
        assert int8_file.exists(), variant.name  # quantized either way
        if drift < 0.01:  # every pruned MLP moves some probability by more than 0.001
            assert "probabilities drift" in variant.reason
            served = folder / fp32_path.name
        else:
            assert "then weight int8" in variant.description
            served = int8_file
        prediction = predict_onnx(session(served), held_out.feeds, schema.task)
        assert variant.metrics == held_out.metrics(prediction), variant.name
        assert variant.size_bytes == served.stat().st_size
