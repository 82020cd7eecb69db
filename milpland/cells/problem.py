"""The convex problem of one cell of a one-hidden-layer network (DESIGN §3), solved and verified.

A cell fixes the piece k_ij of every (sample i, hidden unit j) and the sign s_j of every
output weight.  In the scaled variables theta~ = (U, a, rho, c), with g_ij = U_j . x_i + a_j,

    f_i  = c + sum_j s_j (alpha_{k_ij} g_ij + beta_{k_ij} rho_j)
    cell:  rho_j t_{k_ij} <= g_ij <= rho_j t_{k_ij + 1}     (infinite ends dropped)
    box:   |U_jl|, |a_j| <= box.weight,  0 <= rho_j <= box.output

and the cell risk  w * sum_i loss(f_i, y_i)  (w = loss.weight(n)) is convex: a QP for the
squared loss, an LP (with epigraph variables t_i) for the absolute and hinge losses.  For
homogeneous activations rho drops out (no rho columns; the cell is g_ij >= 0 or <= 0).

Every closed cell contains theta~ = 0 (g = 0 and rho = 0 satisfy every piece bound), so a cell
problem is never infeasible; only the open cell (strict inequalities) can be empty.

HiGHS's answer is a claim.  `CellSolver` passes the arrays to one reused highspy object
(presolve off, QP regularisation 0, feasibility tolerances 1e-9, objective divided by the risk of
the best constant so that it lies in [0, 1]) and then re-checks everything with numpy:

- squared loss: a primal active-set polish from the HiGHS point (equality-constrained least
  squares solved exactly on the active rows, blocking rows added, NNLS-residual descent steps
  that leave rows) -- removes the error of HiGHS's regularisation and tolerances (DESIGN §4).
  Fallbacks: regularisation 1e-7 if the unregularised QP gives no point within REG0_TIME_CAP,
  then the same active-set method started at theta~ = 0 (always feasible).
- every loss: a Lagrangian lower bound computed with numpy (extended precision for the
  residual) from multipliers lam >= 0 of the cell rows and slopes mu of affine minorants
  loss_i(f) >= mu_i f + nu_i (HiGHS duals for LPs, the tangent for the squared loss):
      R* >= w [ sum_i nu_i + min_{theta in box} (Phi^T mu - G^T lam) . theta ],
  valid for any such multipliers.  ``kkt_residual`` = (risk - bound) / max(risk, floor) is a
  certified relative optimality gap, not a solver tolerance; status "optimal" means
  kkt_residual <= 1e-9 and the cell rows hold to 1e-9 (relative distance).
- the returned risk is the numpy risk of the returned theta, never a solver objective.
- box_active is reported only when no optimal point with the same fitted values lies strictly
  inside the box (LP vertices and QP solutions like to park risk-neutral weights, e.g. of a dead
  unit, on the box: they are pulled inside first).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Iterable

import highspy
import numpy as np
import scipy.sparse as sp

from milpland.cells.bounded_lsq import bvls_active_set
from milpland.cells.scaled import ScaledParams
from milpland.errors import MilplandError
from milpland.instance.activations import Activation
from milpland.instance.losses import LOGISTIC_NEEDS_DECAY, LOSS_KINDS, Loss
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import Box

CELL_STATUSES = ("optimal", "infeasible", "time_limit", "error")
BOX_ACTIVE_RTOL = 1e-7  # a coordinate within this relative distance of its box bound is "at the bound"
KKT_TOL = 1e-9  # certified relative gap below which a cell optimum counts as verified
FEAS_TOL = 1e-9  # cell-row violation (distance, relative to max(1, |theta|)) accepted as feasible
REG0_TIME_CAP = 2.0  # seconds for the unregularised QP before falling back (DESIGN §4)
HIGHS_INF = highspy.kHighsInf


# ----------------------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Cell:
    """An activation pattern (piece of every (sample, unit)) and the output-weight signs."""

    pattern: np.ndarray  # (n, m) int
    signs: np.ndarray  # (m,) float +1 / -1

    def __post_init__(self):
        pattern = np.asarray(self.pattern)
        integral = np.issubdtype(pattern.dtype, np.integer) or bool(np.all(pattern == np.round(pattern)))
        if pattern.ndim != 2 or pattern.shape[1] == 0 or not integral:
            raise MilplandError(f"cell.pattern: must be an (n, m) array of piece indices, got shape {pattern.shape}")
        signs = np.asarray(self.signs, dtype=float).reshape(-1)
        if signs.shape[0] != pattern.shape[1] or not np.all(np.abs(signs) == 1.0):
            raise MilplandError(f"cell.signs: must be {pattern.shape[1]} values +1 or -1, got {signs.tolist()}")
        object.__setattr__(self, "pattern", pattern.astype(np.int64))
        object.__setattr__(self, "signs", signs)

    @property
    def n(self) -> int:
        return self.pattern.shape[0]

    @property
    def width(self) -> int:
        return self.pattern.shape[1]

    def canonical_order(self) -> np.ndarray:
        """Unit order sorting the units by (sign, pattern column): the permutation-invariant form."""
        keys = np.vstack([self.pattern[::-1, :], self.signs[None, :]])  # lexsort: last key is primary
        return np.lexsort(keys)

    def canonical(self) -> "Cell":
        order = self.canonical_order()
        return Cell(self.pattern[:, order], self.signs[order])

    def key(self) -> str:
        """Stable short hash of the cell, equal for cells that differ by a permutation of the units."""
        c = self.canonical()
        h = hashlib.sha256()
        h.update(np.array(c.pattern.shape, dtype="<i8").tobytes())
        h.update(c.signs.astype("<i1").tobytes())
        h.update(np.ascontiguousarray(c.pattern, dtype="<i2").tobytes())
        return h.hexdigest()[:16]

    @classmethod
    def of_params(cls, params: OneHiddenParams, X: np.ndarray, act: Activation) -> "Cell":
        """The cell of ordinary weights (ties go to the lower piece; sign(0) = +1)."""
        return cls(params.pattern(X, act), np.where(params.v < 0, -1.0, 1.0))

    @classmethod
    def of_scaled(cls, theta: ScaledParams, X: np.ndarray, act: Activation) -> "Cell":
        """The cell of scaled weights: k_ij = #{breakpoints t : g_ij > rho_j t} (ties to the lower piece)."""
        G = theta.scaled_pre_activations(X)
        t = np.asarray(act.breakpoints)
        rho = np.ones_like(theta.a) if act.homogeneous else np.asarray(theta.rho, dtype=float)
        k = np.sum(G[:, :, None] > rho[None, :, None] * t[None, None, :], axis=2)
        return cls(k, theta.signs)


