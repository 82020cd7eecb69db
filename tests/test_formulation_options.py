"""Every formulation / strategy option of the global solve gives the same certified global risk.

The reference is a brute-force enumeration written here (not milpland's code): every pair of
strictly realisable unit patterns (a linear dichotomy of the samples, found by an LP feasibility
check with scipy) in every sign class, each closed cell solved as a convex program with clarabel
from DESIGN §3 (scaled weights, g_ij >= 0 on active samples, <= 0 on inactive ones, the box).
Width 2, ReLU, tiny n.  Every option variant is compared with that number AND with the all-off
configuration.
"""

from __future__ import annotations

import itertools

import clarabel
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from milpland.cells.scaled import sign_class
from milpland.instance.spec import spec_from_dict
from milpland.search import bounds
from milpland.search.formulation import (
    ClassTemplate,
    FormulationOptions,
    build_master,
    class_arrangement,
    containing_simplices,
    lift_point,
)
from milpland.search.highs_backend import compile_model
from milpland.search.incumbents import MultistartOptions
from milpland.search.solve import SolveStrategy, solve_global

RTOL = 1e-6


# --- the independent reference ------------------------------------------------------------------

def realisable_patterns(X: np.ndarray) -> list[np.ndarray]:
    """Active sets S with some (u, a): u.x_i + a >= 1 on S and <= -1 off S (strict dichotomies)."""
    n, d = X.shape
    out = []
    for bits in itertools.product([0, 1], repeat=n):
        s = np.array(bits, dtype=bool)
        sign = np.where(s, -1.0, 1.0)  # rows: -(u.x + a) <= -1 on S, (u.x + a) <= -1 off S
        A = sign[:, None] * np.hstack([X, np.ones((n, 1))])
        res = linprog(np.zeros(d + 1), A_ub=A, b_ub=-np.ones(n), bounds=[(None, None)] * (d + 1), method="highs")
        if res.status == 0:
            out.append(s)
    return out


def cell_optimum(X, y, patterns, signs, B, loss) -> float:
    """min over the closed cell of the risk, with clarabel.  z = (u_1, a_1, u_2, a_2, ..., c)."""
    n, d = X.shape
    m = len(patterns)
    q = d + 1
    nz = m * q + 1
    Phi = np.zeros((n, nz))
    Phi[:, -1] = 1.0
    rows, rhs = [], []
    for j, (S, s) in enumerate(zip(patterns, signs)):
        feat = np.hstack([X, np.ones((n, 1))])
        Phi[:, j * q:(j + 1) * q] = s * S[:, None] * feat
        for i in range(n):
            r = np.zeros(nz)
            r[j * q:(j + 1) * q] = -feat[i] if S[i] else feat[i]
            rows.append(r)
            rhs.append(0.0)
    for col in range(m * q):
        e = np.zeros(nz)
        e[col] = 1.0
        rows += [e, -e]
        rhs += [B, B]
    G, h = np.array(rows), np.array(rhs)
    w = 1.0 / n
    if loss == "squared":
        P = sp.csc_matrix(2 * w * Phi.T @ Phi)
        qv = -2 * w * Phi.T @ y
        const = w * y @ y
        Gf = G
    else:  # absolute: variables z, t;  t >= +-(Phi z - y)
        P = sp.csc_matrix((nz + n, nz + n))
        qv = np.concatenate([np.zeros(nz), np.full(n, w)])
        const = 0.0
        eye = np.eye(n)
        Gf = np.vstack([np.hstack([G, np.zeros((len(G), n))]), np.hstack([Phi, -eye]), np.hstack([-Phi, -eye])])
        h = np.concatenate([h, y, -y])
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = 1e-11
    settings.tol_feas = 1e-11
    sol = clarabel.DefaultSolver(P, qv, sp.csc_matrix(Gf), h, [clarabel.NonnegativeConeT(len(h))], settings).solve()
    assert str(sol.status) in ("Solved", "AlmostSolved")
    return float(sol.obj_val + const)


def brute_force(X, y, B, loss, width=2) -> float:
    pats = realisable_patterns(X)
    best = np.inf
    for n_pos in range(width + 1):
        signs = [1.0] * n_pos + [-1.0] * (width - n_pos)
        for combo in itertools.product(range(len(pats)), repeat=width):
            # units of equal sign are interchangeable: keep one order per sign block
            if any(combo[j] > combo[j + 1] for j in range(width - 1) if signs[j] == signs[j + 1]):
                continue
            best = min(best, cell_optimum(X, y, [pats[k] for k in combo], signs, B, loss))
    return best


