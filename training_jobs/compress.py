"""Smaller variants of a fitted model: fewer trees, pruned trees, fewer hidden units.

Each function takes the fitted estimator (the Pipeline's last step) and returns candidates:
new fitted estimators of the same class, never a refit. The job converts each with the same
Pipeline's preprocessing and scores it like any other variant; ``decision.choose_compression``
picks one within the int8 tolerance. The number of candidates is bounded (at most
``MAX_CANDIDATES`` a model), so the search costs a few conversions, not a grid of fits.

- Forests: minimal cost-complexity pruning of every fitted tree, at the alphas where the first
  tree keeps 1/2, 1/4 and 1/8 of its leaves. scikit-learn grows a tree in full and prunes it
  afterwards when ``ccp_alpha`` is set, so pruning the fitted trees gives exactly the forest a
  refit with that ``ccp_alpha`` would (a test checks this): refitting costs a fit and gains
  nothing. Then prefixes (the first 1/2 and 1/4 of the trees) at the strongest pruning that
  stayed within tolerance.
- HistGradientBoosting: prefixes of the boosting iterations (3/4, 1/2, 1/4).
- MLPs: structured pruning of hidden units, so the weight matrices get smaller, not sparse;
  the next layer's weights are then refitted by ridge least squares to reproduce its
  original inputs on a sample of training rows (a linear solve). Two series: the last hidden
  layer alone keeps 1/2 or 0.35 of its units (it reaches the outputs through one linear
  layer, which the refit reproduces closely; layers before it keep their fitted weights),
  its units chosen by forward selection (each next unit the one whose activations best
  reduce the least-squares error of reproducing the next layer's original inputs); and
  every hidden layer keeps 3/4, 1/2 or 0.35, its units those whose outgoing weights' norm
  times RMS activation is largest (forward selection lost held-out rows there). A gradient
  fine-tune (distilling the original's logits with scikit-learn's own Adam) was measured on
  the 512x512 benchmark and brought no variant within the default tolerance that the
  selection alone missed
  (benchmarks/bench_mlp_prune.py, README).
- Linear models: one weight per input column; nothing to prune.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.neural_network._base import ACTIVATIONS
from sklearn.tree._tree import ccp_pruning_path

FOREST_LEAF_FRACTIONS = (0.5, 0.25, 0.125)
FOREST_PREFIX_FRACTIONS = (0.5, 0.25)
BOOSTING_PREFIX_FRACTIONS = (0.75, 0.5, 0.25)
# Two MLP series: the last hidden layer alone, then every hidden layer (fractions of units kept).
MLP_LAST_LAYER_FRACTIONS = (0.5, 0.35)
MLP_EVERY_LAYER_FRACTIONS = (0.75, 0.5, 0.35)
# How each series picks its units: forward selection wins where one layer shrinks (the 512x512
# benchmark: the largest drift halves); where every layer shrinks it does not, and on the
# bundled breast_cancer MLP it flipped held-out rows the weight-norm pick kept.
MLP_PICKS = {"last": "forward", "units": "norm"}
MAX_CANDIDATES = 6
# Training rows the MLP's activation statistics are measured on (a seeded sample).
ACTIVATION_ROWS = 10_000
# The refit of the layer after a pruned one: ridge strength relative to the mean square input.
RIDGE = 1e-3
# Forward selection: a unit's share of its own variance left after projection below which it
# counts as spanned by the units already picked.
SELECTION_SPENT = 1e-9
LINEAR_REASON = "linear model: one weight per input column, nothing to prune"


@dataclass(frozen=True)
class Shrunk:
    """A candidate: a fitted estimator smaller than the original, and how it was made."""

    name: str
    description: str
    estimator: Any


def family(estimator: Any) -> str:
    """``forest``, ``boosting``, ``mlp`` or ``linear``: what compression can do to it."""
    if isinstance(estimator, RandomForestClassifier | RandomForestRegressor):
        return "forest"
    if isinstance(estimator, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
        return "boosting"
    if isinstance(estimator, MLPClassifier | MLPRegressor):
        return "mlp"
    return "linear"


# --------------------------------------------------------------------------- forests


def forest_prefix(forest: Any, trees: int) -> Any:
    """The forest of its first ``trees`` fitted trees (the others dropped)."""
    smaller = copy.copy(forest)
    smaller.estimators_ = forest.estimators_[:trees]
    smaller.n_estimators = trees
    return smaller


def forest_pruned(forest: Any, alpha: float) -> Any:
    """Every tree pruned by minimal cost-complexity pruning at ``alpha`` (as a refit with
    ``ccp_alpha=alpha`` would prune it)."""
    smaller = copy.copy(forest)
    smaller.ccp_alpha = alpha
    smaller.estimators_ = [_pruned_tree(tree, alpha) for tree in forest.estimators_]
    return smaller


def _pruned_tree(tree: Any, alpha: float) -> Any:
    pruned = copy.copy(tree)
    pruned.ccp_alpha = alpha
    pruned._prune_tree()  # scikit-learn's own last step of fit when ccp_alpha > 0
    return pruned


def leaves(tree: Any) -> int:
    """Leaves of a fitted decision tree."""
    return int(np.sum(tree.tree_.children_left == -1))


def alphas_for_leaf_fractions(tree: Any, fractions: tuple[float, ...]) -> list[float]:
    """For each fraction, the smallest alpha on the tree's pruning path at which it keeps at
    most that fraction of its leaves (bisection: about log2(path) prunings of one tree)."""
    path = np.unique(ccp_pruning_path(tree.tree_)["ccp_alphas"])
    full = leaves(tree)
    chosen = []
    for fraction in fractions:
        low, high = 0, len(path) - 1
        while low < high:
            middle = (low + high) // 2
            if leaves(_pruned_tree(tree, float(path[middle]))) <= fraction * full:
                high = middle
            else:
                low = middle + 1
        chosen.append(float(path[low]))
    return chosen


def forest_pruning_candidates(forest: Any) -> list[Shrunk]:
    """The forest pruned at the alphas where its first tree keeps 1/2, 1/4, 1/8 of its leaves."""
    alphas = alphas_for_leaf_fractions(forest.estimators_[0], FOREST_LEAF_FRACTIONS)
    candidates: list[Shrunk] = []
    for fraction, alpha in zip(FOREST_LEAF_FRACTIONS, alphas, strict=True):
        if alpha <= 0 or any(alpha == c.estimator.ccp_alpha for c in candidates):
            continue  # a tree too small to prune, or the same pruning twice
        candidates.append(
            Shrunk(
                f"ccp-{fraction:g}",
                f"every tree cost-complexity pruned at alpha {alpha:.3g} (the first tree keeps "
                f"<= {fraction:g} of its leaves)",
                forest_pruned(forest, alpha),
            )
        )
    return candidates


def forest_prefix_candidates(forest: Any, base: Shrunk | None) -> list[Shrunk]:
    """The first 1/2 and 1/4 of the trees, of ``base`` (a pruned forest) or of the original."""
    source = base.estimator if base is not None else forest
    total = len(source.estimators_)
    candidates: list[Shrunk] = []
    for fraction in FOREST_PREFIX_FRACTIONS:
        trees = max(1, math.floor(total * fraction))
        if trees >= total or any(len(c.estimator.estimators_) == trees for c in candidates):
            continue
        prefix = f"{base.name}+" if base is not None else ""
        of = f"of the {base.name} forest" if base is not None else "of the fitted forest"
        candidates.append(
            Shrunk(
                f"{prefix}trees-{trees}",
                f"the first {trees} of {total} trees {of}",
                forest_prefix(source, trees),
            )
        )
    return candidates


# --------------------------------------------------------------------------- boosting


def boosting_prefix(boosting: Any, iterations: int) -> Any:
    """The model of its first ``iterations`` boosting iterations (later trees dropped)."""
    smaller = copy.copy(boosting)
    smaller._predictors = boosting._predictors[:iterations]  # n_iter_ is its length
    return smaller


def boosting_candidates(boosting: Any) -> list[Shrunk]:
    """The first 3/4, 1/2 and 1/4 of the boosting iterations."""
    total = len(boosting._predictors)
    candidates: list[Shrunk] = []
    for fraction in BOOSTING_PREFIX_FRACTIONS:
        iterations = max(1, math.floor(total * fraction))
        if iterations >= total or any(c.estimator.n_iter_ == iterations for c in candidates):
            continue
        candidates.append(
            Shrunk(
                f"iterations-{iterations}",
                f"the first {iterations} of {total} boosting iterations",
                boosting_prefix(boosting, iterations),
            )
        )
    return candidates


# --------------------------------------------------------------------------- MLPs


def hidden_activations(mlp: Any, X: np.ndarray) -> list[np.ndarray]:
    """Each hidden layer's activations on the (preprocessed) rows ``X``."""
    activation = ACTIVATIONS[mlp.activation]  # scikit-learn's own, applied in place
    values = np.asarray(X, dtype=np.float64)
    layers = []
    for weights, bias in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1], strict=True):
        values = values @ weights + bias
        activation(values)
        layers.append(values)
    return layers