# ----------------------------------------------------------------------------------------------
# The cell problem as arrays
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellLayout:
    """Column layout: U (m*d, unit-major), a (m), rho (m, non-homogeneous only), c (if output_bias),
    then the epigraph variables t (n, LP losses only)."""

    n: int
    m: int
    d: int
    has_rho: bool
    has_c: bool
    has_t: bool

    @property
    def U(self) -> slice:
        return slice(0, self.m * self.d)

    @property
    def a(self) -> slice:
        return slice(self.m * self.d, self.m * (self.d + 1))

    @property
    def rho(self) -> slice | None:
        if not self.has_rho:
            return None
        start = self.m * (self.d + 1)
        return slice(start, start + self.m)

    @property
    def c(self) -> int | None:
        return self.m * (self.d + 1 + int(self.has_rho)) if self.has_c else None

    @property
    def n_params(self) -> int:
        return self.m * (self.d + 1 + int(self.has_rho)) + int(self.has_c)

    @property
    def t(self) -> slice | None:
        return slice(self.n_params, self.n_params + self.n) if self.has_t else None

    @property
    def n_cols(self) -> int:
        return self.n_params + (self.n if self.has_t else 0)

    def theta(self, x: np.ndarray, signs: np.ndarray) -> ScaledParams:
        """The ScaledParams held in a column vector (rho = 0 when the activation has no rho)."""
        x = np.asarray(x, dtype=float)
        rho = x[self.rho].copy() if self.has_rho else np.zeros(self.m)
        c = float(x[self.c]) if self.has_c else 0.0
        return ScaledParams(
            U=x[self.U].reshape(self.m, self.d).copy(), a=x[self.a].copy(), rho=rho, c=c,
            signs=np.asarray(signs, dtype=float).copy(),
        )

    def vector(self, theta: ScaledParams) -> np.ndarray:
        """The parameter columns (length n_params) of a ScaledParams."""
        x = np.zeros(self.n_params)
        x[self.U] = np.asarray(theta.U, dtype=float).reshape(-1)
        x[self.a] = theta.a
        if self.has_rho:
            x[self.rho] = theta.rho
        if self.has_c:
            x[self.c] = theta.c
        return x


