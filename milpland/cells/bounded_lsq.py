"""Bounded-variable least squares by an active set, for many small problems with many columns:
the hull relaxation's node problems (`milpland.search.unit_hull`) and the cell solver's multipliers
(`milpland.cells.problem`).

The active set runs compiled (numba): a node of the pattern branch-and-bound makes about 40
least-squares solves on supports of about 20 columns, where numpy's per-call overhead was three
quarters of the time (issue 15).  The arithmetic is the one of the pure-numpy version it replaces:
normal equations of the support, factorised by Cholesky in the order of the column indices (a
trial column last), a support rejected as dependent when a pivot falls below DEPENDENT_PIVOT of
the largest.  What is new is a cache of the support's Gram entries A_k . A_l, kept while the
columns stay in the support, so a solve costs O(support^3 / 6 + rows * support) instead of
O(rows * support^2)."""

from __future__ import annotations

import time

import numba
import numpy as np

DEPENDENT_PIVOT = 1e-8  # a Cholesky pivot below this (relative) marks a dependent support
QR_DEPENDENT_PIVOT = 1e-12  # the same for the pivots of the QR factorisation (`qr=True`)
CHECK_CLOCK_EVERY = 16  # least-squares solves between two looks at the deadline


def bvls_active_set(A: np.ndarray, b: np.ndarray, upper: np.ndarray, start: np.ndarray | None = None, *,
                    tol: float = 1e-12, max_solves: int | None = None, deadline: float = np.inf,
                    qr: bool = False) -> tuple[np.ndarray, bool]:
    """min ||A x - b|| over 0 <= x <= upper by an active set (Lawson and Hanson's NNLS with Stark
    and Parker's upper bounds), from a feasible start.

    Free weights solve least squares with the others fixed at 0 or at their upper bound; a free
    weight leaving its interval stops the step there and is fixed; then the fixed weight whose
    slope points most into its interval is freed.  Returns (x, converged): converged when no fixed
    weight has a slope above tol (relative to b and its column) into its interval.  A weight that
    would make the free columns dependent, or leaves its interval at once, is passed over until
    the free set changes (node columns are often dependent: units of opposite sign share rays, and
    in 1-D relu(t) - relu(-t) = t); if only such weights are left, converged is False.  scipy's
    nnls forms A^T A (columns >> rows here) and its BVLS is pure Python: both were 5x slower.
    At most max_solves least-squares solves (default 6 rows + 40): each costs O(rows^3), so a cold
    start on many rows is left to the caller's fallback (measured: 3,900 solves, 43 s, for the
    first node of 200 samples; scipy's BVLS took 2 s).  qr: each least-squares solve by Householder QR
    of the support instead of the normal equations (4 rows / support times the work; solves supports
    of condition number up to about 1e12 where the normal equations stop at 1e8); a column that QR
    finds dependent on the free columns (pivot below 1e-12 relative) then does not count against
    convergence: its slope is the rounding of the support's residual, amplified by the coefficients
    that write it in the support's columns (measured: exactly dependent columns of 1-D nodes,
    relu(t) - relu(-t) = t, had slopes of 1e-11, and scipy's BVLS found no better point)."""
    n, K = A.shape
    At = np.ascontiguousarray(np.asarray(A, dtype=float).T)
    has_start = start is not None
    x0 = np.asarray(start, dtype=float) if has_start else np.zeros(K)
    return active_set(At, np.asarray(b, dtype=float), np.asarray(upper, dtype=float), x0, has_start,
                      tol, max_solves or 6 * n + 40, deadline, qr)


# ----------------------------------------------------------------------------------------------
# The compiled kernel.  At holds the columns of A as rows (K x n, each column contiguous).
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _now() -> float:
    with numba.objmode(t="float64"):
        t = time.perf_counter()
    return t


@numba.njit(cache=True, fastmath={"reassoc", "contract"})  # reassociation: a vectorised sum
def _dot(u, v):
    total = 0.0
    for i in range(u.shape[0]):
        total += u[i] * v[i]
    return total


# The Gram cache (plain arrays inside the kernel): slot[k] is column k's row in `gram` (-1: none),
# col[s] the column in slot s, and gram[s, t] = A_col[s] . A_col[t] for every pair of occupied
# slots.  A column gets a slot when a solve needs it, at the cost of its dot products with the
# occupied slots; when the slots run out, those not in the current support are emptied.


