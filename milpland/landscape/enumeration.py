"""Every cell of a one-hidden-layer network, solved and certified (DESIGN §2, §3, §5).

Unit patterns (which pieces one unit can give the samples) are listed by
`milpland.cells.arrangement`.

**Cells** are multisets of unit patterns per sign class: the units of one sign are
interchangeable, so with P unit patterns and p positive units a class has
C(P + p - 1, p) C(P + m - p - 1, m - p) cells; there are m + 1 classes, or one for odd
activations (a negative unit is a positive unit with negated weights).  `count_cells` gives
the number first; `enumerate_minima` refuses with the count when it exceeds ``max_cells``.

**The run.**  Every cell is solved (`CellSolver.solve_many`, the hot loop), then the cells
are certified in order of increasing optimum with `Certifier`, whose neighbour lookups are
answered from the solved cells.  For the squared loss the fitted vector of a cell optimum is
unique, so a cell whose optimum fits the same values as a minimum already certified adds
nothing and is skipped.  The best cell optimum is the minimum over the box.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from milpland.cells.arrangement import Realizer, unit_patterns
from milpland.cells.certificates import Certifier, match_minimum
from milpland.cells.problem import Cell, CellResult
from milpland.cells.scaled import sign_class
from milpland.errors import MilplandError
from milpland.instance.activations import Activation
from milpland.instance.spec import InstanceSpec

Progress = Callable[[str], None]


# ----------------------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------------------


def sign_classes(act: Activation, width: int) -> list[int]:
    """Numbers of positive units, all-positive first; odd activations need only that one."""
    return [width] if act.odd else list(range(width, -1, -1))


def count_cells(n_patterns: int, width: int, act: Activation) -> int:
    """Multisets of unit patterns per sign class: sum_p C(P + p - 1, p) C(P + m - p - 1, m - p)."""
    P = int(n_patterns)
    return sum(math.comb(P + p - 1, p) * math.comb(P + width - p - 1, width - p)
               for p in sign_classes(act, width))


def patterns_for_cells(max_cells: int, width: int, act: Activation) -> int:
    """The fewest unit patterns whose cells (`count_cells`, increasing in P) exceed max_cells."""
    P = 1
    while count_cells(P, width, act) <= max_cells:
        P *= 2
    lo, hi = P // 2, P  # count(lo) <= max_cells < count(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count_cells(mid, width, act) <= max_cells else (lo, mid)
    return hi


def generate_cells(patterns: np.ndarray, width: int, act: Activation):
    """Every cell (one per multiset of unit patterns and sign class), canonical unit order."""
    P = patterns.shape[0]
    for n_pos in sign_classes(act, width):
        signs = sign_class(n_pos, width)
        for pos in itertools.combinations_with_replacement(range(P), n_pos):
            for neg in itertools.combinations_with_replacement(range(P), width - n_pos):
                yield Cell(patterns[list(pos) + list(neg)].T, signs).canonical()


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


# ----------------------------------------------------------------------------------------------
# The enumeration run
# ----------------------------------------------------------------------------------------------


@dataclass
class Enumeration:
    """What `enumerate_minima` found; `landscape` turns it into a LandscapeResult."""

    minima: list  # LocalMinimum, found_by "enumerate", ranked by risk, gap not yet set
    cells: list[Cell]
    results: list[CellResult]
    complete: bool  # every cell solved and verified, every certificate decided
    counts: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    verified: list[bool] = field(default_factory=list)  # per cell: usable optimum (Certifier.verified)
    box_limited_best: float = float("inf")  # lowest optimum among box-limited cells
    messages: list[str] = field(default_factory=list)


def enumerate_minima(spec: InstanceSpec, *, max_cells: int, progress: Progress | None = None,
                     chunk: int = 500) -> Enumeration:
    """Solve and certify every cell; refuse (MilplandError with the count) beyond ``max_cells``."""

    _check_spec(spec)
    say = progress or (lambda _msg: None)
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
    t_patterns = time.perf_counter() - t0
    say(f"{P} unit patterns, {total} cells")
    certifier = Certifier(spec, unit_patterns=patterns)
    cells = list(generate_cells(patterns, spec.width, act))
    results: list[CellResult] = []
    t1 = time.perf_counter()
    for start in range(0, len(cells), chunk):
        results.extend(certifier.solver.solve_many(cells[start:start + chunk]))
        say(f"solved {len(results)}/{len(cells)} cells ({time.perf_counter() - t1:.1f} s)")
    t_cells = time.perf_counter() - t1
    for cell, res in zip(cells, results):
        certifier.remember(cell, res)

    t2 = time.perf_counter()
    counts = dict(unit_patterns=P, cells=len(cells), cell_errors=0, cells_verified_by_absolute_gap=0,
                  box_limited=0, not_local=0, not_attained=0, undetermined=0, certified_cells=0,
                  skipped_same_fit=0)
    minima = []
    fits = np.zeros((0, spec.n))
    box_best = float("inf")
    messages = []
    order = sorted(range(len(cells)), key=lambda k: results[k].risk)
    for k in order:
        res = results[k]
        if not certifier.verified(res):
            counts["cell_errors"] += 1
            continue
        if res.status != "optimal":
            counts["cells_verified_by_absolute_gap"] += 1
        # squared loss: a cell optimum's fitted values are unique, and the certified point has
        # exactly them, so a cell fitting the values of an interior minimum adds nothing (a boundary
        # representative is re-examined: another cell may certify the same minimum as interior)
        known = match_minimum(res.fitted, fits, spec) if spec.loss.kind == "squared" else -1
        if known >= 0 and minima[known].certificate == "interior":
            counts["skipped_same_fit"] += 1
            continue
        verdict = certifier.certify(cells[k], res, found_by="enumerate")
        if verdict.status == "local_minimum":
            counts["certified_cells"] += 1
            m = verdict.minimum
            at = match_minimum(m.fitted, fits, spec)
            if at < 0:
                minima.append(m)
                fits = np.vstack([fits, m.fitted[None, :]])
            elif m.certificate == "interior" and minima[at].certificate != "interior":
                minima[at] = m
        elif verdict.status == "box_limited":
            counts["box_limited"] += 1
            box_best = min(box_best, res.risk)
        elif verdict.status == "not_local_minimum":
            counts["not_local"] += 1
        elif verdict.status == "not_attained":
            counts["not_attained"] += 1
        else:
            counts["undetermined"] += 1
            if len(messages) < 5:
                messages.append(f"cell {cells[k].key()}: {verdict.reason}")
    t_cert = time.perf_counter() - t2
    counts["distinct_minima"] = len(minima)
    counts["neighbour_cell_solves"] = certifier.cell_solves
    counts["certificate_lps"] = certifier.lp_solves
    counts["pattern_lps"] = realizer.lp_solves
    complete = counts["cell_errors"] == 0 and counts["undetermined"] == 0
    say(f"{len(minima)} distinct local minima; certification {t_cert:.1f} s")
    return Enumeration(
        minima=sorted(minima, key=lambda m: m.risk), cells=cells, results=results, complete=complete,
        verified=[certifier.verified(r) for r in results],
        counts=counts,
        seconds={"patterns": t_patterns, "cells": t_cells, "certificates": t_cert,
                 "cells_per_second": len(cells) / t_cells if t_cells > 0 else float("inf")},
        box_limited_best=box_best, messages=messages,
    )