@dataclass(frozen=True, eq=False)
class CellProblem:
    """One cell's convex program in arrays, shared by the cell solver, the local-minimum
    certificates and the outer approximation.

    minimise  objective_scale * (cost . x + 1/2 x^T hessian x + offset)   (= the risk)
    s.t.      row_lower <= A x <= row_upper,   col_lower <= x <= col_upper.

    Rows ``cell_rows`` (the first ones) are the signed cell constraints, each of the form
    (A x)_r >= 0 (row_lower 0, row_upper inf): a margin variable eps enters as A x - eps >= 0.
    Row r is sample ``row_sample[r]``, unit ``row_unit[r]``, side ``row_side[r]`` (+1: the lower
    piece bound g >= rho t, -1: the upper bound g <= rho t) at breakpoint ``row_breakpoint[r]``.
    The remaining rows are the loss epigraph (LP losses).  f = phi @ x[:n_params].
    """

    layout: CellLayout
    col_lower: np.ndarray
    col_upper: np.ndarray
    matrix: np.ndarray  # dense constraint matrix (n_rows x n_cols); `A` is its CSR form
    row_lower: np.ndarray
    row_upper: np.ndarray
    cost: np.ndarray
    hessian: np.ndarray | None  # dense symmetric (n_cols x n_cols), squared loss only
    offset: float
    objective_scale: float
    phi: np.ndarray  # (n, n_params)
    y: np.ndarray
    cell_rows: slice
    row_sample: np.ndarray
    row_unit: np.ndarray
    row_side: np.ndarray
    row_breakpoint: np.ndarray

    @cached_property
    def A(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.csr[2], self.csr[1], self.csr[0]), shape=self.matrix.shape)

    @cached_property
    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr, indices, values) of the constraint matrix, int32, ready for HiGHS."""
        return _csr_arrays(self.matrix)

    @property
    def cell_matrix(self) -> np.ndarray:
        """Dense signed cell rows restricted to the parameter columns: G x[:n_params] >= 0."""
        return self.matrix[self.cell_rows, : self.layout.n_params]

    @cached_property
    def parameter_constraints(self) -> tuple[np.ndarray, np.ndarray]:
        """All constraints on the parameter columns as G x >= h: the cell rows, then the lower and
        the upper box rows of the bounded columns."""
        p = self.layout.n_params
        lo, hi = self.col_lower[:p], self.col_upper[:p]
        boxed = np.flatnonzero(np.isfinite(hi))
        eye = np.eye(p)[boxed]
        G = np.vstack([self.cell_matrix, eye, -eye])
        h = np.concatenate([np.zeros(self.cell_rows.stop), lo[boxed], -hi[boxed]])
        return G, h

    def fitted(self, x: np.ndarray) -> np.ndarray:
        return self.phi @ np.asarray(x)[: self.layout.n_params]


class _Builder:
    """Precomputes everything that depends only on the data, then builds cells vectorised."""

    def __init__(self, X, y, activation: Activation, loss: Loss, box: Box, *, output_bias: bool):
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float).reshape(-1)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise MilplandError(f"data: X must be (n, d) and y (n,), got shapes {X.shape} and {y.shape}")
        if loss.kind not in LOSS_KINDS:
            raise MilplandError(f"loss.kind: unknown loss {loss.kind!r}")
        self.X, self.y, self.act, self.loss, self.box = X, y, activation, loss, box
        self.output_bias = bool(output_bias)
        self.n, self.d = X.shape
        self.w = float(loss.weight(self.n))
        self.alpha = np.asarray(activation.slopes, dtype=float)
        self.beta = np.asarray(activation.intercepts, dtype=float)
        K = activation.n_pieces
        self.K = K
        # t_lo[k], t_hi[k]: piece bounds (+-inf at the ends)
        self.t_lo = np.array([activation.lower(k) for k in range(K)], dtype=float)
        self.t_hi = np.array([activation.upper(k) for k in range(K)], dtype=float)
        self.homogeneous = activation.homogeneous
        self.trivial = _trivial_risk(y, loss, self.w, output_bias)
        # Objective scale: the risk of the best constant, always feasible (theta~ = 0), so the
        # scaled objective of the cell optimum lies in [0, 1] (DESIGN §4: HiGHS' absolute tolerances).
        self.scale = self.trivial if self.trivial > 0 else max(self.w, 1e-300)
        # Relative gaps are taken against max(risk, risk_floor): near-perfect fits have risks at
        # rounding level, where only an absolute gap (a 1e-15 fraction of the scale) makes sense.
        self.risk_floor = 1e-6 * self.scale
        self._layouts: dict[int, CellLayout] = {}
        self._c_bounds: dict[int, float] = {}

    def layout(self, m: int) -> CellLayout:
        if m not in self._layouts:
            self._layouts[m] = CellLayout(
                n=self.n, m=m, d=self.d, has_rho=not self.homogeneous, has_c=self.output_bias,
                has_t=self.loss.kind != "squared",
            )
        return self._layouts[m]

    def check(self, cell: Cell) -> None:
        if cell.pattern.shape[0] != self.n:
            raise MilplandError(f"cell.pattern: has {cell.pattern.shape[0]} rows but the data have {self.n} samples")
        if cell.pattern.min(initial=0) < 0 or cell.pattern.max(initial=0) >= self.K:
            raise MilplandError(f"cell.pattern: piece indices must lie in 0..{self.K - 1} for {self.act.name}")

    def coefficients(self, cell: Cell) -> tuple[np.ndarray, np.ndarray]:
        """S_ij = s_j alpha_{k_ij} (coefficient of g_ij in f_i) and T_ij = s_j beta_{k_ij} (of rho_j)."""
        return cell.signs * self.alpha[cell.pattern], cell.signs * self.beta[cell.pattern]

    def phi(self, cell: Cell, lay: CellLayout) -> np.ndarray:
        """f = Phi x: Phi[i, U_j] = S_ij x_i, Phi[i, a_j] = S_ij, Phi[i, rho_j] = T_ij, Phi[i, c] = 1."""
        S, T = self.coefficients(cell)
        n, m, d = self.n, lay.m, self.d
        phi = np.zeros((n, lay.n_params))
        phi[:, lay.U] = (S[:, :, None] * self.X[:, None, :]).reshape(n, m * d)
        phi[:, lay.a] = S
        if lay.has_rho:
            phi[:, lay.rho] = T
        if lay.has_c:
            phi[:, lay.c] = 1.0
        return phi

    def cell_rows(self, cell: Cell, lay: CellLayout):
        """Dense signed cell rows G (G x >= 0) and their (sample, unit, side, breakpoint)."""
        d = self.d
        k = cell.pattern
        lo, hi = self.t_lo[k], self.t_hi[k]  # (n, m)
        # side +1: g - rho t_lo >= 0 (exists when t_lo finite); side -1: rho t_hi - g >= 0.
        exists = np.stack([np.isfinite(lo), np.isfinite(hi)], axis=2)  # (n, m, 2)
        ii, jj, ss = np.nonzero(exists)  # row-major: ordered by (sample, unit, side)
        side = np.where(ss == 0, 1.0, -1.0)
        tb = np.where(ss == 0, lo[ii, jj], hi[ii, jj])
        R = ii.shape[0]
        G = np.zeros((R, lay.n_params))
        rows = np.arange(R)
        G[rows[:, None], jj[:, None] * d + np.arange(d)[None, :]] = side[:, None] * self.X[ii]
        G[rows, lay.a.start + jj] = side
        if lay.has_rho:
            G[rows, lay.rho.start + jj] = -side * tb
        return G, ii, jj, side, tb

    def bounds(self, lay: CellLayout) -> tuple[np.ndarray, np.ndarray]:
        lo = np.full(lay.n_cols, -HIGHS_INF)
        hi = np.full(lay.n_cols, HIGHS_INF)
        B, P = float(self.box.weight), float(self.box.output)
        lo[: lay.a.stop], hi[: lay.a.stop] = -B, B
        if lay.has_rho:
            lo[lay.rho], hi[lay.rho] = 0.0, P
        if lay.has_t and self.loss.kind == "hinge":
            lo[lay.t] = 0.0
        return lo, hi

    def c_bound(self, m: int) -> float:
        if m not in self._c_bounds:
            self._c_bounds[m] = self._c_bound(m)
        return self._c_bounds[m]

    def _c_bound(self, m: int) -> float:
        """|c| of some optimal point is at most this (used by the Lagrangian bound for the free c).

        Squared / absolute: an optimal c is a (weighted) mean / median of y_i - rest_i; hinge: an
        optimal c lies in [-1 - R, 1 + R]; with |rest_i| <= R from the box.
        """
        xs = float(np.max(np.sum(np.abs(self.X), axis=1)))
        R = m * (np.max(np.abs(self.alpha)) * self.box.weight * (xs + 1.0))
        if not self.homogeneous:
            R += m * np.max(np.abs(self.beta)) * self.box.output
        return float(max(np.max(np.abs(self.y)), 1.0) + R + 1.0)

    def build(self, cell: Cell) -> CellProblem:
        self.check(cell)
        lay = self.layout(cell.width)
        n, p = self.n, lay.n_params
        phi = self.phi(cell, lay)
        G, ii, jj, side, tb = self.cell_rows(cell, lay)
        R = G.shape[0]
        y, ws = self.y, self.w / self.scale
        col_lower, col_upper = self.bounds(lay)
        cost = np.zeros(lay.n_cols)
        hessian = None
        offset = 0.0
        if self.loss.kind == "squared":
            # w/s ||Phi x - y||^2 = 1/2 x^T (2 w/s Phi^T Phi) x - 2 w/s (Phi^T y) . x + w/s y.y
            A = G
            row_lower, row_upper = np.zeros(R), np.full(R, HIGHS_INF)
            hessian = 2.0 * ws * (phi.T @ phi)
            cost[:p] = -2.0 * ws * (phi.T @ y)
            offset = ws * float(y @ y)
        else:
            cost[lay.t] = ws
            eye = np.eye(n)
            if self.loss.kind == "absolute":
                # t_i - f_i >= -y_i  and  t_i + f_i >= y_i
                E = np.block([[-phi, eye], [phi, eye]])
                e_lo = np.concatenate([-y, y])
            else:
                # t_i + y_i f_i >= 1  (t_i >= 0 is a column bound)
                E = np.hstack([y[:, None] * phi, eye])
                e_lo = np.ones(n)
            A = np.vstack([np.hstack([G, np.zeros((R, n))]), E])
            row_lower = np.concatenate([np.zeros(R), e_lo])
            row_upper = np.full(A.shape[0], HIGHS_INF)
        return CellProblem(
            layout=lay, col_lower=col_lower, col_upper=col_upper, matrix=A,
            row_lower=row_lower, row_upper=row_upper, cost=cost, hessian=hessian, offset=offset,
            objective_scale=self.scale, phi=phi, y=y, cell_rows=slice(0, R), row_sample=ii,
            row_unit=jj, row_side=side, row_breakpoint=tb,
        )


def cell_problem(X, y, activation: Activation, loss: Loss, box: Box, cell: Cell, *, output_bias: bool = True) -> CellProblem:
    """The arrays of one cell's convex program (see `CellProblem`)."""
    return _Builder(X, y, activation, loss, box, output_bias=output_bias).build(cell)


