"""Pattern branch-and-bound: the certified global minimum without pattern binaries (DESIGN §4b).

For a positively homogeneous activation sigma(g) = alpha_0 g + (alpha_1 - alpha_0) relu(g) and the
squared loss, a node of the search is a *partial pattern* P (P_ij = 1: sample i on the top piece of
unit j, 0: bottom piece, -1: undecided) in one sign class.  In the scaled variables of DESIGN §3
(g_ij = u~_j . x_i + a~_j) every completion of P lies in the convex set

    h_ij = g_ij and g_ij >= 0    (P_ij = 1)        h_ij = 0 and g_ij <= 0    (P_ij = 0)
    h_ij >= 0, h_ij >= g_ij, 0 <= h_ij <= M_i      (P_ij = -1; M_i = B (||x_i||_1 + 1))
    h_kj <= sum_s lambda_s h_sj   for x_k = sum_s lambda_s x_s  (`convexity_simplices`)

because h_ij = relu(g_ij) is a convex function of x_i for every unit.  With
f_i = c + sum_j s_j (alpha_0 g_ij + (alpha_1 - alpha_0) h_ij), the convex QP

    min  w sum_i (f_i - y_i)^2   over that set and the box

is a lower bound on every cell of the node.  When P is complete it is the cell problem itself.
Between, it keeps every sample in the loss: a unit's undecided samples may bend only convexly
between its decided neighbours (in 1-D: below the secant of the two samples around the kink).

The search is best-first.  Every node's bound is a Lagrangian bound recomputed in numpy (extended
precision) from the QP solver's point and multipliers, valid for any multipliers, so the solver's
answer is never trusted.  A node is pruned when its bound reaches the incumbent minus half the
tolerance.  Branching: the undecided pair (i, j) where the relaxation's h_ij exceeds relu(g_ij)
the most (of the unit with the largest total excess); for d = 1 each child's pattern is completed
by the threshold rule (a unit's top-piece samples form a prefix or suffix of the sorted inputs).
Units of equal sign are interchangeable, so their pattern columns are kept lexicographically
non-increasing.  The relaxation's own point, evaluated as a network, is a candidate incumbent
(its pattern's cell is solved exactly by `CellSolver`).

The node QPs are solved by Clarabel: HiGHS's QP solver stopped with a solve error or ran into its
time limit on these QPs (singular Hessian, many degenerate rows) in 8 of the first 40 nodes of a
measured instance; Clarabel solved all.  Its answer only supplies multipliers: the bound is ours.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from milpland.cells import Cell
from milpland.errors import MilplandError
from milpland.formulation import containing_simplices
from milpland.scaled import ScaledParams, sign_class
from milpland.spec import InstanceSpec
from milpland.unit_hull import UnitHull, hull_applies

BRANCHING = ("excess", "middle")
RELAXATIONS = ("auto", "hull", "convexity")
UNDECIDED = -1
VIOLATION_TOL = 1e-9  # h - relu(g) below this (relative to the weights) is no violation
SOLVER_TOL = 1e-10


@dataclass(frozen=True)
class BnbOptions:
    """The search's techniques, each switchable for the ablation (milpland/ablation.py).

    relaxation: "hull" (the convex hull of each unit's graph over its cone, `milpland.unit_hull`;
        falls back to "convexity" where it cannot be built), "convexity" (h >= relu(g) variables
        with convexity rows, solved by Clarabel) or "auto": hull for d >= 2, convexity for d = 1
        (in 1-D both took the same nodes -- 63/65 at n = 80, 173/169 at n = 160, width 2 -- and
        the convexity QPs were 10x faster at n = 160; at d = 2 only the hull certified n >= 20).
    branching: "excess" (the pair whose h exceeds relu(g) most) or "middle" (the middle undecided
        sample of the unit with most undecided samples).
    convexity: the convexity rows of the "convexity" relaxation (without them an undecided h is
        bounded only by h >= relu(g), M_i).
    symmetry: lexicographic order of equal-sign units' pattern columns.
    relaxation_incumbents: the relaxation's weights, as a network, are offered as incumbents.
    """

    relaxation: str = "auto"
    branching: str = "excess"
    convexity: bool = True
    symmetry: bool = True
    relaxation_incumbents: bool = True

    def __post_init__(self):
        if self.relaxation not in RELAXATIONS:
            raise MilplandError(f"relaxation: unknown {self.relaxation!r}; use one of {', '.join(RELAXATIONS)}")
        if self.branching not in BRANCHING:
            raise MilplandError(f"branching: unknown {self.branching!r}; use one of {', '.join(BRANCHING)}")


def applies(spec: InstanceSpec) -> str | None:
    """None when the pattern branch-and-bound handles `spec`, else the reason it does not."""
    act = spec.network.activation
    if spec.network.depth != 1:
        return "one hidden layer only"
    if not act.homogeneous or act.n_pieces != 2:
        return f"needs a positively homogeneous two-piece activation, not {act.name}"
    if spec.loss.kind != "squared":
        return f"needs the squared loss, not {spec.loss.kind}"
    return None


def output_bias_bound(spec: InstanceSpec) -> float:
    """|c| of an optimal point: c = mean(y - rest) with |rest_i| <= m (|a0| + |a1 - a0|) M_i."""
    alpha = spec.network.activation.slopes
    reach = abs(alpha[0]) + abs(alpha[1] - alpha[0])
    M = float(spec.box.weight) * (np.abs(spec.X).sum(axis=1) + 1.0)
    return float(np.max(np.abs(spec.y)) + spec.width * reach * M.max() + 1.0)


def barycentric(X: np.ndarray, k: int, S) -> np.ndarray:
    """lambda with x_k = sum_s lambda_s x_s and sum_s lambda_s = 1."""
    V = np.vstack([X[list(S)].T, np.ones(len(S))])
    return np.linalg.solve(V, np.append(X[k], 1.0))


def convexity_simplices(X: np.ndarray, *, neighbours: int = 10, per_sample: int = 4) -> list:
    """(k, S, lambda): x_k inside the simplex of the samples S.  d = 1: each sample between its two
    sorted neighbours (these imply convexity along the whole line); d >= 2: the smallest simplices
    of near neighbours (`formulation.containing_simplices`)."""
    n, d = X.shape
    if d == 1:
        order = np.argsort(X[:, 0], kind="stable")
        out = []
        for a, b, c in zip(order[:-2], order[1:-1], order[2:]):
            xa, xb, xc = X[a, 0], X[b, 0], X[c, 0]
            if xc > xa:
                lam = (xc - xb) / (xc - xa)
                out.append((int(b), (int(a), int(c)), np.array([lam, 1.0 - lam])))
        return out
    return [(k, S, barycentric(X, k, S))
            for k, S in containing_simplices(X, neighbours=neighbours, per_sample=per_sample)]


# ----------------------------------------------------------------------------------------------
# The node relaxation
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NodeProblem:
    """min w ||Phi z - y||^2  s.t.  A z >= 0,  lower <= z <= upper;  z = (U (m*d), a (m), c, h (free pairs))."""

    Phi: np.ndarray
    A: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    free_i: np.ndarray
    free_j: np.ndarray


class Relaxation:
    """Builds the node problems of one instance and bounds them (see the module docstring)."""

    def __init__(self, spec: InstanceSpec, *, convexity: bool = True):
        reason = applies(spec)
        if reason:
            raise MilplandError(f"pattern branch-and-bound: {reason}")
        self.X, self.y = spec.X, spec.y
        self.n, self.d = spec.X.shape
        self.m = spec.width
        self.w = float(spec.loss.weight(spec.n))
        self.alpha = np.asarray(spec.network.activation.slopes, dtype=float)
        self.has_c = bool(spec.network.output_bias)
        self.B = float(spec.box.weight)
        self.M = self.B * (np.abs(self.X).sum(axis=1) + 1.0)
        self.p = self.m * (self.d + 1) + 1  # the c column is always there; fixed to 0 without bias
        self.c_bound = output_bias_bound(spec)
        self.simplices = convexity_simplices(self.X) if convexity else []
        self.scale = max(float(np.mean((self.y - self.y.mean()) ** 2)), 1e-12)

    def problem(self, P: np.ndarray, signs: np.ndarray) -> NodeProblem:
        n, m, d, p = self.n, self.m, self.d, self.p
        free = P == UNDECIDED
        fi, fj = np.nonzero(free)
        hcol = np.full((n, m), -1, dtype=np.int64)
        hcol[fi, fj] = p + np.arange(fi.shape[0])
        N = p + fi.shape[0]
        a0, a1 = self.alpha
        Phi = np.zeros((n, N))
        Phi[:, p - 1] = 1.0
        coef = np.where(free, a0, self.alpha[np.maximum(P, 0)]) * signs[None, :]  # of g_ij in f_i
        for j in range(m):
            Phi[:, j * d:(j + 1) * d] = coef[:, j:j + 1] * self.X
        Phi[:, m * d:m * d + m] = coef
        Phi[fi, hcol[fi, fj]] = (a1 - a0) * signs[fj]
        A = np.vstack([self._decided_rows(P, N), self._excess_rows(fi, fj, hcol, N),
                       self._convexity_rows(P, hcol, N)])
        lower, upper = np.full(N, -np.inf), np.full(N, np.inf)
        lower[: p - 1], upper[: p - 1] = -self.B, self.B
        if not self.has_c:
            lower[p - 1] = upper[p - 1] = 0.0
        lower[p:], upper[p:] = 0.0, self.M[fi]
        return NodeProblem(Phi=Phi, A=A, lower=lower, upper=upper, free_i=fi, free_j=fj)

    def _g_row(self, i: int, j: int, N: int, weight: float = 1.0) -> np.ndarray:
        row = np.zeros(N)
        row[j * self.d:(j + 1) * self.d] = weight * self.X[i]
        row[self.m * self.d + j] = weight
        return row

    def _decided_rows(self, P: np.ndarray, N: int) -> np.ndarray:
        """side * g_ij >= 0 for the decided pairs; in 1-D only the extreme inputs of each side
        (g is affine in x, so they imply the others)."""
        rows = []
        for j in range(self.m):
            for piece, side in ((1, 1.0), (0, -1.0)):
                idx = np.flatnonzero(P[:, j] == piece)
                if self.d == 1 and idx.size > 2:
                    xs = self.X[idx, 0]
                    idx = np.unique([idx[np.argmin(xs)], idx[np.argmax(xs)]])
                rows += [self._g_row(int(i), j, N, side) for i in idx]
        return np.array(rows).reshape(-1, N)

    def _excess_rows(self, fi, fj, hcol, N: int) -> np.ndarray:
        """h_ij - g_ij >= 0 for the undecided pairs."""
        rows = np.zeros((fi.shape[0], N))
        for r, (i, j) in enumerate(zip(fi, fj)):
            rows[r] = -self._g_row(int(i), int(j), N)
            rows[r, hcol[i, j]] = 1.0
        return rows

    def _h_term(self, row: np.ndarray, P, hcol, i: int, j: int, weight: float) -> None:
        """row += weight * h_ij, with h_ij = its column, g_ij or 0 by the pattern."""
        if P[i, j] == UNDECIDED:
            row[hcol[i, j]] += weight
        elif P[i, j] == 1:
            row += self._g_row(i, j, row.shape[0], weight)

    def _convexity_rows(self, P, hcol, N: int) -> np.ndarray:
        """sum_s lambda_s h_sj - h_kj >= 0 for the simplices with an undecided corner (with all
        corners decided the row is implied by the decided rows)."""
        rows = []
        undecided = P == UNDECIDED
        for k, S, lam in self.simplices:
            touched = undecided[k] | undecided[list(S)].any(axis=0)
            for j in np.flatnonzero(touched):
                row = np.zeros(N)
                self._h_term(row, P, hcol, k, int(j), -1.0)
                for s, weight in zip(S, lam):
                    self._h_term(row, P, hcol, s, int(j), float(weight))
                rows.append(row)
        return np.array(rows).reshape(-1, N)

    def propagate(self, P: np.ndarray) -> np.ndarray | None:
        """What the pattern forces (d = 1: the threshold rule); None when it is not realisable."""
        return propagate_1d(P, self.X[:, 0]) if self.d == 1 else P

    def evaluate(self, node: Node) -> NodeOutcome:
        prob = self.problem(node.pattern, node.signs)
        solved = solve_node(prob, self)
        if solved is None:
            return NodeOutcome(bound=node.bound, theta=None, excess=None)
        z, lam = solved
        bound = max(node.bound, self.lower_bound(prob, z, lam))
        theta = self.theta(z, node.signs)
        G = theta.scaled_pre_activations(self.X)
        excess = np.zeros((self.n, self.m))
        scale = max(1.0, float(np.max(np.abs(z[: self.p - 1]))))
        gap = z[self.p:] - np.maximum(G[prob.free_i, prob.free_j], 0.0)
        excess[prob.free_i, prob.free_j] = np.where(gap > VIOLATION_TOL * scale, gap, 0.0)
        return NodeOutcome(bound=bound, theta=theta, excess=excess)

    def theta(self, z: np.ndarray, signs: np.ndarray) -> ScaledParams:
        """The network held in the parameter columns of z."""
        m, d, p = self.m, self.d, self.p
        return ScaledParams(U=z[: m * d].reshape(m, d).copy(), a=z[m * d:m * d + m].copy(), rho=np.zeros(m),
                            c=float(z[p - 1]), signs=np.asarray(signs, dtype=float).copy())

    def lower_bound(self, prob: NodeProblem, z: np.ndarray, lam: np.ndarray) -> float:
        """A certified lower bound on the node problem from any point z and multipliers lam >= 0.

        With mu = 2 (Phi z - y) (the tangent slopes at z) and r = Phi^T mu - A^T lam, every feasible
        z' obeys  sum (f' - y)^2 >= sum (f - y)^2 - gap  with
            gap = r.z - min_box r.z' + lam.(A z) >= 0
        (tangent inequality, lam.A z' >= 0, and the box; c in [-c_bound, c_bound], which holds an
        optimal point).  Computed in extended precision; the bound is w (sum (f - y)^2 - gap).
        """
        ld = np.longdouble
        lower, upper = prob.lower.copy(), prob.upper.copy()
        c = self.p - 1
        if self.has_c:
            lower[c], upper[c] = -self.c_bound, self.c_bound
        z = np.clip(z, lower, upper)
        resid = prob.Phi.astype(ld) @ z.astype(ld) - self.y.astype(ld)
        lam = np.maximum(lam, 0.0).astype(ld)
        r = prob.Phi.T.astype(ld) @ (2 * resid) - prob.A.T.astype(ld) @ lam
        box = r @ z.astype(ld) - np.sum(np.minimum(r * lower.astype(ld), r * upper.astype(ld)))
        gap = box + lam @ (prob.A.astype(ld) @ z.astype(ld))
        return float(self.w * (resid @ resid - max(gap, ld(0))))


def solve_node(prob: NodeProblem, relaxation: Relaxation) -> tuple[np.ndarray, np.ndarray] | None:
    """(z, multipliers of A z >= 0) from Clarabel, or None when it reports no solution.

    Variables (z, r) with r = Phi z - y (zero cone), objective (w / scale) ||r||^2 (scaled to O(1)),
    A z >= 0 and the finite box bounds as non-negative cones."""
    import clarabel  # imported here: the MILP path does not need it

    n, N = prob.Phi.shape
    R = prob.A.shape[0]
    finite_hi = np.flatnonzero(np.isfinite(prob.upper))
    finite_lo = np.flatnonzero(np.isfinite(prob.lower))
    eye = sp.identity(N, format="csr")
    A = sp.vstack([
        sp.hstack([sp.csr_matrix(prob.Phi), -sp.identity(n)]),
        sp.hstack([sp.csr_matrix(-prob.A), sp.csr_matrix((R, n))]),
        sp.hstack([eye[finite_hi], sp.csr_matrix((len(finite_hi), n))]),
        sp.hstack([-eye[finite_lo], sp.csr_matrix((len(finite_lo), n))]),
    ]).tocsc()
    b = np.concatenate([relaxation.y, np.zeros(R), prob.upper[finite_hi], -prob.lower[finite_lo]])
    weight = relaxation.w / relaxation.scale
    P = sp.diags(np.r_[np.zeros(N), np.full(n, 2.0 * weight)]).tocsc()
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = SOLVER_TOL
    cones = [clarabel.ZeroConeT(n), clarabel.NonnegativeConeT(R + len(finite_hi) + len(finite_lo))]
    sol = clarabel.DefaultSolver(P, np.zeros(N + n), A, b, cones, settings).solve()
    if str(sol.status) not in ("Solved", "AlmostSolved"):
        return None
    z = np.asarray(sol.x)[:N]
    lam = np.asarray(sol.z)[n:n + R] / weight  # multipliers in units of ||r||^2
    return z, lam


# ----------------------------------------------------------------------------------------------
# Patterns: propagation, symmetry, branching
# ----------------------------------------------------------------------------------------------


def propagate_1d(P: np.ndarray, x: np.ndarray) -> np.ndarray | None:
    """Complete what the threshold rule forces (d = 1): a unit with top-piece inputs A and
    bottom-piece inputs N is rising (kink tau in [max N, min A]) or falling; every input beyond
    min A (rising) is on top, every input before max N below.  None when neither fits."""
    P = P.copy()
    for j in range(P.shape[1]):
        top, bottom = x[P[:, j] == 1], x[P[:, j] == 0]
        if top.size == 0 or bottom.size == 0:
            continue
        rising, falling = bottom.max() <= top.min(), top.max() <= bottom.min()
        if not (rising or falling):
            return None
        if rising and falling:
            continue  # every decided input at one x: g = 0 there, nothing forced
        free = P[:, j] == UNDECIDED
        if rising:
            P[free & (x > top.min()), j] = 1
            P[free & (x < bottom.max()), j] = 0
        else:
            P[free & (x < top.max()), j] = 1
            P[free & (x > bottom.min()), j] = 0
    return P


def lex_ordered(P: np.ndarray, signs: np.ndarray) -> bool:
    """False when two neighbouring units of equal sign are decided to be out of lexicographic
    order (column j < column j + 1 at the first decided difference); undecided entries stop the
    comparison.  Permuting equal-sign units maps cells to cells of equal risk, so one order suffices."""
    for j in range(P.shape[1] - 1):
        if signs[j] != signs[j + 1]:
            continue
        a, b = P[:, j], P[:, j + 1]
        stop = np.flatnonzero((a == UNDECIDED) | (b == UNDECIDED) | (a != b))
        if stop.size and a[stop[0]] != UNDECIDED and b[stop[0]] != UNDECIDED and a[stop[0]] < b[stop[0]]:
            return False
    return True


def branching_pair(P: np.ndarray, excess: np.ndarray, rule: str = "excess") -> tuple[int, int]:
    """The undecided pair with the largest excess h - relu(g) in the unit with the largest total
    excess; without excess (or with rule "middle"), the middle undecided sample (in the order of
    `excess` rows) of the unit with most undecided samples."""
    undecided = P == UNDECIDED
    excess = np.where(undecided, excess, 0.0)
    if rule == "excess" and excess.max(initial=0.0) > 0.0:
        j = int(np.argmax(excess.sum(axis=0)))
        return int(np.argmax(np.where(undecided[:, j], excess[:, j], -1.0))), j
    j = int(np.argmax(undecided.sum(axis=0)))
    idx = np.flatnonzero(undecided[:, j])
    return int(idx[len(idx) // 2]), j


# ----------------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------------


@dataclass(order=True)
class Node:
    bound: float
    tiebreak: int
    pattern: np.ndarray = field(compare=False)
    signs: np.ndarray = field(compare=False)
    warm: np.ndarray | None = field(default=None, compare=False)  # the parent's relaxation point


@dataclass
class NodeOutcome:
    """What one node's relaxation gave: its bound, the relaxation's network, each pair's excess
    (how far the relaxation is from the unit's graph there) and a warm start for the children."""

    bound: float
    theta: ScaledParams | None
    excess: np.ndarray | None
    warm: np.ndarray | None = None


class HullRelaxation:
    """The hull relaxation (`milpland.unit_hull`) behind the interface of `Relaxation`."""

    def __init__(self, spec: InstanceSpec, *, gap_tol: float = 0.0, deadline: float = np.inf):
        self.X, self.n, self.m = spec.X, spec.n, spec.width
        self.gap_tol = gap_tol
        self.deadline = deadline  # a node solve past it stops with a valid, weaker bound
        self.hull = UnitHull(spec.X, spec.y, spec.network.activation, width=spec.width,
                             box_weight=float(spec.box.weight), output_bias=bool(spec.network.output_bias),
                             c_bound=output_bias_bound(spec), loss_weight=float(spec.loss.weight(spec.n)))

    def propagate(self, P: np.ndarray) -> np.ndarray:
        return self.hull.propagate(P)

    def evaluate(self, node: Node) -> NodeOutcome:
        prob = self.hull.problem(node.pattern, node.signs)
        z, bound = self.hull.solve(prob, node.warm, gap_tol=self.gap_tol, deadline=self.deadline)
        weights = self.hull.ray_weights(prob, z)
        theta, excess = self.hull.network(weights, z[-1], node.signs)
        excess[node.pattern != UNDECIDED] = 0.0
        scale = max(1.0, float(np.abs(theta.U).max(initial=0.0)), float(np.abs(theta.a).max(initial=0.0)))
        excess[excess <= VIOLATION_TOL * scale] = 0.0
        return NodeOutcome(bound=max(node.bound, bound), theta=theta, excess=excess, warm=weights)


def uses_hull(spec: InstanceSpec, options: BnbOptions) -> bool:
    """Whether bnb bounds the nodes of `spec` by the hull relaxation (else the convexity one)."""
    wanted = options.relaxation == "hull" or (options.relaxation == "auto" and spec.d >= 2)
    return wanted and hull_applies(spec.X) is None


def make_relaxation(spec: InstanceSpec, options: BnbOptions, say, *, gap_tol: float = 0.0,
                    deadline: float = np.inf) -> Relaxation | HullRelaxation:
    """The node relaxation `options` asks for; the convexity relaxation where the hull cannot be
    built.  gap_tol: how much weaker than exact (risk units) a hull node bound may be."""
    if uses_hull(spec, options):
        return HullRelaxation(spec, gap_tol=gap_tol, deadline=deadline)
    if options.relaxation == "hull" or (options.relaxation == "auto" and spec.d >= 2):
        say(f"bnb: hull relaxation not available ({hull_applies(spec.X)}); using the convexity relaxation")
    return Relaxation(spec, convexity=options.convexity)


def children(node: Node, i: int, j: int, relaxation, x_sorted_order: np.ndarray | None,
             outcome: NodeOutcome, counter, *, symmetry: bool = True) -> list[Node]:
    """The two children (i, j) -> bottom / top, completed by what the relaxation's propagation
    forces and kept only when lexicographically ordered."""
    out = []
    for piece in (0, 1):
        P = node.pattern.copy()
        P[i, j] = piece
        P = relaxation.propagate(P)
        if P is None:
            continue
        ordered = P if x_sorted_order is None else P[x_sorted_order]
        if not symmetry or lex_ordered(ordered, node.signs):
            out.append(Node(bound=outcome.bound, tiebreak=next(counter), pattern=P, signs=node.signs,
                            warm=outcome.warm))
    return out


def root_nodes(spec: InstanceSpec, classes: list[int], counter) -> list[Node]:
    empty = np.full((spec.n, spec.width), UNDECIDED, dtype=np.int8)
    return [Node(bound=0.0, tiebreak=next(counter), pattern=empty.copy(), signs=sign_class(k, spec.width))
            for k in classes]


def class_bounds(heap: list[Node], classes: list[int], cutoff: float) -> dict[int, float]:
    """Per sign class (number of positive units) the smallest open bound (the cutoff if none)."""
    out = {k: cutoff for k in classes}
    for node in heap:
        k = int(np.sum(node.signs > 0))
        out[k] = min(out[k], node.bound)
    return out


def push_all(heap: list[Node], nodes: list[Node]) -> None:
    for node in nodes:
        heapq.heappush(heap, node)


def search(spec: InstanceSpec, incumbent, cells, classes: list[int], *, deadline: float, abs_tol: float,
           say, options: BnbOptions = BnbOptions()) -> list:
    """Best-first search over the partial patterns of the sign classes `classes` (numbers of positive
    units), improving `incumbent` (solve.Incumbent) in place; one `solve.ClassOutcome` per class.

    A class's lower bound is the smallest bound of its open nodes and of its solved leaves, capped
    by the final cutoff (every pruned node's bound reached the cutoff in force then, which only falls).
    """
    from milpland.solve import ClassOutcome, consider, tolerance  # here: solve imports this module

    started = time.perf_counter()
    # a node bound this much below its relaxation's minimum costs at most a few nodes near the end
    relaxation = make_relaxation(spec, options, say, gap_tol=tolerance(incumbent.risk, spec, abs_tol) / 10,
                                 deadline=deadline)
    counter = itertools.count()
    heap = root_nodes(spec, classes, counter)
    heapq.heapify(heap)
    order = np.argsort(spec.X[:, 0], kind="stable") if spec.d == 1 else None
    outcomes = {k: ClassOutcome(n_positive=k, lower_bound=0.0, complete=False) for k in classes}
    leaf_floor = {k: np.inf for k in classes}
    last_report = started

    def cutoff() -> float:
        return incumbent.risk - tolerance(incumbent.risk, spec, abs_tol) / 2

    while heap and heap[0].bound < cutoff() and time.perf_counter() < deadline:
        node = heapq.heappop(heap)
        k = int(np.sum(node.signs > 0))
        outcomes[k].nodes += 1
        result = relaxation.evaluate(node)
        if result.bound >= cutoff():
            continue
        if result.theta is not None and options.relaxation_incumbents:
            _try_relaxation_point(spec, result.theta, cells, incumbent, outcomes[k])
        if (node.pattern != UNDECIDED).all():
            cell = Cell(pattern=node.pattern.astype(int), signs=node.signs)
            cell_result = cells.solve(cell)
            consider(incumbent, cell_result, cell, np.inf, spec, outcomes[k])
            floor = result.bound
            if cell_result.status == "optimal" and np.isfinite(cell_result.lower_bound):
                floor = max(floor, cell_result.lower_bound)
            leaf_floor[k] = min(leaf_floor[k], floor)
            continue
        if result.bound >= cutoff():
            continue
        excess = result.excess if result.excess is not None else np.zeros(node.pattern.shape)
        if options.branching == "middle" and order is not None:  # middle of the sorted undecided inputs
            i, j = branching_pair(node.pattern[order], excess[order], "middle")
            i = int(order[i])
        else:
            i, j = branching_pair(node.pattern, excess, options.branching)
        push_all(heap, children(node, i, j, relaxation, order, result, counter, symmetry=options.symmetry))
        if time.perf_counter() - last_report > 2.0:
            last_report = time.perf_counter()
            say(f"{sum(o.nodes for o in outcomes.values())} nodes, bound {heap[0].bound if heap else cutoff():.6g}, "
                f"best {incumbent.risk:.6g}, {len(heap)} open, {last_report - started:.1f} s")
    final = cutoff()
    open_bounds = class_bounds([n for n in heap if n.bound < final], classes, final)
    seconds = time.perf_counter() - started
    for k, outcome in outcomes.items():
        outcome.lower_bound = max(min(open_bounds[k], leaf_floor[k], final), 0.0)
        outcome.complete = open_bounds[k] >= final
        outcome.solve_seconds = seconds / len(classes)
    return [outcomes[k] for k in classes]


def _try_relaxation_point(spec: InstanceSpec, theta: ScaledParams, cells, incumbent, outcome) -> None:
    """The relaxation's weights as a network: when its numpy risk beats the incumbent, its own
    pattern's cell is solved exactly and offered as the incumbent."""
    from milpland.solve import consider  # here: solve imports this module

    act = spec.network.activation
    if spec.loss.risk(theta.forward(spec.X, act), spec.y) >= incumbent.risk:
        return
    cell = Cell.of_scaled(theta, spec.X, act)
    consider(incumbent, cells.solve(cell), cell, np.inf, spec, outcome)
