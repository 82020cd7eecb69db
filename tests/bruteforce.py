"""Independent brute-force global minimiser of a one-hidden-layer CPWL network (DESIGN §2-§3).

The test suite's reference for the global solve.  It shares no code with
milpland's formulation or solver: it uses only the plain data types (Activation,
Loss, OneHiddenParams) and derives everything else from DESIGN §2-§3.

Method.  With s_j = sign(v_j), rho_j = |v_j|, u~_j = rho_j w_j, a~_j = rho_j b_j the
scaled pre-activation g_ij = u~_j . x_i + a~_j is linear, and on piece k unit j
contributes s_j (alpha_k g_ij + beta_k rho_j) under the linear cell constraints
rho_j t_{k-1} <= g_ij <= rho_j t_k.  So with the signs and the pieces fixed the risk
is a convex QP (squared) or LP (absolute, hinge) in theta~ = (u~, a~, rho, c).

Per unit, the pieces are ordered along g, so a strictly realisable assignment of
pieces to the samples is a monotone "cut" assignment along the order of the
projections u . x_i for some generic direction u (or a constant assignment, u = 0).
For d = 1 the directions are +1 and -1; for d = 2 the order changes only where u is
perpendicular to some x_i - x_k, so one direction per arc between those critical
angles lists every order.  Every point of the box is a limit of points with strict
patterns, and the closed cells of the strict patterns therefore cover the box: the
minimum over those closed cells is the minimum over the box.

Units of one sign are interchangeable, so cells are multisets of unit assignments
per sign class (m + 1 classes).  Cells are screened with a lower bound that ignores
the cell and box constraints (least squares; for the absolute loss its LP dual
bound ||r||^2 / ||r||_inf from the least-squares residual), solved in increasing
order of that bound, and skipped once the bound reaches the incumbent.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import clarabel
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from milpland.instance.activations import Activation
from milpland.instance.losses import Loss
from milpland.instance.network import OneHiddenParams

SOLVER_TOL = 1e-10
PRUNE_REL = 1e-10  # a cell whose lower bound is this close to the incumbent cannot matter at 1e-6
ZERO_UNIT = 1e-12  # below this every scaled weight of a unit counts as zero
SHORTCUT_TOL = 1e-12  # least-squares point accepted as cell optimum if it violates nothing by more


@dataclass(frozen=True, eq=False)
class BruteResult:
    risk: float  # minimum over all cells of the cell optimum (cell model value)
    params: OneHiddenParams  # a minimiser in ordinary weights
    n_cells: int  # cells enumerated (multisets of unit assignments, all sign classes)
    n_solved: int = 0  # convex cell problems actually solved (the rest were screened out)
    risk_numpy: float = math.nan  # risk of `params` by the plain forward pass below
    signs: np.ndarray | None = None  # (m,)
    pattern: np.ndarray | None = None  # (n, m) piece of every (sample, unit)
    scaled: dict | None = None  # U (m, d), a (m,), rho (m,), c
    box_active: bool = False  # some scaled weight within 1e-7 (relative) of the box at the minimiser
    limit_units: tuple[int, ...] = ()  # units with rho -> 0 but non-zero scaled weights
    n_unit_assignments: int = 0


# ---------------------------------------------------------------------------
# plain forward pass (its own CPWL formula, not Activation.__call__)


def cpwl(act: Activation, z: np.ndarray) -> np.ndarray:
    """sigma(z) = alpha_0 z + beta_0 + sum_k (alpha_k - alpha_{k-1}) max(0, z - t_k)."""
    z = np.asarray(z, dtype=float)
    out = act.slopes[0] * z + act.intercepts[0]
    for k, t in enumerate(act.breakpoints, start=1):
        out = out + (act.slopes[k] - act.slopes[k - 1]) * np.maximum(0.0, z - t)
    return out


def forward(params: OneHiddenParams, X: np.ndarray, act: Activation) -> np.ndarray:
    """f(x_i) = sum_j v_j sigma(w_j . x_i + b_j) + c."""
    Z = np.asarray(X, dtype=float) @ np.asarray(params.W1, dtype=float).T + np.asarray(params.b1, dtype=float)
    return cpwl(act, Z) @ np.asarray(params.v, dtype=float) + float(params.c)


def risk_of(f: np.ndarray, y: np.ndarray, loss: Loss) -> float:
    """weight * sum_i loss(f_i, y_i), written out here rather than taken from Loss.risk."""
    r = np.asarray(f, dtype=float) - np.asarray(y, dtype=float)
    w = 1.0 / len(y) if loss.reduction == "mean" else 0.5
    if loss.kind == "squared":
        return float(w * np.sum(r * r))
    if loss.kind == "absolute":
        return float(w * np.sum(np.abs(r)))
    if loss.kind == "hinge":
        return float(w * np.sum(np.maximum(0.0, 1.0 - np.asarray(y) * np.asarray(f))))
    raise ValueError(f"unknown loss {loss.kind!r}")


def is_homogeneous(act: Activation) -> bool:
    return tuple(act.breakpoints) == (0.0,) and all(b == 0.0 for b in act.intercepts)


# ---------------------------------------------------------------------------
# per-unit assignments


def generic_orders(X: np.ndarray) -> list[np.ndarray]:
    """Orders of the distinct points along one generic direction per arc between critical angles.

    Returns a list of arrays of indices into the distinct points (np.unique rows).
    d = 1: ascending and descending.  d = 2: critical angles are the directions
    perpendicular to some x_i - x_k; between two consecutive ones no projection ties.
    """
    P = np.unique(np.asarray(X, dtype=float), axis=0)
    n, d = P.shape
    if d == 1 or n == 1:
        order = np.argsort(P[:, 0] if d == 1 else np.zeros(n), kind="stable")
        return [order, order[::-1]]
    if d != 2:
        raise NotImplementedError("generic orders are implemented for d <= 2; use realizable_by_lp")
    angles = []
    for i, k in itertools.combinations(range(n), 2):
        dx, dy = P[k] - P[i]
        base = math.atan2(dy, dx) + math.pi / 2
        angles += [base % (2 * math.pi), (base + math.pi) % (2 * math.pi)]
    angles = np.unique(np.round(np.array(angles), 15))
    mids = (angles + np.roll(angles, -1) + np.where(np.arange(len(angles)) == len(angles) - 1, 2 * math.pi, 0.0)) / 2
    orders = []
    for phi in mids:
        proj = P @ np.array([math.cos(phi), math.sin(phi)])
        order = np.argsort(proj, kind="stable")
        gaps = np.diff(proj[order])
        # a generic direction separates every pair; a tie would mean a missed critical angle
        assert np.all(gaps > 1e-12 * max(1.0, np.max(np.abs(proj)))), "projection tie at a generic direction"
        orders.append(order)
    return orders


def unit_assignments(X: np.ndarray, n_pieces: int) -> np.ndarray:
    """Every strictly realisable assignment of pieces to the samples by one unit, shape (S, n).

    Along a generic order of the distinct points, the pieces are non-decreasing: choose
    cuts 0 <= c_1 <= ... <= c_{K-1} <= G and give the point at position p the piece
    #{k : c_k <= p}.  Identical points share their piece.
    """
    X = np.asarray(X, dtype=float)
    P, inverse = np.unique(X, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    G = P.shape[0]
    found = set()
    for order in generic_orders(X):
        for cuts in itertools.combinations_with_replacement(range(G + 1), n_pieces - 1):
            piece_at_pos = np.searchsorted(np.array(cuts), np.arange(G), side="right")
            piece_of_point = np.empty(G, dtype=np.int64)
            piece_of_point[order] = piece_at_pos
            found.add(tuple(piece_of_point[inverse]))
    return np.array(sorted(found), dtype=np.int64)


def realizable_by_lp(X: np.ndarray, act: Activation, *, margin_tol: float = 1e-7) -> np.ndarray:
    """All assignments in K^n that are strictly realisable, found by one LP per assignment.

    With rho = 1 (any rho > 0 rescales to it): maximise eps <= 1 subject to
    t_{k-1} + eps <= u . x_i + a <= t_k - eps on the assigned piece k.  Realisable
    iff eps* > 0.  Exponential: for the completeness test on tiny n only.
    """
    X = np.asarray(X, dtype=float)
    n, d = X.shape
    K = len(act.slopes)
    t = list(act.breakpoints)
    lifted = np.column_stack([X, np.ones(n)])
    out = []
    for assignment in itertools.product(range(K), repeat=n):
        rows, rhs = [], []
        for i, k in enumerate(assignment):
            if k < K - 1:  # g_i + eps <= t_k
                rows.append(np.r_[lifted[i], 1.0])
                rhs.append(t[k])
            if k > 0:  # -g_i + eps <= -t_{k-1}
                rows.append(np.r_[-lifted[i], 1.0])
                rhs.append(-t[k - 1])
        cost = np.zeros(d + 2)
        cost[-1] = -1.0
        bounds = [(None, None)] * (d + 1) + [(None, 1.0)]
        res = linprog(cost, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=bounds, method="highs")
        if res.status == 0 and -res.fun > margin_tol:
            out.append(assignment)
    return np.array(out, dtype=np.int64)


# ---------------------------------------------------------------------------
# cells


def _unit_blocks(X: np.ndarray, act: Activation, A: np.ndarray, homogeneous: bool) -> np.ndarray:
    """Feature block of a positive unit per assignment, shape (S, n, q).

    Columns alpha_k x_i (d of them), alpha_k (for a~) and, if not homogeneous, beta_k (for rho).
    """
    alpha = np.asarray(act.slopes)[A]  # (S, n)
    blocks = [alpha[:, :, None] * X[None, :, :], alpha[:, :, None]]
    if not homogeneous:
        blocks.append(np.asarray(act.intercepts)[A][:, :, None])
    return np.concatenate(blocks, axis=2)


def _enumerate_cells(n_assign: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Multisets of unit assignments per sign class: (cells, m) indices and (cells, m) signs."""
    idx, sgn = [], []
    for p in range(width + 1):
        pos = list(itertools.combinations_with_replacement(range(n_assign), p))
        neg = list(itertools.combinations_with_replacement(range(n_assign), width - p))
        signs = [1.0] * p + [-1.0] * (width - p)
        for a in pos:
            for b in neg:
                idx.append(a + b)
                sgn.append(signs)
    return np.array(idx, dtype=np.int64).reshape(-1, width), np.array(sgn, dtype=float).reshape(-1, width)


