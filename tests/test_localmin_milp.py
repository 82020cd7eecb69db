"""The local-minima MILP (milpland.landscape.localmin_milp) against an independent brute-force listing.

Truth, written here from DESIGN §3/§5 with numpy, scipy.optimize.linprog and clarabel only
(no milpland solver code): every strictly realisable unit pattern (thresholds in 1-D, an LP per
0/1 assignment in 2-D), every cell (multisets of unit patterns per sign class), and for each cell

- the unconstrained cell minimum: least squares (numpy) or least absolute deviations (clarabel);
- the largest interior margin of a minimiser inside the box: max mu s.t. every signed scaled
  pre-activation >= mu, |u~|, |a~| <= B, theta~ a minimiser (clarabel LP).

The cell holds an eps-interior local minimum iff that margin is >= eps; its risk is the level.
"""

from __future__ import annotations

import itertools
import json

import clarabel
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from milpland.errors import MilplandError
from milpland.instance.spec import spec_from_dict
from milpland.landscape.localmin_milp import (
    ClassWalk,
    find_local_minima,
    residual_bounds,
)

EPS = 1e-6
BOX = 10.0
AMBIGUOUS = (EPS / 20, EPS * 20)  # brute-force margins here would make the comparison meaningless


# ----------------------------------------------------------------------------------------------
# brute force
# ----------------------------------------------------------------------------------------------


def make_spec(seed, n, d, width, act, loss, box=BOX, *, bias=True, reduction="mean"):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n, d))
    y = rng.normal(size=n)
    network = {"hidden": [width], "activation": act, "output_bias": bias}
    if act == "leaky_relu":
        network["alpha"] = 0.2
    if act == "two_slope":
        network.update(s_plus=2.0, s_minus=-0.5)
    table = {"name": f"lm-{act}-{loss}-s{seed}", "data": {"x": X.tolist(), "y": y.tolist()},
             "network": network, "loss": {"kind": loss, "reduction": reduction}, "box": {"weight": box}}
    return spec_from_dict(table)


def unit_patterns(X):
    """Strictly realisable 0/1 patterns of one unit (1 = g > 0)."""
    n, d = X.shape
    if d == 1:
        xs = np.sort(X[:, 0])
        cuts = np.r_[xs[0] - 1.0, (xs[:-1] + xs[1:]) / 2, xs[-1] + 1.0]
        pats = {tuple((X[:, 0] > t).astype(int)) for t in cuts} | {tuple((X[:, 0] < t).astype(int)) for t in cuts}
        return sorted(pats)
    lifted = np.column_stack([X, np.ones(n)])
    out = []
    for bits in itertools.product((0, 1), repeat=n):
        side = np.where(np.array(bits) == 1, 1.0, -1.0)
        # max t s.t. side_i (w . x~_i) >= t, t <= 1
        res = linprog(np.r_[np.zeros(d + 1), -1.0], A_ub=np.column_stack([-side[:, None] * lifted, np.ones(n)]),
                      b_ub=np.zeros(n), bounds=[(None, None)] * (d + 1) + [(None, 1.0)], method="highs")
        if res.status == 0 and -res.fun > 1e-9:
            out.append(bits)
    return out


def all_cells(X, width):
    pats = unit_patterns(X)
    for p in range(width + 1):
        for pos in itertools.combinations_with_replacement(pats, p):
            for neg in itertools.combinations_with_replacement(pats, width - p):
                yield np.array(pos + neg, dtype=int).T.reshape(X.shape[0], width), \
                    np.r_[np.ones(p), -np.ones(width - p)]


def cell_arrays(X, pattern, signs, slopes, bias=True):
    """Phi (f = Phi theta, theta = (U row-major, a, c)) and signed rows G (G theta = +-g_ij);
    without output bias the c column is dropped."""
    n, d = X.shape
    m = pattern.shape[1]
    alpha = np.asarray(slopes)[pattern] * signs  # (n, m)
    lifted = np.column_stack([X, np.ones(n)])
    p = m * (d + 1) + 1
    Phi = np.zeros((n, p))
    G = np.zeros((n * m, p))
    for j in range(m):
        Phi[:, j * d:(j + 1) * d] = alpha[:, j:j + 1] * X
        Phi[:, m * d + j] = alpha[:, j]
        side = np.where(pattern[:, j] == 1, 1.0, -1.0)
        G[j * n:(j + 1) * n, j * d:(j + 1) * d] = side[:, None] * X
        G[j * n:(j + 1) * n, m * d + j] = side
    Phi[:, -1] = 1.0
    if not bias:
        return Phi[:, :-1], G[:, :-1], lifted
    return Phi, G, lifted


