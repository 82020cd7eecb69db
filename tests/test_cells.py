"""Cell solver (milpland.cells.problem) against independent answers: clarabel (a different interior-point
solver, its cone program built here from DESIGN §3 with plain loops), closed forms (least squares
on the lifted features, a degenerate tied pattern, zero-risk fits) and numpy forward passes."""

from __future__ import annotations

import itertools
import zlib

import clarabel
import numpy as np
import pytest
import scipy.sparse as sp

from milpland.cells.problem import Cell, CellSolver, cell_problem
from milpland.cells.scaled import ScaledParams
from milpland.errors import MilplandError
from milpland.instance import activations as acts
from milpland.instance.losses import Loss
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import Box

RTOL = 1e-7

ACTIVATIONS = {
    "relu": acts.relu(),
    "leaky_relu": acts.leaky_relu(0.1),
    "two_slope": acts.two_slope(1.5, -0.4),
    "hardtanh": acts.hardtanh(),
    "pwl3": acts.from_pieces("pwl", [-0.5, 1.0], [0.2, 1.0, -0.3], 0.1),
}


# ----------------------------------------------------------------------------------------------
# An independent formulation of the cell problem (loops, straight from DESIGN §3)
# ----------------------------------------------------------------------------------------------


def piece_bounds(act, k):
    t = list(act.breakpoints)
    lo = -np.inf if k == 0 else t[k - 1]
    hi = np.inf if k == len(t) else t[k]
    return lo, hi


def reference_rows(X, act, pattern, signs, output_bias):
    """Variables z = (U_11..U_md, a_1..a_m, [rho_1..rho_m], [c]).  Returns
    Phi (f = Phi z) and the cell constraints as rows C z <= 0, plus the box as (lower, upper)."""
    n, d = X.shape
    m = pattern.shape[1]
    hom = act.homogeneous
    nz = m * d + m + (0 if hom else m) + (1 if output_bias else 0)
    iu = lambda j, l: j * d + l  # noqa: E731
    ia = lambda j: m * d + j  # noqa: E731
    ir = lambda j: m * d + m + j  # noqa: E731
    Phi = np.zeros((n, nz))
    C = []
    for i in range(n):
        if output_bias:
            Phi[i, nz - 1] = 1.0
        for j in range(m):
            k = pattern[i, j]
            al, be = act.slopes[k], act.intercepts[k]
            for l in range(d):
                Phi[i, iu(j, l)] += signs[j] * al * X[i, l]
            Phi[i, ia(j)] += signs[j] * al
            if not hom:
                Phi[i, ir(j)] += signs[j] * be
            lo, hi = piece_bounds(act, k)
            g = np.zeros(nz)
            for l in range(d):
                g[iu(j, l)] = X[i, l]
            g[ia(j)] = 1.0
            if np.isfinite(lo):  # rho lo - g <= 0   (homogeneous: -g <= 0)
                row = -g.copy()
                if not hom:
                    row[ir(j)] += lo
                C.append(row)
            if np.isfinite(hi):  # g - rho hi <= 0
                row = g.copy()
                if not hom:
                    row[ir(j)] -= hi
                C.append(row)
    return Phi, np.array(C).reshape(-1, nz)