def cell_outputs(X: np.ndarray, act: Activation, cell: Cell, theta: ScaledParams) -> np.ndarray:
    """f_i = c + sum_j s_j (alpha_{k_ij} g_ij + beta_{k_ij} rho_j): the network output in the
    closed cell, computed from theta with numpy (equals theta.forward wherever rho > 0)."""
    G = theta.scaled_pre_activations(np.asarray(X, dtype=float))
    alpha = np.asarray(act.slopes)[cell.pattern]
    beta = np.asarray(act.intercepts)[cell.pattern]
    rho = np.zeros_like(theta.a) if act.homogeneous else np.asarray(theta.rho, dtype=float)
    return (alpha * G + beta * rho[None, :]) @ cell.signs + float(theta.c)


def _csr_arrays(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR (indptr, indices, values) of a dense matrix, without scipy's per-call overhead."""
    rows, cols = np.nonzero(A)
    indptr = np.zeros(A.shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=A.shape[0]), out=indptr[1:])
    return indptr, cols.astype(np.int32), A[rows, cols]


def _trivial_risk(y: np.ndarray, loss: Loss, w: float, output_bias: bool) -> float:
    """Risk of the best constant output (theta~ = 0 lies in every closed cell)."""
    if not output_bias:
        return loss.risk(np.zeros_like(y), y)
    if loss.kind == "squared":
        c = float(np.mean(y))
    elif loss.kind == "absolute":
        c = float(np.median(y))
    elif loss.kind == "logistic" and 0.0 < np.mean(y > 0) < 1.0:  # the log-odds of the positive labels
        share = float(np.mean(y > 0))
        c = float(np.log(share / (1.0 - share)))
    else:
        c = min((-1.0, 1.0), key=lambda v: loss.risk(np.full_like(y, v), y))
    return loss.risk(np.full_like(y, c), y)


# ----------------------------------------------------------------------------------------------
# Verification: active-set polish and the Lagrangian bound
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Polish:
    x: np.ndarray
    lam: np.ndarray  # multipliers of all rows of G (zero outside the final working set)
    steps: int
    converged: bool


def _nullspace(M: np.ndarray, p: int) -> np.ndarray:
    if M.shape[0] == 0:
        return np.eye(p)
    # with at least p rows the thin SVD already holds all p right singular vectors, and is far cheaper
    _, s, vt = np.linalg.svd(M, full_matrices=M.shape[0] < p)
    rank = int(np.sum(s > 1e-10 * max(1.0, s[0])))
    return vt[rank:].T


def _polish_least_squares(phi, target, G, h, x0, *, max_steps: int) -> _Polish:
    """Primal active-set method for  min ||phi x - target||^2  s.t.  G x >= h, from x0.

    Working set W = rows active at x0 (x0 is first moved exactly onto them).  Each step solves
    the equality-constrained least squares on W exactly (null space of G_W, minimum-norm step, so
    directions the objective ignores do not move) and stops at the first blocking row, which
    joins W.  At the minimiser on W, the NNLS multipliers lam >= 0 of grad = G_W^T lam leave a
    residual r; r = 0 is the KKT point.  Otherwise -r is a feasible descent direction (NNLS
    optimality: G_W r <= 0 and grad.r = |r|^2): take the exact line-search step along it
    (ratio test on the other rows) and keep in W only the rows it does not leave.  This
    projected step, unlike dropping rows one by one, cannot cycle at degenerate points such as
    theta~ = 0, where every cell row is active: the risk decreases strictly.
    """
    p = phi.shape[1]
    norms = np.linalg.norm(G, axis=1)
    norms[norms == 0] = 1.0
    Gn, hn = G / norms[:, None], h / norms
    x = np.array(x0, dtype=float)
    xs = max(1.0, float(np.max(np.abs(x), initial=0.0)))
    W = (Gn @ x - hn) <= 1e-7 * xs
    if W.any():  # land exactly on the working set (HiGHS's point is feasible only within 1e-7)
        x = x + np.linalg.lstsq(Gn[W], hn[W] - Gn[W] @ x, rcond=None)[0]
    phin = np.linalg.norm(phi)
    lam_w = np.zeros(0)
    for step in range(max_steps):
        N = _nullspace(Gn[W], p)
        pdir = np.zeros(p)
        if N.shape[1]:
            z = np.linalg.lstsq(phi @ N, target - phi @ x, rcond=None)[0]
            pdir = N @ z
        alpha, k = _ratio_test(Gn, hn, x, pdir, W)
        if alpha < 1.0:
            x = x + alpha * pdir
            W[k] = True
            continue
        x = x + pdir
        W |= (Gn @ x - hn) <= 1e-12 * xs  # rows the full step happened to land on are active too
        grad = 2.0 * phi.T @ (phi @ x - target)
        GW = Gn[W]
        if GW.shape[0]:
            lam_w = np.linalg.lstsq(GW.T, grad, rcond=None)[0]  # the usual, non-degenerate case
            if lam_w.min() < 0.0:
                lam_w = bvls_active_set(GW.T, grad, np.full(GW.shape[0], np.inf))[0]
            res = grad - GW.T @ lam_w
        else:
            lam_w, res = np.zeros(0), grad
        # rounding level of grad: the products in phi x are of size |phi| |x|
        gscale = 2.0 * phin * (phin * float(np.max(np.abs(x), initial=0.0)) + np.linalg.norm(target) + 1.0)
        if np.max(np.abs(res), initial=0.0) <= 1e-13 * gscale:
            return _Polish(x, _scatter(lam_w, W, norms), step + 1, True)
        d = -res
        curvature = 2.0 * float(np.sum((phi @ d) ** 2))
        t = float(res @ res) / curvature if curvature > 0 else np.inf
        alpha, k = _ratio_test(Gn, hn, x, d, W, limit=t)
        if not np.isfinite(alpha) or alpha <= 0.0:
            break
        x = x + alpha * d
        W &= (Gn @ d) <= 1e-12 * np.linalg.norm(d)
        if k >= 0:
            W[k] = True
    return _Polish(x, np.zeros(G.shape[0]), max_steps, False)