class SolverFailure(RuntimeError):
    pass


def clarabel_lp(c, A_eq, b_eq, A_ub, b_ub):
    """min c.x s.t. A_eq x = b_eq, A_ub x <= b_ub; (x, value), None when infeasible.
    Any other outcome raises: a cell must never drop out of the truth silently."""
    A = np.vstack([A_eq, A_ub])
    b = np.r_[b_eq, b_ub]
    cones = ([clarabel.ZeroConeT(A_eq.shape[0])] if A_eq.shape[0] else []) + [clarabel.NonnegativeConeT(A_ub.shape[0])]
    s = clarabel.DefaultSettings()
    s.verbose = False
    s.tol_gap_abs = s.tol_gap_rel = s.tol_feas = 1e-10
    s.max_iter = 500
    nv = len(c)
    sol = clarabel.DefaultSolver(sp.csc_matrix((nv, nv)), np.asarray(c, float), sp.csc_matrix(A), b, cones, s).solve()
    status = str(sol.status)
    if status == "PrimalInfeasible":
        return None
    if status not in ("Solved", "AlmostSolved"):
        raise SolverFailure(status)
    x = np.array(sol.x)
    return x, float(np.dot(c, x))


def cell_level(X, y, pattern, signs, slopes, loss, box, *, bias=True, w=None):
    """(level, margin, residual) of the cell's unconstrained minimum; margin = the largest
    smallest signed g of a minimiser inside the box (<= 1), -inf if none.  w: risk weight."""
    n = len(y)
    w = 1.0 / n if w is None else w
    Phi, G, _ = cell_arrays(X, pattern, signs, slopes, bias)
    p = Phi.shape[1]
    nb = p - 1 if bias else p  # |U|, |a| <= B (c free)
    box_rows = np.vstack([np.eye(p)[:nb], -np.eye(p)[:nb]])
    box_rhs = np.full(2 * nb, box)
    if loss == "squared":
        theta0 = np.linalg.lstsq(Phi, y, rcond=None)[0]
        r = Phi @ theta0 - y
        level = w * float(r @ r)
        _, s, vt = np.linalg.svd(Phi)
        N = vt[int(np.sum(s > 1e-10 * s[0])):].T  # minimisers: theta0 + N z
        k = N.shape[1]
        # vars (z, mu): max mu s.t. mu - G(theta0 + N z) <= 0, box, mu <= 1
        A_ub = np.vstack([np.column_stack([-G @ N, np.ones(len(G))]),
                          np.column_stack([box_rows @ N, np.zeros(len(box_rows))]),
                          np.r_[np.zeros(k), 1.0][None, :]])
        b_ub = np.r_[G @ theta0, box_rhs - box_rows @ theta0, 1.0]
        got = clarabel_lp(np.r_[np.zeros(k), -1.0], np.zeros((0, k + 1)), np.zeros(0), A_ub, b_ub)
        return level, (-got[1] if got else -np.inf), r
    # absolute: vars (theta, t)
    E = np.eye(n)
    A_fit = np.vstack([np.hstack([Phi, -E]), np.hstack([-Phi, -E])])
    b_fit = np.r_[y, -y]
    got = clarabel_lp(np.r_[np.zeros(p), np.ones(n)], np.zeros((0, p + n)), np.zeros(0), A_fit, b_fit)
    S = got[1]
    r = Phi @ got[0][:p] - y
    # vars (theta, t, mu): max mu s.t. sum t <= S (1 + slack), fit rows, mu - G theta <= 0, box, mu <= 1
    nz = np.zeros
    A_ub = np.vstack([
        np.hstack([A_fit, nz((2 * n, 1))]),
        np.r_[nz(p), np.ones(n), 0.0][None, :],
        np.hstack([-G, nz((len(G), n)), np.ones((len(G), 1))]),
        np.hstack([box_rows, nz((len(box_rows), n + 1))]),
        np.r_[nz(p + n), 1.0][None, :],
    ])
    for slack in (1e-9, 1e-8, 1e-7):  # the optimal face is thin: an interior-point solver may need room
        b_ub = np.r_[b_fit, S * (1 + slack) + 1e-12, nz(len(G)), box_rhs, 1.0]
        try:
            got2 = clarabel_lp(np.r_[nz(p + n), -1.0], nz((0, p + n + 1)), nz(0), A_ub, b_ub)
            break
        except SolverFailure:
            if slack == 1e-7:
                raise
    return w * S, (-got2[1] if got2 else -np.inf), r


