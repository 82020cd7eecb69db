"""The compiled interior point of milpland.search.small_qp against independent references: a closed-form
projection, Clarabel set up here (not through `solve_qp`), KKT residuals recomputed in numpy, and, on
node QPs recorded from real two-layer searches, the certified bound `deep_relaxation.bound` from its
answer against the bound from Clarabel's."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from milpland.instance.spec import spec_from_dict
from milpland.runs.suites import load_suite
from milpland.search import deep_relaxation as rx
from milpland.search import deep_solve as ds
from milpland.search import small_qp
from milpland.search.deep_model import TwoLayerData
from milpland.search.solve import solve_global


def clarabel_qp(Phi, y, weight, A, rhs, lower, upper):
    """(objective, z) of min weight ||Phi z - y||^2 s.t. A z >= rhs, lower <= z <= upper by Clarabel,
    the objective as weight z^T Phi^T Phi z - 2 weight y^T Phi z + weight y^T y."""
    import clarabel

    N = Phi.shape[1]
    P = sp.csc_matrix(np.triu(2.0 * weight * Phi.T @ Phi))
    q = -2.0 * weight * Phi.T @ y
    G = sp.csc_matrix(np.vstack([-A, np.eye(N), -np.eye(N)]))
    h = np.concatenate([-rhs, upper, -lower])
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = 1e-12
    sol = clarabel.DefaultSolver(P, q, G, h, [clarabel.NonnegativeConeT(G.shape[0])], settings).solve()
    assert str(sol.status) == "Solved"
    z = np.asarray(sol.x)
    return objective(Phi, y, weight, z), z


def objective(Phi, y, weight, z):
    r = Phi @ z - y
    return float(weight * r @ r)


def random_qp(rng, *, feasible=True):
    """A dense QP shaped like a node QP: n = 3-5 samples, 13-19 variables, 26-34 sparse rows (2-5
    non-zeros), every variable with finite bounds; rows through a point inside the bounds (about 40 %
    of them tight there), so it is feasible."""
    n, N, R = rng.integers(3, 6), rng.integers(13, 20), rng.integers(26, 35)
    Phi = rng.normal(size=(n, N))
    y = rng.normal(size=n) * rng.uniform(0.1, 10)
    A = np.zeros((R, N))
    for r in range(R):
        cols = rng.choice(N, size=rng.integers(2, 6), replace=False)
        A[r, cols] = rng.normal(size=cols.size)
    lower = -rng.uniform(0, 2, N)
    upper = lower + rng.uniform(0.5, 3, N)
    inside = lower + rng.uniform(0.1, 0.9, N) * (upper - lower)
    slack = np.where(rng.random(R) < 0.4, 0.0, rng.exponential(0.5, R))
    rhs = A @ inside - slack
    return Phi, y, float(rng.uniform(0.1, 1.0)), A, rhs, lower, upper


def kkt_residual(Phi, y, weight, A, rhs, lower, upper, z, lam):
    """The largest violation of the KKT conditions at (z, lam), relative to the gradient's size: primal
    rows and bounds, lam >= 0, complementarity of the rows, and stationarity with the bound multipliers
    it implies (the reduced gradient may only push against an active bound)."""
    grad = 2.0 * weight * Phi.T @ (Phi @ z - y)
    size = 1.0 + np.abs(grad).max() + np.abs(A.T @ lam).max()
    slack = A @ z - rhs
    reduced = grad - A.T @ lam  # = u_l - u_u: positive only at the lower bound, negative only at the upper
    at_lower = np.where(reduced > 0, reduced * (z - lower), 0.0)
    at_upper = np.where(reduced < 0, -reduced * (upper - z), 0.0)
    return max(np.max(-slack, initial=0.0), np.max(lower - z), np.max(z - upper), np.max(-lam, initial=0.0),
               np.max(np.abs(lam * slack)) / size, np.max(np.abs(at_lower)) / size, np.max(np.abs(at_upper)) / size)


def test_a_projection_has_its_closed_form_optimum_and_multiplier():
    """min w ||z - (2, 0)||^2 s.t. z_2 - z_1 >= 0: the projection (1, 1), risk 2 w, and the multiplier
    from 2 w (z - y) = lam (-1, 1): lam = 2 w; also with the objective scaled (scale 3)."""
    w = 0.7
    for scale in (1.0, 3.0):
        z, lam, converged = small_qp.solve_squared(np.eye(2), np.array([2.0, 0.0]), w, scale,
                                                   np.array([[-1.0, 1.0]]), np.zeros(1), -5 * np.ones(2),
                                                   5 * np.ones(2))
        assert converged
        assert np.allclose(z, [1.0, 1.0], atol=1e-9) and lam[0] == pytest.approx(2 * w, rel=1e-9)


def test_a_fixed_variable_stays_at_its_value():
    """lower == upper fixes a variable (a network without output bias has c = 0): min ||z - (2, 0)||^2
    with z_1 fixed at 0.5 and z_2 - z_1 >= 0 has the optimum (0.5, 0.5), multiplier 2 (0.5 - 0) = 1."""
    z, lam, converged = small_qp.solve_squared(np.eye(2), np.array([2.0, 0.0]), 1.0, 1.0, np.array([[-1.0, 1.0]]),
                                               np.zeros(1), np.array([0.5, -5.0]), np.array([0.5, 5.0]))
    assert converged and z[0] == 0.5
    assert z[1] == pytest.approx(0.5, abs=1e-9) and lam[0] == pytest.approx(1.0, rel=1e-8)


def test_random_dense_qps_agree_with_clarabel_and_satisfy_kkt():
    """60 random feasible QPs of the node QPs' shapes: objective within 1e-8 (relative) of Clarabel's
    at tolerance 1e-12, KKT residuals below 1e-8, and the point inside its bounds."""
    rng = np.random.default_rng(17)
    for _ in range(60):
        Phi, y, w, A, rhs, lower, upper = random_qp(rng)
        scale = float(np.var(y))
        z, lam, converged = small_qp.solve_squared(Phi, y, w, scale, A, rhs, lower, upper)
        assert converged
        reference, _ = clarabel_qp(Phi, y, w, A, rhs, lower, upper)
        assert objective(Phi, y, w, z) == pytest.approx(reference, rel=1e-8, abs=1e-10 * w * scale)
        assert kkt_residual(Phi, y, w, A, rhs, lower, upper, z, lam) < 1e-8
        assert np.all(z >= lower) and np.all(z <= upper)


def assert_an_infeasible_node_goes_to_clarabel(monkeypatch, data, qp):
    """A node QP with a row beyond a variable's bound (z_0 >= its upper bound + 1): `solve_qp` calls
    Clarabel, which finds it infeasible (None)."""
    import clarabel

    beyond = np.eye(qp.A.shape[1])[:1]
    bad = rx.NodeQP(Phi=qp.Phi, A=np.vstack([qp.A, beyond]), rhs=np.append(qp.rhs, qp.upper[0] + 1.0),
                    lower=qp.lower, upper=qp.upper, Z=qp.Z, free=qp.free, p0=qp.p0)
    calls = []
    real = clarabel.DefaultSolver
    monkeypatch.setattr(clarabel, "DefaultSolver", lambda *a: calls.append(1) or real(*a))
    assert rx.solve_qp(data, bad) is None and calls


def test_an_infeasible_qp_is_not_converged_and_solve_qp_falls_back(monkeypatch):
    """Rows z_0 >= 1 and -z_0 >= 0 cannot both hold: converged is False (within the iteration cap).
    `solve_qp` then hands the QP to Clarabel: a node QP with a row beyond a variable's bound comes back
    None (Clarabel's verdict) and Clarabel was called."""
    rng = np.random.default_rng(3)
    Phi, y, w, A, rhs, lower, upper = random_qp(rng)
    e0 = np.eye(A.shape[1])[0]
    A2, rhs2 = np.vstack([A, e0, -e0]), np.concatenate([rhs, [1.0, 0.0]])
    _, _, converged = small_qp.solve_squared(Phi, y, w, 1.0, A2, rhs2, lower, upper)
    assert not converged

    assert_an_infeasible_node_goes_to_clarabel(monkeypatch, *root_qp(box1_spec(3, 1)))


def test_a_compiled_solve_that_does_not_converge_falls_back_to_clarabel(monkeypatch):
    """solve_squared reporting no convergence (forced here) gives exactly Clarabel's answer."""
    data, qp = root_qp(box1_spec(3, 1))
    monkeypatch.setattr(small_qp, "solve_squared", lambda *a, **k: (np.zeros(qp.A.shape[1]), np.zeros(qp.A.shape[0]),
                                                                     False))
    fallen = rx.solve_qp(data, qp)
    clarabel = rx.solve_qp(data, qp, compiled=False)
    assert np.array_equal(fallen[0], clarabel[0]) and np.array_equal(fallen[1], clarabel[1])


def box1_spec(n: int, seed: int):
    """An instance of models/suites/deep-scip.toml (1-2-2-1 ReLU, box 1, random labels)."""
    return next(i.spec for i in load_suite("models/suites/deep-scip.toml") if i.name == f"box1-n{n}-s{seed}")


def leaky_spec(act: str, **params):
    rng = np.random.default_rng(7)
    x, y = np.sort(rng.uniform(0, 1, 4)).round(3), rng.normal(size=4).round(3)
    return spec_from_dict({"name": act, "data": {"x": list(x), "y": list(y)},
                           "network": {"hidden": [2, 2], "activation": act, **params},
                           "loss": {"kind": "squared"}, "box": {"weight": 1.0}, "solve": {"time_limit": 60}})


def root_qp(spec):
    """(data, qp) of the first root node of the two-layer search of ``spec`` (no search run)."""
    data = TwoLayerData.of(spec)
    return data, rx.node_qp(data, ds.root_nodes(data, itertools.count())[0])


def recorded_node_qps(spec):
    """(data, qp) of every node QP of a real search of ``spec`` (solve_qp intercepted)."""
    got = []
    real = rx.solve_qp

    def recording(data, qp, **kwargs):
        got.append((data, qp))
        return real(data, qp, **kwargs)

    rx.solve_qp = recording
    try:
        ds.solve_two_layer(spec, one_hidden=solve_global)
    finally:
        rx.solve_qp = real
    return got


def bound_differences(recorded):
    """(bound from the compiled answer - bound from Clarabel's) / (1 + |Clarabel's|) per node QP, and the
    number the compiled solver left to Clarabel."""
    differences, unconverged = [], 0
    for data, qp in recorded:
        z, lam, converged = small_qp.solve_squared(qp.Phi, data.y, data.weight, rx._variance(data), qp.A, qp.rhs,
                                                   qp.lower, qp.upper)
        reference = rx.solve_qp(data, qp, compiled=False)
        if not converged:
            unconverged += 1
            continue
        if reference is not None:
            theirs = rx.bound(data, qp, reference[0], reference[1])
            differences.append((rx.bound(data, qp, z, lam) - theirs) / (1.0 + abs(theirs)))
    return np.array(differences), unconverged


@pytest.mark.parametrize("spec", [pytest.param(box1_spec(3, 1), id="box1-n3-s1"),
                                  pytest.param(box1_spec(4, 3), id="box1-n4-s3"),
                                  pytest.param(leaky_spec("leaky_relu", alpha=0.1), id="leaky"),
                                  pytest.param(leaky_spec("two_slope", s_plus=1.0, s_minus=-0.5), id="two-slope")])
def test_recorded_node_qps_bound_at_least_as_well_as_clarabel(spec):
    """On every node QP of a real search the certified bound from the compiled (z, lam) is at least
    Clarabel's minus 1e-9 (1 + |bound|); at most 1 % of the QPs are left to Clarabel."""
    recorded = recorded_node_qps(spec)
    differences, unconverged = bound_differences(recorded)
    assert len(recorded) > 50 and unconverged <= 0.01 * len(recorded)
    assert differences.min() >= -1e-9


@pytest.mark.slow
@pytest.mark.parametrize("name", ["box1-n3-s2", "box1-n4-s1", "box1-n4-s2"])
def test_recorded_node_qps_of_the_rest_of_the_deep_scip_suite(name):
    """The same on the other deep-scip instances with non-zero minima (about 2,000 QPs each)."""
    spec = next(i.spec for i in load_suite("models/suites/deep-scip.toml") if i.name == name)
    recorded = recorded_node_qps(spec)
    differences, unconverged = bound_differences(recorded)
    assert unconverged <= 0.01 * len(recorded) and differences.min() >= -1e-9


def test_the_search_finds_the_same_minimum_and_bound_with_either_solver(monkeypatch):
    """box1-n4-s3 with Clarabel only and with the compiled solver first: the same minimum and lower
    bound (to the search's tolerance), node counts within 10 %."""
    spec = box1_spec(4, 3)
    compiled = ds.solve_two_layer(spec, one_hidden=solve_global)
    real = rx.solve_qp
    monkeypatch.setattr(rx, "solve_qp", lambda data, qp: real(data, qp, compiled=False))
    reference = ds.solve_two_layer(spec, one_hidden=solve_global)
    assert compiled.status == reference.status == "optimal"
    assert compiled.risk == pytest.approx(reference.risk, rel=1e-6)
    assert compiled.lower_bound == pytest.approx(reference.lower_bound, rel=1e-6)
    assert abs(compiled.nodes - reference.nodes) <= 0.1 * reference.nodes


# ---- the absolute- and hinge-loss LPs (small_qp.solve_loss_lp) ----

def lp_loss(Phi, y, weight, z, hinge):
    f = Phi @ z
    return float(weight * (np.sum(np.maximum(0.0, 1.0 - y * f)) if hinge else np.sum(np.abs(f - y))))


def linprog_loss_lp(Phi, y, weight, A, rhs, lower, upper, hinge):
    """The optimum of the loss LP by scipy's HiGHS, in the epigraph form written out here (e free above;
    hinge e >= 0, absolute e free below)."""
    from scipy.optimize import linprog

    n, N = Phi.shape
    if hinge:  # -(y_i Phi_i) z - e_i <= -1
        rows, b = np.hstack([-y[:, None] * Phi, -np.eye(n)]), -np.ones(n)
    else:  # Phi z - e <= y, -Phi z - e <= -y
        rows = np.vstack([np.hstack([Phi, -np.eye(n)]), np.hstack([-Phi, -np.eye(n)])])
        b = np.concatenate([y, -y])
    rows = np.vstack([rows, np.hstack([-A, np.zeros((A.shape[0], n))])])
    b = np.concatenate([b, -rhs])
    bounds = list(zip(lower, upper)) + [(0.0 if hinge else None, None)] * n
    res = linprog(np.concatenate([np.zeros(N), np.full(n, weight)]), A_ub=rows, b_ub=b, bounds=bounds,
                  method="highs", options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    assert res.status == 0
    return float(res.fun)


def lagrangian_bound(Phi, y, weight, A, rhs, lower, upper, lam, slopes, hinge):
    """The weak-duality bound of the loss LP from (lam, slopes), written out here as in DESIGN §6a:
    absolute: |r| >= s r (s in [-1, 1]); hinge: max(0, 1 - y f) >= pi (1 - y f) (pi in [0, 1])."""
    lam = np.maximum(lam, 0.0)
    if hinge:
        pi = np.clip(slopes, 0.0, 1.0)
        constant, r = weight * pi.sum(), -weight * Phi.T @ (pi * y) - A.T @ lam
    else:
        s_ = np.clip(slopes, -1.0, 1.0)
        constant, r = -weight * s_ @ y, weight * Phi.T @ s_ - A.T @ lam
    return float(constant + lam @ rhs + np.sum(np.minimum(r * lower, r * upper)))


@pytest.mark.parametrize("hinge", [False, True], ids=["absolute", "hinge"])
def test_a_one_variable_loss_lp_has_its_hand_derived_optimum(hinge):
    """absolute: min w |z - 2| s.t. -z >= -1 (z <= 1), z in [-5, 5]: z = 1, risk w, slope -1 (f < y) and,
    from d/dz w |z - 2| = -w = -lam, lam = w.  hinge: min w max(0, 1 - z) (y = 1) s.t. z <= 0.5: z = 0.5,
    risk w / 2, pi = 1 and lam = w.  With the objective scaled (scale 3) the same in risk units."""
    w = 0.7
    cap = 0.5 if hinge else 1.0
    for scale in (1.0, 3.0):
        z, lam, slopes, converged = small_qp.solve_loss_lp(np.ones((1, 1)), np.array([1.0 if hinge else 2.0]), w,
                                                           scale, -np.ones((1, 1)), np.array([-cap]),
                                                           np.array([-5.0]), np.array([5.0]), hinge=hinge)
        assert converged
        assert z[0] == pytest.approx(cap, abs=1e-9) and lam[0] == pytest.approx(w, rel=1e-8)
        assert slopes[0] == pytest.approx(1.0 if hinge else -1.0, abs=1e-9)


@pytest.mark.parametrize("hinge", [False, True], ids=["absolute", "hinge"])
def test_random_loss_lps_agree_with_highs_and_their_duals_bound_it(hinge):
    """60 random feasible LPs of the node LPs' shapes (hinge: labels +-1): the loss at the returned point
    within 1e-8 (relative) of scipy's HiGHS optimum, the point inside its bounds and rows, and the
    Lagrangian bound from the returned multipliers and slopes within 1e-8 of that optimum (below it
    up to rounding: weak duality)."""
    rng = np.random.default_rng(29 + hinge)
    for _ in range(60):
        Phi, y, w, A, rhs, lower, upper = random_qp(rng)
        if hinge:
            y = np.where(y >= 0, 1.0, -1.0)
        scale = float(rng.uniform(0.1, 3.0))
        z, lam, slopes, converged = small_qp.solve_loss_lp(Phi, y, w, scale, A, rhs, lower, upper, hinge=hinge)
        assert converged
        reference = linprog_loss_lp(Phi, y, w, A, rhs, lower, upper, hinge)
        size = 1.0 + abs(reference)
        assert abs(lp_loss(Phi, y, w, z, hinge) - reference) <= 1e-8 * size
        assert np.all(z >= lower) and np.all(z <= upper) and np.min(A @ z - rhs) >= -1e-9 * (1 + np.abs(rhs).max())
        dual = lagrangian_bound(Phi, y, w, A, rhs, lower, upper, lam, slopes, hinge)
        assert reference - 1e-8 * size <= dual <= reference + 1e-9 * size


def test_an_infeasible_loss_lp_is_not_converged_and_solve_qp_falls_back(monkeypatch):
    """Rows z_0 >= 1 and -z_0 >= 0: not converged.  An absolute-loss node LP with a row beyond a
    variable's bound goes to Clarabel, which calls it infeasible (None)."""
    rng = np.random.default_rng(4)
    Phi, y, w, A, rhs, lower, upper = random_qp(rng)
    e0 = np.eye(A.shape[1])[0]
    A2, rhs2 = np.vstack([A, e0, -e0]), np.concatenate([rhs, [1.0, 0.0]])
    for hinge in (False, True):
        assert not small_qp.solve_loss_lp(Phi, np.sign(y), w, 1.0, A2, rhs2, lower, upper, hinge=hinge)[3]

    assert_an_infeasible_node_goes_to_clarabel(monkeypatch, *root_qp(lp_spec("box1-n3-s1", "absolute")))


@pytest.mark.parametrize("loss", ["absolute", "hinge"])
def test_a_loss_lp_that_does_not_converge_falls_back_to_clarabel(monkeypatch, loss):
    """solve_loss_lp reporting no convergence (forced here) gives exactly Clarabel's answer."""
    data, qp = root_qp(lp_spec("box1-n3-s1", loss))
    N, R, n = qp.A.shape[1], qp.A.shape[0], qp.Phi.shape[0]
    monkeypatch.setattr(small_qp, "solve_loss_lp", lambda *a, **k: (np.zeros(N), np.zeros(R), np.zeros(n), False))
    fallen = rx.solve_qp(data, qp)
    clarabel = rx.solve_qp(data, qp, compiled=False)
    assert all(np.array_equal(a, b) for a, b in zip(fallen, clarabel))


def lp_spec(name: str, loss: str, labels=None):
    """A deep-scip instance (its x; 1-2-2-1 ReLU, box 1) with the absolute loss on its labels, or the
    hinge loss on ``labels`` (default: the signs of its labels)."""
    spec = next(i.spec for i in load_suite("models/suites/deep-scip.toml") if i.name == name)
    y = np.asarray(spec.y, dtype=float)
    if loss == "hinge":
        y = np.where(y >= 0, 1.0, -1.0) if labels is None else np.asarray(labels, dtype=float)
    return spec_from_dict({"name": name, "data": {"x": [float(v) for v in np.asarray(spec.X)[:, 0]],
                                                  "y": [float(v) for v in y]},
                           "network": {"hidden": [2, 2], "activation": "relu"}, "loss": {"kind": loss},
                           "box": {"weight": 1.0}, "solve": {"time_limit": 900}})


def lp_bound_differences(recorded):
    """As `bound_differences`, for the loss LPs."""
    differences, unconverged = [], 0
    for data, qp in recorded:
        z, lam, slopes, converged = small_qp.solve_loss_lp(qp.Phi, data.y, data.weight, rx._lp_scale(data), qp.A,
                                                           qp.rhs, qp.lower, qp.upper, hinge=data.loss == "hinge")
        reference = rx.solve_qp(data, qp, compiled=False)
        if not converged:
            unconverged += 1
            continue
        if reference is not None:
            theirs = rx.bound(data, qp, *reference)
            differences.append((rx.bound(data, qp, z, lam, slopes) - theirs) / (1.0 + abs(theirs)))
    return np.array(differences), unconverged


@pytest.mark.parametrize("spec", [pytest.param(lp_spec("box1-n3-s1", "absolute"), id="absolute-n3-s1"),
                                  pytest.param(lp_spec("box1-n3-s1", "hinge"), id="hinge-n3-s1")])
def test_recorded_node_lps_bound_at_least_as_well_as_clarabel(spec):
    """On every node LP of a real absolute / hinge search (about 650 each) the certified bound from the
    compiled (z, lam, slopes) is at least Clarabel's minus 1e-9 (1 + |bound|); at most 1 % are left to
    Clarabel."""
    recorded = recorded_node_qps(spec)
    differences, unconverged = lp_bound_differences(recorded)
    assert len(recorded) > 300 and unconverged <= 0.01 * len(recorded)
    assert differences.min() >= -1e-9


@pytest.mark.slow
@pytest.mark.parametrize("name,loss,labels", [("box1-n4-s1", "absolute", None), ("box1-n3-s2", "absolute", None),
                                              ("box1-n4-s1", "hinge", [1, -1, -1, 1]),
                                              ("box1-n4-s3", "hinge", [1, -1, 1, -1])])
def test_recorded_node_lps_of_larger_searches(name, loss, labels):
    """The same on four larger searches (1,900-3,500 node LPs each)."""
    recorded = recorded_node_qps(lp_spec(name, loss, labels))
    differences, unconverged = lp_bound_differences(recorded)
    assert len(recorded) > 1000 and unconverged <= 0.01 * len(recorded) and differences.min() >= -1e-9
