"""One cell's convex problem with weight decay: a second-order cone program (DESIGN §4d).

For a positively homogeneous activation the objective risk + (lam/2) ||theta||^2, minimised
over the rescalings (w_j, b_j, v_j) -> (a w_j, a b_j, v_j / a) that leave the network unchanged,
is in the scaled weights u_j = |v_j| (w_j, b_j) (signs s_j fixed by the cell)

    F(U, a, c) = w sum_i loss(f_i, y_i) + lam sum_j ||(U_j, a_j)||_2 + (lam/2) c^2
    f_i = c + sum_j s_j alpha_{k_ij} (U_j . x_i + a_j),   cell rows s.t. g_ij on piece k_ij,

and with ``decay_biases = false`` the group is U_j alone and c has no term.  In a cell the
fitted values are linear in (U, a, c), so F is convex: a group-lasso SOCP, solved here with
Clarabel (epigraph t_j >= ||u_j||; absolute and hinge losses with epigraph variables e_i).

The answer is a claim.  The returned value is `Loss.objective` of the balanced ordinary
weights (|v_j| = sqrt(||u_j||): the rescaling that attains the minimum over a), computed with
numpy; the lower bound is recomputed with numpy from multipliers mu (of f = Phi theta) and
nu >= 0 (of the cell rows G theta >= 0), valid for ANY such multipliers:

    F* >= sum_i min_f [w loss_i(f) - mu_i f] + min_{theta in region} [pen(theta) + r . theta],
    r = Phi^T mu - G^T nu,

with the closed forms  min_f w (f - y)^2 - mu f = -mu y - mu^2 / (4 w)  (squared),
-mu y for |mu| <= w (absolute, mu clipped), -mu y for mu y in [-w, 0] (hinge, clipped); per group
min_{||u|| <= rho} lam ||u|| + r_u . u = min(0, (lam - ||r_u||) rho); for a decayed c
min_c (lam/2) c^2 + r_c c = -r_c^2 / (2 lam); for an undecayed part kept in a box |x| <= B,
-B |r_x|.  The region is every point of objective <= F_upper (any feasible value): lam ||u_j|| <=
F_upper bounds each group by rho = F_upper / lam, so the bound holds for the cell's minimum
whenever that minimum is below F_upper -- which is all a global search needs (DESIGN §4d).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import clarabel
import numpy as np
import scipy.sparse as sp
from scipy.special import xlogy

from milpland.cells.problem import Cell, CellResult, _Builder
from milpland.cells.scaled import NEGLIGIBLE_NORM, RHO_LIMIT_SUBSTITUTE, ScaledParams
from milpland.errors import MilplandError
from milpland.instance.activations import Activation
from milpland.instance.losses import Loss
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import Box

SOLVER_TOL = 1e-11  # Clarabel's gap and feasibility tolerances (the objective is scaled to [0, 1])
DECAY_KKT_TOL = 1e-8  # certified relative gap (numpy value - numpy bound) below which a cell counts as solved
BOX_RTOL = 1e-7  # an undecayed part within this relative distance of its box bound is "at the bound"


@dataclass(frozen=True)
class Penalty:
    """Which scaled weights the group-lasso term covers (DESIGN §4d)."""

    lam: float
    decay_biases: bool
    output_bias: bool

    def group_norms(self, U: np.ndarray, a: np.ndarray) -> np.ndarray:
        """||(U_j, a_j)|| with decayed biases, ||U_j|| without."""
        sq = np.sum(U**2, axis=1) + (a**2 if self.decay_biases else 0.0)
        return np.sqrt(sq)

    def value(self, theta: ScaledParams) -> float:
        """lam sum_j ||u_j|| (+ (lam/2) c^2 when the output bias is decayed): the balanced penalty."""
        total = self.lam * float(np.sum(self.group_norms(theta.U, theta.a)))
        if self.decay_biases and self.output_bias:
            total += 0.5 * self.lam * float(theta.c) ** 2
        return total


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) = -p log p - (1 - p) log(1 - p) on [0, 1], with 0 log 0 = 0 (scipy.special.xlogy)."""
    p = np.asarray(p, dtype=float)
    return -(xlogy(p, p) + xlogy(1.0 - p, 1.0 - p))


