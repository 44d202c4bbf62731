"""The live learning curve: same fitted model, the lines it prints, the regexes that read them."""

from __future__ import annotations

import io
import pickle
import re
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from onnxkit.contract.metrics import (
    CURVE_METRICS,
    MAX_DEFINITIONS,
    MAX_NAME_LENGTH,
    MAX_REGEX_LENGTH,
    METRIC_DEFINITIONS,
    curve_line,
    metric_line,
    parse_curve,
    parse_metric_lines,
)
from training_jobs.curve import CurveParser, CurveStream, printed_curve
from training_jobs.data import Schema
from training_jobs.estimators import EstimatorSettings, build_pipeline, fit, make_estimator

# HistGradientBoosting turns early stopping (and with it the per-iteration scores) on above
# 10,000 rows.
ROWS = 10_050


def table(rows: int, task: str) -> tuple[pd.DataFrame, np.ndarray, Schema]:
    rng = np.random.default_rng(7)
    X = pd.DataFrame(
        {
            "a": rng.normal(size=rows).astype(np.float32),
            "b": rng.normal(size=rows).astype(np.float32),
            "colour": rng.choice(["red", "green", "blue"], size=rows),
        }
    )
    signal = X["a"] - 0.5 * X["b"] + (X["colour"] == "red") + rng.normal(scale=0.5, size=rows)
    y = (signal > 0).to_numpy().astype(np.int64) if task == "classification" else signal.to_numpy()
    return X, y, Schema(["a", "b"], ["colour"], ["a", "b", "colour"], task)


CASES = [
    ("mlp", "classification", EstimatorSettings(max_iter=6, hidden_layer_sizes=(8,)), 400),
    ("mlp", "regression", EstimatorSettings(max_iter=6, hidden_layer_sizes=(8,)), 400),
    ("hist_gradient_boosting", "classification", EstimatorSettings(max_iter=6), ROWS),
    ("hist_gradient_boosting", "regression", EstimatorSettings(max_iter=6), ROWS),
    ("hist_gradient_boosting", "classification", EstimatorSettings(max_iter=6), 400),
    ("logistic_regression", "classification", EstimatorSettings(), 400),
]


def fitted(model: str, task: str, settings: EstimatorSettings, rows: int, curve: bool) -> Any:
    X, y, schema = table(rows, task)
    pipeline = build_pipeline(schema, make_estimator(task, model, settings, seed=3))
    return fit(pipeline, X, y, curve=curve), X


