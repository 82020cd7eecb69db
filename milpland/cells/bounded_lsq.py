"""Bounded-variable least squares by an active set, for many small problems with many columns:
the hull relaxation's node problems (`milpland.search.unit_hull`) and the cell solver's multipliers
(`milpland.cells.problem`).

The active set runs compiled (numba): a node of the pattern branch-and-bound makes about 40
least-squares solves on supports of about 20 columns, where numpy's per-call overhead was three
quarters of the time (issue 15).  Each solve is by the normal equations of the support (Cholesky;
a support rejected as dependent when a pivot falls below DEPENDENT_PIVOT of the largest), from a
cache of the support's Gram entries A_k . A_l kept while the columns stay in the support, or, in
the QR attempt, by a QR factorisation of the columns.  Both factors are kept between solves and
updated when a column enters (appended) or leaves (deleted by Givens rotations): a step of the
active set changes the support by one column, so a solve costs O(p^2 + rows * p) with the
Cholesky factor and O(rows^2) with the QR factor, instead of O(p^3 / 6) and O(rows * p^2) afresh
(1-D, n = 320: supports of 300-450 columns and thousands of steps a node)."""

from __future__ import annotations

import time
from typing import NamedTuple

import numba
import numpy as np

DEPENDENT_PIVOT = 1e-8  # a Cholesky pivot below this (relative) marks a dependent support
QR_DEPENDENT_PIVOT = 1e-12  # the same for the pivots of the QR factorisation (`qr=True`)
CHECK_CLOCK_EVERY = 16  # least-squares solves between two looks at the deadline
# the refinement step's correction (relative, max norms) above which an updated Cholesky factor is
# replaced by a fresh one (`_solve_support`)
REFACTOR_CORRECTION = 1e-6


class Factor(NamedTuple):
    """The Cholesky factor kept between the active set's least-squares solves (`_solve_support`):
    L L^T is the Gram matrix of the columns fact[:state[0]] in that order, pos[k] is column k's
    position in fact (-1: not in the factor), member a scratch mask of the support; state[1] counts
    the refactorisations for accuracy."""

    L: np.ndarray
    fact: np.ndarray
    pos: np.ndarray
    member: np.ndarray
    state: np.ndarray


class QrFactor(NamedTuple):
    """The QR factor kept between the active set's QR solves (`_solve_support_qr`): the columns
    fact[:state[0]] are Q R with Q = Qt^T orthogonal (n x n, explicit) and R's column c in
    Rc[c, :c + 1]; pos, member and state[1] as in `Factor`."""

    Qt: np.ndarray
    Rc: np.ndarray
    fact: np.ndarray
    pos: np.ndarray
    member: np.ndarray
    state: np.ndarray


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
def _delete_from_factor(L, fact, pos, q, a):
    """Remove the column at position a of the factor: L L^T is the Gram matrix of fact[:q] in that
    order.  Dropping row a of L leaves rows a+1.. with one entry right of the diagonal; Givens
    rotations of the column pairs (c, c + 1), c = a .. q - 2, restore the triangle (the rows of L
    are those of R^T in a QR factorisation of the columns, and a rotation keeps L L^T).  O((q - a)^2).
    Returns the new q."""
    pos[fact[a]] = -1
    for i in range(a, q - 1):
        fact[i] = fact[i + 1]
        pos[fact[i]] = i
        for e in range(i + 2):
            L[i, e] = L[i + 1, e]
    for c in range(a, q - 1):
        top, right = L[c, c], L[c, c + 1]
        r = np.hypot(top, right)
        if r == 0.0:
            L[c, c + 1] = 0.0
            continue
        cs, sn = top / r, right / r
        L[c, c], L[c, c + 1] = r, 0.0
        for i in range(c + 1, q - 1):
            u, v = L[i, c], L[i, c + 1]
            L[i, c] = cs * u + sn * v
            L[i, c + 1] = cs * v - sn * u
    return q - 1


@numba.njit(cache=True)
def _append_to_factor(L, fact, pos, q, k, slot, gram):
    """Append column k to the factor (a new last row of L: forward substitution of its Gram entries
    with fact[:q], then its pivot).  Returns q + 1, or q (not appended) when the pivot is not
    positive or below DEPENDENT_PIVOT times the largest pivot: k depends on the factor's columns.
    Only the new pivot is tested (the factorisation afresh it replaces compared every pivot with the
    largest, so a column accepted early could reject the support when a much longer one came later;
    the trial column, always appended last, is tested the same way in both).  DEPENDENT_PIVOT lies
    near the rounding of the normal equations (sqrt(eps) ~ 1.5e-8): an exactly dependent column can
    come out with a pivot of about 1e-8 relative and pass; the refinement step and the QR attempt
    are what catch it."""
    sk = slot[k]
    for c in range(q):
        value = gram[sk, slot[fact[c]]]
        for e in range(c):
            value -= L[q, e] * L[c, e]
        L[q, c] = value / L[c, c]
    value = gram[sk, sk]
    for e in range(q):
        value -= L[q, e] * L[q, e]
    if not value > 0.0:
        return q
    pivot = np.sqrt(value)
    top = pivot
    for c in range(q):
        top = max(top, L[c, c])
    if pivot < DEPENDENT_PIVOT * top:
        return q
    L[q, q] = pivot
    fact[q], pos[k] = k, q
    return q + 1


