"""A compiled dense interior-point solver for the two-layer search's node QPs (DESIGN §6a, "Node cost").

The node QPs of `deep_relaxation` with the squared loss are tiny and dense (13-21 variables, 26-40
rows, n = 3-5 samples) and every variable has a finite lower and upper bound:

    minimise  w ||Phi z - y||^2   s.t.  A z >= rhs,  lower <= z <= upper.

Clarabel solves one in about 0.2 ms, most of it setting up (the sparse matrices, the cone
bookkeeping, Python calls); a Mehrotra predictor-corrector written for this one shape, compiled with
numba, needs no setup.  Its answer is only a point and multipliers: the node's bound is recomputed
from them in numpy (`deep_relaxation.bound`), so an inaccurate answer costs a weaker bound, never a
wrong one, and `deep_relaxation.solve_qp` falls back to Clarabel when this solver reports no
convergence.

The mathematics (`_interior_point`).  With Q = 2 w Phi^T Phi and q = -2 w Phi^T y the problem is
min 1/2 z^T Q z + q^T z over A z - s = rhs, s >= 0, and the bounds, whose slacks t_l = z - lower,
t_u = upper - z are kept strictly positive by the steps (so they need no residual of their own).
With multipliers lam >= 0 (rows), u_l, u_u >= 0 (bounds) the KKT conditions are

    r_d = Q z + q - A^T lam - u_l + u_u = 0,      r_p = A z - s - rhs = 0,
    s o lam = 0,   t_l o u_l = 0,   t_u o u_u = 0            (o: elementwise).

A Newton step toward s o lam = sigma mu (and the same for the bounds), mu the average
complementarity, is after eliminating ds = A dz + r_p, dlam = (r_s - lam o ds) / s,
du_l = (r_l - u_l o dz) / t_l and du_u = (r_u + u_u o dz) / t_u the normal equations

    (Q + A^T diag(lam / s) A + diag(u_l / t_l + u_u / t_u)) dz
        = -r_d + A^T ((r_s - lam o r_p) / s) + r_l / t_l - r_u / t_u,

whose matrix is positive definite because every variable has both bounds (u / t > 0); it is
factorised once per iteration by a dense Cholesky written here (a pivot that rounding made
non-positive is replaced by a huge number, which freezes that direction, as in Wright's PCx).
Mehrotra: the predictor solves with r_s = -s o lam (sigma = 0), its step length alpha_aff gives
mu_aff and sigma = (mu_aff / mu)^3; the corrector reuses the factor with
r_s = -s o lam - ds_aff o dlam_aff + sigma mu (and likewise for the bounds); one step length for the
primal and dual variables (a QP couples them through Q), 0.995 of the way to the boundary.
Variables whose bounds coincide are fixed at that value and left out of the step.

Stopping rule: converged when, in max norms,
    ||r_p|| <= tol (1 + ||rhs||),   ||r_d|| <= tol (1 + ||q||),
    s.lam + t_l.u_l + t_u.u_u <= tol (1 + |objective|)
(the last is the duality gap once the residuals vanish); not converged after ``max_iter`` iterations,
on a failed factorisation or a non-finite iterate (an infeasible QP never meets the rule: its primal
residual cannot vanish).  The objective is scaled as in `solve_qp` (w divided by the variance of y)
so the tolerances mean the same for every instance; the multipliers are returned in risk units.

The first call in a new checkout compiles the kernel (cache=True: later processes load it);
`warm_up` does so on a 2-variable problem so that a search can pay it before its clock starts.
"""

from __future__ import annotations

import numba
import numpy as np

from milpland.cells.bounded_lsq import _cholesky_solve as cholesky_solve  # z <- (L L^T)^-1 z in place

TOL = 1e-10  # relative residuals and duality gap (the stopping rule)
MAX_ITER = 50
STEP_TO_BOUNDARY = 0.995
FROZEN_PIVOT = 1e64  # replaces a non-positive Cholesky pivot: that direction of the step becomes ~0


def solve_squared(Phi: np.ndarray, y: np.ndarray, weight: float, scale: float, A: np.ndarray, rhs: np.ndarray,
                  lower: np.ndarray, upper: np.ndarray, *, tol: float = TOL,
                  max_iter: int = MAX_ITER) -> tuple[np.ndarray, np.ndarray, bool]:
    """(z, lam, converged) for min weight ||Phi z - y||^2 s.t. A z >= rhs, lower <= z <= upper, all
    bounds finite: lam are the multipliers of A z >= rhs in the units of that objective; the
    interior point runs on weight / scale (scale: the variance of y, as `solve_qp`)."""
    z, lam, converged, _ = _interior_point(Phi, y, weight / scale, A, rhs, lower, upper, tol, max_iter)
    return z, lam * scale, converged


