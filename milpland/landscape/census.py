"""The census: local minima reached from many random starts, with basin statistics (DESIGN §5d).

**What happens to one start.**

1. Gradient descent from the start (`milpland.landscape.sampling`; all starts in one compiled call).
2. The closed cell of the end point (its activation pattern and output signs; ties go to the lower
   piece) is solved exactly and its optimum certified by `Certifier` (interior or boundary
   certificate, DESIGN §5).
   - *local minimum*: the start ends in that minimum (minima are told apart by their fitted values).
   - *not a local minimum* (a neighbouring cell goes lower: the descent was cut short, stalled at a
     kink, or sits on a saddle): a **jump**: descend again from the cell's optimum (in balanced
     ordinary weights, |v_j| = ||(w_j, b_j)|| for homogeneous activations) and go back to 2, at most
     ``max_jumps`` times.  The risk never increases along the way while the end points stay in the
     box (the end point lies in its closed cell, whose optimum over the box is then no higher).
   - *box-limited*, *not attained*, *undetermined*: the start ends there; counted, not a minimum.
3. Starts still at a cell that is not a local minimum after ``max_jumps`` jumps (``jump_limit``),
   or whose descent from a cell optimum came back to a cell already on its path (``stuck``: the
   gradient, taken on one side of each kink, finds no way down), are counted.

Steps 2-3 depend only on the cell, so cells are deduplicated by their permutation-invariant key
before anything is solved, and the descent from a cell optimum runs once per cell.

**Proofs and estimates.**  Every listed minimum is proven: a certified local minimum of the risk
over the box (the certificate does not depend on how the census reached the cell).  Everything
about frequencies is an estimate, for *this* start distribution and *this* procedure:

- basin fraction of a minimum = k / N, k the starts that ended in it, N all starts (those that
  ended in no minimum included), with the Wilson score interval (`wilson_interval`) at 95 %;
- the unseen basin mass: Good-Turing's estimate N1 / N (`good_turing_unseen`), N1 the number of
  minima reached by exactly one start, of the probability that one more start ends in a local
  minimum not in the list.  It is an estimate, not a bound: nothing excludes minima with tiny basins.

The list is never complete.

Cell optima with a zero unit (all its scaled weights 0) have every unit pattern of both signs as
neighbours; the certifier then needs the unit patterns of the data.  They are listed once, when the
first such optimum appears (up front for d = 1 with at most two breakpoints: monotone patterns,
no LPs), by `two_piece_patterns` when it applies, else by `milpland.cells.arrangement.unit_patterns`.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

import milpland.interrupt as interrupt
from milpland.cells.arrangement import unit_patterns
from milpland.cells.certificates import Certifier, Verdict, match_minimum
from milpland.cells.minima import LocalMinimum
from milpland.cells.problem import Cell, CellResult
from milpland.errors import MilplandError
from milpland.instance.spec import InstanceSpec
from milpland.landscape.sampling import (
    GTOL,
    MAX_ITER,
    Descent,
    descend,
    descend_from,
    row_of,
)

MAX_JUMPS = 10
CONFIDENCE = 0.95
GENERAL_POSITION_TOL = 1e-9  # |cos| between a lifted sample and a hyperplane normal counted as 0
MAX_CANDIDATES = 2_000_000  # two_piece_patterns gives up (returns None) above this many candidates
MAX_UP_FRONT = 50_000  # d = 1: unit patterns listed before the first cell (monotone, no LPs)
ZERO_UNIT_RTOL = 1e-7  # a unit of a cell optimum counts as zero below this (relative to max(1, |theta~|))
START_DISTRIBUTION = "W1 ~ N(0, 1/d), b1 ~ N(0, 1), v ~ N(0, 1/m), c = 0, drawn by numpy's default_rng(seed)"
# how a start ended: in a certified minimum; at a cell optimum that is not a local minimum after
# max_jumps jumps, or whose descent led back to a cell already on its path; or at a cell optimum
# that is box-limited, not attained, or undetermined (Certifier verdicts)
ENDS = ("minimum", "jump_limit", "stuck", "box_limited", "not_attained", "undetermined")
Progress = Callable[[str], None]


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------


def normal_quantile(confidence: float) -> float:
    """z with P(|Z| <= z) = confidence for a standard normal Z."""
    from scipy.special import ndtri

    return float(ndtri(0.5 + confidence / 2.0))


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n:

        (p + z^2/(2n) -+ z sqrt(p (1 - p)/n + z^2/(4 n^2))) / (1 + z^2/n),   p = k / n.

    Unlike p -+ z sqrt(p(1 - p)/n) it stays inside [0, 1] and is not empty at k = 0 or k = n."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval: need 0 <= k <= n and n > 0, got k = {k}, n = {n}")
    z = normal_quantile(confidence)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # at k = 0 (k = n) the lower (upper) end is exactly 0 (1); the formula leaves round-off there
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def good_turing_unseen(counts, total: int) -> float:
    """Good-Turing estimate of the unseen mass: (number of categories seen exactly once) / total.
    ``counts``: how many of the ``total`` draws fell in each category seen (draws that fell in no
    category, e.g. starts that ended in no minimum, count in ``total`` only)."""
    counts = np.asarray(counts, dtype=np.int64)
    if total <= 0 or counts.sum() > total or (counts < 1).any():
        raise ValueError(f"good_turing_unseen: need positive counts summing to at most total = {total}")
    return float(np.sum(counts == 1)) / total


@dataclass(frozen=True)
class Basin:
    """How many starts ended in one minimum, and the share of all starts with its interval."""

    count: int
    fraction: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True, eq=False)
class Census:
    """The statistics of one census (the proofs are the minima themselves)."""

    starts: int
    seed: int
    confidence: float
    basins: dict  # LocalMinimum.cell -> Basin
    ends: dict  # ENDS -> number of starts
    descent: dict  # status of the first descent -> number of starts
    jumps: dict  # number of jumps -> number of starts
    singletons: int  # minima reached by exactly one start (N1)
    unseen_mass: float  # Good-Turing N1 / N
    settings: dict  # max_iter, gtol, max_jumps

    @property
    def proofs(self) -> list[str]:
        n = len(self.basins)
        return [(f"each of the {n} listed minima is a certified local minimum of the risk over the box "
                 "(interior or boundary certificate of its cell; its point re-checked with a numpy forward pass)")]

    @property
    def estimates(self) -> list[str]:
        pct = f"{100 * self.confidence:g} %"
        return [
            (f"basin fractions: the share of the {self.starts} starts that ended in each minimum, with {pct} "
             "Wilson score intervals; they describe this start distribution and this descent"),
            (f"unseen basin mass {self.unseen_mass:.4g}: Good-Turing estimate ({self.singletons} of {self.starts} "
             "starts ended in a minimum no other start reached) of the probability that one more start ends in "
             "a local minimum that is not listed"),
            "not proven: that the list is complete (minima with small basins can be missed in any number)",
        ]

    def to_json(self) -> dict:
        return {
            "starts": self.starts, "seed": self.seed, "confidence": self.confidence,
            "start_distribution": START_DISTRIBUTION,
            "ended_in_minimum": self.ends.get("minimum", 0), "distinct_minima": len(self.basins),
            "singletons": self.singletons,
            "unseen_mass": {"estimate": self.unseen_mass, "singletons": self.singletons, "starts": self.starts,
                            "meaning": "Good-Turing estimate of the probability that one more start ends in a "
                                       "local minimum not in the list (an estimate, not a bound)"},
            "ends": dict(self.ends), "descent": dict(self.descent),
            "jumps": {str(k): v for k, v in sorted(self.jumps.items())},
            "settings": dict(self.settings),
            "proofs": self.proofs, "estimates": self.estimates,
        }


def basin_statistics(counts: dict, starts: int, confidence: float = CONFIDENCE) -> dict:
    """cell -> Basin for the starts' counts per minimum."""
    out = {}
    for cell, k in counts.items():
        lo, hi = wilson_interval(int(k), starts, confidence)
        out[cell] = Basin(count=int(k), fraction=k / starts, ci_low=lo, ci_high=hi)
    return out


