"""Every cell of a one-hidden-layer network, solved and certified (DESIGN §2, §3, §5, §5c).

Unit patterns (which pieces one unit can give the samples) are listed by
`milpland.cells.arrangement`.

**Cells** are multisets of unit patterns per sign class: the units of one sign are
interchangeable, so with P unit patterns and p positive units a class has
C(P + p - 1, p) C(P + m - p - 1, m - p) cells; there are m + 1 classes, or one for odd
activations (a negative unit is a positive unit with negated weights).  `count_cells` gives
the number first; `enumerate_minima` refuses with the count when it exceeds ``max_cells``.
`CellGrid` holds every cell as arrays, in the order of `generate_cells`, and finds a cell's
index from its units by the ranks of multisets (`cell_qp.cell_index`), so that neighbour lookups need
no dictionary of cells.

**The run.**  Every cell is solved, then the cells are certified in order of increasing optimum;
the best cell optimum is the minimum over the box.

- Squared loss with a positively homogeneous two-piece activation (ReLU, leaky ReLU,
  two-slope): the compiled kernels of `milpland.cells.cell_qp` solve every cell (non-negative
  least squares over the vertex rays of its cones) and verify it (Lagrangian bound in the scaled
  weights).  Cells whose unboxed optimum touches the box, or that the bound does not certify,
  are solved by `CellSolver` (HiGHS and the numpy polish).  Other losses and activations: every
  cell by `CellSolver`.
- Certification (`cell_qp.certify_run`, compiled): for the squared loss the fitted vector of a cell
  optimum is unique, so a cell whose optimum fits the same values as an interior minimum already
  certified adds nothing and is skipped.  For a kernel-solved cell the rows tight on its whole
  optimal face follow from the rays that are zero on it (`cell_qp.face_rays`); when a
  neighbouring cell that contains the face (one unit changed on its tied samples, or a zero unit
  changed to any pattern and sign) has a lower verified optimum, the cell's optimum is not a
  local minimum, with no LP.  Every other cell -- interior and boundary candidates, ambiguous
  faces, cells solved by `CellSolver` -- is certified by `Certifier.certify`, which answers its
  neighbour lookups from the solved cells.
"""

from __future__ import annotations

import itertools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import milpland.interrupt as interrupt
from milpland.cells import cell_qp
from milpland.cells.arrangement import (  # noqa: F401  (re-exported: the cell generators live in cells/)
    Realizer,
    count_cells,
    generate_cells,
    patterns_for_cells,
    sign_classes,
    unit_patterns,
)
from milpland.cells.certificates import NEIGHBOUR_RTOL, NUMPY_RTOL, Certifier, fit_tolerance, match_minimum
from milpland.cells.problem import BOX_ACTIVE_RTOL, FEAS_TOL, Cell, CellResult, cell_outputs
from milpland.cells.scaled import ScaledParams, sign_class
from milpland.errors import MilplandError
from milpland.instance.activations import Activation
from milpland.instance.spec import InstanceSpec
from milpland.landscape.collect import Query, distinct_levels, spurious_tolerance
from milpland.search import memory
from milpland.search.unit_hull import vertex_rays

Progress = Callable[[str], None]
SOLVE_CHUNK = 50_000  # cells per kernel call (progress messages between calls)
SAMPLE_CELLS = 20_000  # cells solved first to estimate the global minimum for a threshold (`_sample_best`)
CERTIFY_CHUNK = 200_000  # cells per call of the compiled certification walk (a stop is checked between calls)


# ----------------------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------------------


def cell_count(spec: InstanceSpec) -> tuple[int, int]:
    """(number of unit patterns, number of cells) of an instance, without solving anything."""
    _check_spec(spec)
    P = unit_patterns(spec.X, spec.network.activation).shape[0]
    return P, count_cells(P, spec.width, spec.network.activation)


def _check_spec(spec: InstanceSpec) -> None:
    if spec.network.depth != 1:
        raise MilplandError(
            f"network.hidden: the landscape methods handle one hidden layer; {spec.name} has "
            f"hidden = {list(spec.network.hidden)}"
        )


