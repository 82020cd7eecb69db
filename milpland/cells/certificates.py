"""Is the optimum of a cell a local minimum of the training risk?  (DESIGN §3, §5)

Let C be a closed cell (pattern and signs), R_C its convex cell problem in the scaled
variables theta~ (DESIGN §3), R* its optimum over the box and F the set of its optimal points.

**The optimal face.**  For the squared loss the risk is strictly convex in the fitted vector
f, so f* is unique and F = {theta~ in C and the box : Phi_C theta~ = f*}: linear equations.
For the absolute and hinge losses F is the polyhedron {(theta~, t) : cell rows, epigraph rows,
w sum t <= R*} (its LP optimality), with R* relaxed by FACE_RTOL.

**Which point of F to examine.**  Every row that is tight at a relative-interior point of F
is tight on all of F, and so is every piece that contains such a point; hence the closed
cells containing a relative-interior point contain all of F, and a relative-interior point
has the fewest neighbouring cells: if any point of F is a local minimum, a relative-interior
one is.  (With the other sign of a zero unit this needs the lifted inputs (x_i, 1) to span
R^(d+1): otherwise a unit could be zero at the examined point and non-zero elsewhere in F.)
A relative-interior point is found with LP rounds: maximise sum_r min(slack_r, 1) over F;
rows still at zero are maximised alone in the next round; a round in which none of them can
become positive proves they are implicit equalities of F; the average of the rounds' points
has every other row positive.  It is then averaged with the point of F whose smallest
non-tight slack is largest (one more LP), and projected onto the affine hull of the tight
rows (and the fitted-value equations), which removes the LP solver's 1e-9 tolerances.

Rows are normalised, so slacks are Euclidean distances in theta~; "tight" means a slack
below TIGHT_TOL * max(1, |theta~|_inf).  The rows are the signed cell rows, the box bounds and
(non-homogeneous activations) rho_j >= 0.

**The certificate at the examined point theta~0.**

- Limit points: ordinary weights realise a point of theta~-space only if rho_j > 0 or the whole
  unit is zero (v_j = 0 forces u~_j = a~_j = 0).  When rho_j = 0 on all of F (non-homogeneous
  activations), F is restricted to unit j being zero; if that leaves nothing, the cell's
  optimum is approached only as |w_j| -> inf: *not attained*, no local minimum in this cell.
- A box row tight on all of F: *box-limited* (the optimum is a minimum over the box only;
  `CellResult.box_active` is not used: it holds the fitted values fixed, which for the
  absolute and hinge losses are not unique).
- No cell row tight and no zero unit: theta~0 is strictly inside its cell, where R = R_C
  near theta~0, so it is a local minimum in theta~-space, hence in theta-space (the map
  theta -> theta~ is continuous): *interior*.  Its margin is the largest distance of an
  optimal point to the cell's walls (an LP), its valley dimension dim null(Phi_C).
- Otherwise *boundary*: near theta~0 the parameter space is the union of the closed cells C'
  containing theta~0 -- every (sample, unit) pair keeps its piece except the tied pairs,
  which may take any piece containing theta~0, and a unit whose scaled weights are all zero
  may also take the other sign.  On each C' the risk is the convex R_{C'}, so theta~0 is a
  local minimum of R iff it minimises every such R_{C'}, i.e. iff min R_{C'} >= R(theta~0)
  - tol for all of them.  It suffices to take the strictly realisable C' (their closures
  cover a neighbourhood), and because the cell rows of different units are separate, those
  are products of realisable unit patterns consistent with the allowed pieces.  Where the
  loss is differentiable in f at theta~0 (squared loss; absolute loss without a zero residual;
  hinge loss without y_i f_i = 1), R_{C'} is differentiable there, optimality on a convex set
  is the first-order condition, and that splits over the units' tangent cones (the gradient
  in f is the same in every C'): it suffices to change one unit at a time (a sum over units
  instead of a product).  Otherwise every combination is compared, interchangeable units as
  multisets.  Each C' is solved exactly and verified by `CellSolver` (and cached): a verified
  point of C' below R(theta~0) - tol proves a descent direction from theta~0 (convexity of C'
  and R_{C'}).  The outcome depends only on the neighbourhood (the allowed choices per unit)
  and R(theta~0), so cells sharing them share it.
  Valley dimension: dim null of Phi_C stacked with the tight rows (and the columns held at 0).

Tolerances: a neighbour counts as better when its verified optimum is below
R(theta~0) - (NEIGHBOUR_RTOL R(theta~0) + floor), floor = RISK_FLOOR_RTOL x the risk of the
best constant.  Numerical rank: singular values above RANK_RTOL x the largest one.
A minimum whose basin is thinner than TIGHT_TOL is reported as a boundary point and judged
with its neighbours (conservative).
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from dataclasses import dataclass, replace

import highspy
import numpy as np

from milpland.cells.arrangement import Realizer, unit_patterns
from milpland.cells.minima import LocalMinimum
from milpland.cells.problem import FEAS_TOL, Cell, CellProblem, CellResult, CellSolver
from milpland.errors import MilplandError
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import InstanceSpec

TIGHT_TOL = 1e-7  # slack (distance) below which a row is tight, relative to max(1, |theta~|_inf)
ZERO_TOL = 1e-9  # a unit is zero when all its scaled weights are below this (same relative scale)
FACE_RTOL = 1e-10  # LP losses: the optimal face is risk <= R* (1 + FACE_RTOL) + floor
NEIGHBOUR_RTOL = 1e-8  # a neighbouring cell is better when below R (1 - NEIGHBOUR_RTOL) - floor
RISK_FLOOR_RTOL = 1e-11  # absolute floor of the risk tolerances, relative to the best constant's risk
RANK_RTOL = 1e-9  # numerical rank: singular values above this times the largest
SLACK_CAP = 1.0  # slacks are maximised up to this distance
MAX_ROUNDS = 50
MAX_NEIGHBOURS = 20000  # absolute/hinge loss: more neighbouring cells than this -> undetermined
NUMPY_RTOL = 1e-9  # the original-space forward pass must reproduce the cell risk this closely
FIT_RTOL = 1e-6  # two minima are the same when their fitted values agree this closely
HIGHS_INF = highspy.kHighsInf

VERDICTS = ("local_minimum", "not_local_minimum", "box_limited", "not_attained", "undetermined")


@dataclass(frozen=True, eq=False)
class Verdict:
    """The certificate of one cell optimum."""

    status: str  # one of VERDICTS
    reason: str
    cell: str  # Cell.key() of the examined cell
    risk: float  # risk of the examined point (inf if none)
    minimum: LocalMinimum | None = None  # set when status == "local_minimum"
    ties: int = 0  # tight cell rows at the examined point
    zero_units: tuple[int, ...] = ()
    neighbours: int = 0  # neighbouring cells compared
    better_cell: str = ""  # a neighbouring cell with a lower optimum (not a local minimum)
    better_risk: float = float("nan")
    seconds: float = 0.0

    @property
    def is_local_minimum(self) -> bool:
        return self.status == "local_minimum"

    def to_row(self) -> dict:
        return {
            "status": self.status, "reason": self.reason, "cell": self.cell, "risk": self.risk,
            "certificate": self.minimum.certificate if self.minimum is not None else "",
            "ties": self.ties, "zero_units": len(self.zero_units), "neighbours": self.neighbours,
            "better_cell": self.better_cell, "better_risk": self.better_risk, "seconds": self.seconds,
        }


def fit_tolerance(spec: InstanceSpec) -> float:
    """Two minima are the same when their fitted values differ by at most this (max norm)."""
    return FIT_RTOL * (1.0 + float(np.max(np.abs(spec.y))))


def same_minimum(f1, r1, f2, r2, spec: InstanceSpec) -> bool:
    """Two minima are the same when their fitted values agree within `fit_tolerance`."""
    del r1, r2  # the risk is a function of the fitted values
    return bool(np.max(np.abs(np.asarray(f1) - np.asarray(f2)), initial=0.0) <= fit_tolerance(spec))


def match_minimum(fitted, fits: np.ndarray, spec: InstanceSpec) -> int:
    """Index of the row of ``fits`` (k, n) that fits the same values as ``fitted``, or -1.
    The risk is a function of the fitted values, so equal fits are the same minimum (DESIGN §5)."""
    if len(fits) == 0:
        return -1
    dist = np.max(np.abs(fits - np.asarray(fitted)[None, :]), axis=1)
    k = int(np.argmin(dist))
    return k if dist[k] <= fit_tolerance(spec) else -1


@dataclass
class _Face:
    """The optimal face as rows on x = (theta~, t), and the normalised candidate rows Q theta~ >= q_lo."""

    prob: CellProblem
    M: np.ndarray  # face rows on x
    lo: np.ndarray
    hi: np.ndarray
    Q: np.ndarray  # (nq, p) unit-norm rows
    q_lo: np.ndarray
    kind: np.ndarray  # "cell" | "box" | "rho" per row of Q
    n_cell: int
    col_lower: np.ndarray  # bounds of x (the box; columns held at zero have both bounds 0)
    col_upper: np.ndarray


PATTERNS_CACHE_SIZE = 100_000  # unit pattern sets kept per certifier (each a few hundred bytes)


class Certifier:
    """Certifies cell optima as local minima; caches every cell problem it solves.

    ``unit_patterns`` (all strictly realisable unit patterns, from `enumeration.unit_patterns`)
    makes neighbour generation a filter instead of LP searches; `remember` lets a caller that
    has solved cells already (the enumeration) answer the neighbour lookups.
    """

    def __init__(self, spec: InstanceSpec, *, solver: CellSolver | None = None, unit_patterns=None,
                 max_neighbours: int = MAX_NEIGHBOURS):
        if spec.network.depth != 1:
            raise MilplandError("network.hidden: certificates handle one hidden layer, "
                                f"got {list(spec.network.hidden)}")
        self.spec = spec
        self.X, self.y = spec.X, spec.y
        self.act = spec.network.activation
        self.loss = spec.loss
        self.solver = solver or CellSolver(
            spec.X, spec.y, self.act, spec.loss, spec.box, output_bias=spec.network.output_bias,
            time_limit=max(1.0, spec.solve.time_limit / 4),
        )
        self.builder = self.solver.builder
        self.unit_patterns = None if unit_patterns is None else np.asarray(unit_patterns, dtype=np.int64)
        self.max_neighbours = int(max_neighbours)
        self.floor = RISK_FLOOR_RTOL * max(self.builder.trivial, self.builder.risk_floor, 1e-300)
        self._cache = _SolvedCells()
        self._outcomes: dict[tuple, tuple] = {}
        self._realizer = None
        self._patterns_cache: dict[bytes, np.ndarray] = {}
        self.cell_solves = 0
        self.lp_solves = 0
        h = highspy.Highs()
        for name, value in (("output_flag", False), ("threads", 1), ("presolve", "off"),
                            ("primal_feasibility_tolerance", 1e-9), ("dual_feasibility_tolerance", 1e-9)):
            h.setOptionValue(name, value)
        self._h = h

    # -- the cache of solved cells ----------------------------------------------------------------

    def cache_key(self, cell: Cell) -> tuple:
        """A permutation-invariant key of the cell (cheap: no hashing, no Cell objects)."""
        return self._choice_key(cell.signs.tolist(), [tuple(col) for col in cell.pattern.T.tolist()])

    def _choice_key(self, signs, cols) -> tuple:
        """Sorted (sign, pattern column) pairs; for odd activations negative units are mirrored to
        positive ones (-sigma(z) = sigma(-z): sign -1 on piece k is sign +1 on piece K-1-k)."""
        if self.act.odd:
            top = self.act.n_pieces - 1
            pairs = [(1.0, col) if s > 0 else (1.0, tuple(top - k for k in col)) for s, col in zip(signs, cols)]
        else:
            pairs = [(float(s), col) for s, col in zip(signs, cols)]
        return tuple(sorted(pairs))

    def remember(self, cell: Cell, result: CellResult) -> None:
        self._cache.setdefault(self.cache_key(cell), (cell, result))

    def attach(self, lookup) -> None:
        """Answer cache misses with ``lookup(key) -> (cell, result) | None`` (a caller that holds many
        solved cells, e.g. the enumeration, builds them on demand instead of remembering each)."""
        self._cache.lookup = lookup

    def cell_result(self, cell: Cell, key: tuple | None = None) -> tuple[Cell, CellResult]:
        """The solved cell (a cached permutation of ``cell`` may be returned, with its result)."""
        key = self.cache_key(cell) if key is None else key
        if key not in self._cache:
            canon = cell.canonical()
            self._cache[key] = (canon, self.solver.solve(canon))
            self.cell_solves += 1
        return self._cache[key]

    def verified(self, result: CellResult) -> bool:
        """A usable cell optimum: a feasible point whose certified gap (risk - Lagrangian bound,
        valid whatever the solver status) is within this module's decision tolerance.  Near-exact
        fits can miss CellSolver's relative KKT test by rounding (bound -4e-16 at risk 0)."""
        if result.theta is None or result.fitted is None or not result.max_violation <= FEAS_TOL:
            return False
        if result.status == "optimal":
            return True
        return bool(result.risk - result.lower_bound <= NEIGHBOUR_RTOL * abs(result.risk) + self.floor)

    # -- the certificate ------------------------------------------------------------------------------

    def certify_params(self, params: OneHiddenParams, *, found_by: str) -> Verdict:
        """Certify the optimum of the cell that contains ordinary weights ``params``."""
        return self.certify(Cell.of_params(params, self.X, self.act), found_by=found_by)

    def certify(self, cell: Cell, result: CellResult | None = None, *, found_by: str, face_point=None) -> Verdict:
        """Is the optimum of ``cell`` (``result`` = its solved cell problem, in the same unit
        order; solved here when omitted) a local minimum of the risk?

        ``face_point`` (squared loss, optional): (a point of the optimal face as ScaledParams in
        the cell's unit order, the boolean mask of the cell rows tight on the whole face) from a
        caller that knows the face (the enumeration's kernels, `cell_qp.examine_face`).  It is
        examined instead of the LP rounds' point when it fits the optimum's values, satisfies the
        rows, and its tight rows (TIGHT_TOL) are exactly the given ones; otherwise it is ignored."""
        t0 = time.perf_counter()
        if result is None:
            cell, result = self.cell_result(cell)
        else:
            self.remember(cell, result)
        key = cell.key()

        def verdict(status, reason, risk=float("nan"), **extra):
            return Verdict(status, reason, key, risk, seconds=time.perf_counter() - t0, **extra)

        if not self.verified(result):
            return verdict("undetermined", f"cell problem ended {result.status} ({result.method})", result.risk)
        # result.box_active is not decisive: it holds the fitted values fixed, and for the absolute
        # and hinge losses other optimal points may fit other values; the face analysis below decides
        prob = self.builder.build(cell)
        face = self._face(prob, result)
        single = self._single_point(prob, result)
        x = single if single is not None else self._given_point(face, face_point)
        if x is None:
            x = self._examined_point(face)
        if x is None:
            return verdict("undetermined", "LP on the optimal face failed", result.risk)
        p = prob.layout.n_params
        limit = self._limit_units(face, x[:p])
        if limit:
            # rho_j = 0 on all of F: the only points of F that ordinary weights realise have the
            # whole unit zero (v_j = 0 forces u~_j = rho_j w_j = 0); examine that part of F
            face = self._restrict_zero(face, limit)
            x = self._examined_point(face)
            if x is None:
                return verdict("not_attained", f"the cell optimum needs units {limit} with output weight 0 and "
                               "non-zero input weights: a limit point (|w| -> inf), not attained", result.risk)
        theta = x[:p]
        r0 = self._risk(prob, theta)
        tol = NEIGHBOUR_RTOL * abs(r0) + self.floor
        if r0 > result.risk + tol:
            return verdict("undetermined", f"examined point {r0!r} above the cell optimum {result.risk!r}", r0)
        slack, tight = self._slack(face, theta)
        if np.any(tight & (face.kind == "box")):
            return verdict("box_limited", "every optimal point of the cell touches the box", r0)
        tight_cell = tight & (face.kind == "cell")
        zero = self._zero_units(prob, theta)
        if not tight_cell.any() and not zero:
            # a single optimal point: the largest margin of an optimal point is its own
            margin = float(slack[: face.n_cell].min()) if single is not None and not limit else self._margin(face)
            return self._accept(cell, face, theta, r0, "interior", max(margin, float(slack[: face.n_cell].min())),
                                tight, found_by, verdict)
        options = self._unit_options(cell, prob, theta, zero)
        separable = not self._kink_samples(prob, theta).any()
        info = dict(ties=int(tight_cell.sum()), zero_units=tuple(zero))
        # cells sharing the examined point's neighbourhood (e.g. every cell whose optimum has all
        # units zero) share the outcome
        memo = (separable, tuple(sorted(tuple(sorted(o)) for o in options)), float(f"{r0:.12g}"))
        if memo not in self._outcomes:
            self._outcomes[memo] = self._compare(cell, options, separable, r0, tol)
        status, detail, count = self._outcomes[memo]
        info["neighbours"] = count
        if status == "too_many":
            return verdict("undetermined", f"{count} neighbouring cells exceed {self.max_neighbours}", r0, **info)
        if status == "better":
            better_key, better_risk = detail
            return verdict("not_local_minimum", "a neighbouring cell has a lower optimum", r0,
                           better_cell=better_key, better_risk=better_risk, **info)
        if status == "undecided":
            return verdict("undetermined", f"{detail} neighbouring cell(s) not solved to optimality", r0, **info)
        return self._accept(cell, face, theta, r0, "boundary", 0.0, tight, found_by, verdict, **info)

    def _compare(self, cell, options, separable, r0, tol):
        """("ok" | "better" | "undecided" | "too_many", detail, neighbours compared)."""
        neighbours = self._neighbours(cell, options, separable)
        if isinstance(neighbours, int):
            return "too_many", None, neighbours
        undecided = 0
        for nkey, choice in neighbours:
            other, res = self._cache.get(nkey) or self.cell_result(_make_cell(choice), nkey)
            feasible = res.theta is not None and res.max_violation <= FEAS_TOL
            if feasible and res.risk < r0 - tol:
                return "better", (other.key(), float(res.risk)), len(neighbours)
            if not (res.status == "optimal" or res.lower_bound >= r0 - tol):
                undecided += 1
        return ("undecided", undecided, len(neighbours)) if undecided else ("ok", None, len(neighbours))

    def _kink_samples(self, prob: CellProblem, theta: np.ndarray) -> np.ndarray:
        """Samples where the loss is not differentiable in f at the examined point (tolerant):
        zero residuals (absolute) or y f = 1 (hinge); none for the squared loss."""
        if self.loss.kind == "squared":
            return np.zeros(len(prob.y), dtype=bool)
        f = prob.phi @ theta
        if self.loss.kind == "absolute":
            return np.abs(f - prob.y) <= TIGHT_TOL * (1.0 + np.abs(prob.y))
        return np.abs(1.0 - prob.y * f) <= TIGHT_TOL

    def _accept(self, cell, face, theta, r0, certificate, margin, tight, found_by, verdict, **extra) -> Verdict:
        """The LocalMinimum record, after re-evaluating the point in ordinary weights.

        Valley dimension: dim null(Phi) for interior points; on a boundary, dim null of Phi
        stacked with the tight rows and the columns held at zero (the directions that keep the
        fitted values and the ties)."""
        prob = face.prob
        lay = prob.layout
        scaled = lay.theta(theta, cell.signs)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            params, limit_units = scaled.to_original(self.act)
        fitted = params.forward(self.X, self.act)
        risk = self.loss.risk(fitted, self.y)
        if limit_units:  # excluded by _restrict_zero; kept as a guard
            return verdict("undetermined", f"units {limit_units} are limit points", r0, **extra)
        if abs(risk - r0) > NUMPY_RTOL * abs(r0) + self.floor:
            return verdict("undetermined", f"ordinary-weight forward pass gives {risk!r}, the cell {r0!r}", r0, **extra)
        rows = prob.phi
        if certificate == "boundary":
            p = lay.n_params
            held = np.eye(p)[face.col_lower[:p] == face.col_upper[:p]]
            rows = np.vstack([prob.phi, face.Q[tight], held])
        minimum = LocalMinimum(
            instance=self.spec.name, cell=cell.key(), risk=float(risk), certificate=certificate,
            margin=float(margin), valley_dim=null_dim(rows), params=params, fitted=fitted, found_by=found_by,
        )
        reason = "strictly inside its cell" if certificate == "interior" else \
            "no neighbouring cell goes below it"
        return verdict("local_minimum", reason, float(risk), minimum=minimum, **extra)

    # -- the optimal face -------------------------------------------------------------------------------

    def _face_rows(self, prob: CellProblem):
        """Normalised candidate rows Q theta~ >= q_lo: cell rows, box bounds, rho >= 0."""
        G = prob.cell_matrix
        norms = np.linalg.norm(G, axis=1)
        norms[norms == 0] = 1.0
        p = prob.layout.n_params
        lo, hi = prob.col_lower[:p], prob.col_upper[:p]
        boxed = np.flatnonzero(np.isfinite(hi))
        I = np.eye(p)[boxed]
        lay = prob.layout
        is_rho = np.zeros(p, dtype=bool)
        if lay.has_rho:
            is_rho[lay.rho] = True
        Q = np.vstack([G / norms[:, None], -I, I])
        q_lo = np.concatenate([np.zeros(G.shape[0]), -hi[boxed], lo[boxed]])
        kind = np.array(["cell"] * G.shape[0] + ["box"] * len(boxed)
                        + ["rho" if is_rho[k] else "box" for k in boxed])
        return Q, q_lo, kind

    def _face(self, prob: CellProblem, result: CellResult) -> _Face:
        lay = prob.layout
        p, nc = lay.n_params, lay.n_cols
        R = prob.cell_rows.stop
        if prob.hessian is not None:  # squared loss: Phi theta~ = f*
            M = np.hstack([prob.phi, np.zeros((prob.phi.shape[0], nc - p))])
            lo = hi = np.asarray(result.fitted, dtype=float)
        else:  # epigraph rows and  w sum t <= R* + tol
            A = prob.A.toarray()
            bound = (result.risk + FACE_RTOL * abs(result.risk) + self.floor) / prob.objective_scale - prob.offset
            M = np.vstack([A[R:], prob.cost[None, :]])
            lo = np.concatenate([prob.row_lower[R:], [-HIGHS_INF]])
            hi = np.concatenate([prob.row_upper[R:], [bound]])
        Q, q_lo, kind = self._face_rows(prob)
        return _Face(prob, M, lo, hi, Q, q_lo, kind, R, prob.col_lower.copy(), prob.col_upper.copy())

    def _slack(self, face: _Face, theta: np.ndarray):
        slack = face.Q @ theta - face.q_lo
        return slack, slack <= TIGHT_TOL * max(1.0, float(np.max(np.abs(theta), initial=0.0)))

    def _lp(self, face: _Face, extra: np.ndarray, extra_lower, extra_upper, *, row_lower_q=None,
            row_upper_q=None) -> np.ndarray | None:
        """min -sum(extra columns) over F with rows Q theta~ - E z >= q_lo (E = ``extra``,
        an (nq, k) matrix of the extra columns' coefficients)."""
        prob = face.prob
        nc = prob.layout.n_cols
        p = prob.layout.n_params
        nq, k = extra.shape
        Qx = np.zeros((nq, nc))
        Qx[:, :p] = face.Q
        top = np.hstack([face.M, np.zeros((face.M.shape[0], k))])
        mid = np.hstack([Qx, -extra])
        D = np.vstack([top, mid])
        rl = np.concatenate([face.lo, face.q_lo if row_lower_q is None else row_lower_q])
        ru = np.concatenate([face.hi, np.full(nq, HIGHS_INF) if row_upper_q is None else row_upper_q])
        cl = np.concatenate([face.col_lower, np.full(k, extra_lower)])
        cu = np.concatenate([face.col_upper, np.full(k, extra_upper)])
        cost = np.concatenate([np.zeros(nc), -np.ones(k)])
        rows, cols = np.nonzero(D)
        indptr = np.zeros(D.shape[0] + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=D.shape[0]), out=indptr[1:])
        h = self._h
        # integrality: all continuous, given explicitly (HiGHS reads an empty array as garbage)
        h.passModel(nc + k, D.shape[0], len(rows), 2, 1, 0.0, cost, cl, cu, rl, ru, indptr,
                    cols.astype(np.int32), D[rows, cols], np.zeros(nc + k, dtype=np.int32))
        h.setOptionValue("time_limit", float(h.getRunTime() + self.solver.time_limit))
        h.run()
        self.lp_solves += 1
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        return np.array(h.getSolution().col_value)

    def _single_point(self, prob: CellProblem, result: CellResult) -> np.ndarray | None:
        """Squared loss with Phi of full column rank: Phi theta~ = f* has one solution, so the optimal
        face is the solver's point alone and is its own relative interior (no LPs needed)."""
        if prob.hessian is None or null_dim(prob.phi) != 0:
            return None
        return prob.layout.vector(result.theta)

    def _given_point(self, face: _Face, face_point) -> np.ndarray | None:
        """The caller's relative-interior point (see `certify`), when it checks out."""
        prob = face.prob
        if face_point is None or prob.hessian is None:
            return None
        point, expected = face_point
        x = prob.layout.vector(point)
        fitted = face.lo
        if np.max(np.abs(prob.phi @ x - fitted)) > 1e-10 * (1.0 + float(np.max(np.abs(fitted)))):
            return None
        slack, tight = self._slack(face, x)
        if np.min(slack) < -1e-12 * max(1.0, float(np.max(np.abs(x)))):
            return None
        n_cell = face.n_cell
        if tight[n_cell:].any() or not np.array_equal(tight[:n_cell], np.asarray(expected, dtype=bool)):
            return None
        return x

    def _examined_point(self, face: _Face) -> np.ndarray | None:
        """A relative-interior point of F, deepened and projected (see the module docstring)."""
        nq = face.Q.shape[0]
        p = face.prob.layout.n_params
        nc = face.prob.layout.n_cols
        open_rows = np.ones(nq, dtype=bool)  # rows not yet seen positive
        points = []
        for round_ in range(MAX_ROUNDS):
            idx = np.flatnonzero(open_rows)
            E = np.zeros((nq, len(idx)))
            E[idx, np.arange(len(idx))] = 1.0
            sol = self._lp(face, E, 0.0, SLACK_CAP)
            if sol is None:
                return None
            x = sol[:nc]
            points.append(x)
            _, tight = self._slack(face, x[:p])
            newly = open_rows & ~tight
            open_rows &= tight
            if not newly.any() or not open_rows.any():
                break
        x = np.mean(points, axis=0)
        _, tight = self._slack(face, x[:p])
        # deepest point with the tight rows held at zero: maximise the smallest other slack
        eps_rows = (~tight).astype(float)[:, None]
        upper = np.where(tight, face.q_lo, HIGHS_INF)
        sol = self._lp(face, eps_rows, 0.0, SLACK_CAP, row_upper_q=upper)
        if sol is not None:
            x = 0.5 * (x + sol[:nc])
        return self._project(face, x)

    def _project(self, face: _Face, x: np.ndarray) -> np.ndarray:
        """Minimum-norm correction onto the tight rows and the fitted-value equations (exact
        arithmetic where the LP had tolerances); kept only if it stays feasible and not worse."""
        prob = face.prob
        p = prob.layout.n_params
        theta = x[:p]
        _, tight = self._slack(face, theta)
        f = prob.phi @ theta
        if prob.hessian is not None:
            fixed = np.ones(len(f), dtype=bool)
            target = face.lo
        else:
            scale = 1.0 + np.abs(prob.y)
            if self.loss.kind == "absolute":
                fixed = np.abs(f - prob.y) <= TIGHT_TOL * scale
            else:
                fixed = np.abs(1.0 - prob.y * f) <= TIGHT_TOL
            target = prob.y
        E = np.vstack([prob.phi[fixed], face.Q[tight]])
        e = np.concatenate([target[fixed], face.q_lo[tight]])
        free = face.col_lower[:p] < face.col_upper[:p]  # columns held at zero stay there
        if E.shape[0] == 0:
            return x
        moved = theta.copy()
        moved[free] += np.linalg.lstsq(E[:, free], e - E @ theta, rcond=None)[0]
        ok_rows = np.min(face.Q @ moved - face.q_lo) >= -1e-12 * max(1.0, float(np.max(np.abs(moved))))
        if ok_rows and self._risk(prob, moved) <= self._risk(prob, theta) + self.floor:
            out = x.copy()
            out[:p] = moved
            return out
        return x

    def _limit_units(self, face: _Face, theta: np.ndarray) -> list[int]:
        """Units with rho_j = 0 tight on F but non-zero scaled weights at the examined point."""
        lay = face.prob.layout
        if not lay.has_rho:
            return []
        _, tight = self._slack(face, theta)
        rho_cols = np.arange(lay.rho.start, lay.rho.stop)
        zero = set(self._zero_units(face.prob, theta))
        out = []
        for j, col in enumerate(rho_cols):
            row = np.flatnonzero((face.kind == "rho") & (face.Q[:, col] > 0.5))
            if row.size and tight[row[0]] and j not in zero:
                out.append(j)
        return out

    def _restrict_zero(self, face: _Face, units: list[int]) -> _Face:
        """F with the scaled weights (u~_j, a~_j) of ``units`` held at zero (rho_j is zero on F already)."""
        lay = face.prob.layout
        cols = []
        for j in units:
            cols.extend(range(lay.U.start + j * lay.d, lay.U.start + (j + 1) * lay.d))
            cols.append(lay.a.start + j)
        lower, upper = face.col_lower.copy(), face.col_upper.copy()
        lower[cols] = upper[cols] = 0.0
        return replace(face, col_lower=lower, col_upper=upper)

    def _margin(self, face: _Face) -> float:
        """Largest smallest distance of an optimal point to the cell's walls (cell rows only)."""
        nq = face.Q.shape[0]
        col = np.zeros((nq, 1))
        col[: face.n_cell, 0] = 1.0
        cap = float(np.max(np.abs(face.q_lo[face.n_cell:]), initial=SLACK_CAP))
        sol = self._lp(face, col, 0.0, max(cap, SLACK_CAP))
        return float(sol[-1]) if sol is not None else 0.0

    def _risk(self, prob: CellProblem, theta: np.ndarray) -> float:
        return self.loss.risk(prob.phi @ theta, prob.y)

    def _zero_units(self, prob: CellProblem, theta: np.ndarray) -> list[int]:
        lay = prob.layout
        sc = lay.theta(theta, np.ones(lay.m))
        mags = np.maximum(np.max(np.abs(sc.U), axis=1), np.abs(sc.a))
        if lay.has_rho:
            mags = np.maximum(mags, np.abs(sc.rho))
        tol = ZERO_TOL * max(1.0, float(np.max(np.abs(theta), initial=0.0)))
        return [int(j) for j in np.flatnonzero(mags <= tol)]

    # -- neighbouring cells ---------------------------------------------------------------------------------

    def _allowed_pieces(self, cell: Cell, prob: CellProblem, theta: np.ndarray) -> np.ndarray:
        """allowed[i, j, k]: piece k contains the examined point at (sample i, unit j)."""
        lay = prob.layout
        sc = lay.theta(theta, cell.signs)
        G = sc.scaled_pre_activations(self.X)  # (n, m)
        rho = sc.rho if lay.has_rho else np.ones(lay.m)
        tol = TIGHT_TOL * max(1.0, float(np.max(np.abs(theta), initial=0.0)))
        xn2 = np.sum(self.X**2, axis=1)[:, None]
        K = self.act.n_pieces
        allowed = np.zeros(G.shape + (K,), dtype=bool)
        for k in range(K):
            ok = np.ones(G.shape, dtype=bool)
            t_lo, t_hi = self.act.lower(k), self.act.upper(k)
            if np.isfinite(t_lo):
                norm = np.sqrt(xn2 + 1.0 + (t_lo**2 if lay.has_rho else 0.0))
                ok &= G - rho[None, :] * t_lo >= -tol * norm
            if np.isfinite(t_hi):
                norm = np.sqrt(xn2 + 1.0 + (t_hi**2 if lay.has_rho else 0.0))
                ok &= rho[None, :] * t_hi - G >= -tol * norm
            allowed[:, :, k] = ok
        n, m = G.shape
        allowed[np.arange(n)[:, None], np.arange(m)[None, :], cell.pattern] = True
        return allowed

    def _patterns_within(self, allowed: np.ndarray) -> np.ndarray:
        """Strictly realisable unit patterns with piece k_i allowed for every sample i."""
        n = allowed.shape[0]
        # the same unit column with the same ties recurs across neighbouring cells (measured: 92 % of
        # the calls of a branch-and-bound band at d = 2, n = 40), and each miss costs LPs or a filter
        key = allowed.tobytes()
        found = self._patterns_cache.get(key)
        if found is None:
            if self.unit_patterns is not None:
                found = self.unit_patterns[allowed[np.arange(n)[None, :], self.unit_patterns].all(axis=1)]
            else:
                if self._realizer is None:
                    self._realizer = Realizer(self.X, self.act)
                sets = [np.flatnonzero(allowed[i]) for i in range(n)]
                found = unit_patterns(self.X, self.act, allowed=sets, realizer=self._realizer)
            if len(self._patterns_cache) >= PATTERNS_CACHE_SIZE:
                self._patterns_cache.clear()
            self._patterns_cache[key] = found
        return found

    def _unit_options(self, cell: Cell, prob: CellProblem, theta: np.ndarray, zero: list[int]):
        """Per unit, the (sign, pattern column) choices of the cells containing the examined point."""
        allowed = self._allowed_pieces(cell, prob, theta)
        options = []
        for j in range(cell.width):
            own = (float(cell.signs[j]), tuple(cell.pattern[:, j].tolist()))
            al = allowed[:, j, :]
            if not (al.sum(axis=1) > 1).any() and j not in zero:
                options.append([own])
                continue
            pats = [tuple(row) for row in self._patterns_within(al).tolist()]
            signs = [own[0], -own[0]] if j in zero else [own[0]]
            opts = [own] + [(s, pat) for s in signs for pat in pats if (s, pat) != own]
            options.append(opts)
        return options

    def _neighbours(self, cell: Cell, options, separable: bool):
        """(cache key, choice) of the neighbouring cells to compare, cached ones first; a choice is
        a list of (sign, pattern column) per unit.  Separable (the loss is differentiable at every
        sample): one unit changed at a time.  Otherwise every combination, with interchangeable
        units (identical option lists) combined as multisets; returns the count instead of the
        list when it exceeds max_neighbours."""
        own_key = self.cache_key(cell)
        own = [o[0] for o in options]
        combos = []
        if separable:
            for j in range(cell.width):
                for opt in options[j][1:]:
                    choice = list(own)
                    choice[j] = opt
                    combos.append(choice)
        else:
            groups: dict[tuple, list[int]] = {}
            for j, opts in enumerate(options):
                groups.setdefault(tuple(sorted(opts)), []).append(j)
            size = int(np.prod([math.comb(len(k) + len(v) - 1, len(v)) for k, v in groups.items()], dtype=float))
            if size - 1 > self.max_neighbours:
                return size - 1
            per_group = [list(itertools.combinations_with_replacement(list(k), len(v))) for k, v in groups.items()]
            combos = [[u for part in parts for u in part] for parts in itertools.product(*per_group)]
        seen = {own_key}
        cached, fresh = [], []
        for choice in combos:
            key = self._choice_key([c[0] for c in choice], [c[1] for c in choice])
            if key in seen:
                continue
            seen.add(key)
            (cached if key in self._cache else fresh).append((key, choice))
        return cached + fresh  # cached first: a cheap rejection saves solves


class _SolvedCells(dict):
    """Certifier's cache of solved cells, key -> (cell, result); a miss asks ``lookup`` (see
    `Certifier.attach`) and keeps its answer."""

    lookup = None

    def get(self, key, default=None):
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        if self.lookup is not None:
            found = self.lookup(key)
            if found is not None:
                self[key] = found
                return found
        return default

    def __contains__(self, key) -> bool:
        return self.get(key) is not None


def _make_cell(choice) -> Cell:
    return Cell(np.array([c[1] for c in choice], dtype=np.int64).T, np.array([c[0] for c in choice]))


def null_dim(M: np.ndarray) -> int:
    """dim null(M) with numerical rank: singular values above RANK_RTOL x the largest."""
    M = np.atleast_2d(np.asarray(M, dtype=float))
    if M.size == 0:
        return int(M.shape[1])
    s = np.linalg.svd(M, compute_uv=False)
    rank = int(np.sum(s > RANK_RTOL * max(float(s[0]), 1e-300))) if s.size else 0
    return int(M.shape[1] - rank)