def _ratio_test(Gn, hn, x, d, W, *, limit: float = 1.0) -> tuple[float, int]:
    """Largest step <= limit along d keeping the rows outside W feasible, and the blocking row (or -1)."""
    gd = Gn @ d
    blocking = (~W) & (gd < -1e-13 * max(1.0, float(np.linalg.norm(d))))
    if not blocking.any():
        return limit, -1
    idx = np.flatnonzero(blocking)
    ratios = np.maximum(Gn[idx] @ x - hn[idx], 0.0) / -gd[idx]
    k = int(np.argmin(ratios))
    if ratios[k] < limit:
        return float(ratios[k]), int(idx[k])
    return limit, -1


def _scatter(lam_w: np.ndarray, W: np.ndarray, norms: np.ndarray) -> np.ndarray:
    lam = np.zeros(W.shape[0])
    lam[W] = lam_w / norms[W]  # multipliers of the unnormalised rows
    return lam


def _initial_mu(loss: Loss, y: np.ndarray, f: np.ndarray, duals: np.ndarray | None) -> np.ndarray:
    """Slopes of affine minorants  loss_i(f) >= mu_i f + nu_i(mu_i):

    squared: any mu (tangent at f = y + mu/2, nu = -mu^2/4 - mu y); the tangent at f is mu = 2 (f - y).
    absolute: mu in [-1, 1], nu = -mu y.   hinge: mu = -pi y with pi in [0, 1], nu = pi.
    ``duals`` are the LP's epigraph multipliers in loss units.
    """
    if loss.kind == "squared":
        return 2.0 * (f - y)
    if loss.kind == "absolute":
        return np.clip(duals, -1.0, 1.0)
    return -np.clip(duals, 0.0, 1.0) * y


