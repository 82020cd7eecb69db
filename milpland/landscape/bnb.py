"""Every local minimum below a threshold, by the pattern branch-and-bound (DESIGN §5b).

The global search's tree (`milpland.search.pattern_bnb`: the same relaxations, propagation and
symmetry) is pruned at a threshold T instead of at the incumbent: every node whose bound is at
most T (plus the tolerance) is expanded, and every leaf's cell is solved and its optimum
certified (`MinimaCollector`, as the enumeration does).  A local minimum is the best point of
its closed cell (DESIGN §5) and a node's bound is below the optimum of every cell under it, so
when the tree is exhausted the list holds every local minimum in the box with risk <= T.

The threshold, one of three queries:

- ``risk_max = R``: T = R;
- ``gap_max = G``: T = (best risk found) + G, which falls to global + G as the search goes on
  (nodes pruned at a higher T were above the final one too); ``gap_rel = F``: the same with
  G = F x (best risk found), i.e. T = (1 + F) x global;
- ``levels = K``: T = the K-th lowest distinct risk level among the minima certified so far
  (infinite until K are found); best-first order finds the low levels first.

A run stopped early (time limit, Ctrl-C) still proves something: ``open_bound`` is the smallest
bound among the nodes left unexplored (and the risk of any cell the certificates could not
decide); every local minimum with risk below min(open_bound, T) is in the list.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import milpland.interrupt as interrupt
from milpland.cells.arrangement import unit_patterns
from milpland.cells.certificates import Certifier
from milpland.cells.minima import LocalMinimum
from milpland.cells.problem import Cell, CellResult
from milpland.instance.spec import InstanceSpec
from milpland.landscape.collect import MinimaCollector, Query, keep_minimum, spurious_tolerance
from milpland.search import memory
from milpland.search.result import SolveResult
from milpland.search.solve import sign_class_order, solve_global

DEFAULT_LEVELS = 10
MIN_CLASS_SECONDS = 1.0  # a class started with less time left than this is not searched
Progress = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class BnbListing:
    minima: list[LocalMinimum]  # every certified minimum with risk <= threshold (unranked)
    global_result: SolveResult
    query: Query
    threshold: float  # the final T
    complete: bool  # the tree was exhausted and every leaf below T was decided
    open_bound: float  # every local minimum with risk below min(open_bound, T) is listed (inf when complete)
    counts: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


class LeafListing:
    """The `search.outcome.Exploration` of the landscape: the threshold of the query, and the
    leaves' optima certified into a `MinimaCollector`."""

    def __init__(self, spec: InstanceSpec, query: Query, collector: MinimaCollector | None, *,
                 classes: tuple[int, ...] | None = None):
        self.spec, self.query, self.collector = spec, query, collector
        self.classes = classes  # the sign classes (numbers of positive units) to search; None: all
        self.open_bound = -np.inf  # set by close(); -inf until the search has ended
        self.leaves = 0
        self._incumbent = np.inf

    def level_tolerance(self, risk: float) -> float:
        return spurious_tolerance(self.spec, risk)

    def threshold(self, incumbent_risk: float) -> float:
        self._incumbent = incumbent_risk
        levels = self.collector.levels(self.level_tolerance(incumbent_risk)) if self.query.levels else []
        return self.query.threshold(incumbent_risk, levels)

    def leaf(self, cell: Cell, result: CellResult) -> None:
        self.leaves += 1
        limit = self.threshold(self._incumbent)
        if result.theta is not None and result.risk > limit + self.level_tolerance(limit):
            return  # its minimum, if any, lies above the band
        self.collector.offer(cell, result)

    def close(self, open_bound: float) -> None:
        self.open_bound = open_bound


@dataclass(frozen=True, eq=False)
class LeafRun:
    """What one listing search (one process, some or all sign classes) found: picklable, so that
    the classes can be listed in worker processes and merged (`parallel_bnb_minima`)."""

    minima: list[LocalMinimum]
    counts: dict  # the collector's counts, leaves, nodes, certifier work
    open_bound: float  # the least bound left open, lowered to undecided leaves' risks
    box_limited_best: float
    messages: list[str]
    glob: SolveResult | None  # the search's own result (global only when classes is None; None: not run)
    threshold: float  # the query's final T in this search


