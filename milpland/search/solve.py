"""The certified global minimum of a one-hidden-layer network (DESIGN §3-§4).

`solve_global(spec)` runs one MILP per sign class (the m units are interchangeable,
so only the number of positive output weights matters: m + 1 classes), passing the
best risk found so far as a cutoff to the next class.  Absolute and hinge losses are
exact MILPs; the squared loss uses outer approximation: the master MILP minimises
tangent cuts of the residuals, its pattern gives a cell QP whose optimum is an upper
bound, tangents at the QP residuals are added, until the master's bound meets the
best QP value.

Every answer is polished and re-checked: the winning pattern's convex cell problem
is solved exactly (`CellSolver`), the point is mapped back to ordinary weights and
evaluated with a plain numpy forward pass, and its pattern is compared with the
binaries (`verify`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Callable

import highspy
import numpy as np
from scipy.special import expit

import milpland.interrupt as interrupt
from milpland.cells.logistic import LogisticCellSolver
from milpland.cells.problem import Cell, CellSolver
from milpland.cells.scaled import ScaledParams, sign_class
from milpland.cells.verify import verify_point
from milpland.errors import MilplandError
from milpland.instance.spec import InstanceSpec
from milpland.search import bounds, memory, pattern_bnb
from milpland.search.decay_solve import solve_decay
from milpland.search.formulation import (
    BuildStopped,
    ClassTemplate,
    FormulationOptions,
    check_build_time,
    class_arrangement,
    lift_point,
    pattern_of,
)
from milpland.search.highs_backend import MipRunner
from milpland.search.incumbents import Candidate, MultistartOptions, first_incumbents
from milpland.search.outcome import ClassOutcome, Exploration, Incumbent, consider, tolerance
from milpland.search.pattern_bnb import BnbOptions
from milpland.search.result import Seconds, SolveResult
from milpland.search.separability import MARGIN_SCALE, Separability, check_separable

Progress = Callable[[str], None]
OBJECTIVE_TARGET = 1e3  # the scaled objective of the incumbent (DESIGN §4: HiGHS' absolute threshold)
ABS_TOL_FACTOR = 1e-9  # absolute certification tolerance, relative to the baseline risk
MAX_OA_ROUNDS = 500
FINISH_RESERVE = 1.0  # seconds of the time limit kept for verification and the result (at most 2 %)
# bnb's convexity node problem, per dense entry (`memory.convexity_node_entries`): measured 4e-8 to
# 7e-8 s at n = 1000-5000 in 1-D (0.98 s, 7.6 s, 41 s per root node) on a shared two-core machine.
NODE_SECONDS_PER_ENTRY = 1e-7
# One cell solve, per weight of the cell problem (`memory.cell_params`): its numpy polish works on
# dense p x p matrices; measured 3.4 / 12 / 32 / 26-139 s at p = 203 / 603 / 1203 / 2003 (d = 100-1000,
# n = 10, a loaded two-core machine).  Only estimates above CELL_GATE_SECONDS gate anything.
CELL_SECONDS_PER_WEIGHT = 0.02
CELL_GATE_SECONDS = 1.0
START_TOL = 1e-7  # a lifted warm start violating the master by more than this is not offered


@dataclass(frozen=True)
class SolveStrategy:
    """How the sign classes are searched (each switchable for the ablation, milpland/ablation.py).

    multistart: the first incumbent (`milpland.search.incumbents`); starts = 0 keeps the constant fit.
    cutoff: the best risk so far (minus half the tolerance) prunes every class's tree.
    warm_start: the best known point of a class, lifted into its master, is HiGHS' first incumbent.
    incumbent_class_first: solve the incumbent's class first, then the classes with good candidates.
    candidate_tangents: squared loss: tangents at the residuals of this many best candidates.
    tangent_grid: squared loss: tangents per sample at evenly spaced residuals within the cutoff radius.
    processes: sign classes solved in this many processes at once (1: in sequence).
    incumbent_share: at most this fraction of the time limit goes to the incumbent search.
    bnb: the pattern branch-and-bound's techniques (method bnb).
    """

    multistart: MultistartOptions = MultistartOptions()
    cutoff: bool = True
    warm_start: bool = True
    incumbent_class_first: bool = True
    candidate_tangents: int = 4
    tangent_grid: int = 9  # measured: fewer nodes on 6 of 6 squared instances, n40-d1-w2 certified
    processes: int = 1
    incumbent_share: float = 0.25
    bnb: BnbOptions = BnbOptions()

    def describe(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Context:
    """What every sign class needs, fixed before the first MILP (picklable for worker processes)."""

    spec: InstanceSpec
    formulation: FormulationOptions
    strategy: SolveStrategy
    scale: float
    abs_tol: float
    candidates: tuple  # Candidate, best first
    tangent_points: tuple  # residual vectors where the first tangents go (squared loss)


def solve_global(
    spec: InstanceSpec,
    *,
    formulation: FormulationOptions = FormulationOptions(),
    progress: Progress | None = None,
    strategy: SolveStrategy = SolveStrategy(),
    explore: Exploration | None = None,
) -> SolveResult:
    """Certified global minimum of the training risk over the box (one hidden layer, scalar output).

    Every phase watches one deadline, ``[solve] time_limit`` seconds after the call, and the stop
    flag of `milpland.interrupt` (Ctrl-C): the incumbent search, the model build, every sign
    class and node; a phase that cannot finish in time is skipped.  The result then has status
    ``time_limit`` (or ``interrupted``) with the best point and the bound proven so far.

    ``explore``: the pattern branch-and-bound also visits every leaf cell whose bound is at most
    the exploration's threshold and hands it over (the landscape's listing, DESIGN §5b).
    """
    if spec.network.depth != 1:
        if explore is not None:
            raise MilplandError("the branch-and-bound listing handles one hidden layer only")
        if spec.solve.method != "auto":  # milp and bnb are one-hidden-layer searches: say so, not run another
            raise MilplandError(f"solve.method = {spec.solve.method!r} (or --method) applies to one hidden layer; "
                                f"{spec.name} has hidden = {list(spec.network.hidden)}: drop it (auto runs the "
                                "two-layer search)")
        from milpland.search.deep_solve import solve_deep  # the two-layer search (DESIGN §6a)

        return solve_deep(spec, progress=progress, one_hidden=solve_global)
    if spec.loss.decayed:  # risk + weight decay: every cell's SOCP (DESIGN §4d); nothing else honours it
        if explore is not None:
            raise MilplandError("loss.weight_decay: the branch-and-bound listing does not handle weight decay; "
                                "use the enumerate method")
        return solve_decay(spec, progress=progress)
    started = time.perf_counter()
    # the searches end a little early: verifying the point and assembling the result take the rest
    deadline = started + spec.solve.time_limit - min(FINISH_RESERVE, 0.02 * spec.solve.time_limit)
    say = progress or (lambda _msg: None)
    with interrupt.polling():
        method, notes = choose_method_within_limits(spec, strategy=strategy)
        if explore is not None and method != "bnb":
            reason = bnb_refusal(spec) or f"solve.method = {spec.solve.method!r}"
            raise MilplandError(f"the branch-and-bound listing needs the pattern branch-and-bound: {reason}")
        for note in notes:
            say(note)
        cells = make_cell_solver(spec)
        incumbent = baseline_incumbent(spec, cells)
        abs_tol = ABS_TOL_FACTOR * incumbent.risk
        candidates: list[Candidate] = []
        if strategy.multistart.starts > 0 and incumbent.risk > abs_tol:
            share = min(deadline, started + strategy.incumbent_share * spec.solve.time_limit)
            candidates = first_incumbents(spec, cells, strategy.multistart, seed=spec.solve.seed, deadline=share,
                                          cell_seconds=cell_seconds(spec))
            if candidates and candidates[0].risk < incumbent.risk:
                best = candidates[0]
                incumbent = Incumbent(risk=best.risk, theta=best.theta, cell=best.cell, box_active=best.box_active,
                                      found_by=best.found_by)
        search_seconds = time.perf_counter() - started
        say(f"first incumbent {incumbent.risk:.6g} ({incumbent.found_by}, {search_seconds:.1f} s)")
        outcomes: list[ClassOutcome] = []
        # a zero (up to tolerance) risk needs no proof, the risk is >= 0; a listing still searches
        if incumbent.risk > abs_tol or explore is not None:
            ctx = Context(spec=spec, formulation=formulation, strategy=strategy,
                          scale=OBJECTIVE_TARGET / max(incumbent.risk, 1e3 * abs_tol, 1e-300), abs_tol=abs_tol,
                          candidates=tuple(candidates),
                          tangent_points=tangent_points(spec, incumbent, candidates, strategy))
            outcomes = search_classes(ctx, method, incumbent, cells, deadline, say, notes, explore=explore)
        separation = None
        if spec.loss.kind == "logistic" and not separates(spec, incumbent):  # DESIGN §4e: is 0 the infimum?
            separation = check_separable(spec, formulation, cells, sign_class_order(spec), deadline=deadline,
                                         options=highs_options(spec, 1e-9 * MARGIN_SCALE))
        return assemble_result(spec, incumbent, outcomes, abs_tol, started, formulation=formulation,
                               strategy=strategy, search_seconds=search_seconds, method=method, notes=notes,
                               separation=separation)


def search_classes(ctx: Context, method: str, incumbent: Incumbent, cells: CellSolver, deadline: float,
                   say: Progress, notes: list[str], *, explore: Exploration | None = None) -> list[ClassOutcome]:
    """The sign classes searched by `method` until `deadline`; a search that cannot make progress in
    the time left (a single cell solve or bnb node would outlast it) is not started (said in `notes`)."""
    spec, strategy = ctx.spec, ctx.strategy
    order = class_order(spec, incumbent, list(ctx.candidates), strategy)
    left = deadline - time.perf_counter()
    why = ""
    if stopped(deadline):
        why = "stopped before the search began (time limit or interrupt)"
    elif cell_seconds(spec) > left:
        why = (f"a cell problem of {memory.cell_params(spec)} weights takes about {cell_seconds(spec):.2g} s "
               "to solve, more than the time left: not searched")
    elif method == "bnb" and node_seconds(spec, strategy) > left:
        why = f"one bnb node takes about {node_seconds(spec, strategy):.2g} s, more than the time left: not searched"
    if why:
        notes.append(why)
        return [not_searched(k) for k in order]
    only = getattr(explore, "classes", None)  # a listing split over processes searches some classes
    if only is not None:
        order = [k for k in order if k in only]
    if method == "bnb":
        return pattern_bnb.search(spec, incumbent, cells, order, deadline=deadline, abs_tol=ctx.abs_tol, say=say,
                                  options=strategy.bnb, explore=explore)
    if strategy.processes > 1 and len(order) > 1:
        return solve_classes_parallel(ctx, order, incumbent, cells, deadline, say)
    return solve_classes_sequential(ctx, order, incumbent, cells, deadline, say)


def cell_seconds(spec: InstanceSpec) -> float:
    """Expected seconds of one cell solve where it matters (above CELL_GATE_SECONDS), else 0."""
    seconds = CELL_SECONDS_PER_WEIGHT * memory.cell_params(spec)
    return seconds if seconds > CELL_GATE_SECONDS else 0.0


def stopped(deadline: float) -> bool:
    """The deadline has passed or a stop was requested (Ctrl-C)."""
    return interrupt.requested() or time.perf_counter() >= deadline


def not_searched(n_positive: int) -> ClassOutcome:
    """A sign class the search never reached: its only proven bound is 0 (every loss is >= 0)."""
    return ClassOutcome(n_positive=n_positive, lower_bound=0.0, complete=False)


AUTO_BNB_MAX_D = 2  # absolute and hinge losses: bnb's node LPs grow with the 2 C(n, d) rays; milp from d = 3
# squared loss: bnb (hull node least squares) up to d = 4.  Measured (results/bench-scaling.md, width 2,
# n = 20, same run): d = 3 bnb 0.74 s against milp 6.9 s, d = 4 3.2 s against 4.9 s; d = 6 bnb not
# certified in 60 s (77,520 rays a unit), milp 12 s
AUTO_BNB_MAX_D_SQUARED = 4
# ... and at d = 4 only while the hull's rays x samples stay below this (d = 3: wherever the hull can be built).
# Measured 2026-12-05 (60 s, width 2 unless said, teacher seed 0; with the node's output bias as a bounded
# column, results/frontier.md): d = 3, n = 40 bnb 2.1 s against milp 23 s; d = 3, n = 80 (13 M rays x
# samples) bnb certified in 50 s, milp's bound 0 at 60 s; d = 3, width 3, n = 40 neither certified, bnb's
# bound 8.8e-4 against milp's 0; d = 4, n = 30 (1.6 M) milp 7.3 s against bnb 11.5 s
AUTO_BNB_MAX_RAY_ENTRIES = {3: math.inf, 4: 250_000}


def choose_method(spec: InstanceSpec) -> str:
    """The search behind `solve_global`: ``[solve] method`` = milp (sign-class MILPs, any activation
    and loss), bnb (`milpland.search.pattern_bnb`: homogeneous two-piece activation), or auto:
    bnb where it applies and was measured faster (results/bench-*.md): inputs of dimension up to
    AUTO_BNB_MAX_D_SQUARED for the squared loss when the hull relaxation can be built (at d = 4 with at
    most AUTO_BNB_MAX_RAY_ENTRIES[4] rays x samples; without it bnb's convexity relaxation is weak from
    d = 2), up to AUTO_BNB_MAX_D for the others; else milp."""
    requested = spec.solve.method
    reason = bnb_refusal(spec)
    if requested == "bnb" and reason:
        raise MilplandError(f"solve.method = \"bnb\": {reason}; use method = \"milp\" or \"auto\"")
    if requested == "auto":
        return "bnb" if reason is None and _bnb_measured_faster(spec) else "milp"
    return requested


def bnb_refusal(spec: InstanceSpec) -> str | None:
    """Why the pattern branch-and-bound cannot search `spec` (None: it can).  The logistic loss has no
    node bound there: its global search without weight decay is the MILP's outer approximation."""
    if spec.loss.kind == "logistic":
        return "the logistic loss needs weight_decay > 0 or method = \"milp\""
    return pattern_bnb.applies(spec)


