"""The certified global minimum of risk + weight decay, by solving every cell (DESIGN §4d).

With weight decay lam > 0 and a positively homogeneous activation, every cell's problem in the
scaled weights is a convex SOCP (`milpland.cells.decay`).  The closed cells of the strictly
realisable unit patterns cover parameter space (`milpland.cells.arrangement`), so

    global minimum = min over cells of the cell minimum.

Upper bound: the numpy objective of the best cell's balanced ordinary weights.  Lower bound: the
minimum over cells of each cell's numpy Lagrangian bound, computed with the best objective found
so far as F_upper (valid: the cell holding a global minimiser has all its points of objective
<= F_upper inside the region the bound covers).  The objective is coercive in the decayed weights,
so with ``decay_biases = true`` the certificate holds over ALL weights -- no box; with
``decay_biases = false`` the undecayed scaled biases keep the box |a~_j| <= box.weight (said in
the result).  This is the simplest sound method: its cost is the number of cells (about 1 ms
each), so it is for small instances; larger ones are refused with the count.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Callable

import clarabel
import numpy as np

import milpland.interrupt as interrupt
from milpland.cells.arrangement import count_cells, generate_cells, patterns_for_cells, unit_patterns
from milpland.cells.decay import DECAY_KKT_TOL, DecayCellSolver, balanced_params
from milpland.cells.problem import Cell, CellResult
from milpland.cells.verify import verify_point
from milpland.errors import MilplandError
from milpland.instance.spec import InstanceSpec
from milpland.search.convex_certificate import ConvexCertificate, convex_certificate
from milpland.search.result import Seconds, SolveResult

Progress = Callable[[str], None]
MAX_DECAY_CELLS = 200_000  # about 1 ms per cell: a few minutes at most
ABS_TOL_FACTOR = 1e-9  # absolute certification tolerance, relative to the objective at theta = 0
METHOD = "enumerate"
CONVEX_METHOD = "convex-all-patterns"
PROGRAM_SHARE = 0.5  # of the time limit for the all-pattern program; the cells get what is left


def decay_applies(spec: InstanceSpec) -> str | None:
    """Why the weight-decay solve cannot run on this spec (None: it can)."""
    act = spec.network.activation
    if spec.network.depth != 1:
        return f"loss.weight_decay: handles one hidden layer, not hidden = {list(spec.network.hidden)}"
    if not act.homogeneous:
        return f"loss.weight_decay: needs a positively homogeneous activation (relu, leaky_relu, two_slope), not {act.name!r}"
    if spec.solve.method != "auto":
        return (f"loss.weight_decay: solve.method = {spec.solve.method!r} cannot honour weight decay; "
                "use method = \"auto\" (every cell solved, DESIGN §4d)")
    return None


def decay_cells(spec: InstanceSpec) -> tuple[np.ndarray, int]:
    """The unit patterns and the number of cells, refused (one line) above MAX_DECAY_CELLS."""
    act = spec.network.activation
    patterns = unit_patterns(spec.X, act, limit=patterns_for_cells(MAX_DECAY_CELLS, spec.width, act))
    total = count_cells(patterns.shape[0], spec.width, act)
    if total > MAX_DECAY_CELLS:
        raise MilplandError(f"loss.weight_decay: {spec.name} has more than {MAX_DECAY_CELLS} cells (at least "
                            f"{patterns.shape[0]} unit patterns, width {spec.width}); the weight-decay solve "
                            "enumerates every cell: use fewer samples or a smaller width")
    return patterns, total


def region_text(spec: InstanceSpec) -> str:
    """What the certificate covers (DESIGN §4d)."""
    if spec.loss.decay_biases:
        return "all weights (no box: the objective is coercive)"
    return (f"all input and output weights; the undecayed scaled biases |v_j b1[j]| <= {spec.box.weight:g} "
            "(box.weight) and the output bias within a derived bound")


@dataclass(frozen=True, eq=False)
class DecayCells:
    """Every cell's SOCP, solved in `generate_cells` order (``complete``: all of them, none skipped)."""

    cells: list[Cell]
    results: list[CellResult]
    complete: bool
    total: int
    solver: DecayCellSolver
    seconds: float

    def best(self) -> int | None:
        """Index of the lowest returned objective (each one a real network's, numpy)."""
        values = [r.risk if r.theta is not None else np.inf for r in self.results]
        return int(np.argmin(values)) if values and np.isfinite(min(values)) else None

    def lower_bound(self) -> float:
        """The least cell bound; 0 (risk and penalty are >= 0) when a cell has none or was not solved.
        The numpy bound holds for any multipliers, also when Clarabel stopped short of its tolerances."""
        if not self.complete or not self.results:
            return 0.0
        return min(r.lower_bound if np.isfinite(r.lower_bound) else 0.0 for r in self.results)