@dataclass(frozen=True, eq=False)
class CellGrid:
    """Every cell as arrays, in the order of `generate_cells`: ``units[k]`` the pattern index of
    each unit (the positive units first, each sign's units in increasing order), ``signs[k]``."""

    patterns: np.ndarray  # (P, n)
    units: np.ndarray  # (N, m) int64
    signs: np.ndarray  # (N, m) +1 / -1
    class_offset: np.ndarray  # (m + 1,) index of the first cell with that many positive units (-1: none)
    neg_count: np.ndarray  # (m + 1,) multisets of that many negative units: C(P + k - 1, k)
    rank_table: np.ndarray  # (m + 1, P + 1) prefix sums for `cell_qp.multiset_rank`
    odd: bool
    sorted_patterns: bool  # the pattern rows are in lexicographic order

    @classmethod
    def build(cls, patterns: np.ndarray, width: int, act: Activation) -> "CellGrid":
        P = patterns.shape[0]
        multisets = {k: np.array(list(itertools.combinations_with_replacement(range(P), k)),
                                 dtype=np.int64).reshape(math.comb(P + k - 1, k), k) for k in range(width + 1)}
        units, signs = [], []
        offset = np.full(width + 1, -1, dtype=np.int64)
        start = 0
        for n_pos in sign_classes(act, width):
            pos, neg = multisets[n_pos], multisets[width - n_pos]
            offset[n_pos] = start
            units.append(np.hstack([np.repeat(pos, len(neg), axis=0), np.tile(neg, (len(pos), 1))]))
            signs.append(np.broadcast_to(sign_class(n_pos, width), (len(pos) * len(neg), width)))
            start += len(pos) * len(neg)
        # rank_table[r, v] = sum_{u < v} C(P - u + r - 1, r): multisets of size r + 1 starting below v
        table = np.zeros((width + 1, P + 1), dtype=np.int64)
        for r in range(width + 1):
            table[r, 1:] = np.cumsum([math.comb(P - u + r - 1, r) for u in range(P)])
        return cls(
            patterns=patterns, units=np.vstack(units), signs=np.ascontiguousarray(np.vstack(signs)),
            class_offset=offset, neg_count=np.array([math.comb(P + k - 1, k) for k in range(width + 1)],
                                                    dtype=np.int64),
            rank_table=table, odd=act.odd,
            sorted_patterns=bool(P < 2 or np.all(np.lexsort(np.asarray(patterns).T[::-1]) == np.arange(P))),
        )

    def __len__(self) -> int:
        return self.units.shape[0]

    def cell(self, k: int) -> Cell:
        """Cell k, in canonical unit order (as `generate_cells` yields it)."""
        order = self.order(k)
        return Cell(self.patterns[self.units[k][order]].T, self.signs[k][order])

    def order(self, k: int) -> np.ndarray:
        """The permutation of cell k's units (array order) into its canonical order: by (sign, pattern
        column).  With lexicographically sorted patterns (as `unit_patterns` lists them) that is the
        negative units, then the positive ones, each already in order."""
        if not self.sorted_patterns:
            return Cell(self.patterns[self.units[k]].T, self.signs[k]).canonical_order()
        m = self.units.shape[1]
        n_pos = int(np.count_nonzero(self.signs[k] > 0))
        return np.r_[np.arange(n_pos, m), np.arange(n_pos)]

    def index(self, signs, pattern_indices) -> int:
        """Index of the cell with these units (any order; for odd activations negative units given
        already mirrored to positive ones, as `Certifier` keys are)."""
        pos = sorted(int(q) for s, q in zip(signs, pattern_indices) if s > 0)
        neg = sorted(int(q) for s, q in zip(signs, pattern_indices) if s < 0)
        return int(cell_qp.cell_index(np.array(pos, dtype=np.int64), np.array(neg, dtype=np.int64), self.rank_table,
                              self.class_offset, self.neg_count))


# ----------------------------------------------------------------------------------------------
# Solved cells as arrays
# ----------------------------------------------------------------------------------------------


class CellStore:
    """Every cell's optimum as arrays (the compiled loops read these); `cell` and `result` build the
    Cell and CellResult objects on demand.  Cells solved by `CellSolver` keep their CellResult.

    With the kernels (``kernels``: homogeneous activations) the fitted values are not stored
    (n floats a cell, the largest array): they are recomputed from theta, which holds every cell's
    scaled weights in array unit order; otherwise ``fitted`` holds them."""

    def __init__(self, grid: CellGrid, spec: InstanceSpec, kmax: int, *, kernels: bool):
        N, m = grid.units.shape
        n, d = spec.X.shape
        self.grid = grid
        self.spec = spec
        self.d = d
        self.kernels = kernels
        self.risk = np.full(N, np.inf)
        self.lower = np.full(N, -np.inf)
        self.kkt = np.full(N, np.inf)
        self.violation = np.full(N, np.inf)
        self.fitted = np.full((1 if kernels else N, n), np.nan)
        self.theta = np.zeros((N, m, d + 1))
        self.c = np.zeros(N)
        self.mu = np.zeros((N, max(kmax, 1)))
        self.iterations = np.zeros(N, dtype=np.int64)
        self.box_active = np.zeros(N, dtype=bool)  # the optimum found touches the weight box
        self.box_limited = np.zeros(N, dtype=bool)  # every optimal point touches the box (`_solve_boxed`)
        self.fast = np.zeros(N, dtype=bool)  # solved and verified by the kernels
        self.status_ok = np.zeros(N, dtype=bool)  # CellResult.status == "optimal"
        self.feasible = np.zeros(N, dtype=bool)  # a point within FEAS_TOL of the cell
        self.verified = np.zeros(N, dtype=bool)  # Certifier.verified
        self.above = np.zeros(N, dtype=bool)  # only a bound, above the query's threshold (`_solve_by_kernel`)
        self.general: dict[int, CellResult] = {}

    def keep(self, k: int, result: CellResult, verified: bool) -> None:
        """Store a CellSolver result."""
        self.general[k] = result
        self.fast[k] = False
        self.risk[k] = result.risk
        self.lower[k] = result.lower_bound
        self.kkt[k] = result.kkt_residual
        self.violation[k] = result.max_violation
        self.status_ok[k] = result.status == "optimal"
        self.feasible[k] = result.theta is not None and result.max_violation <= FEAS_TOL
        self.verified[k] = verified
        if not self.kernels:
            if result.fitted is not None:
                self.fitted[k] = result.fitted
        elif result.theta is not None:  # theta in array unit order (homogeneous: rho plays no part)
            back = np.argsort(self.grid.order(k))
            self.theta[k] = np.column_stack([result.theta.U, result.theta.a])[back]
            self.c[k] = result.theta.c

    def cell(self, k: int) -> Cell:
        return self.grid.cell(k)

    def result(self, k: int, cell: Cell | None = None) -> CellResult:
        """Cell k's CellResult, its theta in the canonical unit order of `cell(k)` (``cell``: that Cell,
        when the caller has it)."""
        if k in self.general:
            return self.general[k]
        order = self.grid.order(k)
        th = self.theta[k][order]
        theta = ScaledParams(U=th[:, : self.d].copy(), a=th[:, self.d].copy(), rho=np.zeros(len(order)),
                             c=float(self.c[k]), signs=self.grid.signs[k][order].astype(float))
        cell = self.cell(k) if cell is None else cell
        fitted = cell_outputs(self.spec.X, self.spec.network.activation, cell, theta)
        return CellResult("bounded" if self.above[k] else "optimal", float(self.risk[k]), theta, fitted,
                          bool(self.box_active[k]), 0.0,
                          kkt_residual=float(self.kkt[k]), lower_bound=float(self.lower[k]),
                          max_violation=float(self.violation[k]),
                          method="active-set-box" if self.box_limited[k] else "ray-nnls",
                          polish_steps=int(self.iterations[k]))


