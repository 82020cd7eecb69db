"""The factors the active set keeps between its least-squares solves (milpland/cells/bounded_lsq.py)
and the hull node problem with c as a bounded column (milpland/search/unit_hull.py), each against
numpy's products of the columns themselves or scipy's BVLS on the explicitly formed problem."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import lsq_linear

from milpland.cells.bounded_lsq import (
    _append_to_factor,
    _delete_from_factor,
    _new_factors,
    _qr_append,
    _qr_delete,
    _take_slot,
)
from milpland.cells.scaled import sign_class
from milpland.instance.activations import relu
from milpland.search.unit_hull import UNDECIDED, UnitHull

# (append column k) or (delete the factor's position a), in this order
STEPS = [("add", 3), ("add", 1), ("add", 4), ("add", 0), ("add", 5), ("add", 9), ("add", 2), ("del", 2),
         ("del", 0), ("add", 7), ("del", 4), ("add", 8), ("del", 5), ("add", 6), ("add", 10)]


def columns(seed: int, n: int = 30, K: int = 12) -> np.ndarray:
    """K nonnegative columns (relu features, as the node problems' columns) of n rows, as rows."""
    return np.ascontiguousarray(np.maximum(np.random.default_rng(seed).normal(size=(K, n)), 0.0))


@pytest.mark.parametrize("seed", range(3))
def test_updated_cholesky_factor_is_the_gram_matrix_of_its_columns(seed):
    """After every append and deletion (Givens) L L^T equals A_S^T A_S of the factor's columns in
    the factor's order, L stays lower triangular with a positive diagonal."""
    At = columns(seed)
    K = At.shape[0]
    slot, col, gram, used = np.full(K, -1, dtype=np.int64), np.empty(K, dtype=np.int64), np.empty((K, K)), 0
    for k in range(K):
        used = _take_slot(At, k, slot, col, gram, used)
    chol, _ = _new_factors(K, K, At.shape[1], False)
    L, fact, pos, q = chol.L, chol.fact, chol.pos, 0
    for what, value in STEPS:
        if what == "add":
            q = _append_to_factor(L, fact, pos, q, value, slot, gram)
        else:
            q = _delete_from_factor(L, fact, pos, q, value)
        S = At[fact[:q]]
        low = np.tril(L[:q, :q])
        assert np.allclose(low @ low.T, S @ S.T, rtol=1e-12, atol=1e-10)
        assert (np.diag(low) > 0).all()
        assert all(pos[fact[a]] == a for a in range(q))
        assert np.count_nonzero(pos >= 0) == q
    assert q == 7  # 11 appends, 4 deletions


@pytest.mark.parametrize("seed", range(3))
def test_updated_qr_factor_reproduces_its_columns_with_orthogonal_q(seed):
    """After every append (Householder) and deletion (Givens) Q is orthogonal and Q R equals the
    factor's columns in order, R upper triangular."""
    At = columns(seed)
    K, n = At.shape
    _, qrf = _new_factors(K, K, n, True)
    Qt, Rc, fact, pos, q = qrf.Qt, qrf.Rc, qrf.fact, qrf.pos, 0
    w, v = np.empty(n), np.empty(n)
    for what, value in STEPS:
        if what == "add":
            q = _qr_append(At, Qt, Rc, fact, pos, q, value, w, v)
        else:
            q = _qr_delete(Qt, Rc, fact, pos, q, value)
        R = np.triu(Rc[:q, :q].T)  # R's column c is Rc[c, :c + 1]
        assert np.allclose(Qt @ Qt.T, np.eye(n), atol=1e-12)
        assert np.allclose(Qt[:q].T @ R, At[fact[:q]].T, atol=1e-11)
        assert all(pos[fact[a]] == a for a in range(q))
    assert q == 7  # 11 appends, 4 deletions


def test_qr_append_refuses_a_dependent_column():
    At = columns(7)
    At[6] = At[0] - 3.0 * At[4]
    K, n = At.shape
    _, qrf = _new_factors(K, K, n, True)
    w, v, q = np.empty(n), np.empty(n), 0
    for k in (0, 4, 2):
        q = _qr_append(At, qrf.Qt, qrf.Rc, qrf.fact, qrf.pos, q, k, w, v)
    before = qrf.Qt.copy()
    assert _qr_append(At, qrf.Qt, qrf.Rc, qrf.fact, qrf.pos, q, 6, w, v) == q == 3
    assert np.array_equal(qrf.Qt, before)


@pytest.mark.parametrize("n_positive", [1, 2])
def test_node_bound_with_c_on_its_bound_matches_scipy_on_the_explicit_problem(n_positive, monkeypatch):
    """A mixed-sign root in 1-D with a tight box on c: centring alone puts c outside [-c_bound,
    c_bound] (the clipped point certifies little), so the node is solved again with c as a bounded
    column.  Its certified bound is the optimum of the explicitly formed problem (all ray columns and
    c, with their boxes) by scipy's BVLS, to 1e-7 relative, and not above it."""
    rng = np.random.default_rng(3)
    n, width, c_bound = 24, 3, 0.05
    X = np.sort(rng.uniform(-1.0, 1.0, size=(n, 1)), axis=0)
    y = np.maximum(X[:, 0] - 0.2, 0.0) - 0.7 * np.maximum(0.4 - X[:, 0], 0.0) + 1.0 + 0.1 * rng.normal(size=n)
    hull = UnitHull(X, y, relu(), width=width, box_weight=1.0, output_bias=True, c_bound=c_bound, loss_weight=1.0 / n)
    signs = sign_class(n_positive, width)
    modes = []
    least_squares = UnitHull._least_squares
    monkeypatch.setattr(UnitHull, "_least_squares",
                        lambda self, prob, *, bounded_c: modes.append(bounded_c) or least_squares(self, prob, bounded_c=bounded_c))
    P = hull.propagate(np.full((n, width), UNDECIDED, dtype=np.int8))
    weights, c, bound = hull.solve_pattern(P, signs)
    prob = hull.problem(P, signs)
    assert modes[0] is False and modes[-1] is True  # centred first, then c as a bounded column
    assert abs(c) <= c_bound

    Phi = np.column_stack([(prob.column_sign[:, None] * hull.F[prob.ray_of]).T, np.ones(n)])
    ref = lsq_linear(Phi, y, bounds=(prob.lower, prob.upper), method="bvls", tol=1e-15, max_iter=100_000)
    optimum = float(np.sum((Phi @ ref.x - y) ** 2)) / n
    assert optimum > 1e-3  # the box on c is what keeps the relaxation from fitting y
    assert bound <= optimum * (1 + 1e-9) + 1e-14
    assert bound >= optimum * (1 - 1e-7)