def logistic_cones(y: np.ndarray, N: int, col_f: int, col_e: int, col_u: int, col_v: int):
    """Clarabel rows (A block, b part, cone) of e_i >= log(1 + exp(-y_i f_i)), written as
    exp(-y_i f_i - e_i) + exp(-e_i) <= 1: two exponential cones per sample (Clarabel's
    K_exp = closure{(x, y, z): y > 0, y exp(x / y) <= z}), (-y_i f_i - e_i, 1, u_i) and (-e_i, 1, v_i);
    the caller adds u_i + v_i <= 1.  Columns: f_i at col_f + i, e_i, u_i, v_i likewise; N columns."""
    out = []
    for i in range(len(y)):
        for col_z, margin in ((col_u, -float(y[i])), (col_v, 0.0)):
            rows = np.zeros((3, N))  # s = b - A x = (margin f_i - e_i, 1, z_i)
            rows[0, col_f + i], rows[0, col_e + i] = -margin, 1.0
            rows[2, col_z + i] = -1.0
            out.append((rows, np.array([0.0, 1.0, 0.0]), clarabel.ExponentialConeT()))
    return out


def clip_multipliers(kind: str, mu: np.ndarray, y: np.ndarray, w: float) -> np.ndarray:
    """mu moved into the domain where min_f [w loss(f) - mu f] is finite: any mu for squared, |mu| <= w
    for absolute, mu y in [-w, 0] for hinge and logistic."""
    if kind == "absolute":
        return np.clip(mu, -w, w)
    if kind in ("hinge", "logistic"):
        return y * np.clip(mu * y, -w, 0.0)
    return np.asarray(mu, dtype=float)


def fitting_term(kind: str, mu: np.ndarray, y: np.ndarray, w: float) -> float:
    """sum_i min_f [w loss(f, y_i) - mu_i f] for mu in the domain (DESIGN §4d): -mu y - mu^2 / (4 w)
    (squared), -mu y (absolute, hinge), w H(p) with p = -mu y / w (logistic)."""
    if kind == "squared":
        return float(np.sum(-mu * y - mu**2 / (4.0 * w)))
    if kind == "logistic":
        return float(np.sum(w * binary_entropy(np.clip(-mu * y / w, 0.0, 1.0))))
    return float(np.sum(-mu * y))


def polish_multipliers(kind: str, mu, nu, phi, G, free: list[int], y, w) -> np.ndarray:
    """mu changed on the samples strictly inside its domain by the least-norm delta that makes
    r = Phi^T mu - G^T nu vanish on the columns `free` (parameters the bound would multiply by a box),
    then clipped back into the domain.  Any result is a valid multiplier; it only has to be better."""
    if not free:
        return mu
    inside = np.ones(len(mu), dtype=bool)
    if kind == "absolute":
        inside = np.abs(mu) < w
    elif kind in ("hinge", "logistic"):
        inside = (mu * y < 0.0) & (mu * y > -w)
    A = phi[np.ix_(inside, free)]  # (k, q)
    if A.size == 0:
        return mu
    residual = phi[:, free].T @ mu - G[:, free].T @ nu
    delta = np.linalg.lstsq(A.T, -residual, rcond=None)[0]  # least norm: A^T delta = -residual
    moved = np.array(mu, dtype=float)
    moved[inside] += delta
    return clip_multipliers(kind, moved, y, w)