def clarabel_cell(X, y, act, loss, box, pattern, signs, output_bias=True):
    """Solve the cell with clarabel; returns (risk recomputed from its z, z, Phi)."""
    n = X.shape[0]
    w = loss.weight(n)
    Phi, C = reference_rows(X, act, pattern, signs, output_bias)
    nz = Phi.shape[1]
    m, d = pattern.shape[1], X.shape[1]
    lo = np.full(nz, -np.inf)
    hi = np.full(nz, np.inf)
    lo[: m * d + m], hi[: m * d + m] = -box.weight, box.weight
    if not act.homogeneous:
        lo[m * d + m : m * d + 2 * m], hi[m * d + m : m * d + 2 * m] = 0.0, box.output
    # extra variables e (n): squared -> residuals r = Phi z - y; LP losses -> epigraph t
    N = nz + n
    rows_eq, b_eq, rows_in, b_in = [], [], [], []
    for r in C:
        rows_in.append(np.concatenate([r, np.zeros(n)]))
        b_in.append(0.0)
    for k in range(nz):
        e = np.zeros(N)
        e[k] = 1.0
        if np.isfinite(hi[k]):
            rows_in.append(e.copy())
            b_in.append(hi[k])
        if np.isfinite(lo[k]):
            rows_in.append(-e)
            b_in.append(-lo[k])
    q = np.zeros(N)
    Pm = np.zeros((N, N))
    for i in range(n):
        e = np.zeros(N)
        e[nz + i] = 1.0
        if loss.kind == "squared":
            rows_eq.append(np.concatenate([Phi[i], np.zeros(n)]) - e)  # Phi_i z - r_i = y_i
            b_eq.append(y[i])
            Pm[nz + i, nz + i] = 2.0 * w
        elif loss.kind == "absolute":
            rows_in.append(np.concatenate([Phi[i], np.zeros(n)]) - e)  # f - y <= t
            b_in.append(y[i])
            rows_in.append(-np.concatenate([Phi[i], np.zeros(n)]) - e)  # y - f <= t
            b_in.append(-y[i])
            q[nz + i] = w
        else:
            rows_in.append(-y[i] * np.concatenate([Phi[i], np.zeros(n)]) - e)  # 1 - y f <= t
            b_in.append(-1.0)
            rows_in.append(-e)  # t >= 0
            b_in.append(0.0)
            q[nz + i] = w
    A = np.vstack(rows_eq + rows_in)
    b = np.array(b_eq + b_in)
    cones = ([clarabel.ZeroConeT(len(rows_eq))] if rows_eq else []) + [clarabel.NonnegativeConeT(len(rows_in))]
    for tol in (1e-12, 1e-11, 1e-10):  # the tightest tolerance clarabel reaches; all far below RTOL
        s = clarabel.DefaultSettings()
        s.verbose = False
        s.tol_gap_abs = s.tol_gap_rel = s.tol_feas = tol
        s.tol_ktratio = 1e-10
        s.max_iter = 500
        sol = clarabel.DefaultSolver(sp.triu(sp.csc_matrix(Pm)).tocsc(), q, sp.csc_matrix(A), b, cones, s).solve()
        if str(sol.status) == "Solved":
            break
    assert str(sol.status) == "Solved", sol.status
    z = np.array(sol.x)[:nz]
    return loss.risk(Phi @ z, y), z, Phi


def make_data(seed, n, d, kind):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2.0 * X[:, 0]) + (0.5 * X[:, 1] if d > 1 else 0.0) + 0.3 * rng.normal(size=n)
    if kind == "hinge":
        y = np.where(y > np.median(y), 1.0, -1.0)
    return X, y


def random_cells(rng, X, act, m, count, *, arbitrary=0):
    """Cells realised by random weights, plus `arbitrary` uniformly random (mostly degenerate) ones."""
    out = []
    spread = 1.0 if act.homogeneous else 1.5
    for _ in range(count):
        p = OneHiddenParams(rng.normal(size=(m, X.shape[1])) * 2, rng.normal(size=m) * spread, rng.normal(size=m), 0.0)
        out.append(Cell.of_params(p, X, act))
    for _ in range(arbitrary):
        out.append(Cell(rng.integers(0, act.n_pieces, size=(X.shape[0], m)), rng.choice([-1.0, 1.0], size=m)))
    return out


def assert_in_cell(res, cell, X, act, tol=1e-9):
    """The returned theta lies in the (closed) cell: rho t_lo <= g <= rho t_hi."""
    th = res.theta
    G = th.scaled_pre_activations(X)
    rho = np.ones(cell.width) if act.homogeneous else th.rho
    scale = max(1.0, float(np.max(np.abs(G))), float(np.max(np.abs(rho))))
    for i, j in itertools.product(range(X.shape[0]), range(cell.width)):
        lo, hi = piece_bounds(act, cell.pattern[i, j])
        if np.isfinite(lo):
            assert G[i, j] >= rho[j] * lo - tol * scale, (i, j, G[i, j], lo)
        if np.isfinite(hi):
            assert G[i, j] <= rho[j] * hi + tol * scale, (i, j, G[i, j], hi)