def _bnb_measured_faster(spec: InstanceSpec) -> bool:
    if spec.d <= AUTO_BNB_MAX_D:
        return True
    rays = 2 * math.comb(spec.n, spec.d)
    return (spec.loss.kind == "squared" and spec.d <= AUTO_BNB_MAX_D_SQUARED
            and rays * spec.n <= AUTO_BNB_MAX_RAY_ENTRIES[spec.d] and pattern_bnb.hull_applies(spec.X) is None)


def node_seconds(spec: InstanceSpec, strategy: SolveStrategy) -> float:
    """Estimated seconds of one node of bnb's convexity relaxation (0 for the hull relaxation, whose
    size `unit_hull.hull_applies` caps): its dense node problem grows as n^2."""
    if pattern_bnb.uses_hull(spec, strategy.bnb):
        return 0.0
    return NODE_SECONDS_PER_ENTRY * memory.convexity_node_entries(spec)


def choose_method_within_limits(spec: InstanceSpec, *,
                                strategy: SolveStrategy = SolveStrategy()) -> tuple[str, list[str]]:
    """`choose_method`, then the limits.  Time: auto takes milp where one bnb node would need more
    than half the time limit.  Memory (`milpland.search.memory`, ``[solve] memory_limit``): auto
    falls back from bnb to milp when only milp fits; a search that does not fit is refused with its
    estimate.  Returns (method, notes for the result's message)."""
    method = choose_method(spec)
    notes = []
    if spec.solve.method == "auto" and method == "bnb":
        seconds = node_seconds(spec, strategy)
        if seconds > 0.5 * spec.solve.time_limit:
            method = "milp"
            notes.append(f"method auto: one bnb node of n = {spec.n} samples takes about {seconds:.2g} s, more than "
                         f"half the time limit; used milp")
    method, more = _within_memory(spec, method, strategy)
    return method, notes + more