def balanced_params(theta: ScaledParams, penalty: Penalty, act: Activation) -> tuple[OneHiddenParams, list[int]]:
    """Ordinary weights with the same outputs whose (lam/2)||theta||^2 equals `Penalty.value`.

    Each unit is balanced, |v_j| = sqrt(||u_j||) (the rescaling that attains min_a, DESIGN §4d).
    Without decayed biases a unit with U_j = 0 but a_j != 0 is a constant s_j sigma(a_j): it is
    folded into the output bias c (undecayed) when there is one; otherwise its infimum penalty 0 is
    only a limit (v -> 0, b -> inf), realised with |v_j| = RHO_LIMIT_SUBSTITUTE and reported.
    """
    if not act.homogeneous:
        raise MilplandError("loss.weight_decay: the balanced weights need a positively homogeneous activation")
    U, a, c = np.array(theta.U, dtype=float), np.array(theta.a, dtype=float), float(theta.c)
    norms = penalty.group_norms(U, a)
    scale = 1.0 + float(np.max(np.sqrt(np.sum(U**2, axis=1) + a**2), initial=0.0))
    zero = norms <= NEGLIGIBLE_NORM * scale  # no decayed weight left (solver round-off is zero)
    constant = zero & (np.abs(a) > NEGLIGIBLE_NORM * scale) if not penalty.decay_biases else np.zeros_like(zero)
    limit_units: list[int] = []
    if penalty.output_bias and np.any(constant):
        c += float(np.sum(theta.signs[constant] * act(a[constant])))
        constant = np.zeros_like(zero)
    elif np.any(constant):
        limit_units = [int(j) for j in np.flatnonzero(constant)]
    U[zero] = 0.0
    a[zero & ~constant] = 0.0
    rho = np.sqrt(np.where(zero, 0.0, norms))
    if limit_units:
        warnings.warn(f"units {limit_units} are limit points (input weights 0, bias -> inf, output weight -> 0); "
                      f"realised approximately with |v| = {RHO_LIMIT_SUBSTITUTE}", stacklevel=2)
        rho[limit_units] = RHO_LIMIT_SUBSTITUTE
    safe = np.where(rho > 0, rho, 1.0)
    params = OneHiddenParams(W1=U / safe[:, None], b1=np.where(rho > 0, a / safe, 0.0),
                             v=theta.signs * rho, c=c)
    return params, limit_units


def check_logistic_labels(y, loss: Loss, output_bias: bool) -> None:
    """With the logistic loss, an undecayed output bias and labels of one sign, c -> +-inf drives the
    risk to 0 at no penalty: the infimum is not attained, so the spec is refused (one line)."""
    if (loss.kind == "logistic" and not loss.decay_biases and output_bias
            and len(np.unique(np.sign(np.asarray(y, dtype=float)))) < 2):
        raise MilplandError("loss.decay_biases: with the logistic loss, labels of one sign and an undecayed output "
                            "bias the infimum (risk 0 as c -> inf) is not attained; use decay_biases = true")


@dataclass(frozen=True, eq=False)
class _Conic:
    """The arrays of one cell's SOCP (Clarabel's  min 1/2 x'Px + q'x  s.t.  Ax + s = b, s in K)."""

    P: sp.csc_matrix
    q: np.ndarray
    A: sp.csc_matrix
    b: np.ndarray
    cones: list
    phi: np.ndarray  # (n, p): f = phi theta
    G: np.ndarray  # (R, p): cell rows G theta >= 0
    n_cell_rows: int


