"""`landscape(spec)`: the certified local minima of one instance, ranked, with their gaps (DESIGN §5).

Methods:

- ``enumerate`` (`milpland.landscape.enumeration`): every cell solved and certified.  Complete: every
  local minimum inside the box is listed (up to the certificates' tolerances), and the best
  cell optimum is the global minimum over the box, so no separate global solve is needed.
- ``sample`` (`milpland.landscape.census`): the census -- gradient descent from seeded random starts
  (`milpland.landscape.sampling`), each end cell certified; ``basin_fraction`` = share of the
  starts, with Wilson intervals and the Good-Turing unseen mass in ``census``.  Never complete.
- ``milp`` (`milpland.landscape.localmin_milp`): the MILP over eps-interior local minima.
- ``bnb`` (`milpland.landscape.bnb`): the pattern branch-and-bound pruned at a threshold: every
  local minimum below it (``risk_max``, ``gap_max`` above the global minimum, or the ``levels``
  lowest risk levels), complete when the tree is exhausted; the global minimum from the same search.
- ``auto``: ``enumerate`` when the instance has at most ``max_cells`` cells, else ``bnb`` with
  ``levels`` (default 10) where the branch-and-bound applies.

``census=N`` (with enumerate, bnb or auto) runs the census after the listing and puts it next to
the band (`milpland.landscape.census_band`): listed minima get basin counts, the census's minima
above the proven threshold are added (found_by "sample"), and a census minimum below it that the
listing lacks is reported as a conflict (``census_band.conflicts``).

The global minimum comes from the enumeration when it is complete (``global_source =
"enumerate"``), from the listing's own search (``"bnb"``), otherwise from `solve_global`
(``"solve_global"``).  Each minimum gets
gap = risk - global risk and spurious = gap > tolerance, with tolerance =
max(rel_gap x |global risk|, SPURIOUS_FLOOR x risk of the best constant).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

import highspy
import numpy as np

import milpland.interrupt as interrupt
from milpland.cells.arrangement import unit_patterns
from milpland.cells.minima import LocalMinimum
from milpland.cells.verify import verify_point
from milpland.errors import MilplandError
from milpland.instance.losses import LOGISTIC_NEEDS_DECAY
from milpland.instance.spec import InstanceSpec
from milpland.landscape.collect import Query, spurious_tolerance
from milpland.records import SCHEMA_VERSION
from milpland.search.result import Seconds, SolveResult

if TYPE_CHECKING:  # the census imports numba: loaded only when sampling runs
    from milpland.landscape.census import Census
    from milpland.landscape.census_band import CensusBand

METHODS = ("auto", "enumerate", "bnb", "sample", "milp")
DEFAULT_MAX_CELLS = 1_000_000  # about a minute with the compiled kernels (results/enumeration-speed.md)
DEFAULT_MAX_CELLS_CELLWISE = 20_000  # about a minute where each cell goes through HiGHS (200-2,000 cells/s)
# a fixed threshold (--risk-max, --gap-max, --gap-rel): every cell solved, only the band certified, cells above it
# left at a bound: about 7 us of one core a cell (d = 1, width 3, n = 100: 10.7 million cells, 81 s CPU in all)
DEFAULT_MAX_CELLS_THRESHOLD = 12_000_000
DEFAULT_STARTS = 100
Progress = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class LandscapeResult:
    instance: str
    instance_hash: str
    method: str  # the method that ran: enumerate | bnb | sample | milp
    global_result: SolveResult
    global_source: str  # "enumerate" (complete enumeration) | "bnb" (the listing's search) | "solve_global"
    minima: list[LocalMinimum]  # ranked by risk, gap and spurious set
    complete: bool  # enumerate: every local minimum in the box; bnb: every one up to the threshold;
    # milp: every risk level; sample: never
    tolerance: float  # a minimum is spurious when gap > tolerance
    seconds: float
    counts: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    message: str = ""
    requested: str = ""  # the method asked for (auto names the one it chose in `method`)
    query: str = ""  # bnb, enumerate: which minima were asked for ("" for enumerate: all)
    threshold: float = float("inf")  # bnb, enumerate: the listing is complete up to this risk (inf: no limit)
    open_bound: float = float("inf")  # bnb, enumerate stopped early: every minimum below min(open_bound, threshold)
    # is listed (enumerate: -inf when incomplete for another reason)
    census: Census | None = None  # sample, or census=N: basin statistics (estimates), by minimum's cell
    census_band: CensusBand | None = None  # census=N next to a listing: matches, tail, conflicts

    @property
    def proven_below(self) -> float:
        """Every local minimum in the box with risk at most this is in the list (-inf: nothing proven)."""
        if self.method in ("enumerate", "bnb"):  # threshold: inf unless a query restricted the listing
            return self.threshold if self.complete else min(self.open_bound, self.threshold)
        return float("-inf")

    @property
    def global_risk(self) -> float:
        return float(self.global_result.risk)

    @property
    def spurious(self) -> list[LocalMinimum]:
        return [m for m in self.minima if m.spurious]

    def spurious_gap(self) -> dict:
        """The headline: the lowest spurious level above the global minimum, and whether the
        listing proves that no local minimum lies between them."""
        glob, below = self.global_risk, self.proven_below
        lowest = self.spurious[0].risk if self.spurious else None
        out = {"global_risk": _finite_or_none(glob), "lowest_spurious_risk": lowest,
               "gap": None if lowest is None else float(lowest - glob), "proven": False,
               "proven_below": _finite_or_none(below) if np.isfinite(below) else (None if below < 0 else "inf")}
        certified = bool(self.global_result.certified)
        if lowest is not None and lowest <= below:
            out["proven"] = certified
            out["statement"] = ("no local minimum lies between the global minimum and the lowest spurious one"
                                if certified else "lowest spurious minimum above the best known point "
                                "(the global minimum is not certified)")
        elif lowest is None and below > glob + self.tolerance:
            out["proven"] = certified
            limit = "in the box" if np.isinf(below) else f"with risk <= {below:.10g}"
            out["statement"] = f"no spurious local minimum {limit}"
        elif lowest is not None and below > glob + self.tolerance:
            # the band holds no spurious minimum; the lowest one known lies above it (census tail)
            out["statement"] = (f"no spurious local minimum with risk <= {below:.10g}; the lowest one found "
                                "above it is not proven to be the lowest")
        elif lowest is not None:
            out["statement"] = f"lowest spurious minimum found by {self.method}; lower ones may exist"
        else:
            out["statement"] = f"no spurious minimum found by {self.method}; some may exist"
        return out

    def to_json(self) -> dict:
        """The object printed by ``milpland landscape --format json``."""
        return {
            "instance": self.instance,
            "instance_hash": self.instance_hash,
            "method": self.method,
            "requested": self.requested or self.method,
            "complete": bool(self.complete),
            "query": self.query,
            "threshold": _finite_or_none(self.threshold),
            "open_bound": _finite_or_none(self.open_bound),
            "proven_below": _finite_or_none(self.proven_below) if np.isfinite(self.proven_below)
            else ("inf" if self.proven_below > 0 else None),
            "spurious_gap": self.spurious_gap(),
            "global": self.global_result.to_json(),
            "global_source": self.global_source,
            "global_risk": _finite_or_none(self.global_risk),
            "tolerance": float(self.tolerance),
            "n_minima": len(self.minima),
            "n_spurious": len(self.spurious),
            "minima": [m.to_json() | self.basin_columns(m) for m in self.minima],
            "counts": _plain(self.counts),
            "timings": _plain(self.timings),
            "seconds": float(self.seconds),
            "message": self.message,
            "schema_version": SCHEMA_VERSION,
        } | self._census_json()

    def _census_json(self) -> dict:
        """sample: the census statistics (the per-minimum basin columns are in `basin_columns`)."""
        if self.census is None:
            return {}
        band = {} if self.census_band is None else {"band": self.census_band.to_json()}
        return {"census": self.census.to_json() | band}

    def basin_columns(self, m: LocalMinimum) -> dict:
        """sample: basin_count, basin_ci_low, basin_ci_high of one minimum (nothing without a census)."""
        if self.census is None or m.cell not in self.census.basins:
            return {}
        basin = self.census.basins[m.cell]
        return {"basin_count": basin.count, "basin_ci_low": basin.ci_low, "basin_ci_high": basin.ci_high}

    def to_rows(self) -> list[dict]:
        """One row per minimum for the ``minima`` table (milpland.runs.tables), plus run columns."""
        rows = []
        headline = self.spurious_gap()
        for rank, m in enumerate(self.minima, start=1):
            row = m.to_row() | self.basin_columns(m)
            row.update(instance_hash=self.instance_hash, rank=rank, method=self.method,
                       global_risk=self.global_risk, global_source=self.global_source,
                       complete=bool(self.complete), **headline_columns(headline))
            rows.append(row)
        return rows


def headline_columns(headline: dict) -> dict:
    """The spurious gap as table columns (minima and, for the landscape task, solves)."""
    gap = headline["gap"]
    return {"spurious_gap": float("nan") if gap is None else float(gap),
            "lowest_spurious_risk": float("nan") if gap is None else float(headline["lowest_spurious_risk"]),
            "spurious_gap_proven": bool(headline["proven"])}


def landscape(spec: InstanceSpec, *, method: str = "auto", max_cells: int | None = None,
              starts: int = DEFAULT_STARTS, seed: int | None = None, milp_options: dict | None = None,
              risk_max: float | None = None, gap_max: float | None = None, levels: int | None = None,
              gap_rel: float | None = None, census: int | None = None, jobs: int = 1,
              progress: Progress | None = None) -> LandscapeResult:
    """The local minima of ``spec`` by ``method``, ranked by risk, with gaps to the global minimum.

    ``milp_options`` go to `milpland.landscape.localmin_milp.find_local_minima` (epsilon, max_levels, ...);
    ``risk_max``, ``gap_max``, ``gap_rel``, ``levels`` (at most one) are the query: bnb lists the minima up to
    its threshold (default levels = 10), enumerate solves every cell and certifies those up to it (default:
    all);
    ``census`` (enumerate, bnb, auto): that many census starts (seeded by ``seed``) next to the listing;
    ``jobs``: bnb with a fixed threshold lists the sign classes in that many processes; enumerate solves
    the cells in that many threads.
    """
    if method not in METHODS:
        raise MilplandError(f"--method: unknown method {method!r}; use one of {', '.join(METHODS)}")
    if spec.network.depth != 1:
        raise MilplandError(f"network.hidden: landscape handles one hidden layer; {spec.name} has "
                            f"hidden = {list(spec.network.hidden)}")
    if spec.loss.kind == "logistic" and not spec.loss.decayed:  # minima may sit at infinity (DESIGN §4e)
        raise MilplandError(LOGISTIC_NEEDS_DECAY)
    fixed_threshold = any(v is not None for v in (risk_max, gap_max, gap_rel))
    max_cells = default_max_cells(spec, fixed_threshold=fixed_threshold) if max_cells is None else max_cells
    for flag, value in (("--max-cells", max_cells), ("--starts", starts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MilplandError(f"{flag}: must be a positive integer, got {value!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise MilplandError(f"--jobs: must be a positive integer (processes), got {jobs!r}")
    if census is not None and (isinstance(census, bool) or not isinstance(census, int) or census < 1):
        raise MilplandError(f"--census: must be a positive integer (number of starts), got {census!r}")
    if census is not None and method not in ("auto", "enumerate", "bnb"):
        raise MilplandError(f"--census: goes with --method bnb, enumerate or auto, not {method}"
                            + (" (use --starts N for the census alone)" if method == "sample" else ""))
    seed = spec.solve.seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MilplandError(f"--seed: must be a non-negative integer, got {seed!r}")
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    messages: list[str] = []
    requested = method
    if method == "auto" and not spec.loss.decayed:
        method, why = choose_method(spec, max_cells)
        messages.append(f"auto: {why}")
        say(f"auto: {why}")
    extra: dict = {}
    census_starts, census = census, None  # `census` holds the Census from here on
    asked = any(v is not None for v in (risk_max, gap_max, gap_rel, levels))
    if spec.loss.decayed:  # risk + weight decay (DESIGN §4d): only the enumeration of every cell honours it
        if method not in ("enumerate", "auto") or census_starts is not None:
            what = f"--method {requested}" if census_starts is None else "--census"
            raise MilplandError(f"loss.weight_decay: {what} cannot honour weight decay; use --method enumerate")
        if asked:
            raise MilplandError("loss.weight_decay: --levels, --gap-max, --gap-rel and --risk-max do not apply with "
                                "weight decay; drop them (the enumeration lists every local minimum)")
        from milpland.landscape.decay_minima import decay_minima

        method = "enumerate"
        out = decay_minima(spec, progress=say)
        minima, complete, counts, timings = out.minima, out.complete, out.counts, out.seconds
        messages += out.messages
        glob, source = out.global_result, "enumerate"
    elif method == "bnb":
        from milpland.landscape.bnb import DEFAULT_LEVELS, bnb_minima

        query = Query(risk_max=risk_max, gap_max=gap_max, gap_rel=gap_rel,
                      levels=levels if asked else DEFAULT_LEVELS)
        out = bnb_minima(spec, query, progress=say, jobs=jobs)
        minima, complete, counts, timings = out.minima, out.complete, out.counts, out.seconds
        messages += out.messages
        glob, source = out.global_result, "bnb"
        extra = dict(query=query.describe(), threshold=out.threshold, open_bound=out.open_bound)
    elif method == "enumerate":
        from milpland.landscape.enumeration import enumerate_minima

        query = Query(risk_max=risk_max, gap_max=gap_max, gap_rel=gap_rel, levels=levels) if asked else None
        out = enumerate_minima(spec, max_cells=max_cells, progress=say, threads=jobs, query=query,
                               time_limit=spec.solve.time_limit)
        minima, complete, counts, timings = out.minima, out.complete, out.counts, out.seconds
        open_bound = out.open_bound if out.stopped else float("inf") if out.complete else float("-inf")
        extra = dict(open_bound=open_bound)
        if query is not None:
            extra.update(query=query.describe(), threshold=out.threshold)
        messages += out.messages
        if out.box_limited_best < float("inf"):
            messages.append(f"{out.counts['box_limited']} cell optima touch the box (lowest "
                            f"{out.box_limited_best:.10g}): minima over the box only, not listed; "
                            "a larger box may move them")
        if out.complete or out.stopped:  # stopped: the best cell optimum so far, certified only if every cell was
            glob, source = global_from_enumeration(spec, out, time.perf_counter() - started), "enumerate"
        else:
            glob, source = _solve_global(spec, say), "solve_global"
    elif method == "sample":
        from milpland.landscape.census import run_census

        out = run_census(spec, starts=starts, seed=seed, progress=say)
        minima, complete, counts, timings = out.minima, False, out.counts, out.seconds
        census = out.census
        messages += out.messages
        glob, source = _solve_global(spec, say), "solve_global"
    else:
        from milpland.landscape.localmin_milp import find_local_minima

        out = find_local_minima(spec, time_limit=spec.solve.time_limit, progress=say, **(milp_options or {}))
        minima, complete = list(out.minima), bool(out.complete)
        counts = {k: v for k, v in out.to_json().items() if k not in ("minima", "instance", "method")}
        timings = {"search": float(out.seconds)}
        glob, source = _solve_global(spec, say), "solve_global"
    tol = spurious_tolerance(spec, glob.risk)
    band = None
    if census_starts is not None and method in ("enumerate", "bnb") and not interrupt.requested():
        minima, census, band, seconds = _census_next_to_listing(
            spec, minima, census_starts, seed, say, tol, method=method, complete=complete, extra=extra)
        counts, timings = dict(counts) | census_counts(band), dict(timings) | {"census": seconds}
        messages += [f"CONFLICT: census minimum at risk {c['risk']:.10g} (cell {c['cell']}) lies below the proven "
                     f"threshold {c['proven_below']:.10g} and is not listed" for c in band.conflicts]
    ranked = rank_minima(minima, glob.risk, tol)
    messages += consistency_notes(ranked, glob, tol, complete=complete and method in ("enumerate", "bnb"))
    return LandscapeResult(
        instance=spec.name, instance_hash=spec.instance_hash(), method=method, global_result=glob,
        global_source=source, minima=ranked, complete=complete, tolerance=tol,
        seconds=time.perf_counter() - started, counts=counts, timings=timings, message="; ".join(messages),
        requested=requested, census=census, census_band=band, **extra,
    )


def _census_next_to_listing(spec, minima, starts: int, seed: int, say: Progress, tol: float, *, method: str,
                            complete: bool, extra: dict):
    """Run the census and merge it into the listing's minima (`milpland.landscape.census_band`)."""
    from milpland.landscape.census import run_census
    from milpland.landscape.census_band import merge_census

    if method == "enumerate":
        threshold, open_bound = extra.get("threshold", float("inf")), float("inf")
        proven_below = threshold if complete else float("-inf")
    else:
        threshold, open_bound = extra["threshold"], extra["open_bound"]
        proven_below = threshold if complete else min(open_bound, threshold)
    say(f"census: {starts} starts next to the {method} listing ...")
    out = run_census(spec, starts=starts, seed=seed, progress=say)
    merged, census, band = merge_census(
        spec, minima, out.census, out.minima, listing=method, proven_below=proven_below, threshold=threshold,
        open_bound=open_bound, tol=tol)
    return merged, census, band, float(out.seconds["total"])