# ----------------------------------------------------------------------------------------------
# The enumeration run
# ----------------------------------------------------------------------------------------------


@dataclass
class Enumeration:
    """What `enumerate_minima` found; `landscape` turns it into a LandscapeResult."""

    minima: list  # LocalMinimum, found_by "enumerate", ranked by risk, gap not yet set
    store: CellStore  # every cell's optimum (`cell(k)`, `result(k)`)
    complete: bool  # every cell solved and verified, every certificate decided
    counts: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    box_limited_best: float = float("inf")  # lowest optimum among box-limited cells
    threshold: float = float("inf")  # the query's T: every cell optimum up to T (+ tolerance) was certified
    messages: list[str] = field(default_factory=list)
    stopped: str = ""  # "time_limit" or "interrupted" when the run stopped early ("" otherwise)
    open_bound: float = float("inf")  # stopped in the certification: every local minimum below it is listed

    @property
    def all_solved(self) -> bool:
        """Every cell was solved (an early stop in the certification leaves the global minimum known)."""
        return not (self.stopped and self.counts.get("cells_unsolved", 0) > 0)

    @property
    def n_cells(self) -> int:
        return len(self.store.grid)

    @property
    def verified(self) -> np.ndarray:
        """Per cell: a usable optimum (Certifier.verified)."""
        return self.store.verified

    def best(self) -> int | None:
        """Index of the lowest verified cell optimum (the first one on ties), None if none."""
        usable = np.flatnonzero(self.store.verified)
        return None if usable.size == 0 else int(usable[np.argmin(self.store.risk[usable])])

    def lowest_bound(self) -> float:
        """The least Lagrangian lower bound over all cells (NaN bounds of failed solves ignored)."""
        return float(np.nanmin(self.store.lower)) if len(self.store.lower) else float("inf")


class _Stop:
    """Whether the run should stop: Ctrl-C (`interrupt.requested`) or past the deadline; the first reason sticks."""

    def __init__(self, time_limit: float | None):
        self.deadline = time.perf_counter() + (math.inf if time_limit is None else float(time_limit))
        self.reason = ""

    def __call__(self) -> bool:
        if not self.reason:
            if interrupt.requested():
                self.reason = "interrupted"
            elif time.perf_counter() > self.deadline:
                self.reason = "time_limit"
        return bool(self.reason)


def enumerate_minima(spec: InstanceSpec, *, max_cells: int, progress: Progress | None = None, threads: int = 1,
                     query: Query | None = None, time_limit: float | None = None) -> Enumeration:
    """Solve every cell (in ``threads`` threads) and certify the cells whose optimum lies below the
    threshold of ``query`` (every cell without one); refuse (MilplandError with the count) beyond
    ``max_cells``.

    Past ``time_limit`` seconds or on Ctrl-C the run stops with what it has (``stopped``): stopped while
    the cells are solved, nothing is listed and the best verified optimum is only an upper bound;
    stopped in the certification, which walks the cells in order of increasing optimum, every local
    minimum with risk below ``open_bound`` is listed and the global minimum is known."""
    return _enumerate(spec, max_cells=max_cells, say=progress or (lambda _msg: None), threads=threads,
                      query=query, stop=_Stop(time_limit))