def _within_memory(spec: InstanceSpec, method: str, strategy: SolveStrategy) -> tuple[str, list[str]]:
    limit = memory.limit_bytes(spec)
    starts = strategy.multistart.starts
    need = memory.estimate(spec, method, starts=starts, hull=pattern_bnb.uses_hull(spec, strategy.bnb))
    if need.peak <= limit:
        return method, []
    other = "milp" if method == "bnb" else "bnb"
    alternative = None
    if other == "milp" or bnb_refusal(spec) is None:
        alternative = memory.estimate(spec, other, starts=starts, hull=pattern_bnb.uses_hull(spec, strategy.bnb))
    if spec.solve.method == "auto" and alternative is not None and alternative.peak <= limit:
        return other, [f"method auto: {method} would need {need.describe()}, more than the memory limit of "
                       f"{memory.gigabytes(limit)}; used {other} ({alternative.describe()})"]
    hint = ""
    if alternative is not None and alternative.peak <= limit:
        hint = f", or use method = \"{other}\" ({alternative.describe()})"
    raise MilplandError(f"solve.memory_limit: the {method} search of {spec.name} needs {need.describe()}, more than "
                        f"the limit of {memory.gigabytes(limit)}; raise [solve] memory_limit (GB; --memory-limit)"
                        f"{hint} or make the instance smaller")


