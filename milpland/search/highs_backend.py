"""From a Pyomo model to highspy, and back: compile once, then re-solve cheaply.

The formulation is written in Pyomo (readable, exportable); the solve loop talks to
highspy directly so that it can add outer-approximation rows, pass cutoffs and warm
starts, and read the dual bound without rebuilding anything.  Two explicit steps,
as in cvxpy: `compile_model` (Pyomo -> arrays) and `MipRunner.values` (solution ->
Pyomo variables).
"""

from __future__ import annotations

import atexit
import threading
import time
from dataclasses import dataclass

import highspy
import numpy as np
import pyomo.environ as pyo
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

import milpland.interrupt as interrupt

INF = highspy.kHighsInf


def stop_on_request(highs: highspy.Highs) -> highspy.Highs:
    """Let a Ctrl-C stop this HiGHS object within its current solve (`milpland.interrupt`).

    HiGHS calls its interrupt callbacks (MIP search, simplex, interior point) many times a
    second; each checks the stop flag and, when set, makes HiGHS return with model status
    kInterrupt and the best point and dual bound it has.  Running a Python callback also lets
    the SIGINT handler itself run while HiGHS works (Python runs signal handlers only between
    Python instructions of the main thread): without it a Ctrl-C waited for the time limit.
    """
    stop = {"cancel": False}  # set when this run is abandoned (`run_until_stopped`)

    def check(event) -> None:
        if stop["cancel"] or interrupt.requested():
            event.interrupt()

    for hook in (highs.cbMipInterrupt, highs.cbSimplexInterrupt, highs.cbIpmInterrupt):
        hook.subscribe(check)
    highs._milpland_stop = stop
    return highs


GRACE_SECONDS = 0.5  # after a stop request, how long HiGHS may take to return with its point and bound
_ABANDONED: list = []  # (thread, Highs) left running after a stop request: kept alive until the process ends


def run_until_stopped(highs: highspy.Highs, *, deadline: float = np.inf) -> bool:
    """highs.run() in a helper thread, waited for in 50 ms steps; False when it was abandoned.

    HiGHS releases the GIL while it runs, so the main thread stays free to run the SIGINT handler,
    and HiGHS sees the stop flag through its interrupt callbacks (`stop_on_request`) between
    simplex iterations and nodes.  Its presolve calls no callback and checks no time limit: a
    presolve of seconds delayed a Ctrl-C by as long (measured 1.5-6 s at n = 200, width 3) and
    overran the time limit (n = 5000).  So after a stop request, or past `deadline`, HiGHS gets
    GRACE_SECONDS to return with its best point and bound; if it has not by then it is left to
    finish in its daemon thread (never touched again; it ends with the process) and the run
    counts as cut short with no point and no bound."""
    worker = threading.Thread(target=_run_and_reset, args=(highs,), name="milpland-highs", daemon=True)
    worker.start()
    give_up = None
    try:
        while worker.is_alive():
            worker.join(0.05)
            if give_up is None and (interrupt.requested() or time.perf_counter() > deadline):
                give_up = time.perf_counter() + GRACE_SECONDS
            if give_up is not None and worker.is_alive() and time.perf_counter() > give_up:
                _abandon(worker, highs)
                return False
    except KeyboardInterrupt:  # a caller that does not poll the stop flag: the handler raised here
        worker.join(GRACE_SECONDS)  # HiGHS sees the flag too; an exit while it still runs aborted the process
        _abandon(worker, highs)
        raise
    return True


def _abandon(worker: threading.Thread, highs: highspy.Highs) -> None:
    """Leave a run to end on its own: its callbacks stop it at their next call (after the presolve)."""
    getattr(highs, "_milpland_stop", {})["cancel"] = True
    _ABANDONED.append((worker, highs))