def _enumerate(spec: InstanceSpec, *, max_cells: int, say: Progress, threads: int, query: Query | None,
               stop: _Stop) -> Enumeration:

    _check_spec(spec)
    act = spec.network.activation
    t0 = time.perf_counter()
    realizer = Realizer(spec.X, act)
    patterns = unit_patterns(spec.X, act, realizer=realizer)
    P = patterns.shape[0]
    total = count_cells(P, spec.width, act)
    if total > max_cells:
        raise MilplandError(
            f"--max-cells: the enumeration has {total} cells ({P} unit patterns, width {spec.width}, "
            f"{len(sign_classes(act, spec.width))} sign classes), more than the limit {max_cells}; "
            f"raise --max-cells to at least {total} or use --method sample"
        )
    _check_memory(spec, total)
    grid = CellGrid.build(patterns, spec.width, act)
    table = _ray_table(spec, patterns)
    t_patterns = time.perf_counter() - t0
    say(f"{P} unit patterns, {total} cells" + ("" if table is None else " (compiled cell kernels)"))
    certifier = Certifier(spec, unit_patterns=patterns)
    store = CellStore(grid, spec, 0 if table is None else table.max_rays * spec.width, kernels=table is not None)

    t1 = time.perf_counter()
    with interrupt.polling():  # from here Ctrl-C sets a flag and the run stops with what it has
        if table is not None:
            _solve_by_kernel(spec, grid, table, certifier, store, say, threads, above_for=_above_for(spec, query),
                             stop=stop)
        general = np.flatnonzero(~store.fast & ~store.above)
        by_cell_solver = _solve_by_cell_solver(certifier, store, general, say, stop)
        t_cells = time.perf_counter() - t1
        certifier.attach(_lookup(grid, store))
        unsolved = len(general) - by_cell_solver
        t2 = time.perf_counter()
        run = _Certification(spec, store, certifier, table, query)
        if unsolved == 0:  # a stop while solving leaves nothing to certify: a neighbour may be unsolved
            run.run(say, stop)
    t_cert = time.perf_counter() - t2
    counts = dict(unit_patterns=P, cells=len(grid), **run.counts, cells_bounded_above=int(store.above.sum()),
                  cells_by_kernel=int(store.fast.sum()), cells_by_cell_solver=by_cell_solver, cells_unsolved=unsolved)
    counts["distinct_minima"] = len(run.minima)
    counts["neighbour_cell_solves"] = certifier.cell_solves
    counts["certificate_lps"] = certifier.lp_solves
    counts["pattern_lps"] = realizer.lp_solves
    complete = counts["cell_errors"] == 0 and counts["undetermined"] == 0 and not stop.reason
    messages = run.messages + _stop_messages(stop.reason, unsolved, len(grid), run.open_bound)
    say(f"{len(run.minima)} distinct local minima; certification {t_cert:.1f} s"
        + (f" (stopped: {stop.reason})" if stop.reason else ""))
    return Enumeration(
        minima=sorted(run.minima, key=lambda m: m.risk), store=store, complete=complete, counts=counts,
        seconds={"patterns": t_patterns, "cells": t_cells, "certificates": t_cert,
                 "cells_per_second": len(grid) / t_cells if t_cells > 0 else float("inf"),
                 "cells_per_second_end_to_end": len(grid) / (time.perf_counter() - t0)},
        box_limited_best=run.box_best, messages=messages, threshold=run.threshold, stopped=stop.reason,
        open_bound=float("-inf") if unsolved else run.open_bound,
    )


def _solve_by_cell_solver(certifier: Certifier, store: CellStore, cells: np.ndarray, say, stop: _Stop) -> int:
    """Solve ``cells`` one by one with `CellSolver` (HiGHS and the numpy polish) until ``stop()``; how many."""
    started = time.perf_counter()
    for done, k in enumerate(cells):
        if stop():
            return done
        result = certifier.solver.solve(store.cell(k))
        store.keep(int(k), result, certifier.verified(result))
        if (done + 1) % 500 == 0:
            say(f"solved {done + 1}/{len(cells)} cells with CellSolver ({time.perf_counter() - started:.1f} s)")
    return len(cells)


def _stop_messages(reason: str, unsolved: int, cells: int, open_bound: float) -> list[str]:
    """What an early stop leaves proven (nothing when the run was not stopped)."""
    if not reason:
        return []
    why = "time limit" if reason == "time_limit" else "Ctrl-C"
    if unsolved:
        return [f"stopped by the {why} with {unsolved} of {cells} cells unsolved: no minimum certified, the best "
                "cell optimum is only an upper bound on the global minimum"]
    if open_bound == float("-inf"):
        return [f"stopped by the {why} in the certification: the minima listed are certified, nothing more is proven"]
    return [f"stopped by the {why} in the certification: every local minimum with risk below {open_bound:.10g} "
            "is listed"]