def solve_loss_lp(Phi: np.ndarray, y: np.ndarray, weight: float, scale: float, A: np.ndarray, rhs: np.ndarray,
                  lower: np.ndarray, upper: np.ndarray, *, hinge: bool, tol: float = TOL,
                  max_iter: int = MAX_ITER) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(z, lam, slopes, converged) for the absolute-loss LP min weight sum_i |f_i - y_i| (``hinge``
    False) or the hinge-loss LP min weight sum_i max(0, 1 - y_i f_i), f = Phi z, s.t. A z >= rhs,
    lower <= z <= upper, all bounds finite (`_loss_lp`).  lam are the multipliers of A z >= rhs in the
    units of that objective; slopes the loss slopes of `deep_relaxation.bound` (absolute: s_i in
    [-1, 1], hinge: pi_i in [0, 1]; clipped there).  The interior point runs on weight / scale."""
    z, lam, slopes, converged, _ = _loss_lp(Phi, y, weight / scale, A, rhs, lower, upper, hinge, tol, max_iter)
    return z, lam * scale, slopes, converged


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels on a 2-variable problem."""
    eye = np.eye(2)
    solve_squared(eye, np.ones(2), 1.0, 1.0, eye, np.zeros(2), -np.ones(2), np.ones(2))
    solve_loss_lp(eye, np.ones(2), 1.0, 1.0, eye, np.zeros(2), -np.ones(2), np.ones(2), hinge=False)


@numba.njit(cache=True)
def _row_pattern(A):
    """The non-zeros of every row of A (compressed rows): A's rows have 3-4 non-zeros of ~19, so the
    normal matrix A^T diag(d) A is accumulated row by row over these only."""
    R, N = A.shape
    start = np.zeros(R + 1, dtype=np.int64)
    cols = np.empty(R * N, dtype=np.int64)
    vals = np.empty(R * N)
    k = 0
    for r in range(R):
        for j in range(N):
            if A[r, j] != 0.0:
                cols[k] = j
                vals[k] = A[r, j]
                k += 1
        start[r + 1] = k
    return start, cols[:k], vals[:k]


@numba.njit(cache=True)
def _row_products(start, cols, vals, x, out):
    """out = A x over the compressed rows."""
    for r in range(start.shape[0] - 1):
        acc = 0.0
        for k in range(start[r], start[r + 1]):
            acc += vals[k] * x[cols[k]]
        out[r] = acc


@numba.njit(cache=True)
def _transposed_products(start, cols, vals, v, out):
    """out = A^T v over the compressed rows."""
    out[:] = 0.0
    for r in range(start.shape[0] - 1):
        for k in range(start[r], start[r + 1]):
            out[cols[k]] += vals[k] * v[r]


@numba.njit(cache=True)
def _cholesky(K):
    """K = L L^T in place (lower triangle); a pivot <= 1e-30 of the largest diagonal is replaced by
    FROZEN_PIVOT.  False when K has a non-finite entry."""
    N = K.shape[0]
    largest = 0.0
    for i in range(N):
        largest = max(largest, abs(K[i, i]))
    for j in range(N):
        d = K[j, j]
        for k in range(j):
            d -= K[j, k] * K[j, k]
        if not np.isfinite(d):
            return False
        if d <= 1e-30 * largest:
            d = FROZEN_PIVOT
        d = np.sqrt(d)
        K[j, j] = d
        for i in range(j + 1, N):
            v = K[i, j]
            for k in range(j):
                v -= K[i, k] * K[j, k]
            K[i, j] = v / d
    return True


@numba.njit(cache=True)
def _max_step(x, dx, alpha):
    """The largest a <= alpha with x + a dx >= 0 (x > 0)."""
    for i in range(x.shape[0]):
        if dx[i] < 0.0:
            alpha = min(alpha, -x[i] / dx[i])
    return alpha


