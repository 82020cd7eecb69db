"""The hull relaxation's node LP for the absolute and hinge losses (milpland/hull_lp.py): the
certified bound against direct evaluation, and warm starts against cold solves.  Its bound against
the cells of every completion is in tests/test_pattern_bnb.py; bnb with it against the brute force
in tests/test_global_agreement.py."""

from __future__ import annotations

import numpy as np
import pytest

from milpland.instance.activations import relu
from milpland.search.hull_lp import HullLp, minorant_bound
from milpland.search.unit_hull import UNDECIDED, UnitHull


def hull_lp(X, y, kind, *, width=2):
    hull = UnitHull(X, y, relu(), width=width, box_weight=5.0, output_bias=True, c_bound=20.0,
                    loss_weight=1.0 / len(y))
    return HullLp(hull, kind)


def loss_sum(kind, f, y):
    return np.sum(np.abs(f - y)) if kind == "absolute" else np.sum(np.maximum(0.0, 1.0 - y * f))


@pytest.mark.parametrize("kind", ["absolute", "hinge"])
def test_minorant_bound_is_below_the_risk_of_every_point_in_the_box_for_any_slopes(kind):
    """loss_i(f) >= s_i (f - y_i) for s in the loss's range: the bound from random slopes never
    exceeds the risk of random points of the box (a wrong sign or a missing box term would)."""
    rng = np.random.default_rng(0)
    n, k = 7, 12
    Phi = rng.normal(size=(n, k))
    y = rng.choice([-1.0, 1.0], size=n) if kind == "hinge" else rng.normal(size=n)
    lower, upper = np.r_[np.zeros(k - 1), -3.0], np.r_[rng.uniform(0, 2, k - 1), 3.0]
    for _ in range(200):
        s = rng.uniform(-1, 1, n) if kind == "absolute" else -rng.uniform(0, 1, n) * y
        bound = minorant_bound(Phi, y, s, lower, upper, 0.5)
        z = rng.uniform(lower, upper)
        assert bound <= 0.5 * loss_sum(kind, Phi @ z, y) + 1e-12


@pytest.mark.parametrize("kind", ["absolute", "hinge"])
def test_a_warm_started_node_gives_the_cold_bound_and_a_point_of_that_risk(kind):
    """From the parent's basis the child LP reaches the same optimum as from scratch; the
    returned weights, as the relaxation's outputs, have the certified bound as their risk."""
    rng = np.random.default_rng(1)
    n, width = 9, 2
    X = rng.uniform(-1, 1, (n, 2))
    y = rng.choice([-1.0, 1.0], size=n) if kind == "hinge" else rng.normal(size=n)
    lp = hull_lp(X, y, kind, width=width)
    signs = np.array([1.0, -1.0])
    parent = np.full((n, width), UNDECIDED, dtype=np.int8)
    parent[:3, 0] = 1
    child = lp.hull.propagate(np.where(np.arange(n)[:, None] == 5, 0, parent).astype(np.int8))
    *_, basis = lp.solve(parent, signs)
    warm = lp.solve(child, signs, basis=basis)
    cold = hull_lp(X, y, kind, width=width).solve(child, signs)
    assert warm[2] == pytest.approx(cold[2], rel=1e-9, abs=1e-12)
    weights, c, bound, _ = warm
    f = signs @ (weights @ lp.hull.F) + c
    assert loss_sum(kind, f, y) / n == pytest.approx(bound, rel=1e-7, abs=1e-10)
