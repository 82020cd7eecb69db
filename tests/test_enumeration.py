"""Unit patterns and cell counts against exhaustive LP feasibility (scipy) over all K^n assignments.

The reference shares nothing with milpland.landscape.enumeration: every one of the K^n assignments of
pieces to samples is tested with its own scipy LP  max eps  s.t.  t_{k-1} + eps <= w.x_i + b
<= t_k - eps  (|w|, |b| <= 1e3, eps <= 1), and the cells are counted by brute force over all
m-tuples of realisable patterns and all 2^m sign vectors, identified up to unit permutation
(and, for odd activations, up to negating a unit: -sigma(z) = sigma(-z)).
"""

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from milpland import spec_from_dict
from milpland.errors import MilplandError
from milpland.instance import activations as acts
from milpland.landscape.enumeration import (
    count_cells,
    enumerate_minima,
    generate_cells,
    unit_patterns,
)


def exhaustive_patterns(X, act, allowed=None):
    n, d = X.shape
    K = act.n_pieces
    t = act.breakpoints
    keep = []
    for assign in itertools.product(range(K), repeat=n):
        if allowed is not None and any(k not in allowed[i] for i, k in enumerate(assign)):
            continue
        A_ub, b_ub = [], []
        for i, k in enumerate(assign):
            if k > 0:  # t_{k-1} + eps <= w.x + b
                A_ub.append(np.r_[-X[i], -1.0, 1.0])
                b_ub.append(-t[k - 1])
            if k < K - 1:  # w.x + b + eps <= t_k
                A_ub.append(np.r_[X[i], 1.0, 1.0])
                b_ub.append(t[k])
        res = linprog(np.r_[np.zeros(d + 1), -1.0], A_ub=np.array(A_ub), b_ub=np.array(b_ub),
                      bounds=[(-1e3, 1e3)] * (d + 1) + [(0.0, 1.0)], method="highs")
        if res.status == 0 and -res.fun > 1e-7:
            keep.append(assign)
    return np.array(sorted(keep), dtype=int).reshape(len(keep), n)


RNG = np.random.default_rng(7)
FOUR_PIECES = acts.from_pieces("pwl4", [-1.0, 0.0, 2.0], [0.1, 1.0, 0.3, 0.8])
CASES = {
    "relu-d1": (np.linspace(-1, 1, 6)[:, None], acts.relu()),
    "relu-d1-repeated-x": (np.array([[-1.0], [0.0], [0.0], [0.5], [1.0]]), acts.relu()),
    "hardtanh-d1": (np.linspace(-1, 1, 5)[:, None], acts.hardtanh()),
    "pwl4-d1": (np.array([[-1.0], [-0.4], [0.1], [0.7], [1.0]]), FOUR_PIECES),
    "relu-d2": (RNG.uniform(-1, 1, size=(6, 2)), acts.relu()),
    "relu-d2-collinear": (np.array([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0], [-0.5, -0.5], [0.3, -0.8]]), acts.relu()),
    "leaky-d2": (RNG.uniform(-1, 1, size=(5, 2)), acts.leaky_relu(0.1)),
    "hardtanh-d2": (RNG.uniform(-1, 1, size=(5, 2)), acts.hardtanh()),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_unit_patterns_equal_exhaustive_lp(name):
    X, act = CASES[name]
    got = unit_patterns(X, act)
    want = exhaustive_patterns(X, act)
    assert got.shape == want.shape
    assert np.array_equal(got, want)


def test_closed_form_counts_d1_relu():
    """n distinct points on a line: 2n threshold patterns (both directions, all/none shared)."""
    for n in (3, 5, 8):
        assert unit_patterns(np.linspace(0, 1, n)[:, None], acts.relu()).shape[0] == 2 * n