@numba.njit(cache=True)
def _direction(L, start, cols, vals, free, rd, rp, s, lam, tl, ul, tu, uu, rs, rl, ru, dz, ds, dlam, dul, duu,
               work_R, work_N):
    """The Newton direction for the complementarity targets (rs, rl, ru) (module docstring)."""
    R, N = s.shape[0], dz.shape[0]
    for r in range(R):
        work_R[r] = (rs[r] - lam[r] * rp[r]) / s[r]
    _transposed_products(start, cols, vals, work_R, work_N)
    for j in range(N):
        work_N[j] = (work_N[j] - rd[j] + rl[j] / tl[j] - ru[j] / tu[j]) if free[j] else 0.0
    dz[:] = work_N
    cholesky_solve(L, N, dz)
    _row_products(start, cols, vals, dz, ds)
    for r in range(R):
        ds[r] += rp[r]
        dlam[r] = (rs[r] - lam[r] * ds[r]) / s[r]
    for j in range(N):
        if free[j]:
            dul[j] = (rl[j] - ul[j] * dz[j]) / tl[j]
            duu[j] = (ru[j] + uu[j] * dz[j]) / tu[j]
        else:
            dz[j] = dul[j] = duu[j] = 0.0


@numba.njit(cache=True)
def _residuals(Q, q, constant, start, cols, vals, rhs, free, z, s, lam, tl, ul, tu, uu, rp, rd, work_R, work_N):
    """Fill r_p, r_d; return (complementarity gap, objective, ||r_p||, ||r_d||) (module docstring)."""
    R, N = s.shape[0], z.shape[0]
    _row_products(start, cols, vals, z, work_R)
    _transposed_products(start, cols, vals, lam, work_N)
    gap, objective, rp_norm, rd_norm = 0.0, constant, 0.0, 0.0
    for r in range(R):
        rp[r] = work_R[r] - s[r] - rhs[r]
        rp_norm = max(rp_norm, abs(rp[r]))
        gap += s[r] * lam[r]
    for j in range(N):
        Qz = 0.0
        for k in range(N):
            Qz += Q[j, k] * z[k]
        objective += z[j] * (0.5 * Qz + q[j])
        rd[j] = 0.0
        if free[j]:
            rd[j] = Qz + q[j] - work_N[j] - ul[j] + uu[j]
            rd_norm = max(rd_norm, abs(rd[j]))
            gap += tl[j] * ul[j] + tu[j] * uu[j]
    return gap, objective, rp_norm, rd_norm


@numba.njit(cache=True)
def _normal_matrix(Q, start, cols, vals, free, s, lam, tl, ul, tu, uu, K):
    """K = Q + A^T diag(lam / s) A + diag(u_l / t_l + u_u / t_u), an identity row and column for a fixed
    variable; accumulated over the non-zeros of every row."""
    N = K.shape[0]
    K[:, :] = Q
    for r in range(s.shape[0]):
        d = lam[r] / s[r]
        for a in range(start[r], start[r + 1]):
            va = d * vals[a]
            for b in range(start[r], start[r + 1]):
                K[cols[a], cols[b]] += va * vals[b]
    for j in range(N):
        if free[j]:
            K[j, j] += ul[j] / tl[j] + uu[j] / tu[j]
        else:
            K[j, :] = 0.0
            K[:, j] = 0.0
            K[j, j] = 1.0


@numba.njit(cache=True)
def _step_lengths(split, s, ds, lam, dlam, tl, ul, dul, tu, uu, duu, dz, free):
    """(primal, dual): the largest steps in [0, 1] keeping s, t_l, t_u (primal) and lam, u_l, u_u (dual)
    non-negative; without ``split`` both are their minimum (one step for a QP)."""
    primal = _max_step(s, ds, 1.0)
    dual = _max_step(lam, dlam, 1.0)
    for j in range(dz.shape[0]):
        if free[j]:
            if dz[j] < 0.0:
                primal = min(primal, -tl[j] / dz[j])
            elif dz[j] > 0.0:
                primal = min(primal, tu[j] / dz[j])
            if dul[j] < 0.0:
                dual = min(dual, -ul[j] / dul[j])
            if duu[j] < 0.0:
                dual = min(dual, -uu[j] / duu[j])
    if not split:
        primal = dual = min(primal, dual)
    return primal, dual


@numba.njit(cache=True)
def _affine_complementarity(alpha, beta, s, ds, lam, dlam, tl, ul, dul, tu, uu, duu, dz, free):
    """The complementarity s.lam + t_l.u_l + t_u.u_u after a primal step alpha and a dual step beta
    along the predictor."""
    total = 0.0
    for r in range(s.shape[0]):
        total += (s[r] + alpha * ds[r]) * (lam[r] + beta * dlam[r])
    for j in range(dz.shape[0]):
        if free[j]:
            total += (tl[j] + alpha * dz[j]) * (ul[j] + beta * dul[j]) + (tu[j] - alpha * dz[j]) * (uu[j] + beta * duu[j])
    return total