@atexit.register
def _wait_for_abandoned() -> None:
    """Before the interpreter shuts down, let abandoned runs end (they were told to stop): libhighs'
    exit-time destructors abort the process ("terminate called without an active exception") when
    a run is still going.  The command line does not wait: it leaves with os._exit (milpland.cli)."""
    for worker, _ in _ABANDONED:
        worker.join(30.0)


def _run_and_reset(highs: highspy.Highs) -> None:
    highs.run()
    # what highspy does after a solve in a thread of its own (its Highs.solve with interrupt handling)
    highspy._core._Highs.resetGlobalScheduler(False)


@dataclass(frozen=True, eq=False)
class CompiledModel:
    """min c.x + offset  s.t.  row_lower <= A x <= row_upper, col bounds, integrality."""

    cost: np.ndarray
    offset: float
    A: "scipy.sparse.csc_array"  # noqa: F821
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integer: np.ndarray  # bool per column
    columns: list  # Pyomo VarData per column
    index: dict  # id(VarData) -> column
    rows: tuple = ()  # Pyomo ConstraintData per row
    row_index: dict | None = None  # id(ConstraintData) -> row (the last row of a ranged constraint)

    def column(self, var) -> int:
        return self.index[id(var)]

    def row(self, con) -> int:
        return self.row_index[id(con)]

    @property
    def shape(self) -> tuple[int, int]:
        return self.A.shape

    def max_violation(self, x: np.ndarray) -> float:
        """Largest violation of a row or column bound by the point x (absolute units)."""
        Ax = self.A @ x
        rows = np.maximum(np.maximum(self.row_lower - Ax, Ax - self.row_upper), 0.0)
        cols = np.maximum(np.maximum(self.col_lower - x, x - self.col_upper), 0.0)
        frac = np.abs(x[self.integer] - np.round(x[self.integer]))
        return float(max(rows.max(initial=0.0), cols.max(initial=0.0), frac.max(initial=0.0)))


def compile_model(model: pyo.ConcreteModel) -> CompiledModel:
    """Compile a linear Pyomo model with one minimisation objective into arrays."""
    info = LinearStandardFormCompiler().write(model, mixed_form=True, set_sense=pyo.minimize)
    A = info.A.tocsc()
    n_rows = A.shape[0]
    rhs = np.asarray(info.rhs, dtype=float)
    row_lower = np.full(n_rows, -INF)
    row_upper = np.full(n_rows, INF)
    for r, (_, kind) in enumerate(info.rows):
        if kind <= 0:  # equality (0) or lower bound (-1)
            row_lower[r] = rhs[r]
        if kind >= 0:
            row_upper[r] = rhs[r]
    columns = list(info.columns)
    col_lower = np.array([-INF if v.lb is None else float(v.lb) for v in columns])
    col_upper = np.array([INF if v.ub is None else float(v.ub) for v in columns])
    integer = np.array([v.is_integer() or v.is_binary() for v in columns], dtype=bool)
    cost = np.asarray(info.c.todense(), dtype=float).reshape(-1) if info.c.shape[0] else np.zeros(len(columns))
    offset = float(info.c_offset[0]) if len(info.c_offset) else 0.0
    return CompiledModel(
        cost=cost, offset=offset, A=A, row_lower=row_lower, row_upper=row_upper,
        col_lower=col_lower, col_upper=col_upper, integer=integer, columns=columns,
        index={id(v): j for j, v in enumerate(columns)},
        rows=tuple(con for con, _ in info.rows),
        row_index={id(con): r for r, (con, _) in enumerate(info.rows)},
    )


@dataclass(frozen=True)
class MipOutcome:
    status: str  # optimal | time_limit | infeasible | error  (infeasible includes "nothing below the cutoff")
    objective: float  # in the model's own (unscaled) units; inf when there is no solution
    dual_bound: float  # proven lower bound in unscaled units (already min'ed with the cutoff)
    x: np.ndarray | None
    nodes: int
    seconds: float


