"""The TreeEnsemble (ai.onnx.ml 5) re-encoding's layout on real data: shared leaves, the packed
file, and answers equal to skl2onnx's opset-3 graph on scikit-learn's tables."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from tests.support.graphs import convert
from training_jobs.export import save_packed, tree_ensemble_v5


def _table(name: str, holes: bool) -> tuple[np.ndarray, np.ndarray]:
    X, y = (load_breast_cancer if name == "breast_cancer" else load_diabetes)(return_X_y=True)
    X = X.astype(np.float32)
    if holes:  # missing values, so that boosting learns where NaN goes at each split
        X[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    return X, y


def _probe(X: np.ndarray) -> np.ndarray:
    """The rows, then the extremes the job's row-independence probe uses and NaN rows."""
    width = X.shape[1]
    return np.vstack(
        [
            X,
            np.full((1, width), 3e38, np.float32),
            np.full((1, width), -3e38, np.float32),
            np.nan_to_num(-X[:5]) * np.float32(1e6),
            np.full((1, width), np.nan, np.float32),
        ]
    ).astype(np.float32)


def _run(model: onnx.ModelProto | Path, X: np.ndarray) -> list[np.ndarray]:
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    sess = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return [np.asarray(out) for out in sess.run(None, {"X": X})]


def _ensemble(model: onnx.ModelProto) -> dict[str, Any]:
    node = next(n for n in model.graph.node if n.op_type == "TreeEnsemble")
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


CASES = {
    "forest breast_cancer": (RandomForestClassifier(n_estimators=30, random_state=0), False),
    "forest diabetes": (RandomForestRegressor(n_estimators=30, random_state=0), False),
    "boosting breast_cancer": (HistGradientBoostingClassifier(max_iter=30, random_state=0), True),
    "boosting diabetes": (HistGradientBoostingRegressor(max_iter=30, random_state=0), True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_packed_shared_leaf_graph_answers_as_the_opset_3_graph(
    case: str, tmp_path: Path
) -> None:
    estimator, holes = CASES[case]
    X, y = _table(case.split()[1], holes)
    estimator.fit(X, y)
    original = convert(estimator, X.shape[1])
    encoded, note = tree_ensemble_v5(original)
    assert encoded is not None, note
    path = tmp_path / "model.onnx"
    save_packed(encoded, path)
    onnx.checker.check_model(str(path))
    rows = _probe(X)
    before, after = _run(original, rows), _run(path, rows)
    assert len(before) == len(after)
    if hasattr(estimator, "classes_"):
        np.testing.assert_array_equal(after[0].ravel(), before[0].ravel())
        # (the NaN row aside: scikit-learn's trees send it where fitting saw NaN go; the
        # job imputes before the forest, and both graphs send it the same way)
        np.testing.assert_array_equal(after[0].ravel()[:-1], estimator.predict(rows[:-1]))
    # Forests add the same leaf weights in the same order: bit for bit. Boosting's logistic
    # is a Sigmoid node here and onnxruntime's own inside TreeEnsembleClassifier there.
    exact = case.startswith("forest")
    tolerance = 0.0 if exact else 2e-7
    np.testing.assert_allclose(
        after[-1].reshape(before[-1].shape), before[-1], rtol=0, atol=tolerance
    )


def test_a_forest_shares_its_leaves_across_trees_most_referenced_first() -> None:
    X, y = _table("breast_cancer", holes=False)
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
    original = convert(forest, X.shape[1])
    encoded, note = tree_ensemble_v5(original)
    assert encoded is not None
    a = _ensemble(encoded)
    # Fully grown trees end in pure leaves: every leaf of every tree is one of two entries,
    # a vote for class 1 (1/30) or none.
    weights = onnx.numpy_helper.to_array(a["leaf_weights"])
    assert sorted(weights.tolist()) == [0.0, pytest.approx(1 / 30)]
    assert a["leaf_targetids"] == [0, 0]
    references: Counter[int] = Counter()
    for side in ("true", "false"):
        ids, leafs = a[f"nodes_{side}nodeids"], a[f"nodes_{side}leafs"]
        references.update(i for i, leaf in zip(ids, leafs, strict=True) if leaf)
    assert set(references) == {0, 1} and references[0] >= references[1]
    node = next(n for n in original.graph.node if n.op_type == "TreeEnsembleClassifier")
    modes = [m.decode() for m in next(
        onnx.helper.get_attribute_value(x) for x in node.attribute if x.name == "nodes_modes"
    )]  # fmt: skip
    assert sum(references.values()) == modes.count("LEAF")
    assert note.endswith(f", {modes.count('LEAF')} leaves sharing 2 leaf entries")
    assert len(a["nodes_featureids"]) == len(modes) - modes.count("LEAF")
    # No split here tracks missing values: the all-false column is left out (its default).
    assert "nodes_missing_value_tracks_true" not in a
    # Depth first: each tree's root is followed by its true child when that is a node.
    roots = a["tree_roots"]
    assert roots[0] == 0
    for root in roots:
        if not a["nodes_trueleafs"][root]:
            assert a["nodes_truenodeids"][root] == root + 1


def test_a_multiclass_forest_keeps_each_pure_leaf_s_one_vote_and_its_ties() -> None:
    X, y = load_wine(return_X_y=True)
    X = X.astype(np.float32)
    # 4 trees fitted on half the rows: votes of 2-2-0 on some of the others.
    forest = RandomForestClassifier(n_estimators=4, random_state=0).fit(X[::2], y[::2])
    original = convert(forest, X.shape[1])
    encoded, note = tree_ensemble_v5(original)
    assert encoded is not None, note
    a = _ensemble(encoded)
    assert sorted(set(a["leaf_targetids"])) == [0, 1, 2]
    assert len(a["leaf_targetids"]) == 3  # one vote of 1/4 per class
    rows = _probe(X)
    before, after = _run(original, rows), _run(encoded, rows)
    top = np.sort(before[1], axis=1)
    assert np.sum(top[:, -1] == top[:, -2]) >= 5  # ties, which both break to the first class
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0][:-1], forest.predict(rows[:-1]))


def test_boosting_keeps_where_missing_values_go() -> None:
    X, y = _table("breast_cancer", holes=True)
    boosting = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
    encoded, _ = tree_ensemble_v5(convert(boosting, X.shape[1]))
    assert encoded is not None
    tracks = _ensemble(encoded)["nodes_missing_value_tracks_true"]
    assert 0 < sum(tracks) < len(tracks)


def test_the_packed_file_is_the_same_model_in_fewer_bytes(tmp_path: Path) -> None:
    X, y = _table("diabetes", holes=False)
    forest = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, y)
    encoded, _ = tree_ensemble_v5(convert(forest, X.shape[1]))
    assert encoded is not None
    plain, packed = tmp_path / "plain.onnx", tmp_path / "packed.onnx"
    onnx.save(encoded, plain)
    save_packed(encoded, packed)
    # One tag byte per value saved, for the 5 node columns of every interior node.
    interior = len(_ensemble(encoded)["nodes_featureids"])
    assert plain.stat().st_size - packed.stat().st_size >= 5 * interior - 100
    assert onnx.load(packed).SerializeToString() == encoded.SerializeToString()
    np.testing.assert_array_equal(_run(packed, X)[0], _run(plain, X)[0])