def _lower_bounds(Phi: np.ndarray, y: np.ndarray, loss: Loss, w: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds that ignore the cell and box constraints, and the min-norm least-squares points.

    squared: w ||r||^2 with r the least-squares residual.  absolute: r is orthogonal to
    the columns, so lambda = r / ||r||_inf is dual feasible and w r.y / ||r||_inf =
    w ||r||^2 / ||r||_inf <= min w ||Phi theta - y||_1.  hinge: 0.  A tiny singular-value
    threshold keeps spurious directions, which only lowers the bound (safe side).
    """
    U, s, Vt = np.linalg.svd(Phi, full_matrices=False)
    keep = s > 1e-13 * np.maximum(s[:, :1], 1e-300)
    Uty = np.einsum("cnk,n->ck", U, y) * keep
    r = y[None, :] - np.einsum("cnk,ck->cn", U, Uty)
    inv = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
    theta = np.einsum("ckp,ck->cp", Vt, inv * Uty)
    if loss.kind == "squared":
        lb = w * np.sum(r * r, axis=1)
    elif loss.kind == "absolute":
        rinf = np.max(np.abs(r), axis=1)
        lb = np.where(rinf > 0, w * np.sum(r * r, axis=1) / np.where(rinf > 0, rinf, 1.0), 0.0)
    else:
        lb = np.zeros(Phi.shape[0])
    return lb, theta


@dataclass(frozen=True)
class _Problem:
    X: np.ndarray
    y: np.ndarray
    act: Activation
    loss: Loss
    B: float
    P: float
    bias: bool
    homogeneous: bool

    @property
    def q(self) -> int:
        return self.X.shape[1] + 1 + (0 if self.homogeneous else 1)

    @property
    def weight(self) -> float:
        return 1.0 / len(self.y) if self.loss.reduction == "mean" else 0.5


def unit_constraint_rows(pb: _Problem, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell and box constraints of one unit as rows of C theta~_j <= h (local columns u~, a~, [rho]).

    Cell: rho t_{k-1} <= g_ij <= rho t_k (homogeneous: t = 0 and no rho column).
    Box: |u~|, |a~| <= B and 0 <= rho <= P.
    """
    n, d = pb.X.shape
    t = pb.act.breakpoints
    K = len(pb.act.slopes)
    lifted = np.column_stack([pb.X, np.ones(n)])
    extra = 0 if pb.homogeneous else 1
    rows, rhs = [], []
    for i in range(n):
        k = int(A[i])
        if k < K - 1:
            rows.append(np.r_[lifted[i], [-t[k]] * extra])
            rhs.append(0.0)
        if k > 0:
            rows.append(np.r_[-lifted[i], [t[k - 1]] * extra])
            rhs.append(0.0)
    box = np.vstack([np.eye(pb.q), -np.eye(pb.q)])
    box_rhs = np.r_[np.full(d + 1, pb.B), [pb.P] * extra, np.full(d + 1, pb.B), [0.0] * extra]
    return np.vstack([np.array(rows).reshape(-1, pb.q), box]), np.r_[rhs, box_rhs]


_P_CACHE: dict = {}


def _dense_to_csc(A: np.ndarray) -> sp.csc_matrix:
    """CSC of a small dense matrix without scipy's generic conversion path (it dominated the time)."""
    At = A.T
    mask = At != 0
    indptr = np.r_[0, np.cumsum(mask.sum(axis=1))].astype(np.int64)
    indices = np.nonzero(mask)[1].astype(np.int64)
    return sp.csc_matrix((At[mask], indices, indptr), shape=A.shape)


def _objective_matrix(kind: str, p: int, n: int, w: float) -> sp.csc_matrix:
    key = (kind, p, n, w)
    if key not in _P_CACHE:
        if kind == "squared":
            diag = np.r_[np.zeros(p), np.full(n, 2.0 * w)]
            _P_CACHE[key] = sp.csc_matrix(sp.diags(diag))
        else:
            _P_CACHE[key] = sp.csc_matrix((p + n, p + n))
    return _P_CACHE[key]


def _solve_cell(pb: _Problem, Phi: np.ndarray, units: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The cell's convex problem with Clarabel; returns theta~ (u~, a~, [rho] per unit, then c).

    Variables x = (theta~, e) with e the residuals (squared: Phi theta - e = y, minimise
    w ||e||^2) or the per-sample losses (absolute: +-(Phi theta - y) <= e; hinge:
    e >= 0, e >= 1 - y_i f_i; minimise w sum e).  `units` holds each unit's rows from
    `unit_constraint_rows`.
    """
    n = len(pb.y)
    p = Phi.shape[1]
    nvar = p + n
    n_cell = sum(C.shape[0] for C, _ in units)
    kind = pb.loss.kind
    n_loss = n if kind == "squared" else 2 * n
    A = np.zeros((n_loss + n_cell, nvar))
    b = np.zeros(n_loss + n_cell)
    E = np.eye(n)
    if kind == "squared":
        A[:n, :p], A[:n, p:] = Phi, -E
        b[:n] = pb.y
        cones = [clarabel.ZeroConeT(n), clarabel.NonnegativeConeT(n_cell)]
        q = np.zeros(nvar)
    else:
        if kind == "absolute":
            A[:n, :p], A[n:2 * n, :p] = Phi, -Phi
            b[:n], b[n:2 * n] = pb.y, -pb.y
        else:
            A[:n, :p] = -pb.y[:, None] * Phi
            b[:n] = -1.0
        A[:n, p:], A[n:2 * n, p:] = -E, -E
        cones = [clarabel.NonnegativeConeT(n_loss + n_cell)]
        q = np.r_[np.zeros(p), np.full(n, pb.weight)]
    row = n_loss
    for j, (C, h) in enumerate(units):
        A[row:row + C.shape[0], j * pb.q:(j + 1) * pb.q] = C
        b[row:row + C.shape[0]] = h
        row += C.shape[0]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = SOLVER_TOL
    settings.tol_gap_rel = SOLVER_TOL
    settings.tol_feas = SOLVER_TOL
    settings.max_iter = 400
    solver = clarabel.DefaultSolver(_objective_matrix(kind, p, n, pb.weight), q, _dense_to_csc(A), b, cones, settings)
    sol = solver.solve()
    status = str(sol.status)
    if status not in ("Solved", "AlmostSolved"):
        # every closed cell contains theta~ = 0, so anything but an optimum is a solver failure
        raise RuntimeError(f"clarabel returned {status} on a cell problem")
    return np.asarray(sol.x)[:p]


def _cell_feasible(pb: _Problem, theta: np.ndarray, assign: np.ndarray, tol: float) -> bool:
    """Does theta~ satisfy the cell and box constraints up to tol (scaled by the data)?"""
    n, d = pb.X.shape
    t = np.asarray(pb.act.breakpoints)
    K = len(pb.act.slopes)
    scale = tol * max(1.0, float(np.max(np.abs(pb.X))), pb.B)
    for j, A in enumerate(assign):
        blk = theta[j * pb.q:(j + 1) * pb.q]
        u, a = blk[:d], blk[d]
        rho = 0.0 if pb.homogeneous else blk[d + 1]
        if np.max(np.abs(blk[:d + 1])) > pb.B * (1 + tol):
            return False
        g = pb.X @ u + a
        if pb.homogeneous:
            if np.any(np.where(A == 0, g, -g) > scale):
                return False
            continue
        if rho < -tol or rho > pb.P * (1 + tol):
            return False
        low = np.where(A > 0, rho * t[np.maximum(A - 1, 0)], -np.inf)
        high = np.where(A < K - 1, rho * t[np.minimum(A, K - 2)], np.inf)
        if np.any(g < low - scale) or np.any(g > high + scale):
            return False
    return True


def _to_original(pb: _Problem, theta: np.ndarray, signs: np.ndarray) -> tuple[OneHiddenParams, dict, tuple[int, ...]]:
    """theta~ -> ordinary weights: v = s rho, w = u~ / rho, b = a~ / rho.

    Homogeneous: rho is free (sigma(g / rho) rho = sigma(g)); take rho = 1.  A unit with
    rho ~ 0 but non-zero u~ is a limit point; realise it with rho = ZERO_UNIT.
    """
    d = pb.X.shape[1]
    m = len(signs)
    U = np.zeros((m, d))
    a = np.zeros(m)
    rho = np.zeros(m)
    W1 = np.zeros((m, d))
    b1 = np.zeros(m)
    v = np.zeros(m)
    limit = []
    for j in range(m):
        blk = theta[j * pb.q:(j + 1) * pb.q]
        U[j], a[j] = blk[:d], blk[d]
        if pb.homogeneous:
            rho[j] = 1.0
        else:
            rho[j] = max(float(blk[d + 1]), 0.0)
            if max(np.max(np.abs(blk[:d + 1])), rho[j]) <= ZERO_UNIT:
                continue  # a zero unit: v = 0, w = 0, b = 0
            if rho[j] < ZERO_UNIT:
                limit.append(j)
        r = max(rho[j], ZERO_UNIT)
        W1[j], b1[j], v[j] = U[j] / r, a[j] / r, signs[j] * r
    c = float(theta[m * pb.q]) if pb.bias else 0.0
    params = OneHiddenParams(W1=W1, b1=b1, v=v, c=c)
    return params, {"U": U, "a": a, "rho": rho, "c": c}, tuple(limit)


def brute_force_global(
    X: np.ndarray,
    y: np.ndarray,
    activation: Activation,
    loss: Loss,
    box_weight: float,
    box_output: float,
    output_bias: bool = True,
    *,
    width: int = 1,
) -> BruteResult:
    """Global minimum of the risk over the box |u~|, |a~| <= box_weight, 0 <= rho <= box_output.

    Exact up to the convex solver's tolerance (~1e-10): every cell of every sign class
    is either solved or has a lower bound at least the incumbent.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    y = np.asarray(y, dtype=float)
    n, d = X.shape
    homog = is_homogeneous(activation)
    pb = _Problem(X, y, activation, loss, float(box_weight), float(box_output), bool(output_bias), homog)
    K = len(activation.slopes)
    S = unit_assignments(X, K) if d <= 2 else realizable_by_lp(X, activation)
    blocks = _unit_blocks(X, activation, S, homog)  # (S, n, q)
    idx, sgn = _enumerate_cells(len(S), width)
    Phi = (sgn[:, :, None, None] * blocks[idx]).transpose(0, 2, 1, 3).reshape(len(idx), n, width * pb.q)
    if output_bias:
        Phi = np.concatenate([Phi, np.ones((len(idx), n, 1))], axis=2)
    lb, theta_ls = _lower_bounds(Phi, y, loss, pb.weight)
    rows = [unit_constraint_rows(pb, A) for A in S]
    best = (math.inf, None, None)
    n_solved = 0
    for c in np.argsort(lb, kind="stable"):
        if lb[c] >= best[0] - PRUNE_REL * max(1.0, best[0]):
            break
        assign = S[idx[c]]
        theta = None
        if loss.kind == "squared" and _cell_feasible(pb, theta_ls[c], assign, SHORTCUT_TOL):
            theta = theta_ls[c]  # the unconstrained optimum lies in the cell: it is the cell optimum
        else:
            theta = _solve_cell(pb, Phi[c], [rows[a] for a in idx[c]])
            n_solved += 1
        value = risk_of(Phi[c] @ theta, y, loss)
        if value < best[0]:
            best = (value, c, theta)
    value, c, theta = best
    params, scaled, limit = _to_original(pb, theta, sgn[c])
    f = forward(params, X, activation)
    Umax = np.max(np.abs(np.column_stack([scaled["U"], scaled["a"]])))
    active = Umax >= pb.B * (1 - 1e-7) or (not homog and np.max(scaled["rho"]) >= pb.P * (1 - 1e-7))
    return BruteResult(
        risk=float(value), params=params, n_cells=len(idx), n_solved=n_solved,
        risk_numpy=risk_of(f, y, loss), signs=sgn[c].copy(), pattern=S[idx[c]].T.copy(),
        scaled=scaled, box_active=bool(active), limit_units=limit, n_unit_assignments=len(S),
    )


def exact_tangent_certificate(F, y, ray_of, column_sign, z, lower, upper):
    """(||r||^2, gap) of the hull node's tangent certificate (`unit_hull.tangent_bound`) in exact
    rational arithmetic: r = sum_k s_k z_k F[ray_k] + c - y, g = 2 Phi^T r, gap = g.z - min_box g.z'."""
    from fractions import Fraction as Q

    K, n = ray_of.shape[0], F.shape[1]
    zq = [Q(float(v)) for v in z]
    r = [zq[K] - Q(float(y[i])) for i in range(n)]
    for k in range(K):
        for i in range(n):
            r[i] += Q(float(column_sign[k])) * zq[k] * Q(float(F[ray_of[k], i]))
    gap = Q(0)
    for k in range(K + 1):
        row = [Q(float(F[ray_of[k], i])) for i in range(n)] if k < K else [Q(1)] * n
        sign = Q(float(column_sign[k])) if k < K else Q(1)
        g = 2 * sign * sum(a * b for a, b in zip(row, r))
        gap += g * zq[k] - min(g * Q(float(lower[k])), g * Q(float(upper[k])))
    return sum(v * v for v in r), gap