def numpy_risk(res, X, y, act, loss):
    """Risk of the returned theta through the scaled forward pass and through original weights."""
    th = res.theta
    r_scaled = loss.risk(th.forward(X, act), y)
    if act.homogeneous or np.all((th.rho > 1e-6) | (np.abs(th.scaled_pre_activations(X)).max(axis=0) < 1e-12)):
        params, _ = th.to_original(act)
        r_orig = loss.risk(params.forward(X, act), y)
    else:
        r_orig = r_scaled
    return r_scaled, r_orig


# ----------------------------------------------------------------------------------------------
# Agreement with clarabel
# ----------------------------------------------------------------------------------------------

CASES = [
    (act, kind, d, m)
    for act in ACTIVATIONS
    for kind in ("squared", "absolute", "hinge")
    for d, m in ((1, 1), (1, 3), (2, 2))
]


@pytest.mark.parametrize("act_name,kind,d,m", CASES)
def test_agrees_with_clarabel(act_name, kind, d, m):
    act = ACTIVATIONS[act_name]
    loss = Loss(kind)
    n = 9
    seed = zlib.crc32(f"{act_name}-{kind}-{d}-{m}".encode())
    X, y = make_data(seed, n, d, kind)
    box = Box(weight=20.0, output=20.0)
    rng = np.random.default_rng(seed + 1)
    cells = random_cells(rng, X, act, m, 3, arbitrary=1)
    solver = CellSolver(X, y, act, loss, box)
    for cell, res in zip(cells, solver.solve_many(cells)):
        ref, z, Phi = clarabel_cell(X, y, act, loss, box, cell.pattern, cell.signs)
        assert res.status == "optimal", (res.status, res.method, res.kkt_residual)
        assert abs(res.risk - ref) <= RTOL * max(abs(ref), 1e-3), (res.risk, ref)
        # the certified lower bound must not exceed what clarabel achieved
        assert res.lower_bound <= ref + RTOL * max(abs(ref), 1e-3)
        assert res.kkt_residual <= 1e-9
        assert_in_cell(res, cell, X, act)
        # the returned risk is the numpy risk of the returned theta
        r_scaled, r_orig = numpy_risk(res, X, y, act, loss)
        assert abs(r_scaled - res.risk) <= 1e-9 * max(1.0, res.risk)
        assert abs(r_orig - res.risk) <= 1e-8 * max(1.0, res.risk)
        assert np.allclose(res.fitted, Phi @ _z_of(res.theta, act, cell), atol=1e-9)


def _z_of(th: ScaledParams, act, cell) -> np.ndarray:
    parts = [th.U.reshape(-1), th.a] + ([] if act.homogeneous else [th.rho]) + [np.array([th.c])]
    return np.concatenate(parts)


def test_many_random_cells_relu_squared_against_clarabel():
    """A larger sample for the accuracy figure: relu, squared, n = 12, d = 2, m = 3."""
    act, loss = ACTIVATIONS["relu"], Loss("squared")
    X, y = make_data(7, 12, 2, "squared")
    box = Box(50.0, 50.0)
    rng = np.random.default_rng(8)
    cells = random_cells(rng, X, act, 3, 25, arbitrary=5)
    worst = 0.0
    for cell, res in zip(cells, CellSolver(X, y, act, loss, box).solve_many(cells)):
        ref = clarabel_cell(X, y, act, loss, box, cell.pattern, cell.signs)[0]
        assert res.status == "optimal"
        worst = max(worst, abs(res.risk - ref) / ref)
    assert worst <= RTOL


def test_no_output_bias_and_half_sum():
    act, loss = ACTIVATIONS["hardtanh"], Loss("squared", "half_sum")
    X, y = make_data(3, 8, 2, "squared")
    box = Box(10.0, 5.0)
    cells = random_cells(np.random.default_rng(4), X, act, 2, 4)
    solver = CellSolver(X, y, act, loss, box, output_bias=False)
    for cell, res in zip(cells, solver.solve_many(cells)):
        ref = clarabel_cell(X, y, act, loss, box, cell.pattern, cell.signs, output_bias=False)[0]
        assert res.status == "optimal"
        assert res.theta.c == 0.0
        assert abs(res.risk - ref) <= RTOL * ref