def leaf_run(spec: InstanceSpec, query: Query, *, classes: tuple[int, ...] | None = None,
             progress: Progress | None = None) -> LeafRun:
    """The listing search of `query` over the sign classes `classes` (all when None)."""
    # in 1-D the unit patterns are the monotone ones (listed without LPs): the certificates'
    # neighbour lookups become filters instead of realisability LP searches
    patterns = unit_patterns(spec.X, spec.network.activation) if spec.d == 1 else None
    collector = MinimaCollector(spec, Certifier(spec, unit_patterns=patterns), found_by="bnb")
    listing = LeafListing(spec, query, collector, classes=classes)
    glob = solve_global(spec.with_options(method="bnb"), progress=progress, explore=listing)
    counts = dict(collector.counts, leaves=listing.leaves, nodes=glob.nodes,
                  neighbour_cell_solves=collector.certifier.cell_solves, certificate_lps=collector.certifier.lp_solves)
    return LeafRun(minima=list(collector.minima), counts=counts,
                   open_bound=float(min(listing.open_bound, collector.unresolved_best)),
                   box_limited_best=float(collector.box_limited_best), messages=list(collector.messages), glob=glob,
                   threshold=float(listing.threshold(float(glob.risk))))


def bnb_minima(spec: InstanceSpec, query: Query, *, progress: Progress | None = None, jobs: int = 1) -> BnbListing:
    """Every certified local minimum of ``spec`` the query asks for, and the global minimum.
    ``jobs`` > 1: the sign classes are listed in that many processes (`parallel_bnb_minima`)."""
    say = progress or (lambda _msg: None)
    if jobs > 1 and query.levels is None and len(sign_class_order(spec)) > 1:
        return parallel_bnb_minima(spec, query, say=say, jobs=jobs)
    started = time.perf_counter()
    say(f"listing {query.describe()} by branch-and-bound ...")
    run = leaf_run(spec, query, progress=say)
    note = [] if jobs <= 1 else ["--jobs: the K lowest levels are listed in one process (their threshold is "
                                 "shared as it falls)"]
    return _listing(spec, query, run.glob, run.threshold, [run], started, note)


def parallel_bnb_minima(spec: InstanceSpec, query: Query, *, say: Progress, jobs: int) -> BnbListing:
    """The listing of a fixed-threshold query with the sign classes split over ``jobs`` processes.

    The global minimum is solved first (the same branch-and-bound, without the listing), which fixes
    the threshold T of `query`; then every sign class is listed up to T in a pool of processes,
    and the lists are merged by fitted values.  Each process expands every node of its classes with
    bound <= T, so together they expand every node the one-process listing expands at its final T.
    One task a class, the global minimum's class first."""
    started = time.perf_counter()
    say(f"listing {query.describe()} by branch-and-bound in {jobs} processes: the global minimum first ...")
    glob = solve_global(spec.with_options(method="bnb"), progress=say)
    threshold = LeafListing(spec, query, None).threshold(float(glob.risk))  # a fixed-threshold query: no levels
    band = Query(risk_max=float(threshold))
    roots = root_bounds(spec, say)
    tol = spurious_tolerance(spec, threshold)
    first = int(np.sum(np.asarray(glob.signs) > 0)) if glob.signs is not None else None
    # classes whose root bound exceeds T hold no minimum of the band; the global minimum's class
    # first, then the others by falling root bound (a high root bound tends to mean a small tree)
    order = sorted((k for k in sign_class_order(spec) if roots[k] <= threshold + tol),
                   key=lambda k: (k != first, -roots[k]))
    workers = max(1, min(jobs, len(order)))
    left = max(spec.solve.time_limit - (time.perf_counter() - started), 1.0)
    # the processes share the machine: each gets its share of [solve] memory_limit
    part_spec = spec.with_options(time_limit=left, memory_limit=memory.limit_bytes(spec) / 1e9 / workers)
    say(f"threshold {threshold:.10g}; the sign classes (positive units) {order} in {workers} processes ...")
    mp = multiprocessing.get_context("spawn")  # HiGHS threads do not survive a fork
    runs: list[LeafRun] = []
    with interrupt.polling(), ProcessPoolExecutor(max_workers=workers, mp_context=mp) as pool:
        # one task a class, the global minimum's first: a free process takes the next class, so
        # classes of very different sizes still share the processes.  Ctrl-C reaches the workers
        # too: each stops its search and returns what it proved.
        ends = time.time() + left  # one wall-clock deadline for all: a class started late gets what is left
        futures = [pool.submit(class_run, part_spec, band, k, ends, roots[k]) for k in order]
        for future in futures:
            runs.append(future.result())
    note = [f"--jobs {jobs}: the global minimum was solved first, then the sign classes {order} were listed "
            f"one at a time in {workers} processes up to its threshold"]
    return _listing(spec, query, glob, threshold, runs, started, note)