@numba.njit(cache=True)
def _solve_support(At, rhs_vec, support, n_support, slot, col, gram, used, factor, s_out):
    """Least squares on the columns support[:n_support] by the normal equations: Cholesky of their
    Gram matrix, kept between solves (`Factor`) and brought to this support by deleting the columns
    that left (`_delete_from_factor`) and appending those that entered (`_append_to_factor`), O(p^2)
    a column instead of O(p^3 / 6) afresh; refactorised from scratch when more than p / 8 + 2 columns
    changed, or when the refinement step's correction (below) exceeds REFACTOR_CORRECTION of the
    solution after updates (rounding of the updates: then the fresh factor's answer is taken).
    Writes the solution into s_out (zero elsewhere) and returns (ok, used slots); ok is False when
    the columns are dependent: a pivot not positive or below DEPENDENT_PIVOT times the largest
    (condition number of the columns above about 1e8)."""
    L, fact, pos, member, state = factor.L, factor.fact, factor.pos, factor.member, factor.state
    if n_support > col.shape[0]:  # cannot happen with independent columns; refuse like a dependent set
        return False, used
    q = state[0]
    for a in range(n_support):
        member[support[a]] = True
    gone = 0
    for a in range(q - 1, -1, -1):  # from the back: deleting the last position is free
        if not member[fact[a]]:
            gone += 1
    entering = n_support - (q - gone)
    fresh = gone + entering > q // 8 + 2
    if fresh:
        for a in range(q):
            pos[fact[a]] = -1
        q = 0
    else:
        for a in range(q - 1, -1, -1):
            if not member[fact[a]]:
                q = _delete_from_factor(L, fact, pos, q, a)
    for a in range(n_support):
        member[support[a]] = False
    for a in range(n_support):
        if slot[support[a]] < 0:
            got = _take_slot(At, support[a], slot, col, gram, used)
            if got < 0:
                used = _compact_slots(support, n_support, slot, col, gram, used)
                got = _take_slot(At, support[a], slot, col, gram, used)
            used = got
    for attempt in range(2):
        for a in range(n_support):
            if pos[support[a]] < 0:
                grown = _append_to_factor(L, fact, pos, q, support[a], slot, gram)
                if grown == q:
                    state[0] = q
                    return False, used
                q = grown
        state[0] = q
        correction = _normal_solve(At, rhs_vec, L, fact, q, s_out)
        if fresh or correction <= REFACTOR_CORRECTION:
            return True, used
        for a in range(q):  # the updated factor lost accuracy: once more from scratch
            pos[fact[a]] = -1
        q = 0
        fresh = True
        state[1] += 1
    return True, used


@numba.njit(cache=True)
def _normal_solve(At, rhs_vec, L, fact, q, s_out):
    """s_out <- the least-squares solution on the columns fact[:q] from their Cholesky factor L, with
    one step of refinement (corrected semi-normal equations): the normal equations square the
    condition number, and a residual left not quite orthogonal to the support shows up as false
    slopes of dependent columns, which stopped the active set early (scipy's fallback then took most
    of the time).  Returns the correction's size relative to the solution (max norms)."""
    p = q
    z = np.empty(p)
    for a in range(p):
        z[a] = _dot(At[fact[a]], rhs_vec)
    _cholesky_solve(L, p, z)
    resid = _residual(At, rhs_vec, fact, p, z)
    correction = np.empty(p)
    for a in range(p):
        correction[a] = _dot(At[fact[a]], resid)
    _cholesky_solve(L, p, correction)
    return _scatter_refined(fact, p, z, correction, s_out)


@numba.njit(cache=True)
def _residual(At, rhs_vec, fact, p, z):
    """rhs - sum_a z[a] A[:, fact[a]]: the residual of the support's solution z."""
    resid = rhs_vec.copy()
    for a in range(p):
        for i in range(resid.shape[0]):
            resid[i] -= At[fact[a], i] * z[a]
    return resid