def make_cell_solver(spec: InstanceSpec) -> CellSolver:
    if spec.loss.kind == "logistic":  # exponential cones, Clarabel (cells/logistic.py)
        return LogisticCellSolver(spec.X, spec.y, spec.network.activation, spec.loss, spec.box,
                                  output_bias=spec.network.output_bias,
                                  time_limit=max(1.0, spec.solve.time_limit / 4))
    return CellSolver(
        spec.X, spec.y, spec.network.activation, spec.loss, spec.box,
        output_bias=spec.network.output_bias, time_limit=max(1.0, spec.solve.time_limit / 4),
    )


def sign_class_order(spec: InstanceSpec) -> list[int]:
    """Numbers of positive units to solve, all-positive first; odd activations need only that one."""
    if spec.network.activation.odd:
        return [spec.width]
    return list(range(spec.width, -1, -1))


def class_order(spec: InstanceSpec, incumbent: Incumbent, candidates: list[Candidate],
                strategy: SolveStrategy) -> list[int]:
    """The incumbent's class first, then the classes of the best candidates, then the rest.

    A class holding a good point is the likeliest to hold a better one, and solving it first
    lowers the cutoff for the others.  For odd activations every point is in the one class.
    """
    order = sign_class_order(spec)
    if not strategy.incumbent_class_first or len(order) == 1:
        return order
    ranked = [int(np.sum(incumbent.theta.signs > 0))] + [int(np.sum(c.theta.signs > 0)) for c in candidates]
    first = [k for k in dict.fromkeys(ranked) if k in order]
    return first + [k for k in order if k not in first]


def tangent_points(spec: InstanceSpec, incumbent: Incumbent, candidates: list[Candidate],
                   strategy: SolveStrategy) -> tuple:
    """Residual vectors whose tangents start every squared-loss master (DESIGN §4).

    The incumbent's residuals make its own master value exact; the candidates' residuals
    describe other good cells; a grid over [-radius, radius] (radius = sqrt(cutoff / w), the
    largest residual a better point can have) bounds the master everywhere else.
    """
    if spec.loss.kind == "logistic":
        return logistic_tangent_points(spec, incumbent, candidates, strategy)
    if spec.loss.kind != "squared":
        return ()
    act = spec.network.activation
    points = [incumbent.theta.forward(spec.X, act) - spec.y]
    points += [c.fitted - spec.y for c in candidates[: strategy.candidate_tangents]]
    if strategy.tangent_grid > 0:
        radius = np.sqrt(incumbent.risk / spec.loss.weight(spec.n))
        for level in np.linspace(-radius, radius, strategy.tangent_grid):
            points.append(np.full(spec.n, float(level)))
    return tuple(points)


def logistic_tangent_points(spec: InstanceSpec, incumbent: Incumbent, candidates: list[Candidate],
                            strategy: SolveStrategy) -> tuple:
    """Margin vectors z = y * f where the first tangents of log(1 + exp(-z)) go (DESIGN §4e): the
    incumbent's and the best candidates' margins, and a grid over [-C / w, C / w] (a better point has
    every margin >= -C / w, since log(1 + exp(-z)) >= -z)."""
    act = spec.network.activation
    points = [spec.y * incumbent.theta.forward(spec.X, act)]
    points += [spec.y * c.fitted for c in candidates[: strategy.candidate_tangents]]
    if strategy.tangent_grid > 0:
        reach = incumbent.risk / spec.loss.weight(spec.n)
        for level in np.linspace(-reach, reach, strategy.tangent_grid):
            points.append(np.full(spec.n, float(level)))
    return tuple(points)


def best_constant(spec: InstanceSpec) -> float:
    """The risk-minimising constant output (0 without output bias): mean, median or +-1."""
    if not spec.network.output_bias:
        return 0.0
    y = spec.y
    if spec.loss.kind == "squared":
        return float(np.mean(y))
    if spec.loss.kind == "absolute":
        return float(np.median(y))
    share = float(np.mean(y > 0))
    if spec.loss.kind == "logistic" and 0.0 < share < 1.0:  # the log-odds minimise the constant's risk
        return float(np.log(share / (1.0 - share)))
    return min((-1.0, 1.0), key=lambda c: spec.loss.risk(np.full_like(y, c), y))


def baseline_incumbent(spec: InstanceSpec, cells: CellSolver) -> Incumbent:
    """The best network whose hidden units are all zero: a feasible first incumbent.

    Its risk also sets the absolute tolerance.  Computed as the cell problem of the
    all-zero pattern (every g_ij = 0 lies on piece 0's boundary or inside it).
    """
    m = spec.width
    zero = np.zeros(1)
    pattern = np.broadcast_to(spec.network.activation.piece(zero)[0], (spec.n, m)).astype(int)
    theta = ScaledParams(
        U=np.zeros((m, spec.d)), a=np.zeros(m), rho=np.zeros(m),
        c=best_constant(spec), signs=sign_class(m, m),
    )
    risk = spec.loss.risk(theta.forward(spec.X, spec.network.activation), spec.y)
    return Incumbent(risk=risk, theta=theta, cell=Cell(pattern=pattern, signs=theta.signs),
                     box_active=False, found_by="constant")