@pytest.mark.parametrize(("model", "task", "settings", "rows"), CASES)
def test_the_fitted_model_is_the_same_with_and_without_the_curve(
    model: str,
    task: str,
    settings: EstimatorSettings,
    rows: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plain, X = fitted(model, task, settings, rows, curve=False)
    assert "[curve]" not in capsys.readouterr().out
    watched, _ = fitted(model, task, settings, rows, curve=True)
    printed = capsys.readouterr().out
    # Byte for byte: every fitted array and parameter, verbose included (it is put back).
    assert pickle.dumps(watched) == pickle.dumps(plain)
    assert np.array_equal(watched.predict(X), plain.predict(X))
    estimator = watched.named_steps["model"]
    if model == "mlp":
        for mine, theirs in zip(estimator.coefs_, plain.named_steps["model"].coefs_, strict=True):
            assert np.array_equal(mine, theirs)
    curve = parse_curve(printed)
    if model == "mlp":
        # Every iteration's training loss and validation score, as the estimator recorded them.
        assert [i for i, _ in curve["train_loss"]] == list(range(1, estimator.n_iter_ + 1))
        assert [v for _, v in curve["train_loss"]] == pytest.approx(estimator.loss_curve_, 1e-5)
        assert [v for _, v in curve["validation_score"]] == pytest.approx(
            estimator.validation_scores_, rel=1e-5, abs=1e-6
        )
    elif model == "hist_gradient_boosting" and rows > 10_000:
        # score_ arrays hold the negative loss, with the initial prediction's first.
        assert [i for i, _ in curve["train_loss"]] == list(range(1, estimator.n_iter_ + 1))
        assert [v for _, v in curve["train_loss"]] == pytest.approx(
            -estimator.train_score_[1:], rel=1e-4
        )
        assert [v for _, v in curve["validation_loss"]] == pytest.approx(
            -estimator.validation_score_[1:], rel=1e-4
        )
    else:  # no per-iteration scores: nothing is printed for the iterations
        assert curve == {}
        assert not re.search(r"^\[[0-9]+/[0-9]+\]", printed, re.MULTILINE)


def test_a_failing_fit_leaves_stdout_and_verbose_as_they_were() -> None:
    X, y, schema = table(400, "classification")
    estimator = make_estimator("classification", "mlp", EstimatorSettings(), seed=0)
    pipeline = build_pipeline(schema, estimator)
    out = io.StringIO()
    before = sys.stdout
    with pytest.raises(ValueError), printed_curve(estimator, out):
        print("Iteration 1, loss = 0.5")
        print("half a line", end="")
        pipeline.fit(X, y[:10])  # inconsistent lengths
    assert sys.stdout is before
    assert estimator.verbose is False
    assert out.getvalue() == "[curve] 1 train_loss=0.5\nhalf a line\n"


def test_lines_written_in_pieces_are_parsed_whole_and_others_pass_through() -> None:
    out = io.StringIO()
    stream = CurveStream(out)
    # HistGradientBoosting prints "[k/n] " and the rest of the line in two calls.
    for piece in [
        "Binning 0.001 GB of training data: ",
        "0.012 s\n",
        "[3/100] ",
        "1 tree, 31 leaves, max depth = 5, train loss: 0.32911, val loss: 0.32447, in 0.039s\n",
        "[4/100] 1 tree, 31 leaves, max depth = 5, train loss: nan, val loss: inf, in 0.1s\n",
        "Iteration 12, loss = 0.04123456\nValidation score: 0.973684\n",
        "Validation score did not improve more than tol=0.000100 for 10 consecutive epochs.",
        " Stopping.\n",
    ]:
        stream.write(piece)
    assert out.getvalue().splitlines() == [
        "Binning 0.001 GB of training data: 0.012 s",
        "[curve] 3 train_loss=0.32911",
        "[curve] 3 validation_loss=0.32447",
        "[curve] 12 train_loss=0.0412346",
        "[curve] 12 validation_score=0.973684",
        "Validation score did not improve more than tol=0.000100 for 10 consecutive epochs. "
        "Stopping.",
    ]


def test_the_parser_reads_multiclass_lines_and_ignores_lookalikes() -> None:
    seen: list[tuple[int, str, float]] = []
    parser = CurveParser(lambda i, n, v: seen.append((i, n, v)))
    assert parser.feed(
        "[2/5] 3 trees, 93 leaves (31 on avg), max depth = 9, train loss: 0.79652, "
        "val loss: 0.80779, in 0.213s"
    )
    assert not parser.feed("Fit 9 trees in 0.610 s, (279 total leaves)")
    assert not parser.feed("Iteration 3, loss = ")
    assert not parser.feed("[metric] fp32:accuracy=0.9")
    assert seen == [(2, "train_loss", 0.79652), (2, "validation_loss", 0.80779)]


def test_sagemaker_limits_hold_for_every_definition() -> None:
    names = [name for name, _ in METRIC_DEFINITIONS]
    assert len(set(names)) == len(names) <= MAX_DEFINITIONS
    for name, regex in METRIC_DEFINITIONS:
        assert 1 <= len(name) <= MAX_NAME_LENGTH
        assert 1 <= len(regex) <= MAX_REGEX_LENGTH
        assert re.compile(regex).groups == 1  # SageMaker reads the first group
    assert {f"curve:{name}" for name in CURVE_METRICS} <= set(names)


def test_each_regex_matches_exactly_its_own_lines_in_a_real_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for model, task, settings, rows in CASES[:4]:
        fitted(model, task, settings, rows, curve=True)
    log = capsys.readouterr().out + "\n".join(
        [
            metric_line("int8", "accuracy", 0.953125),
            metric_line("baseline", "r2", -0.0123),
            curve_line(7, "train_loss", 1.5e-7),
            "[curve] 8 train_loss_extra=3",
            "[metric] fp32:accuracy_extra=3",
        ]
    )
    lines = log.splitlines()
    curve_lines = [line for line in lines if line.startswith("[curve] ")]
    assert len(curve_lines) > 40  # the four fits printed their iterations
    for name, regex in METRIC_DEFINITIONS:
        kind, _, metric = name.partition(":")
        if kind == "curve":
            own = [line for line in lines if re.fullmatch(rf"\[curve\] [0-9]+ {metric}=\S+", line)]
        else:
            own = [line for line in lines if line.startswith(f"[metric] {name}=")]
        matched = [line for line in lines if re.search(regex, line)]
        assert matched == own, name
    curve = parse_curve(log)
    assert curve["train_loss"][-1] == (7, 1.5e-7)
    assert parse_metric_lines(log)["curve:train_loss"] == 1.5e-7
    assert sum(len(points) for points in curve.values()) == len(curve_lines) - 1
