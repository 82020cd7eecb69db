"""Bounds of the master MILP (DESIGN §3, "Bounds are part of the problem statement").

Every big-M and every variable bound of the master comes from here, derived from the box
and the data (valid for every point of the box) or from the cutoff (valid for every point
that could still beat the incumbent, which is all a sign class has to examine):

- `piece_bounds`: lower_ik <= g_ijk <= upper_ik on piece k, times delta_ijk.  From the box,
  |g_ij| <= M_i = B (||x_i||_1 + 1); a bounded piece also caps g by rho_j t <= P |t|.
- `cutoff_bounds`: a point with risk below the cutoff C has w e_i <= C for every sample, so
  e_i <= C / w and the residual obeys |f_i - y_i| <= sqrt(C / w) (squared), <= C / w
  (absolute), or y_i f_i >= 1 - C / w (hinge), y_i f_i >= -C / w (logistic).
- `obbt`: optimisation-based bound tightening: min / max of every g_ijk over the LP relaxation
  with the cutoff as an objective row; the big-M coefficients are then replaced by the
  tightened bounds (valid: the LP relaxation contains every better integer point).
- `coefficient_ranges`: the numerical range of a compiled model, reported with every solve.
"""

from __future__ import annotations

import highspy
import numpy as np

import milpland.interrupt as interrupt
from milpland.instance.spec import InstanceSpec

INF = highspy.kHighsInf
OBBT_MIN_GAIN = 1e-6  # relative tightening below which a bound is left as it is


def big_m(spec: InstanceSpec) -> np.ndarray:
    """M_i = B (||x_i||_1 + 1) bounds |g_ij| = |u~_j . x_i + a~_j| over the box."""
    return spec.box.weight * (np.abs(spec.X).sum(axis=1) + 1.0)


def piece_bounds(spec: InstanceSpec, *, tight: bool) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper), each (n, K): the bounds of g_ijk when sample i is on piece k.

    Without `tight` every piece gets the box bound [-M_i, M_i] (the original model).  With it,
    piece k = [rho t_k, rho t_{k+1}] and 0 <= rho <= P give g >= P min(t_k, 0) when t_k is finite
    and g <= P max(t_{k+1}, 0) when t_{k+1} is finite (for ReLU: [-M_i, 0] and [0, M_i]).
    """
    act = spec.network.activation
    M = big_m(spec)
    K = act.n_pieces
    lower = np.repeat(-M[:, None], K, axis=1)
    upper = np.repeat(M[:, None], K, axis=1)
    if not tight:
        return lower, upper
    P = float(spec.box.output)
    for k in range(K):
        lo, hi = act.lower(k), act.upper(k)
        if np.isfinite(lo):
            lower[:, k] = np.maximum(lower[:, k], (0.0 if act.homogeneous else P) * min(lo, 0.0))
        if np.isfinite(hi):
            upper[:, k] = np.minimum(upper[:, k], (0.0 if act.homogeneous else P) * max(hi, 0.0))
    return lower, upper


def cutoff_bounds(spec: InstanceSpec, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f_lower, f_upper, e_upper) that every point with risk < cutoff satisfies (module docstring)."""
    n = spec.n
    y = spec.y
    budget = max(float(cutoff), 0.0) / spec.loss.weight(n)  # a bound on every single e_i
    budget = budget * (1.0 + 1e-9) + 1e-12  # keep the boundary point strictly feasible in floating point
    kind = spec.loss.kind
    f_lower, f_upper = np.full(n, -INF), np.full(n, INF)
    if kind == "squared":
        radius = np.sqrt(budget)
        f_lower, f_upper = y - radius, y + radius
    elif kind == "absolute":
        f_lower, f_upper = y - budget, y + budget
    else:  # hinge: 1 - y_i f_i <= e_i <= budget; logistic: -y_i f_i <= log(1 + exp(-y_i f_i)) <= budget
        floor = 1.0 - budget if kind == "hinge" else -budget
        f_lower = np.where(y > 0, floor, -INF)
        f_upper = np.where(y < 0, -floor, INF)
    return f_lower, f_upper, np.full(n, budget)


def coefficient_ranges(A, col_lower: np.ndarray, col_upper: np.ndarray, row_lower: np.ndarray,
                       row_upper: np.ndarray, cost: np.ndarray) -> dict:
    """[min, max] of the absolute non-zero matrix entries, finite bounds, right-hand sides and costs."""

    def span(values: np.ndarray) -> list[float]:
        v = np.abs(np.asarray(values, dtype=float))
        v = v[np.isfinite(v) & (v > 0) & (v < INF)]
        return [float(v.min()), float(v.max())] if v.size else [0.0, 0.0]

    return {
        "matrix": span(A.data),
        "bounds": span(np.concatenate([col_lower, col_upper])),
        "rhs": span(np.concatenate([row_lower, row_upper])),
        "cost": span(cost),
    }


def obbt(lp: "highspy.HighsLp", *, cost: np.ndarray, offset: float, cutoff: float, targets: np.ndarray,
         time_limit: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Tightened (lower, upper) of the columns `targets` by LP, and the number of LPs solved
    (-1: the LP relaxation has no point below the cutoff at all).

    `lp` is the master as HiGHS holds it (with its tangent rows); integrality is dropped, the row
    cost . x + offset <= cutoff is appended, and every target column is minimised and maximised,
    each LP warm-started from the previous basis.  A bound only moves when the LP says optimal
    (otherwise the old bound stands, always valid), and by 1e-7 less than the LP claims.
    """
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("presolve", "off")
    h.setOptionValue("time_limit", float(max(time_limit, 0.01)))  # cumulative over the LPs (DESIGN §4)
    n_cols = lp.num_col_
    lp.integrality_ = []
    lp.col_cost_ = np.zeros(n_cols)
    h.passModel(lp)
    nz = np.flatnonzero(cost)
    if np.isfinite(cutoff):
        h.addRow(-INF, float(cutoff - offset), len(nz), nz.astype(np.int32), cost[nz].astype(float))
    lower, upper = np.array(lp.col_lower_, dtype=float), np.array(lp.col_upper_, dtype=float)
    solved = 0
    every = np.arange(n_cols, dtype=np.int32)
    zero = np.zeros(n_cols)
    for col in targets:
        for sense in (1.0, -1.0):
            if h.getRunTime() >= time_limit or interrupt.requested():
                return lower, upper, solved
            c = zero.copy()
            c[col] = sense
            h.changeColsCost(n_cols, every, c)
            h.run()
            solved += 1
            status = h.getModelStatus()
            if status == highspy.HighsModelStatus.kInfeasible:
                return lower, upper, -1
            if status != highspy.HighsModelStatus.kOptimal:
                continue
            value = sense * h.getInfo().objective_function_value
            slack = 1e-7 * max(1.0, abs(value))  # LP tolerances: never cut a feasible point off
            if sense > 0 and value - slack > lower[col]:
                lower[col] = value - slack
            elif sense < 0 and value + slack < upper[col]:
                upper[col] = value + slack
    return lower, upper, solved
