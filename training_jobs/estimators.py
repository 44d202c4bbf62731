"""The estimators the job offers, the settings each takes, and the Pipeline around them.

The Pipeline holds imputation, scaling and one-hot encoding as well as the estimator, so the
ONNX graph converted from it is the whole model.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils import check_random_state

from training_jobs.columnwise import ColumnwiseImputer, ColumnwiseScaler, ColumnwiseTransformer
from training_jobs.curve import printed_curve
from training_jobs.data import Schema
from training_jobs.errors import TrainingError

MODELS = ("logistic_regression", "ridge", "mlp", "random_forest", "hist_gradient_boosting")
# The estimator settings each model takes (make_estimator maps them to scikit-learn's names).
ESTIMATOR_SETTINGS: dict[str, frozenset[str]] = {
    "logistic_regression": frozenset({"c", "max_iter"}),
    "ridge": frozenset({"alpha"}),
    "mlp": frozenset({"hidden_layer_sizes", "max_iter", "learning_rate", "alpha"}),
    "random_forest": frozenset({"n_estimators", "max_depth"}),
    "hist_gradient_boosting": frozenset({"max_iter", "learning_rate", "max_depth"}),
}
# Above this many training rows a random forest's trees each draw this many rows (max_samples)
# and keep at least LARGE_FOREST_MIN_LEAF rows a leaf: its fit time and size then stop growing
# with the data. Measured on a 50-feature synthetic table (80k training rows, 20 trees, one
# core; docs/training-scale.md): full bootstrap 0.46 s and 18,448 nodes a tree, accuracy
# 0.781; 20k rows a tree 0.15 s, 6,247 nodes, 0.778; min_samples_leaf=5 10,692 nodes, 0.802.
# At or below it the forest is scikit-learn's default, as before.
LARGE_FOREST_ROWS = 100_000
LARGE_FOREST_MIN_LEAF = 5
# A regression tree of full depth keeps about a leaf per distinct row it drew, so above this
# many training rows a regression forest keeps LARGE_FOREST_MIN_LEAF rows a leaf too (the
# nodesize R's randomForest uses for regression): on 80,000 synthetic rows, 101,159 nodes a
# tree -> 16,191 and R^2 0.7607 -> 0.7619 (0.8301 -> 0.8330 on a nonlinear target), and the
# estimated memory to convert and search it 12.9 GB -> 2.1 GB (docs/training-scale.md,
# "A forest's memory").
REGRESSION_FOREST_ROWS = 20_000


@dataclass(frozen=True)
class EstimatorSettings:
    """The estimator hyperparameters; None is "not given" (the estimator's default applies).

    Each applies to some estimators only (``ESTIMATOR_SETTINGS``); one given to an estimator
    that does not take it is refused, never ignored.
    """

    n_estimators: int | None = None
    max_depth: int | None = None
    max_iter: int | None = None
    learning_rate: float | None = None
    hidden_layer_sizes: tuple[int, ...] | None = None
    alpha: float | None = None  # L2 regularization
    c: float | None = None  # inverse regularization (logistic)

    def given(self) -> list[str]:
        """The names of the settings given, in ``ALL_ESTIMATOR_SETTINGS`` order."""
        return [name for name in ALL_ESTIMATOR_SETTINGS if getattr(self, name) is not None]


ALL_ESTIMATOR_SETTINGS = tuple(setting.name for setting in fields(EstimatorSettings))


def refuse_foreign_settings(model: str, settings: EstimatorSettings) -> None:
    """An estimator setting the chosen estimator does not take is an error, never ignored."""
    accepted = ESTIMATOR_SETTINGS[model]
    foreign = [name for name in settings.given() if name not in accepted]
    if foreign:
        raise TrainingError(
            f"bad hyperparameter: {model} does not take {', '.join(foreign)} "
            f"(it takes {', '.join(sorted(accepted))})"
        )


def make_estimator(
    task: str, model: str, settings: EstimatorSettings, seed: int, *, rows: int = 0
) -> Any:
    """The estimator a hyperparameter names, as classifier or regressor by task.

    Only the settings in ``ESTIMATOR_SETTINGS[model]`` are read (parse_args refuses others);
    a setting not given takes scikit-learn's default, except where noted. ``rows``: the
    training rows, which bound a random forest on large data (``LARGE_FOREST_ROWS``,
    ``REGRESSION_FOREST_ROWS``).
    """

    def given(name: str, default: Any) -> Any:
        value = getattr(settings, name)
        return default if value is None else value

    if model == "logistic_regression":
        if task != "classification":
            raise TrainingError("logistic_regression is for classification; use ridge")
        # 1000 iterations rather than 100: lbfgs rarely converges in 100 on unscaled one-hots.
        return LogisticRegression(C=given("c", 1.0), max_iter=given("max_iter", 1000))
    if model == "ridge":
        if task != "regression":
            raise TrainingError("ridge is for regression; use logistic_regression")
        return Ridge(alpha=given("alpha", 1.0))
    classify = task == "classification"
    if model == "mlp":
        kind = MLPClassifier if classify else MLPRegressor
        return kind(
            hidden_layer_sizes=given("hidden_layer_sizes", (64, 32)),
            max_iter=given("max_iter", 300),
            learning_rate_init=given("learning_rate", 0.001),
            alpha=given("alpha", 0.0001),
            early_stopping=True,
            random_state=seed,
        )
    if model == "random_forest":
        forest = RandomForestClassifier if classify else RandomForestRegressor
        large = rows > LARGE_FOREST_ROWS
        bounded_leaves = large or (not classify and rows > REGRESSION_FOREST_ROWS)
        return forest(
            n_estimators=given("n_estimators", 100),
            max_depth=settings.max_depth,
            max_samples=LARGE_FOREST_ROWS if large else None,
            min_samples_leaf=LARGE_FOREST_MIN_LEAF if bounded_leaves else 1,
            random_state=seed,
            # Every core of the instance: the trees' seeds are drawn before the work is
            # shared out, so the forest is the same whatever the number of jobs.
            n_jobs=-1,
        )
    boosting = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
    return boosting(
        max_iter=given("max_iter", 100),
        learning_rate=given("learning_rate", 0.1),
        max_depth=settings.max_depth,
        random_state=seed,
    )


def build_pipeline(schema: Schema, estimator: Any) -> Pipeline:
    """Imputation, scaling and one-hot in the same Pipeline as the estimator."""
    transformers: list[tuple[str, Any, list[str]]] = []
    if schema.numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [
                        # scikit-learn's own, fitted a few columns at a time (less memory,
                        # same statistics): training_jobs.columnwise. copy=False: its input is
                        # always the ColumnTransformer's selection of the columns, a new array
                        # (a test checks the caller's rows are left as they were).
                        (
                            "impute",
                            ColumnwiseImputer(
                                strategy="median", keep_empty_features=True, copy=False
                            ),
                        ),
                        # copy=False: its input is always the imputer's output, that same
                        # new array, so scaling it in place changes nothing but memory.
                        ("scale", ColumnwiseScaler(copy=False)),
                    ]
                ),
                schema.numeric,
            )
        )
    if schema.categorical:
        # Missing categories arrive as '' (MISSING_CATEGORY) and are a category of their own;
        # categories never seen in training, or beyond max_categories, encode as all zeros.
        categories: Any = (
            [schema.categories[c] for c in schema.categorical] if schema.categories else "auto"
        )
        # HistGradientBoosting refuses sparse input; its one-hot block is bounded by
        # max_categories, so dense costs little. The others keep the sparse encoding.
        hist = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
        dense = isinstance(estimator, hist)
        encoder = OneHotEncoder(
            categories=categories, handle_unknown="ignore", sparse_output=not dense
        )
        transformers.append(("categorical", encoder, schema.categorical))
    return Pipeline([("preprocess", ColumnwiseTransformer(transformers)), ("model", estimator)])


def fit(
    pipeline: Pipeline,
    X: pd.DataFrame | Callable[[], pd.DataFrame],
    y: np.ndarray,
    *,
    curve: bool = True,
) -> Pipeline:
    """Fit, with convergence warnings logged rather than raised, and (``curve``) the learning
    curve printed as it happens (``training_jobs.curve``).

    The steps are fitted as ``Pipeline.fit`` does (each transformer's ``fit_transform``, then
    the model's ``fit`` on the result), so that ``X`` may be a function handing the rows over:
    nothing then holds them once they are transformed, through the model's fit."""
    rows = X if callable(X) else lambda: X
    model = pipeline.steps[-1][1]
    watched = printed_curve(model) if curve else nullcontext()
    with warnings.catch_warnings(), watched:
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*converge.*")
        transformed = pipeline[:-1].fit_transform(rows(), y)
        parts = early_stopping_split(model, transformed, y)
        if parts is None:
            model.fit(transformed, y)
        else:
            del transformed  # the parts are copies; nothing holds the whole through the fit
            X_fit, y_fit, X_val, y_val = parts
            model.fit(X_fit, y_fit, X_val=X_val, y_val=y_val)
    return pipeline


# scikit-learn's HistGradientBoosting turns early stopping on ("auto") above this many rows.
_EARLY_STOPPING_ROWS = 10_000


def early_stopping_split(
    model: Any, X: Any, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """HistGradientBoosting's own early-stopping split of ``X`` (training rows and validation
    rows, as float64), or None where scikit-learn's own path is taken.

    scikit-learn converts all the rows to float64 and then splits that into two more copies:
    5x the float32 rows at its peak (4.9x at 10M rows). Made here, the split is the same rows
    in the same order (the same seed, drawn as scikit-learn draws it, and the same call) and
    goes to ``fit`` as ``X_val``/``y_val`` already in float64, so the model is the same bit for
    bit (by test) at 3x. Only the "auto" early stopping of a seeded, unweighted estimator on
    dense rows, where the training part is still above the rows "auto" needs."""
    boosting = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
    if (
        not isinstance(model, boosting)
        or not isinstance(X, np.ndarray)
        or X.ndim != 2
        or model.early_stopping != "auto"
        or model.validation_fraction is None
        or model.warm_start
        or not isinstance(model.random_state, numbers.Integral)
        or len(X) <= _EARLY_STOPPING_ROWS
    ):
        return None
    # fit() draws its split's seed first from a fresh RandomState(random_state).
    seed = check_random_state(model.random_state).randint(np.iinfo(np.uint32).max, dtype="u8")
    classify = isinstance(model, HistGradientBoostingClassifier)
    # The label encoding keeps the labels' sorted order, so stratifying on them is the same.
    fit_rows, val_rows = train_test_split(
        np.arange(len(X)),
        test_size=model.validation_fraction,
        stratify=y if classify else None,
        random_state=seed,
    )
    if len(fit_rows) <= _EARLY_STOPPING_ROWS:
        return None  # "auto" would see the training part alone and not stop early
    if classify and len(np.unique(y[fit_rows])) != len(np.unique(y)):
        return None  # a class only among the validation rows: classes_ would differ
    return _float64_rows(X, fit_rows), y[fit_rows], _float64_rows(X, val_rows), y[val_rows]


def _float64_rows(X: np.ndarray, rows: np.ndarray, block: int = 65_536) -> np.ndarray:
    """``X[rows]`` as float64, a block of rows at a time (no float32 copy of the whole first).
    C-ordered, as scikit-learn's own split gives them: its binning takes a row sample with
    ``ndarray.take``, which copies a whole F-ordered array to C order first."""
    out = np.empty((len(rows), X.shape[1]), dtype=np.float64)
    for start in range(0, len(rows), block):
        out[start : start + block] = X[rows[start : start + block]]
    return out