# ----------------------------------------------------------------------------------------------
# Unit patterns in general position
# ----------------------------------------------------------------------------------------------


def cover_count(n: int, d: int) -> int:
    """Cover (1965): n points in general position in R^d have 2 sum_{k<=d} C(n-1, k) affine dichotomies."""
    return 2 * sum(math.comb(n - 1, k) for k in range(d + 1))


def two_piece_patterns(X: np.ndarray, act) -> np.ndarray | None:
    """Every strictly realisable pattern of one unit with a two-piece activation, or None when the
    data are not in general position (or too many).  Same rows as `unit_patterns`, sorted.

    A two-piece pattern is the sign vector of u . (x_i, 1) (piece 1 where positive), the regions of
    the central arrangement of the hyperplanes (x_i, 1)^perp in R^(d+1).  In general position (no
    d + 1 lifted samples linearly dependent) every region is a pointed cone, one of its extreme rays
    lies on exactly d hyperplanes -- the normal u_T of d samples T, either orientation -- and next
    to that ray the samples outside T keep sign(u_T . (x_i, 1)) while those in T take any of the
    2^d sign choices (their lifted vectors are independent).  So these candidates are every region,
    each one realisable; the count is checked against `cover_count`.
    """
    X = np.asarray(X, dtype=float)
    n, d = X.shape
    if act.n_pieces != 2 or n < d + 1 or math.comb(n, d) * 2 ** (d + 1) > MAX_CANDIDATES:
        return None
    lifted = np.hstack([X, np.ones((n, 1))])
    lifted /= np.linalg.norm(lifted, axis=1, keepdims=True)
    subsets = np.array(list(itertools.combinations(range(n), d)), dtype=np.int64)  # (C, d)
    _, sv, Vt = np.linalg.svd(lifted[subsets])
    if sv[:, -1].min() <= GENERAL_POSITION_TOL:
        return None  # d samples with dependent lifted vectors (a repeated input)
    normals = Vt[:, -1, :]  # (C, d + 1): orthogonal to the d lifted samples of T
    cosines = normals @ lifted.T  # (C, n)
    rows = np.arange(len(subsets))[:, None]
    outside = np.ones(cosines.shape, dtype=bool)
    outside[rows, subsets] = False
    if np.abs(cosines[outside]).min() <= GENERAL_POSITION_TOL:
        return None  # d + 1 lifted samples on one hyperplane: not in general position
    choices = np.array(list(itertools.product((False, True), repeat=d)))  # (2^d, d)
    candidates = np.repeat((cosines > 0)[:, None, :], len(choices), axis=1)  # (C, 2^d, n)
    candidates[rows[:, :, None], np.arange(len(choices))[None, :, None], subsets[:, None, :]] = choices[None]
    flat = candidates.reshape(-1, n)
    patterns = np.unique(np.vstack([flat, ~flat]), axis=0).astype(np.int64)  # -u_T: every sign flipped
    return patterns if len(patterns) == cover_count(n, d) else None


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------