@numba.njit(cache=True)
def _scatter_refined(fact, p, z, correction, s_out):
    """s_out <- z + correction on the columns fact[:p], 0 elsewhere; returns max|correction| / max|z + correction|
    (0 for a zero solution): how much the refinement step moved the solution."""
    s_out[:] = 0.0
    size, change = 0.0, 0.0
    for a in range(p):
        s_out[fact[a]] = z[a] + correction[a]
        size = max(size, abs(z[a] + correction[a]))
        change = max(change, abs(correction[a]))
    return change / size if size > 0.0 else 0.0


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
def _qr_delete(Qt, Rc, fact, pos, q, a):
    """Remove the column at position a of the QR factor (A_fact[:q] = Q R; Qt[j] is Q's column j,
    Rc[c, :c + 1] R's column c).  The later columns shift left and keep one entry below the
    diagonal, which Givens rotations of the row pairs (c, c + 1) remove, applied to Q's columns as
    well (Q G^T G R = Q R).  O(n (q - a))."""
    pos[fact[a]] = -1
    for c in range(a, q - 1):
        fact[c] = fact[c + 1]
        pos[fact[c]] = c
        for e in range(c + 2):
            Rc[c, e] = Rc[c + 1, e]
    n = Qt.shape[1]
    for c in range(a, q - 1):
        top, below = Rc[c, c], Rc[c, c + 1]
        r = np.hypot(top, below)
        Rc[c, c + 1] = 0.0
        if r == 0.0:
            continue
        cs, sn = top / r, below / r
        Rc[c, c] = r
        for e in range(c + 1, q - 1):
            u, v = Rc[e, c], Rc[e, c + 1]
            Rc[e, c] = cs * u + sn * v
            Rc[e, c + 1] = cs * v - sn * u
        for i in range(n):
            u, v = Qt[c, i], Qt[c + 1, i]
            Qt[c, i] = cs * u + sn * v
            Qt[c + 1, i] = cs * v - sn * u
    return q - 1


@numba.njit(cache=True)
def _qr_append(At, Qt, Rc, fact, pos, q, k, w, v):
    """Append column k to the QR factor: w = Q^T A_k, then one Householder reflection of Q's columns
    q.. that maps w[q:] to (alpha, 0, ...).  Returns q + 1, or q (nothing changed) when |alpha| is 0
    or below QR_DEPENDENT_PIVOT times the largest pivot: k depends on the factor's columns.  O(n^2)."""
    n = Qt.shape[1]
    if q >= n:
        return q
    for j in range(n):
        w[j] = _dot(Qt[j], At[k])
    norm = 0.0
    for j in range(q, n):
        norm += w[j] * w[j]
    norm = np.sqrt(norm)
    top = norm
    for c in range(q):
        top = max(top, abs(Rc[c, c]))
    if norm == 0.0 or norm < QR_DEPENDENT_PIVOT * top:
        return q
    alpha = -norm if w[q] >= 0.0 else norm
    vv = 0.0
    for j in range(q, n):
        v[j] = w[j]
    v[q] -= alpha
    for j in range(q, n):
        vv += v[j] * v[j]
    if vv > 0.0:
        proj = np.zeros(n)  # proj[i] = sum_j v_j Qt[j, i]: the reflection of every coordinate at once
        for j in range(q, n):
            if v[j] != 0.0:
                for i in range(n):
                    proj[i] += v[j] * Qt[j, i]
        for j in range(q, n):
            scale = 2.0 * v[j] / vv
            if scale != 0.0:
                for i in range(n):
                    Qt[j, i] -= scale * proj[i]
    for c in range(q):
        Rc[q, c] = w[c]
    Rc[q, q] = alpha
    fact[q], pos[k] = k, q
    return q + 1


@numba.njit(cache=True)
def _qr_solve(At, rhs_vec, Qt, Rc, fact, q, s_out):
    """s_out <- the least-squares solution on the columns fact[:q]: R z = (Q^T rhs)[:q], with one
    step of refinement from the residual.  Returns the correction's size relative to z (max norms)."""
    z = np.empty(q)
    _qr_back(Qt, Rc, q, rhs_vec, z)
    dz = np.empty(q)
    _qr_back(Qt, Rc, q, _residual(At, rhs_vec, fact, q, z), dz)
    return _scatter_refined(fact, q, z, dz, s_out)


@numba.njit(cache=True)
def _qr_back(Qt, Rc, q, rhs_vec, z):
    """z <- R^-1 (Q^T rhs)[:q] (R[a, c] = Rc[c, a])."""
    for a in range(q):
        z[a] = _dot(Qt[a], rhs_vec)
    for a in range(q - 1, -1, -1):
        value = z[a]
        for c in range(a + 1, q):
            value -= Rc[c, a] * z[c]
        z[a] = value / Rc[a, a]


