"""What both global searches (the MILP per sign class and the pattern branch-and-bound) update:
the incumbent, one outcome per sign class, and the rule by which bounds meet.

A cell optimum found by either search is offered to the incumbent through `consider`; the
searches prune at the incumbent's risk minus `tolerance` (DESIGN §4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from milpland.cells.problem import Cell, CellResult
from milpland.cells.scaled import ScaledParams
from milpland.instance.spec import InstanceSpec


@dataclass
class Incumbent:
    """The best cell optimum found so far: the search's upper bound (its scaled weights and cell)."""

    risk: float
    theta: ScaledParams
    cell: Cell
    box_active: bool
    found_by: str


@dataclass
class ClassOutcome:
    """One sign class (n_positive positive output weights): its proven bound and the effort spent."""

    n_positive: int
    lower_bound: float
    complete: bool
    nodes: int = 0
    rounds: int = 0
    build_seconds: float = 0.0
    solve_seconds: float = 0.0
    obbt_lps: int = 0
    coefficients: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def consider(incumbent: Incumbent, result: CellResult, cell: Cell, master_value: float,
             spec: InstanceSpec, outcome: ClassOutcome) -> bool:
    """Replace the incumbent by the polished cell optimum when it is better (returns whether it did)."""
    if result.status != "optimal" or result.theta is None:
        outcome.notes.append(f"cell solve of a master pattern ended {result.status}")
        return False
    if not spec.loss.smooth and result.risk > master_value + tolerance(master_value, spec, 0.0):
        outcome.notes.append(
            f"cell optimum {result.risk:.10g} above the MILP point {master_value:.10g} of the same pattern"
        )
    if result.risk < incumbent.risk:
        incumbent.risk, incumbent.theta, incumbent.cell = result.risk, result.theta, cell
        incumbent.box_active, incumbent.found_by = result.box_active, "milp"
        return True
    return False


def tolerance(risk: float, spec: InstanceSpec, abs_tol: float) -> float:
    """How far apart an upper and a lower bound may be for the minimum to count as proven."""
    return max(spec.solve.rel_gap * abs(risk), abs_tol)


class Exploration(Protocol):
    """What a search that visits every leaf below a threshold asks of its caller (the landscape's
    listing, DESIGN §5b); the search stays a global search that also hands out leaves.  An optional
    attribute ``classes`` (numbers of positive units) restricts the search to those sign classes
    (a listing split over processes); its result is then global over those classes only."""

    def threshold(self, incumbent_risk: float) -> float:
        """Visit every cell whose bound is at most this (it may change as the search goes on)."""

    def leaf(self, cell: Cell, result: CellResult) -> None:
        """A visited leaf: the cell and its solved problem."""

    def close(self, open_bound: float) -> None:
        """The search ended: the smallest bound among the nodes left unexplored (inf if none)."""