@dataclass
class CensusRun:
    """What `run_census` found; `landscape` turns it into a LandscapeResult."""

    minima: list  # LocalMinimum, found_by "sample", basin_fraction set, sorted by risk
    census: Census
    descent: Descent  # the first descent from the starts
    counts: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


class _CellBook:
    """The cells the census met: each solved and certified once, by key."""

    def __init__(self, spec: InstanceSpec, say: Progress):
        self.spec, self.act, self.say = spec, spec.network.activation, say
        self.patterns_seconds = 0.0
        patterns = None
        if _monotone_patterns_are_few(spec):
            t0 = time.perf_counter()
            patterns = unit_patterns(spec.X, self.act)
            self.patterns_seconds = time.perf_counter() - t0
        self.certifier = Certifier(spec, unit_patterns=patterns)
        self.has_patterns = patterns is not None
        self.cells: dict[tuple, Cell] = {}
        self.solved: dict[tuple, tuple[Cell, CellResult]] = {}
        self.verdicts: dict[tuple, Verdict] = {}
        self.seconds = 0.0
        self.earlier_solves = 0  # cell solves of a certifier replaced by `_add_patterns`

    def keys_of(self, theta: np.ndarray) -> list[tuple]:
        """The cell key of every theta row (remembering one Cell per key)."""
        m, d = self.spec.width, self.spec.d
        W = theta[:, : m * d].reshape(-1, m, d)
        Z = np.einsum("nd,smd->snm", self.spec.X, W) + theta[:, None, m * d: m * (d + 1)]
        pieces = self.act.piece(Z)
        signs = np.where(theta[:, m * (d + 1): m * (d + 2)] < 0, -1.0, 1.0)
        keys = []
        for s in range(theta.shape[0]):
            cell = Cell(pieces[s], signs[s])
            key = self.certifier.cache_key(cell)
            self.cells.setdefault(key, cell)
            keys.append(key)
        return keys

    def certify(self, keys) -> None:
        t0 = time.perf_counter()
        for key in keys:
            if key in self.verdicts:
                continue
            cell, result = self.certifier.cell_result(self.cells[key])
            if not self.has_patterns and _has_zero_unit(result, self.act):
                self._add_patterns()
            self.solved[key] = (cell, result)
            self.verdicts[key] = self.certifier.certify(cell, result, found_by="sample")
        self.seconds += time.perf_counter() - t0

    def _add_patterns(self) -> None:
        """A certifier that knows every unit pattern: a zero unit's neighbours are then a filter."""
        t0 = time.perf_counter()
        self.say("a cell optimum has a zero unit: listing the unit patterns of the data ...")
        patterns = two_piece_patterns(self.spec.X, self.act)
        if patterns is None:
            patterns = unit_patterns(self.spec.X, self.act)
        old = self.certifier
        self.earlier_solves += old.cell_solves
        self.certifier = Certifier(self.spec, solver=old.solver, unit_patterns=patterns)
        for cell, result in self.solved.values():
            self.certifier.remember(cell, result)
        self.has_patterns = True
        self.patterns_seconds += time.perf_counter() - t0
        self.say(f"{patterns.shape[0]} unit patterns ({self.patterns_seconds:.1f} s)")

    def optimum_row(self, key: tuple) -> np.ndarray:
        """The cell optimum in balanced ordinary weights, as a theta row."""
        _, result = self.solved[key]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # limit units: realised with a tiny rho, as certify does
            params, _ = result.theta.to_original(self.act)
        return row_of(params)

    @property
    def cell_solves(self) -> int:
        return self.earlier_solves + self.certifier.cell_solves