def _clip_mu(loss: Loss, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    if loss.kind == "absolute":
        return np.clip(mu, -1.0, 1.0)
    if loss.kind == "hinge":
        return -np.clip(-mu * y, 0.0, 1.0) * y
    return mu


def _movable_mu(loss: Loss, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Samples whose mu can be refined without leaving its range."""
    if loss.kind == "squared":
        return np.ones(mu.shape[0], dtype=bool)
    if loss.kind == "absolute":
        return np.abs(mu) < 1.0 - 1e-12
    pi = -mu * y
    return (pi > 1e-12) & (pi < 1.0 - 1e-12)


def _minorant_gap(loss: Loss, y: np.ndarray, f: np.ndarray, mu: np.ndarray) -> float:
    """sum_i loss_i(f_i) - (mu_i f_i + nu_i) >= 0, in a form without cancellation."""
    if loss.kind == "squared":
        return float(np.sum((f - y - 0.5 * mu) ** 2))
    if loss.kind == "absolute":
        return float(np.sum(np.abs(f - y) - mu * (f - y)))
    pi = -mu * y
    return float(np.sum(np.maximum(0.0, 1.0 - y * f) - pi * (1.0 - y * f)))


def _lagrangian_gap(prob: CellProblem, x: np.ndarray, f: np.ndarray, mu, lam, c_bound: float, loss: Loss, *,
                    good_enough: float = 0.0) -> float:
    """risk(x)/w minus a Lagrangian lower bound on the cell optimum, in loss units (sum of losses).

    For lam >= 0 and minorant slopes mu (see `_initial_mu`), r = Phi^T mu - G^T lam, and any theta
    in the cell and the box:  sum_i loss_i >= sum_i (mu_i f_i + nu_i) >= sum nu + r.theta  (since
    lam.G theta >= 0), so  R*/w >= sum nu + min_box r.theta.  The difference to risk(x)/w is

        gap = sum_i [loss_i(f_i) - mu_i f_i - nu_i] + [r.x - min_box r.theta] + lam.(G x),

    every bracket >= 0.  The box term multiplies r by the box width, so (mu, lam) are refined by
    least squares (r in extended precision) until r vanishes on the coordinates strictly inside
    the box up to rounding; the smallest gap over the candidates is returned.
    """
    lay = prob.layout
    p = lay.n_params
    G = prob.cell_matrix
    y = prob.y
    x = np.asarray(x, dtype=float)[:p]
    lo, hi = prob.col_lower[:p].copy(), prob.col_upper[:p].copy()
    if lay.has_c:
        lo[lay.c], hi[lay.c] = -c_bound, c_bound
    Gx = G @ x
    lam = np.maximum(lam, 0.0)
    best = _gap(prob.phi, G, loss, y, f, mu, lam, x, Gx, lo, hi)
    if best <= good_enough:
        return best
    xs = max(1.0, float(np.max(np.abs(x), initial=0.0)))
    active = np.abs(Gx) <= 1e-9 * xs * np.linalg.norm(G, axis=1)
    free = (x > lo) & (x < hi)
    movable = _movable_mu(loss, y, mu)
    if not free.any() or not (active.any() or movable.any()):
        return best
    M = np.hstack([prob.phi[movable][:, free].T, -G[active][:, free].T])
    for _ in range(2):
        r = _residual_ld(prob.phi, G, mu, lam)
        step = np.linalg.lstsq(M, -r[free].astype(float), rcond=None)[0]
        mu, lam = mu.copy(), lam.copy()
        mu[movable] += step[: int(movable.sum())]
        lam[active] = np.maximum(lam[active] + step[int(movable.sum()):], 0.0)
        mu = _clip_mu(loss, y, mu)
        best = min(best, _gap(prob.phi, G, loss, y, f, mu, lam, x, Gx, lo, hi))
        if best <= good_enough:
            break
    return best


def _gap(phi, G, loss, y, f, mu, lam, x, Gx, lo, hi) -> float:
    ld = np.longdouble
    r = _residual_ld(phi, G, mu, lam)
    box = r @ x.astype(ld) - np.sum(np.minimum(r * lo.astype(ld), r * hi.astype(ld)))
    return float(_minorant_gap(loss, y, f, mu) + box + lam.astype(ld) @ Gx.astype(ld))


def _residual_ld(phi, G, mu, lam) -> np.ndarray:
    """r = Phi^T mu - G^T lam in extended precision (the inputs are exact floats)."""
    ld = np.longdouble
    return phi.T.astype(ld) @ mu.astype(ld) - G.T.astype(ld) @ lam.astype(ld)


# ----------------------------------------------------------------------------------------------
# The solver
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CellResult:
    status: str  # "optimal" | "infeasible" | "time_limit" | "error" | "bounded" (only lower_bound is certified)
    risk: float  # numpy risk of theta, in the loss's reduction (inf if no point)
    theta: ScaledParams | None
    fitted: np.ndarray | None  # f_i at theta, computed with numpy
    box_active: bool  # every optimal point found touches the box (|U|, |a| = weight or rho = output)
    seconds: float
    kkt_residual: float = float("nan")  # certified relative gap (risk - lower_bound) / risk
    lower_bound: float = float("nan")  # Lagrangian lower bound on the cell optimum (numpy)
    max_violation: float = float("nan")  # largest cell-row violation of theta (relative distance)
    method: str = ""  # how theta was obtained, e.g. "highs-qp+polish"
    polish_steps: int = 0

    @property
    def verified(self) -> bool:
        return self.status == "optimal"

    def to_row(self) -> dict:
        return {
            "status": self.status, "risk": self.risk, "lower_bound": self.lower_bound,
            "kkt_residual": self.kkt_residual, "box_active": self.box_active,
            "max_violation": self.max_violation, "seconds": self.seconds, "method": self.method,
            "polish_steps": self.polish_steps,
        }


class CellSolver:
    """Solves cell problems with one reused HiGHS object and verifies every answer with numpy."""

    def __init__(self, X, y, activation: Activation, loss: Loss, box: Box, *, output_bias: bool = True,
                 time_limit: float = 10.0, kkt_tol: float = KKT_TOL):
        if not time_limit > 0:
            raise MilplandError(f"time_limit: must be positive, got {time_limit}")
        if loss.kind == "logistic":  # no LP/QP: its cells are exponential-cone programs (cells/logistic.py)
            raise MilplandError(LOGISTIC_NEEDS_DECAY)
        self.builder = _Builder(X, y, activation, loss, box, output_bias=output_bias)
        self.time_limit = float(time_limit)
        self.kkt_tol = float(kkt_tol)
        self._highs = self._new_highs()

    # -- HiGHS plumbing --------------------------------------------------------------------------

    @staticmethod
    def _new_highs() -> highspy.Highs:
        h = highspy.Highs()
        for name, value in (("output_flag", False), ("threads", 1), ("presolve", "off"),
                            ("qp_regularization_value", 0.0), ("primal_feasibility_tolerance", 1e-9),
                            ("dual_feasibility_tolerance", 1e-9)):
            h.setOptionValue(name, value)
        return h

    def _run(self, prob: CellProblem, *, limit: float, regularization: float = 0.0):
        """Pass the model in bulk and run; returns (model status, column values, row duals)."""
        h = self._highs
        lay = prob.layout
        indptr, indices, values = prob.csr
        n_rows = prob.matrix.shape[0]
        integrality = np.zeros(lay.n_cols, dtype=np.int32)  # an empty array makes passModel fail
        if prob.hessian is None:
            st = h.passModel(lay.n_cols, n_rows, values.shape[0], 2, 1, prob.offset, prob.cost, prob.col_lower,
                             prob.col_upper, prob.row_lower, prob.row_upper, indptr, indices, values, integrality)
        else:
            L = np.tril(prob.hessian).T  # lower triangle, column-wise = rows of its transpose
            qi, qj = np.nonzero(L)
            qstart = np.zeros(lay.n_cols + 1, dtype=np.int32)
            np.cumsum(np.bincount(qi, minlength=lay.n_cols), out=qstart[1:])
            st = h.passModel(lay.n_cols, n_rows, values.shape[0], qi.shape[0], 2, 1, 1, prob.offset, prob.cost,
                             prob.col_lower, prob.col_upper, prob.row_lower, prob.row_upper, indptr, indices,
                             values, qstart, qj.astype(np.int32), L[qi, qj], integrality)
        if st == highspy.HighsStatus.kError:
            return "error", None, None
        h.setOptionValue("qp_regularization_value", float(regularization))
        # time_limit is cumulative on a reused object (DESIGN §4): set it relative to the run clock.
        h.setOptionValue("time_limit", float(h.getRunTime() + limit))
        h.run()
        ms = h.getModelStatus()
        sol = h.getSolution()
        if ms == highspy.HighsModelStatus.kOptimal:
            return "optimal", np.array(sol.col_value), np.array(sol.row_dual)
        if ms == highspy.HighsModelStatus.kInfeasible:
            return "infeasible", None, None
        if ms == highspy.HighsModelStatus.kTimeLimit:
            ok = sol.value_valid and len(sol.col_value) == lay.n_cols
            return "time_limit", np.array(sol.col_value) if ok else None, None
        return "error", None, None

    # -- solving ----------------------------------------------------------------------------------

    def solve(self, cell: Cell, *, start: ScaledParams | None = None) -> CellResult:
        """The cell's optimum, verified.  ``start`` (squared loss): a point of the cell believed
        optimal, e.g. a branch-and-bound leaf's relaxation; the active-set polish starts there and,
        when its answer passes the same verification, HiGHS is not run."""
        t0 = time.perf_counter()
        prob = self.builder.build(cell)
        try:
            if prob.hessian is None:
                res = self._solve_lp(cell, prob)
            else:
                res = self._solve_qp(cell, prob, start)
        except MilplandError:
            raise
        except Exception as exc:  # a solver failure must not kill a batch of cells
            self._highs = self._new_highs()
            return CellResult("error", float("inf"), None, None, False, time.perf_counter() - t0,
                              method=f"exception: {type(exc).__name__}: {exc}")
        return _with_seconds(res, time.perf_counter() - t0)

    def solve_many(self, cells: Iterable[Cell]) -> list[CellResult]:
        return [self.solve(cell) for cell in cells]

    def _solve_qp(self, cell: Cell, prob: CellProblem, start: ScaledParams | None = None) -> CellResult:
        b = self.builder
        p = prob.layout.n_params
        G, h = prob.parameter_constraints
        if start is not None:
            pol = _polish_least_squares(prob.phi, b.y, G, h, prob.layout.vector(start), max_steps=4 * G.shape[0] + 20)
            res = self._finish(cell, prob, pol.x, pol.lam[: prob.cell_rows.stop], None, "start+polish", pol.steps)
            if res.status == "optimal":
                return res
        status, x, _ = self._run(prob, limit=min(self.time_limit, REG0_TIME_CAP))
        method = "highs-qp"
        if x is None:
            # unregularised QP stalled (DESIGN §4): the regularised optimum is close, polish fixes it
            status, x, _ = self._run(prob, limit=self.time_limit, regularization=1e-7)
            method = "highs-qp-regularised"
        if x is None:
            x = np.zeros(p)  # theta~ = 0 lies in every closed cell: polish from there
            method = "zero"
        pol = _polish_least_squares(prob.phi, b.y, G, h, x[:p], max_steps=4 * G.shape[0] + 20)
        lam_cell = pol.lam[: prob.cell_rows.stop]
        res = self._finish(cell, prob, pol.x, lam_cell, None, method + "+polish", pol.steps)
        if res.status != "optimal" and method == "highs-qp":
            # HiGHS's point may have sent the polish into a wrong face: retry from theta~ = 0
            pol = _polish_least_squares(prob.phi, b.y, G, h, np.zeros(p), max_steps=4 * G.shape[0] + 20)
            lam_cell = pol.lam[: prob.cell_rows.stop]
            res2 = self._finish(cell, prob, pol.x, lam_cell, None, "zero+polish", pol.steps)
            if res2.status == "optimal" or res2.kkt_residual < res.kkt_residual:
                res = res2
        if res.status != "optimal" and status == "time_limit":
            res = replace(res, status="time_limit")
        return res

    def _solve_lp(self, cell: Cell, prob: CellProblem) -> CellResult:
        status, x, duals = self._run(prob, limit=self.time_limit)
        if x is None:
            return CellResult("time_limit" if status == "time_limit" else "error", float("inf"), None, None,
                              False, 0.0, method=f"highs-lp: {status}")
        R = prob.cell_rows.stop
        if duals is None:  # time limit with a feasible point: no multipliers, bound only trivial
            lam, mu_duals = np.zeros(R), np.zeros(self.builder.n)
        else:
            ws = self.builder.w / prob.objective_scale  # duals are in scaled objective units
            lam = duals[:R] / ws
            e = duals[R:] / ws
            mu_duals = e[: self.builder.n] - e[self.builder.n:] if self.builder.loss.kind == "absolute" else e
        res = self._finish(cell, prob, x[: prob.layout.n_params], lam, mu_duals, "highs-lp", 0)
        if res.status != "optimal" and status == "time_limit":
            res = replace(res, status="time_limit")
        return res

    def _finish(self, cell, prob, x, lam_cell, lp_duals, method, steps) -> CellResult:
        """Clip to the box, evaluate with numpy, bound with the multipliers, check the box."""
        b = self.builder
        lay = prob.layout
        p = lay.n_params
        x = np.clip(x, prob.col_lower[:p], prob.col_upper[:p])
        theta = lay.theta(x, cell.signs)
        fitted = cell_outputs(b.X, b.act, cell, theta)
        risk = b.loss.risk(fitted, b.y)
        mu = _initial_mu(b.loss, b.y, fitted, lp_duals)
        noise = _risk_noise(b.loss, b.w, prob.phi, x, fitted, b.y)
        good_enough = 1e-3 * self.kkt_tol * max(risk, b.risk_floor, 1e9 * noise) / b.w
        gap = b.w * _lagrangian_gap(prob, x, fitted, mu, lam_cell, b.c_bound(lay.m), b.loss, good_enough=good_enough)
        lower = risk - max(gap, 0.0)
        violation = _violation(prob, x)
        box_active = _box_active(prob, x)
        if box_active:
            moved, how = self._shrink(cell, prob, x), "+shrink"
            if moved is None:
                moved, how = self._move_inside_box(cell, prob, x, fitted), "+inside-lp"
            if moved is not None:
                x2, theta2, fitted2, risk2 = moved
                if risk2 <= risk + 1e-12 * max(risk, 1e-3 * b.scale) and _violation(prob, x2) <= FEAS_TOL:
                    x, theta, fitted, risk, box_active = x2, theta2, fitted2, risk2, False
                    violation = _violation(prob, x)
                    method += how
        # The Lagrangian bound sums n terms of the data's size: a gap below its rounding is no gap
        # (exact fits reached risk 1e-33 with bound -4e-16 and were wrongly rejected).
        magnitude = b.scale + b.w * float(np.sum(b.y**2 + np.abs(b.y) + 1.0))  # scale may be ~0 (constant y)
        rounding = 16.0 * len(b.y) * np.finfo(float).eps * magnitude
        kkt = max(risk - lower - rounding, 0.0) / max(risk, b.risk_floor, 1e9 * noise)
        ok = kkt <= self.kkt_tol and violation <= FEAS_TOL
        return CellResult("optimal" if ok else "error", risk, theta, fitted, box_active, 0.0,
                          kkt_residual=kkt, lower_bound=lower, max_violation=violation, method=method,
                          polish_steps=steps)

    def _shrink(self, cell, prob, x):
        """Cheap first try before `_move_inside_box`: walk towards the minimum-norm point of
        {theta : Phi theta = Phi x, active cell rows kept} (directions the risk ignores, e.g. a
        dead unit's weights that an LP vertex left at the box), stopping at blocking rows."""
        b = self.builder
        lay = prob.layout
        p = lay.n_params
        G, h = prob.parameter_constraints
        R = prob.cell_rows.stop
        norms = np.linalg.norm(G, axis=1)
        norms[norms == 0] = 1.0
        Gn, hn = G / norms[:, None], h / norms
        xs = max(1.0, float(np.max(np.abs(x))))
        W = np.zeros(G.shape[0], dtype=bool)
        W[:R] = (Gn[:R] @ x - hn[:R]) <= 1e-12 * xs
        for _ in range(4):
            N = _nullspace(np.vstack([prob.phi, Gn[W]]), p)
            if N.shape[1] == 0:
                return None
            d = -N @ (N.T @ x)
            gd = Gn @ d
            blocking = (~W) & (gd < -1e-13 * max(1.0, np.linalg.norm(d)))
            alpha, k = 1.0, -1
            if blocking.any():
                idx = np.flatnonzero(blocking)
                ratios = np.maximum(Gn[idx] @ x - hn[idx], 0.0) / -gd[idx]
                kk = int(np.argmin(ratios))
                if ratios[kk] < 1.0:
                    alpha, k = float(ratios[kk]), int(idx[kk])
            x = np.clip(x + alpha * d, prob.col_lower[:p], prob.col_upper[:p])
            if not _box_active(prob, x):
                theta = lay.theta(x, cell.signs)
                fitted = cell_outputs(b.X, b.act, cell, theta)
                return x, theta, fitted, b.loss.risk(fitted, b.y)
            if k < 0 or k >= R:  # reached the minimum-norm point, or blocked by the box itself
                return None
            W[k] = True
        return None

    def _move_inside_box(self, cell, prob, x, fitted):
        """Is the box binding?  Among the points with the same fitted values (hence the same risk),
        find one of least box usage: min tau s.t. cell rows, Phi theta = f, |U|,|a| <= tau B,
        rho <= tau P.  tau < 1 means an optimal point strictly inside the box exists: the returned
        point moves there (re-polished onto Phi theta = f exactly)."""
        b = self.builder
        lay = prob.layout
        p = lay.n_params
        G = prob.cell_matrix
        R = G.shape[0]
        n = b.n
        lo, hi = prob.col_lower[:p], prob.col_upper[:p]
        boxed = np.flatnonzero(np.isfinite(hi))
        nb = boxed.shape[0]
        # columns: theta (p), tau; rows: cell (R), Phi theta = f (n), theta_k - tau hi_k <= 0, theta_k - tau lo_k >= 0
        up = np.zeros((nb, p + 1))
        up[np.arange(nb), boxed] = 1.0
        up[:, p] = -hi[boxed]
        dn = np.zeros((nb, p + 1))
        dn[np.arange(nb), boxed] = 1.0
        dn[:, p] = -lo[boxed]
        M = np.vstack([np.hstack([G, np.zeros((R, 1))]), np.hstack([prob.phi, np.zeros((n, 1))]), up, dn])
        rl = np.concatenate([np.zeros(R), fitted, np.full(nb, -HIGHS_INF), np.zeros(nb)])
        ru = np.concatenate([np.full(R, HIGHS_INF), fitted, np.zeros(nb), np.full(nb, HIGHS_INF)])
        cl = np.concatenate([np.full(p, -HIGHS_INF), [0.0]])
        cu = np.concatenate([np.full(p, HIGHS_INF), [1.0]])
        cost = np.zeros(p + 1)
        cost[p] = 1.0
        indptr, indices, values = _csr_arrays(M)
        h = self._highs
        h.passModel(p + 1, M.shape[0], values.shape[0], 2, 1, 0.0, cost, cl, cu, rl, ru, indptr, indices, values,
                    np.zeros(p + 1, dtype=np.int32))
        h.setOptionValue("time_limit", float(h.getRunTime() + self.time_limit))
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        z = np.array(h.getSolution().col_value)
        if z[p] >= 1.0 - 1e-6:
            return None
        # land exactly on Phi theta = f while staying in the cell
        Gfull, hfull = prob.parameter_constraints
        pol = _polish_least_squares(prob.phi, fitted, Gfull, hfull, z[:p], max_steps=4 * Gfull.shape[0] + 20)
        x2 = np.clip(pol.x, lo, hi)
        if _box_active(prob, x2):
            return None
        theta2 = lay.theta(x2, cell.signs)
        fitted2 = cell_outputs(b.X, b.act, cell, theta2)
        return x2, theta2, fitted2, b.loss.risk(fitted2, b.y)


def _risk_noise(loss: Loss, w: float, phi: np.ndarray, x: np.ndarray, f: np.ndarray, y: np.ndarray) -> float:
    """Rounding level of the numpy risk at x: 16 eps * w * sum_i |loss_i'(f_i)| * (|Phi| |x|)_i (16: the
    accumulation over the terms of f and of the gap).  Below 1e9 times this, a risk cannot be known
    to 1e-9 relative, so gaps are measured against it."""
    slope = 2.0 * np.abs(f - y) if loss.kind == "squared" else np.ones_like(f)
    size = np.abs(phi) @ np.abs(x[: phi.shape[1]])
    return float(16.0 * np.finfo(float).eps * w * (slope @ size + np.sum(loss.per_sample(f, y))))


def _violation(prob: CellProblem, x: np.ndarray) -> float:
    """Largest violation of a signed cell row, as a distance relative to max(1, |x|_inf)."""
    G = prob.cell_matrix
    if G.shape[0] == 0:
        return 0.0
    x = np.asarray(x)[: prob.layout.n_params]
    norms = np.linalg.norm(G, axis=1)
    norms[norms == 0] = 1.0
    v = np.max(np.maximum(-(G @ x) / norms, 0.0))
    return float(v / max(1.0, float(np.max(np.abs(x)))))


def _box_active(prob: CellProblem, x: np.ndarray) -> bool:
    p = prob.layout.n_params
    hi = prob.col_upper[:p]
    boxed = np.isfinite(hi)
    # for rho only the upper bound counts (rho = 0 is a unit switched off, not a box effect)
    at = np.abs(x[boxed]) >= hi[boxed] * (1.0 - BOX_ACTIVE_RTOL)
    return bool(np.any(at))


def _with_seconds(res: CellResult, seconds: float) -> CellResult:
    return replace(res, seconds=seconds)