def root_bounds(spec: InstanceSpec, say: Progress) -> dict[int, float]:
    """Per sign class, the certified bound of its root node (every cell of the class lies above it)."""
    from milpland.search.pattern_bnb import BnbOptions, make_relaxation, root_nodes

    relaxation = make_relaxation(spec, BnbOptions(), say)
    counter = itertools.count()
    return {k: float(relaxation.evaluate(root_nodes(spec, [k], counter)[0]).bound) for k in sign_class_order(spec)}


def class_run(spec: InstanceSpec, query: Query, n_positive: int, ends: float, root_bound: float) -> LeafRun:
    """`leaf_run` of one sign class in a worker, with the time left before ``ends`` (time.time(),
    comparable across processes).  A class reached after the deadline is not searched: what it
    still proves is its root's bound (no cell of the class lies below it)."""
    left = ends - time.time()
    if left < MIN_CLASS_SECONDS:
        counts = {"leaves": 0, "nodes": 0}
        return LeafRun(minima=[], counts=counts, open_bound=float(root_bound), box_limited_best=float("inf"),
                       messages=[f"sign class {n_positive}: not searched, the time limit came first"],
                       glob=None, threshold=float("nan"))
    return leaf_run(spec.with_options(time_limit=left), query, classes=(n_positive,))


def _listing(spec: InstanceSpec, query: Query, glob: SolveResult, threshold: float, runs: list[LeafRun],
             started: float, notes: list[str]) -> BnbListing:
    """The listing of one or more runs: minima merged by fitted values (an interior certificate
    preferred), counts added, the least open bound."""
    tol = spurious_tolerance(spec, threshold)
    open_bound = min(run.open_bound for run in runs)
    complete = bool(np.isinf(open_bound) or open_bound > threshold + tol)
    minima = [m for m in merge_minima(spec, [m for run in runs for m in run.minima]) if m.risk <= threshold + tol]
    counts: dict = {}
    for run in runs:
        for key, value in run.counts.items():
            counts[key] = counts.get(key, 0) + value
    counts["distinct_minima"] = len(minima)
    messages = [msg for run in runs for msg in run.messages] + list(notes)
    box_limited_best = min(run.box_limited_best for run in runs)
    if box_limited_best <= threshold + tol:
        messages.append(f"{counts['box_limited']} cell optima touch the box (lowest "
                        f"{box_limited_best:.10g}): minima over the box only, not listed")
    if not complete:
        stopped = next((run.glob for run in runs if run.open_bound == open_bound and run.glob is not None), glob)
        messages.append(f"stopped before the tree was exhausted ({stop_reason(stopped)}): every local minimum with "
                        f"risk below {min(open_bound, threshold):.10g} is listed, above it some may be missing")
    seconds = {"total": time.perf_counter() - started, "search": float(glob.seconds.total)}
    return BnbListing(minima=minima, global_result=glob, query=query, threshold=float(threshold),
                      complete=complete, open_bound=float(open_bound) if not complete else float("inf"),
                      counts=counts, seconds=seconds, messages=messages)


def merge_minima(spec: InstanceSpec, minima: list[LocalMinimum]) -> list[LocalMinimum]:
    """One minimum per fitted values (as `MinimaCollector` keeps them), an interior certificate
    preferred to a boundary one."""
    kept: list[LocalMinimum] = []
    fits = np.zeros((0, spec.n))
    for m in minima:
        fits = keep_minimum(kept, fits, m, spec)
    return kept


def stop_reason(glob) -> str:
    """Why the listing's search stopped early, in words (the global result may be certified all the same)."""
    if glob.status == "interrupted" or "interrupted" in glob.message:
        return "Ctrl-C"
    if memory.MEMORY_NOTE in glob.message:
        return "memory limit, [solve] memory_limit"
    return "time limit"