def _monotone_patterns_are_few(spec: InstanceSpec) -> bool:
    """d = 1 with at most two breakpoints: the unit patterns are the monotone assignments of pieces
    along the sorted inputs, listed without LPs; fewer than MAX_UP_FRONT of them are listed up front."""
    act = spec.network.activation
    if spec.d != 1 or len(act.breakpoints) > 2:
        return False
    distinct = len(np.unique(spec.X[:, 0]))
    return 2 * math.comb(distinct + act.n_pieces - 1, act.n_pieces - 1) <= MAX_UP_FRONT


def _has_zero_unit(result: CellResult, act) -> bool:
    """Whether some unit of the solved optimum has all its scaled weights (near) zero.  Only decides
    when the unit patterns are listed; the certificate itself never depends on it."""
    theta = result.theta
    if theta is None:
        return False
    mags = np.maximum(np.max(np.abs(theta.U), axis=1), np.abs(theta.a))
    if not act.homogeneous:
        mags = np.maximum(mags, np.abs(theta.rho))
    scale = max(1.0, float(np.max(np.abs(theta.U), initial=0.0)), float(np.max(np.abs(theta.a), initial=0.0)))
    return bool(np.any(mags <= ZERO_UNIT_RTOL * scale))


def run_census(spec: InstanceSpec, *, starts: int, seed: int, max_iter: int = MAX_ITER, gtol: float = GTOL,
               max_jumps: int = MAX_JUMPS, confidence: float = CONFIDENCE,
               progress: Progress | None = None) -> CensusRun:
    """Descend from ``starts`` seeded random points, certify every end cell (jumping on from cell
    optima that are not local minima), and count the basins (module docstring)."""
    if spec.network.depth != 1:
        raise MilplandError(f"network.hidden: the census handles one hidden layer, got {list(spec.network.hidden)}")
    for flag, value, least in (("--starts", starts, 1), ("max_iter", max_iter, 0), ("max_jumps", max_jumps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise MilplandError(f"{flag}: must be an integer >= {least}, got {value!r}")
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    first = descend(spec, starts=starts, seed=seed, max_iter=max_iter, gtol=gtol)
    if len(first.risk) < starts:
        # Ctrl-C during the descent: nothing is certified yet, and certifying the end cells of the
        # starts that ran takes seconds to minutes (measured: 609 cells, 10 s), longer than a user
        # waits after Ctrl-C, so the census stops here with nothing to report
        raise KeyboardInterrupt
    statuses = ", ".join(f"{v} {k}" for k, v in first.status_counts().items())
    say(f"{starts} descents in {first.seconds:.1f} s: {statuses}")
    book = _CellBook(spec, say)
    start_keys = book.keys_of(first.theta)
    successor, jump_seconds = _walk(spec, book, start_keys, max_iter=max_iter, gtol=gtol, max_jumps=max_jumps, say=say)
    ends, jumps, reached = _resolve(book, start_keys, successor, max_jumps)
    minima, counts_by_cell = _distinct_minima(spec, book, reached)
    basins = basin_statistics(counts_by_cell, starts, confidence)
    minima = [replace(m, basin_fraction=basins[m.cell].fraction) for m in minima]
    singletons = sum(1 for b in basins.values() if b.count == 1)
    census = Census(
        starts=starts, seed=seed, confidence=confidence, basins=basins, ends=ends, descent=first.status_counts(),
        jumps=jumps, singletons=singletons, unseen_mass=good_turing_unseen([b.count for b in basins.values()], starts),
        settings={"max_iter": max_iter, "gtol": gtol, "max_jumps": max_jumps},
    )
    counts = {"starts": starts, **{f"descent_{k}": v for k, v in first.status_counts().items()},
              "end_cells": len(set(start_keys)), "cells_certified": len(book.verdicts),
              "cell_jumps": len(successor), **{f"ended_{k}": v for k, v in ends.items()},
              "distinct_minima": len(minima), "singletons": singletons, "cell_solves": book.cell_solves}
    messages = [f"cell {v.cell}: {v.reason}" for v in book.verdicts.values() if v.status == "undetermined"][:5]
    if interrupt.requested():
        messages.insert(0, f"interrupted (Ctrl-C): the census of the {starts} starts, without the jumps not yet made")
    seconds = {"jit": first.jit_seconds, "descent": first.seconds, "jump_descents": jump_seconds,
               "certificates": book.seconds, "unit_patterns": book.patterns_seconds,
               "total": time.perf_counter() - t0}
    say(f"{len(book.verdicts)} cells certified, {len(minima)} distinct local minima, "
        f"unseen mass {census.unseen_mass:.3g}; {seconds['total']:.1f} s")
    return CensusRun(minima=sorted(minima, key=lambda m: m.risk), census=census, descent=first, counts=counts,
                     seconds=seconds, messages=messages)


def _walk(spec, book: _CellBook, start_keys, *, max_iter, gtol, max_jumps, say) -> tuple[dict, float]:
    """Certify the end cells; from every cell optimum that is not a local minimum descend once more,
    up to ``max_jumps`` rounds.  Returns (cell -> end cell of the descent from its optimum, seconds)."""
    successor: dict[tuple, tuple] = {}
    frontier = list(dict.fromkeys(start_keys))
    seconds = 0.0
    for jump in range(max_jumps + 1):
        book.certify(frontier)
        todo = [k for k in frontier if book.verdicts[k].status == "not_local_minimum" and k not in successor]
        say(f"jump {jump}: {len(frontier)} new cells certified ({book.seconds:.1f} s so far), "
            f"{len(todo)} not local minima")
        if not todo or jump == max_jumps or interrupt.requested():  # Ctrl-C: no further jumps
            break
        t0 = time.perf_counter()
        out = descend_from(spec, np.array([book.optimum_row(k) for k in todo]), max_iter=max_iter, gtol=gtol)
        seconds += time.perf_counter() - t0
        ends = book.keys_of(out.theta)
        successor.update(zip(todo, ends))
        frontier = [k for k in dict.fromkeys(ends) if k not in book.verdicts]
    return successor, seconds


def _resolve(book: _CellBook, start_keys, successor, max_jumps: int) -> tuple[dict, dict, list]:
    """Follow every start's cells to its last one, at most ``max_jumps`` jumps (a path can join
    another one certified in an earlier round, so it can be longer than the rounds of `_walk`):
    (ends, jumps histogram, per start the last cell's key when it is a local minimum, else None)."""
    ends = dict.fromkeys(ENDS, 0)
    jumps: dict[int, int] = {}
    reached = []
    last: dict[tuple, tuple[tuple, int]] = {}  # first cell -> (last cell, jumps): starts share their paths
    for key in start_keys:
        if key not in last:
            path, k = {key}, key
            while (book.verdicts[k].status == "not_local_minimum" and k in successor
                   and successor[k] not in path and len(path) <= max_jumps):
                k = successor[k]
                path.add(k)
            last[key] = (k, len(path) - 1)
        k, n_jumps = last[key]
        status = book.verdicts[k].status
        end = status
        if status == "local_minimum":
            end = "minimum"
        elif status == "not_local_minimum":
            end = "stuck" if k in successor and n_jumps < max_jumps else "jump_limit"
        ends[end] += 1
        jumps[n_jumps] = jumps.get(n_jumps, 0) + 1
        reached.append(k if status == "local_minimum" else None)
    return ends, jumps, reached


def _distinct_minima(spec, book: _CellBook, reached) -> tuple[list[LocalMinimum], dict]:
    """The distinct minima (by fitted values, an interior representative preferred) and the number
    of starts that ended in each, keyed by the representative's cell."""
    per_key: dict[tuple, int] = {}
    for k in reached:
        if k is not None:
            per_key[k] = per_key.get(k, 0) + 1
    minima, counts = [], []
    fits = np.zeros((0, spec.n))
    for k, count in per_key.items():
        m = book.verdicts[k].minimum
        at = match_minimum(m.fitted, fits, spec)
        if at < 0:
            minima.append(m)
            counts.append(count)
            fits = np.vstack([fits, m.fitted[None, :]])
        else:
            counts[at] += count
            if m.certificate == "interior" and minima[at].certificate != "interior":
                minima[at] = m
    return minima, {m.cell: c for m, c in zip(minima, counts)}
