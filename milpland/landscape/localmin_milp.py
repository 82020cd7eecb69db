"""The local-minima MILP (DESIGN §5, "Searching the local minima without enumerating cells").

One hidden layer, positively homogeneous activation (relu, leaky_relu, two_slope), squared or
absolute loss.  In scaled coordinates (DESIGN §3) a cell A with signs s has the linear map
f = Phi_A theta~,

    f_i = c + sum_j s_j alpha_{k_ij} g_ij,   g_ij = u~_j . x_i + a~_j,

so Phi_A's columns are s_j alpha_{k_ij} (x_i, 1) for (u~_j, a~_j) and the constant column
for c.  A point strictly inside cell A is a local minimum of R iff it minimises the convex
cell risk R_A over all of R^p (R = R_A near it; a local minimum of a convex function is
global), i.e. iff it is a stationary point of R_A:

- squared, R = w sum r_i^2 (w = loss.weight(n), r = f - y):  Phi_A^T r = 0.  Then r is
  orthogonal to f = Phi_A theta~, so r.r = r.(f - y) = -y.r and  R = -w y.r  is LINEAR.
- absolute, R = w sum |r_i|:  0 in the subdifferential, i.e. some lambda with
  Phi_A^T lambda = 0, lambda_i in [-1, 1], lambda_i = sign(r_i) where r_i != 0.  Then
  sum |r_i| = lambda.r = lambda.Phi_A theta~ - lambda.y, so  R = -w y.lambda  is LINEAR.

Stationarity per unit j (s_j != 0 divides out), with mu = r (squared) or lambda (absolute):

    sum_i alpha_{k_ij} mu_i (x_i, 1) = 0        and   sum_i mu_i = 0  (output bias).

With the pattern binaries delta_ijk of `formulation.add_pieces_hull`, the products
delta_ijk mu_i are linearised in the same hull form as g:  mu_i = sum_k q_ijk,
|q_ijk| <= Mbar_i delta_ijk, and the stationarity row reads  sum_i sum_k alpha_k q_ijk (x_i, 1) = 0.

Big-M values and why they hold at EVERY stationary point of EVERY cell (whatever the box):

- squared:  r = -(I - P_A) y, P_A the orthogonal projection onto col(Phi_A).  With an output
  bias the constant vector lies in col(Phi_A), so P_A >= P_1 (Loewner) and P_ii >= 1/n:
      |r_i| = |((I-P)e_i).((I-P)y)| <= sqrt(1 - 1/n) ||y - mean(y)||;
  without output bias  |r_i| <= ||y||.
- absolute: at a minimiser of R_A,  sum_i |r_i| <= R_A(u~ = a~ = 0, c = median y)
  = sum_i |y_i - median y|  (sum |y_i| without output bias);  |lambda_i| <= 1 is exact.
- |g_ij| <= B (||x_i||_1 + 1) from the box (`formulation.big_m`).
- In both cases R <= the risk of the best constant output (the same argument), a valid
  upper bound on the risk variable.

Interior margins (scaled variables): g_ij >= eps on the active piece, g_ij <= -eps on the
inactive one.  The feasible set of one sign class is then EXACTLY the set of eps-interior
local minima inside the box |u~|, |a~| <= B:  points whose every scaled pre-activation is at
least eps away from the kink.  Completeness ("no further level") is relative to eps and B:
local minima whose best point has a margin below eps, or that need weights outside the box,
are not seen, and neither are boundary local minima (those need the tied-pair check of
DESIGN §5).  Units with v_j = 0 have g_ij = 0 and are never eps-interior (DESIGN §7).

The walk over risk levels: per sign class (m + 1 classes) minimise the risk; a found level L
is certified (below), then the class's risk column gets the lower bound L + delta
(``level_resolution`` relative to the best-constant risk) and is re-solved.  The classes are
merged lazily, so the levels come out in ascending order.  Infeasibility of every class above
the last level proves there is no further eps-interior local minimum, up to delta: levels
closer than delta to a reported one are merged with it.  HiGHS' "optimal" is a claim: on
these models it skipped a feasible lower level in about 1 of 1000 level solves (another
random seed found it at once), so every answer is re-checked with a second seed over
[floor, answer - delta/2] (``confirm``).  Completeness therefore means: proven infeasible by
HiGHS twice, with two seeds, at feasibility tolerance 1e-9.  For d = 1 the threshold
constraints of `formulation.add_threshold_order_1d` are added (valid for every realisable
pattern).

Every level is certified independently of the MILP: the MILP's pattern is a cell, solved
and verified by `cells.CellSolver` and certified by `certificates.Certifier` (a relative-
interior optimal point strictly inside the cell and the box).  Our own checks on top: the
cell optimum equals the cell's unconstrained minimum (numpy least squares; for the absolute
loss the MILP's lambda projected onto null(Phi_A^T)), and the ordinary-weight point
reproduces the cell's pattern strictly and its risk with a numpy forward pass.  A stationary
optimum whose optimal points all touch the box is still a local minimum (no box is needed at
a stationary point): then `max_margin_point` supplies the interior point.  A pattern that does
not certify is excluded by a no-good cut (with its permutations of same-sign units).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable

import highspy
import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp

from milpland.cells.certificates import Certifier, null_dim, same_minimum
from milpland.cells.minima import LocalMinimum
from milpland.cells.problem import Cell, CellSolver
from milpland.cells.scaled import sign_class
from milpland.errors import MilplandError
from milpland.instance.spec import InstanceSpec
from milpland.records import SCHEMA_VERSION
from milpland.search.formulation import (
    FormulationOptions,
    add_output,
    add_pieces_hull,
    add_threshold_order_1d,
    add_weights,
    pattern_of,
)
from milpland.search.highs_backend import MipOutcome, MipRunner, compile_model

Progress = Callable[[str], None]
SUPPORTED_LOSSES = ("squared", "absolute")
DEFAULT_EPSILON = 1e-6  # margin of every scaled pre-activation from the kink
DEFAULT_LEVEL_RESOLUTION = 1e-6  # relative to the best-constant risk: levels closer than this merge
# (the MILP's own risk value was measured off by up to 5e-8 relative: stationarity holds to 1e-9 only)
OBJECTIVE_TARGET = 1e3  # scaled objective of the best-constant risk (DESIGN §4: HiGHS' absolute threshold)
CERT_RTOL = 1e-9  # relative agreement of the cell optimum and the numpy risk
FREE_RTOL = 1e-8  # cell optimum vs the unconstrained cell minimum (a projected dual vector for absolute loss)
MAX_EXCLUSIONS = 200  # patterns rejected by certification before a class is given up
HIGHS_INF = highspy.kHighsInf
PRIMAL_RISK_ROW = True  # absolute loss: tie w sum |r| to the dual risk (40 instances: 118 s vs 181 s CPU)


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LocalMinimaSearch:
    """The eps-interior local minima found by the MILP walk, one representative per level and class.

    ``complete``: every class's MILP was proven infeasible above the last level, so every
    eps-interior local minimum inside the box has a risk within ``level_resolution`` (absolute,
    in risk units) of one of ``levels``.  ``best_level_bound`` is a proven lower bound on the
    lowest level, ``worst_level_bound`` a proven upper bound on the highest (inf when unknown).
    """

    instance: str
    minima: list[LocalMinimum]
    levels: list[float]  # distinct certified risk levels, ascending
    complete: bool
    best_level_bound: float
    worst_level_bound: float
    epsilon: float
    level_resolution: float  # absolute, in risk units
    box_weight: float
    seconds: float
    milp_solves: int = 0
    nodes: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "instance": self.instance,
            "method": "milp",
            "levels": [float(v) for v in self.levels],
            "complete": bool(self.complete),
            "best_level_bound": _finite_or_none(self.best_level_bound),
            "worst_level_bound": _finite_or_none(self.worst_level_bound),
            "epsilon": float(self.epsilon),
            "level_resolution": float(self.level_resolution),
            "box_weight": float(self.box_weight),
            "seconds": float(self.seconds),
            "milp_solves": int(self.milp_solves),
            "nodes": int(self.nodes),
            "notes": list(self.notes),
            "minima": [mn.to_json() for mn in self.minima],
        }

    def to_row(self) -> dict:
        row = self.to_json()
        row.pop("minima")
        row["n_minima"] = len(self.minima)
        row["n_levels"] = len(self.levels)
        row["levels"] = ";".join(f"{v:.12g}" for v in self.levels)
        row["notes"] = "; ".join(self.notes)
        row["best_level_bound"] = self.best_level_bound
        row["worst_level_bound"] = self.worst_level_bound
        row["schema_version"] = SCHEMA_VERSION
        return row


def _finite_or_none(value: float):
    return float(value) if np.isfinite(value) else None


# ----------------------------------------------------------------------------------------------
# Constants of the formulation
# ----------------------------------------------------------------------------------------------


def check_supported(spec: InstanceSpec) -> None:
    if spec.network.depth != 1:
        raise MilplandError(
            f"network.hidden: the local-minima MILP handles one hidden layer, got {list(spec.network.hidden)}; "
            "use the enumerate method or `milpland certify` for deeper networks"
        )
    act = spec.network.activation
    if not act.homogeneous:
        raise MilplandError(
            f"network.activation: the local-minima MILP needs a positively homogeneous activation "
            f"(relu, leaky_relu, two_slope), got {act.name}; use the enumerate method"
        )
    if spec.loss.kind not in SUPPORTED_LOSSES:
        raise MilplandError(
            f"loss.kind: the local-minima MILP handles {' and '.join(SUPPORTED_LOSSES)} losses, "
            f"got {spec.loss.kind}; use the enumerate method"
        )


def best_constant_risk(spec: InstanceSpec) -> float:
    """Risk of the best constant output (mean / median; 0 without output bias)."""
    y = spec.y
    if not spec.network.output_bias:
        c = 0.0
    elif spec.loss.kind == "squared":
        c = float(np.mean(y))
    else:
        c = float(np.median(y))
    return spec.loss.risk(np.full_like(y, c), y)


def risk_unit(spec: InstanceSpec) -> float:
    """The scale of risks: the best-constant risk (the loss weight if that is 0)."""
    trivial = best_constant_risk(spec)
    return trivial if trivial > 0 else float(spec.loss.weight(spec.n))


def residual_bounds(spec: InstanceSpec) -> np.ndarray:
    """Mbar_i >= |r_i| = |f_i - y_i| at every stationary point of every cell (module docstring)."""
    y, n = spec.y, spec.n
    bias = spec.network.output_bias
    if spec.loss.kind == "squared":
        bound = np.sqrt(1.0 - 1.0 / n) * np.linalg.norm(y - y.mean()) if bias else np.linalg.norm(y)
    else:
        bound = np.sum(np.abs(y - np.median(y))) if bias else np.sum(np.abs(y))
    # a hair of slack so that the true extreme stays strictly feasible in floating point
    return np.full(n, float(bound) * (1.0 + 1e-9) + 1e-12)


# ----------------------------------------------------------------------------------------------
# The model, one small piece at a time (in the style of formulation.py)
# ----------------------------------------------------------------------------------------------


def add_margins(m: pyo.ConcreteModel, epsilon: float) -> None:
    """|g_ij| >= eps on the chosen piece:  g_ij1 - g_ij0 >= eps.

    With the hull split g_ij = g_ij0 + g_ij1 (g_ij0 <= 0 <= g_ij1) only the chosen piece's copy
    is non-zero, so the row reads g_ij >= eps (active) or g_ij <= -eps (inactive).  Written
    without a coefficient eps on delta: the form g_ij1 >= eps delta_ij1 put 1e-6 next to big-M
    20 in the matrix, and HiGHS then proved a wrong "optimal" level (skipping a feasible one)
    on a 6-sample instance.
    """
    eps = float(epsilon)
    m.margin = pyo.Constraint(m.I, m.J, rule=lambda m, i, j: m.g[i, j, 1] - m.g[i, j, 0] >= eps)


def add_residuals(m: pyo.ConcreteModel, spec: InstanceSpec, bound: np.ndarray) -> None:
    """resid_i = f_i - y_i with |resid_i| <= Mbar_i (valid at every stationary point)."""
    y = spec.y
    m.resid = pyo.Var(m.I, bounds=lambda _, i: (-float(bound[i]), float(bound[i])))
    m.resid_def = pyo.Constraint(m.I, rule=lambda m, i: m.resid[i] == m.f[i] - float(y[i]))


def add_stationarity(m: pyo.ConcreteModel, spec: InstanceSpec, mu, bound: np.ndarray) -> None:
    """Phi_A^T mu = 0 with the products delta_ijk mu_i in hull form.

    mu_i = sum_k q_ijk, |q_ijk| <= Mbar_i delta_ijk; rows (s_j divided out):
        sum_i sum_k alpha_k q_ijk x_il = 0   (column u~_jl),
        sum_i sum_k alpha_k q_ijk = 0        (column a~_j),
        sum_i mu_i = 0                       (column c, with output bias).
    """
    alpha = [float(v) for v in spec.network.activation.slopes]
    X = spec.X
    m.q_mu = pyo.Var(m.I, m.J, m.K, bounds=lambda _, i, j, k: (-float(bound[i]), float(bound[i])))
    m.q_split = pyo.Constraint(m.I, m.J, rule=lambda m, i, j: sum(m.q_mu[i, j, k] for k in m.K) == mu[i])
    m.q_on = pyo.Constraint(
        m.I, m.J, m.K, rule=lambda m, i, j, k: m.q_mu[i, j, k] <= float(bound[i]) * m.delta[i, j, k])
    m.q_on_low = pyo.Constraint(
        m.I, m.J, m.K, rule=lambda m, i, j, k: m.q_mu[i, j, k] >= -float(bound[i]) * m.delta[i, j, k])

    def weighted(m, j):
        return [sum(alpha[k] * m.q_mu[i, j, k] for k in m.K if alpha[k] != 0.0) for i in m.I]

    m.stationary_u = pyo.Constraint(
        m.J, m.L, rule=lambda m, j, l: sum(float(X[i, l]) * t for i, t in zip(m.I, weighted(m, j))) == 0)
    m.stationary_a = pyo.Constraint(m.J, rule=lambda m, j: sum(weighted(m, j)) == 0)
    if spec.network.output_bias:
        m.stationary_c = pyo.Constraint(expr=sum(mu[i] for i in m.I) == 0)


def add_sign_duals(m: pyo.ConcreteModel, bound: np.ndarray) -> None:
    """lambda_i in [-1, 1] with lambda_i = sign(r_i) where r_i != 0 (absolute loss).

    r_i = rpos_i - rneg_i, rpos_i <= Mbar_i bpos_i, rneg_i <= Mbar_i bneg_i, bpos_i + bneg_i <= 1,
    lambda_i >= 2 bpos_i - 1, lambda_i <= 1 - 2 bneg_i.  bpos = 1 forces lambda = 1 and r >= 0;
    bneg = 1 forces lambda = -1 and r <= 0; both 0 force r = 0 with lambda free.
    """
    ub = lambda _, i: (0.0, float(bound[i]))  # noqa: E731
    m.lam = pyo.Var(m.I, bounds=(-1.0, 1.0))
    m.rpos = pyo.Var(m.I, bounds=ub)
    m.rneg = pyo.Var(m.I, bounds=ub)
    m.bpos = pyo.Var(m.I, domain=pyo.Binary)
    m.bneg = pyo.Var(m.I, domain=pyo.Binary)
    m.r_split = pyo.Constraint(m.I, rule=lambda m, i: m.resid[i] == m.rpos[i] - m.rneg[i])
    m.rpos_on = pyo.Constraint(m.I, rule=lambda m, i: m.rpos[i] <= float(bound[i]) * m.bpos[i])
    m.rneg_on = pyo.Constraint(m.I, rule=lambda m, i: m.rneg[i] <= float(bound[i]) * m.bneg[i])
    m.one_sign = pyo.Constraint(m.I, rule=lambda m, i: m.bpos[i] + m.bneg[i] <= 1)
    m.lam_pos = pyo.Constraint(m.I, rule=lambda m, i: m.lam[i] >= 2 * m.bpos[i] - 1)
    m.lam_neg = pyo.Constraint(m.I, rule=lambda m, i: m.lam[i] <= 1 - 2 * m.bneg[i])


def add_risk(m: pyo.ConcreteModel, spec: InstanceSpec, *, upper: float, unit: float, sense) -> None:
    """The linear risk at stationary points: -w y.r (squared) or -w y.lambda (absolute).

    The column m.risk holds risk / unit (unit = best-constant risk / OBJECTIVE_TARGET, so it is
    O(1e3)): the level floor is a bound on this column, and a level step of 1e-6 relative is
    then 1e-3 in column units, far above HiGHS' feasibility tolerance.  For the absolute loss
    the primal value w sum (rpos + rneg) is tied to it as well (equal at every feasible point,
    and it tightens the relaxation).  0 <= risk <= best-constant risk.
    """
    w = float(spec.loss.weight(spec.n)) / float(unit)
    y = spec.y
    mu = m.resid if spec.loss.kind == "squared" else m.lam
    m.risk = pyo.Var(bounds=(0.0, float(upper) / float(unit)))
    m.risk_dual = pyo.Constraint(expr=m.risk == -w * sum(float(y[i]) * mu[i] for i in m.I))
    if spec.loss.kind == "absolute" and PRIMAL_RISK_ROW:
        m.risk_primal = pyo.Constraint(expr=m.risk == w * sum(m.rpos[i] + m.rneg[i] for i in m.I))
    m.objective = pyo.Objective(expr=float(unit) * m.risk, sense=sense)


def build_localmin_model(spec: InstanceSpec, signs: np.ndarray, *, epsilon: float, maximize: bool = False,
                         formulation: FormulationOptions = FormulationOptions()) -> pyo.ConcreteModel:
    """The eps-interior local-minimum MILP of one sign class (see the module docstring)."""
    check_supported(spec)
    m = pyo.ConcreteModel(name=f"{spec.name}-localmin-signs{int((signs > 0).sum())}")
    m.I = pyo.RangeSet(0, spec.n - 1)
    m.J = pyo.RangeSet(0, spec.width - 1)
    m.L = pyo.RangeSet(0, spec.d - 1)
    m.K = pyo.RangeSet(0, spec.network.activation.n_pieces - 1)
    add_weights(m, spec)
    add_pieces_hull(m, spec)
    add_output(m, spec, signs)
    if formulation.threshold_1d and spec.d == 1 and spec.n > 1:
        add_threshold_order_1d(m, spec)
    add_margins(m, epsilon)
    bound = residual_bounds(spec)
    add_residuals(m, spec, bound)
    if spec.loss.kind == "squared":
        add_stationarity(m, spec, m.resid, bound)
    else:
        add_sign_duals(m, bound)
        add_stationarity(m, spec, m.lam, np.ones(spec.n))
    trivial = best_constant_risk(spec)
    upper = trivial * (1.0 + 1e-6) + 1e-12
    add_risk(m, spec, upper=upper, unit=risk_unit(spec) / OBJECTIVE_TARGET,
             sense=pyo.maximize if maximize else pyo.minimize)
    return m


# ----------------------------------------------------------------------------------------------
# One sign class: a compiled model re-solved with a rising risk floor
# ----------------------------------------------------------------------------------------------


class ClassWalk:
    """The MILP of one sign class, compiled once; `solve` finds the lowest level above the floor."""

    def __init__(self, spec: InstanceSpec, n_positive: int, *, epsilon: float, scale: float, abs_gap: float,
                 maximize: bool = False, formulation: FormulationOptions = FormulationOptions()):
        t0 = time.perf_counter()
        self.spec = spec
        self.n_positive = n_positive
        self.signs = sign_class(n_positive, spec.width)
        self.maximize = maximize
        self.model = build_localmin_model(spec, self.signs, epsilon=epsilon, maximize=maximize,
                                          formulation=formulation)
        self.compiled = compile_model(self.model)
        self.runner = MipRunner(self.compiled, scale=scale, options=milp_options(spec, abs_gap * scale))
        self.risk_col = self.compiled.column(self.model.risk)
        self.unit = risk_unit(spec) / OBJECTIVE_TARGET  # the risk column holds risk / unit
        self.upper = float(self.compiled.col_upper[self.risk_col])
        self.floor = 0.0
        self.pending: MipOutcome | None = None
        self.exclusions = 0
        self.build_seconds = time.perf_counter() - t0
        self.nodes = 0
        self.solves = 0
        self.corrections: list[tuple[float, float]] = []  # (claimed level, lower level found by the check)

    def raise_floor(self, level: float) -> None:
        """Only levels >= `level` remain (a bound on the risk column, not a new row)."""
        self.floor = max(self.floor, float(level))
        self.runner.highs.changeColBounds(self.risk_col, min(self.floor / self.unit, self.upper), self.upper)

    def exclude(self, pattern: np.ndarray) -> None:
        """No-good cut on the pattern and on its permutations of same-sign units:
        sum_{P_ij = 0} delta_ij1 + sum_{P_ij = 1} (1 - delta_ij1) >= 1."""
        self.exclusions += 1
        m, p = self.spec.width, self.n_positive
        seen = set()
        cols = np.array([[self.compiled.column(self.model.delta[i, j, 1]) for j in range(m)]
                         for i in range(self.spec.n)]).reshape(-1).astype(np.int32)
        for perm_pos in itertools.permutations(range(p)):
            for perm_neg in itertools.permutations(range(p, m)):
                perm = np.array(perm_pos + perm_neg, dtype=int)
                P = pattern[:, perm]
                key = P.tobytes()
                if key in seen:
                    continue
                seen.add(key)
                coef = np.where(P == 1, -1.0, 1.0).reshape(-1)
                lower = 1.0 - float(np.sum(P == 1))
                self.runner.add_rows(np.array([lower]), np.array([HIGHS_INF]), np.array([0], dtype=np.int32),
                                     cols, coef)

    def solve(self, time_limit: float, *, confirm_below: float | None = None) -> MipOutcome:
        """The lowest level above the floor (the highest, for a maximising walk).

        ``confirm_below`` (minimising walks): HiGHS' "optimal" is a claim, and on these models
        it was wrong in about 1 of 1000 level solves (a feasible lower level skipped, found at
        once with another random seed).  So an optimal / infeasible answer is re-checked with a
        second seed over [floor, answer - confirm_below]; a point found there replaces it.
        """
        start = time.perf_counter()
        out = self._run(time_limit)
        if confirm_below is not None and out.status in ("optimal", "infeasible"):
            top = (out.objective - confirm_below) / self.unit if out.x is not None else self.upper
            if top >= self.floor / self.unit:
                check = self._run(time_limit - (time.perf_counter() - start), upper=top,
                                  seed=int(self.spec.solve.seed) + 1)
                if check.x is not None:
                    self.corrections.append((out.objective, check.objective))
                    out = check
                elif check.status != "infeasible":  # the check did not finish: the claim stands unconfirmed
                    out = MipOutcome(status=check.status, objective=out.objective, dual_bound=check.dual_bound,
                                     x=out.x, nodes=out.nodes + check.nodes, seconds=out.seconds + check.seconds)
        self.pending = out
        return out

    def _run(self, time_limit: float, *, upper: float | None = None, seed: int | None = None) -> MipOutcome:
        h = self.runner.highs
        if upper is not None:
            h.changeColBounds(self.risk_col, min(self.floor / self.unit, self.upper), float(upper))
        if seed is not None:
            h.setOptionValue("random_seed", seed)
        try:
            out = self.runner.run(time_limit=time_limit)
        finally:
            if upper is not None:
                h.changeColBounds(self.risk_col, min(self.floor / self.unit, self.upper), self.upper)
            if seed is not None:
                h.setOptionValue("random_seed", int(self.spec.solve.seed))
        self.nodes += out.nodes
        self.solves += 1
        if not self.maximize:
            return out
        # compile_model minimised -risk: report the risk and its proven upper bound
        return MipOutcome(status=out.status, objective=-out.objective if out.x is not None else -np.inf,
                          dual_bound=-out.dual_bound, x=out.x, nodes=out.nodes, seconds=out.seconds)

    def pattern(self, x: np.ndarray) -> np.ndarray:
        return pattern_of(self.model, x, self.compiled.column)

    def multipliers(self, x: np.ndarray) -> np.ndarray | None:
        """lambda of the absolute loss (None for the squared loss)."""
        if self.spec.loss.kind != "absolute":
            return None
        return np.array([x[self.compiled.column(self.model.lam[i])] for i in self.model.I])


def milp_options(spec: InstanceSpec, abs_gap_scaled: float) -> dict:
    """HiGHS options of every level solve.  Primal heuristics are off: every solve must prove its
    level anyway, and on 3 tiny instances they cost 40 % of the CPU time (8.4 s -> 5.1 s,
    same node counts); presolve off, restarts off, symmetry detection off, no cuts at nodes and
    pseudocost reliability 2 measured no better."""
    return {
        "mip_heuristic_effort": 0.0,
        "mip_heuristic_run_rins": False,
        "mip_heuristic_run_rens": False,
        "mip_heuristic_run_root_reduced_cost": False,
        "mip_heuristic_run_feasibility_jump": False,
        "mip_rel_gap": 0.0,
        "mip_abs_gap": float(abs_gap_scaled),
        "mip_feasibility_tolerance": 1e-9,
        "primal_feasibility_tolerance": 1e-9,
        "random_seed": int(spec.solve.seed),
        "threads": int(spec.solve.threads),
        "output_flag": bool(spec.solve.verbose),
    }


# ----------------------------------------------------------------------------------------------
# Certification of one pattern
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Certified:
    minimum: LocalMinimum
    level: float  # the cell's exact optimum (= its unconstrained optimum)


@dataclass(frozen=True)
class Rejected:
    """A MILP pattern that did not certify.  ``definitive``: the cell provably holds no
    eps-interior local minimum, so excluding it keeps the walk complete."""

    reason: str
    definitive: bool


def free_optimum(spec: InstanceSpec, phi: np.ndarray, lam: np.ndarray | None) -> float:
    """A certified value of min over R^p of the cell risk R_A(theta) = w sum loss(Phi theta, y).

    squared: w ||(I - P) y||^2 with the projection computed by numpy least squares (exact).
    absolute: a lower bound -w y.lam' from weak duality (sum |r| >= lam'.r = -lam'.y when
    Phi^T lam' = 0, |lam'| <= 1), lam' = the MILP's lambda projected onto null(Phi^T) and
    scaled into [-1, 1].  It equals the minimum when lambda is an optimal dual.
    """
    y, w = spec.y, float(spec.loss.weight(spec.n))
    if spec.loss.kind == "squared":
        theta = np.linalg.lstsq(phi, y, rcond=None)[0]
        r = phi @ theta - y
        return w * float(r @ r)
    if lam is None:
        return -np.inf
    lam = lam - phi @ np.linalg.lstsq(phi, lam, rcond=None)[0]
    lam = lam / max(1.0, float(np.max(np.abs(lam))))
    return -w * float(y @ lam)


def certify_pattern(spec: InstanceSpec, cell: Cell, certifier: Certifier, *,
                    lam: np.ndarray | None) -> Certified | Rejected:
    """Certify that the cell of a MILP point holds a local minimum; returns it, or why not.

    `certificates.Certifier` solves the cell (`CellSolver`, verified), finds a relative-interior
    optimal point and certifies it (interior: strictly inside the cell and the box).  Our own
    checks: the cell optimum equals the cell's unconstrained minimum (the MILP's stationarity
    claim, `free_optimum`), and the ordinary-weight point reproduces the cell's pattern strictly
    and its risk (numpy forward pass).

    The certifier answers "local minimum over the box" and says box_limited when every optimal
    point touches the box.  A stationary point needs no box: when the cell optimum equals the
    unconstrained minimum, an optimal point strictly inside the cell (`max_margin_point`, which
    may touch the box) is a local minimum of R in the whole parameter space.
    """
    verdict = certifier.certify(cell, found_by="milp")
    _, result = certifier.cell_result(cell)
    if result.status != "optimal" or result.theta is None:
        return Rejected(f"cell solve ended {result.status}", False)
    phi = certifier.builder.phi(cell, certifier.builder.layout(cell.width))
    free = free_optimum(spec, phi, lam)
    tol = FREE_RTOL * max(result.risk, 1e-12) + 1e-13
    if result.risk > free + tol:
        # squared: free is exact, so no point of the closed cell and box is stationary; absolute:
        # free is a dual bound from the MILP's lambda, exact only when lambda is optimal
        return Rejected(f"cell optimum {result.risk:.12g} above the unconstrained cell minimum {free:.12g}",
                        spec.loss.kind == "squared")
    if verdict.is_local_minimum and verdict.minimum is not None:
        return _numpy_check(spec, cell, verdict.minimum, result.risk, free, tol)
    if verdict.status != "box_limited":
        return Rejected(f"certificate: {verdict.status} ({verdict.reason})", verdict.status == "not_local_minimum")
    found = max_margin_point(spec, cell, result.fitted, result.risk, certifier)
    if found is None:
        return Rejected("no optimal point strictly inside the cell", False)
    x, margin = found
    theta = certifier.builder.layout(cell.width).theta(x, cell.signs)
    params, _ = theta.to_original(spec.network.activation)
    fitted = params.forward(spec.X, spec.network.activation)
    mn = LocalMinimum(
        instance=spec.name, cell=cell.key(), risk=spec.loss.risk(fitted, spec.y), certificate="interior",
        margin=margin, valley_dim=null_dim(phi), params=params, fitted=fitted, found_by="milp",
    )
    return _numpy_check(spec, cell, mn, result.risk, free, tol)


def max_margin_point(spec: InstanceSpec, cell: Cell, fitted: np.ndarray, level: float,
                     certifier: Certifier) -> tuple[np.ndarray, float] | None:
    """An optimal point of the closed cell (box included) of largest margin, and that margin.

    max mu s.t. G theta >= mu (signed cell rows, normalised), box, and optimality: squared
    Phi theta = f* (the optimal fitted values are unique); absolute t >= +-(Phi theta - y),
    w sum t <= level (1 + 1e-10), followed by  min w sum t  s.t.  G theta >= mu*/2  for an
    exactly optimal vertex.  None when mu* <= 0.
    """
    prob = certifier.builder.build(cell)
    p, n = prob.layout.n_params, spec.n
    G = prob.cell_matrix
    G = G / np.maximum(np.linalg.norm(G, axis=1), 1e-300)[:, None]
    R = G.shape[0]
    phi, y = prob.phi, spec.y
    lo, hi = prob.col_lower[:p], prob.col_upper[:p]
    w = float(spec.loss.weight(n))
    one = np.ones((R, 1))
    if spec.loss.kind == "squared":
        A = np.vstack([np.hstack([G, -one]), np.hstack([phi, np.zeros((n, 1))])])
        z = _lp(np.r_[np.zeros(p), -1.0], A, np.r_[np.zeros(R), fitted], np.r_[np.full(R, HIGHS_INF), fitted],
                np.r_[lo, 0.0], np.r_[hi, 1.0])
        if z is None or z[p] <= 0.0:
            return None
        theta = z[:p] + np.linalg.lstsq(phi, fitted - phi @ z[:p], rcond=None)[0]  # onto Phi theta = f*
        return np.clip(theta, lo, hi), float(z[p])
    eye, zn = np.eye(n), np.zeros((n, 1))
    A = np.vstack([np.hstack([G, np.zeros((R, n)), -one]), np.hstack([-phi, eye, zn]), np.hstack([phi, eye, zn]),
                   np.r_[np.zeros(p), np.full(n, w), 0.0][None, :]])
    z = _lp(np.r_[np.zeros(p + n), -1.0], A, np.r_[np.zeros(R), -y, y, -HIGHS_INF],
            np.r_[np.full(R + 2 * n, HIGHS_INF), level * (1 + 1e-10) + 1e-15],
            np.r_[lo, np.zeros(n), 0.0], np.r_[hi, np.full(n, HIGHS_INF), 1.0])
    if z is None or z[-1] <= 0.0:
        return None
    mu = float(z[-1])
    z2 = _lp(np.r_[np.zeros(p), np.full(n, w)], A[:-1, :-1], np.r_[np.full(R, mu / 2), -y, y],
             np.full(R + 2 * n, HIGHS_INF), np.r_[lo, np.zeros(n)], np.r_[hi, np.full(n, HIGHS_INF)])
    return None if z2 is None else (z2[:p], mu)


def _lp(cost, A, row_lo, row_hi, col_lo, col_hi) -> np.ndarray | None:
    """min cost.x s.t. row_lo <= A x <= row_hi and the column bounds; the optimal x or None."""
    h = highspy.Highs()
    for key, value in (("output_flag", False), ("threads", 1), ("time_limit", 10.0),
                       ("primal_feasibility_tolerance", 1e-10), ("dual_feasibility_tolerance", 1e-10)):
        h.setOptionValue(key, value)
    Acsc = sp.csc_matrix(A)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
    lp.col_cost_ = np.asarray(cost, dtype=float)
    lp.col_lower_, lp.col_upper_ = np.asarray(col_lo, dtype=float), np.asarray(col_hi, dtype=float)
    lp.row_lower_, lp.row_upper_ = np.asarray(row_lo, dtype=float), np.asarray(row_hi, dtype=float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = Acsc.indptr
    lp.a_matrix_.index_ = Acsc.indices
    lp.a_matrix_.value_ = Acsc.data
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return np.array(h.getSolution().col_value)


def _numpy_check(spec: InstanceSpec, cell: Cell, mn: LocalMinimum, cell_risk: float, free: float,
                 tol: float) -> Certified | Rejected:
    """Forward pass in ordinary weights: the risk equals the cell optimum and every (sample, unit)
    sits strictly on the piece the cell assigns (an interior certificate)."""
    act = spec.network.activation
    params = mn.params
    fitted = params.forward(spec.X, act)
    risk = spec.loss.risk(fitted, spec.y)
    if abs(risk - cell_risk) > 10 * tol or risk > free + 10 * tol:
        return Rejected(f"numpy risk {risk:.12g} differs from the cell optimum {cell_risk:.12g}", False)
    if mn.certificate == "interior":
        # the certifier may return a permutation of the cell's units: compare as multisets of columns
        Z = params.pre_activations(spec.X)
        mine = sorted(map(tuple, np.column_stack([act.piece(Z).T, np.sign(params.v)[:, None]]).tolist()))
        theirs = sorted(map(tuple, np.column_stack([cell.pattern.T, cell.signs[:, None]]).tolist()))
        if mine != theirs or np.min(np.abs(Z)) <= 0.0:
            return Rejected("the certified point's pattern differs from the cell (or sits on a kink)", False)
    return Certified(minimum=mn, level=float(cell_risk))


# ----------------------------------------------------------------------------------------------
# The walk
# ----------------------------------------------------------------------------------------------


def find_local_minima(spec: InstanceSpec, *, time_limit: float, max_levels: int = 50,
                      epsilon: float = DEFAULT_EPSILON, level_resolution: float = DEFAULT_LEVEL_RESOLUTION,
                      formulation: FormulationOptions = FormulationOptions(), confirm: bool = True,
                      progress: Progress | None = None) -> LocalMinimaSearch:
    """The distinct risk levels of the eps-interior local minima inside the box, lowest first.

    Stops after `max_levels` levels or `time_limit` seconds; then, time permitting, one
    maximisation per sign class bounds (and certifies) the worst level.  ``confirm`` re-checks
    every level solve with a second HiGHS seed (`ClassWalk.solve`; about twice the MILP time).
    """
    check_supported(spec)
    if not epsilon > 0:
        raise MilplandError(f"epsilon: must be positive (the interior margin), got {epsilon}")
    if not (isinstance(max_levels, int) and max_levels >= 1):
        raise MilplandError(f"max_levels: must be a positive integer, got {max_levels!r}")
    if not time_limit > 0:
        raise MilplandError(f"time_limit: must be positive seconds, got {time_limit}")
    started = time.perf_counter()
    deadline = started + float(time_limit)
    say = progress or (lambda _msg: None)
    unit = risk_unit(spec)
    delta = float(level_resolution) * unit
    scale = OBJECTIVE_TARGET / unit
    cells = CellSolver(spec.X, spec.y, spec.network.activation, spec.loss, spec.box,
                       output_bias=spec.network.output_bias, time_limit=max(1.0, time_limit / 10))
    walks = [ClassWalk(spec, p, epsilon=epsilon, scale=scale, abs_gap=delta / 10, formulation=formulation)
             for p in range(spec.width, -1, -1)]
    certifier = Certifier(spec, solver=cells)
    state = _WalkState(spec=spec, certifier=certifier, delta=delta, deadline=deadline, say=say, confirm=confirm)
    for walk in walks:
        state.solve(walk)
    first_bounds = [w.pending.dual_bound if w.pending.status != "infeasible" else np.inf for w in walks]
    state.best_bound = min(first_bounds)
    state.run(walks, max_levels)
    worst = state.worst_bound(walks)
    if not state.complete and time.perf_counter() < deadline:
        worst = _worst_level(spec, state, epsilon=epsilon, scale=scale, formulation=formulation)
    levels = sorted(state.levels)
    if levels:
        state.best_bound = min(state.best_bound, levels[0])
    return LocalMinimaSearch(
        instance=spec.name, minima=sorted(state.minima, key=lambda mn: mn.risk), levels=levels,
        complete=state.complete, best_level_bound=float(state.best_bound), worst_level_bound=float(worst),
        epsilon=float(epsilon), level_resolution=delta, box_weight=float(spec.box.weight),
        seconds=time.perf_counter() - started, milp_solves=state.solves, nodes=state.nodes, notes=state.notes,
    )


@dataclass
class _WalkState:
    spec: InstanceSpec
    certifier: Certifier
    delta: float
    deadline: float
    say: Progress
    levels: list[float] = field(default_factory=list)
    minima: list[LocalMinimum] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    confirm: bool = True
    complete: bool = True
    best_bound: float = np.inf
    solves: int = 0
    nodes: int = 0

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def solve(self, walk: ClassWalk) -> None:
        if self.remaining() <= 0:
            walk.pending = MipOutcome("time_limit", np.inf, walk.floor, None, 0, 0.0)
            self.complete = False
            return
        solves, nodes, fixes = walk.solves, walk.nodes, len(walk.corrections)
        out = walk.solve(self.remaining(), confirm_below=self.delta / 2 if self.confirm else None)
        self.solves += walk.solves - solves
        self.nodes += walk.nodes - nodes
        for claimed, found in walk.corrections[fixes:]:
            self.notes.append(f"class {walk.n_positive}+: HiGHS claimed {claimed:.10g} as the next level above "
                              f"{walk.floor:.10g}; the second-seed check found {found:.10g}")
        if out.status not in ("optimal", "infeasible"):
            self.complete = False
            self.notes.append(
                f"class {walk.n_positive}+: solve above {walk.floor:.10g} ended {out.status} "
                f"(levels in [{walk.floor:.10g}, {out.dual_bound:.10g}) are proven absent only up to the bound)"
            )

    def run(self, walks: list[ClassWalk], max_levels: int) -> None:
        """Lazy merge of the classes' ascending walks: always advance the class whose next level
        is lowest; every class whose next point is at that level (within delta) moves above it."""
        while True:
            live = [w for w in walks if w.pending is not None and w.pending.x is not None]
            if not live:
                return
            if len(self.levels) >= max_levels:
                self.stop(f"stopped after max_levels = {max_levels} levels")
                return
            if self.remaining() <= 0:
                self.stop("stopped at the time limit")
                return
            walk = min(live, key=lambda w: w.pending.objective)
            level = walk.pending.objective
            got = self.certify(walk)
            if got is None:
                continue  # pattern excluded and the class re-solved (or given up)
            at_level = [w for w in live if w.pending.objective <= level + self.delta]
            for other in at_level:
                if other is not walk:  # another sign class at the same level: one more representative
                    self.certify(other, exclude=False)
            for other in at_level:
                other.raise_floor(level + self.delta)
                self.solve(other)

    def stop(self, note: str) -> None:
        self.complete = False
        self.notes.append(note)

    def certify(self, walk: ClassWalk, *, exclude: bool = True) -> Certified | None:
        """Certify walk's pending point and record it.  Returns it when its certified level agrees
        with the MILP's; otherwise (rejected, or a level off by more than delta / 2) the pattern is
        excluded by a no-good cut and the class re-solved, unless ``exclude`` is False."""
        x = walk.pending.x
        milp_level = walk.pending.objective
        cell = Cell(pattern=walk.pattern(x), signs=walk.signs)
        got = certify_pattern(self.spec, cell, self.certifier, lam=walk.multipliers(x))
        if isinstance(got, Certified):
            self.record(got)  # a certified minimum is real whatever the MILP said
            if abs(got.level - milp_level) <= self.delta / 2:
                return got
            got = Rejected(f"certified level {got.level:.12g} differs from the MILP level", False)
        self.notes.append(f"class {walk.n_positive}+: pattern at MILP level {milp_level:.10g} rejected "
                          f"({got.reason})" + ("; excluded" if exclude else ""))
        if not exclude:
            return None
        if not got.definitive:
            self.complete = False  # a level could hide behind the excluded pattern
        walk.exclude(cell.pattern)
        if walk.exclusions > MAX_EXCLUSIONS:
            self.stop(f"class {walk.n_positive}+: given up after {MAX_EXCLUSIONS} rejected patterns")
            walk.pending = None
            return None
        self.solve(walk)
        return None

    def record(self, got: Certified) -> None:
        mn = got.minimum
        if not any(abs(level - got.level) <= self.delta for level in self.levels):
            self.levels.append(got.level)
            self.say(f"level {len(self.levels)}: risk {got.level:.10g} (margin {mn.margin:.3g}, "
                     f"valley dim {mn.valley_dim})")
        if not any(same_minimum(other.fitted, other.risk, mn.fitted, mn.risk, self.spec) for other in self.minima):
            self.minima.append(mn)

    def worst_bound(self, walks: list[ClassWalk]) -> float:
        """Complete walk: no level at or above last + delta.  Otherwise unknown here."""
        if self.complete:
            return (max(self.levels) + self.delta) if self.levels else -np.inf
        return np.inf


def _worst_level(spec: InstanceSpec, state: _WalkState, *, epsilon: float, scale: float,
                 formulation: FormulationOptions) -> float:
    """Maximise the risk per class: certify the worst level found, return a proven upper bound."""
    bound = -np.inf
    classes = list(range(spec.width, -1, -1))
    for position, p in enumerate(classes):
        if state.remaining() <= 0:
            return np.inf
        walk = ClassWalk(spec, p, epsilon=epsilon, scale=scale, abs_gap=state.delta / 10, maximize=True,
                         formulation=formulation)
        out = walk.solve(state.remaining() / (len(classes) - position))
        state.solves += walk.solves
        state.nodes += walk.nodes
        if out.status == "infeasible":
            continue
        if out.status != "optimal":
            bound = np.inf if not np.isfinite(out.dual_bound) else max(bound, out.dual_bound)
            state.notes.append(f"class {p}+: worst-level solve ended {out.status}")
        else:
            bound = max(bound, out.dual_bound, out.objective)
        if out.x is not None:
            cell = Cell(pattern=walk.pattern(out.x), signs=walk.signs)
            got = certify_pattern(spec, cell, state.certifier, lam=walk.multipliers(out.x))
            if isinstance(got, Certified):
                state.record(got)
            else:
                state.notes.append(f"class {p}+: worst-level pattern rejected ({got.reason})")
    return bound
