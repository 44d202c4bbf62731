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
- MLPs, a third series: a data-aware low-rank factorization of every hidden-to-hidden weight
  matrix (:func:`mlp_factored`), at ranks 1/4, 1/8 and 1/16 of min(in, out): the top
  directions of the layer's pre-activations on training rows, each unit weighted by its
  importance downstream (:func:`low_rank`, :func:`unit_importance`), then the same ridge
  refit of the next layer. scikit-learn's MLP cannot hold a linear bottleneck, so the
  candidate's estimator holds the rank-r product and :func:`factorized` rewrites the converted
  graph to store it as its two factors (r x (in + out) weights instead of in x out). Only
  matrices where that is fewer weights are factored; the input layer never is (it sees the
  scaled features, whose pre-activations spread over nearly every direction: 99% of their
  energy took 47 of 50 on the 512x512 benchmark), nor the output layer (out = 1 or the
  classes). On the bundled breast_cancer MLP (64,32 units) it factors the 64x32 matrix
  (ranks 8, 4, 2; at rank 8 its 2,048 weights become 768): rank 8 flips 3 of the 114 held-out
  labels, so the series stops there and what serves is unchanged (units-0.5). On the 512x512
  benchmark rank 64 (1/8) + int8 serves at 0.09x the fp32 size within the default tolerance.
- Linear models: one weight per input column; nothing to prune.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.neural_network._base import ACTIVATIONS, DERIVATIVES
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
# The low-rank series: the rank of each factored matrix, as a fraction of min(in, out).
MLP_RANK_FRACTIONS = (0.25, 0.125, 0.0625)
# The low-rank directions weight each unit by its importance downstream to this power: 0 is
# the plain SVD, 1/2 the first-order (Fisher) weighting. Picked among 0, 1/2 and 1/4 on one fit
# of the 512x512 benchmark, then checked on three more: it lowered the largest drift in each.
IMPORTANCE_POWER = 0.25
# The MLP's three series at their longest (2 + 3 + 3 candidates, the original not counted).
MAX_CANDIDATES = 8
# Training rows the MLP's activation statistics are measured on (a seeded sample).
ACTIVATION_ROWS = 10_000
# The refit of the layer after a pruned one: ridge strength relative to the mean square input.
RIDGE = 1e-3
# Forward selection: a unit's share of its own variance left after projection below which it
# counts as spanned by the units already picked.
SELECTION_SPENT = 1e-9
LINEAR_REASON = "linear model: one weight per input column, nothing to prune"


@dataclass(frozen=True)
class Factor:
    """A weight matrix of a candidate's estimator that its graph stores as two: ``product``
    (what the estimator holds) is ``first @ second`` (in x r times r x out)."""

    product: np.ndarray
    first: np.ndarray
    second: np.ndarray


@dataclass(frozen=True)
class Shrunk:
    """A candidate: a fitted estimator smaller than the original, and how it was made.
    ``factors``: weight matrices :func:`factorized` splits in the converted graph."""

    name: str
    description: str
    estimator: Any
    factors: tuple[Factor, ...] = ()


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


@dataclass(frozen=True)
class ForestSize:
    """What a fitted random forest's conversion grows with (skl2onnx's TreeEnsemble)."""

    trees: int
    nodes: int
    leaf_weights: int  # a leaf's value, or class weights: one for two classes, one a class above


def forest_size(estimator: Any) -> ForestSize | None:
    """The size of a fitted random forest, None for any other estimator: a forest's size follows
    its data, the other estimators' is bounded by their hyperparameters."""
    if family(estimator) != "forest":
        return None
    classes = len(getattr(estimator, "classes_", ()))
    per_leaf = classes if classes > 2 else 1
    return ForestSize(
        trees=len(estimator.estimators_),
        nodes=sum(tree.tree_.node_count for tree in estimator.estimators_),
        leaf_weights=per_leaf * sum(leaves(tree) for tree in estimator.estimators_),
    )


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
    """Three series, each from mild to strong: the last hidden layer alone keeping 1/2 and
    0.35 of its units, then every hidden layer keeping 3/4, 1/2 and 0.35 (a network already met
    is not repeated), then the hidden-to-hidden matrices factored at ranks 1/4, 1/8 and 1/16
    (:func:`rank_series`). Each candidate is built only when the search asks for it: a series
    stops at its first variant outside tolerance."""
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
    series.append(rank_series(mlp, X_sample))
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