def census_counts(band) -> dict:
    """The census's numbers among the listing's counts."""
    return {"census_starts": band.starts, "census_minima": band.census_minima, "census_matched": band.matched,
            "census_above": band.above, "census_conflicts": len(band.conflicts)}


def default_max_cells(spec: InstanceSpec, *, fixed_threshold: bool = False) -> int:
    """About a minute of enumeration: more where the compiled cell kernels apply (DESIGN §5c), and more
    again when only the cells below a fixed threshold are certified."""
    from milpland.cells.cell_qp import kernel_applies

    if kernel_applies(spec.network.activation, spec.loss.kind):
        return DEFAULT_MAX_CELLS_THRESHOLD if fixed_threshold else DEFAULT_MAX_CELLS
    return DEFAULT_MAX_CELLS_CELLWISE


def choose_method(spec: InstanceSpec, max_cells: int) -> tuple[str, str]:
    """``auto``: enumerate up to ``max_cells`` cells, else the branch-and-bound listing where it
    applies (else enumerate, which then refuses with the count)."""
    from milpland.landscape.enumeration import count_cells, patterns_for_cells
    from milpland.search.pattern_bnb import applies

    act = spec.network.activation
    # the pattern listing stops once the patterns give more cells than max_cells
    patterns = unit_patterns(spec.X, act, limit=patterns_for_cells(max_cells, spec.width, act))
    cells = count_cells(patterns.shape[0], spec.width, act)
    if cells <= max_cells:
        return "enumerate", f"{cells} cells <= --max-cells {max_cells}: enumerate (complete)"
    reason = applies(spec)
    if reason:
        return "enumerate", f"more than {max_cells} cells and bnb does not apply ({reason})"
    return "bnb", f"more than {max_cells} cells: bnb listing"


