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

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import highspy
import numpy as np

from milpland.cells import Cell, CellResult, CellSolver
from milpland.errors import MilplandError
from milpland.formulation import FormulationOptions, build_master, pattern_of
from milpland.highs_backend import MipRunner, compile_model
from milpland.results import Seconds, SolveResult
from milpland.scaled import ScaledParams, sign_class
from milpland.spec import InstanceSpec
from milpland.verify import verify_point

Progress = Callable[[str], None]
OBJECTIVE_TARGET = 1e3  # the scaled objective of the baseline point (DESIGN §4: HiGHS' absolute threshold)
ABS_TOL_FACTOR = 1e-9  # absolute certification tolerance, relative to the baseline risk
MAX_OA_ROUNDS = 500


@dataclass
class Incumbent:
    risk: float
    theta: ScaledParams
    cell: Cell
    box_active: bool
    found_by: str


@dataclass
class ClassOutcome:
    n_positive: int
    lower_bound: float
    complete: bool
    nodes: int = 0
    rounds: int = 0
    build_seconds: float = 0.0
    solve_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def solve_global(
    spec: InstanceSpec,
    *,
    formulation: FormulationOptions = FormulationOptions(),
    progress: Progress | None = None,
) -> SolveResult:
    """Certified global minimum of the training risk over the box (one hidden layer, scalar output)."""
    if spec.network.depth != 1:
        raise MilplandError(
            f"solve handles one hidden layer; {spec.name} has hidden = {list(spec.network.hidden)}. "
            "Use `milpland certify` for deeper networks."
        )
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    cells = CellSolver(
        spec.X, spec.y, spec.network.activation, spec.loss, spec.box,
        output_bias=spec.network.output_bias, time_limit=max(1.0, spec.solve.time_limit / 4),
    )
    incumbent = baseline_incumbent(spec, cells)
    scale = OBJECTIVE_TARGET / max(incumbent.risk, 1e-12)
    abs_tol = ABS_TOL_FACTOR * incumbent.risk
    outcomes: list[ClassOutcome] = []
    if incumbent.risk > 0.0:
        deadline = started + spec.solve.time_limit
        order = sign_class_order(spec)
        for position, n_positive in enumerate(order):
            budget = (deadline - time.perf_counter()) / (len(order) - position)
            outcome = solve_sign_class(
                spec, n_positive, incumbent, cells,
                scale=scale, abs_tol=abs_tol, time_budget=budget, formulation=formulation,
            )
            outcomes.append(outcome)
            say(
                f"sign class {position + 1}/{len(order)} ({n_positive} positive): "
                f"bound {outcome.lower_bound:.6g}, best {incumbent.risk:.6g}, "
                f"{outcome.rounds} round(s), {outcome.nodes} nodes, {outcome.solve_seconds:.1f} s"
            )
    return assemble_result(spec, incumbent, outcomes, abs_tol, started)


def sign_class_order(spec: InstanceSpec) -> list[int]:
    """Numbers of positive units to solve, all-positive first; odd activations need only that one."""
    if spec.network.activation.odd:
        return [spec.width]
    return list(range(spec.width, -1, -1))


