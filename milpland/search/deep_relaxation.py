"""The node relaxation of the two-layer search (DESIGN §6a): a convex QP and its certified bound.

A node fixes, for every layer-1 unit j, its orientation s_j, the gap of its knot and a sub-interval
[L_j, U_j] of that gap, the sign sigma_kj of every layer-2 weight A_kj, a box
mu_kj in [mlo_kj, mhi_kj] for the share mu_kj = |A_kj| / sum_k |A_kj|, the sign s_k of every
output weight and a partial layer-2 pattern P (top / bottom / undecided per position and unit).

With a_j = sum_k |A_kj| and v_j = t_j - L_j in [0, D_j] (D_j = U_j - L_j) the layer-2
pre-activation at position p is

    z_pk = b~_k + sum_j sigma_kj (M_kj phi_pj(L_j) + W_kj dphi_pj),
    M_kj = |A_kj| = a_j mu_kj,     W_kj = |A_kj| v_j = a_j (mu_kj v_j),

linear in the variables (c, b~, M, W, h).  The only non-convex relation is W_kj = M_kj v_j with
v_j shared by all k.  Since every (M_.j, W_.j) is a_j >= 0 times (mu_.j, mu_.j v_j), the exact
set is a cone over the bilinear surface {(mu, mu v)}; the relaxation replaces mu_kj v_j by its
McCormick envelope over [mlo, mhi] x [0, D] and multiplies the four inequalities by a_j:

    W_kj >= mlo E_j,   W_kj >= mhi E_j + D M_kj - mhi D a_j,
    W_kj <= mhi E_j,   W_kj <= mlo E_j + D M_kj - mlo D a_j,     E_j = sum_k W_kj = a_j v_j,

plus mlo a_j <= M_kj <= mhi a_j and 0 <= E_j <= D a_j.  These are valid for every network of the
node, and their error, a_j (mhi - mlo) D / 4 at most, does not depend on the box B: it falls with
the product of the two interval widths (second order), which is what lets the search close the
gap without a cluster of tiny boxes around the minimum.

Undecided layer-2 pairs get h_pk >= 0, h_pk >= z_pk, h_pk <= M_pk (M_pk from the box).  Because
phi_j is convex in x with slope change alpha_1 - alpha_0 at t_j, z_k is convex across gap g when
every kink there has sigma_kj (alpha_1 - alpha_0) >= 0 and concave when all are <= 0; on such
runs relu(z_k) is convex (rows h_b <= lambda h_a + (1 - lambda) h_c over consecutive positions)
or relu(z_k) - z_k = relu(-z_k) is convex (the same rows on h - z).  With
f_i = c + sum_k s_k (alpha_0 z_k + (alpha_1 - alpha_0) h_k) at the sample's position, the QP

    min  w sum_i (f_i - y_i)^2   over these rows and the variable bounds

bounds every network of the node (for the absolute and hinge losses the same rows with the loss as
an LP).  The bound is not the solver's objective: it is a Lagrangian
bound recomputed in numpy (extended precision) from any point and any multipliers (`bound`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from milpland.search import small_qp
from milpland.search.deep_assemble import assemble, frame
from milpland.search.deep_model import TwoLayerData

UNDECIDED = -1
SOLVER_TOL = 1e-10
ACCEPTED = ("Solved", "AlmostSolved", "InsufficientProgress", "AlmostInsufficientProgress", "MaxIterations",
            "AlmostMaxIterations")


@dataclass(eq=False)
class DeepNode:
    """A node of the two-layer search (see the module docstring); ordered by bound, then tiebreak."""

    bound: float
    tiebreak: int
    orientations: tuple  # s_j
    gaps: tuple  # knot gap of every layer-1 unit
    sig: np.ndarray  # (m2, m1) sign of every layer-2 weight
    L: np.ndarray  # (m1,) knot interval
    U: np.ndarray
    mlo: np.ndarray  # (m2, m1) share interval
    mhi: np.ndarray
    P: np.ndarray  # (G, m2) int8 layer-2 pattern per position
    signs: np.ndarray  # (m2,) output signs
    runs: list | None = None  # the convex / concave runs of every layer-2 unit (deep_solve.node_runs), cached
    frame: "NodeFrame | None" = None  # the pattern-free part of the QP (`node_frame`), cached; shared by
    # the children of a pattern split (same knots, shares and signs), rebuilt after an interval split

    def __lt__(self, other: "DeepNode") -> bool:
        return (self.bound, self.tiebreak) < (other.bound, other.tiebreak)

    def n_positive(self) -> int:
        return int(np.sum(self.signs > 0))


@dataclass(frozen=True, eq=False)
class NodeQP:
    """min w ||Phi z - y||^2 s.t. A z >= rhs, lower <= z <= upper.  Z: z_pk as rows over the variables."""

    Phi: np.ndarray
    A: np.ndarray
    rhs: np.ndarray  # (rows,) 0 except on the secant rows of undecided pairs
    lower: np.ndarray
    upper: np.ndarray
    Z: np.ndarray  # (G, m2, N)
    free: tuple  # (positions, units) of the undecided pairs; their h columns are p0 + 0..F-1
    p0: int


class Columns:
    """Column indices: c, b~_k, then per layer-1 unit j the blocks M_.j and W_.j, then h.
    (`Columns.of` caches one per shape.)"""

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def of(m1: int, m2: int) -> "Columns":
        return Columns(m1, m2)

    def __init__(self, m1: int, m2: int):
        self.m1, self.m2 = m1, m2
        self.b = 1 + np.arange(m2)
        j, k = np.meshgrid(np.arange(m1), np.arange(m2))  # (m2, m1)
        self.M = 1 + m2 + 2 * m2 * j + k
        self.W = self.M + m2
        self.p0 = 1 + m2 + 2 * m1 * m2


def kink_runs(data: TwoLayerData, node: DeepNode) -> tuple[np.ndarray, np.ndarray]:
    """(convex_ok, concave_ok), each (m2, G - 1): whether z_k is convex / concave across gap g."""
    G, m2 = data.n_positions, data.widths[1]
    direction = np.sign(data.slopes[1] - data.slopes[0])
    convex = np.ones((m2, G - 1), dtype=bool)
    concave = np.ones((m2, G - 1), dtype=bool)
    for j, g in enumerate(node.gaps):
        kink = node.sig[:, j] * direction
        convex[kink < 0, g] = False
        concave[kink > 0, g] = False
    return convex, concave


@dataclass(frozen=True, eq=False)
class NodeFrame:
    """What a node's QP does not take from its layer-2 pattern: built once per knot / share box and
    shared by the pattern children (a profile of the deep-scip suite: most nodes are pattern splits,
    and rebuilding this part was a third of the Python around each QP).

    Zb (G, m2, p0): z_pk over the columns before the h block; mcc (R, p0): the McCormick rows;
    zlo, zhi (G, m2): `z_range`; zmax (G,): the box's bound on |z_pk|; lower, upper (p0,): the bounds
    of the columns before h; convex, concave: `kink_runs`."""

    Zb: np.ndarray
    mcc: np.ndarray
    zlo: np.ndarray
    zhi: np.ndarray
    zmax: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    convex: np.ndarray
    concave: np.ndarray
    conic: bool


def node_frame(data: TwoLayerData, node: DeepNode, *, conic: bool = True) -> NodeFrame:
    """The node's `NodeFrame` (cached on the node), built by the compiled `deep_assemble.frame`
    (its docstring has the rows and ranges)."""
    if node.frame is not None and node.frame.conic == conic:
        return node.frame
    a0, a1 = data.slopes
    Zb, mcc, zlo, zhi, zmax, lower, upper = frame(
        data.positions, a0, a1, np.asarray(node.orientations, dtype=float), np.asarray(node.gaps, dtype=np.int64),
        np.ascontiguousarray(node.sig), node.L, node.U, node.mlo, node.mhi, data.box, float(np.max(np.abs(data.y))),
        data.output_bias, conic)
    convex, concave = kink_runs(data, node)
    node.frame = NodeFrame(Zb=Zb, mcc=mcc, zlo=zlo, zhi=zhi, zmax=zmax, lower=lower, upper=upper,
                           convex=convex, concave=concave, conic=conic)
    return node.frame


def node_qp(data: TwoLayerData, node: DeepNode, *, conic: bool = True, secant: bool = True) -> NodeQP:
    """The node's QP: its frame (`node_frame`) and the rows of its layer-2 pattern, assembled by the
    compiled `deep_assemble.assemble` (the rows are listed there).  ``conic`` False gives the
    first-order relaxation (each layer-2 unit its own knot in the interval: 0 <= W_kj <= D_j M_kj
    only), kept for the ablation; ``secant`` False drops the secant rows of the undecided pairs
    (h <= M only), kept for the ablation.

    The secant row of an undecided pair, h <= u (z - l) / (u - l) for z in [l, u] (l < 0 < u), is the
    concave envelope of relu over [l, u], written lam z - h >= lam l with lam = u / (u - l) in (0, 1)
    so that h has coefficient -1: unscaled, u z - (u - l) h >= u l had coefficients of order B^2 and
    the recomputed bound lost up to 0.2 on the zigzag's nodes with B = 100."""
    frame = node_frame(data, node, conic=conic)
    a0, a1 = data.slopes
    Phi, A, rhs, lower, upper, Z, fi, fk = assemble(
        frame.Zb, frame.mcc, frame.zlo, frame.zhi, frame.zmax, frame.lower, frame.upper, frame.convex,
        frame.concave, node.P, node.signs, a0, a1, data.where, data.positions, secant)
    return NodeQP(Phi=Phi, A=A, rhs=rhs, lower=lower, upper=upper, Z=Z, free=(fi, fk), p0=frame.Zb.shape[2])