@numba.njit(cache=True)
def _take_slot(At, k, slot, col, gram, used):
    """Give column k a slot (its Gram row filled); returns the new number of used slots, or -1 when
    every slot is taken (the caller frees some)."""
    s = used
    if s == col.shape[0]:
        return -1
    slot[k], col[s] = s, k
    for t in range(used):
        g = _dot(At[k], At[col[t]])
        gram[s, t] = g
        gram[t, s] = g
    gram[s, s] = _dot(At[k], At[k])
    return used + 1


@numba.njit(cache=True)
def _compact_slots(support, n_support, slot, col, gram, used):
    """Empty every slot whose column is not in support[:n_support]; returns the slots still used."""
    keep = np.zeros(used, dtype=np.bool_)
    for a in range(n_support):
        if slot[support[a]] >= 0:
            keep[slot[support[a]]] = True
    new_of = np.full(used, -1, dtype=np.int64)
    kept = 0
    for s in range(used):
        if keep[s]:
            new_of[s] = kept
            kept += 1
        else:
            slot[col[s]] = -1
    for s in range(used):
        if new_of[s] >= 0:
            col[new_of[s]] = col[s]
            for t in range(used):
                if new_of[t] >= 0:
                    gram[new_of[s], new_of[t]] = gram[s, t]
    for s in range(used):
        if new_of[s] >= 0:
            slot[col[new_of[s]]] = new_of[s]
    return kept


@numba.njit(cache=True)
def _solve_support(At, rhs_vec, support, n_support, slot, col, gram, used, L, s_out):
    """Least squares on the columns support[:n_support] (in that order) by the normal equations:
    Cholesky of their Gram matrix.  Writes the solution into s_out (zero elsewhere) and returns
    (ok, used slots); ok is False when the columns are dependent: a pivot not positive or below
    DEPENDENT_PIVOT times the largest (condition number of the columns above about 1e8)."""
    if n_support > col.shape[0]:  # cannot happen with independent columns; refuse like a dependent set
        return False, used
    for a in range(n_support):
        if slot[support[a]] < 0:
            got = _take_slot(At, support[a], slot, col, gram, used)
            if got < 0:
                used = _compact_slots(support, n_support, slot, col, gram, used)
                got = _take_slot(At, support[a], slot, col, gram, used)
            used = got
    p = n_support
    for a in range(p):  # Cholesky, lower, row by row of the support's Gram matrix
        sa = slot[support[a]]
        for c in range(a + 1):
            value = gram[sa, slot[support[c]]]
            for e in range(c):
                value -= L[a, e] * L[c, e]
            if c == a:
                if not value > 0.0:
                    return False, used
                L[a, a] = np.sqrt(value)
            else:
                L[a, c] = value / L[c, c]
    if p:
        top, low = L[0, 0], L[0, 0]
        for a in range(1, p):
            top, low = max(top, L[a, a]), min(low, L[a, a])
        if low < DEPENDENT_PIVOT * top:
            return False, used
    z = np.empty(p)
    for a in range(p):
        z[a] = _dot(At[support[a]], rhs_vec)
    _cholesky_solve(L, p, z)
    # one step of refinement (corrected semi-normal equations): the normal equations square the
    # condition number, and a residual left not quite orthogonal to the support shows up as
    # false slopes of dependent columns, which stopped the active set early (scipy's fallback then
    # took most of the time)
    resid = rhs_vec.copy()
    for a in range(p):
        for i in range(resid.shape[0]):
            resid[i] -= At[support[a], i] * z[a]
    correction = np.empty(p)
    for a in range(p):
        correction[a] = _dot(At[support[a]], resid)
    _cholesky_solve(L, p, correction)
    s_out[:] = 0.0
    for a in range(p):
        s_out[support[a]] = z[a] + correction[a]
    return True, used


@numba.njit(cache=True)
def _cholesky_solve(L, p, z):
    """z <- (L L^T)^-1 z for the leading p x p block of the lower factor L."""
    for a in range(p):
        value = z[a]
        for e in range(a):
            value -= L[a, e] * z[e]
        z[a] = value / L[a, a]
    for a in range(p - 1, -1, -1):
        value = z[a]
        for e in range(a + 1, p):
            value -= L[e, a] * z[e]
        z[a] = value / L[a, a]


