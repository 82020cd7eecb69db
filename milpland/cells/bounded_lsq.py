"""Bounded-variable least squares by an active set, for many small problems with many columns:
the hull relaxation's node problems (`milpland.search.unit_hull`) and the cell solver's multipliers
(`milpland.cells.problem`)."""

from __future__ import annotations

import time

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotrs

DEPENDENT_PIVOT = 1e-8  # a Cholesky pivot below this (relative) marks a dependent support


class _Budget:
    """Counts least-squares solves and watches a deadline; an active set that runs out of either
    stops as not converged (its point still gives a valid bound)."""

    def __init__(self, solves: int, deadline: float = np.inf):
        self.left = solves
        self.deadline = deadline

    def spend(self) -> bool:
        self.left -= 1
        if self.left % 16 == 0 and time.perf_counter() > self.deadline:
            self.left = -1
        return self.left >= 0


def _least_squares(A: np.ndarray, b: np.ndarray, support: np.ndarray, budget: _Budget | None = None
                   ) -> np.ndarray | None:
    """Least squares on the columns `support` by the normal equations (Cholesky); None when they
    are dependent: a pivot below DEPENDENT_PIVOT of the largest, i.e. condition number of the
    columns above about 1e8 (the caller then keeps the column out)."""
    if budget is not None and not budget.spend():
        return None
    s = np.zeros(A.shape[1])
    if support.size:
        As = A[:, support]
        factor, info = dpotrf(As.T @ As, lower=1)  # raw LAPACK: this runs ~20 times per node
        pivots = np.diag(factor)
        if info != 0 or pivots.min() < DEPENDENT_PIVOT * pivots.max():
            return None
        s[support] = dpotrs(factor, As.T @ b, lower=1)[0]
    return s


def bvls_active_set(A: np.ndarray, b: np.ndarray, upper: np.ndarray, start: np.ndarray | None = None, *,
                    tol: float = 1e-12, max_solves: int | None = None, deadline: float = np.inf
                    ) -> tuple[np.ndarray, bool]:
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
    first node of 200 samples; scipy's BVLS took 2 s)."""
    n, K = A.shape
    budget = _Budget(max_solves or 6 * n + 40, deadline)
    x = np.zeros(K) if start is None else np.clip(start, 0.0, upper)
    at_upper = x >= upper
    free = (x > 0) & ~at_upper
    s = _least_squares(A, b - A[:, at_upper] @ upper[at_upper], np.flatnonzero(free), budget)
    if s is None:  # a dependent warm start: start from zero
        x, free, at_upper = np.zeros(K), np.zeros(K, dtype=bool), np.zeros(K, dtype=bool)
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    column_size = np.maximum(np.abs(A).max(axis=0), 1e-300)
    passed_over = np.zeros(K, dtype=bool)
    while budget.left > 0:
        idx = np.flatnonzero(free)
        if s is None:
            s = _least_squares(A, b - A[:, at_upper] @ upper[at_upper], idx, budget)
        while s is not None and idx.size and ((s[idx] <= 0) | (s[idx] >= upper[idx])).any():
            out = idx[(s[idx] <= 0) | (s[idx] >= upper[idx])]  # step to where the first one leaves
            to_upper = s[out] >= upper[out]
            room = np.where(to_upper, upper[out], 0.0) - x[out]
            step = s[out] - x[out]
            ratio = np.divide(room, step, out=np.zeros_like(room), where=step != 0)
            first = int(np.argmin(ratio))
            x[idx] += ratio[first] * (s[idx] - x[idx])
            k = out[first]
            free[k] = False
            x[k] = upper[k] if to_upper[first] else 0.0
            at_upper[k] = to_upper[first]
            idx = np.flatnonzero(free)
            s = _least_squares(A, b - A[:, at_upper] @ upper[at_upper], idx, budget)
        if s is None:
            return x, False
        x[idx] = s[idx]
        nonzero = np.flatnonzero(x)
        slope = (A.T @ (b - A[:, nonzero] @ x[nonzero])) / column_size
        into_interval = np.where(free, -np.inf, np.where(at_upper, -slope, slope))
        while True:
            k = int(np.argmax(np.where(passed_over, -np.inf, into_interval)))
            if not into_interval[k] > tol * scale:
                return x, not (passed_over & (into_interval > tol * scale)).any()
            fixed_upper = at_upper.copy()
            fixed_upper[k] = False
            s = _least_squares(A, b - A[:, fixed_upper] @ upper[fixed_upper], np.append(idx, k), budget)
            if budget.left < 0:
                return x, False
            if s is not None and (s[k] < upper[k] if at_upper[k] else s[k] > 0):
                break
            passed_over[k] = True
        free[k], at_upper[k] = True, False
        passed_over[:] = False
    return x, False