def brute_levels(spec, resolution):
    """Distinct eps-interior local-minimum levels (merged within `resolution`), all residuals."""
    X, y = spec.X, spec.y
    slopes = spec.network.activation.slopes
    w = 1.0 / len(y) if spec.loss.reduction == "mean" else 0.5
    levels, residuals, ambiguous, n_cells = [], [], 0, 0
    for pattern, signs in all_cells(X, spec.width):
        n_cells += 1
        level, margin, r = cell_level(X, y, pattern, signs, slopes, spec.loss.kind, spec.box.weight,
                                      bias=spec.network.output_bias, w=w)
        residuals.append(r)
        if AMBIGUOUS[0] <= margin <= AMBIGUOUS[1]:
            ambiguous += 1
        if margin >= EPS:
            levels.append(level)
    merged = []
    for v in sorted(levels):
        if not merged or v - merged[-1] > resolution:
            merged.append(v)
    return merged, residuals, ambiguous, n_cells


# ----------------------------------------------------------------------------------------------
# independent forward pass
# ----------------------------------------------------------------------------------------------


def risk_of(params_W1, b1, v, c, spec):
    a0, a1 = spec.network.activation.slopes
    Z = spec.X @ params_W1.T + b1
    H = np.where(Z > 0, a1 * Z, a0 * Z)
    r = H @ v + c - spec.y
    w = 1.0 / len(r) if spec.loss.reduction == "mean" else 0.5
    return w * float(np.sum(r * r) if spec.loss.kind == "squared" else np.sum(np.abs(r)))


def check_perturbations(spec, mn, rng):
    """Risk never drops under random perturbations of the ordinary weights (radius 1e-6..1e-3)."""
    P = mn.params
    base = risk_of(P.W1, P.b1, P.v, P.c, spec)
    assert base == pytest.approx(mn.risk, rel=1e-9, abs=1e-12)
    Z = P.pre_activations(spec.X)
    lifted_norm = np.sqrt(np.sum(spec.X**2, axis=1) + 1.0)
    safe = float(np.min(np.abs(Z) / lifted_norm[:, None]))  # no pattern change within this radius
    assert safe > 1e-6, f"certified point too close to a kink: {safe}"
    # beyond `safe` another cell may legitimately go lower: a local minimum promises a neighbourhood only
    sizes = [P.W1.size, P.b1.size, P.v.size, 1 if spec.network.output_bias else 0]  # c is no weight without bias
    for radius in [r for r in (1e-6, 1e-5, 1e-4, 1e-3) if r < safe]:
        for _ in range(15):
            step = rng.normal(size=sum(sizes))
            step *= radius / np.linalg.norm(step)
            dW, db, dv, dc = np.split(step, np.cumsum(sizes)[:-1])
            got = risk_of(P.W1 + dW.reshape(P.W1.shape), P.b1 + db, P.v + dv, P.c + dc.sum(), spec)
            assert got >= base - 1e-9 * max(base, 1e-12), (radius, base, got, safe)


# ----------------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------------

CASES = [
    # seed, n, d, width, activation, loss, output bias, reduction
    (1, 6, 1, 2, "relu", "squared", True, "mean"),
    (2, 6, 1, 2, "leaky_relu", "absolute", True, "mean"),
    (3, 5, 2, 2, "relu", "absolute", True, "mean"),
    (4, 5, 2, 2, "leaky_relu", "squared", True, "mean"),
    (6, 5, 1, 2, "relu", "squared", False, "half_sum"),
    (7, 5, 1, 2, "leaky_relu", "absolute", False, "half_sum"),
    (8, 4, 1, 3, "relu", "squared", True, "mean"),
    (9, 4, 2, 3, "leaky_relu", "absolute", True, "mean"),
    (10, 5, 1, 2, "two_slope", "squared", True, "mean"),
]