def solve_classes_sequential(ctx: Context, order: list[int], incumbent: Incumbent, cells: CellSolver,
                             deadline: float, say: Progress) -> list[ClassOutcome]:
    """One class after the other, each with the best risk so far as its cutoff."""
    templates = TemplateCache(ctx.spec, ctx.formulation, deadline=deadline)
    outcomes = []
    reserve = min(1.0, 0.05 * ctx.spec.solve.time_limit)  # kept for each later class
    for position, n_positive in enumerate(order):
        if stopped(deadline):
            outcomes += [not_searched(k) for k in order[position:]]
            break
        # greedy: a class may use what the earlier ones left, but the later ones keep a reserve
        # (a class cut short loses the certificate anyway; an equal split wasted unused shares)
        budget = deadline - time.perf_counter() - reserve * (len(order) - position - 1)
        try:
            outcome = solve_sign_class(ctx, n_positive, incumbent, cells, templates, time_budget=budget)
        except BuildStopped as stop:
            outcomes.append(not_searched(n_positive))
            outcomes[-1].notes.append(str(stop))
            outcomes += [not_searched(k) for k in order[position + 1:]]
            break
        outcomes.append(outcome)
        say(
            f"sign class {position + 1}/{len(order)} ({n_positive} positive): "
            f"bound {outcome.lower_bound:.6g}, best {incumbent.risk:.6g}, "
            f"{outcome.rounds} round(s), {outcome.nodes} nodes, {outcome.solve_seconds:.1f} s"
        )
    return outcomes


class TemplateCache:
    """One `ClassTemplate` for all classes (cache_classes), or a fresh Pyomo build per class.

    A build that cannot end before `deadline` is not started, and one that runs past it (or is
    interrupted) stops: `formulation.BuildStopped`."""

    def __init__(self, spec: InstanceSpec, formulation: FormulationOptions, *, deadline: float = np.inf):
        self.spec, self.formulation, self.deadline = spec, formulation, deadline
        self.shared: ClassTemplate | None = None

    def get(self, signs: np.ndarray) -> tuple[ClassTemplate, float]:
        """(template, seconds spent building it now)."""
        t0 = time.perf_counter()
        if not self.formulation.cache_classes:
            return self._build(signs), time.perf_counter() - t0
        if self.shared is None:
            self.shared = self._build(None)
        return self.shared, time.perf_counter() - t0

    def _build(self, signs: np.ndarray | None) -> ClassTemplate:
        check_build_time(self.spec, self.deadline)
        return ClassTemplate(self.spec, self.formulation, signs=signs, deadline=self.deadline)


def solve_sign_class(ctx: Context, n_positive: int, incumbent: Incumbent, cells: CellSolver,
                     templates: TemplateCache, *, time_budget: float, shared_best=None) -> ClassOutcome:
    """Solve one sign class to optimality (or the time budget), improving `incumbent` in place.

    The class's proven lower bound is the master's dual bound, min'ed with the cutoff: a class
    pruned entirely by the cutoff cannot beat the incumbent by more than the tolerance.
    `shared_best` (a multiprocessing Value) carries the best risk of classes running elsewhere.
    """
    spec, formulation, strategy = ctx.spec, ctx.formulation, ctx.strategy
    outcome = ClassOutcome(n_positive=n_positive, lower_bound=0.0, complete=False)
    signs = sign_class(n_positive, spec.width)
    t0 = time.perf_counter()
    template, _ = templates.get(signs)
    compiled = template.for_class(signs)
    runner = MipRunner(compiled, scale=ctx.scale, options=highs_options(spec, ctx.abs_tol * ctx.scale))
    f_cols = np.array([compiled.column(template.model.f[i]) for i in template.model.I])
    e_cols = np.array([compiled.column(template.model.e[i]) for i in template.model.I])
    for point in ctx.tangent_points:
        add_loss_tangents(runner, spec, f_cols, e_cols, point)
    cutoff = class_cutoff(ctx, incumbent, shared_best)
    applied = apply_cutoff_bounds(ctx, runner, f_cols, e_cols, cutoff, np.inf)
    if formulation.obbt and np.isfinite(cutoff) and template.model.kind == "bigm":
        outcome.obbt_lps = tighten_by_lp(ctx, runner, template, compiled, cutoff,
                                         time_limit=0.2 * max(time_budget, 0.0))
        if outcome.obbt_lps < 0:  # the LP relaxation has no point below the cutoff
            outcome.lower_bound, outcome.complete, outcome.obbt_lps = cutoff, True, 0
            outcome.build_seconds = time.perf_counter() - t0
            return outcome
    outcome.coefficients = bounds.coefficient_ranges(compiled.A, *lp_bounds(runner))
    start = warm_start(ctx, template, compiled, signs, incumbent) if strategy.warm_start else None
    outcome.build_seconds = time.perf_counter() - t0  # the template (when built now), compilation, rows, start
    deadline = time.perf_counter() + max(time_budget - outcome.build_seconds, 0.05)
    while not interrupt.requested():
        outcome.rounds += 1
        cutoff = class_cutoff(ctx, incumbent, shared_best)
        applied = apply_cutoff_bounds(ctx, runner, f_cols, e_cols, cutoff, applied)
        if start is not None:
            runner.set_start(start)
        run = runner.run(time_limit=deadline - time.perf_counter(), cutoff=cutoff)
        outcome.nodes += run.nodes
        outcome.lower_bound = max(run.dual_bound, 0.0)
        result = None
        if run.x is not None:
            cell = Cell(pattern=pattern_of(template.model, run.x, compiled.column), signs=signs)
            result = cells.solve(cell)
            if consider(incumbent, result, cell, run.objective, spec, outcome):
                if shared_best is not None:
                    with shared_best.get_lock():
                        shared_best.value = min(shared_best.value, incumbent.risk)
                if strategy.warm_start:
                    start = lift_into(template, compiled, spec, result.theta, result.theta.signs,
                                      formulation.order_units, cell.pattern)
        if run.status not in ("optimal", "infeasible"):
            break  # time limit or solver error: the bound so far stands
        if run.x is None or not spec.loss.smooth:
            outcome.complete = True  # exact MILP solved, or nothing below the cutoff
            break
        if outcome.lower_bound >= incumbent.risk - tolerance(incumbent.risk, spec, ctx.abs_tol) / 2:
            outcome.complete = True
            break
        if outcome.rounds >= MAX_OA_ROUNDS:
            outcome.notes.append(f"outer approximation stopped after {outcome.rounds} rounds without closing")
            break
        add_loss_tangents(runner, spec, f_cols, e_cols, tangent_point(spec, run.x[f_cols]))
        if result is not None and result.fitted is not None:
            add_loss_tangents(runner, spec, f_cols, e_cols, tangent_point(spec, result.fitted))
    outcome.solve_seconds = time.perf_counter() - t0 - outcome.build_seconds
    return outcome


