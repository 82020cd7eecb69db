"""Certified local minima collected cell by cell, deduplicated by their fitted values (DESIGN §5).

Every landscape method that certifies cell optima (enumeration, the branch-and-bound listing)
offers them here: `MinimaCollector.offer` certifies a cell optimum with the `Certifier`, keeps
it when it is a local minimum not seen before (two minima are the same when they fit the same
values: the risk is a function of the fitted values), prefers an interior certificate to a
boundary one for the same minimum, and counts what every other cell turned out to be.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from milpland.cells.certificates import Certifier, Verdict, match_minimum
from milpland.cells.minima import LocalMinimum
from milpland.cells.problem import Cell, CellResult
from milpland.errors import MilplandError
from milpland.instance.spec import InstanceSpec
from milpland.search.solve import best_constant

SPURIOUS_FLOOR = 1e-9  # absolute part of the spurious tolerance, relative to the best constant's risk
MAX_MESSAGES = 5


def spurious_tolerance(spec: InstanceSpec, global_risk: float) -> float:
    """Risks closer than this are one level; a minimum is spurious when its gap exceeds it:
    max(rel_gap |global risk|, SPURIOUS_FLOOR x risk of the best constant)."""
    constant = spec.loss.risk(np.full(spec.n, best_constant(spec)), spec.y)
    return max(spec.solve.rel_gap * abs(global_risk), SPURIOUS_FLOOR * max(constant, 1e-300))


@dataclass(frozen=True)
class Query:
    """Which minima to list: exactly one of risk_max (absolute risk), gap_max (risk above the
    global minimum, in risk units), gap_rel (the same as a fraction of the global risk) and levels
    (the K lowest distinct risk levels)."""

    risk_max: float | None = None
    gap_max: float | None = None
    levels: int | None = None
    gap_rel: float | None = None

    def __post_init__(self):
        given = [k for k in ("risk_max", "gap_max", "gap_rel", "levels") if getattr(self, k) is not None]
        if len(given) != 1:
            raise MilplandError("landscape: give exactly one of --risk-max, --gap-max, --gap-rel, "
                                "--levels" + (f" (got {', '.join('--' + k.replace('_', '-') for k in given)})"
                                              if given else ""))
        for key in ("risk_max", "gap_max", "gap_rel"):
            value = getattr(self, key)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise MilplandError(f"--{key.replace('_', '-')}: must be a finite number >= 0, got {value!r}")
        if self.levels is not None and (isinstance(self.levels, bool) or not isinstance(self.levels, int)
                                        or self.levels < 1):
            raise MilplandError(f"--levels: must be a positive integer, got {self.levels!r}")

    def describe(self) -> str:
        if self.risk_max is not None:
            return f"risk <= {self.risk_max:.10g}"
        if self.gap_max is not None:
            return f"risk <= global + {self.gap_max:.10g}"
        if self.gap_rel is not None:
            return f"risk <= (1 + {self.gap_rel:.10g}) x global"
        return f"the {self.levels} lowest risk level{'s' if self.levels > 1 else ''}"

    def threshold(self, best_risk: float, levels: list[float]) -> float:
        """T for the best risk found so far and the distinct levels of the minima listed so far
        (lowest first): infinite for ``levels = K`` until K levels are listed."""
        if self.risk_max is not None:
            return self.risk_max
        if self.gap_max is not None:
            return best_risk + self.gap_max
        if self.gap_rel is not None:
            return best_risk * (1.0 + self.gap_rel)
        return levels[self.levels - 1] if len(levels) >= self.levels else np.inf


def distinct_levels(risks, tol: float) -> list[float]:
    """The distinct risk levels of these risks, lowest first: risks within ``tol`` of the lowest risk of a
    level belong to it."""
    out: list[float] = []
    for risk in sorted(risks):
        if not out or risk > out[-1] + tol:
            out.append(float(risk))
    return out


@dataclass
class MinimaCollector:
    spec: InstanceSpec
    certifier: Certifier
    found_by: str
    minima: list[LocalMinimum] = field(default_factory=list)
    counts: dict = field(default_factory=lambda: dict(
        cell_errors=0, cells_verified_by_absolute_gap=0, box_limited=0, not_local=0, not_attained=0,
        undetermined=0, certified_cells=0, skipped_same_fit=0))
    box_limited_best: float = float("inf")
    unresolved_best: float = float("inf")  # lowest risk of a cell neither certified nor refuted
    messages: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._fits = np.zeros((0, self.spec.n))

    def offer(self, cell: Cell, result: CellResult) -> Verdict | None:
        """Certify the optimum of ``cell`` and keep it when it is a new local minimum."""
        if not self.certifier.verified(result):
            self.counts["cell_errors"] += 1
            self.unresolved_best = min(self.unresolved_best, _lower(result))
            return None
        if result.status != "optimal":
            self.counts["cells_verified_by_absolute_gap"] += 1
        # squared loss: a cell optimum's fitted values are unique, and the certified point has
        # exactly them, so a cell fitting the values of an interior minimum adds nothing (a
        # boundary representative is re-examined: another cell may certify it as interior)
        known = match_minimum(result.fitted, self._fits, self.spec) if self.spec.loss.kind == "squared" else -1
        if known >= 0 and self.minima[known].certificate == "interior":
            self.counts["skipped_same_fit"] += 1
            return None
        verdict = self.certifier.certify(cell, result, found_by=self.found_by)
        self._count(verdict, cell, result)
        return verdict

    def _count(self, verdict: Verdict, cell: Cell, result: CellResult) -> None:
        if verdict.status == "local_minimum":
            self.counts["certified_cells"] += 1
            self._fits = keep_minimum(self.minima, self._fits, verdict.minimum, self.spec)
        elif verdict.status == "box_limited":
            self.counts["box_limited"] += 1
            self.box_limited_best = min(self.box_limited_best, result.risk)
        elif verdict.status == "not_local_minimum":
            self.counts["not_local"] += 1
        elif verdict.status == "not_attained":
            self.counts["not_attained"] += 1
        else:
            self.counts["undetermined"] += 1
            self.unresolved_best = min(self.unresolved_best, result.risk)
            if len(self.messages) < MAX_MESSAGES:
                self.messages.append(f"cell {cell.key()}: {verdict.reason}")

    def levels(self, tol: float) -> list[float]:
        """The distinct risk levels of the minima so far, lowest first: risks within ``tol`` of
        the lowest risk of a level belong to it."""
        return distinct_levels((m.risk for m in self.minima), tol)


def keep_minimum(kept: list[LocalMinimum], fits: np.ndarray, m: LocalMinimum, spec: InstanceSpec) -> np.ndarray:
    """Add ``m`` to ``kept`` (in place) unless a kept minimum fits the same values; then replace that
    one when ``m`` has an interior certificate and it has not.  Returns the fits of ``kept``."""
    at = match_minimum(m.fitted, fits, spec)
    if at < 0:
        kept.append(m)
        return np.vstack([fits, m.fitted[None, :]])
    if m.certificate == "interior" and kept[at].certificate != "interior":
        kept[at] = m
    return fits


def _lower(result: CellResult) -> float:
    """What a cell that was not solved still proves about its risk (its bound, else nothing)."""
    if result.status == "infeasible":
        return float("inf")
    bound = result.lower_bound if result.lower_bound is not None else -np.inf
    return float(bound) if np.isfinite(bound) else -np.inf
