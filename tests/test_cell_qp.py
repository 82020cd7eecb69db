"""The compiled cell kernels (milpland.cells.cell_qp) against independent answers.

- Cell optima: clarabel on the cell's cone program built from DESIGN §3 with plain loops
  (`test_cells.clarabel_cell`), on every cell of random tiny instances (ReLU, leaky ReLU, two-slope;
  d = 1, 2; widths 1-3; with and without output bias; a small box so that some optima are
  boxed): the kernel's risk is never above clarabel's, its certified lower bound never above it,
  and the two agree to 1e-9 (relative); theta lies in the closed cell and the box; the fitted
  values are a numpy forward pass of theta.
- The Lagrangian bound of `verify_cells` stays valid at points that are not optimal.
- The optimal face: which ray weights can be positive on it (`face_rays`) against one scipy
  LP per ray (maximise that weight over the optimal set), and the point of `face_point`
  against LPs that maximise each cell row's slack over the optimal set in the scaled weights.
- Cell indices (multiset ranks) against itertools; `match_fit` against a linear scan.
- Every cell the compiled certification rejects (a better neighbouring cell, or box-limited)
  is rejected alike by `Certifier` run on its own (HiGHS cell solves, LP face analysis).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog
from test_cells import clarabel_cell

from milpland import spec_from_dict
from milpland.cells import cell_qp
from milpland.cells.certificates import NEIGHBOUR_RTOL, Certifier, fit_tolerance, match_minimum
from milpland.cells.problem import BOX_ACTIVE_RTOL, FEAS_TOL
from milpland.landscape import enumeration as en

NET = {
    "relu": {"activation": "relu"},
    "leaky": {"activation": "leaky_relu", "alpha": 0.2},
    "two_slope": {"activation": "two_slope", "s_plus": 1.3, "s_minus": -0.4},
}


def make_spec(seed, n, d, width, act="relu", *, bias=True, box=100.0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    y = np.sin(2.5 * X[:, 0]) + (0.7 * X[:, 1] ** 2 if d > 1 else 0.0) + 0.2 * rng.normal(size=n)
    return spec_from_dict({
        "name": f"k{seed}", "data": {"x": X[:, 0].tolist() if d == 1 else X.tolist(), "y": y.tolist()},
        "network": {"hidden": [width], "output_bias": bias, **NET[act]}, "loss": {"kind": "squared"},
        "box": {"weight": box},
    })


class Solved:
    """Every cell of an instance solved by the kernels (the enumeration's first stage)."""

    def __init__(self, spec):
        act = spec.network.activation
        self.spec = spec
        self.patterns = en.unit_patterns(spec.X, act)
        self.grid = en.CellGrid.build(self.patterns, spec.width, act)
        self.table = en._ray_table(spec, self.patterns)
        self.certifier = Certifier(spec, unit_patterns=self.patterns)
        self.store = en.CellStore(self.grid, spec, self.table.max_rays * spec.width, kernels=True)
        en._solve_by_kernel(spec, self.grid, self.table, self.certifier, self.store, lambda _msg: None)


INSTANCES = [  # seed, n, d, width, activation, bias, box
    (1, 6, 1, 2, "relu", True, 100.0),
    (2, 7, 1, 3, "relu", True, 3.0),
    (3, 6, 1, 2, "leaky", True, 100.0),
    (4, 6, 1, 2, "two_slope", False, 100.0),
    (5, 6, 2, 2, "relu", True, 100.0),
    (6, 5, 2, 2, "leaky", False, 2.0),
    (7, 5, 2, 1, "relu", True, 100.0),
]


@pytest.fixture(scope="module", params=INSTANCES, ids=lambda c: f"s{c[0]}-n{c[1]}-d{c[2]}-w{c[3]}-{c[4]}")
def solved(request):
    seed, n, d, width, act, bias, box = request.param
    return Solved(make_spec(seed, n, d, width, act, bias=bias, box=box))


def test_kernel_optima_equal_clarabel(solved):
    spec, grid, st = solved.spec, solved.grid, solved.store
    rng = np.random.default_rng(0)
    cells = rng.choice(len(grid), size=min(len(grid), 60), replace=False)
    boxed = np.flatnonzero(st.box_limited)
    cells = np.unique(np.concatenate([cells, boxed[:10]]))
    scale = spec.loss.risk(np.full(spec.n, spec.y.mean()) if spec.network.output_bias else np.zeros(spec.n), spec.y)
    checked = 0
    for k in cells:
        if not st.fast[k]:
            continue  # left to CellSolver, tested in test_cells
        cell = grid.cell(k)
        res = st.result(k)
        ref, z, Phi = clarabel_cell(spec.X, spec.y, spec.network.activation, spec.loss, spec.box, cell.pattern,
                                    cell.signs, output_bias=spec.network.output_bias)
        tol = 1e-9 * max(ref, 1e-3 * scale)
        assert res.risk <= ref + tol, (k, res.risk, ref)  # never worse than clarabel
        assert res.lower_bound <= ref + tol, (k, res.lower_bound, ref)  # the bound is valid
        assert abs(res.risk - ref) <= tol, (k, res.risk, ref)
        assert res.kkt_residual <= 1e-9
        th = res.theta
        G = th.scaled_pre_activations(spec.X)
        side = np.where(cell.pattern == 1, 1.0, -1.0)
        assert np.all(side * G >= -1e-12 * max(1.0, np.abs(G).max())), k
        assert np.max(np.abs(np.column_stack([th.U, th.a]))) <= spec.box.weight * (1 + 1e-12)
        assert np.allclose(res.fitted, th.forward(spec.X, spec.network.activation), rtol=0, atol=1e-12)
        assert bool(st.box_limited[k]) == bool(res.box_active)
        checked += 1
    assert checked >= min(40, len(cells) // 2)


def test_some_instances_have_box_limited_cells():
    st = Solved(make_spec(2, 7, 1, 3, "relu", box=3.0)).store
    assert st.box_limited.sum() > 0


def test_bound_stays_valid_off_the_optimum(solved):
    """Perturb verified optima inside their cells (towards theta = 0, which keeps every row):
    the recomputed bound must still lie below clarabel's optimum, and a clearly worse point
    must not pass as verified."""
    spec, grid, st, tab = solved.spec, solved.grid, solved.store, solved.table
    b = solved.certifier.builder
    m = spec.width
    ks = np.flatnonzero(st.fast & ~st.box_limited & (st.risk > 1e-6))[:15]
    theta = st.theta[ks] * 0.7
    c = st.c[ks] + 0.05
    N = len(ks)
    status = np.zeros(N, dtype=np.int64)
    risk, lower, kkt, viol = (np.zeros(N) for _ in range(4))
    at_box = np.zeros(N, dtype=bool)
    cell_qp.verify_cells(grid.units[ks], grid.signs[ks], tab.patterns, tab.facets, tab.slopes, tab.Xh, tab.y, theta, c,
                         tab.has_c, float(spec.box.weight), b.c_bound(m), b.w, b.scale, 1e-9, FEAS_TOL,
                         BOX_ACTIVE_RTOL, False,
                         status, risk, lower, kkt, viol, at_box)
    for t, k in enumerate(ks):
        cell = grid.cell(k)
        ref = clarabel_cell(spec.X, spec.y, spec.network.activation, spec.loss, spec.box, cell.pattern,
                            cell.signs, output_bias=spec.network.output_bias)[0]
        assert lower[t] <= ref + 1e-9 * max(ref, 1e-6), (k, lower[t], ref)
        if risk[t] > ref * (1 + 1e-6):
            assert status[t] != cell_qp.VERIFIED


def _optimal_set_lp(solved, k):
    """(Psi~ columns, mu*, the face's ray columns) of cell k."""
    tab, grid = solved.table, solved.grid
    kmax = solved.store.mu.shape[1]
    cols, sign, unit = np.zeros(kmax, np.int64), np.zeros(kmax), np.zeros(kmax, np.int64)
    K = cell_qp._cell_columns(grid.units[k], grid.signs[k], tab.pattern_ptr, tab.pattern_rays, cols, sign, unit)
    A = (sign[:K, None] * tab.centred[cols[:K]]).T
    return A, solved.store.mu[k][:K], cols[:K], sign[:K], unit[:K], K


def test_zero_rays_against_one_lp_per_ray(solved):
    """A ray is live iff max mu_a over {mu >= 0 : Psi~ mu = Psi~ mu*} is positive (scipy LP)."""
    st = solved.store
    rng = np.random.default_rng(1)
    ks = np.flatnonzero(st.fast & ~st.box_limited)
    ks = rng.choice(ks, size=min(len(ks), 40), replace=False)
    compared = 0
    for k in ks:
        A, mu, cols, sign, unit, K = _optimal_set_lp(solved, k)
        live = np.zeros(st.mu.shape[1], dtype=bool)
        direction = np.zeros(st.mu.shape[1])
        tab = solved.table
        status = cell_qp.face_rays(st.mu[k], cols, sign, K, tab.centred, tab.gram, live, direction, False)
        if status != cell_qp.FACE_OK:
            continue
        cap = 10.0 * max(1.0, mu.max())
        for a in range(K):
            cost = np.zeros(K)
            cost[a] = -1.0
            lp = linprog(cost, A_eq=A, b_eq=A @ mu, bounds=[(0, cap)] * K, method="highs")
            assert lp.status == 0
            assert bool(live[a]) == (-lp.fun > 1e-7 * cap), (k, a, -lp.fun, live[:K])
        # the direction keeps the optimal fit and raises every live ray that mu* leaves at 0
        d = direction[:K]
        assert np.max(np.abs(A @ d)) <= 1e-8 * max(1.0, np.abs(d).max()) * np.abs(A).max()
        assert np.all(d[live[:K] & (mu == 0)] >= 1.0 - 1e-9)
        compared += 1
    assert compared >= min(20, len(ks) // 2)


def test_face_point_is_relative_interior(solved):
    """The point of `examine_face` fits the optimum, lies in the cell, and a cell row is tight
    there iff no optimal point of the cell has a positive slack on it (one scipy LP per row, in
    the scaled weights: maximise the row over {theta in cell and box : Phi theta = f*})."""
    spec, grid, st, tab = solved.spec, solved.grid, solved.store, solved.table
    n, m, D = spec.n, spec.width, spec.X.shape[1] + 1
    rng = np.random.default_rng(2)
    ks = np.flatnonzero(st.fast & ~st.box_limited)
    ks = rng.choice(ks, size=min(len(ks), 25), replace=False)
    has_c = spec.network.output_bias
    checked = 0
    for k in ks:
        theta, cflat = np.zeros((m, D)), np.zeros(1)
        tied, zero = np.zeros((n, m), dtype=bool), np.zeros(m, dtype=bool)
        if not cell_qp.examine_face(grid.units[k], grid.signs[k], st.mu[k], tab.pattern_ptr, tab.pattern_rays,
                                    tab.centred, tab.gram, tab.side, tab.patterns, tab.slopes, tab.Xh, tab.rays,
                                    tab.feature_mean, tab.y_mean, has_c, float(spec.box.weight), theta, cflat, tied,
                                    zero):
            continue
        pieces = grid.patterns[grid.units[k]].T  # (n, m)
        alpha = np.asarray(spec.network.activation.slopes)[pieces]
        Xh = tab.Xh
        f = (alpha * (Xh @ theta.T)) @ grid.signs[k] + cflat[0]
        fit_k = st.result(k).fitted
        assert np.allclose(f, fit_k, rtol=0, atol=1e-9)
        # LP in z = (theta (m D), c): Phi z = f*, side * g >= 0, |theta| <= B
        p = m * D + 1
        Phi = np.zeros((n, p))
        rows = np.zeros((n * m, p))
        for j in range(m):
            Phi[:, j * D:(j + 1) * D] = grid.signs[k][j] * alpha[:, j, None] * Xh
            rows[j::m, j * D:(j + 1) * D] = np.where(pieces[:, j] == 1, 1.0, -1.0)[:, None] * Xh
        Phi[:, -1] = 1.0 if has_c else 0.0
        bounds = [(-spec.box.weight, spec.box.weight)] * (m * D) + [(None, None) if has_c else (0, 0)]
        g_at = np.array([rows[r, :-1] @ np.concatenate(list(theta)) for r in range(n * m)])
        for r in range(n * m):
            lp = linprog(-rows[r], A_ub=-rows, b_ub=np.zeros(n * m), A_eq=Phi, b_eq=fit_k, bounds=bounds,
                         method="highs")
            assert lp.status == 0
            can_move = -lp.fun > 1e-7
            i, j = divmod(r, m)
            assert bool(tied[i, j]) == (not can_move), (k, i, j, -lp.fun)
            assert (g_at[r] > 1e-9) == can_move, (k, i, j, g_at[r])
        checked += 1
    assert checked >= min(10, len(ks) // 2)


def test_cell_indices_are_multiset_ranks():
    from milpland.instance import activations as acts

    patterns = np.array(list(itertools.product([0, 1], repeat=3)))[:6]
    shuffled = patterns[[3, 0, 5, 1, 4, 2]]  # canonical order by lexsort, not by pattern index
    for act, m, pats in ((acts.relu(), 3, patterns), (acts.relu(), 2, patterns), (acts.relu(), 3, shuffled),
                         (acts.hardtanh(), 2, np.array(list(itertools.product([0, 1, 2], repeat=2)))[:5])):
        grid = en.CellGrid.build(pats, m, act)
        cells = list(en.generate_cells(pats, m, act))
        assert len(grid) == len(cells) == en.count_cells(len(pats), m, act)
        for k, cell in enumerate(cells):
            assert np.array_equal(grid.cell(k).pattern, cell.pattern) and np.array_equal(grid.cell(k).signs,
                                                                                          cell.signs)
            perm = np.random.default_rng(k).permutation(m)
            assert grid.index(grid.signs[k][perm], grid.units[k][perm]) == k


def test_match_fit_equals_a_linear_scan():
    spec = make_spec(3, 8, 1, 2)
    rng = np.random.default_rng(4)
    tau = fit_tolerance(spec)
    w = float(spec.loss.weight(spec.n))
    base = rng.normal(size=(30, spec.n))
    fits = np.vstack([base, base[:10] + rng.uniform(-0.5, 0.5, size=(10, spec.n)) * tau])
    risk = np.array([spec.loss.risk(f, spec.y) for f in fits])
    order = np.argsort(risk)
    fits, keys = fits[order], risk[order]
    for t in range(60):
        f = fits[t % len(fits)] + rng.uniform(-1, 1, size=spec.n) * tau * (0.5 if t % 3 else 3.0)
        assert cell_qp.match_fit(f, fits, keys, len(fits), tau, w, spec.y) == match_minimum(f, fits, spec)


@pytest.mark.parametrize("case", [(11, 6, 1, 3, "relu", True, 3.0), (12, 6, 2, 2, "relu", True, 100.0),
                                  (13, 7, 1, 2, "leaky", False, 100.0)])
def test_compiled_rejections_are_certifier_rejections(case):
    """Cells that the compiled loop decides alone: a better neighbouring cell (not a local minimum)
    or box-limited.  A fresh Certifier -- HiGHS cell solves, LP face analysis -- agrees on each."""
    seed, n, d, width, act, bias, box = case
    s = Solved(make_spec(seed, n, d, width, act, bias=bias, box=box))
    spec, grid, st, tab = s.spec, s.grid, s.store, s.table
    m = spec.width
    reference = Certifier(spec)
    rng = np.random.default_rng(5)
    rejected, limited = [], np.flatnonzero(st.box_limited)
    tied, zero = np.zeros((n, m), dtype=bool), np.zeros(m, dtype=bool)
    theta, cflat = np.zeros((m, d + 1)), np.zeros(1)
    for k in rng.permutation(np.flatnonzero(st.fast & ~st.box_limited)):
        if not cell_qp.examine_face(grid.units[k], grid.signs[k], st.mu[k], tab.pattern_ptr, tab.pattern_rays,
                                    tab.centred, tab.gram, tab.side, tab.patterns, tab.slopes, tab.Xh, tab.rays,
                                    tab.feature_mean, tab.y_mean, tab.has_c, float(spec.box.weight), theta, cflat,
                                    tied, zero):
            continue
        threshold = st.risk[k] - (NEIGHBOUR_RTOL * st.risk[k] + s.certifier.floor)
        outcome = cell_qp._neighbours(k, grid.units, grid.signs, tied, zero, grid.patterns.astype(np.int8),
                                      grid.rank_table, grid.class_offset, grid.neg_count, st.feasible, st.status_ok,
                                      st.risk, st.lower, threshold, np.zeros(m, np.int64), np.zeros(m, np.int64))
        if outcome == cell_qp.NEIGHBOUR_BETTER:
            rejected.append(k)
        if len(rejected) >= 25:
            break
    assert rejected
    for k in rejected:
        assert reference.certify(grid.cell(k), found_by="enumerate").status == "not_local_minimum", k
    for k in limited[:10]:
        assert reference.certify(grid.cell(k), found_by="enumerate").status == "box_limited", k


def test_nnls_gram_equals_scipy_nnls_on_degenerate_problems():
    """Small integer problems (ties, dependent and zero columns, exact zeros in the least-squares
    values -- one made a 0 / 0 step before it was fixed): the objective of scipy's NNLS."""
    from scipy.optimize import nnls

    rng = np.random.default_rng(6)
    for trial in range(400):
        rows, cols = rng.integers(2, 6), rng.integers(1, 7)
        A = rng.integers(-1, 2, size=(rows, cols)).astype(float)
        y = rng.integers(-2, 3, size=rows).astype(float)
        H, b = A.T @ A, A.T @ y
        x = np.zeros(cols)
        _, converged = cell_qp.nnls_gram(H, b, np.sqrt(np.diag(H)), max(np.linalg.norm(y), 1e-300), x)
        ref = nnls(A, y)[0]
        assert np.all(x >= 0.0)
        assert np.linalg.norm(A @ x - y) ** 2 <= np.linalg.norm(A @ ref - y) ** 2 + 1e-9, (trial, A, y, x, ref)


# A Gram matrix of a Farkas problem (d = 2, width 3) on which the active set, before the fix,
# kept a weight whose least-squares value was exactly 0 and divided 0 by 0 on the next step.
DEGENERATE_H = [
    ["0x1.1f84e59e0f94dp-1", "-0x1.e35a12cec597bp-2", "-0x1.773526cc7273ap-4", "-0x1.5b5793ac91a18p-6", "0x1.d6be2398be415p-6", "-0x1.a856e308b8817p-4", "0x0.0p+0"],
    ["-0x1.e35a12cec597bp-2", "0x1.b322273262697p-2", "0x1.d05646232ab4bp-6", "0x1.adda2422bf88dp-8", "-0x1.23487883582b1p-7", "0x1.0691e7bef6c16p-5", "0x0.0p+0"],
    ["-0x1.773526cc7273ap-4", "0x1.d05646232ab4bp-6", "0x1.3e0ebd529d243p-2", "-0x1.46c1d25caf238p-3", "0x1.bad8311d10c06p-3", "0x1.ca7f0147b7350p-4", "0x0.0p+0"],
    ["-0x1.5b5793ac91a18p-6", "0x1.adda2422bf88dp-8", "-0x1.46c1d25caf238p-3", "0x1.4d05530699686p-3", "-0x1.c3555f685f44ap-3", "0x1.a871ebd6ff0cep-6", "0x0.0p+0"],
    ["0x1.d6be2398be415p-6", "-0x1.23487883582b1p-7", "0x1.bad8311d10c06p-3", "-0x1.c3555f685f44ap-3", "0x1.31d6f21b898d3p-2", "-0x1.1f9e795dd052bp-5", "0x0.0p+0"],
    ["-0x1.a856e308b8817p-4", "0x1.0691e7bef6c16p-5", "0x1.ca7f0147b7350p-4", "0x1.a871ebd6ff0cep-6", "-0x1.1f9e795dd052bp-5", "0x1.21cf9f0896beep-2", "0x0.0p+0"],
    ["0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x1.0000000000000p+0"],
]
DEGENERATE_B = ["-0x1.3064bb38457f0p-8", "-0x1.adf7d4a549423p-4", "0x1.82a7af3a526b6p-3", "0x1.65f077d1042d8p-5", "-0x1.e51ad79e2ebbep-5", "0x1.b54928fc6aaa9p-3", "-0x0.0p+0"]
DEGENERATE_BNORM = "0x1.4c2169689afdap-1"


def test_nnls_gram_on_a_recorded_degenerate_problem():
    H = np.array([[float.fromhex(v) for v in row] for row in DEGENERATE_H])
    b = np.array([float.fromhex(v) for v in DEGENERATE_B])
    x = np.zeros(len(b))
    _, converged = cell_qp.nnls_gram(H, b, np.sqrt(np.diag(H)), float.fromhex(DEGENERATE_BNORM), x)
    assert converged and np.all(x >= 0.0)
    slope = b - H @ x  # KKT of min 1/2 x^T H x - b^T x, x >= 0: slope <= 0, = 0 where x > 0
    assert np.all(slope <= 1e-12) and np.all(np.abs(slope[x > 0]) <= 1e-12)


@pytest.mark.parametrize("case", [(21, 7, 1, 2, "relu", True, 2.0), (22, 6, 1, 2, "two_slope", False, 100.0),
                                  (23, 6, 2, 2, "leaky", True, 100.0)])
def test_best_cell_of_the_compiled_enumeration_is_the_brute_force_global(case):
    """The lowest verified cell optimum (the enumeration's global minimum over the box) against
    tests/bruteforce.py (clarabel on every cell, sharing no code with milpland), box included."""
    from bruteforce import brute_force_global

    seed, n, d, width, act, bias, box = case
    spec = make_spec(seed, n, d, width, act, bias=bias, box=box)
    out = en.enumerate_minima(spec, max_cells=10**6)
    assert out.complete and out.counts["cells_by_kernel"] > 0
    best = out.best()
    ref = brute_force_global(spec.X, spec.y, spec.network.activation, spec.loss, spec.box.weight, spec.box.output,
                             output_bias=bias, width=width)
    assert out.store.risk[best] == pytest.approx(ref.risk, rel=1e-7, abs=1e-12)
    assert bool(out.store.result(best).box_active) == bool(ref.box_active)
    if box < 10:
        assert out.counts["box_limited"] > 0