def class_cutoff(ctx: Context, incumbent: Incumbent, shared_best=None) -> float:
    """Prune everything that cannot beat the best risk by more than half the tolerance (so that
    points of equal risk in other classes, e.g. with a dead unit of either sign, need no search)."""
    if not ctx.strategy.cutoff:
        return np.inf
    best = incumbent.risk
    if shared_best is not None:
        best = min(best, float(shared_best.value))
    return best - tolerance(best, ctx.spec, ctx.abs_tol) / 2


def apply_cutoff_bounds(ctx: Context, runner: MipRunner, f_cols: np.ndarray, e_cols: np.ndarray,
                        cutoff: float, applied: float) -> float:
    """Bounds on f_i and e_i that every point below the cutoff obeys (`bounds.cutoff_bounds`);
    re-applied whenever the cutoff has dropped.  Returns the cutoff now in force."""
    if not (ctx.formulation.tight_bounds and np.isfinite(cutoff)) or cutoff >= applied:
        return applied
    f_lower, f_upper, e_upper = bounds.cutoff_bounds(ctx.spec, cutoff)
    runner.set_col_bounds(f_cols, f_lower, f_upper)
    runner.set_col_bounds(e_cols, np.zeros(len(e_cols)), e_upper)
    return cutoff


def lp_bounds(runner: MipRunner):
    lp = runner.highs.getLp()
    return (np.asarray(lp.col_lower_), np.asarray(lp.col_upper_), np.asarray(lp.row_lower_),
            np.asarray(lp.row_upper_), np.asarray(lp.col_cost_))


def tighten_by_lp(ctx: Context, runner: MipRunner, template: ClassTemplate, compiled, cutoff: float, *,
                  time_limit: float) -> int:
    """OBBT on every g_ijk (`bounds.obbt`); the tightened bounds replace the column bounds and the
    big-M coefficients of delta_ijk in the rows g_ijk <= upper delta_ijk and g_ijk >= lower delta_ijk."""
    m = template.model
    keys = list(m.g.keys())
    cols = np.array([compiled.column(m.g[k]) for k in keys])
    lp = runner.highs.getLp()
    cost = np.asarray(lp.col_cost_)
    lower, upper, solved = bounds.obbt(lp, cost=cost, offset=float(lp.offset_), cutoff=cutoff * ctx.scale,
                                       targets=cols, time_limit=time_limit)
    if solved < 0:  # the relaxation has nothing below the cutoff: the class is done
        return -1
    lo, hi = lower[cols], upper[cols]
    runner.set_col_bounds(cols, lo, hi)
    A = compiled.A
    h = runner.highs
    for key, l, u in zip(keys, lo, hi):
        dcol = compiled.column(m.delta[key])
        for con, new in ((m.g_on, max(u, 0.0)), (m.g_on_low, min(l, 0.0))):
            if key not in con:
                continue
            row = compiled.row(con[key])
            # the row is  g - M delta <= 0  or  M delta - g <= 0 as Pyomo wrote it: keep the sign
            span = slice(A.indptr[dcol], A.indptr[dcol + 1])
            old = A.data[span][A.indices[span] == row]
            if old.size == 1 and old[0] != 0.0 and abs(new) < abs(old[0]):
                h.changeCoeff(row, int(dcol), float(np.sign(old[0]) * abs(new)))
    return solved


def warm_start(ctx: Context, template: ClassTemplate, compiled, signs: np.ndarray,
               incumbent: Incumbent) -> np.ndarray | None:
    """The best known point of this class (incumbent or candidate), lifted into the master."""
    n_positive = int(np.sum(signs > 0))
    known = [(incumbent.risk, incumbent.theta, incumbent.cell.pattern)]
    known += [(c.risk, c.theta, c.cell.pattern) for c in ctx.candidates]
    for _, theta, pattern in sorted(known, key=lambda k: k[0]):
        if int(np.sum(theta.signs > 0)) == n_positive:
            return lift_into(template, compiled, ctx.spec, theta, theta.signs, ctx.formulation.order_units, pattern)
    return None


def lift_into(template: ClassTemplate, compiled, spec: InstanceSpec, theta: ScaledParams, signs: np.ndarray,
              order_units: str, pattern: np.ndarray) -> np.ndarray | None:
    arranged, _ = class_arrangement(spec, theta, pattern, order_units)
    x = lift_point(template, arranged)
    if x is None or compiled.max_violation(x) > START_TOL * max(1.0, float(np.max(np.abs(x)))):
        return None
    return x


def solve_classes_parallel(ctx: Context, order: list[int], incumbent: Incumbent, cells: CellSolver,
                           deadline: float, say: Progress) -> list[ClassOutcome]:
    """Classes in `processes` worker processes (spawned: HiGHS threads do not survive a fork).

    A class started while another runs gets the best risk known at its start, and before each
    outer-approximation round the best risk any worker has found (a shared value); the points
    themselves come back with the results and the best one becomes the incumbent.
    """
    workers = min(ctx.strategy.processes, len(order), os.cpu_count() or 1)
    mp = multiprocessing.get_context("spawn")
    shared = mp.Value("d", float(incumbent.risk))
    budget = (deadline - time.perf_counter()) * workers / len(order)
    outcomes = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp, initializer=_init_worker,
                             initargs=(shared,)) as pool:
        futures = [pool.submit(_class_worker, ctx, n_positive, incumbent, budget) for n_positive in order]
        for position, future in enumerate(futures):
            outcome, found = future.result()
            outcomes.append(outcome)
            if found is not None and found.risk < incumbent.risk:
                incumbent.risk, incumbent.theta, incumbent.cell = found.risk, found.theta, found.cell
                incumbent.box_active, incumbent.found_by = found.box_active, found.found_by
            say(
                f"sign class {position + 1}/{len(order)} ({outcome.n_positive} positive, parallel): "
                f"bound {outcome.lower_bound:.6g}, best {incumbent.risk:.6g}, "
                f"{outcome.rounds} round(s), {outcome.nodes} nodes, {outcome.solve_seconds:.1f} s"
            )
    return outcomes


