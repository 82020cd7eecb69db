"""Can a network of the spec's architecture separate the data?  The margin MILP (DESIGN §4e).

For the logistic loss without weight decay the infimum of the risk over all weights is 0, and not
attained, exactly when some network has y_i f_i > 0 for every sample: scaling its output weights and
bias by t -> inf then drives every log(1 + exp(-t y_i f_i)) to 0.  In the scaled weights of a cell
the outputs f are linear and the cell rows homogeneous, so a separating network can be scaled into
the box; hence

    separable over all weights  <=>  t* = max over the box of min_i y_i f_i  is > 0.

Per sign class this is the global MILP of `milpland.search.formulation` with its loss replaced: one
more column t in [0, 1], rows y_i f_i - t >= 0, objective max t (scaled by MARGIN_SCALE, DESIGN §4:
HiGHS' absolute thresholds).  A point with t > MARGIN_TOL is re-checked: its cell's own margin LP
(`LogisticCellSolver.max_margin`) gives weights whose numpy forward pass must separate the data --
only then is the data called separable.  A proven bound t* <= MARGIN_TOL in every class says that no
network separates the data with margins above MARGIN_TOL at box scale (numerically: not separable).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from milpland.cells.logistic import LogisticCellSolver
from milpland.cells.problem import Cell
from milpland.cells.scaled import sign_class
from milpland.instance.spec import InstanceSpec
from milpland.search.formulation import ClassTemplate, FormulationOptions, pattern_of
from milpland.search.highs_backend import MipRunner

MARGIN_SCALE = 1e3  # the MILP minimises -MARGIN_SCALE t
MARGIN_TOL = 1e-7  # margins (at box scale) at or below this count as no separation


@dataclass(frozen=True)
class Separability:
    """The margin MILP's answer: True (a verified separating network), False (t* <= MARGIN_TOL proven in
    every sign class), None (not decided in time)."""

    separable: bool | None
    margin: float  # the witness's smallest numpy margin y_i f_i (separable), else nan
    bound: float  # the proven upper bound on t* over the classes searched (inf when undecided)

    def note(self) -> str:
        if self.separable is False:
            return (f"no network of this width separates the data (margin MILP: max over the box of min_i y_i f_i "
                    f"<= {self.bound:.3g}, and by scaling none outside it)")
        if self.separable is None:
            return "whether a network of this width separates the data was not decided in the time left"
        return ""


def margin_model(template: ClassTemplate, signs: np.ndarray, y: np.ndarray):
    """The class's compiled MILP with the column t appended, rows y_i f_i - t >= 0 and cost -t."""
    compiled = template.for_class(signs)
    m = template.model
    rows, cols = compiled.A.shape
    f_cols = np.array([compiled.column(m.f[i]) for i in m.I])
    n = len(f_cols)
    margin_rows = sp.csc_array((np.concatenate([y, -np.ones(n)]),
                                (np.concatenate([np.arange(n), np.arange(n)]),
                                 np.concatenate([f_cols, np.full(n, cols)]))), shape=(n, cols + 1))
    A = sp.vstack([sp.hstack([compiled.A, sp.csc_array((rows, 1))]), margin_rows]).tocsc()
    A.indices, A.indptr = A.indices.astype(np.int32), A.indptr.astype(np.int32)
    cost = np.zeros(cols + 1)
    cost[cols] = -1.0
    return replace(compiled, cost=cost, offset=0.0, A=A,
                   row_lower=np.concatenate([compiled.row_lower, np.zeros(n)]),
                   row_upper=np.concatenate([compiled.row_upper, np.full(n, np.inf)]),
                   col_lower=np.append(compiled.col_lower, 0.0), col_upper=np.append(compiled.col_upper, 1.0),
                   integer=np.append(compiled.integer, False))


def check_separable(spec: InstanceSpec, formulation: FormulationOptions, cells: LogisticCellSolver,
                    classes: list[int], *, deadline: float, options: dict) -> Separability:
    """The margin MILP of every sign class in `classes` (numbers of positive units) until `deadline`."""
    bound = 0.0
    for n_positive in classes:
        left = deadline - time.perf_counter()
        if left <= 0:
            return Separability(separable=None, margin=float("nan"), bound=float("inf"))
        signs = sign_class(n_positive, spec.width)
        template = ClassTemplate(spec, formulation, signs=signs, deadline=deadline)
        runner = MipRunner(margin_model(template, signs, spec.y), scale=MARGIN_SCALE, options=dict(options))
        run = runner.run(time_limit=left)
        if run.x is not None and -run.objective > MARGIN_TOL:
            cell = Cell(pattern=pattern_of(template.model, run.x, template.compiled.column), signs=signs)
            margin = cells.max_margin(cell)
            if margin > 0:
                return Separability(separable=True, margin=margin, bound=float("inf"))
        if run.status != "optimal":
            return Separability(separable=None, margin=float("nan"), bound=float("inf"))
        bound = max(bound, -run.dual_bound)
        if bound > MARGIN_TOL:  # a proven t* above the tolerance but no verified witness: undecided
            return Separability(separable=None, margin=float("nan"), bound=bound)
    return Separability(separable=False, margin=float("nan"), bound=bound)