@pytest.mark.parametrize("fail", ["unregularised", "both"])
def test_stalled_highs_qp_falls_back(monkeypatch, fail):
    """DESIGN §4: with regularisation 0 some QPs never finish.  Simulate HiGHS returning no point:
    the solver falls back to the regularised QP (then to the active-set method from theta~ = 0)
    and must still return the clarabel optimum."""
    act, loss = ACTIVATIONS["hardtanh"], Loss("squared")
    X, y = make_data(31, 10, 2, "squared")
    box = Box(20.0, 20.0)
    cells = random_cells(np.random.default_rng(32), X, act, 2, 4, arbitrary=1)
    original = CellSolver._run
    calls = []

    def flaky(self, prob, *, limit, regularization=0.0):
        calls.append(regularization)
        if regularization == 0.0 or fail == "both":
            return "time_limit", None, None
        return original(self, prob, limit=limit, regularization=regularization)

    monkeypatch.setattr(CellSolver, "_run", flaky)
    for cell, res in zip(cells, CellSolver(X, y, act, loss, box).solve_many(cells)):
        ref = clarabel_cell(X, y, act, loss, box, cell.pattern, cell.signs)[0]
        assert res.status == "optimal"
        assert res.method.startswith("zero" if fail == "both" else "highs-qp-regularised")
        assert abs(res.risk - ref) <= RTOL * ref
        assert_in_cell(res, cell, X, act)
    assert calls[:2] == [0.0, 1e-7]


def test_active_set_from_zero_on_degenerate_relu_cells(monkeypatch):
    """theta~ = 0 makes every cell row active (a very degenerate start).  With HiGHS out of the way the
    active-set method alone must reach the clarabel optimum on realistic relu cells."""
    act, loss = ACTIVATIONS["relu"], Loss("squared")
    X, y = make_data(51, 20, 2, "squared")
    box = Box()
    cells = random_cells(np.random.default_rng(52), X, act, 3, 30, arbitrary=5)
    monkeypatch.setattr(CellSolver, "_run", lambda self, prob, *, limit, regularization=0.0: ("time_limit", None, None))
    for cell, res in zip(cells, CellSolver(X, y, act, loss, box).solve_many(cells)):
        ref = clarabel_cell(X, y, act, loss, box, cell.pattern, cell.signs)[0]
        assert res.status == "optimal" and res.method.startswith("zero")
        assert abs(res.risk - ref) <= RTOL * ref
        assert_in_cell(res, cell, X, act)