_WORKER: dict = {}


def _init_worker(shared) -> None:
    _WORKER["shared"] = shared


def _class_worker(ctx: Context, n_positive: int, incumbent: Incumbent, budget: float):
    """One class in a worker process; the template and cell solver are kept per process."""
    key = ctx.spec.instance_hash()
    if _WORKER.get("key") != key:
        _WORKER.update(key=key, cells=make_cell_solver(ctx.spec), templates=TemplateCache(ctx.spec, ctx.formulation))
    shared = _WORKER["shared"]
    start_risk = incumbent.risk
    outcome = solve_sign_class(ctx, n_positive, incumbent, _WORKER["cells"], _WORKER["templates"],
                               time_budget=budget, shared_best=shared)
    return outcome, (incumbent if incumbent.risk < start_risk else None)


def tangent_point(spec: InstanceSpec, fitted: np.ndarray) -> np.ndarray:
    """Where the outer approximation's tangents go for these fitted values: the residuals f - y
    (squared loss) or the margins y * f (logistic loss)."""
    return spec.y * fitted if spec.loss.kind == "logistic" else fitted - spec.y


def add_loss_tangents(runner: MipRunner, spec: InstanceSpec, f_cols: np.ndarray, e_cols: np.ndarray,
                      point: np.ndarray) -> None:
    """The tangent cuts of the spec's smooth loss at `point` (residuals or margins, `tangent_point`)."""
    if spec.loss.kind == "logistic":
        add_logistic_tangents(runner, spec.y, f_cols, e_cols, point)
    else:
        add_tangents(runner, spec.y, f_cols, e_cols, point)


def add_logistic_tangents(runner: MipRunner, y: np.ndarray, f_cols: np.ndarray, e_cols: np.ndarray,
                          margins: np.ndarray) -> None:
    """Rows e_i + s_i y_i f_i >= L(z_i) + s_i z_i, s_i = sigma(-z_i) = -L'(z_i): the tangent of the convex
    L(z) = log(1 + exp(-z)) at the margin z_i, valid below L everywhere (DESIGN §4e).  Tangents with a
    slope below 1e-12 are the bound e_i >= 0 and are left out."""
    slope = expit(-margins)
    keep = slope > 1e-12
    z, s, yk = margins[keep], slope[keep], y[keep]
    count = len(z)
    if count == 0:
        return
    starts = np.arange(count, dtype=np.int32) * 2
    indices = np.column_stack([e_cols[keep], f_cols[keep]]).reshape(-1).astype(np.int32)
    values = np.column_stack([np.ones(count), s * yk]).reshape(-1)
    lower = np.logaddexp(0.0, -z) + s * z
    runner.add_rows(lower, np.full(count, highspy.kHighsInf), starts, indices, values)


def add_tangents(runner: MipRunner, y: np.ndarray, f_cols: np.ndarray, e_cols: np.ndarray,
                 residuals: np.ndarray) -> None:
    """Rows e_i - 2 r_i f_i >= -r_i^2 - 2 r_i y_i: the tangent of (f_i - y_i)^2 at residual r_i."""
    keep = np.abs(residuals) > 1e-12  # a tangent at 0 is the bound e_i >= 0
    r, yk = residuals[keep], y[keep]
    count = len(r)
    if count == 0:
        return
    starts = np.arange(count, dtype=np.int32) * 2
    indices = np.column_stack([e_cols[keep], f_cols[keep]]).reshape(-1).astype(np.int32)
    values = np.column_stack([np.ones(count), -2.0 * r]).reshape(-1)
    lower = -(r**2) - 2.0 * r * yk
    runner.add_rows(lower, np.full(count, highspy.kHighsInf), starts, indices, values)


def highs_options(spec: InstanceSpec, abs_gap_scaled: float) -> dict:
    """HiGHS options of every master solve; recorded in the result."""
    return {
        "mip_rel_gap": spec.solve.rel_gap / 4,
        "mip_abs_gap": abs_gap_scaled,
        "mip_feasibility_tolerance": 1e-9,
        "primal_feasibility_tolerance": 1e-9,
        "random_seed": int(spec.solve.seed),
        "threads": int(spec.solve.threads),
        "output_flag": bool(spec.solve.verbose),
    }


def solver_name_and_version(method: str, spec: InstanceSpec, strategy: SolveStrategy) -> tuple[str, str]:
    """milp: HiGHS.  bnb: what bounds the nodes (milpland's NNLS with scipy's BVLS for the hull
    relaxation, Clarabel for the convexity relaxation, HiGHS's LP for the absolute and hinge
    losses), then HiGHS for the cells."""
    highs = highspy.Highs().version()
    if spec.loss.kind == "logistic":  # the cells are Clarabel's exponential-cone programs
        import clarabel

        return "highs+clarabel", f"{highs}+{clarabel.__version__}"
    if method == "milp" or spec.loss.kind != "squared":  # bnb's node LPs are HiGHS's too
        return "highs", highs
    if pattern_bnb.uses_hull(spec, strategy.bnb):
        import scipy

        return "nnls+highs", f"scipy-{scipy.__version__}+{highs}"
    import clarabel

    return "clarabel+highs", f"{clarabel.__version__}+{highs}"


def separates(spec: InstanceSpec, incumbent: Incumbent) -> bool:
    """The incumbent network has every margin y_i f_i > 0 (numpy forward pass)."""
    return bool(np.min(spec.y * incumbent.theta.forward(spec.X, spec.network.activation)) > 0)