def _above_for(spec: InstanceSpec, query: Query | None) -> Callable[[float], float] | None:
    """For `_solve_by_kernel`: U -> T(U) + tol(U), the threshold of a fixed-threshold query had the global
    minimum the risk U (both grow with U); None without one (``levels``: T is known only as the
    minima are certified)."""
    if query is None or query.levels is not None:
        return None
    return lambda U: query.threshold(U, []) + spurious_tolerance(spec, U) if np.isfinite(U) else np.inf


def enumeration_bytes(spec: InstanceSpec, cells: int) -> float:
    """The arrays of `CellGrid` and `CellStore` with the certification's sort, 8 bytes an entry: units
    and signs (2 m), theta (m (d + 1)), ray weights (at most 2 d rays a unit in the cones seen so far:
    m 2d), risk, bound, KKT, violation, c, iterations, status, order and sorted risk (9), and 8 flags.
    Measured: d = 1, width 3, 10.7 million cells, 2.78 GB resident (this gives 2.66 GB)."""
    m, d = spec.width, spec.d
    per_cell = 8.0 * (2 * m + m * (d + 1) + m * 2 * d + 9) + 8
    return memory.BASE_BYTES + cells * per_cell


def _check_memory(spec: InstanceSpec, cells: int) -> None:
    need, limit = enumeration_bytes(spec, cells), memory.limit_bytes(spec)
    if need > limit:
        raise MilplandError(
            f"--max-cells: enumerating {cells} cells takes about {memory.gigabytes(need)}, more than the memory limit "
            f"{memory.gigabytes(limit)} ([solve] memory_limit); use --method bnb with a threshold, or raise "
            "[solve] memory_limit")


def _ray_table(spec: InstanceSpec, patterns: np.ndarray):
    """The kernels' RayTable, or None when they do not apply (loss, activation, degenerate inputs)."""
    act = spec.network.activation
    if not cell_qp.kernel_applies(act, spec.loss.kind):
        return None
    Xh = np.hstack([spec.X, np.ones((spec.n, 1))])
    if np.linalg.matrix_rank(Xh) < Xh.shape[1]:
        return None
    return cell_qp.ray_table(spec.X, spec.y, act, patterns, vertex_rays(Xh), output_bias=spec.network.output_bias)


def _solve_by_kernel(spec, grid: CellGrid, table, certifier: Certifier, store: CellStore, say, threads: int = 1,
                     above_for: Callable[[float], float] | None = None, stop: Callable[[], bool] = lambda: False
                     ) -> None:
    """Solve and verify every cell with the compiled kernels; the cells they verify are marked fast.

    Cells are independent, and the kernels release the GIL (``nogil``), so ``threads`` threads
    solve disjoint chunks at once, writing disjoint slices of the store.

    ``above_for(U)``: given the risk U of a verified cell optimum (U >= the global minimum), a value
    above which no cell needs more than a proof that its optimum lies there (the query's threshold
    for U plus its tolerance, which only falls as U falls to the global minimum).  Such cells are
    left at their first Lagrangian bound (`cell_qp.ABOVE`, `store.above`).  U starts from a sample
    of cells and falls chunk by chunk.  After ``stop()`` the chunks not started are left unsolved."""
    N, m = grid.units.shape
    status = np.zeros(N, dtype=np.int64)
    converged = np.zeros(N, dtype=bool)
    started = time.perf_counter()
    best = [_sample_best(spec, grid, table, certifier, kmax=store.mu.shape[1]) if above_for else np.inf]

    def solve_chunk(start: int) -> int:
        sl = slice(start, min(N, start + SOLVE_CHUNK))
        if stop():
            return -1
        above = above_for(best[0]) if above_for else np.inf
        _solve_and_verify(spec, grid.units[sl], grid.signs[sl], table, certifier, store.mu[sl], store.theta[sl],
                          store.c[sl], store.iterations[sl], converged[sl], status[sl], store.risk[sl],
                          store.lower[sl], store.kkt[sl], store.violation[sl], store.box_active[sl], above)
        verified = status[sl] == cell_qp.VERIFIED
        if verified.any():  # a race between threads can only keep a larger U: still >= the global minimum
            best[0] = min(best[0], float(np.min(store.risk[sl][verified])))
        return sl.stop

    starts = range(0, N, SOLVE_CHUNK)
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        for stopped in (map(solve_chunk, starts) if pool is None else pool.map(solve_chunk, starts)):
            if stopped > 0:
                say(f"solved {stopped}/{N} cells with the compiled kernel ({time.perf_counter() - started:.1f} s)")
    finally:  # on Ctrl-C (KeyboardInterrupt here) the chunks not started are dropped, not waited for
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    store.above[:] = status == cell_qp.ABOVE
    fast = converged & (status == cell_qp.VERIFIED)
    _solve_boxed(spec, grid, table, certifier, store, np.flatnonzero(converged & (status == cell_qp.OUTSIDE_BOX)))
    fast |= store.box_limited
    store.fast[:] = fast
    store.status_ok[:] = fast
    store.feasible[:] = fast
    store.verified[:] = fast