def solve_every_cell(spec: InstanceSpec, *, deadline: float = np.inf, progress: Progress | None = None) -> DecayCells:
    """Every cell's SOCP with the bound's region F <= F(theta = 0): every local minimum lies there (theta = 0
    is in every closed cell and each cell is convex), and so does the global one (DESIGN §4d)."""
    reason = decay_applies(spec)
    if reason:
        raise MilplandError(reason)
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    patterns, total = decay_cells(spec)
    say(f"weight decay {spec.loss.weight_decay:g}: {total} cells of {patterns.shape[0]} unit patterns")
    solver = DecayCellSolver(spec.X, spec.y, spec.network.activation, spec.loss, spec.box,
                             output_bias=spec.network.output_bias)
    cells, results = [], []
    complete = True
    with interrupt.polling():
        for cell in generate_cells(patterns, spec.width, spec.network.activation):
            if interrupt.requested() or time.perf_counter() >= deadline:
                complete = False
                break
            cells.append(cell)
            results.append(solver.solve(cell, upper=solver.zero_objective))
    return DecayCells(cells=cells, results=results, complete=complete, total=total, solver=solver,
                      seconds=time.perf_counter() - started)


def solve_decay(spec: InstanceSpec, *, progress: Progress | None = None) -> SolveResult:
    """Certified global minimum of risk + (lam/2)||theta||^2: first the convex program over every pattern
    (`milpland.search.convex_certificate`, which certifies it when its solution has at most m units), else
    every cell's SOCP."""
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    reason = decay_applies(spec)
    if reason:
        raise MilplandError(reason)
    cert = convex_certificate(spec, time_limit=PROGRAM_SHARE * spec.solve.time_limit)
    if cert is not None:
        result = _convex_result(spec, cert, started)
        say(f"convex program over {cert.patterns} unit patterns: {cert.units} units, objective "
            f"{cert.objective:.10g}, bound {cert.lower_bound:.10g}" + (" (certified)" if result.certified else ""))
        if result.certified:
            return result
    try:
        out = solve_every_cell(spec, deadline=started + spec.solve.time_limit, progress=progress)
    except MilplandError as exc:
        if cert is None:
            raise
        why = (f"its solution has {cert.units} units, more than {spec.width}" if not cert.width_fits(spec.width)
               else f"its width-{spec.width} network's objective {cert.objective:.10g} is above it")
        raise MilplandError(f"{exc}; the convex program over every unit pattern bounds the minimum below by "
                            f"{cert.lower_bound:.10g} ({why})") from None
    return result_from_cells(spec, out, started)