@pytest.mark.parametrize("d,n,seed", [(2, 8, 0), (2, 9, 1), (3, 7, 0), (3, 7, 1), (3, 8, 2)])
def test_closed_form_counts_general_position_relu(d, n, seed):
    """n points in general position in R^d have 2 sum_{k<=d} C(n-1, k) affine dichotomies (Cover
    1965).  Before the presolve retry HiGHS returned status "unknown" on some margin LPs and
    7 Gaussian points in 3-D (seed 0 here) lost 2 of their 84 patterns."""
    from math import comb

    X = np.random.default_rng(10 * d + n + seed).normal(size=(n, d))
    assert unit_patterns(X, acts.relu()).shape[0] == 2 * sum(comb(n - 1, k) for k in range(d + 1))


def test_a_limited_pattern_search_stops_at_the_limit_and_the_cell_threshold_is_exact():
    """Cover's count is 2 (1 + 7 + 21) = 58 for 8 points in the plane; with limit 10 the search
    returns 10 of them.  patterns_for_cells gives the first P whose cells exceed the cap, checked
    against the closed form C(P + p - 1, p) C(P + m - p - 1, m - p) summed over the sign classes."""
    from math import comb

    from milpland.landscape.enumeration import patterns_for_cells

    X = np.random.default_rng(1).normal(size=(8, 2))
    every = unit_patterns(X, acts.relu())
    assert every.shape[0] == 58
    limited = unit_patterns(X, acts.relu(), limit=10)
    assert limited.shape[0] == 10 and set(map(tuple, limited)) <= set(map(tuple, every))

    def cells(P, m):  # width m, ReLU: m + 1 sign classes
        return sum(comb(P + p - 1, p) * comb(P + m - p - 1, m - p) for p in range(m + 1))

    for cap, m in ((3, 2), (1000, 2), (74_000_000, 3), (10**9, 4)):
        P = patterns_for_cells(cap, m, acts.relu())
        assert cells(P, m) > cap >= cells(P - 1, m)


def test_restricted_patterns_equal_filtered_exhaustive():
    X, act = CASES["hardtanh-d2"]
    rng = np.random.default_rng(3)
    for _ in range(4):
        allowed = []
        for _i in range(X.shape[0]):
            pieces = [k for k in range(act.n_pieces) if rng.random() < 0.6]
            allowed.append(pieces or [int(rng.integers(act.n_pieces))])
        got = unit_patterns(X, act, allowed=allowed)
        want = exhaustive_patterns(X, act, allowed=allowed)
        assert np.array_equal(got.reshape(-1, X.shape[0]), want)


def brute_cell_count(patterns, width, act):
    K = act.n_pieces
    seen = set()
    for tup in itertools.product(range(len(patterns)), repeat=width):
        for signs in itertools.product((1, -1), repeat=width):
            units = []
            for idx, s in zip(tup, signs):
                col = tuple(patterns[idx])
                if act.odd and s < 0:
                    s, col = 1, tuple(K - 1 - k for k in col)
                units.append((s, col))
            seen.add(tuple(sorted(units)))
    return len(seen)


@pytest.mark.parametrize("name,width", [("relu-d1", 3), ("leaky-d2", 2), ("hardtanh-d1", 2)])
def test_cell_counts_equal_brute_force(name, width):
    X, act = CASES[name]
    patterns = exhaustive_patterns(X, act)
    want = brute_cell_count(patterns, width, act)
    assert count_cells(len(patterns), width, act) == want
    cells = list(generate_cells(unit_patterns(X, act), width, act))
    assert len(cells) == want
    keys = {tuple(sorted(zip(c.signs.tolist(), map(tuple, c.pattern.T.tolist())))) for c in cells}
    assert len(keys) == want  # no cell twice


def test_refuses_beyond_max_cells_with_the_count():
    X, act = CASES["relu-d1"]
    spec = spec_from_dict({"name": "t", "data": {"x": X[:, 0].tolist(), "y": np.sin(3 * X[:, 0]).tolist()},
                           "network": {"hidden": [3], "activation": "relu"}})
    want = brute_cell_count(exhaustive_patterns(X, act), 3, act)
    with pytest.raises(MilplandError, match=f"has {want} cells"):
        enumerate_minima(spec, max_cells=want - 1)