class DecayCellSolver:
    """Solves a cell's weight-decay SOCP with Clarabel and re-checks the answer with numpy.

    ``bias_box``: the box |a~_j| <= box.weight kept on the undecayed scaled biases (decay_biases =
    false), and the derived bound on the undecayed output bias (`c_bound`); with decayed biases
    there is no box at all.
    """

    def __init__(self, X, y, activation: Activation, loss: Loss, box: Box, *, output_bias: bool = True):
        if not loss.decayed:
            raise MilplandError("loss.weight_decay: the weight-decay cell solver needs weight_decay > 0")
        if not activation.homogeneous:
            raise MilplandError(f"loss.weight_decay: needs a positively homogeneous activation, not {activation.name!r}")
        check_logistic_labels(y, loss, output_bias)
        self.builder = _Builder(X, y, activation, loss, box, output_bias=output_bias)
        self.loss, self.act, self.box = loss, activation, box
        self.penalty = Penalty(lam=float(loss.weight_decay), decay_biases=loss.decay_biases,
                               output_bias=bool(output_bias))
        b = self.builder
        # theta = 0 is in every closed cell: its objective bounds every cell minimum worth finding.
        self.zero_objective = loss.risk(np.zeros(b.n), b.y)
        # the SOCP's objective is divided by this (so that it lies in [0, 1]); y = 0 has the minimum 0 at theta = 0
        self.scale = self.zero_objective if self.zero_objective > 0 else 1.0

    @property
    def has_box(self) -> bool:
        """Undecayed parts (the scaled biases and c) are kept in a box: decay_biases = false."""
        return not self.penalty.decay_biases

    def c_bound(self, m: int, upper: float) -> float:
        """|c| of some optimal point of every cell (undecayed c): an optimal c is a weighted mean /
        median of y_i - rest_i (squared / absolute) or within 1 + max|rest_i| (hinge), with
        |rest_i| <= m max|alpha| (max ||x_i|| upper / lam + box.weight).  Logistic (both labels present,
        `check_logistic_labels`): a sample whose label has the sign opposite to c loses at least
        w (|c| - |rest_i|), so every point of objective <= upper has |c| <= max|rest_i| + upper / w."""
        b = self.builder
        xs = float(np.max(np.linalg.norm(b.X, axis=1)))
        rest = m * float(np.max(np.abs(b.alpha))) * (xs * upper / self.penalty.lam + self.box.weight)
        if self.loss.kind == "logistic":
            return float(rest + upper / b.w + 1.0)
        return float(max(np.max(np.abs(b.y)), 1.0) + rest + 1.0)

    # -- the conic program -----------------------------------------------------------------------

    def _conic(self, cell: Cell, upper: float) -> _Conic:
        b, pen = self.builder, self.penalty
        b.check(cell)
        lay = b.layout(cell.width)
        n, m, d, p = b.n, cell.width, b.d, lay.n_params
        phi = b.phi(cell, lay)
        G = b.cell_rows(cell, lay)[0]
        R = G.shape[0]
        kind = self.loss.kind
        ne = 0 if kind == "squared" else n
        nuv = n if kind == "logistic" else 0
        # columns: theta (p) | f (n) | t (m) | e (ne) | u, v (logistic: nuv each)
        col_f, col_t, col_e = p, p + n, p + n + m
        col_u, col_v = col_e + ne, col_e + ne + nuv
        N = col_v + nuv
        s = self.scale
        w = b.w / s
        lam = pen.lam / s
        P = np.zeros(N)
        q = np.zeros(N)
        if kind == "squared":
            P[col_f:col_t] = 2.0 * w
            q[col_f:col_t] = -2.0 * w * b.y
        else:
            q[col_e:col_u] = w
        q[col_t:col_e] = lam
        if lay.has_c and pen.decay_biases:
            P[lay.c] = lam
        blocks, rhs, cones = [], [], []
        eq = np.zeros((n, N))
        eq[:, :p], eq[:, col_f:col_t] = phi, -np.eye(n)
        blocks.append(eq)
        rhs.append(np.zeros(n))
        cones.append(clarabel.ZeroConeT(n))
        nonneg_rows, nonneg_rhs = [], []
        cell_block = np.zeros((R, N))
        cell_block[:, :p] = -G
        nonneg_rows.append(cell_block)
        nonneg_rhs.append(np.zeros(R))
        if kind == "logistic":  # u_i + v_i <= 1
            uv = np.zeros((n, N))
            uv[:, col_u:col_v], uv[:, col_v:] = np.eye(n), np.eye(n)
            nonneg_rows.append(uv)
            nonneg_rhs.append(np.ones(n))
        elif kind != "squared":
            Ie = np.zeros((n, N))
            Ie[:, col_e:col_u] = -np.eye(n)
            if kind == "absolute":  # e - (f - y) >= 0 and e + (f - y) >= 0
                up = Ie.copy()
                up[:, col_f:col_t] = np.eye(n)
                down = Ie.copy()
                down[:, col_f:col_t] = -np.eye(n)
                nonneg_rows += [up, down]
                nonneg_rhs += [b.y, -b.y]
            else:  # e >= 0 and e + y f - 1 >= 0
                margin = Ie.copy()
                margin[:, col_f:col_t] = -np.diag(b.y)
                nonneg_rows += [Ie, margin]
                nonneg_rhs += [np.zeros(n), -np.ones(n)]
        if self.has_box:  # |a_j| <= box.weight and |c| <= c_bound: the undecayed parts
            idx = list(range(lay.a.start, lay.a.stop))
            bound = [self.box.weight] * m
            if lay.has_c:
                idx.append(lay.c)
                bound.append(self.c_bound(m, upper))
            for sign in (1.0, -1.0):
                rows = np.zeros((len(idx), N))
                rows[np.arange(len(idx)), idx] = sign
                nonneg_rows.append(rows)
                nonneg_rhs.append(np.asarray(bound, dtype=float))
        nonneg = np.vstack(nonneg_rows)
        blocks.append(nonneg)
        rhs.append(np.concatenate(nonneg_rhs))
        cones.append(clarabel.NonnegativeConeT(nonneg.shape[0]))
        for j in range(m):  # (t_j, u_j) in the second-order cone
            group = list(range(j * d, (j + 1) * d)) + ([lay.a.start + j] if pen.decay_biases else [])
            rows = np.zeros((1 + len(group), N))
            rows[0, col_t + j] = -1.0
            rows[np.arange(1, 1 + len(group)), group] = -1.0
            blocks.append(rows)
            rhs.append(np.zeros(rows.shape[0]))
            cones.append(clarabel.SecondOrderConeT(rows.shape[0]))
        if kind == "logistic":
            for rows, b_part, cone in logistic_cones(b.y, N, col_f, col_e, col_u, col_v):
                blocks.append(rows)
                rhs.append(b_part)
                cones.append(cone)
        return _Conic(P=sp.triu(sp.diags(P)).tocsc(), q=q, A=sp.csc_matrix(np.vstack(blocks)),
                      b=np.concatenate(rhs), cones=cones, phi=phi, G=G, n_cell_rows=R)

    @staticmethod
    def _settings() -> clarabel.DefaultSettings:
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        settings.tol_gap_abs = settings.tol_gap_rel = SOLVER_TOL
        settings.tol_feas = settings.tol_ktratio = SOLVER_TOL
        settings.max_iter = 200
        return settings

    # -- solve and re-check ----------------------------------------------------------------------

    def solve(self, cell: Cell, *, upper: float | None = None) -> CellResult:
        """The cell's minimum: a point (numpy objective of its balanced ordinary weights) and a numpy
        lower bound valid for the cell's minimum when it is below ``upper`` (default: the objective
        of theta = 0, which lies in every closed cell)."""
        started = time.perf_counter()
        upper = self.zero_objective if upper is None else float(upper)
        conic = self._conic(cell, upper)
        solver = clarabel.DefaultSolver(conic.P, conic.q, conic.A, conic.b, conic.cones, self._settings())
        sol = solver.solve()
        status = str(sol.status)
        x, z = np.asarray(sol.x, dtype=float), np.asarray(sol.z, dtype=float)
        if x.size == 0 or not np.all(np.isfinite(x)):
            return CellResult(status="error", risk=np.inf, theta=None, fitted=None, box_active=False,
                              seconds=time.perf_counter() - started, method=f"clarabel-socp ({status})")
        lay = self.builder.layout(cell.width)
        theta = lay.theta(x[: lay.n_params], cell.signs)
        params, _limit = balanced_params(theta, self.penalty, self.act)
        value = self.loss.objective(params, self.builder.X, self.builder.y, self.act)
        bound = self.lower_bound(conic, cell, z, upper)
        floor = 1e-6 * self.scale
        gap = max(0.0, value - bound) / max(value, floor)
        violation = float(np.max(-(conic.G @ x[: lay.n_params]), initial=0.0)) / max(1.0, float(np.abs(x).max()))
        return CellResult(
            status="optimal" if gap <= DECAY_KKT_TOL else "time_limit" if "MaxIter" in status else "error",
            risk=value, theta=theta, fitted=params.forward(self.builder.X, self.act),
            box_active=self._at_box(theta, cell.width, upper), seconds=time.perf_counter() - started,
            kkt_residual=gap, lower_bound=bound, max_violation=violation, method="clarabel-socp",
        )

    def lower_bound(self, conic: _Conic, cell: Cell, z: np.ndarray, upper: float) -> float:
        """The Lagrangian bound of the module docstring from Clarabel's duals, recomputed in numpy.

        With undecayed parts (decay_biases = false) their multipliers r_a, r_c enter multiplied by the
        box (|r| B): a dual error of 1e-9 costs 1e-7.  So the bound is also evaluated at mu moved by the
        least-norm change that makes r vanish on those columns (`polish_multipliers`).  Likewise a group
        with ||r_u|| a little above lam (an active unit has ||r_u|| = lam at the optimum) costs
        (||r_u|| - lam) rho with rho = upper / lam: (mu, nu) scaled by kappa = lam / max ||r_u|| <= 1 (still
        in the domain) removes that term.  The largest of these bounds is returned -- all are valid, as
        the bound holds for any multipliers."""
        b = self.builder
        lay = b.layout(cell.width)
        mu = clip_multipliers(self.loss.kind, self.scale * z[:b.n], b.y, b.w)
        nu = np.maximum(self.scale * z[b.n:b.n + conic.n_cell_rows], 0.0)
        candidates = [mu]
        if self.has_box:
            free = list(range(lay.a.start, lay.a.stop)) + ([lay.c] if lay.has_c else [])
            candidates.append(polish_multipliers(self.loss.kind, mu, nu, conic.phi, conic.G, free, b.y, b.w))
        bounds = []
        for candidate in candidates:
            bounds.append(self._bound(conic, cell, candidate, nu, upper))
            kappa = self.penalty.lam / max(self.penalty.lam, float(np.max(self._group_norms(conic, cell, candidate, nu))))
            if kappa < 1.0:
                bounds.append(self._bound(conic, cell, kappa * candidate, kappa * nu, upper))
        return max(bounds)

    def _group_norms(self, conic: _Conic, cell: Cell, mu: np.ndarray, nu: np.ndarray) -> np.ndarray:
        """||r_u|| of every unit's decayed group at multipliers (mu, nu)."""
        m, d = cell.width, self.builder.d
        r = conic.phi.T @ mu - conic.G.T @ nu
        r_a = r[self.builder.layout(m).a]
        return np.sqrt(np.sum(r[: m * d].reshape(m, d) ** 2, axis=1) + (r_a**2 if self.penalty.decay_biases else 0.0))

    def _bound(self, conic: _Conic, cell: Cell, mu: np.ndarray, nu: np.ndarray, upper: float) -> float:
        """The bound at multipliers mu (in the loss's domain, `clip_multipliers`) and nu >= 0."""
        b, pen = self.builder, self.penalty
        m = cell.width
        lay = b.layout(m)
        fitting = fitting_term(self.loss.kind, mu, b.y, b.w)
        r = conic.phi.T @ mu - conic.G.T @ nu
        rho = upper / pen.lam
        r_a = r[lay.a]
        group = self._group_norms(conic, cell, mu, nu)
        total = fitting + float(np.sum(np.minimum(0.0, (pen.lam - group) * rho)))
        if not pen.decay_biases:
            total -= self.box.weight * float(np.sum(np.abs(r_a)))
        if lay.has_c:
            r_c = float(r[lay.c])
            total -= r_c**2 / (2.0 * pen.lam) if pen.decay_biases else self.c_bound(m, upper) * abs(r_c)
        return total

    def _at_box(self, theta: ScaledParams, m: int, upper: float) -> bool:
        """An undecayed part sits on its box bound (only with decay_biases = false)."""
        if not self.has_box:
            return False
        near = np.any(np.abs(theta.a) >= (1.0 - BOX_RTOL) * self.box.weight)
        if self.penalty.output_bias:
            near = near or abs(theta.c) >= (1.0 - BOX_RTOL) * self.c_bound(m, upper)
        return bool(near)
