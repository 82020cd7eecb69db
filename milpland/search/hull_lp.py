"""The hull relaxation's node problem for the piecewise-linear losses (absolute, hinge): an LP
(DESIGN §4b).

Under the hull relaxation (`milpland.search.unit_hull`) a node's network output is f = Phi z, linear in
the ray weights mu and the output bias c.  The node problem

    min  w sum_i loss_i(f_i)   over  0 <= mu <= ray bounds (0 off the unit's cone),  |c| <= c_bound

is an LP with two slack columns a sample: absolute f_i - y_i = p_i - q_i with cost p_i + q_i;
hinge 1 - y_i f_i = p_i - q_i with cost p_i.  f depends on the weights of units of equal sign only
through their sum per ray, so the LP has a column per ray and sign, bounded by the ray bound times
the number of that sign's units whose cone holds the ray (0 when none does): the same value as a
column per unit, with up to m times fewer columns (measured, standard suite, width 3, d = 2: 22 %
less time at n = 20, 60 % more nodes a second at n = 40).  The nodes of one sign class differ
only in column bounds: one HiGHS model per class, the bounds changed in bulk, the dual simplex
restarting from the parent's basis (linopy's way: arrays in, no model per node).

The bound is not HiGHS's objective value.  For slopes s_i in the loss's range (absolute: [-1, 1];
hinge: s_i = -pi_i y_i with pi_i in [0, 1], labels +-1) every loss_i(f) >= s_i (f - y_i), so for
every z in the node's box

    w sum_i loss_i(f_i)  >=  w ( -s.y + min_box (Phi^T s).z ),

whatever s is.  s comes from the LP's row duals (clipped into the range) and the right-hand side
is computed in numpy with extended precision, so a wrong dual costs strength, never validity.
"""

from __future__ import annotations

import time

import highspy
import numpy as np
import scipy.sparse as sp

from milpland.search.unit_hull import UnitHull, cancel_opposite_rays

MAX_NONZEROS = 5_000_000  # signs x rays x samples in one class's LP (`lp_applies`)


def lp_applies(hull_rays: int, n: int, width: int) -> str | None:
    """None when a class's LP (a column per ray and output sign) fits in memory, else the reason."""
    signs = min(width, 2)
    if hull_rays * n * signs > MAX_NONZEROS:
        return f"node LP too large ({signs} signs x {hull_rays} rays x {n} samples)"
    return None


def slopes_from_duals(kind: str, y: np.ndarray, row_dual: np.ndarray) -> np.ndarray:
    """Minorant slopes s (loss_i(f) >= s_i (f - y_i)) from HiGHS's row duals of the slack rows.

    HiGHS's duals d satisfy cost - A^T d = reduced costs.  Absolute rows (Phi z - p + q = y): the
    reduced costs 1 + d_i, 1 - d_i of p_i, q_i are >= 0, and the Lagrangian bound is
    d.y + min over the box of (-Phi^T d).z, i.e. s = -d.  Hinge rows (y_i (Phi z)_i + p_i - q_i = 1):
    pi = d in [0, 1] and s = -pi y."""
    if kind == "absolute":
        return np.clip(-row_dual, -1.0, 1.0)
    return -np.clip(row_dual, 0.0, 1.0) * y


def minorant_bound(Phi: np.ndarray, y: np.ndarray, slopes: np.ndarray, lower: np.ndarray,
                   upper: np.ndarray, weight: float) -> float:
    """w (-s.y + min over lower <= z <= upper of (Phi^T s).z) in extended precision; >= 0 is not
    imposed here (the caller compares with the parent's bound)."""
    ld = np.longdouble
    s = slopes.astype(ld)
    g = np.asarray(Phi, dtype=ld).T @ s  # no copy when the caller keeps Phi in extended precision
    box = np.sum(np.minimum(g * lower.astype(ld), g * upper.astype(ld)))
    return float(weight * (-(s @ y.astype(ld)) + box))


class HullLp:
    """Node LPs of the hull relaxation, one HiGHS model per sign class (see the module docstring)."""

    def __init__(self, hull: UnitHull, loss_kind: str, *, threads: int = 1):
        if loss_kind not in ("absolute", "hinge"):
            raise ValueError(f"HullLp: the loss must be absolute or hinge, not {loss_kind!r}")
        self.hull, self.kind = hull, loss_kind
        self.threads = threads
        self.n_rays = hull.R.shape[0]
        self._classes: dict[tuple, tuple[highspy.Highs, np.ndarray]] = {}

    @staticmethod
    def groups(signs: np.ndarray) -> list[np.ndarray]:
        """Units by output sign: f depends on a group's ray weights only through their sums."""
        return [np.flatnonzero(signs == s) for s in (1.0, -1.0) if (signs == s).any()]

    def _phi(self, signs: np.ndarray) -> np.ndarray:
        """n x (G R + 1), G sign groups: group g's column for ray r is s_g sigma(r . x^_i); the last
        column is c."""
        F = self.hull.F.T  # n x R
        return np.hstack([signs[g[0]] * F for g in self.groups(signs)] + [np.ones((self.hull.n, 1))])

    def _model(self, signs: np.ndarray) -> tuple[highspy.Highs, np.ndarray]:
        key = tuple(float(s) for s in signs)
        if key not in self._classes:
            self._classes[key] = self._build(np.asarray(signs, dtype=float))
        return self._classes[key]

    def _build(self, signs: np.ndarray) -> tuple[highspy.Highs, np.ndarray]:
        hull, n = self.hull, self.hull.n
        Phi = self._phi(signs)
        c = hull.c_bound if hull.has_c else 0.0
        eye = sp.identity(n, format="csc")
        if self.kind == "absolute":  # Phi z - p + q = y
            A = sp.hstack([sp.csc_matrix(Phi), -eye, eye], format="csc")
            rhs, slack_cost = hull.y, np.ones(2 * n)
        else:  # y (Phi z) + p - q = 1
            A = sp.hstack([sp.csc_matrix(hull.y[:, None] * Phi), eye, -eye], format="csc")
            rhs, slack_cost = np.ones(n), np.r_[np.ones(n), np.zeros(n)]
        N = A.shape[1]
        n_weights = Phi.shape[1] - 1
        cost = np.r_[np.zeros(Phi.shape[1]), slack_cost]
        lower = np.r_[np.zeros(n_weights), [-c], np.zeros(2 * n)]
        upper = np.r_[np.zeros(n_weights), [c], np.full(2 * n, highspy.kHighsInf)]  # set per node
        h = highspy.Highs()
        for name, value in (("output_flag", False), ("threads", self.threads), ("presolve", "off"),
                            ("primal_feasibility_tolerance", 1e-9), ("dual_feasibility_tolerance", 1e-9)):
            h.setOptionValue(name, value)
        h.passModel(N, n, A.nnz, 1, 1, 0.0, cost, lower, upper, rhs, rhs, A.indptr.astype(np.int32),
                    A.indices.astype(np.int32), A.data, np.zeros(N, dtype=np.int32))
        return h, Phi.astype(np.longdouble)  # for the bound, converted once per class

    def solve(self, pattern: np.ndarray, signs: np.ndarray, *, basis: tuple | None = None,
              deadline: float = np.inf) -> tuple[np.ndarray, float, float, tuple] | None:
        """(ray weights (m, R), c, certified lower bound, optimal basis) of the node of `pattern`,
        or None when HiGHS ends without an optimal basis (time limit, numerical trouble).

        basis: the parent's optimal basis (`basis` of its solve).  It stays dual feasible when
        bounds change, so the dual simplex starts next to the child's optimum (measured at d = 2,
        n = 40, width 3: from the previous node's basis instead, 170 iterations a node)."""
        h, Phi = self._model(signs)
        if basis is not None:
            set_basis(h, basis)
        hull = self.hull
        signs = np.asarray(signs, dtype=float)
        inside = hull.cones(pattern)  # (m, R)
        groups = self.groups(signs)
        sharing = np.array([inside[g].sum(axis=0) for g in groups])  # units of a group holding ray r
        upper_w = (sharing * hull.ray_bound).ravel()
        n_weights = upper_w.shape[0]
        h.changeColsBounds(n_weights, np.arange(n_weights, dtype=np.int32), np.zeros(n_weights), upper_w)
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return None
        h.setOptionValue("time_limit", float(h.getRunTime() + min(remaining, 1e6)))
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        sol = h.getSolution()
        x = np.asarray(sol.col_value)
        summed = np.clip(x[:n_weights], 0.0, upper_w).reshape(len(groups), self.n_rays)
        weights = np.zeros((hull.m, self.n_rays))
        for g, total, count in zip(groups, summed, sharing):  # a ray's weight shared by its units
            weights[g] = inside[g] * np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        weights = cancel_opposite_rays(weights, signs)
        c_bound = hull.c_bound if hull.has_c else 0.0
        c = float(np.clip(x[n_weights], -c_bound, c_bound))
        slopes = slopes_from_duals(self.kind, hull.y, np.asarray(sol.row_dual))
        lower = np.r_[np.zeros(n_weights), [-c_bound]]
        bound = minorant_bound(Phi, hull.y, slopes, lower, np.r_[upper_w, [c_bound]], hull.w)
        return weights, c, bound, get_basis(h)


def get_basis(h: highspy.Highs) -> tuple[np.ndarray, np.ndarray]:
    """(column, row) basis statuses as int8 arrays: kept per open node, a few kB each."""
    basis = h.getBasis()
    return (np.fromiter(map(int, basis.col_status), dtype=np.int8, count=len(basis.col_status)),
            np.fromiter(map(int, basis.row_status), dtype=np.int8, count=len(basis.row_status)))


STATUS = {int(s): s for s in highspy.HighsBasisStatus.__members__.values()}


def set_basis(h: highspy.Highs, statuses: tuple[np.ndarray, np.ndarray]) -> None:
    basis = highspy.HighsBasis()
    basis.col_status = [STATUS[v] for v in statuses[0].tolist()]
    basis.row_status = [STATUS[v] for v in statuses[1].tolist()]
    basis.valid = True
    h.setBasis(basis)