@pytest.mark.parametrize("seed,n,d,width,act,loss,bias,reduction", CASES)
def test_levels_match_bruteforce(seed, n, d, width, act, loss, bias, reduction):
    spec = make_spec(seed, n, d, width, act, loss, bias=bias, reduction=reduction)
    res = find_local_minima(spec, time_limit=120, epsilon=EPS)
    truth, residuals, ambiguous, _ = brute_levels(spec, res.level_resolution)
    assert ambiguous == 0, "a brute-force margin is within a factor 20 of eps: pick another seed"
    assert res.complete, res.notes
    assert not any("rejected" in note for note in res.notes), res.notes  # the MILP itself is exact
    assert len(truth) >= 2  # a non-trivial landscape
    assert len(res.levels) == len(truth), (res.levels, truth)
    np.testing.assert_allclose(res.levels, truth, rtol=1e-6, atol=1e-9)
    # the big-M on the residuals holds at every cell's unconstrained minimum, stationary or not
    bound = residual_bounds(spec)[0]
    assert max(np.max(np.abs(r)) for r in residuals) <= bound
    assert res.best_level_bound <= truth[0] + 1e-9 and res.worst_level_bound >= truth[-1]
    rng = np.random.default_rng(seed)
    fitted = []
    for mn in res.minima:
        assert mn.found_by == "milp" and mn.certificate == "interior" and mn.margin > 0
        assert min(abs(mn.risk - t) for t in truth) <= 1e-6 * max(1.0, mn.risk)
        check_perturbations(spec, mn, rng)
        fitted.append(mn.fitted)
    for f1, f2 in itertools.combinations(fitted, 2):
        assert np.max(np.abs(f1 - f2)) > 1e-7
    # every level has a certified representative
    for level in res.levels:
        assert any(abs(mn.risk - level) <= 1e-6 * max(1.0, level) for mn in res.minima)


def test_second_seed_check_recovers_a_skipped_level(monkeypatch):
    """HiGHS' "optimal" is a claim: simulate a wrong one (the first solve of every class skips
    its lowest level) and check that the second-seed check restores the complete list, and
    that without the check the lowest level is indeed lost."""
    spec = make_spec(6, 5, 1, 2, "relu", "squared", bias=False, reduction="half_sum")
    original = ClassWalk._run

    def faulty(self, time_limit, *, upper=None, seed=None):
        if upper is None and not getattr(self, "faulted", False):
            self.faulted = True
            true = original(self, time_limit)
            if true.x is None:
                return true
            h = self.runner.highs  # re-solve above the true answer: a wrong "optimal" claim
            h.changeColBounds(self.risk_col, (true.objective * (1 + 1e-4) + 1e-9) / self.unit, self.upper)
            wrong = original(self, time_limit)
            h.changeColBounds(self.risk_col, 0.0, self.upper)
            return wrong
        return original(self, time_limit, upper=upper, seed=seed)

    monkeypatch.setattr(ClassWalk, "_run", faulty)
    checked = find_local_minima(spec, time_limit=120, epsilon=EPS)
    unchecked = find_local_minima(spec, time_limit=120, epsilon=EPS, confirm=False)
    truth, _, ambiguous, _ = brute_levels(spec, checked.level_resolution)
    assert ambiguous == 0
    np.testing.assert_allclose(checked.levels, truth, rtol=1e-6, atol=1e-9)
    assert any("second-seed check found" in note for note in checked.notes)
    assert min(unchecked.levels) > truth[0] + 1e-6  # the simulated wrong claims lose the lowest level


def test_stopping_early_still_bounds_the_worst_level():
    """max_levels stops the ascending walk; the maximisation then finds the highest level."""
    spec = make_spec(1, 5, 1, 2, "relu", "absolute")
    res = find_local_minima(spec, time_limit=120, epsilon=EPS, max_levels=2)
    truth, _, ambiguous, _ = brute_levels(spec, res.level_resolution)
    assert ambiguous == 0 and len(truth) >= 4
    assert not res.complete
    np.testing.assert_allclose(res.levels[:2], truth[:2], rtol=1e-6, atol=1e-9)
    assert res.levels[-1] == pytest.approx(truth[-1], rel=1e-6)  # the certified worst level
    assert truth[-1] <= res.worst_level_bound <= truth[-1] * (1 + 1e-6) + 1e-9
    row = res.to_row()
    assert row["n_levels"] == len(res.levels) and not row["complete"]
    assert json.loads(json.dumps(res.to_json()))["levels"] == pytest.approx(res.levels)


@pytest.mark.parametrize("change,field", [
    ({"network": {"hidden": [2], "activation": "hardtanh"}}, "network.activation"),
    ({"loss": {"kind": "hinge"}}, "loss.kind"),
    ({"network": {"hidden": [2, 2], "activation": "relu"}}, "network.hidden"),
])
def test_refuses_what_it_cannot_do(change, field):
    table = {"name": "x", "data": {"x": [-1.0, 0.0, 1.0], "y": [1.0, -1.0, 1.0]},
             "network": {"hidden": [2], "activation": "relu"}}
    table.update(change)
    with pytest.raises(MilplandError, match=field):
        find_local_minima(spec_from_dict(table), time_limit=5)
