"""KernelSHAP's coalitions and constrained solver (functions/inference/explain.py) on games
whose Shapley values are known: the brute-force formula, and additive games."""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from math import factorial

import numpy as np
import pytest

from functions.inference.explain import BUDGET, Solver, coalitions

Game = Callable[[np.ndarray], float]  # a coalition mask -> its worth


def brute_force_shapley(game: Game, n: int) -> np.ndarray:
    """phi_j = sum over S without j of |S|! (n - |S| - 1)! / n! (v(S + j) - v(S))."""
    phi = np.zeros(n)
    for j in range(n):
        others = [k for k in range(n) if k != j]
        for size in range(n):
            weight = factorial(size) * factorial(n - size - 1) / factorial(n)
            for members in combinations(others, size):
                mask = np.zeros(n, dtype=bool)
                mask[list(members)] = True
                without = game(mask)
                mask[j] = True
                phi[j] += weight * (game(mask) - without)
    return phi


def _nonlinear_game(n: int, seed: int) -> Game:
    """A game with interactions of every order: a sigmoid of a quadratic form of the mask."""
    rng = np.random.default_rng(seed)
    linear, pairs = rng.normal(size=n), rng.normal(size=(n, n))

    def game(mask: np.ndarray) -> float:
        z = mask.astype(float)
        return float(1 / (1 + np.exp(-(linear @ z + z @ pairs @ z / n))))

    return game


def _solve(game: Game, n: int, budget: int = BUDGET) -> tuple[np.ndarray, bool]:
    found = coalitions(n, budget)
    values = np.array([game(mask) for mask in found.masks])
    empty, full = game(np.zeros(n, dtype=bool)), game(np.ones(n, dtype=bool))
    return Solver.of(found)(values, empty, full), found.exact


@pytest.mark.parametrize("n", [2, 3, 5, 8, 9])
def test_with_every_coalition_the_solution_is_the_shapley_values(n: int) -> None:
    game = _nonlinear_game(n, seed=n)
    phi, exact = _solve(game, n)
    assert exact
    np.testing.assert_allclose(phi, brute_force_shapley(game, n), rtol=0, atol=1e-12)


def test_sampled_coalitions_keep_efficiency_and_approach_the_shapley_values() -> None:
    n = 12  # 4094 proper coalitions: sizes 1, 2, 10 and 11 enumerated, the rest sampled
    game = _nonlinear_game(n, seed=7)
    phi, exact = _solve(game, n)
    assert not exact
    empty, full = game(np.zeros(n, dtype=bool)), game(np.ones(n, dtype=bool))
    assert phi.sum() == pytest.approx(full - empty, abs=1e-12)
    truth = brute_force_shapley(game, n)
    # An estimate: 0.6% of the total attribution at worst with this seed.
    assert np.abs(phi - truth).max() < 0.02 * np.abs(truth).sum()


def test_an_additive_game_is_explained_exactly_even_when_sampled() -> None:
    n = 30
    terms = np.random.default_rng(3).normal(size=n)

    def game(mask: np.ndarray) -> float:
        return float(terms @ mask)

    phi, exact = _solve(game, n)
    assert not exact
    np.testing.assert_allclose(phi, terms, atol=1e-9)


def test_coalitions_depend_on_their_arguments_only() -> None:
    first, second = coalitions(30), coalitions(30)
    assert np.array_equal(first.masks, second.masks)
    assert np.array_equal(first.weights, second.weights)
    assert len(first.masks) <= BUDGET
    # No empty or full coalition (the constraint holds them), and every one with its complement.
    sizes = first.masks.sum(axis=1)
    assert sizes.min() >= 1 and sizes.max() <= 29
    keys = {mask.tobytes() for mask in first.masks}
    assert all((~mask).tobytes() in keys for mask in first.masks)
    # The weights keep the kernel's total mass: sum over sizes of (n - 1) / (s (n - s)).
    mass = sum(29 / (s * (30 - s)) for s in range(1, 30))
    assert first.weights.sum() == pytest.approx(mass)