def factored_ranks(mlp: Any, fraction: float) -> dict[int, int]:
    """Layer index -> rank for each hidden-to-hidden weight matrix (``coefs_[k]``, 0 < k <
    last) that ``fraction`` of min(in, out) (at least 1) stores in fewer weights as two."""
    ranks = {}
    for layer, weights in enumerate(mlp.coefs_[1:-1], start=1):
        rows, columns = weights.shape
        rank = max(1, math.ceil(fraction * min(rows, columns)))
        if rank * (rows + columns) < rows * columns:
            ranks[layer] = rank
    return ranks


def unit_importance(activated: np.ndarray, outgoing: np.ndarray, activation: str) -> np.ndarray:
    """How far each unit's pre-activation moves the next layer, to first order: the mean square
    of the activation's slope on the rows (``activated``: the layer's outputs) times the squared
    norm of the unit's outgoing weights."""
    slope = np.ones_like(activated)
    DERIVATIVES[activation](activated, slope)  # scikit-learn's own, in place
    return np.mean(slope**2, axis=0) * np.sum(np.asarray(outgoing) ** 2, axis=1)


def low_rank(
    inputs: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray,
    rank: int,
    importance: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The layer ``inputs @ weights + bias`` through a rank-``rank`` bottleneck fitted to its
    pre-activations on ``inputs``: ``(first, second, new bias, share of their energy kept)``.

    Z = the centred pre-activations (``inputs`` minus their mean, times ``weights``); D = each
    unit's ``importance`` to the power IMPORTANCE_POWER (I when None); V = the top right
    singular vectors of Z D. ``first = weights @ D @ V`` (the r codes), ``second`` = the least-
    squares reconstruction of every unit of Z from the codes. With D = I that is V.T, the
    closest rank-r map in least squares on these rows (Eckart-Young); with D, the closest in the
    D-weighted squares (V.T D^-1 where D > 0), and a unit of importance 0 still gets its best
    fit, never an unbounded one. The bias keeps the pre-activations' mean. Everything comes from
    the out x out Gram matrix of Z (only its top directions are used, which squaring the
    singular values does not blur), cheaper than an SVD of the rows."""
    mean = inputs.mean(axis=0)
    centred = (inputs - mean) @ weights
    gram = centred.T @ centred
    scale = np.ones(len(gram)) if importance is None else importance**IMPORTANCE_POWER
    _, vectors = np.linalg.eigh(scale[:, None] * gram * scale)  # ascending
    basis = scale[:, None] * vectors[:, ::-1][:, :rank]
    first = weights @ basis
    codes = basis.T @ gram @ basis
    second = np.linalg.lstsq(codes, basis.T @ gram, rcond=None)[0]
    new_bias = bias + mean @ weights - (mean @ first) @ second
    # Least squares: the energy reproduced is the reconstruction's own.
    kept = float(np.trace(second.T @ codes @ second)) / max(float(np.trace(gram)), 1e-300)
    return first, second, new_bias, min(kept, 1.0)


def mlp_factored(mlp: Any, ranks: dict[int, int], X: np.ndarray) -> tuple[Any, list[Factor], str]:
    """The network with each ``coefs_[k]`` of ``ranks`` replaced by its :func:`low_rank`
    product of rank ``ranks[k]`` (units weighted by :func:`unit_importance` through the next
    layer's weights as fitted), fitted on the rows ``X`` through the layers already factored,
    and the next layer then refitted by ridge least squares to reproduce its inputs in the
    original network (as the pruning does). The estimator holds the products; the factors say
    how the graph stores them; the text says what was done."""
    activation = ACTIVATIONS[mlp.activation]
    dtype = mlp.coefs_[0].dtype
    coefs = [np.array(w, dtype=np.float64) for w in mlp.coefs_]
    intercepts = [np.array(b, dtype=np.float64) for b in mlp.intercepts_]
    originals = hidden_activations(mlp, X)
    values = np.asarray(X, dtype=np.float64)
    factors: list[Factor] = []
    notes = []
    for layer in range(len(coefs) - 1):
        rank = ranks.get(layer)
        if rank is not None:
            activated = values @ coefs[layer] + intercepts[layer]
            activation(activated)
            importance = unit_importance(activated, coefs[layer + 1], mlp.activation)
            first, second, intercepts[layer], energy = low_rank(
                values, coefs[layer], intercepts[layer], rank, importance
            )
            coefs[layer] = (first @ second).astype(dtype)
            factors.append(Factor(coefs[layer], first, second))
            rows, columns = mlp.coefs_[layer].shape
            notes.append(
                f"rank {first.shape[1]} of layer {layer} ({rows}x{columns}, "
                f"{100 * energy:.1f}% of its pre-activations' energy)"
            )
        values = values @ coefs[layer] + intercepts[layer]
        activation(values)
        if rank is not None:
            target = originals[layer] @ mlp.coefs_[layer + 1] + mlp.intercepts_[layer + 1]
            coefs[layer + 1], intercepts[layer + 1] = _ridge(values, target)
    smaller = copy.copy(mlp)
    smaller.coefs_ = [w.astype(dtype) for w in coefs]
    smaller.intercepts_ = [b.astype(dtype) for b in intercepts]
    return smaller, factors, ", ".join(notes) + ", the next layer refitted by least squares"


def rank_series(mlp: Any, X: np.ndarray) -> Iterator[Shrunk]:
    """``rank-<fraction>`` for each of MLP_RANK_FRACTIONS that factors some matrix, a set of
    ranks already met not repeated; each factored only when the search asks for it."""
    seen: list[dict[int, int]] = []
    for fraction in MLP_RANK_FRACTIONS:
        ranks = factored_ranks(mlp, fraction)
        if not ranks or ranks in seen:
            continue
        seen.append(ranks)
        estimator, factors, text = mlp_factored(mlp, ranks, X)
        yield Shrunk(f"rank-{fraction:g}", text, estimator, tuple(factors))


def factorized(model: onnx.ModelProto, factors: Sequence[Factor]) -> onnx.ModelProto:
    """``model`` (skl2onnx's graph of an estimator that holds each factor's ``product`` as a
    weight matrix) with each MatMul by such a product replaced by a MatMul by ``first`` then
    one by ``second``, both float32: r x (in + out) weights stored instead of in x out, the
    answers changed by float32 rounding only. The int8 step then quantizes both MatMuls as it
    does any. A product found in no MatMul is a bug: ValueError."""
    if not factors:
        return model
    initializers = {init.name: init for init in model.graph.initializer}
    users = Counter(name for node in model.graph.node for name in node.input)
    left = list(factors)
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        init = initializers.get(node.input[1]) if node.op_type == "MatMul" else None
        # A shared initializer stays: another node still reads the whole matrix.
        match = _factor_of(init, left) if init is not None and users[init.name] == 1 else None
        if init is None or match is None:
            nodes.append(node)
            continue
        left.remove(match)
        name = init.name
        model.graph.initializer.remove(init)
        model.graph.initializer.extend(
            [
                onnx.numpy_helper.from_array(match.first.astype(np.float32), f"{name}_first"),
                onnx.numpy_helper.from_array(match.second.astype(np.float32), f"{name}_second"),
            ]
        )
        nodes.append(
            onnx.helper.make_node(
                "MatMul",
                [node.input[0], f"{name}_first"],
                [f"{name}_low_rank"],
                name=f"{node.name}_first",
            )
        )
        nodes.append(
            onnx.helper.make_node(
                "MatMul",
                [f"{name}_low_rank", f"{name}_second"],
                list(node.output),
                name=f"{node.name}_second",
            )
        )
    if left:
        raise ValueError(f"{len(left)} factored weight matrices are in no MatMul of the graph")
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def _factor_of(init: onnx.TensorProto, factors: list[Factor]) -> Factor | None:
    """The factor whose product is the initializer's value (as stored), if any."""
    weights = onnx.numpy_helper.to_array(init)
    same = (f for f in factors if np.array_equal(weights, f.product.astype(weights.dtype)))
    return next(same, None)


def activation_sample(rows: Any, seed: int) -> Any:
    """A seeded sample of at most ``ACTIVATION_ROWS`` rows (a DataFrame or an array)."""
    count = len(rows)
    if count <= ACTIVATION_ROWS:
        return rows
    picked = np.sort(np.random.default_rng(seed).permutation(count)[:ACTIVATION_ROWS])
    return rows.iloc[picked] if hasattr(rows, "iloc") else rows[picked]
