"""The compression search's building blocks on small synthetic data: pruned and fewer trees,
pruned hidden units, and the TreeEnsemble (ai.onnx.ml 5) re-encoding."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier, MLPRegressor

from tests.support.graphs import convert
from training_jobs import compress
from training_jobs.export import tree_ensemble_v5


def _classification(classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=400, n_features=8, n_informative=4, n_classes=classes, random_state=0
    )
    return X.astype(np.float32), y


def test_pruning_the_fitted_forest_is_the_forest_a_refit_with_ccp_alpha_gives() -> None:
    X, y = _classification()
    forest = RandomForestClassifier(n_estimators=5, random_state=3).fit(X, y)
    alpha = compress.alphas_for_leaf_fractions(forest.estimators_[0], (0.25,))[0]
    pruned = compress.forest_pruned(forest, alpha)
    refit = RandomForestClassifier(n_estimators=5, random_state=3, ccp_alpha=alpha).fit(X, y)
    for mine, theirs in zip(pruned.estimators_, refit.estimators_, strict=True):
        assert mine.tree_.node_count == theirs.tree_.node_count
        np.testing.assert_array_equal(mine.tree_.threshold, theirs.tree_.threshold)
    np.testing.assert_array_equal(pruned.predict_proba(X), refit.predict_proba(X))
    # The first tree keeps at most a quarter of its leaves; the original is untouched.
    assert compress.leaves(pruned.estimators_[0]) <= 0.25 * compress.leaves(forest.estimators_[0])
    assert forest.estimators_[0].tree_.node_count > pruned.estimators_[0].tree_.node_count


def test_forest_and_boosting_prefixes_are_their_first_trees() -> None:
    X, y = _classification()
    forest = RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y)
    first = compress.forest_prefix(forest, 3)
    manual = np.mean([tree.predict_proba(X) for tree in forest.estimators_[:3]], axis=0)
    np.testing.assert_allclose(first.predict_proba(X), manual)
    assert len(forest.estimators_) == 8
    boosting = HistGradientBoostingClassifier(max_iter=12, random_state=0).fit(X, y)
    staged = list(boosting.staged_predict_proba(X))
    np.testing.assert_allclose(compress.boosting_prefix(boosting, 5).predict_proba(X), staged[4])
    names = [c.name for c in compress.boosting_candidates(boosting)]
    assert names == ["iterations-9", "iterations-6", "iterations-3"]


def test_the_forest_search_is_bounded() -> None:
    X, y = _classification()
    forest = RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y)
    pruned = compress.forest_pruning_candidates(forest)
    assert [c.name for c in pruned] == ["ccp-0.5", "ccp-0.25", "ccp-0.125"]
    prefixes = compress.forest_prefix_candidates(forest, pruned[1])
    assert [c.name for c in prefixes] == ["ccp-0.25+trees-4", "ccp-0.25+trees-2"]
    assert prefixes[0].estimator.estimators_[0] is pruned[1].estimator.estimators_[0]
    assert len(pruned) + len(prefixes) + 1 <= compress.MAX_CANDIDATES


def _mlp(hidden: tuple[int, ...]) -> tuple[MLPClassifier, np.ndarray]:
    X, y = _classification()
    mlp = MLPClassifier(hidden_layer_sizes=hidden, max_iter=100, random_state=0)
    with pytest.warns(ConvergenceWarning):
        mlp.fit(X, y)
    return mlp, X


def test_mlp_pruning_removes_hidden_units_and_keeps_the_answers() -> None:
    mlp, X = _mlp((64, 32))
    series = compress.mlp_candidates(mlp, X)
    names = [[(c.name, c.estimator.hidden_layer_sizes) for c in s] for s in series]
    assert names == [
        [("last-0.5", (64, 16)), ("last-0.35", (64, 12))],
        [("units-0.75", (48, 24)), ("units-0.5", (32, 16)), ("units-0.35", (23, 12))],
        [("rank-0.25", (64, 32)), ("rank-0.125", (64, 32)), ("rank-0.0625", (64, 32))],
    ]
    assert sum(map(len, names)) <= compress.MAX_CANDIDATES  # the original not counted
    three_quarters = compress.mlp_pruned(mlp, (0.75, 0.75), X)
    # Smaller matrices, not zeros: every weight matrix lost rows or columns.
    shapes = [w.shape for w in three_quarters.coefs_]
    assert shapes == [(8, 48), (48, 24), (24, 1)]
    assert [b.shape for b in three_quarters.intercepts_] == [(48,), (24,), (1,)]
    assert mlp.coefs_[0].shape == (8, 64)  # the original is untouched
    agreement = np.mean(three_quarters.predict(X) == mlp.predict(X))
    drift = np.mean(np.abs(three_quarters.predict_proba(X) - mlp.predict_proba(X)))
    assert agreement >= 0.98 and drift < 0.02, (agreement, drift)


def test_a_one_layer_mlp_is_not_pruned_twice_the_same_way() -> None:
    mlp, X = _mlp((40,))
    series = compress.mlp_candidates(mlp, X)
    sizes = [[c.estimator.hidden_layer_sizes for c in s] for s in series]
    # units-0.5 and -0.35 are last-0.5 and -0.35; no hidden-to-hidden matrix to factor.
    assert sizes == [[(20,), (14,)], [(30,)], []]


def test_a_regression_mlp_is_pruned_to_its_own_outputs() -> None:
    X, y = make_regression(n_samples=600, n_features=10, noise=5.0, random_state=0)
    mlp = MLPRegressor(hidden_layer_sizes=(48, 48), max_iter=300, random_state=0)
    with pytest.warns(ConvergenceWarning):
        mlp.fit(X, y)
    series = compress.mlp_candidates(mlp, X)
    last = next(series[0])
    assert last.name == "last-0.5" and last.estimator.hidden_layer_sizes == (48, 24)
    np.testing.assert_array_equal(last.estimator.coefs_[0], mlp.coefs_[0])  # kept as fitted
    original = mlp.predict(X)
    error = np.sqrt(np.mean((last.estimator.predict(X) - original) ** 2))
    assert error < 0.02 * np.std(original), (error, np.std(original))


def test_forward_selection_finds_the_columns_the_target_is_made_of() -> None:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(500, 30))
    # Column 7 is nearly a copy of column 3: a norm-based pick could take both.
    inputs[:, 7] = inputs[:, 3] + 0.01 * rng.normal(size=500)
    target = np.column_stack(
        [inputs[:, 3] - 2 * inputs[:, 11] + 5, 0.5 * inputs[:, 20] + inputs[:, 3]]
    )
    np.testing.assert_array_equal(compress.forward_selection(inputs, target, 3), [3, 11, 20])


def test_forward_selection_beats_the_weight_norm_pick_on_held_out_rows() -> None:
    X, y = make_classification(n_samples=3000, n_features=20, n_informative=6, random_state=1)
    X = X.astype(np.float32)
    train, held = slice(0, 2000), slice(2000, None)
    mlp = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=60, random_state=0)
    with pytest.warns(ConvergenceWarning):
        mlp.fit(X[train], y[train])
    pruned = compress.mlp_pruned(mlp, (1.0, 0.25), X[train])
    # The same number of last-layer units chosen by outgoing weight norm x RMS activation,
    # with the same least-squares refit of the output layer: what the selection improves on.
    hidden = compress.hidden_activations(mlp, X[train])
    kept = pruned.coefs_[1].shape[1]
    score = np.sqrt(np.mean(hidden[1] ** 2, axis=0)) * np.linalg.norm(mlp.coefs_[2], axis=1)
    units = np.sort(np.argsort(-score, kind="stable")[:kept])
    logits = hidden[1] @ mlp.coefs_[2] + mlp.intercepts_[2]
    by_norm = compress.copy.copy(mlp)
    out_w, out_b = compress._ridge(hidden[1][:, units], logits)
    by_norm.coefs_ = [mlp.coefs_[0], mlp.coefs_[1][:, units], out_w]
    by_norm.intercepts_ = [mlp.intercepts_[0], mlp.intercepts_[1][units], out_b]
    truth = mlp.predict_proba(X[held])[:, 1]
    selected_error = np.mean((pruned.predict_proba(X[held])[:, 1] - truth) ** 2)
    norm_error = np.mean((by_norm.predict_proba(X[held])[:, 1] - truth) ** 2)
    assert selected_error < norm_error / 2, (selected_error, norm_error)


def test_the_least_squares_refit_beats_dropping_units() -> None:
    mlp, X = _mlp((64,))
    pruned = compress.mlp_pruned(mlp, (0.5,), X)
    units = np.flatnonzero(np.isin(mlp.coefs_[0].T, pruned.coefs_[0].T).all(axis=1))
    assert len(units) == pruned.coefs_[0].shape[1] == 32
    # The same units kept, the next layer left as it was: what the refit improves on.
    dropped = compress.copy.copy(mlp)
    dropped.coefs_ = [mlp.coefs_[0][:, units], mlp.coefs_[1][units]]
    dropped.intercepts_ = [mlp.intercepts_[0][units], mlp.intercepts_[1]]
    truth = mlp.predict_proba(X)[:, 1]
    refit_error = np.mean((pruned.predict_proba(X)[:, 1] - truth) ** 2)
    dropped_error = np.mean((dropped.predict_proba(X)[:, 1] - truth) ** 2)
    assert refit_error < dropped_error / 2, (refit_error, dropped_error)


def test_families() -> None:
    X, y = _classification()
    assert compress.family(LogisticRegression().fit(X, y)) == "linear"
    assert compress.family(RandomForestRegressor(n_estimators=2)) == "forest"
    assert compress.family(HistGradientBoostingRegressor()) == "boosting"
    assert compress.family(MLPClassifier()) == "mlp"


def _run(model: onnx.ModelProto, X: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(out) for out in sess.run(None, {"X": X})]


@pytest.mark.parametrize(
    "kind",
    ["forest_binary", "forest_regression", "boosting_binary", "boosting_3", "boosting_regression"],
)
def test_tree_ensemble_5_answers_as_the_original_in_a_smaller_file(kind: str) -> None:
    if kind.endswith("regression"):
        X, y = make_regression(n_samples=400, n_features=8, random_state=0)
        X = X.astype(np.float32)
    else:
        X, y = _classification(3 if kind.endswith("3") else 2)
    model = {
        "forest_binary": RandomForestClassifier(n_estimators=10, random_state=0),
        "forest_regression": RandomForestRegressor(n_estimators=10, random_state=0),
        "boosting_binary": HistGradientBoostingClassifier(max_iter=20, random_state=0),
        "boosting_3": HistGradientBoostingClassifier(max_iter=20, random_state=0),
        "boosting_regression": HistGradientBoostingRegressor(max_iter=20, random_state=0),
    }[kind].fit(X, y)
    original = convert(model, X.shape[1])
    encoded, note = tree_ensemble_v5(original)
    assert encoded is not None, note
    assert "TreeEnsemble" in {n.op_type for n in encoded.graph.node}
    assert not {"TreeEnsembleClassifier", "TreeEnsembleRegressor"} & {
        n.op_type for n in encoded.graph.node
    }
    assert len(encoded.SerializeToString()) < 0.5 * len(original.SerializeToString())
    extreme = np.vstack([X, np.full((1, X.shape[1]), 3e38, np.float32), -X[:3] * 1e6])
    before, after = _run(original, extreme), _run(encoded, extreme)
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        if a.dtype.kind in "iuO":
            np.testing.assert_array_equal(a.ravel(), b.ravel())
        else:
            np.testing.assert_allclose(a, b.reshape(a.shape), atol=1e-6, rtol=1e-6)
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(after[0].ravel(), model.predict(extreme))


def test_a_multiclass_forest_of_impure_leaves_is_not_re_encoded_and_says_why() -> None:
    X, y = _classification(3)
    forest = RandomForestClassifier(n_estimators=3, min_samples_leaf=20, random_state=0)
    encoded, note = tree_ensemble_v5(convert(forest.fit(X, y), X.shape[1]))
    assert encoded is None
    assert note == "a leaf holds weights for several classes (opset 5: one per leaf)"
    mlp = MLPClassifier(hidden_layer_sizes=(4,), max_iter=50)
    with pytest.warns(ConvergenceWarning):
        mlp.fit(X, y)
    assert tree_ensemble_v5(convert(mlp, X.shape[1]))[0] is None


def test_the_every_layer_series_keeps_the_units_of_largest_contribution() -> None:
    mlp, X = _mlp((64, 32))
    every = compress.mlp_candidates(mlp, X)[1]
    first = next(every)
    assert first.name == "units-0.75" and "weight norm" in first.description
    hidden = compress.hidden_activations(mlp, X)
    expected = compress.largest_contributions(hidden[0], mlp.coefs_[1], 48)
    np.testing.assert_array_equal(first.estimator.coefs_[0], mlp.coefs_[0][:, expected])


# --------------------------------------------------------------------------- low rank


def _float32_probabilities(
    X: np.ndarray, mlp: MLPClassifier, factors: dict[int, tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """The binary MLP's positive-class probability in float32, each layer of ``factors``
    computed as ``(values @ first) @ second``: the numpy model of the factorized graph."""
    values = X.astype(np.float32)
    last = len(mlp.coefs_) - 1
    for layer, (weights, bias) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
        if layer in factors:
            first, second = factors[layer]
            values = (values @ first.astype(np.float32)) @ second.astype(np.float32)
        else:
            values = values @ weights.astype(np.float32)
        values = values + bias.astype(np.float32)
        if layer < last:
            values = np.maximum(values, 0)
    return (1 / (1 + np.exp(-values))).ravel()


def test_the_factorized_graph_answers_as_the_numpy_model_of_its_factors() -> None:
    mlp, X = _mlp((64, 32))
    candidate = next(compress.rank_series(mlp, X))
    assert candidate.name == "rank-0.25"
    assert candidate.description.startswith("rank 8 of layer 1 (64x32, ")
    (factor,) = candidate.factors
    assert factor.first.shape == (64, 8) and factor.second.shape == (8, 32)
    original = convert(candidate.estimator, X.shape[1])
    graph = compress.factorized(convert(candidate.estimator, X.shape[1]), candidate.factors)
    # One MatMul more, and the 64x32 matrix is stored as 64x8 and 8x32.
    shapes = sorted(tuple(init.dims) for init in graph.graph.initializer if len(init.dims) == 2)
    assert shapes == [(1, 1), (1, 32), (1, 64), (8, 32), (8, 64), (32, 1), (64, 8)]
    matmuls = [n for n in graph.graph.node if n.op_type == "MatMul"]
    assert len(matmuls) == 1 + sum(n.op_type == "MatMul" for n in original.graph.node)
    assert len(graph.SerializeToString()) < len(original.SerializeToString()) - 4 * 1000
    labels, probabilities = _run(graph, X)
    expected = _float32_probabilities(X, candidate.estimator, {1: (factor.first, factor.second)})
    np.testing.assert_allclose(probabilities[:, 1], expected, rtol=1e-5, atol=1e-6)
    # The estimator holds the product: scikit-learn answers as the graph does.
    np.testing.assert_allclose(
        probabilities, candidate.estimator.predict_proba(X), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(labels.ravel(), candidate.estimator.predict(X))


def test_a_full_rank_factorization_answers_as_the_original_graph() -> None:
    mlp, X = _mlp((24, 16))
    hidden = compress.hidden_activations(mlp, X)
    first, second, bias, energy = compress.low_rank(
        hidden[0], mlp.coefs_[1], mlp.intercepts_[1], 16
    )
    assert energy == pytest.approx(1.0)
    np.testing.assert_allclose(bias, mlp.intercepts_[1], atol=1e-9)
    same = compress.copy.copy(mlp)
    same.coefs_ = [mlp.coefs_[0], first @ second, mlp.coefs_[2]]
    same.intercepts_ = [mlp.intercepts_[0], bias, mlp.intercepts_[2]]
    factor = compress.Factor(same.coefs_[1], first, second)
    graph = compress.factorized(convert(same, X.shape[1]), [factor])
    assert sum(n.op_type == "MatMul" for n in graph.graph.node) == 4
    before, after = _run(convert(mlp, X.shape[1]), X), _run(graph, X)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1], rtol=1e-5, atol=1e-6)


def test_the_low_rank_bottleneck_keeps_the_pre_activations_mean_and_best_directions() -> None:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(2000, 12)) @ rng.normal(size=(12, 12)) + 3.0
    weights, bias = rng.normal(size=(12, 20)), rng.normal(size=20)
    first, second, new_bias, energy = compress.low_rank(inputs, weights, bias, 4)
    exact = inputs @ weights + bias
    approx = inputs @ first @ second + new_bias
    np.testing.assert_allclose(approx.mean(axis=0), exact.mean(axis=0), atol=1e-9)
    # Eckart-Young: the error left is the energy of the directions dropped.
    singular = np.linalg.svd(exact - exact.mean(axis=0), compute_uv=False)
    np.testing.assert_allclose(np.sum((exact - approx) ** 2), np.sum(singular[4:] ** 2), rtol=1e-8)
    assert energy == pytest.approx(np.sum(singular[:4] ** 2) / np.sum(singular**2))


def test_weighted_directions_are_the_weighted_svd_and_a_unit_of_no_weight_stays_bounded() -> None:
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(3000, 10)) @ rng.normal(size=(10, 10))
    weights, bias = rng.normal(size=(10, 16)), rng.normal(size=16)
    importance = rng.uniform(0.1, 10.0, size=16)
    first, second, _, _ = compress.low_rank(inputs, weights, bias, 3, importance)
    # Where every unit weighs, the product is the D-weighted rank-3 projection.
    scale = importance**compress.IMPORTANCE_POWER
    centred = (inputs - inputs.mean(axis=0)) @ weights
    top = np.linalg.svd(centred * scale, full_matrices=False)[2][:3].T
    projection = (scale[:, None] * top) @ (top.T / scale[:, None].T)
    np.testing.assert_allclose(first @ second, weights @ projection, atol=1e-8)
    # A unit of importance 0 gets the least-squares fit from the 3 codes, not 1/0.
    importance[5] = 0.0
    first, second, _, _ = compress.low_rank(inputs, weights, bias, 3, importance)
    assert np.all(np.isfinite(second))
    codes = (inputs - inputs.mean(axis=0)) @ first
    fitted = np.linalg.lstsq(codes, centred[:, 5], rcond=None)[0]
    np.testing.assert_allclose(second[:, 5], fitted, rtol=1e-6, atol=1e-9)


def test_unit_importance_is_the_mean_square_slope_times_the_outgoing_norm() -> None:
    activated = np.array([[0.0, 2.0], [1.0, 0.0], [3.0, 4.0], [0.0, 0.5]])
    outgoing = np.array([[1.0, 2.0], [0.0, 3.0]])
    # ReLU: the slope is 1 where a unit is active (2 of 4 rows, then 3 of 4).
    np.testing.assert_allclose(
        compress.unit_importance(activated, outgoing, "relu"), [0.5 * 5.0, 0.75 * 9.0]
    )
    logistic = np.array([[0.5], [0.25]])
    slope = logistic * (1 - logistic)
    np.testing.assert_allclose(
        compress.unit_importance(logistic, np.array([[2.0]]), "logistic"),
        [np.mean(slope**2) * 4.0],
    )


def test_the_rank_series_factors_only_matrices_it_makes_smaller() -> None:
    mlp, X = _mlp((64, 32))
    series = compress.mlp_candidates(mlp, X)
    ranks = [(c.name, [f.first.shape[1] for f in c.factors]) for c in series[2]]
    assert ranks == [("rank-0.25", [8]), ("rank-0.125", [4]), ("rank-0.0625", [2])]
    # The hidden-to-hidden matrices 10x12, 12x4 and 4x6; the input and output ones never.
    deep, X = _mlp((10, 12, 4, 6))
    assert compress.factored_ranks(deep, 0.25) == {1: 3, 2: 1, 3: 1}
    # At 3/4: 10x12 at rank 8 is 176 weights for 120, 12x4 at 3 is 48 for 48, 4x6 at 3 30 for 24.
    assert compress.factored_ranks(deep, 0.75) == {}
    candidate = next(compress.rank_series(deep, X))
    assert [f.first.shape for f in candidate.factors] == [(10, 3), (12, 1), (4, 1)]
    assert "rank 3 of layer 1 (10x12, " in candidate.description
    assert "rank 1 of layer 3 (4x6, " in candidate.description
    graph = compress.factorized(convert(candidate.estimator, X.shape[1]), candidate.factors)
    _, probabilities = _run(graph, X)
    np.testing.assert_allclose(
        probabilities, candidate.estimator.predict_proba(X), rtol=1e-5, atol=1e-5
    )
    # Rank 1 of 10x4 and of 4x6 at every fraction: one candidate, not three.
    narrow, X = _mlp((10, 4, 6))
    assert [c.name for c in compress.rank_series(narrow, X)] == ["rank-0.25"]
    one_layer, X = _mlp((40,))  # no hidden-to-hidden matrix
    assert list(compress.rank_series(one_layer, X)) == []


def test_the_rank_series_factors_a_candidate_only_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mlp, X = _mlp((64, 32))
    made = []
    real = compress.mlp_factored
    monkeypatch.setattr(compress, "mlp_factored", lambda *args: made.append(args[1]) or real(*args))
    series = compress.rank_series(mlp, X)
    assert made == []
    next(series)
    assert made == [{1: 8}]


def test_a_factor_missing_from_the_graph_is_an_error() -> None:
    mlp, X = _mlp((24, 16))
    candidate = next(compress.rank_series(mlp, X))
    with pytest.raises(ValueError, match="1 factored weight matrices are in no MatMul"):
        compress.factorized(convert(mlp, X.shape[1]), candidate.factors)