def mlp_pruned(mlp: Any, keeps: tuple[float, ...], X: np.ndarray, pick: str = "forward") -> Any:
    """Hidden layer ``i`` keeps ``keeps[i]`` of its units (at least one), chosen on the rows
    ``X`` by :func:`forward_selection` to reproduce the next layer's inputs in the original
    network (``pick="forward"``), or (``"norm"``) as the units whose outgoing weights' norm
    times RMS activation in the original network is largest; the next layer's weights and
    bias are then refitted by ridge least squares to those inputs (layer by layer, each on
    the already pruned layers' activations)."""
    activation = ACTIVATIONS[mlp.activation]
    coefs = [np.array(w, dtype=np.float64) for w in mlp.coefs_]
    intercepts = [np.array(b, dtype=np.float64) for b in mlp.intercepts_]
    values = np.asarray(X, dtype=np.float64)
    sizes = []
    pruned = False
    for layer, original in enumerate(hidden_activations(mlp, X)):
        target = original @ coefs[layer + 1] + intercepts[layer + 1]
        current = values @ coefs[layer] + intercepts[layer]
        activation(current)
        units = max(1, math.ceil(keeps[layer] * current.shape[1]))
        sizes.append(units)
        if units == current.shape[1]:
            values = current
            if not pruned:  # nothing pruned up to here: the next layer stays as fitted
                continue
            kept = np.arange(units)
        elif pick == "forward":
            kept = forward_selection(current, target, units)
            pruned = True
        else:
            kept = largest_contributions(original, coefs[layer + 1], units)
            pruned = True
        coefs[layer] = coefs[layer][:, kept]
        intercepts[layer] = intercepts[layer][kept]
        values = current[:, kept]
        coefs[layer + 1], intercepts[layer + 1] = _ridge(values, target)
    dtype = mlp.coefs_[0].dtype
    smaller = copy.copy(mlp)
    smaller.coefs_ = [w.astype(dtype) for w in coefs]
    smaller.intercepts_ = [b.astype(dtype) for b in intercepts]
    smaller.hidden_layer_sizes = tuple(sizes)
    return smaller