def baseline_incumbent(spec: InstanceSpec, cells: CellSolver) -> Incumbent:
    """The best network whose hidden units are all zero: a feasible first incumbent.

    Its risk also sets the objective scale.  Computed as the cell problem of the
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


def best_constant(spec: InstanceSpec) -> float:
    """The risk-minimising constant output (0 without output bias): mean, median or +-1."""
    if not spec.network.output_bias:
        return 0.0
    y = spec.y
    if spec.loss.kind == "squared":
        return float(np.mean(y))
    if spec.loss.kind == "absolute":
        return float(np.median(y))
    return min((-1.0, 1.0), key=lambda c: spec.loss.risk(np.full_like(y, c), y))


def solve_sign_class(
    spec: InstanceSpec, n_positive: int, incumbent: Incumbent, cells: CellSolver, *,
    scale: float, abs_tol: float, time_budget: float, formulation: FormulationOptions,
) -> ClassOutcome:
    """Solve one sign class to optimality (or the time budget), improving `incumbent` in place.

    Returns the class's proven lower bound: the master's dual bound, min'ed with the
    cutoff (a class pruned entirely by the cutoff cannot beat the incumbent).
    """
    outcome = ClassOutcome(n_positive=n_positive, lower_bound=0.0, complete=False)
    signs = sign_class(n_positive, spec.width)
    t0 = time.perf_counter()
    model = build_master(spec, signs, formulation)
    compiled = compile_model(model)
    runner = MipRunner(compiled, scale=scale, options=highs_options(spec, abs_tol * scale))
    f_cols = np.array([compiled.column(model.f[i]) for i in model.I])
    e_cols = np.array([compiled.column(model.e[i]) for i in model.I])
    if spec.loss.kind == "squared":
        residuals = incumbent.theta.forward(spec.X, spec.network.activation) - spec.y
        add_tangents(runner, spec.y, f_cols, e_cols, residuals)
    outcome.build_seconds = time.perf_counter() - t0
    deadline = time.perf_counter() + max(time_budget, 0.05)
    while True:
        outcome.rounds += 1
        run = runner.run(time_limit=deadline - time.perf_counter(), cutoff=incumbent.risk)
        outcome.nodes += run.nodes
        outcome.lower_bound = max(run.dual_bound, 0.0)
        result = None
        if run.x is not None:
            cell = Cell(pattern=pattern_of(model, run.x, compiled.column), signs=signs)
            result = cells.solve(cell)
            consider(incumbent, result, cell, run.objective, spec, outcome)
        if run.status not in ("optimal", "infeasible"):
            break  # time limit or solver error: the bound so far stands
        if run.x is None or spec.loss.kind != "squared":
            outcome.complete = True  # exact MILP solved, or nothing below the cutoff
            break
        if outcome.lower_bound >= incumbent.risk - tolerance(incumbent.risk, spec, abs_tol) / 2:
            outcome.complete = True
            break
        if outcome.rounds >= MAX_OA_ROUNDS:
            outcome.notes.append(f"outer approximation stopped after {outcome.rounds} rounds without closing")
            break
        add_tangents(runner, spec.y, f_cols, e_cols, run.x[f_cols] - spec.y)
        if result is not None and result.fitted is not None:
            add_tangents(runner, spec.y, f_cols, e_cols, result.fitted - spec.y)
    outcome.solve_seconds = time.perf_counter() - t0 - outcome.build_seconds
    return outcome


def consider(incumbent: Incumbent, result: CellResult, cell: Cell, master_value: float,
             spec: InstanceSpec, outcome: ClassOutcome) -> None:
    """Replace the incumbent by the polished cell optimum when it is better."""
    if result.status != "optimal" or result.theta is None:
        outcome.notes.append(f"cell solve of a master pattern ended {result.status}")
        return
    if spec.loss.kind != "squared" and result.risk > master_value + tolerance(master_value, spec, 0.0):
        outcome.notes.append(
            f"cell optimum {result.risk:.10g} above the MILP point {master_value:.10g} of the same pattern"
        )
    if result.risk < incumbent.risk:
        incumbent.risk, incumbent.theta, incumbent.cell = result.risk, result.theta, cell
        incumbent.box_active, incumbent.found_by = result.box_active, "milp"


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


def tolerance(risk: float, spec: InstanceSpec, abs_tol: float) -> float:
    return max(spec.solve.rel_gap * abs(risk), abs_tol)


def assemble_result(spec: InstanceSpec, incumbent: Incumbent, outcomes: list[ClassOutcome],
                    abs_tol: float, started: float) -> SolveResult:
    """Bounds, status, certificate and verification of the whole solve."""
    complete = all(o.complete for o in outcomes)
    class_bounds = [o.lower_bound for o in outcomes]
    lower = min([incumbent.risk] + class_bounds) if outcomes else incumbent.risk
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params, limit_units = incumbent.theta.to_original(spec.network.activation)
    verification = verify_point(spec, params, incumbent.cell.pattern, incumbent.risk, limit_units)
    upper = verification.risk_numpy
    closed = upper - lower <= tolerance(upper, spec, abs_tol)
    status = "optimal" if complete else "time_limit"
    certified = bool(closed and complete and not incumbent.box_active and verification.ok)
    notes = [note for o in outcomes for note in o.notes] + [str(w.message) for w in caught]
    if incumbent.box_active:
        notes.insert(0, "a box bound is active at the minimiser: this is the minimum over the box, not a "
                        "global minimum; re-solve with a larger box (--box) to see whether it moves")
    build = sum(o.build_seconds for o in outcomes)
    solve = sum(o.solve_seconds for o in outcomes)
    return SolveResult(
        instance=spec.name, instance_hash=spec.instance_hash(), method="milp",
        loss=spec.loss.kind, reduction=spec.loss.reduction, architecture=spec.architecture(),
        status=status, risk=upper, lower_bound=min(lower, upper),
        box_weight=spec.box.weight, box_output=spec.box.output, box_active=incumbent.box_active,
        certified=certified, params=params, pattern=incumbent.cell.pattern, signs=incumbent.theta.signs,
        seconds=Seconds(build=build, solve=solve, total=time.perf_counter() - started),
        nodes=sum(o.nodes for o in outcomes), iterations=sum(o.rounds for o in outcomes),
        solver_name="highs", solver_version=highspy.Highs().version(),
        options={**highs_options(spec, 0.0), "time_limit": spec.solve.time_limit,
                 "abs_tol": abs_tol, "objective_target": OBJECTIVE_TARGET},
        seed=spec.solve.seed, verification=verification, message="; ".join(notes),
    )