@numba.njit(cache=True)
def _interior_point(Phi, y, weight, A, rhs, lower, upper, tol, max_iter):
    """Mehrotra's predictor-corrector for min weight ||Phi z - y||^2, A z >= rhs, lower <= z <= upper
    (module docstring): (z, lam, converged, iterations)."""
    Q = 2.0 * weight * (Phi.T @ Phi)
    q = -2.0 * weight * (Phi.T @ y)
    constant = weight * (y @ y)
    return _mehrotra(Q, q, constant, A, rhs, lower, upper, tol, max_iter, False)


@numba.njit(cache=True)
def _mehrotra(Q, q, constant, A, rhs, lower, upper, tol, max_iter, split):
    """Mehrotra's predictor-corrector for min 1/2 z^T Q z + q^T z + constant, A z >= rhs,
    lower <= z <= upper, Q positive semidefinite (0 for an LP), every bound finite (module docstring):
    (z, lam, converged, iterations).  Starts at the middle of the bounds with every multiplier 1 and
    the row slacks max(A z - rhs, 1).  ``split`` (only for Q = 0, where the primal and dual steps do
    not interact through Q): separate primal and dual step lengths."""
    R, N = A.shape
    start, cols, vals = _row_pattern(A)
    free = upper - lower > 0.0
    z = np.where(free, 0.5 * (lower + upper), lower)
    tl, tu = z - lower, upper - z
    ul, uu = np.ones(N), np.ones(N)
    s, lam = np.empty(R), np.ones(R)
    _row_products(start, cols, vals, z, s)
    s = np.maximum(s - rhs, 1.0)
    rhs_norm = 1.0 + (np.max(np.abs(rhs)) if R else 0.0)
    q_norm = 1.0 + np.max(np.abs(q))
    m = R + 2 * np.sum(free)
    rd, rp = np.empty(N), np.empty(R)
    K = np.empty((N, N))
    dz, ds, dlam, dul, duu = np.empty(N), np.empty(R), np.empty(R), np.empty(N), np.empty(N)
    dz2, ds2, dlam2, dul2, duu2 = np.empty(N), np.empty(R), np.empty(R), np.empty(N), np.empty(N)
    rs, rl, ru = np.empty(R), np.empty(N), np.empty(N)
    work_R, work_N = np.empty(R), np.empty(N)
    for it in range(max_iter + 1):
        gap, objective, rp_norm, rd_norm = _residuals(Q, q, constant, start, cols, vals, rhs, free, z, s, lam, tl, ul,
                                                      tu, uu, rp, rd, work_R, work_N)
        if not (np.isfinite(gap) and np.isfinite(objective)):
            return z, lam, False, it
        # (a NaN anywhere fails these comparisons: converged implies a finite z and lam)
        if rp_norm <= tol * rhs_norm and rd_norm <= tol * q_norm and gap <= tol * (1.0 + abs(objective)):
            return z, lam, True, it
        if it == max_iter:
            break
        mu = gap / m
        _normal_matrix(Q, start, cols, vals, free, s, lam, tl, ul, tu, uu, K)
        if not _cholesky(K):
            return z, lam, False, it
        # predictor: the affine-scaling direction (targets 0)
        for r in range(R):
            rs[r] = -s[r] * lam[r]
        for j in range(N):
            rl[j] = -tl[j] * ul[j]
            ru[j] = -tu[j] * uu[j]
        _direction(K, start, cols, vals, free, rd, rp, s, lam, tl, ul, tu, uu, rs, rl, ru, dz, ds, dlam, dul, duu,
                   work_R, work_N)
        alpha, beta = _step_lengths(split, s, ds, lam, dlam, tl, ul, dul, tu, uu, duu, dz, free)
        mu_aff = _affine_complementarity(alpha, beta, s, ds, lam, dlam, tl, ul, dul, tu, uu, duu, dz, free) / m
        sigma_mu = (mu_aff / mu) ** 3 * mu
        # corrector: centring sigma mu and the predictor's second-order term, same factor
        for r in range(R):
            rs[r] = -s[r] * lam[r] - ds[r] * dlam[r] + sigma_mu
        for j in range(N):
            rl[j] = -tl[j] * ul[j] - dz[j] * dul[j] + sigma_mu
            ru[j] = -tu[j] * uu[j] + dz[j] * duu[j] + sigma_mu
        _direction(K, start, cols, vals, free, rd, rp, s, lam, tl, ul, tu, uu, rs, rl, ru, dz2, ds2, dlam2, dul2,
                   duu2, work_R, work_N)
        alpha, beta = _step_lengths(split, s, ds2, lam, dlam2, tl, ul, dul2, tu, uu, duu2, dz2, free)
        alpha, beta = min(1.0, STEP_TO_BOUNDARY * alpha), min(1.0, STEP_TO_BOUNDARY * beta)
        for r in range(R):
            s[r] += alpha * ds2[r]
            lam[r] += beta * dlam2[r]
        for j in range(N):
            if free[j]:
                z[j] += alpha * dz2[j]
                ul[j] += beta * dul2[j]
                uu[j] += beta * duu2[j]
                tl[j] += alpha * dz2[j]  # updated, not recomputed as z - lower: no cancellation near a bound
                tu[j] -= alpha * dz2[j]
    return z, lam, False, max_iter