def rank_minima(minima: list[LocalMinimum], global_risk: float, tol: float) -> list[LocalMinimum]:
    """Sorted by risk, with gap = risk - global risk and spurious = gap > tol."""
    out = []
    for m in sorted(minima, key=lambda m: m.risk):
        gap = float(m.risk - global_risk) if np.isfinite(global_risk) else float("nan")
        out.append(replace(m, gap=gap, spurious=bool(np.isfinite(gap) and gap > tol)))
    return out


def consistency_notes(minima: list[LocalMinimum], glob: SolveResult, tol: float, *, complete: bool) -> list[str]:
    """Disagreements between the minima and the global result that a user must see."""
    notes = []
    if minima and minima[0].risk < glob.risk - tol:
        notes.append(f"a certified local minimum ({minima[0].risk:.10g}) lies below the global result "
                     f"({glob.risk:.10g}): the global result is not the global minimum")
    if complete and glob.certified and not glob.box_active and minima and minima[0].gap > tol:
        notes.append("the complete list does not contain the global minimiser as a local minimum")
    if not glob.certified:
        notes.append("the global result is not certified (see global.message): "
                     "gaps are relative to the best known point")
    return notes


def _solve_global(spec: InstanceSpec, say: Progress) -> SolveResult:
    from milpland.search.solve import solve_global

    say("solving the global minimum ...")
    return solve_global(spec, progress=say)