@numba.njit(cache=True)
def _solve_support_qr(At, rhs_vec, support, n_support, s_out):
    """Least squares on the columns support[:n_support] by Householder QR of the columns themselves
    (2 rows support^2 operations, no Gram matrix): the pivots |R_aa| are the Cholesky pivots of the
    normal equations, but computed to working precision, so columns up to a condition number of
    about 1e12 (QR_DEPENDENT_PIVOT) are solved where the normal equations stop at 1e8."""
    n, p = At.shape[1], n_support
    if p > n:
        return False
    M = np.empty((p, n))  # row a: column support[a], reduced in place to R's column a
    for a in range(p):
        M[a] = At[support[a]]
    q = rhs_vec.copy()
    v = np.empty(n)
    for a in range(p):
        norm = 0.0
        for i in range(a, n):
            norm += M[a, i] * M[a, i]
        norm = np.sqrt(norm)
        if norm == 0.0:
            return False
        alpha = -norm if M[a, a] >= 0.0 else norm
        vv = 0.0
        for i in range(a, n):
            v[i] = M[a, i]
        v[a] -= alpha
        for i in range(a, n):
            vv += v[i] * v[i]
        M[a, a] = alpha
        for c in range(a + 1, p):  # reflect the later columns and the right-hand side
            proj = 0.0
            for i in range(a, n):
                proj += v[i] * M[c, i]
            proj *= 2.0 / vv
            for i in range(a, n):
                M[c, i] -= proj * v[i]
        proj = 0.0
        for i in range(a, n):
            proj += v[i] * q[i]
        proj *= 2.0 / vv
        for i in range(a, n):
            q[i] -= proj * v[i]
    top, low = 0.0, np.inf
    for a in range(p):
        top, low = max(top, abs(M[a, a])), min(low, abs(M[a, a]))
    if p and low < QR_DEPENDENT_PIVOT * top:
        return False
    z = np.empty(p)
    for a in range(p - 1, -1, -1):  # R z = (Q^T rhs)[:p], R[a, c] = M[c, a]
        value = q[a]
        for c in range(a + 1, p):
            value -= M[c, a] * z[c]
        z[a] = value / M[a, a]
    s_out[:] = 0.0
    for a in range(p):
        s_out[support[a]] = z[a]
    return True


@numba.njit(cache=True)
def _solve(At, rhs_vec, support, n_support, slot, col, gram, used, L, s_out, qr):
    """`_solve_support` (normal equations) or, when qr, `_solve_support_qr`."""
    if qr:
        return _solve_support_qr(At, rhs_vec, support, n_support, s_out), used
    return _solve_support(At, rhs_vec, support, n_support, slot, col, gram, used, L, s_out)


@numba.njit(cache=True)
def _shifted_target(At, b, upper, at_upper, skip):
    """b - sum of A_k upper_k over the columns at their upper bound (column `skip` left out)."""
    out = b.copy()
    for k in range(At.shape[0]):
        if at_upper[k] and k != skip:
            for i in range(out.shape[0]):
                out[i] -= At[k, i] * upper[k]
    return out


@numba.njit(cache=True)
def active_set(At, b, upper, x0, has_start, tol, max_solves, deadline, qr=False):
    """The active set of `bvls_active_set` on the columns At (K x n); returns (x, converged).
    qr: least squares by QR of the support (slower, for supports the normal equations call dependent)."""
    K, n = At.shape
    cap = min(K, 2 * n + 8)
    slot = np.full(K, -1, dtype=np.int64)
    col = np.empty(cap, dtype=np.int64)
    gram = np.empty((cap, cap))
    L = np.empty((cap, cap))
    used = 0
    support = np.empty(K + 1, dtype=np.int64)
    left = max_solves  # the budget of least-squares solves (and the deadline, every 16 solves)
    check_clock = deadline < np.inf

    x = np.zeros(K)
    if has_start:
        for k in range(K):
            x[k] = min(max(x0[k], 0.0), upper[k])
    at_upper = x >= upper
    free = (x > 0) & ~at_upper
    s = np.zeros(K)

    # the first solve, on the warm start's free columns
    left -= 1
    if check_clock and left % CHECK_CLOCK_EVERY == 0 and _now() > deadline:
        left = -1
    have_s = False
    if left >= 0:
        p = 0
        for k in range(K):
            if free[k]:
                support[p] = k
                p += 1
        have_s, used = _solve(At, _shifted_target(At, b, upper, at_upper, -1), support, p,
                                      slot, col, gram, used, L, s, qr)
    if not have_s:  # a dependent warm start: start from zero
        x[:] = 0.0
        free[:] = False
        at_upper[:] = False
    scale = max(1.0, np.max(np.abs(b))) if b.shape[0] else 1.0
    column_size = np.full(K, 1e-300)
    for k in range(K):
        for i in range(n):
            column_size[k] = max(column_size[k], abs(At[k, i]))
    passed_over = np.zeros(K, dtype=np.bool_)
    dependent = np.zeros(K, dtype=np.bool_)  # passed over because QR found it dependent on the support
    slope = np.empty(K)
    into = np.empty(K)
    while left > 0:
        p = 0
        for k in range(K):
            if free[k]:
                support[p] = k
                p += 1
        if not have_s:
            left -= 1
            if check_clock and left % CHECK_CLOCK_EVERY == 0 and _now() > deadline:
                left = -1
            if left >= 0:
                have_s, used = _solve(At, _shifted_target(At, b, upper, at_upper, -1), support, p,
                                              slot, col, gram, used, L, s, qr)
        while have_s and p > 0:
            # step towards s until the first free weight leaves its interval, fix it there
            best_ratio, first, first_up = np.inf, -1, False
            for a in range(p):
                k = support[a]
                if s[k] <= 0.0 or s[k] >= upper[k]:
                    to_up = s[k] >= upper[k]
                    room = (upper[k] if to_up else 0.0) - x[k]
                    step = s[k] - x[k]
                    ratio = room / step if step != 0.0 else 0.0
                    if ratio < best_ratio or first < 0:
                        best_ratio, first, first_up = ratio, k, to_up
            if first < 0:
                break
            for a in range(p):
                k = support[a]
                x[k] += best_ratio * (s[k] - x[k])
            free[first] = False
            x[first] = upper[first] if first_up else 0.0
            at_upper[first] = first_up
            p = 0
            for k in range(K):
                if free[k]:
                    support[p] = k
                    p += 1
            left -= 1
            if check_clock and left % CHECK_CLOCK_EVERY == 0 and _now() > deadline:
                left = -1
            have_s = False
            if left >= 0:
                have_s, used = _solve(At, _shifted_target(At, b, upper, at_upper, -1), support, p,
                                              slot, col, gram, used, L, s, qr)
        if not have_s:
            return x, False
        for a in range(p):
            x[support[a]] = s[support[a]]
        resid = b.copy()
        for k in range(K):
            if x[k] != 0.0:
                for i in range(n):
                    resid[i] -= At[k, i] * x[k]
        for k in range(K):
            slope[k] = _dot(At[k], resid) / column_size[k]
            into[k] = -np.inf if free[k] else (-slope[k] if at_upper[k] else slope[k])
        while True:
            k = -1
            best = -np.inf
            for c in range(K):
                if not passed_over[c] and (k < 0 or into[c] > best):
                    k, best = c, into[c]
            if k < 0 or not best > tol * scale:
                for c in range(K):
                    if passed_over[c] and into[c] > tol * scale and not (qr and dependent[c]):
                        return x, False
                return x, True
            support[p] = k  # the free columns and k last
            left -= 1
            if check_clock and left % CHECK_CLOCK_EVERY == 0 and _now() > deadline:
                left = -1
            have_s = False
            if left >= 0:
                have_s, used = _solve(At, _shifted_target(At, b, upper, at_upper, k), support, p + 1,
                                              slot, col, gram, used, L, s, qr)
            if left < 0:
                return x, False
            if have_s and (s[k] < upper[k] if at_upper[k] else s[k] > 0.0):
                break
            passed_over[k] = True
            dependent[k] = not have_s
        free[k], at_upper[k] = True, False
        passed_over[:] = False
    return x, False
