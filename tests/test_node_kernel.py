"""The compiled node kernel of the pattern branch-and-bound (issue 15), each piece against an
independent answer: the active set against scipy's bounded least squares and NNLS, the bit-set
cones and propagation against the sign matrix read directly, the sparse certificate against the
full extended-precision formula over a dense Phi built here, the rounding margins against
extended-precision gradients, and a node's bound against scipy's optimum of the same node."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import lsq_linear, nnls

from milpland.cells.bounded_lsq import bvls_active_set
from milpland.instance.activations import relu
from milpland.search.unit_hull import UNDECIDED, UnitHull, gradient_margins

RELU = relu()


def objective(A, b, x):
    return float(np.sum((A @ x - b) ** 2))


def node_like(rng, n=40, rays=120, units=3, bound=200.0):
    """Columns like a hull node's: relu features of random rays, shared by several units with
    signs (duplicated and opposite columns), centred; random ray bounds."""
    X = rng.normal(size=(n, 2))
    Xh = np.hstack([X, np.ones((n, 1))])
    F = np.maximum(rng.normal(size=(rays, 3)) @ Xh.T, 0.0)
    signs = np.array([1.0, 1.0, -1.0])[:units]
    A = np.hstack([s * F.T for s in signs])
    A -= A.mean(axis=0)
    b = rng.normal(size=n)
    return A, b - b.mean(), rng.uniform(bound / 10, bound, size=A.shape[1])


@pytest.mark.parametrize("qr", [False, True])
@pytest.mark.parametrize("seed,bound", [(0, 200.0), (1, 200.0), (2, 200.0), (3, 2.0), (4, 2.0), (5, 0.2)])
def test_compiled_active_set_reaches_scipys_optimum_on_node_like_problems(seed, bound, qr):
    """Cold and warm (a random point): the converged objective equals scipy's BVLS optimum, the
    point is feasible and satisfies the optimality conditions.  Ray bounds like the nodes' (about
    200) and tight ones, where most weights end at their bound (a budget of solves for that)."""
    rng = np.random.default_rng(seed)
    A, b, upper = node_like(rng, bound=bound)
    reference = 2 * lsq_linear(A, b, bounds=(0.0, upper), method="bvls", tol=1e-14).cost
    converged_runs = 0
    for start in (None, rng.uniform(0.0, 1.0, A.shape[1]) * (rng.random(A.shape[1]) < 0.2) * upper):
        x, converged = bvls_active_set(A, b, upper, start, qr=qr, max_solves=20_000)
        assert (x >= 0).all() and (x <= upper).all()
        value = objective(A, b, x)
        assert value >= reference - 1e-9 * max(reference, 1.0)  # nothing beats the optimum
        if converged:
            converged_runs += 1
            assert value == pytest.approx(reference, rel=1e-8, abs=1e-12)
            slope = A.T @ (b - A @ x)
            size = np.maximum(np.abs(A).max(axis=0), 1e-300)
            scale = max(1.0, np.abs(b).max())
            into = np.where(x <= 0, slope, np.where(x >= upper, -slope, np.abs(slope))) / size
            assert into.max() <= 1e-9 * scale
    assert converged_runs >= 1


@pytest.mark.parametrize("seed", range(10))
def test_compiled_nnls_matches_scipys_nnls(seed):
    """No upper bounds: the same residual as scipy's NNLS (a different algorithm and code)."""
    rng = np.random.default_rng(100 + seed)
    n, k = int(rng.integers(5, 30)), int(rng.integers(3, 80))
    A = rng.normal(size=(n, k))
    b = rng.normal(size=n) * 5
    x, converged = bvls_active_set(A, b, np.full(k, np.inf))
    assert converged and (x >= 0).all()
    assert objective(A, b, x) == pytest.approx(nnls(A, b, maxiter=50 * k)[1] ** 2, rel=1e-9, abs=1e-12)