@numba.njit(cache=True)
def _solve_support_qr(At, rhs_vec, support, n_support, qrf, s_out):
    """Least squares on the columns support[:n_support] by a QR factorisation of the columns
    themselves (no Gram matrix), kept between solves (`QrFactor`): the columns that left are deleted
    (`_qr_delete`, Givens), those that entered appended (`_qr_append`, Householder), O(n^2) a
    column instead of O(n p^2) afresh.  The pivots |R_aa| are the Cholesky pivots of the normal
    equations, but computed to working precision, so columns up to a condition number of about 1e12
    (QR_DEPENDENT_PIVOT) are solved where the normal equations stop at 1e8.  When the refinement's
    correction exceeds REFACTOR_CORRECTION after updates, the factor is rebuilt from Q = I."""
    Qt, Rc, fact, pos, member, state = qrf.Qt, qrf.Rc, qrf.fact, qrf.pos, qrf.member, qrf.state
    n = At.shape[1]
    if n_support > n:
        return False
    q = state[0]
    for a in range(n_support):
        member[support[a]] = True
    for a in range(q - 1, -1, -1):
        if not member[fact[a]]:
            q = _qr_delete(Qt, Rc, fact, pos, q, a)
    for a in range(n_support):
        member[support[a]] = False
    w, v = np.empty(n), np.empty(n)
    fresh = False
    for attempt in range(2):
        for a in range(n_support):
            if pos[support[a]] < 0:
                grown = _qr_append(At, Qt, Rc, fact, pos, q, support[a], w, v)
                if grown == q:
                    state[0] = q
                    return False
                q = grown
        state[0] = q
        correction = _qr_solve(At, rhs_vec, Qt, Rc, fact, q, s_out)
        if fresh or correction <= REFACTOR_CORRECTION:
            return True
        for a in range(q):  # the updated factor lost accuracy: once more from Q = I
            pos[fact[a]] = -1
        q = 0
        Qt[:, :] = 0.0
        for j in range(n):
            Qt[j, j] = 1.0
        fresh = True
        state[1] += 1
    return True


@numba.njit(cache=True)
def _solve(At, rhs_vec, support, n_support, slot, col, gram, used, factor, qr_factor, s_out, qr):
    """`_solve_support` (normal equations) or, when qr, `_solve_support_qr`."""
    if qr:
        return _solve_support_qr(At, rhs_vec, support, n_support, qr_factor, s_out), used
    return _solve_support(At, rhs_vec, support, n_support, slot, col, gram, used, factor, s_out)


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
def _new_factors(K, cap, n, qr):
    """An empty `Factor` for the normal equations and an empty `QrFactor` (Q = I); the one the
    active set does not use (qr or not) gets size 1."""
    c, m = (1, n) if qr else (cap, 1)
    chol = Factor(L=np.empty((c + 1, c + 1)), fact=np.empty(c + 1, dtype=np.int64),
                  pos=np.full(K, -1, dtype=np.int64), member=np.zeros(K, dtype=np.bool_),
                  state=np.zeros(2, dtype=np.int64))
    qrf = QrFactor(Qt=np.eye(m), Rc=np.empty((m + 1, m + 1)), fact=np.empty(m + 1, dtype=np.int64),
                   pos=np.full(K, -1, dtype=np.int64), member=np.zeros(K, dtype=np.bool_),
                   state=np.zeros(2, dtype=np.int64))
    return chol, qrf


@numba.njit(cache=True)
def active_set(At, b, upper, x0, has_start, tol, max_solves, deadline, qr=False):
    """The active set of `bvls_active_set` on the columns At (K x n); returns (x, converged).
    qr: least squares by QR of the support (slower, for supports the normal equations call dependent)."""
    K, n = At.shape
    cap = min(K, 2 * n + 8)
    slot = np.full(K, -1, dtype=np.int64)
    col = np.empty(cap, dtype=np.int64)
    gram = np.empty((cap, cap))
    factor, qr_factor = _new_factors(K, cap, n, qr)
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
                                      slot, col, gram, used, factor, qr_factor, s, qr)
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
                                              slot, col, gram, used, factor, qr_factor, s, qr)
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
                                              slot, col, gram, used, factor, qr_factor, s, qr)
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
                                              slot, col, gram, used, factor, qr_factor, s, qr)
            if left < 0:
                return x, False
            if have_s and (s[k] < upper[k] if at_upper[k] else s[k] > 0.0):
                break
            passed_over[k] = True
            dependent[k] = not have_s
        free[k], at_upper[k] = True, False
        passed_over[:] = False
    return x, False
