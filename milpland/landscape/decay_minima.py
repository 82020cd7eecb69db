"""Every local minimum of risk + weight decay, by solving every cell (DESIGN §4d, §5).

Every cell's SOCP is solved (`milpland.search.decay_solve.solve_every_cell`); its optimum x_C (scaled
weights) is a local minimum of the scaled objective exactly when no closed cell D containing x_C has
a point below it: the cells containing x_C cover a neighbourhood of it and the objective is convex
on each.  D contains x_C when D's units can be matched to x_C's units with the same sign and a piece
containing g_ij on every sample (a tied g_ij = 0 fits either piece; a zero unit fits any pattern and
either sign).  The test, with tol the certificate tolerance:

    F(x_C) <= lower bound of every such D + tol   -> local minimum (interior when x_C has no tie and
                                                     no zero unit: then D = C only)
    F(x_C) >  value of some such D + tol           -> not a local minimum (descent into D)
    otherwise                                      -> undetermined (counted, not listed)

A local minimum of the scaled objective is one of the ordinary objective at its balanced weights
(DESIGN §4d).  Every local minimum has F <= F(theta = 0) (theta = 0 is in every closed cell), the
region of every cell bound.  Minima with the same fitted values and objective are listed once.
"""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from milpland.cells.decay import balanced_params
from milpland.cells.minima import LocalMinimum
from milpland.cells.problem import Cell
from milpland.instance.spec import InstanceSpec
from milpland.search.decay_solve import DecayCells, result_from_cells, solve_every_cell
from milpland.search.result import SolveResult

Progress = Callable[[str], None]
TIE_RTOL = 1e-7  # |g_ij| below this (relative to max(1, max|g|)) fits either piece
MIN_RTOL = 1e-8  # certificate tolerance on the objective, relative to max(F, the objective at theta = 0 * 1e-3)
FIT_RTOL = 1e-7  # fitted values this close (relative) are the same minimum


@dataclass(frozen=True, eq=False)
class DecayListing:
    minima: list[LocalMinimum]
    complete: bool
    counts: dict
    seconds: dict
    global_result: SolveResult
    messages: list[str] = field(default_factory=list)


def decay_minima(spec: InstanceSpec, *, progress: Progress | None = None) -> DecayListing:
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    out = solve_every_cell(spec, deadline=started + spec.solve.time_limit, progress=say)
    glob = result_from_cells(spec, out, started)
    solved = time.perf_counter() - started
    floor = 1e-3 * out.solver.zero_objective
    minima: list[LocalMinimum] = []
    undetermined = not_minima = same = 0
    allowed = [_allowed(spec, out, k) for k in range(len(out.cells))]
    for k in np.argsort([r.risk if r.theta is not None else np.inf for r in out.results]):
        res = out.results[k]
        if res.theta is None:
            continue
        tol = MIN_RTOL * max(res.risk, floor)
        boundary = allowed[k][3]  # an interior optimum lies in its own closed cell only
        holders = [d for d in range(len(out.cells)) if d != k and _contains(allowed[k], out.cells[d])] \
            if boundary else []
        if any(out.results[d].theta is not None and out.results[d].risk < res.risk - tol for d in holders):
            not_minima += 1
            continue
        if not all(out.results[d].lower_bound >= res.risk - tol for d in holders) \
                or res.lower_bound < res.risk - tol:
            undetermined += 1
            continue
        minimum = _minimum(spec, out, k, "boundary" if boundary else "interior")
        if any(_same(minimum, other) for other in minima):
            same += 1  # e.g. the optimum with zero units, which lies in many cells
        else:
            minima.append(minimum)
    counts = {"cells": out.total, "solved": len(out.results), "local_minima": len(minima),
              "not_local_minima": not_minima, "undetermined": undetermined, "same_minimum": same}
    messages = [glob.message, "each cell's optimum is tested at the point the SOCP returns (an interior-point method: "
                "the relative interior of the cell's optimal set when that is not a single point, DESIGN §4d)"]
    if undetermined:
        messages.append(f"{undetermined} cell optima undetermined (bounds within the tolerance): not listed")
    return DecayListing(minima=minima, complete=out.complete and undetermined == 0, counts=counts,
                        seconds={"cells": solved, "certify": time.perf_counter() - started - solved},
                        global_result=glob, messages=messages)


def _allowed(spec: InstanceSpec, out: DecayCells, k: int):
    """(signs, per unit the pieces allowed on each sample (n, m, 2) bool, zero units, on a boundary) of x_k."""
    res, cell = out.results[k], out.cells[k]
    if res.theta is None:
        return cell.signs, None, (), True
    G = res.theta.scaled_pre_activations(spec.X)
    tie = np.abs(G) <= TIE_RTOL * max(1.0, float(np.max(np.abs(G), initial=0.0)))
    fits = np.stack([(G <= 0) | tie, (G >= 0) | tie], axis=2)  # piece 0: g <= 0, piece 1: g >= 0
    norms = out.solver.penalty.group_norms(res.theta.U, res.theta.a)
    zero = tuple(int(j) for j in np.flatnonzero(norms <= 1e-9 * max(1.0, float(norms.max(initial=0.0)))))
    # own pattern too (a solver point a hair across a row still belongs to its cell)
    fits[np.arange(cell.n)[:, None], np.arange(cell.width)[None, :], cell.pattern] = True
    live = np.setdiff1d(np.arange(cell.width), zero)
    return cell.signs, fits, zero, bool(zero) or bool(tie[:, live].any())


def _contains(allowed, other: Cell) -> bool:
    """Some matching of other's units to x's units: same sign and allowed pieces, or an x unit that is zero."""
    signs, fits, zero, _boundary = allowed
    if fits is None:
        return False
    m = len(signs)
    for perm in itertools.permutations(range(m)):  # other's unit q <- x's unit perm[q]
        ok = True
        for q, j in enumerate(perm):
            if j in zero:
                continue
            if other.signs[q] != signs[j] or not np.all(fits[np.arange(other.n), j, other.pattern[:, q]]):
                ok = False
                break
        if ok:
            return True
    return False


def _minimum(spec: InstanceSpec, out: DecayCells, k: int, certificate: str) -> LocalMinimum:
    res, cell = out.results[k], out.cells[k]
    act = spec.network.activation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # limit units are reported by the global result
        params, _ = balanced_params(res.theta, out.solver.penalty, act)
    G = res.theta.scaled_pre_activations(spec.X)
    live = out.solver.penalty.group_norms(res.theta.U, res.theta.a) > 0
    margin = float(np.min(np.abs(G[:, live]), initial=np.inf)) if certificate == "interior" else 0.0
    return LocalMinimum(instance=spec.name, cell=cell.key(), risk=float(res.risk), certificate=certificate,
                        margin=margin if np.isfinite(margin) else 0.0, valley_dim=-1, params=params,
                        fitted=params.forward(spec.X, act), found_by="enumerate")


def _same(a: LocalMinimum, b: LocalMinimum) -> bool:
    scale = max(1.0, float(np.max(np.abs(a.fitted))))
    return abs(a.risk - b.risk) <= FIT_RTOL * max(1.0, abs(a.risk)) and \
        float(np.max(np.abs(a.fitted - b.fitted))) <= FIT_RTOL * scale