def test_the_qr_solve_handles_a_column_the_normal_equations_call_dependent():
    """Columns a and -a + 1e-10 |a| e (e orthogonal to a): b = a + |a| e needs both, with weights
    about 1e10.  The normal equations lose the second column's pivot (1e-20 relative in the Gram
    matrix, below rounding): their point leaves most of e unfitted (a valid but weak node bound
    follows from it); QR keeps the pivot (1e-10 relative) and fits b."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=6)
    e = rng.normal(size=6)
    e -= (e @ a) / (a @ a) * a
    e *= np.linalg.norm(a) / np.linalg.norm(e)
    A = np.column_stack([a, -a + 1e-10 * e])
    b = a + e
    upper = np.full(2, 1e12)
    x_normal, _ = bvls_active_set(A, b, upper)
    x_qr, converged_qr = bvls_active_set(A, b, upper, qr=True)
    assert objective(A, b, x_normal) > 0.1 * (e @ e)
    assert converged_qr
    assert objective(A, b, x_qr) <= 1e-8 * (b @ b)
    assert x_qr == pytest.approx([1 + 1e10, 1e10], rel=1e-5)


def reference_cones(hull, P):
    """The cone of each unit read from the sign matrix: no top sample below, no bottom above."""
    out = []
    for j in range(P.shape[1]):
        top, bottom = P[:, j] == 1, P[:, j] == 0
        out.append(~((hull.side[:, top] < 0).any(axis=1) | (hull.side[:, bottom] > 0).any(axis=1)))
    return np.array(out)


def reference_propagate(hull, P):
    P = P.copy()
    for j, cone in enumerate(reference_cones(hull, P)):
        free = P[:, j] == UNDECIDED
        sides = hull.side[cone]
        if sides.shape[0] == 0:
            P[free, j] = 0
            continue
        top = free & (sides >= 0).all(axis=0)
        P[top, j] = 1
        P[free & ~top & (sides <= 0).all(axis=0), j] = 0
    return P


@pytest.mark.parametrize("n", [7, 64, 70, 130])
def test_bit_set_cones_and_propagation_match_the_sign_matrix(n):
    """Bit sets of 64 samples a word (n = 70 and 130 need two and three words), with samples on
    ray hyperplanes (side 0) from a grid of inputs."""
    rng = np.random.default_rng(n)
    X = rng.integers(-3, 4, size=(n, 2)).astype(float) + (rng.random((n, 2)) < 0.7) * rng.normal(size=(n, 2))
    hull = UnitHull(X, np.zeros(n), RELU, width=3, box_weight=10.0, output_bias=True, c_bound=10.0,
                    loss_weight=1.0)
    for _ in range(12):
        P = rng.integers(0, 2, size=(n, 3)).astype(np.int8)
        P[rng.random((n, 3)) < rng.uniform(0.5, 0.99)] = UNDECIDED
        assert (hull.cones(P) == reference_cones(hull, P)).all()
        assert (hull.propagate(P) == reference_propagate(hull, P)).all()


def dense_certificate(hull, prob, z):
    """The certificate of DESIGN §4b over every column, in extended precision, from a dense Phi."""
    ld = np.longdouble
    Phi = np.hstack([prob.column_sign[None, :] * hull.F[prob.ray_of].T, np.ones((hull.n, 1))]).astype(ld)
    resid = Phi @ z.astype(ld) - hull.y.astype(ld)
    grad = Phi.T @ (2 * resid)
    gap = grad @ z.astype(ld) - np.sum(np.minimum(grad * prob.lower.astype(ld), grad * prob.upper.astype(ld)))
    return float(hull.w * (resid @ resid)), float(hull.w * max(gap, ld(0)))


@pytest.mark.parametrize("seed", range(5))
def test_sparse_certificate_equals_the_dense_extended_precision_one(seed):
    """At the solver's point and at random feasible points (many zero weights): the same value and
    gap as summing every column in extended precision; the bound is below scipy's node optimum."""
    rng = np.random.default_rng(seed)
    n = 12
    X = rng.normal(size=(n, 2))
    y = rng.normal(size=n)
    hull = UnitHull(X, y, RELU, width=3, box_weight=5.0, output_bias=True, c_bound=50.0, loss_weight=1.0 / n)
    P = np.full((n, 3), UNDECIDED, dtype=np.int8)
    P[rng.random((n, 3)) < 0.3] = 1
    P = hull.propagate(P)
    prob = hull.problem(P, np.array([1.0, 1.0, -1.0]))
    z_solver, bound = hull.solve(prob)
    Phi = np.hstack([prob.column_sign[None, :] * hull.F[prob.ray_of].T, np.ones((n, 1))])
    optimum = 2 * lsq_linear(Phi, y, bounds=(prob.lower, prob.upper), method="bvls", tol=1e-14).cost * hull.w
    assert bound <= optimum + 1e-12 * max(1.0, optimum)
    assert bound >= optimum - 1e-9 * max(1.0, optimum)
    K = prob.ray_of.shape[0]
    points = [z_solver]
    for _ in range(6):
        z = np.append(rng.uniform(0, 1, K) * prob.upper[:-1] * (rng.random(K) < 0.1), rng.normal())
        points.append(z)
    for z in points:
        value, gap = hull.certificate(prob, z)
        dense_value, dense_gap = dense_certificate(hull, prob, z)
        assert value == pytest.approx(dense_value, rel=1e-15, abs=1e-300)
        assert gap == pytest.approx(dense_gap, rel=1e-13, abs=1e-18 * max(1.0, dense_value))
        assert value - gap <= optimum + 1e-12 * max(1.0, optimum)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_gradient_margins_bound_the_rounding_error(scale):
    """|g in double - g in extended precision| <= margin, on cancelling sums of large terms."""
    rng = np.random.default_rng(3)
    n, rays = 50, 400
    F = np.maximum(rng.normal(size=(rays, n)), 0.0) * rng.uniform(0.1, 1e4, size=(rays, 1))
    resid_ld = (rng.normal(size=n) * scale).astype(np.longdouble) / 3
    ray_of = np.arange(rays)
    sign = np.where(rng.random(rays) < 0.5, 1.0, -1.0)
    g, margin = gradient_margins(np.ascontiguousarray(F), ray_of, sign, resid_ld.astype(float))
    exact = 2 * sign.astype(np.longdouble) * (F.astype(np.longdouble) @ resid_ld)
    error = np.abs(g.astype(np.longdouble) - exact)
    assert (error <= margin.astype(np.longdouble)).all()
    assert (margin < 1e-10 * np.abs(F) @ np.abs(resid_ld.astype(float)) + 1e-290).all()  # and it is small