def largest_contributions(activations: np.ndarray, outgoing: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` units whose outgoing weights' norm times RMS activation is largest; their
    indices, sorted."""
    score = np.sqrt(np.mean(activations**2, axis=0)) * np.linalg.norm(outgoing, axis=1)
    return np.sort(np.argsort(-score, kind="stable")[:count])


def forward_selection(inputs: np.ndarray, target: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` columns of ``inputs`` picked one at a time, each the column that most
    reduces the least-squares error of fitting every column of ``target`` (with an intercept)
    from the columns picked so far; their indices, sorted.

    Works on the Gram matrices: picking a column projects it out of the others (a Schur
    complement update), so each step costs O(units x (units + targets)), not a refit."""
    centred = inputs - inputs.mean(axis=0)
    gram = centred.T @ centred
    cross = centred.T @ (target - target.mean(axis=0))
    # A column whose variance left after projection is this small a share of its own is
    # (numerically) made of the picked ones: it gains nothing, and dividing by it would only
    # amplify rounding. When only such columns are left, the rest are taken in order.
    spent = SELECTION_SPENT * np.diag(gram)
    picked: list[int] = []
    for _ in range(count):
        variance = np.diag(gram)
        alive = variance > spent
        gain = np.full(len(variance), -1.0)
        np.divide(np.sum(cross**2, axis=1), variance, out=gain, where=alive)
        gain[picked] = -np.inf
        best = int(np.argmax(gain))
        picked.append(best)
        if alive[best]:
            column = gram[:, best] / variance[best]
            cross -= np.outer(column, cross[best])
            gram -= np.outer(column, gram[best])
    return np.sort(np.array(picked))


def _ridge(inputs: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias mapping ``inputs`` to ``target`` by least squares, with a ridge of
    RIDGE times the inputs' mean square (so fewer rows than units stays well posed)."""
    design = np.hstack([inputs, np.ones((len(inputs), 1))])
    gram = design.T @ design
    ridge = RIDGE * max(float(np.trace(gram)) / len(gram), 1e-12)
    gram[np.diag_indices(len(gram) - 1)] += ridge  # the bias column is not penalised
    solution = np.linalg.solve(gram, design.T @ target)
    return solution[:-1], solution[-1]


def mlp_candidates(mlp: Any, X_sample: np.ndarray) -> list[Iterator[Shrunk]]:
    """Two series, each from mild to strong: the last hidden layer alone keeping 1/2 and 0.35
    of its units, then every hidden layer keeping 3/4, 1/2 and 0.35 (a network already met is
    not repeated). Each candidate is pruned only when the search asks for it: a series stops
    at its first variant outside tolerance."""
    original = [w.shape[1] for w in mlp.coefs_[:-1]]
    depth = len(original)
    plans = {
        "last": [(f, (1.0,) * (depth - 1) + (f,)) for f in MLP_LAST_LAYER_FRACTIONS],
        "units": [(f, (f,) * depth) for f in MLP_EVERY_LAYER_FRACTIONS],
    }
    seen = [original]
    series = []
    for prefix, plan in plans.items():
        kept = []
        for fraction, keeps in plan:
            sizes = [max(1, math.ceil(k * units)) for k, units in zip(keeps, original, strict=True)]
            if sizes not in seen:
                seen.append(sizes)
                kept.append((f"{prefix}-{fraction:g}", keeps, sizes))
        series.append(_pruned_series(mlp, X_sample, original, prefix, kept))
    return series


def _pruned_series(
    mlp: Any,
    X: np.ndarray,
    original: list[int],
    series: str,
    plan: list[tuple[str, tuple[float, ...], list[int]]],
) -> Iterator[Shrunk]:
    which = "the last hidden layer" if series == "last" else "every hidden layer"
    pick = MLP_PICKS[series]
    how = (
        "least-squares forward selection"
        if pick == "forward"
        else "largest outgoing weight norm x RMS activation"
    )
    for name, keeps, sizes in plan:
        yield Shrunk(
            name,
            f"hidden units {','.join(map(str, original))} -> {','.join(map(str, sizes))} "
            f"({which} pruned by {how})",
            mlp_pruned(mlp, keeps, X, pick),
        )


def activation_sample(rows: Any, seed: int) -> Any:
    """A seeded sample of at most ``ACTIVATION_ROWS`` rows (a DataFrame or an array)."""
    count = len(rows)
    if count <= ACTIVATION_ROWS:
        return rows
    picked = np.sort(np.random.default_rng(seed).permutation(count)[:ACTIVATION_ROWS])
    return rows.iloc[picked] if hasattr(rows, "iloc") else rows[picked]