def logistic_limit_point(spec: InstanceSpec, params, box_minimum: float, separation: Separability | None) -> str:
    """The limit-point report of the logistic loss without weight decay (DESIGN §4e), or "".

    When a network separates the data (every margin y_i f_i > 0: the returned one, or the margin MILP's
    verified witness), multiplying its v and c by t scales every margin by t (for any activation), so
    the risk w sum_i log(1 + exp(-t y_i f_i)) decreases to 0 as t -> inf while staying > 0: the infimum
    over all weights is 0, not attained."""
    smallest = float(np.min(spec.y * params.forward(spec.X, spec.network.activation)))
    if smallest > 0.0:
        who = f"the returned network separates the data (smallest margin y_i f_i = {smallest:.4g})"
    elif separation is not None and separation.separable:
        who = (f"a network of this width separates the data (margin MILP; its smallest margin y_i f_i = "
               f"{separation.margin:.4g} in numpy)")
    else:
        return ""
    return (f"infimum 0 over all weights, not attained (a limit point): {who}, and scaling its output weights "
            f"and bias by t -> inf drives the risk to 0; the box minimum is {box_minimum:.10g}")


def class_record(o: ClassOutcome) -> dict:
    """What the result keeps of one class: bound, effort and the master's coefficient ranges."""
    return {"positive": o.n_positive, "lower_bound": float(o.lower_bound), "complete": o.complete,
            "nodes": o.nodes, "rounds": o.rounds, "build_seconds": o.build_seconds,
            "solve_seconds": o.solve_seconds, "obbt_lps": o.obbt_lps, "coefficients": o.coefficients}


def assemble_result(spec: InstanceSpec, incumbent: Incumbent, outcomes: list[ClassOutcome],
                    abs_tol: float, started: float, *, formulation: FormulationOptions = FormulationOptions(),
                    strategy: SolveStrategy = SolveStrategy(), search_seconds: float = 0.0,
                    method: str = "milp", notes: list[str] = (),
                    separation: Separability | None = None) -> SolveResult:
    """Bounds, status, certificate and verification of the whole solve.

    Without any class solved the incumbent's risk is zero up to the absolute tolerance, and the
    lower bound is the trivial 0 (every loss is >= 0).  An unfinished search has status
    ``interrupted`` when a stop was requested (Ctrl-C), else ``time_limit``.
    """
    complete = all(o.complete for o in outcomes)
    class_bounds = [o.lower_bound for o in outcomes]
    lower = min([incumbent.risk] + class_bounds) if outcomes else 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params, limit_units = incumbent.theta.to_original(spec.network.activation)
    verification = verify_point(spec, params, incumbent.cell.pattern, incumbent.risk, limit_units)
    upper = verification.risk_numpy
    closed = upper - lower <= tolerance(upper, spec, abs_tol)
    status = "optimal" if complete else ("interrupted" if interrupt.requested() else "time_limit")
    if not complete and any(note.startswith(memory.MEMORY_NOTE) for o in outcomes for note in o.notes):
        status = "memory_limit"
    # Every loss is >= 0, so a verified risk of zero is a global minimum over all weights: then
    # neither an active box nor an unfinished class can matter.
    zero_risk = upper <= abs_tol
    box_matters = incumbent.box_active and not zero_risk
    certified = bool(closed and (complete or zero_risk) and not box_matters and verification.ok)
    notes = list(notes) + [note for o in outcomes for note in o.notes] + [str(w.message) for w in caught]
    limit = logistic_limit_point(spec, params, upper, separation) if spec.loss.kind == "logistic" else ""
    if separation is not None and separation.note():
        notes.insert(0, separation.note())
    if limit:
        certified = False  # the box minimum, never a minimum over all weights
        notes.insert(0, limit)
    elif spec.loss.kind == "logistic" and incumbent.box_active:
        notes.insert(0, "logistic loss without weight decay: along a direction out of the box the risk may keep "
                        "decreasing to a limit that is not attained (DESIGN §4e)")
    if zero_risk and incumbent.box_active:
        notes.insert(0, "the risk is zero (to abs_tol), the smallest any network can reach: a global "
                        "minimum over all weights, although the returned point touches the box")
    elif incumbent.box_active:
        notes.insert(0, "a box bound is active at the minimiser: this is the minimum over the box, not a "
                        "global minimum; re-solve with a larger box (--box) to see whether it moves")
    build = sum(o.build_seconds for o in outcomes)
    solve = sum(o.solve_seconds for o in outcomes) + search_seconds
    name, version = solver_name_and_version(method, spec, strategy)
    return SolveResult(
        instance=spec.name, instance_hash=spec.instance_hash(), method=method,
        loss=spec.loss.kind, reduction=spec.loss.reduction, architecture=spec.architecture(),
        status=status, risk=upper, lower_bound=min(lower, upper),
        box_weight=spec.box.weight, box_output=spec.box.output, box_active=incumbent.box_active,
        certified=certified, params=params, pattern=incumbent.cell.pattern, signs=incumbent.theta.signs,
        seconds=Seconds(build=build, solve=solve, total=time.perf_counter() - started),
        nodes=sum(o.nodes for o in outcomes), iterations=sum(o.rounds for o in outcomes),
        solver_name=name, solver_version=version,
        options={**highs_options(spec, 0.0), "time_limit": spec.solve.time_limit,
                 "abs_tol": abs_tol, "objective_target": OBJECTIVE_TARGET,
                 "method": method, "formulation": formulation.describe(), "strategy": strategy.describe(),
                 "incumbent_found_by": incumbent.found_by, "incumbent_seconds": search_seconds,
                 "classes": [class_record(o) for o in outcomes]},
        seed=spec.solve.seed, verification=verification, message="; ".join(notes), limit_point=limit,
    )