def _convex_result(spec: InstanceSpec, cert: ConvexCertificate, started: float) -> SolveResult:
    """The convex program's width-m network as a SolveResult, re-checked with numpy; certified when it has
    at most m units and its objective meets the numpy bound."""
    act, params = spec.network.activation, cert.params
    pattern = act.piece(params.pre_activations(spec.X))
    verification = verify_point(spec, params, pattern, cert.objective)
    upper = verification.risk_numpy
    abs_tol = ABS_TOL_FACTOR * max(spec.loss.risk(np.zeros(spec.n), spec.y), 1e-300)
    closed = upper - cert.lower_bound <= max(spec.solve.rel_gap * abs(upper), abs_tol)
    certified = bool(cert.width_fits(spec.width) and closed and verification.ok)
    notes = [f"weight decay {spec.loss.weight_decay:g} (decay_biases = true): objective = risk + "
             f"(lam/2)||theta||^2; certificate over {region_text(spec)}",
             f"convex program over all {cert.patterns} unit patterns (DESIGN §4f): {cert.units} units"]
    return SolveResult(
        instance=spec.name, instance_hash=spec.instance_hash(), method=CONVEX_METHOD, loss=spec.loss.kind,
        reduction=spec.loss.reduction, architecture=spec.architecture(), status="optimal", risk=upper,
        lower_bound=min(cert.lower_bound, upper), box_weight=spec.box.weight, box_output=spec.box.output,
        box_active=False, certified=certified, params=params, pattern=pattern,
        signs=np.where(params.v < 0, -1.0, 1.0),
        seconds=Seconds(solve=cert.seconds, total=time.perf_counter() - started), nodes=0, iterations=0,
        solver_name="clarabel", solver_version=clarabel.__version__,
        options={"time_limit": spec.solve.time_limit, "rel_gap": spec.solve.rel_gap, "abs_tol": abs_tol,
                 "method": CONVEX_METHOD, "weight_decay": spec.loss.weight_decay, "decay_biases": True},
        seed=spec.solve.seed, verification=verification, message="; ".join(notes),
        weight_decay=spec.loss.weight_decay, decay_biases=True, region=region_text(spec),
    )


def result_from_cells(spec: InstanceSpec, out: DecayCells, started: float) -> SolveResult:
    """The global result of solved cells: the best cell's balanced weights, re-checked with numpy, and
    the least cell bound."""
    k = out.best()
    if k is None:
        raise MilplandError(f"loss.weight_decay: no cell of {spec.name} was solved (time limit too short?)")
    failed = sum(r.status != "optimal" for r in out.results)
    notes = [f"weight decay {spec.loss.weight_decay:g} (decay_biases = {str(spec.loss.decay_biases).lower()}): "
             f"objective = risk + (lam/2)||theta||^2; certificate over {region_text(spec)}",
             f"{len(out.results)} of {out.total} cells solved"]
    if failed:
        notes.append(f"{failed} cell SOCPs with a certified gap above {DECAY_KKT_TOL:g} (their numpy bounds count)")
    return _result(spec, out.solver, (out.results[k], out.cells[k]), out.lower_bound(), out.complete, notes,
                   started, len(out.results))


def _result(spec: InstanceSpec, solver: DecayCellSolver, best: tuple[CellResult, Cell], lower: float,
            complete: bool, notes: list[str], started: float, solved: int) -> SolveResult:
    res, cell = best
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params, limit_units = balanced_params(res.theta, solver.penalty, spec.network.activation)
    verification = verify_point(spec, params, cell.pattern, res.risk, limit_units)
    upper = verification.risk_numpy
    abs_tol = ABS_TOL_FACTOR * max(spec.loss.risk(np.zeros(spec.n), spec.y), 1e-300)
    closed = upper - lower <= max(spec.solve.rel_gap * abs(upper), abs_tol)
    status = "optimal" if complete else ("interrupted" if interrupt.requested() else "time_limit")
    certified = bool(closed and complete and not res.box_active and verification.ok)
    notes = notes + [str(w.message) for w in caught]
    if res.box_active:
        notes.insert(0, "an undecayed scaled bias touches the box (decay_biases = false): a minimum over the box only")
    return SolveResult(
        instance=spec.name, instance_hash=spec.instance_hash(), method=METHOD, loss=spec.loss.kind,
        reduction=spec.loss.reduction, architecture=spec.architecture(), status=status, risk=upper,
        lower_bound=min(lower, upper), box_weight=spec.box.weight, box_output=spec.box.output,
        box_active=res.box_active, certified=certified, params=params, pattern=cell.pattern, signs=cell.signs,
        seconds=Seconds(solve=time.perf_counter() - started, total=time.perf_counter() - started),
        nodes=solved, iterations=solved, solver_name="clarabel", solver_version=clarabel.__version__,
        options={"time_limit": spec.solve.time_limit, "rel_gap": spec.solve.rel_gap, "abs_tol": abs_tol,
                 "method": METHOD, "weight_decay": spec.loss.weight_decay,
                 "decay_biases": spec.loss.decay_biases},
        seed=spec.solve.seed, verification=verification, message="; ".join(notes),
        weight_decay=spec.loss.weight_decay, decay_biases=spec.loss.decay_biases, region=region_text(spec),
    )