def _solve_and_verify(spec, units, signs, table, certifier: Certifier, mu, theta, c, iterations, converged, status,
                      risk, lower, kkt, violation, box_active, above: float = np.inf) -> None:
    """The compiled solve and verification of these cells (without the box: `_solve_boxed` after)."""
    b = certifier.builder
    m = units.shape[1]
    cell_qp.solve_cells(units, signs, table.pattern_ptr, table.pattern_rays, table.rays, table.gram, table.gram_y,
                        table.centred, table.y_centred, table.feature_mean, table.y_mean, table.has_c, mu.shape[1],
                        mu, theta, c, iterations, converged)
    cell_qp.verify_cells(units, signs, table.patterns, table.facets, table.slopes, table.Xh, table.y, theta, c,
                         table.has_c, float(spec.box.weight), b.c_bound(m), b.w, b.scale, certifier.solver.kkt_tol,
                         FEAS_TOL, BOX_ACTIVE_RTOL, False, status, risk, lower, kkt, violation, box_active, above)


def _sample_best(spec, grid: CellGrid, table, certifier: Certifier, *, kmax: int) -> float:
    """The least verified optimum among SAMPLE_CELLS cells spread over the grid: a first U for
    `_solve_by_kernel` (inf when none is verified)."""
    ks = np.unique(np.linspace(0, len(grid) - 1, min(len(grid), SAMPLE_CELLS)).astype(np.int64))
    k, m, D = len(ks), grid.units.shape[1], spec.d + 1
    status = np.zeros(k, dtype=np.int64)
    risk = np.full(k, np.inf)
    _solve_and_verify(spec, grid.units[ks], grid.signs[ks], table, certifier, np.zeros((k, kmax)), np.zeros((k, m, D)),
                      np.zeros(k), np.zeros(k, dtype=np.int64), np.zeros(k, dtype=bool), status, risk, np.zeros(k),
                      np.zeros(k), np.zeros(k), np.zeros(k, dtype=bool))
    verified = status == cell_qp.VERIFIED
    return float(np.min(risk[verified])) if verified.any() else float("inf")


def _solve_boxed(spec, grid: CellGrid, table, certifier: Certifier, store: CellStore, cells: np.ndarray) -> None:
    """Cells whose unboxed optimum leaves the box: the boxed problem by the compiled active set,
    verified with the box.  When its certified lower bound exceeds the risk of the unboxed optimum,
    no optimal point of the unboxed problem lies in the box, so every boxed optimal point touches
    the box (else it would be an unconstrained local, hence global, optimum) and, the optimal face
    being a convex subset of the box's boundary, lies on one of its facets: the cell is
    box-limited (`Certifier`'s verdict) and is marked so.  The others go to `CellSolver`."""
    if cells.size == 0:
        return
    b = certifier.builder
    m = grid.units.shape[1]
    unboxed = store.risk[cells].copy()
    converged = np.zeros(len(grid), dtype=bool)
    cell_qp.solve_boxed_cells(cells, grid.units, grid.signs, table.patterns, table.slopes, table.Xh, table.y,
                              table.has_c, float(spec.box.weight), store.theta, store.c, store.iterations,
                              converged)
    sub = cells
    status = np.zeros(len(sub), dtype=np.int64)
    risk, lower, kkt, viol = (np.zeros(len(sub)) for _ in range(4))
    at_box = np.zeros(len(sub), dtype=bool)
    theta = store.theta[sub]
    c = store.c[sub]
    cell_qp.verify_cells(grid.units[sub], grid.signs[sub], table.patterns, table.facets, table.slopes, table.Xh,
                         table.y, theta, c, table.has_c, float(spec.box.weight), b.c_bound(m), b.w, b.scale,
                         certifier.solver.kkt_tol, FEAS_TOL, BOX_ACTIVE_RTOL, True, status, risk, lower, kkt, viol,
                         at_box)
    limited = (converged[sub] & (status == cell_qp.VERIFIED) & at_box
               & (lower > unboxed + NEIGHBOUR_RTOL * np.abs(unboxed) + certifier.floor))
    keep = sub[limited]
    store.theta[keep], store.c[keep] = theta[limited], c[limited]
    store.risk[keep], store.lower[keep], store.kkt[keep] = risk[limited], lower[limited], kkt[limited]
    store.violation[keep] = viol[limited]
    store.box_active[keep] = True
    store.box_limited[keep] = True


def _lookup(grid: CellGrid, store: CellStore):
    """For `Certifier.attach`: the solved cell of a cache key (sorted (sign, pattern column) pairs)."""
    index = {tuple(p): q for q, p in enumerate(grid.patterns.tolist())}

    def lookup(key):
        try:
            k = grid.index([s for s, _ in key], [index[col] for _, col in key])
        except KeyError:  # a pattern that is not strictly realisable: not an enumerated cell
            return None
        cell = store.cell(k)
        return cell, store.result(k, cell)

    return lookup