@numba.njit(cache=True)
def _loss_lp(Phi, y, weight, A, rhs, lower, upper, hinge, tol, max_iter):
    """The absolute- or hinge-loss LP as an instance of `_mehrotra` (Q = 0): (z, lam, slopes,
    converged, iterations).

    Variables x = (z, e), e_i the loss of sample i, objective weight sum e.  Rows A z >= rhs, then
    absolute: e_i - Phi_i z >= -y_i and e_i + Phi_i z >= y_i (e_i >= |f_i - y_i|);
    hinge: e_i + y_i Phi_i z >= 1 (e_i >= 1 - y_i f_i).  Bounds 0 <= e_i <= E_i with
        E_i = 1 + 2 (|y_i| + sum_j |Phi_ij| max(|lower_j|, |upper_j|))     (absolute)
        E_i = 1 + 2 (1 + |y_i| sum_j |Phi_ij| max(|lower_j|, |upper_j|))   (hinge).
    Why they change nothing: e >= 0 holds at every feasible point of the original LP's epigraph
    (hinge: a row of it; absolute: the sum of the two rows is 2 e_i >= 0), and every z within its bounds
    has |f_i| <= sum_j |Phi_ij| max(|lower_j|, |upper_j|), so the loss of sample i is at most the bracket,
    below E_i with a margin of at least 1 + bracket: every z has its exact losses e_i inside (0, E_i],
    the optimum of the bounded LP is the original's, and at it e_i < E_i strictly, so the upper
    bound's multiplier vanishes and the e rows carry the whole weight (the interior point needs a
    finite upper bound on every variable for its normal matrix to be positive definite).

    Slopes (as `deep_relaxation.solve_qp` reads them from Clarabel's duals): stationarity in e_i is
    weight = (sum of the multipliers of sample i's e rows) + u_l - u_u, so with u_u = 0
    absolute: s_i = (lam_i^+ - lam_i^-) / weight in [-1, 1] (lam^+ of e_i >= f_i - y_i),
    hinge: pi_i = lam_i / weight in [0, 1]; `bound` clips them, so an inexact answer stays valid."""
    R, N = A.shape
    n = Phi.shape[0]
    loss_rows = n if hinge else 2 * n
    size = np.zeros(n)
    reach = np.maximum(np.abs(lower), np.abs(upper))
    for i in range(n):
        for j in range(N):
            size[i] += abs(Phi[i, j]) * reach[j]
    AA = np.zeros((R + loss_rows, N + n))
    bb = np.empty(R + loss_rows)
    AA[:R, :N] = A
    bb[:R] = rhs
    for i in range(n):
        if hinge:
            AA[R + i, :N] = y[i] * Phi[i]
            AA[R + i, N + i] = 1.0
            bb[R + i] = 1.0
        else:
            AA[R + i, :N] = -Phi[i]
            AA[R + i, N + i] = 1.0
            bb[R + i] = -y[i]
            AA[R + n + i, :N] = Phi[i]
            AA[R + n + i, N + i] = 1.0
            bb[R + n + i] = y[i]
    lo = np.zeros(N + n)
    hi = np.empty(N + n)
    lo[:N], hi[:N] = lower, upper
    for i in range(n):
        hi[N + i] = 1.0 + 2.0 * ((1.0 + abs(y[i]) * size[i]) if hinge else (abs(y[i]) + size[i]))
    q = np.zeros(N + n)
    q[N:] = weight
    x, lam_all, converged, iterations = _mehrotra(np.zeros((N + n, N + n)), q, 0.0, AA, bb, lo, hi, tol, max_iter,
                                                  True)  # an LP: separate primal and dual step lengths
    if hinge:
        slopes = lam_all[R:R + n] / weight
    else:
        slopes = (lam_all[R:R + n] - lam_all[R + n:R + 2 * n]) / weight
    return x[:N].copy(), lam_all[:R].copy(), slopes, converged, iterations