# --- instances ---------------------------------------------------------------------------------

def make_spec(n, d, loss, seed, B=50.0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    y = np.sin(3 * X[:, 0]) + (X[:, 1] if d > 1 else 0) + 0.3 * rng.normal(size=n)
    return spec_from_dict({
        "name": f"t{n}-{d}-{loss}-{seed}",
        "data": {"x": X.tolist(), "y": y.tolist()},
        "network": {"hidden": [2], "activation": "relu"},
        "loss": {"kind": loss},
        "box": {"weight": B},
        "solve": {"time_limit": 60, "seed": 0},
    })


INSTANCES = [(6, 1, "squared", 1), (6, 1, "absolute", 2), (5, 2, "squared", 3)]

ALL_OFF_F = FormulationOptions(threshold_1d=False, threshold_hull_1d=False, geometry_cuts=False,
                               tight_bounds=False, obbt=False, order_units="none", cache_classes=False)
ALL_OFF_S = SolveStrategy(multistart=MultistartOptions(starts=0), cutoff=False, warm_start=False,
                          incumbent_class_first=False, candidate_tangents=0, tangent_grid=0)
VARIANTS = {
    "default": (FormulationOptions(), SolveStrategy()),
    "no-hull": (FormulationOptions(threshold_hull_1d=False), SolveStrategy()),
    "no-threshold": (FormulationOptions(threshold_hull_1d=False, threshold_1d=False), SolveStrategy()),
    "no-geometry": (FormulationOptions(geometry_cuts=False), SolveStrategy()),
    "loose-bounds": (FormulationOptions(tight_bounds=False, threshold_hull_1d=False), SolveStrategy()),
    "obbt": (FormulationOptions(obbt=True, threshold_hull_1d=False), SolveStrategy()),
    "order-bias": (FormulationOptions(order_units="bias"), SolveStrategy()),
    "order-count": (FormulationOptions(order_units="count", threshold_hull_1d=False), SolveStrategy()),
    "no-cache": (FormulationOptions(cache_classes=False), SolveStrategy()),
    "no-multistart": (FormulationOptions(), SolveStrategy(multistart=MultistartOptions(starts=0))),
    "no-cutoff": (FormulationOptions(), SolveStrategy(cutoff=False)),
    "no-warm-start": (FormulationOptions(), SolveStrategy(warm_start=False)),
    "tangent-grid": (FormulationOptions(), SolveStrategy(tangent_grid=7)),
    "everything-on": (FormulationOptions(obbt=True, order_units="bias"),
                      SolveStrategy(tangent_grid=5, candidate_tangents=8)),
}


@pytest.fixture(scope="module")
def references():
    out = {}
    for args in INSTANCES:
        spec = make_spec(*args)
        brute = brute_force(spec.X, spec.y, spec.box.weight, spec.loss.kind)
        off = solve_global(spec, formulation=ALL_OFF_F, strategy=ALL_OFF_S)
        out[args] = (spec, brute, off)
    return out


def check(result, spec, brute):
    # an optimum on the box (absolute loss likes steep units) is a minimum over the box: not
    # "certified", but its bounds must still close and agree with the enumeration over the box
    assert result.status == "optimal" and (result.certified or result.box_active)
    assert result.risk - result.lower_bound <= RTOL * result.risk + 1e-12
    assert result.verification.ok
    f = result.params.forward(spec.X, spec.network.activation)
    assert spec.loss.risk(f, spec.y) == pytest.approx(result.risk, rel=1e-9, abs=1e-12)
    assert result.risk == pytest.approx(brute, rel=RTOL, abs=1e-10)
    assert result.lower_bound <= brute * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("args", INSTANCES, ids=lambda a: f"n{a[0]}-d{a[1]}-{a[2]}")
def test_all_off_matches_brute_force(references, args):
    spec, brute, off = references[args]
    check(off, spec, brute)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("args", INSTANCES, ids=lambda a: f"n{a[0]}-d{a[1]}-{a[2]}")
def test_variant_matches_brute_force_and_all_off(references, args, variant):
    spec, brute, off = references[args]
    formulation, strategy = VARIANTS[variant]
    result = solve_global(spec, formulation=formulation, strategy=strategy)
    check(result, spec, brute)
    assert result.risk == pytest.approx(off.risk, rel=RTOL, abs=1e-10)
    assert result.options["formulation"] == formulation.describe()


def test_parallel_classes_match(references):
    spec, brute, off = references[INSTANCES[0]]
    result = solve_global(spec, strategy=SolveStrategy(processes=2))
    check(result, spec, brute)
    assert result.risk == pytest.approx(off.risk, rel=RTOL, abs=1e-10)


# --- pieces ------------------------------------------------------------------------------------

def entries(compiled) -> dict:
    """{(row name, column name): value} over the rows that constrain anything."""
    A = compiled.A.tocoo()
    free = (compiled.row_lower <= -bounds.INF) & (compiled.row_upper >= bounds.INF)
    return {(compiled.rows[r].name, compiled.columns[c].name): v
            for r, c, v in zip(A.row, A.col, A.data) if not free[r] and v != 0.0}


@pytest.mark.parametrize("d, options", [
    (1, FormulationOptions()),
    (1, FormulationOptions(threshold_hull_1d=False, order_units="count")),
    (2, FormulationOptions(order_units="bias")),
])
def test_class_template_equals_a_fresh_build(d, options):
    spec = make_spec(7, d, "squared", 4)
    spec = spec_from_dict({**_table(spec), "network": {"hidden": [3], "activation": "relu"}})
    template = ClassTemplate(spec, options)
    for n_pos in range(4):
        signs = sign_class(n_pos, 3)
        model = build_master(spec, signs, options)  # kept alive: the compiled rows name themselves through it
        direct = compile_model(model)
        assert entries(template.for_class(signs)) == entries(direct)


def _table(spec) -> dict:
    return {"name": spec.name, "data": {"x": spec.X.tolist(), "y": spec.y.tolist()},
            "loss": {"kind": spec.loss.kind}, "box": {"weight": spec.box.weight}}


@pytest.mark.parametrize("hull", [True, False])
def test_lifted_point_is_feasible_with_its_risk_as_objective(hull):
    spec = make_spec(8, 1, "absolute", 5)
    options = FormulationOptions(threshold_hull_1d=hull, order_units="bias")
    rng = np.random.default_rng(0)
    from milpland.cells.scaled import ScaledParams
    theta = ScaledParams(U=rng.normal(size=(2, 1)), a=rng.normal(size=2), rho=np.ones(2), c=0.3,
                         signs=np.array([-1.0, 1.0]))
    G = theta.scaled_pre_activations(spec.X)
    arranged, _ = class_arrangement(spec, theta, (G > 0).astype(int), "bias")
    template = ClassTemplate(spec, options)
    compiled = template.for_class(arranged.signs)
    x = lift_point(template, arranged)
    assert compiled.max_violation(x) < 1e-9
    f = np.maximum(G, 0.0) @ theta.signs + 0.3  # plain forward pass
    assert compiled.cost @ x + compiled.offset == pytest.approx(np.mean(np.abs(f - spec.y)), rel=1e-12)


def test_simplices_contain_their_sample():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(30, 2))
    found = containing_simplices(X, neighbours=8, per_sample=2)
    assert len(found) > 20
    for k, S in found:
        # x_k = sum lambda_s x_s, lambda >= 0, sum 1: feasibility LP (scipy)
        A_eq = np.vstack([X[list(S)].T, np.ones(len(S))])
        res = linprog(np.zeros(len(S)), A_eq=A_eq, b_eq=np.append(X[k], 1.0), bounds=[(0, None)] * len(S))
        assert res.status == 0


def test_geometry_implications_hold_for_random_networks():
    """The rule 'ties count as active' satisfies every simplex implication (what the cuts assume)."""
    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, size=(25, 2))
    found = containing_simplices(X, neighbours=8, per_sample=3)
    for _ in range(200):
        u, a = rng.normal(size=2), rng.normal()
        active = X @ u + a >= 0
        for k, S in found:
            if active[list(S)].all():
                assert active[k]
            if not active[list(S)].any():
                assert not active[k]


def test_cutoff_bounds_hold_for_points_below_the_cutoff():
    spec = make_spec(10, 1, "squared", 6)
    rng = np.random.default_rng(3)
    for _ in range(100):
        f = spec.y + rng.normal(scale=0.3, size=spec.n)
        risk = np.mean((f - spec.y) ** 2)
        lo, hi, e_hi = bounds.cutoff_bounds(spec, risk * 1.0001)
        assert np.all(f >= lo) and np.all(f <= hi)
        assert np.all((f - spec.y) ** 2 <= e_hi)
        # a residual of sqrt(n * cutoff) in one sample alone already reaches the cutoff
        assert hi[0] - spec.y[0] == pytest.approx(np.sqrt(spec.n * risk * 1.0001), rel=1e-8)