def load_kernels() -> float:
    """Load the compiled kernels and the QP solver once (numba's first call in a process reads its
    registries and the cached machine code, ~0.2-0.3 s; after a checkout or an edit of a kernel it
    compiles them, 6-20 s); returns the seconds it took.  `solve_two_layer` calls it before its clock
    starts, as SCIP's time excludes loading SCIP, and reports it as ``kernel_load_seconds``."""
    import time

    began = time.perf_counter()
    import clarabel  # noqa: F401  (imported for its load time)

    small_qp.warm_up()
    one = np.ones((1, 1))
    Zb, mcc, zlo, zhi, zmax, lower, upper = frame(np.array([0.0, 1.0]), 0.0, 1.0, np.ones(1), np.zeros(1, np.int64),
                                                  one, np.zeros(1), np.ones(1), 0 * one, one, 1.0, 1.0, True, True)
    assemble(Zb, mcc, zlo, zhi, zmax, lower, upper, np.ones((1, 1), bool), np.ones((1, 1), bool),
             np.full((2, 1), UNDECIDED, np.int8), np.ones(1), 0.0, 1.0, np.arange(2), np.array([0.0, 1.0]), True)
    return time.perf_counter() - began


def z_range(data: TwoLayerData, node: DeepNode) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper), each (G, m2): bounds on z_pk over every network of the node (`deep_assemble.frame`).
    (Until 2026-12-05 phi was taken as non-negative, which held for ReLU only: with leaky ReLU and
    box 5, 20 of 400 random networks of a node violated the secant rows built on that range.)"""
    built = node_frame(data, node, conic=node.frame.conic if node.frame is not None else True)
    return built.zlo, built.zhi


def solve_qp(data: TwoLayerData, qp: NodeQP, *, compiled: bool = True):
    """(point, multipliers of A z >= 0 in risk units, loss slopes or None) from Clarabel; None when
    it gives no usable answer.  Squared loss with ``compiled``: the compiled interior point of
    `small_qp` first (every variable of a node QP has finite bounds; 5x faster on the deep-scip
    suite's QPs), Clarabel only when it did not converge or its answer is not finite; the absolute
    and hinge losses (an LP whose loss slopes feed `bound`) likewise, with `small_qp.solve_loss_lp`.

    Squared loss: variables (z, r), r = Phi z - y in the zero cone, objective (w / scale) ||r||^2
    scaled to O(1).  Absolute and hinge losses (an LP): variables (z, e) with e_i >= |f_i - y_i|
    (two rows) or e_i >= 1 - y_i f_i, e >= 0, objective (w / scale) sum e; the loss slopes
    s_i = (duals of e_i >= f_i - y_i minus those of e_i >= y_i - f_i) / (w / scale) in [-1, 1],
    or pi_i = dual of e_i >= 1 - y_i f_i / (w / scale) in [0, 1], feed `bound`.  The rows and the
    finite variable bounds go to the non-negative cone (W <= B D is implied by the rows)."""
    if compiled and data.loss == "squared":
        z, lam, converged = small_qp.solve_squared(qp.Phi, data.y, data.weight, _variance(data), qp.A, qp.rhs,
                                                   qp.lower, qp.upper)
        if converged and np.all(np.isfinite(z)) and np.all(np.isfinite(lam)):
            return z, lam, None
    if compiled and data.loss in ("absolute", "hinge"):
        z, lam, slopes, converged = small_qp.solve_loss_lp(qp.Phi, data.y, data.weight, _lp_scale(data), qp.A, qp.rhs,
                                                           qp.lower, qp.upper, hinge=data.loss == "hinge")
        if converged and np.all(np.isfinite(z)) and np.all(np.isfinite(lam)) and np.all(np.isfinite(slopes)):
            return z, lam, np.clip(slopes, -1.0 if data.loss == "absolute" else 0.0, 1.0)
    import clarabel  # imported here: only the two-layer search needs it

    n, N = qp.Phi.shape
    R = qp.A.shape[0]
    upper = np.flatnonzero(np.isfinite(qp.upper) & ~_implied_upper(data, N))
    lower = np.flatnonzero(np.isfinite(qp.lower))
    scale = _lp_scale(data) if data.loss != "squared" else _variance(data)
    weight = data.weight / scale
    loss_rows = {"squared": 0, "absolute": 2 * n, "hinge": n}[data.loss]
    head = n if data.loss == "squared" else loss_rows
    dense = np.zeros((head + R + upper.size + lower.size, N + n))
    b = np.zeros(dense.shape[0])
    if data.loss == "squared":
        dense[:n, :N], dense[:n, N:], b[:n] = qp.Phi, -np.eye(n), data.y
    elif data.loss == "absolute":  # -(e - (Phi z - y)) <= 0 and -(e + Phi z - y) <= 0
        dense[:n, :N], dense[:n, N:], b[:n] = qp.Phi, -np.eye(n), data.y
        dense[n:2 * n, :N], dense[n:2 * n, N:], b[n:2 * n] = -qp.Phi, -np.eye(n), -data.y
    else:  # -(e - 1 + y * Phi z) <= 0
        dense[:n, :N], dense[:n, N:], b[:n] = -data.y[:, None] * qp.Phi, -np.eye(n), -1.0
    dense[head:head + R, :N] = -qp.A
    b[head:head + R] = -qp.rhs
    dense[head + R + np.arange(upper.size), upper] = 1.0
    dense[head + R + upper.size + np.arange(lower.size), lower] = -1.0
    b[head + R:] = np.concatenate([qp.upper[upper], -qp.lower[lower]])
    if data.loss == "squared":
        Pm = _residual_hessian(N, n, 2.0 * weight)
        q = np.zeros(N + n)
        cones = [clarabel.ZeroConeT(n), clarabel.NonnegativeConeT(R + upper.size + lower.size)]
    else:
        Pm = sp.csc_matrix((N + n, N + n))
        q = np.concatenate([np.zeros(N), np.full(n, weight)])
        extra = n if data.loss == "hinge" else 0  # e >= 0
        dense = np.vstack([dense, np.hstack([np.zeros((extra, N)), -np.eye(n)[:extra]])])
        b = np.concatenate([b, np.zeros(extra)])
        cones = [clarabel.NonnegativeConeT(dense.shape[0])]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = SOLVER_TOL
    sol = clarabel.DefaultSolver(Pm, q, _csc(dense), b, cones, settings).solve()
    if str(sol.status) not in ACCEPTED:
        return None
    z = np.asarray(sol.x)[:N]
    duals = np.asarray(sol.z)
    lam = duals[head:head + R] * data.weight / weight  # in risk units
    slopes = None
    if data.loss == "absolute":
        slopes = np.clip((duals[:n] - duals[n:2 * n]) / weight, -1.0, 1.0)
    elif data.loss == "hinge":
        slopes = np.clip(duals[:n] / weight, 0.0, 1.0)
    if not (np.all(np.isfinite(z)) and np.all(np.isfinite(lam))):
        return None
    return z, lam, slopes


@functools.lru_cache(maxsize=8)
def _variance(data: TwoLayerData) -> float:
    """The squared loss's objective scale: the variance of y (at least 1e-12); cached per instance
    (frozen, hashed by identity): numpy's mean of a few labels cost a quarter of the compiled solve."""
    return max(float(np.mean((data.y - data.y.mean()) ** 2)), 1e-12)


@functools.lru_cache(maxsize=8)
def _lp_scale(data: TwoLayerData) -> float:
    """The absolute and hinge losses' objective scale: the baseline's loss per sample (per unit weight),
    at least 1e-6 max(1, |y|) (a zero baseline must not blow the objective up); cached per instance."""
    floor = 1e-6 * max(1.0, float(np.max(np.abs(data.y))))
    return max(data.baseline() / data.weight / max(data.y.size, 1), floor)


@functools.lru_cache(maxsize=64)
def _residual_hessian(N: int, n: int, value: float) -> sp.csc_matrix:
    """The objective's matrix: ``value`` on the diagonal of the n residual columns after the N others
    (cached: nodes share a handful of shapes, and scipy's checks cost as much as a small solve;
    Clarabel copies it, never writes it)."""
    indptr = np.concatenate([np.zeros(N + 1, dtype=np.int64), np.arange(1, n + 1, dtype=np.int64)])
    return sp.csc_matrix((np.full(n, value), np.arange(N, N + n), indptr), shape=(N + n, N + n))


def _csc(dense: np.ndarray) -> sp.csc_matrix:
    """``dense`` in compressed columns, built from its non-zeros directly (scipy's conversion of a
    dense array went through COO and took as long as Clarabel's solve on these small QPs)."""
    cols, rows = np.nonzero(dense.T)  # column-major order, rows sorted within each column
    indptr = np.zeros(dense.shape[1] + 1, dtype=np.int64)
    np.cumsum(np.bincount(cols, minlength=dense.shape[1]), out=indptr[1:])
    return sp.csc_matrix((dense.T[cols, rows], rows.astype(np.int64), indptr), shape=dense.shape)


def _implied_upper(data: TwoLayerData, N: int) -> np.ndarray:
    """Columns whose upper bound the rows imply (W_kj <= D_j M_kj <= D_j B)."""
    m1, m2 = data.widths
    mask = np.zeros(N, dtype=bool)
    mask[Columns.of(m1, m2).W] = True
    return mask


def bound(data: TwoLayerData, qp: NodeQP, z: np.ndarray, lam: np.ndarray, slopes: np.ndarray | None = None) -> float:
    """A certified lower bound on the node problem from any point z, multipliers lam >= 0 and (absolute,
    hinge) loss slopes; extended precision.

    Squared: with the tangent slopes mu = 2 w (Phi z - y), every feasible z' obeys
        w ||Phi z' - y||^2 >= w ||Phi z - y||^2 + mu . Phi (z' - z)
                           >= w ||Phi z - y||^2 - mu . Phi z + lam . rhs + (Phi^T mu - A^T lam) . z'
    (lam . (A z' - rhs) >= 0).  Absolute: |r| >= s r for s in [-1, 1], so the risk
    >= -w s . y + lam . rhs + (w Phi^T s - A^T lam) . z'.  Hinge: max(0, 1 - y f) >= pi (1 - y f) for
    pi in [0, 1], so the risk >= w sum pi + lam . rhs + (-w Phi^T (pi y) - A^T lam) . z'.  In each
    the last term is at least its minimum over the variable bounds."""
    ld = np.longdouble
    lo, hi = qp.lower.astype(ld), qp.upper.astype(ld)
    lam = np.maximum(lam, 0.0).astype(ld)
    Phi = qp.Phi.astype(ld)
    w, y = ld(data.weight), data.y.astype(ld)
    offset = lam @ qp.rhs.astype(ld)
    if data.loss == "squared":
        zc = np.clip(z, qp.lower, qp.upper).astype(ld)
        resid = Phi @ zc - y
        mu = 2 * w * resid
        r = Phi.T @ mu - qp.A.T.astype(ld) @ lam
        return float(w * (resid @ resid) - mu @ (Phi @ zc) + offset + np.sum(np.minimum(r * lo, r * hi)))
    if data.loss == "absolute":
        s_ = np.clip(np.asarray(slopes, dtype=float), -1.0, 1.0).astype(ld)
        r = w * (Phi.T @ s_) - qp.A.T.astype(ld) @ lam
        return float(-w * (s_ @ y) + offset + np.sum(np.minimum(r * lo, r * hi)))
    pi = np.clip(np.asarray(slopes, dtype=float), 0.0, 1.0).astype(ld)
    r = -w * (Phi.T @ (pi * y)) - qp.A.T.astype(ld) @ lam
    return float(w * np.sum(pi) + offset + np.sum(np.minimum(r * lo, r * hi)))