class MipRunner:
    """One highspy.Highs holding a compiled model whose objective is multiplied by `scale`.

    HiGHS only accepts improvements above an absolute threshold of about 1e-6 (DESIGN
    §4), so the objective is scaled to be O(1e3) and every value reported back is
    divided by the scale again.
    """

    def __init__(self, compiled: CompiledModel, *, scale: float, options: dict):
        self.compiled = compiled
        self.scale = scale
        self.highs = stop_on_request(highspy.Highs())
        self.highs.setOptionValue("output_flag", bool(options.pop("output_flag", False)))
        for key, value in options.items():
            self.highs.setOptionValue(key, value)
        lp = highspy.HighsLp()
        A = compiled.A
        lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
        lp.col_cost_ = compiled.cost * scale
        lp.offset_ = compiled.offset * scale
        lp.col_lower_, lp.col_upper_ = compiled.col_lower, compiled.col_upper
        lp.row_lower_, lp.row_upper_ = compiled.row_lower, compiled.row_upper
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr
        lp.a_matrix_.index_ = A.indices
        lp.a_matrix_.value_ = A.data
        lp.integrality_ = [
            highspy.HighsVarType.kInteger if flag else highspy.HighsVarType.kContinuous for flag in compiled.integer
        ]
        self.highs.passModel(lp)

    def add_rows(self, lower: np.ndarray, upper: np.ndarray, starts: np.ndarray, indices: np.ndarray,
                 values: np.ndarray) -> None:
        """Add rows given in compressed row form (column indices of the compiled model)."""
        self.highs.addRows(len(lower), lower, upper, len(values), starts, indices, values)

    def set_col_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        cols = np.asarray(cols, dtype=np.int32)
        self.highs.changeColsBounds(len(cols), cols, np.asarray(lower, dtype=float), np.asarray(upper, dtype=float))

    def set_start(self, x: np.ndarray) -> None:
        """Offer a full feasible point as the first incumbent (a warm start)."""
        solution = highspy.HighsSolution()
        solution.col_value = list(map(float, x))
        self.highs.setSolution(solution)

    def run(self, *, time_limit: float, cutoff: float = np.inf) -> MipOutcome:
        """Solve; `cutoff` (unscaled) prunes everything that cannot beat it.

        An objective_bound cutoff does not make HiGHS report infeasible and it may
        return a point above the cutoff (DESIGN §4), so we compare values ourselves.
        """
        h = self.highs
        h.setOptionValue("time_limit", max(float(time_limit), 0.01))
        h.setOptionValue("objective_bound", float(cutoff * self.scale) if np.isfinite(cutoff) else INF)
        start = time.perf_counter()
        if not run_until_stopped(h, deadline=start + max(float(time_limit), 0.01)):  # abandoned: no point, no bound
            return MipOutcome(status="time_limit", objective=np.inf, dual_bound=-np.inf, x=None,
                              nodes=0, seconds=time.perf_counter() - start)
        seconds = time.perf_counter() - start
        status = h.getModelStatus()
        info = h.getInfo()
        has_point = h.getSolution().value_valid and info.primal_solution_status == 2
        objective = info.objective_function_value / self.scale if has_point else np.inf
        bound = info.mip_dual_bound / self.scale if np.isfinite(info.mip_dual_bound) else -np.inf
        x = np.asarray(h.getSolution().col_value) if has_point else None
        if status == highspy.HighsModelStatus.kOptimal:
            kind = "optimal"
        elif status in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kObjectiveBound):
            kind, bound = "infeasible", cutoff
        elif status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt,
                        highspy.HighsModelStatus.kSolutionLimit, highspy.HighsModelStatus.kIterationLimit):
            kind = "time_limit"
        else:
            kind = "error"
            bound = -np.inf
        if objective >= cutoff:  # a point above the cutoff proves nothing new
            x, objective = None, np.inf
        return MipOutcome(
            status=kind, objective=objective, dual_bound=min(bound, cutoff), x=x,
            nodes=int(info.mip_node_count), seconds=seconds,
        )
