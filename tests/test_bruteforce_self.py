"""The brute force itself, against values known without it.

(a) hand-derived optima (teacher networks inside the box, constant and linear targets,
    optima pinned by the box), an exhaustive threshold scan for width-1 ReLU (squared,
    1-D) and bounded multistart local search, which may never beat it;
(b) completeness of the per-unit enumeration against LP feasibility of every one of
    the K^n assignments.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from bruteforce import (
    brute_force_global,
    cpwl,
    forward,
    realizable_by_lp,
    risk_of,
    unit_assignments,
)
from scipy.optimize import check_grad, minimize, minimize_scalar

from milpland.instance import activations as acts
from milpland.instance.losses import Loss
from milpland.instance.network import OneHiddenParams

PWL3 = acts.from_pieces("pwl", [-0.5, 0.5], [0.2, 1.0, -0.3])
ACTS = {
    "relu": acts.relu(),
    "leaky_relu": acts.leaky_relu(0.1),
    "two_slope": acts.two_slope(1.3, 0.7),
    "hardtanh": acts.hardtanh(),
    "pwl3": PWL3,
}
SQ, ABS = Loss("squared"), Loss("absolute")


def as_set(A: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in row) for row in A}


# ---------------------------------------------------------------------------
# (b) completeness of the per-unit enumeration


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("d,n", [(1, 7), (2, 7)])
def test_two_piece_assignments_equal_exhaustive_lp(seed, d, n):
    X = np.random.default_rng(seed).uniform(-1, 1, (n, d))
    A = unit_assignments(X, 2)
    assert as_set(A) == as_set(realizable_by_lp(X, acts.relu()))
    assert len(A) == len(as_set(A))  # no duplicates


@pytest.mark.parametrize("act", ["hardtanh", "pwl3"])
@pytest.mark.parametrize("d,n,seed", [(1, 6, 0), (2, 5, 0), (2, 5, 1)])
def test_three_piece_assignments_equal_exhaustive_lp(act, d, n, seed):
    X = np.random.default_rng(10 + seed).uniform(-1, 1, (n, d))
    assert as_set(unit_assignments(X, 3)) == as_set(realizable_by_lp(X, ACTS[act]))


def test_assignment_counts_match_the_known_formulas():
    # 2-D points in general position: 2 * sum_{k<=2} C(n-1, k) affine dichotomies (Cover 1965)
    X = np.random.default_rng(5).uniform(-1, 1, (7, 2))
    assert len(unit_assignments(X, 2)) == 2 * (1 + 6 + 15)
    # 1-D: monotone 2-cut sequences in both directions, minus the 3 constant ones counted twice
    x = np.random.default_rng(5).uniform(-1, 1, (8, 1))
    assert len(unit_assignments(x, 2)) == 2 * 9 - 2
    assert len(unit_assignments(x, 3)) == 2 * 45 - 3


@pytest.mark.parametrize("K,act", [(2, "relu"), (3, "hardtanh")])
def test_degenerate_data_duplicates_and_collinear_points(K, act):
    # identical inputs with different targets, and three collinear points in the plane
    X1 = np.array([[0.3], [0.3], [-0.2], [0.9], [-0.7]])
    X2 = np.array([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0], [0.2, -0.6], [0.0, 0.0]])
    for X in (X1, X2):
        assert as_set(unit_assignments(X, K)) == as_set(realizable_by_lp(X, ACTS[act]))


# ---------------------------------------------------------------------------
# (a) hand-derived optima


def scaled_in_box(W1, b1, v, B, P, homogeneous):
    rho = np.abs(v)
    inside = np.all(np.abs(rho[:, None] * W1) <= B) and np.all(np.abs(rho * b1) <= B)
    return inside and (homogeneous or np.all(rho <= P))


@pytest.mark.parametrize("act,d,width,n", [
    ("relu", 1, 1, 8), ("relu", 2, 2, 6), ("leaky_relu", 1, 2, 7), ("two_slope", 2, 1, 6),
    ("hardtanh", 1, 1, 8), ("hardtanh", 2, 1, 6), ("pwl3", 1, 1, 8), ("pwl3", 1, 2, 5),
])
@pytest.mark.parametrize("loss", [SQ, ABS])
def test_teacher_inside_the_box_gives_zero_risk(act, d, width, n, loss):
    rng = np.random.default_rng(zlib.crc32(f"{act}-{d}-{width}-{n}".encode()))
    X = rng.uniform(-1, 1, (n, d))
    W1, b1 = rng.normal(size=(width, d)) * 1.5, rng.normal(size=width) * 0.5
    v = rng.choice([-1.0, 1.0], size=width) * rng.uniform(0.5, 2.0, size=width)
    teacher = OneHiddenParams(W1=W1, b1=b1, v=v, c=0.3)
    y = forward(teacher, X, ACTS[act])
    assert scaled_in_box(W1, b1, v, 10.0, 10.0, act in ("relu", "leaky_relu", "two_slope"))
    res = brute_force_global(X, y, ACTS[act], loss, 10.0, 10.0, width=width)
    assert res.risk <= 1e-9
    assert res.risk_numpy <= 1e-8


@pytest.mark.parametrize("loss,expected", [(SQ, 2.25), (ABS, 1.5)])
def test_constant_target_pinned_by_the_output_box(loss, expected):
    """hardtanh, no output bias, rho <= P = 1: f in [-1, 1], so f = 1 is best for y = 2.5.

    Attained by rho = 1, u~ = 0, a~ = 1 (z = 1, hardtanh = 1).  Risk (2.5 - 1)^2 or |2.5 - 1|.
    """
    X = np.linspace(-1, 1, 6)[:, None]
    y = np.full(6, 2.5)
    res = brute_force_global(X, y, acts.hardtanh(), loss, 10.0, 1.0, output_bias=False)
    assert res.risk == pytest.approx(expected, rel=1e-8)
    assert res.risk_numpy == pytest.approx(expected, rel=1e-7)
    assert res.box_active
    # and with a loose output box the constant is fitted exactly
    assert brute_force_global(X, y, acts.hardtanh(), loss, 10.0, 3.0, output_bias=False).risk <= 1e-9


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "two_slope", "pwl3"])
def test_constant_target_with_output_bias_is_fitted_exactly(act):
    X = np.random.default_rng(1).uniform(-1, 1, (6, 2))
    y = np.full(6, -4.2)
    for loss in (SQ, ABS):
        assert brute_force_global(X, y, ACTS[act], loss, 10.0, 10.0, width=1 if act == "pwl3" else 2).risk <= 1e-9


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "two_slope"])
def test_linear_target_is_fitted_by_one_unit(act):
    x = np.linspace(-1, 1, 7)[:, None]
    y = 2.0 * x[:, 0] - 0.5
    for loss in (SQ, ABS):
        assert brute_force_global(x, y, ACTS[act], loss, 10.0, 10.0).risk <= 1e-9


@pytest.mark.parametrize("loss,expected", [(SQ, 8.5), (ABS, 2.5)])
def test_relu_optimum_pinned_by_the_weight_box(loss, expected):
    """x = (1, 2), y = (5, 10), relu width 1, no bias, |u~|, |a~| <= 2.

    f1 = u~ + a~ <= 4 and f2 = 2 u~ + a~ <= 6, both attained at u~ = a~ = 2; both residuals
    fall as f grows, so the minimum is ((5-4)^2 + (10-6)^2) / 2 = 8.5 or (1 + 4) / 2 = 2.5.
    """
    X = np.array([[1.0], [2.0]])
    y = np.array([5.0, 10.0])
    res = brute_force_global(X, y, acts.relu(), loss, 2.0, 2.0, output_bias=False)
    assert res.risk == pytest.approx(expected, rel=1e-8)
    assert res.box_active
    assert np.allclose(res.scaled["U"], [[2.0]], atol=1e-6) and np.allclose(res.scaled["a"], [2.0], atol=1e-6)


def test_half_sum_reduction_is_half_the_sse():
    X = np.array([[1.0], [2.0]])
    y = np.array([5.0, 10.0])
    res = brute_force_global(X, y, acts.relu(), Loss("squared", "half_sum"), 2.0, 2.0, output_bias=False)
    assert res.risk == pytest.approx(17.0 / 2, rel=1e-8)


def test_cpwl_formula_matches_the_piece_table():
    z = np.linspace(-3, 3, 61)
    for act in ACTS.values():
        k = np.searchsorted(np.asarray(act.breakpoints), z)
        table = np.asarray(act.slopes)[k] * z + np.asarray(act.intercepts)[k]
        assert np.allclose(cpwl(act, z), table, atol=1e-14)


# ---------------------------------------------------------------------------
# (a) width-1 ReLU, squared loss, 1-D: exhaustive threshold scan


def relu1_scan(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """min over tau and direction of the OLS fit of span{1, (x - tau)_+} or span{1, (tau - x)_+}.

    Every width-1 ReLU network with bias is c + beta (x - tau)_+, c + beta (tau - x)_+, or
    a line or a constant (tau outside the data).  For a fixed tau the fit is ordinary
    least squares in (c, beta); tau is scanned densely in every gap of the sorted
    inputs and refined with bounded Brent.  Returns (SSE, |beta|, |beta tau|).
    """
    xs = np.sort(x)

    def sse(tau, direction):
        h = np.maximum(0.0, direction * (x - tau))
        M = np.column_stack([np.ones_like(x), h])
        coef, *_ = np.linalg.lstsq(M, y, rcond=None)
        r = M @ coef - y
        return float(r @ r), abs(coef[1]), abs(coef[1] * tau)

    lin = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(lin, y, rcond=None)
    best = (float(np.sum((lin @ coef - y) ** 2)), abs(coef[1]), 0.0)  # every sample active: a line
    for direction in (1.0, -1.0):
        for lo, hi in zip(xs[:-1], xs[1:]):
            grid = np.linspace(lo, hi, 201)
            vals = [sse(t, direction)[0] for t in grid]
            k = int(np.argmin(vals))
            res = minimize_scalar(lambda t: sse(t, direction)[0], bounds=(grid[max(k - 1, 0)], grid[min(k + 1, 200)]),
                                  method="bounded", options={"xatol": 1e-13})
            for t in (grid[k], res.x):
                cand = sse(t, direction)
                if cand[0] < best[0]:
                    best = cand
    return best


@pytest.mark.parametrize("seed", range(6))
def test_relu_width1_squared_matches_threshold_scan(seed):
    rng = np.random.default_rng(100 + seed)
    n = 6 + seed % 3
    x = np.sort(rng.uniform(-1, 1, n))
    y = rng.normal(size=n) if seed % 2 else np.maximum(0, 1.3 * x - 0.2) + 0.3 * rng.normal(size=n)
    sse, u, a = relu1_scan(x, y)
    assert u <= 100 and a <= 100  # the scan's optimum (unboxed) lies in the box: both are the same minimum
    res = brute_force_global(x[:, None], y, acts.relu(), SQ, 100.0, 100.0)
    assert res.risk == pytest.approx(sse / n, rel=1e-7, abs=1e-12)


# ---------------------------------------------------------------------------
# (a) multistart local search: any point it finds is feasible, so it may never beat the brute force


def scaled_objective(X, y, act, loss, width, bias=True):
    """Risk and gradient of f = c + sum_j s_j rho_j sigma(g_j / rho_j) in theta~ = (u~, a~, [rho]) per unit, c.

    rho_j = 1 (and no rho variable) for homogeneous sigma.  df/du~_j = s_j sigma'(z) x,
    df/da~_j = s_j sigma'(z), df/drho_j = s_j (sigma(z) - z sigma'(z)), df/dc = 1.
    """
    n, d = X.shape
    homog = act.breakpoints == (0.0,) and all(b == 0.0 for b in act.intercepts)
    q = d + 1 + (0 if homog else 1)
    w = 1.0 / n
    slopes, t = np.asarray(act.slopes), np.asarray(act.breakpoints)

    def value_and_grad(theta, signs):
        blk = theta[:width * q].reshape(width, q)
        rho = np.ones(width) if homog else blk[:, d + 1]
        Z = (X @ blk[:, :d].T + blk[:, d]) / rho
        S = cpwl(act, Z)
        D = slopes[np.searchsorted(t, Z)]
        f = (rho * S) @ signs + (theta[width * q] if bias else 0.0)
        r = f - y
        dR = 2 * w * r if loss.kind == "squared" else w * np.sign(r)
        grad_blk = np.zeros((width, q))
        grad_blk[:, :d] = signs[:, None] * ((D * dR[:, None]).T @ X)
        grad_blk[:, d] = signs * (D.T @ dR)
        if not homog:
            grad_blk[:, d + 1] = signs * ((S - Z * D).T @ dR)
        grad = np.r_[grad_blk.ravel(), [dR.sum()] if bias else []]
        return risk_of(f, y, loss), grad

    return value_and_grad, q, homog


def multistart(X, y, act, loss, width, B, P, starts, seed, bias=True):
    """L-BFGS-B over the scaled weights with the box as bounds, `starts` runs per sign class.

    Units of one sign are interchangeable, so the first p units positive covers {+-1}^m.
    """
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    fun, q, homog = scaled_objective(X, y, act, loss, width, bias)
    bounds = ([(-B, B)] * (d + 1) + ([] if homog else [(1e-9, P)])) * width + ([(None, None)] if bias else [])
    best = np.inf
    for p in range(width + 1):
        signs = np.where(np.arange(width) < p, 1.0, -1.0)
        for _ in range(starts):
            x0 = rng.uniform(-1, 1, len(bounds)) * min(2.0, B)
            if not homog:
                x0[d + 1:width * q:q] = rng.uniform(0.1, P, size=width)
            res = minimize(fun, x0, args=(signs,), jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": 300})
            best = min(best, fun(res.x, signs)[0])
    return best


@pytest.mark.parametrize("act", ["relu", "two_slope", "hardtanh", "pwl3"])
def test_multistart_gradient_matches_finite_differences(act):
    rng = np.random.default_rng(0)
    X, y = rng.uniform(-1, 1, (5, 2)), rng.normal(size=5)
    fun, q, _ = scaled_objective(X, y, ACTS[act], SQ, 2)
    signs = np.array([1.0, -1.0])
    theta = rng.uniform(0.2, 1.0, 2 * q + 1)
    err = check_grad(lambda th: fun(th, signs)[0], lambda th: fun(th, signs)[1], theta)
    assert err < 1e-5


@pytest.mark.parametrize("act,d,width,n,loss", [
    ("relu", 1, 2, 7, SQ), ("relu", 2, 2, 5, ABS), ("leaky_relu", 1, 2, 6, ABS), ("two_slope", 2, 1, 6, SQ),
    ("hardtanh", 1, 1, 7, SQ), ("pwl3", 1, 2, 4, SQ),
])
def test_multistart_never_beats_the_brute_force(act, d, width, n, loss):
    rng = np.random.default_rng(7 * n + width)
    X = rng.uniform(-1, 1, (n, d))
    y = rng.normal(size=n)
    B = P = 3.0
    res = brute_force_global(X, y, ACTS[act], loss, B, P, width=width)
    local = multistart(X, y, ACTS[act], loss, width, B, P, starts=8, seed=1)
    assert local >= res.risk - 1e-9 * max(1.0, res.risk)
    # the brute-force point is itself a network in the box with the claimed risk
    assert res.risk_numpy == pytest.approx(res.risk, rel=1e-7, abs=1e-9)


def test_relu_width1_original_weights_multistart_does_not_beat_the_scan_optimum():
    """Unbounded original weights (w, b, v, c): valid because the scan shows the box is not active."""
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(-1, 1, 7))
    y = rng.normal(size=7)
    assert max(relu1_scan(x, y)[1:]) <= 100
    res = brute_force_global(x[:, None], y, acts.relu(), SQ, 100.0, 100.0)

    def objective(p):
        h = p[0] * x + p[1]
        r = p[2] * np.maximum(0.0, h) + p[3] - y
        active = (h > 0).astype(float)
        g = 2 * r / len(x)
        grad = np.array([np.sum(g * p[2] * active * x), np.sum(g * p[2] * active), np.sum(g * np.maximum(0.0, h)),
                         np.sum(g)])
        return float(np.mean(r * r)), grad

    values = [minimize(objective, rng.normal(size=4) * 2, jac=True, method="BFGS").fun for _ in range(200)]
    assert min(values) >= res.risk - 1e-9 * max(1.0, res.risk)
    assert min(values) <= res.risk * 1.01  # the local search works (it stalls at kinks, so not to 1e-6)
