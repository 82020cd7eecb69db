"""The all-pattern convex certificate for weight decay (milpland/search/convex_certificate.py) against
independent numbers:

- its lower bound never exceeds the minimum of the independent per-cell SLSQP reference of
  tests/test_weight_decay.py (which shares no code with milpland's solvers) on random tiny
  instances, and when it certifies, its objective equals that reference;
- the returned network reproduces the returned objective by the test's own forward pass and penalty;
- `dual_bound` is a bound for ANY multipliers: below the objective of random networks inside its region;
- the closed form of strong decay (every unit zero, c = 2 mean(y) / (2 + lam)) is certified by it.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_weight_decay import ACTIVATIONS, FAMILIES, objective, reference_minimum, small_table, table

from milpland.cells.arrangement import unit_patterns
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import spec_from_dict
from milpland.search.convex_certificate import convex_certificate
from milpland.search.convex_program import Decay, dual_bound, program_for
from milpland.search.solve import solve_global

REL = 1e-6
SLOW_SEEDS = range(1, 30)
COMBOS = [(f, k, lam) for f in FAMILIES for k in ("squared", "absolute") for lam in (0.01, 0.1)]


def test_the_bound_holds_and_a_certificate_is_the_reference_minimum():
    """Seed 0 of the 8 combinations; at least one is certified by the program (measured: 3 of 8), or this
    test checks nothing of the route."""
    assert sum(check_instance(family, kind, lam, 0) for family, kind, lam in COMBOS) >= 1


@pytest.mark.slow
def test_the_bound_holds_and_a_certificate_is_the_reference_minimum_30_seeds():
    """Seeds 1-29 (measured on seeds 0-4: 14 of 40 certified by the program, the rest by the cells)."""
    assert sum(check_instance(family, kind, lam, seed) for family, kind, lam in COMBOS for seed in SLOW_SEEDS) >= 1


def check_instance(family: str, kind: str, lam: float, seed: int) -> bool:
    """The checks of one instance; whether `solve` certified it by the program."""
    t = table(family, kind, lam, True, seed)
    spec = spec_from_dict(t)
    cert = convex_certificate(spec)
    reference = reference_minimum(t, family)
    scale = max(1e-3, abs(reference))
    assert cert.lower_bound <= reference + REL * scale, (cert.lower_bound, reference)
    mine = objective(cert.params, spec.X, spec.y, ACTIVATIONS[family], kind, lam, True)
    assert abs(mine - cert.objective) <= 1e-9 * max(1.0, abs(cert.objective))
    result = solve_global(spec)
    assert result.certified and abs(result.risk - reference) <= REL * scale, (result.risk, reference)
    if result.method != "convex-all-patterns":
        return False
    assert cert.units <= spec.width and result.params.W1.shape[0] == spec.width
    assert abs(objective(result.params, spec.X, spec.y, ACTIVATIONS[family], kind, lam, True)
               - result.risk) <= 1e-9 * max(1.0, abs(result.risk))
    return True


def test_the_dual_bound_holds_for_any_multipliers():
    rng = np.random.default_rng(3)
    spec = spec_from_dict(table("relu", "squared", 0.1, True, 0))
    act = spec.network.activation
    masks = unit_patterns(spec.X, act) == 1
    program = program_for(spec.X, spec.y, act, spec.loss, Decay(0.1, True), output_bias=True, masks=masks)
    n, G = spec.n, program.groups
    for _ in range(50):
        mu, nu = rng.normal(size=n), np.abs(rng.normal(size=(G, n)))
        rho = float(rng.uniform(0.1, 3.0))
        bound = dual_bound(program, mu, nu, rho)
        for _ in range(20):  # random width-3 networks whose balanced groups have norm <= rho
            W, b, v = rng.normal(size=(3, 1)), rng.normal(size=3), rng.normal(size=3)
            group = np.abs(v) * np.sqrt(W[:, 0] ** 2 + b ** 2)
            shrink = np.minimum(1.0, rho / np.maximum(group, 1e-300))
            params = OneHiddenParams(W1=W * shrink[:, None], b1=b * shrink, v=v, c=float(rng.normal()))
            assert bound <= spec.loss.objective(params, spec.X, spec.y, act) + 1e-12


def test_strong_decay_is_certified_by_the_program_in_closed_form():
    spec = spec_from_dict(small_table(weight_decay=10.0))
    result = solve_global(spec)
    c = 2 * spec.y.mean() / (2 + 10.0)
    want = float(np.mean((c - spec.y) ** 2) + 5.0 * c * c)
    assert result.method == "convex-all-patterns" and result.certified
    assert result.risk == pytest.approx(want, rel=1e-9) and result.lower_bound <= want + 1e-12
    assert np.allclose(result.params.v, 0.0)


@pytest.mark.parametrize("d,n,seed", [(2, 9, 0), (2, 14, 1), (3, 8, 2)])
def test_the_vertex_ray_patterns_hold_every_realisable_pattern(d, n, seed):
    """d >= 2: the patterns around the vertex rays contain every strictly realisable pattern, which
    `unit_patterns` finds by an LP each (a different method)."""
    from milpland.instance.activations import relu
    from milpland.search.convex_certificate import program_patterns

    X = np.random.default_rng(seed).uniform(-1, 1, (n, d))
    realisable = {tuple(p) for p in (unit_patterns(X, relu()) == 1).astype(int)}
    from_rays = {tuple(p) for p in program_patterns(X, relu()).astype(int)}
    assert realisable <= from_rays