def test_nnls_satisfies_its_optimality_conditions():
    """The active set the cell polish uses for its multipliers (scipy's NNLS returned wrong answers
    on degenerate working sets): x >= 0, A^T r <= 0 and x_i (A^T r)_i = 0, residual equal to scipy's
    bounded least squares."""
    from scipy.optimize import lsq_linear

    from milpland.cells.bounded_lsq import bvls_active_set

    rng = np.random.default_rng(61)
    for t in range(100):
        p, k = int(rng.integers(3, 12)), int(rng.integers(2, 60))
        A = rng.normal(size=(p, k))
        if t % 2:  # many dependent columns, as in a degenerate working set
            A[:, k // 2 :] = A[:, : k - k // 2] @ rng.normal(size=(k - k // 2, k - k // 2))
        b = rng.normal(size=p)
        x, converged = bvls_active_set(A, b, np.full(k, np.inf))
        assert converged
        g = A.T @ (b - A @ x)
        assert x.min() >= 0.0 and g.max() <= 1e-9 and abs(x @ g) <= 1e-9
        ref = lsq_linear(A, b, bounds=(0, np.inf), method="bvls", tol=1e-14).x
        assert np.linalg.norm(A @ x - b) <= np.linalg.norm(A @ ref - b) + 1e-10


def test_a_wrong_optimal_claim_is_not_trusted(monkeypatch):
    """HiGHS says "optimal" but hands back theta~ = 0 with zero multipliers.  LP: the Lagrangian bound
    cannot certify that point, so the status is "error" and the risk is that point's numpy risk.
    QP: the active-set polish repairs the point and the clarabel optimum is returned."""
    act = ACTIVATIONS["relu"]
    X, y = make_data(41, 10, 2, "squared")
    cell = random_cells(np.random.default_rng(42), X, act, 2, 1)[0]

    def liar(self, prob, *, limit, regularization=0.0):
        return "optimal", np.zeros(prob.layout.n_cols), np.zeros(prob.matrix.shape[0])

    monkeypatch.setattr(CellSolver, "_run", liar)
    res = CellSolver(X, y, act, Loss("absolute"), Box()).solve(cell)
    assert res.status == "error"
    assert res.risk == pytest.approx(float(np.mean(np.abs(y))), rel=1e-12)  # theta~ = 0, c = 0
    ref = clarabel_cell(X, y, act, Loss("absolute"), Box(), cell.pattern, cell.signs)[0]
    assert res.lower_bound <= ref + 1e-12
    res = CellSolver(X, y, act, Loss("squared"), Box()).solve(cell)
    ref = clarabel_cell(X, y, act, Loss("squared"), Box(), cell.pattern, cell.signs)[0]
    assert res.status == "optimal" and abs(res.risk - ref) <= RTOL * ref


def test_large_box_still_verified():
    """With |weights| up to 1e4 the certificate must still reach 1e-9 (the solver prefers a
    smaller-norm optimal point when rounding at the box spoils the bound)."""
    act, loss = ACTIVATIONS["relu"], Loss("squared")
    X, y = make_data(21, 12, 2, "squared")
    box = Box(1e4, 1e4)
    cells = random_cells(np.random.default_rng(22), X, act, 3, 8, arbitrary=2)
    for cell, res in zip(cells, CellSolver(X, y, act, loss, box).solve_many(cells)):
        ref = clarabel_cell(X, y, act, loss, box, cell.pattern, cell.signs)[0]
        assert res.status == "optimal" and res.kkt_residual <= 1e-9
        assert abs(res.risk - ref) <= RTOL * ref


# ----------------------------------------------------------------------------------------------
# Closed forms
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("act_name", list(ACTIVATIONS))
def test_least_squares_on_lifted_features(act_name):
    """Loose box, y = network + small noise, network strictly inside its cell: the cell optimum is
    ordinary least squares on the lifted features Phi (valid when a least-squares solution near the
    generating weights still lies strictly inside the cell, which the test checks)."""
    act = ACTIVATIONS[act_name]
    rng = np.random.default_rng(11)
    n, d, m = 15, 2, 3
    X = rng.normal(size=(n, d))
    for _ in range(1000):  # seeded rejection sampling: a generating point with margin 0.05 to every breakpoint
        params = OneHiddenParams(rng.normal(size=(m, d)), 0.3 * rng.normal(size=m), np.array([1.0, -0.7, 0.5]), 0.2)
        if not np.any(act.on_breakpoint(params.pre_activations(X), 0.05)):
            break
    assert not np.any(act.on_breakpoint(params.pre_activations(X), 0.05)), "generating point not strictly inside"
    y = params.forward(X, act) + 1e-3 * rng.normal(size=n)
    cell = Cell.of_params(params, X, act)
    Phi, C = reference_rows(X, act, cell.pattern, cell.signs, True)
    from milpland.cells.scaled import from_original

    th0 = from_original(params)
    z0 = _z_of(th0, act, cell)
    assert np.allclose(Phi @ z0, params.forward(X, act))
    f_ols = Phi @ np.linalg.lstsq(Phi, y, rcond=None)[0]
    z1 = z0 + np.linalg.pinv(Phi) @ (f_ols - Phi @ z0)
    assert np.all(C @ z1 < 0), "least-squares point left the cell: closed form not applicable"
    expected = float(np.mean((y - f_ols) ** 2))
    res = CellSolver(X, y, act, Loss("squared"), Box(100.0, 100.0)).solve(cell)
    assert res.status == "optimal" and not res.box_active
    assert abs(res.risk - expected) <= 1e-9 * expected


@pytest.mark.parametrize("slope_sign", [1.0, -1.0])
def test_tied_pattern_closed_form(slope_sign):
    """x_0 = x_1 = 0 in different pieces of the only unit (relu): the open cell is empty, the
    closed cell forces g = a = 0 at x = 0, leaving f = c + u x with u >= 0 (the unit is active on
    x = 1, 2, 3).  Optimum: the least-squares line if its slope is >= 0, else the mean."""
    act = ACTIVATIONS["relu"]
    X = np.array([[0.0], [0.0], [1.0], [2.0], [3.0]])
    y = np.array([0.3, -0.2, 0.5, 1.1, 1.4]) * slope_sign
    cell = Cell(np.array([[1], [0], [1], [1], [1]]), np.array([1.0]))
    res = CellSolver(X, y, act, Loss("squared"), Box(100.0, 100.0)).solve(cell)
    A = np.column_stack([np.ones(5), X[:, 0]])
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    if coef[1] >= 0:
        expected = float(np.mean((A @ coef - y) ** 2))
    else:
        expected = float(np.mean((y - y.mean()) ** 2))
    assert res.status == "optimal"
    assert abs(res.risk - expected) <= 1e-10 * expected
    assert abs(res.theta.a[0]) <= 1e-12  # the tie is forced
    assert res.theta.U[0, 0] >= -1e-12


def test_every_closed_cell_is_feasible_and_beats_the_constant():
    """theta~ = 0 lies in every closed cell, so arbitrary (even unrealisable) patterns are feasible
    and no cell optimum exceeds the best constant fit."""
    rng = np.random.default_rng(5)
    for act_name, kind in (("relu", "squared"), ("hardtanh", "absolute"), ("pwl3", "squared"), ("two_slope", "hinge")):
        act, loss = ACTIVATIONS[act_name], Loss(kind)
        X, y = make_data(6, 10, 2, kind)
        if kind == "squared":
            const = float(np.mean((y - y.mean()) ** 2))
        elif kind == "absolute":
            const = float(np.mean(np.abs(y - np.median(y))))
        else:
            const = min(loss.risk(np.full(10, c), y) for c in (-1.0, 1.0))
        cells = [Cell(rng.integers(0, act.n_pieces, size=(10, 3)), rng.choice([-1.0, 1.0], size=3)) for _ in range(8)]
        for res in CellSolver(X, y, act, loss, Box()).solve_many(cells):
            assert res.status == "optimal"
            assert res.risk <= const * (1 + 1e-12)


def test_zero_risk_fits():
    """Absolute loss on exact network outputs and hinge loss on labels separated with margin >= 1
    have cell optimum 0 (the generating weights lie in the cell)."""
    rng = np.random.default_rng(9)
    X = rng.normal(size=(12, 2))
    act = ACTIVATIONS["leaky_relu"]
    params = OneHiddenParams(rng.normal(size=(2, 2)), rng.normal(size=2), np.array([1.2, -0.8]), 0.1)
    f = params.forward(X, act)
    cell = Cell.of_params(params, X, act)
    res = CellSolver(X, f, act, Loss("absolute"), Box()).solve(cell)
    assert res.status == "optimal" and res.risk <= 1e-12
    labels = np.where(f > np.median(f), 1.0, -1.0)
    # lam (f - median f) is realised in this cell (scale all scaled weights by lam, shift c) and has
    # margin >= 1 once lam >= 1 / min |f - median|; check that this stays inside the box
    lam = 1.0 / np.min(np.abs(f - np.median(f)))
    from milpland.cells.scaled import from_original

    th = from_original(params)
    assert lam * max(np.abs(th.U).max(), np.abs(th.a).max()) < 1000.0
    res = CellSolver(X, labels, act, Loss("hinge"), Box(1000.0, 1000.0)).solve(cell)
    assert res.status == "optimal" and res.risk <= 1e-12


# ----------------------------------------------------------------------------------------------
# The box, the cell key, the arrays, the time limit
# ----------------------------------------------------------------------------------------------


def test_tight_box_is_reported_active_and_matches_clarabel():
    act, loss = ACTIVATIONS["relu"], Loss("squared")
    X = np.linspace(-1, 1, 8)[:, None]
    y = 50.0 * np.abs(X[:, 0])  # needs output scale ~50 per unit
    cell = Cell(np.column_stack([(X[:, 0] > 0).astype(int), (X[:, 0] < 0).astype(int)]), np.array([1.0, 1.0]))
    tight, loose = Box(2.0, 2.0), Box(1000.0, 1000.0)
    r_tight = CellSolver(X, y, act, loss, tight).solve(cell)
    r_loose = CellSolver(X, y, act, loss, loose).solve(cell)
    assert r_tight.status == r_loose.status == "optimal"
    assert r_tight.box_active and not r_loose.box_active
    assert r_loose.risk <= 1e-12  # 50 relu(x) + 50 relu(-x) = 50 |x|
    ref = clarabel_cell(X, y, act, loss, tight, cell.pattern, cell.signs)[0]
    assert abs(r_tight.risk - ref) <= RTOL * ref


def test_degenerate_directions_do_not_report_the_box():
    """A dead unit (inactive everywhere) does not affect the risk; an LP vertex may park its weights
    at the box, but an optimal point inside the box exists, so box_active must be False."""
    act, loss = ACTIVATIONS["relu"], Loss("absolute")
    X, y = make_data(2, 10, 2, "absolute")
    pattern = np.column_stack([(X[:, 0] > 0).astype(int), np.zeros(10, dtype=int)])
    res = CellSolver(X, y, act, loss, Box(10.0, 10.0)).solve(Cell(pattern, np.array([1.0, -1.0])))
    assert res.status == "optimal"
    assert not res.box_active
    assert np.all(np.abs(res.theta.U) < 10.0 * (1 - 1e-7)) and np.all(np.abs(res.theta.a) < 10.0 * (1 - 1e-7))


def test_key_is_permutation_invariant():
    rng = np.random.default_rng(1)
    pattern = rng.integers(0, 3, size=(6, 4))
    signs = np.array([1.0, -1.0, 1.0, -1.0])
    cell = Cell(pattern, signs)
    perm = np.array([2, 0, 3, 1])
    assert Cell(pattern[:, perm], signs[perm]).key() == cell.key()
    assert Cell(pattern, -signs).key() != cell.key()
    other = pattern.copy()
    other[0, 0] = (other[0, 0] + 1) % 3
    assert Cell(other, signs).key() != cell.key()
    # permuted cells have the same optimum
    act, loss = ACTIVATIONS["hardtanh"], Loss("squared")
    X, y = make_data(1, 6, 1, "squared")
    solver = CellSolver(X, y, act, loss, Box())
    r1, r2 = solver.solve(cell), solver.solve(Cell(pattern[:, perm], signs[perm]))
    assert abs(r1.risk - r2.risk) <= 1e-10 * r1.risk


def test_cell_problem_arrays_describe_the_cell():
    """Objective and rows of `cell_problem`, evaluated at a random feasible point (a scaled network
    of this cell), against the independent loops."""
    rng = np.random.default_rng(3)
    for act_name, kind in itertools.product(("relu", "pwl3"), ("squared", "absolute", "hinge")):
        act, loss = ACTIVATIONS[act_name], Loss(kind)
        X, y = make_data(4, 7, 2, kind)
        params = OneHiddenParams(rng.normal(size=(2, 2)), rng.normal(size=2), np.array([0.7, -1.3]), 0.4)
        cell = Cell.of_params(params, X, act)
        prob = cell_problem(X, y, act, loss, Box(), cell, output_bias=True)
        from milpland.cells.scaled import from_original

        th = from_original(params)
        z = _z_of(th, act, cell)
        Phi, C = reference_rows(X, act, cell.pattern, cell.signs, True)
        f = params.forward(X, act)
        assert np.allclose(prob.phi @ z, f)
        x = np.zeros(prob.layout.n_cols)
        x[: prob.layout.n_params] = z
        if prob.layout.t is not None:
            x[prob.layout.t] = loss.per_sample(f, y)
        rows = prob.A @ x
        assert np.all(rows >= prob.row_lower - 1e-9) and np.all(rows <= prob.row_upper + 1e-9)
        assert np.all(x >= prob.col_lower) and np.all(x <= prob.col_upper)
        # the signed cell rows are the reference constraints with the sign flipped
        assert np.allclose(np.sort(prob.cell_matrix @ z), np.sort(-(C @ z)))
        obj = prob.cost @ x + prob.offset
        if prob.hessian is not None:
            obj += 0.5 * x @ prob.hessian @ x
        assert abs(prob.objective_scale * obj - loss.risk(f, y)) <= 1e-10 * max(1.0, loss.risk(f, y))


def test_time_limit_is_per_cell_on_the_reused_object():
    """HiGHS's time_limit is cumulative on a reused object (DESIGN §4): once the object's run clock is
    past the per-cell limit, cells must still be solved to optimality."""
    act, loss = ACTIVATIONS["relu"], Loss("absolute")
    X, y = make_data(0, 20, 2, "absolute")
    rng = np.random.default_rng(0)
    limit = 0.1
    solver = CellSolver(X, y, act, loss, Box(), time_limit=limit)
    while solver._highs.getRunTime() <= 1.5 * limit:  # burn the cumulative clock
        solver.solve_many(random_cells(rng, X, act, 3, 20))
    results = solver.solve_many(random_cells(rng, X, act, 3, 20))
    assert all(r.status == "optimal" for r in results)


def test_returned_theta_recovers_its_cell():
    act = ACTIVATIONS["pwl3"]
    X, y = make_data(12, 10, 2, "squared")
    cells = random_cells(np.random.default_rng(13), X, act, 2, 5)
    for cell, res in zip(cells, CellSolver(X, y, act, Loss("squared"), Box()).solve_many(cells)):
        back = Cell.of_scaled(res.theta, X, act)
        G = res.theta.scaled_pre_activations(X)
        t = np.asarray(act.breakpoints)
        tied = np.min(np.abs(G[:, :, None] - res.theta.rho[None, :, None] * t), axis=2) <= 1e-9
        assert np.all((back.pattern == cell.pattern) | tied)


def test_user_mistakes_raise():
    act = ACTIVATIONS["relu"]
    X, y = make_data(0, 5, 1, "squared")
    solver = CellSolver(X, y, act, Loss(), Box())
    with pytest.raises(MilplandError, match="cell.pattern"):
        solver.solve(Cell(np.zeros((4, 2), dtype=int), np.ones(2)))
    with pytest.raises(MilplandError, match="cell.pattern"):
        solver.solve(Cell(np.full((5, 2), 2), np.ones(2)))
    with pytest.raises(MilplandError, match="cell.signs"):
        Cell(np.zeros((5, 2), dtype=int), np.array([1.0, 0.5]))


@pytest.mark.parametrize("loss_kind", ["squared", "absolute"])
def test_exact_fits_are_verified_optimal(loss_kind):
    """Teacher data fitted exactly by its own cell: risk 0 by construction, so the cell optimum is 0
    and must be reported optimal, not rejected for a rounding-level bound."""
    from milpland.cells.problem import Cell, CellSolver
    from milpland.instance.activations import relu
    from milpland.instance.losses import Loss
    from milpland.instance.spec import Box

    rejected = []
    for seed in [16, 36, 49, 58, 78] + list(range(20)):  # 16, 36, ...: exact fits once rejected
        rng = np.random.default_rng(seed)
        n, d, m = 4 + seed % 5, 1 + seed % 2, 1 + seed % 3
        X = rng.uniform(-1, 1, size=(n, d))
        W, b, v = rng.normal(size=(m, d)), rng.normal(size=m), rng.normal(size=m)
        Z = X @ W.T + b
        y = np.maximum(Z, 0) @ v + rng.normal()  # all units may be off: a constant target
        cell = Cell(pattern=(Z > 0).astype(int), signs=np.where(v < 0, -1.0, 1.0))
        res = CellSolver(X, y, relu(), Loss(loss_kind), Box(weight=100.0)).solve(cell)
        assert res.risk <= 1e-12
        if res.status != "optimal":
            rejected.append((seed, res.kkt_residual))
    assert not rejected