def global_from_enumeration(spec: InstanceSpec, out, seconds: float) -> SolveResult:
    """The minimum over the box from an enumeration: the best cell optimum (upper bound, re-evaluated
    with numpy) and the least Lagrangian bound of all cells (lower bound; -inf while a cell is unsolved).
    Certified when the bounds meet and every cell has a bound: a complete enumeration, or one stopped
    in the certification (every cell solved)."""
    best = out.best()
    if best is None:
        if out.stopped == "interrupted":  # nothing to report: the command prints an empty interrupted result
            raise KeyboardInterrupt
        if out.stopped:
            raise MilplandError(f"enumerate: stopped ({out.stopped}) before any cell optimum was verified; "
                                "raise --time-limit")
        raise MilplandError("enumerate: no cell was solved to optimality")
    res, cell = out.store.result(best), out.store.cell(best)
    act = spec.network.activation
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params, limit_units = res.theta.to_original(act)
    verification = verify_point(spec, params, cell.pattern, res.risk, limit_units)
    upper = verification.risk_numpy
    lower = min(out.lowest_bound(), upper)
    closed = upper - lower <= max(spec.solve.rel_gap * abs(upper), 1e-12)
    bounded = out.complete or (out.all_solved and not np.isnan(out.store.lower).any())
    certified = bool(bounded and closed and not res.box_active and verification.ok)
    notes = [str(w.message) for w in caught]
    if res.box_active:
        notes.insert(0, "a box bound is active at the best cell optimum: minimum over the box, not a global minimum")
    return SolveResult(
        instance=spec.name, instance_hash=spec.instance_hash(), method="enumerate", loss=spec.loss.kind,
        reduction=spec.loss.reduction, architecture=spec.architecture(),
        status="optimal" if bounded and closed else out.stopped or "error", risk=upper, lower_bound=lower,
        box_weight=spec.box.weight, box_output=spec.box.output, box_active=bool(res.box_active),
        certified=certified, params=params, pattern=cell.pattern, signs=cell.signs,
        seconds=Seconds(build=0.0, solve=float(out.seconds.get("cells", 0.0)), total=float(seconds)),
        nodes=0, iterations=out.n_cells, solver_name="highs", solver_version=highspy.Highs().version(),
        options={"cells": out.n_cells, "unit_patterns": int(out.counts.get("unit_patterns", 0))},
        seed=spec.solve.seed, verification=verification, message="; ".join(notes),
    )


def _finite_or_none(value: float):
    return float(value) if value is not None and np.isfinite(value) else None


def _plain(obj):
    """numpy scalars and non-finite floats -> JSON-safe values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj
