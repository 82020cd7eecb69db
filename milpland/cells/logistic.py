"""One cell's problem for the logistic loss without weight decay, over the box: an exponential-cone
program (DESIGN §4e).

In the scaled weights theta~ = (U, a, rho, c) of `milpland.cells.problem` the fitted values of a cell
are linear, f = Phi theta~, so the cell risk

    R(theta~) = w sum_i log(1 + exp(-y_i f_i)),   G theta~ >= 0 (cell rows),
    |U_jl|, |a_j| <= box.weight,  0 <= rho_j <= box.output,  |c| <= C

is convex.  Clarabel solves it with the epigraph e_i >= log(1 + exp(-y_i f_i)), written as
exp(-y_i f_i - e_i) + exp(-e_i) <= 1: two exponential cones per sample, (-y_i f_i - e_i, 1, u_i) and
(-e_i, 1, v_i) in K_exp = closure{(x, y, z): y > 0, y exp(x / y) <= z}, and u_i + v_i <= 1.

C bounds the free output bias without cutting off a minimum: with both labels present, a sample whose
label has the sign opposite to c loses at least w (|c| - max_i |rest_i|), so every point of risk at
most R(theta~ = 0) = w n log 2 has |c| <= max|rest_i| + n log 2 (`c_bound`; rest_i is the units' part
of f_i, bounded by the box).  With labels of one sign and an output bias the infimum is 0 (c -> inf)
and not attained: refused in the spec (`milpland.instance.spec`).

The answer is a claim.  The returned risk is the numpy risk of the returned theta~; the lower bound is
recomputed with numpy from the duals mu (of f = Phi theta~) and nu >= 0 (of the cell rows), valid for
ANY such multipliers (DESIGN §4d: the conjugate of the logistic loss is the binary entropy H):

    R* >= sum_i w H(p_i) + min_{theta~ in box} r . theta~,   p_i = clip(-mu_i y_i / w, 0, 1),
    r = Phi^T mu - G^T nu,   min_{box} r . theta~ = -B |r_{U,a}|_1 + P sum min(0, r_rho) - C |r_c|.
"""

from __future__ import annotations

import time
import warnings

import clarabel
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from milpland.cells.decay import SOLVER_TOL, clip_multipliers, fitting_term, logistic_cones, polish_multipliers
from milpland.cells.problem import BOX_ACTIVE_RTOL, Cell, CellResult, _Builder, cell_outputs
from milpland.errors import MilplandError
from milpland.instance.activations import Activation
from milpland.instance.losses import Loss
from milpland.instance.spec import Box

LOGISTIC_KKT_TOL = 1e-8  # certified relative gap (numpy risk - numpy bound) below which a cell counts as solved


class LogisticCellSolver:
    """The `CellSolver` of the logistic loss without weight decay (same `solve(cell)` interface)."""

    def __init__(self, X, y, activation: Activation, loss: Loss, box: Box, *, output_bias: bool = True,
                 time_limit: float = 10.0):
        if loss.kind != "logistic" or loss.decayed:
            raise MilplandError("loss.kind: LogisticCellSolver is for the logistic loss without weight decay")
        if output_bias and len(np.unique(np.sign(np.asarray(y, dtype=float)))) < 2:
            raise MilplandError("data.y: with the logistic loss, labels of one sign and an output bias the infimum "
                                "(risk 0 as c -> inf) is not attained; give both labels or weight_decay > 0")
        self.builder = _Builder(X, y, activation, loss, box, output_bias=output_bias)
        self.loss, self.act, self.box = loss, activation, box
        self.time_limit = float(time_limit)
        b = self.builder
        self.zero_risk = loss.risk(np.zeros(b.n), b.y)  # theta~ = 0 lies in every closed cell

    def c_bound(self, m: int) -> float:
        """|c| of every point of risk <= R(theta~ = 0) (module docstring)."""
        b = self.builder
        xs = float(np.max(np.sum(np.abs(b.X), axis=1)))
        rest = m * float(np.max(np.abs(b.alpha))) * self.box.weight * (xs + 1.0)
        if not b.homogeneous:
            rest += m * float(np.max(np.abs(b.beta))) * self.box.output
        return float(rest + self.zero_risk / b.w + 1.0)

    def _bounds(self, lay) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of the parameter columns: the box and the derived bound on c."""
        p = lay.n_params
        lo, hi = np.full(p, -np.inf), np.full(p, np.inf)
        lo[: lay.a.stop], hi[: lay.a.stop] = -self.box.weight, self.box.weight
        if lay.has_rho:
            lo[lay.rho], hi[lay.rho] = 0.0, self.box.output
        if lay.has_c:
            lo[lay.c], hi[lay.c] = -self.c_bound(lay.m), self.c_bound(lay.m)
        return lo, hi

    def _program(self, cell: Cell):
        """Clarabel's arrays (min q'x s.t. Ax + s = b, s in K) with columns theta~ | f | e | u | v."""
        b = self.builder
        b.check(cell)
        lay = b.layout(cell.width)
        n, p = b.n, lay.n_params
        phi = b.phi(cell, lay)
        G = b.cell_rows(cell, lay)[0]
        lo, hi = self._bounds(lay)
        col_f, col_e, col_u, col_v = p, p + n, p + 2 * n, p + 3 * n
        N = p + 4 * n
        q = np.zeros(N)
        q[col_e:col_u] = b.w / max(self.zero_risk, 1e-300)  # the objective scaled to [0, 1]
        eye = np.eye(n)
        eq = np.zeros((n, N))
        eq[:, :p], eq[:, col_f:col_e] = phi, -eye
        boxed = np.flatnonzero(np.isfinite(hi))
        rows = [np.hstack([-G, np.zeros((G.shape[0], N - p))])]
        rhs = [np.zeros(G.shape[0])]
        for sign, limit in ((1.0, hi), (-1.0, -lo)):  # sign theta~_k <= limit_k
            box_rows = np.zeros((boxed.size, N))
            box_rows[np.arange(boxed.size), boxed] = sign
            rows.append(box_rows)
            rhs.append(limit[boxed])
        uv = np.zeros((n, N))
        uv[:, col_u:col_v], uv[:, col_v:] = eye, eye
        rows.append(uv)
        rhs.append(np.ones(n))
        nonneg = np.vstack(rows)
        blocks, b_parts = [eq, nonneg], [np.zeros(n), np.concatenate(rhs)]
        cones = [clarabel.ZeroConeT(n), clarabel.NonnegativeConeT(nonneg.shape[0])]
        for rows_i, b_i, cone in logistic_cones(b.y, N, col_f, col_e, col_u, col_v):
            blocks.append(rows_i)
            b_parts.append(b_i)
            cones.append(cone)
        A = sp.csc_matrix(np.vstack(blocks))
        return lay, phi, G, lo, hi, (sp.csc_matrix((N, N)), q, A, np.concatenate(b_parts), cones)

    def _settings(self) -> clarabel.DefaultSettings:
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        settings.tol_gap_abs = settings.tol_gap_rel = SOLVER_TOL
        settings.tol_feas = settings.tol_ktratio = SOLVER_TOL
        settings.max_iter = 200
        settings.time_limit = self.time_limit
        return settings

    def solve(self, cell: Cell, *, start=None) -> CellResult:
        """The cell's minimum over the box: a point (numpy risk) and a numpy lower bound.  ``start`` is
        accepted for the `CellSolver` interface and ignored (an interior-point method)."""
        started = time.perf_counter()
        b = self.builder
        lay, phi, G, lo, hi, arrays = self._program(cell)
        sol = clarabel.DefaultSolver(*arrays, self._settings()).solve()
        x, z = np.asarray(sol.x, dtype=float), np.asarray(sol.z, dtype=float)
        if x.size == 0 or not np.all(np.isfinite(x)):
            return CellResult(status="error", risk=np.inf, theta=None, fitted=None, box_active=False,
                              seconds=time.perf_counter() - started, method=f"clarabel-expcone ({sol.status})")
        p = lay.n_params
        theta = lay.theta(np.clip(x[:p], lo, hi), cell.signs)
        fitted = cell_outputs(b.X, b.act, cell, theta)
        risk = self.loss.risk(fitted, b.y)
        bound = self.lower_bound(phi, G, lo, hi, z)
        gap = max(0.0, risk - bound) / max(risk, 1e-6 * self.zero_risk)
        scale = max(1.0, float(np.max(np.abs(x[:p]), initial=0.0)))
        violation = float(np.max(-(G @ lay.vector(theta)), initial=0.0)) / scale
        ok = gap <= LOGISTIC_KKT_TOL and violation <= 1e-9
        return CellResult(status="optimal" if ok else "error", risk=risk, theta=theta, fitted=fitted,
                          box_active=self._at_box(lay, lay.vector(theta), hi), seconds=time.perf_counter() - started,
                          kkt_residual=gap, lower_bound=bound, max_violation=violation, method="clarabel-expcone")

    def max_margin(self, cell: Cell) -> float:
        """The smallest margin min_i y_i f_i, by a plain numpy forward pass of ordinary weights, of the
        cell's point that maximises it over the box (an LP: max t s.t. y_i (Phi theta~)_i >= t, cell rows,
        box, t <= 1; HiGHS via scipy).  > 0: this network separates the data (DESIGN §4e)."""
        b = self.builder
        lay = b.layout(cell.width)
        phi, G = b.phi(cell, lay), b.cell_rows(cell, lay)[0]
        lo, hi = self._bounds(lay)
        p = lay.n_params
        A_ub = np.vstack([np.hstack([-b.y[:, None] * phi, np.ones((b.n, 1))]),  # t - y_i f_i <= 0
                          np.hstack([-G, np.zeros((G.shape[0], 1))])])  # -G theta <= 0
        cost = np.zeros(p + 1)
        cost[p] = -1.0
        res = linprog(cost, A_ub=A_ub, b_ub=np.zeros(A_ub.shape[0]), method="highs",
                      bounds=list(zip(lo, hi)) + [(None, 1.0)])
        if res.status != 0:
            return float("-inf")
        theta = lay.theta(np.clip(res.x[:p], lo, hi), cell.signs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a limit unit is realised approximately; the margins decide
            params, _ = theta.to_original(self.act)
        return float(np.min(b.y * params.forward(b.X, self.act)))

    def solve_many(self, cells) -> list[CellResult]:
        return [self.solve(cell) for cell in cells]

    def lower_bound(self, phi, G, lo, hi, z) -> float:
        """The Lagrangian bound of the module docstring from Clarabel's duals, recomputed in numpy; also
        at mu moved so that r_c = 0 exactly (`decay.polish_multipliers`: C is large, so a dual error in
        r_c would cost C |r_c|), the larger of the two (both valid for any multipliers)."""
        b = self.builder
        s = self.zero_risk  # Clarabel solved the objective divided by this
        mu = clip_multipliers("logistic", s * z[:b.n], b.y, b.w)
        nu = np.maximum(s * z[b.n:b.n + G.shape[0]], 0.0)
        bound = self._bound(phi, G, lo, hi, mu, nu)
        c = len(lo) - 1 if b.output_bias else None  # c is the last parameter column (CellLayout)
        if c is not None:
            polished = polish_multipliers("logistic", mu, nu, phi, G, [c], b.y, b.w)
            bound = max(bound, self._bound(phi, G, lo, hi, polished, nu))
        return bound

    def _bound(self, phi, G, lo, hi, mu, nu) -> float:
        """Sum_i w H(p_i) + min over the box of r . theta~ at multipliers mu (in the domain) and nu >= 0."""
        b = self.builder
        r = phi.T @ mu - G.T @ nu
        box_min = np.where(r > 0, r * lo, r * hi)
        box_min = np.where(r == 0, 0.0, box_min)
        return fitting_term("logistic", mu, b.y, b.w) + float(np.sum(box_min))

    def _at_box(self, lay, x: np.ndarray, hi: np.ndarray) -> bool:
        """A scaled weight |U|, |a| at box.weight or rho at box.output (the derived c bound is never tight)."""
        k = lay.a.stop + (lay.m if lay.has_rho else 0)
        return bool(np.any(np.abs(x[:k]) >= hi[:k] * (1.0 - BOX_ACTIVE_RTOL)))