class _Certification:
    """The certification pass: cells in order of increasing optimum, the compiled loop for the
    cells it decides, `Certifier.certify` for the others (module docstring)."""

    def __init__(self, spec: InstanceSpec, store: CellStore, certifier: Certifier, table, query: Query | None = None):
        self.spec, self.store, self.certifier, self.table, self.query = spec, store, certifier, table, query
        self.threshold = float("inf")
        self.open_bound = float("inf")  # stopped early: every local minimum below it is listed
        self.best: float | None = None  # set by the first `_cut`
        self.squared = spec.loss.kind == "squared"
        self.patterns = store.grid.patterns.astype(np.int8)
        self.tau = fit_tolerance(spec)
        self.w = float(spec.loss.weight(spec.n))
        self.minima = []
        self.fits = np.zeros((16, spec.n))
        self.keys = np.zeros(16)
        self.interior = np.zeros(16, dtype=bool)
        self.box_best = float("inf")
        self.messages: list[str] = []
        # cell errors, verified by the absolute gap, skipped (same fit), not local, box-limited,
        # boundary minima again (a listed boundary minimum's fit)
        self.kernel_counts = np.zeros(6, dtype=np.int64)
        self.kernel_box_best = np.full(1, np.inf)
        self.counts = dict(box_limited=0, not_local=0, not_attained=0, undetermined=0, certified_cells=0,
                           certified_by_certifier=0, cell_errors=0, cells_verified_by_absolute_gap=0,
                           skipped_same_fit=0, not_local_by_kernel=0)

    def run(self, say, stop: Callable[[], bool] = lambda: False) -> None:
        """Certify the cells up to the cut; after ``stop()`` sets ``open_bound`` (`_open_bound`) and returns."""
        st, grid = self.store, self.store.grid
        order = np.argsort(st.risk, kind="stable")
        tab = self.table
        if tab is None:  # placeholders: no cell is fast
            ptr, members = np.zeros(1, np.int64), np.zeros(0, np.int64)
            centred = gram = np.zeros((1, 1))
            side = np.zeros((1, self.spec.n), np.int8)
            slopes, Xh, has_c = np.zeros(2), np.zeros((self.spec.n, 2)), False
        else:
            ptr, members, centred, gram, side = (tab.pattern_ptr, tab.pattern_rays, tab.centred, tab.gram,
                                                 tab.side)
            slopes, Xh, has_c = tab.slopes, tab.Xh, tab.has_c
        patterns = self.patterns
        sorted_risk = st.risk[order]
        cut = self._cut(sorted_risk)
        pos, events, started = 0, 0, time.perf_counter()
        while pos < cut:
            if stop():
                break
            limit = min(cut, pos + CERTIFY_CHUNK)
            pos, event = cell_qp.certify_run(
                pos, order[:limit], st.verified, st.fast, st.box_limited, st.status_ok, st.feasible, st.risk, st.lower,
                st.fitted, st.kernels, st.theta, st.c, st.mu,
                grid.units, grid.signs, ptr, members, centred, gram, side, patterns, slopes, Xh, has_c,
                grid.rank_table, grid.class_offset, grid.neg_count, self.squared, self.tau, self.w, self.spec.y,
                self.fits, self.keys, self.interior, len(self.minima), self.kernel_counts,
                self.certifier.floor, NEIGHBOUR_RTOL, self.kernel_box_best)
            if event == cell_qp.EVENT_DONE:
                continue  # the chunk is walked: pos == limit
            self._certify(int(order[pos]))
            if self.query is not None and self.query.levels is not None:
                cut = min(cut, self._cut(sorted_risk))
            events += 1
            if events % 1000 == 0:
                say(f"certified {pos + 1}/{len(order)} cells ({time.perf_counter() - started:.1f} s)")
            pos += 1
        c = self.kernel_counts
        if pos < cut:  # stopped
            self.open_bound = self._open_bound(sorted_risk[pos], order[pos:], int(c[0]))
        else:
            c[0] += self._unverified_below(order[cut:])
        self.counts.update(cell_errors=int(c[0]), cells_verified_by_absolute_gap=int(c[1]),
                           skipped_same_fit=int(c[2]), not_local_by_kernel=int(c[3]))
        self.counts["not_local"] += int(c[3])
        self.counts["box_limited"] += int(c[4])
        self.counts["box_limited_by_kernel"] = int(c[4])
        self.counts["certified_cells"] += int(c[5])
        self.counts["boundary_again_by_kernel"] = int(c[5])
        self.box_best = min(self.box_best, float(self.kernel_box_best[0]))

    def _cut(self, sorted_risk: np.ndarray) -> int:
        """How many cells, in order of increasing optimum, lie below the query's threshold T (plus the
        level tolerance); sets ``threshold``.  Without a query: all of them."""
        if self.query is None:
            return len(sorted_risk)
        if self.best is None:  # the global minimum: the least verified optimum (fixed before the walk)
            st = self.store
            self.best = float(np.min(st.risk[st.verified])) if st.verified.any() else float("inf")
            self.tol = spurious_tolerance(self.spec, self.best)
        levels = distinct_levels((m.risk for m in self.minima), self.tol) if self.query.levels else []
        self.threshold = float(self.query.threshold(self.best, levels))
        return int(np.searchsorted(sorted_risk, self.threshold + self.tol, side="right"))

    def _open_bound(self, next_risk: float, rest: np.ndarray, errors: int) -> float:
        """Stopped at the cell of optimum ``next_risk`` (``rest``: it and the cells after it): every local
        minimum with risk below the returned value is listed.  A minimum below ``next_risk`` has all its
        cells before it, certified; an unverified cell after it may hide one down to its lower bound.
        A listed risk is the numpy forward pass's, within NUMPY_RTOL (+ floor) of its cell's optimum:
        the bound keeps that margin below ``next_risk``.  Nothing is proven when a cell before it was
        unverified or undetermined."""
        if errors or self.counts["undetermined"]:
            return float("-inf")
        bounds = self.store.lower[rest[~self.store.verified[rest]]]
        if np.isnan(bounds).any():  # a failed solve: no bound at all
            return float("-inf")
        below_next = next_risk - NUMPY_RTOL * abs(next_risk) - self.certifier.floor
        return float(min(below_next, np.min(bounds, initial=np.inf)))

    def _unverified_below(self, rest: np.ndarray) -> int:
        """Cells past the threshold's cut whose optimum was not verified and whose lower bound does not
        put them above T: their optimum may lie below T, so the listing cannot be complete."""
        if rest.size == 0 or not np.isfinite(self.threshold):
            return 0
        st = self.store
        unverified = rest[~st.verified[rest]]
        return int(np.count_nonzero(~(st.lower[unverified] > self.threshold + self.tol)))

    def _certify(self, k: int) -> None:
        """`Certifier.certify` on cell k, and the bookkeeping of the minima (one per distinct fit)."""
        st = self.store
        cell = st.cell(k)
        res = st.result(k, cell)
        verdict = self.certifier.certify(cell, res, found_by="enumerate", face_point=self._face_point(k))
        self.counts["certified_by_certifier"] += 1
        if verdict.status == "local_minimum":
            self.counts["certified_cells"] += 1
            m = verdict.minimum
            at = self._match(m.fitted)
            if at < 0:
                self._append(m, float(st.risk[k]))
            elif m.certificate == "interior" and self.minima[at].certificate != "interior":
                self.minima[at] = m
                self.interior[at] = True
        elif verdict.status == "box_limited":
            self.counts["box_limited"] += 1
            self.box_best = min(self.box_best, float(st.risk[k]))
        elif verdict.status == "not_local_minimum":
            self.counts["not_local"] += 1
        elif verdict.status == "not_attained":
            self.counts["not_attained"] += 1
        else:
            self.counts["undetermined"] += 1
            if len(self.messages) < 5:
                self.messages.append(f"cell {cell.key()}: {verdict.reason}")

    def _face_point(self, k: int):
        """(point, tight cell rows) of a kernel-solved cell's optimal face for `Certifier.certify`
        (`cell_qp.examine_face`), in the canonical unit order of `CellStore.cell`; None otherwise."""
        st, tab = self.store, self.table
        if tab is None or not st.fast[k] or st.box_limited[k]:
            return None
        grid = st.grid
        m, D = st.theta.shape[1], st.theta.shape[2]
        theta, cflat = np.zeros((m, D)), np.zeros(1)
        tied, zero_unit = np.zeros((self.spec.n, m), dtype=bool), np.zeros(m, dtype=bool)
        if not cell_qp.examine_face(grid.units[k], grid.signs[k], st.mu[k], tab.pattern_ptr, tab.pattern_rays,
                                    tab.centred, tab.gram, tab.side, self.patterns, tab.slopes, tab.Xh, tab.rays,
                                    tab.feature_mean, tab.y_mean, tab.has_c, float(self.spec.box.weight), theta,
                                    cflat, tied, zero_unit):
            return None
        order = grid.order(k)
        theta = theta[order]
        point = ScaledParams(U=theta[:, : D - 1].copy(), a=theta[:, D - 1].copy(), rho=np.zeros(m),
                             c=float(cflat[0]), signs=grid.signs[k][order].astype(float))
        return point, tied[:, order].reshape(-1)

    def _match(self, fitted) -> int:
        count = len(self.minima)
        if not self.squared:  # the risk window of match_fit holds for the squared loss only
            return match_minimum(fitted, self.fits[:count], self.spec)
        return int(cell_qp.match_fit(np.asarray(fitted, dtype=float), self.fits, self.keys, count, self.tau, self.w,
                             self.spec.y))

    def _append(self, minimum, key: float) -> None:
        count = len(self.minima)
        if count == len(self.keys):  # grow the arrays the compiled loop reads
            self.fits = np.vstack([self.fits, np.zeros_like(self.fits)])
            self.keys = np.concatenate([self.keys, np.zeros(count)])
            self.interior = np.concatenate([self.interior, np.zeros(count, dtype=bool)])
        self.minima.append(minimum)
        self.fits[count] = minimum.fitted
        self.keys[count] = key
        self.interior[count] = minimum.certificate == "interior"
