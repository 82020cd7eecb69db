"""What is a given parameter point?  Local minimum, saddle, not stationary -- with a certificate
(DESIGN §5-§8).  The engine behind ``milpland certify``.

`certify_point(spec, params)` evaluates the point with a plain numpy forward pass and decides:

**Verdicts** (never ``local_min`` without a certificate):

- ``local_min``: proven R(θ) ≥ R(θ₀) − tol for every θ near θ₀ (tol = RISK_RTOL·R(θ₀) + a floor
  of RISK_FLOOR_RTOL × the best constant's risk), by the certificate named in ``certificate``.
- ``saddle``: first-order stationary, but an explicit parameter curve starting at θ₀ lowers the
  risk (``descent_path``, every sampled point re-evaluated with numpy).
- ``not_stationary``: a direction with negative one-sided derivative exists; ``descent_path``
  gives a curve along which the risk drops when one was built.
- ``inconclusive``: none of the above could be proven; ``reason`` says what is known.

``stationary`` is directional (Dini) first-order stationarity in θ: no direction along which
the one-sided derivative of R is negative.  None when it was not decided.

**One hidden layer** (θ̃ = scaled coordinates, DESIGN §3), in this order:

1. Units with zero output weight and squared loss: the escape-neuron test (DESIGN §7,
   milpland.points.escape).  An escape neuron gives ``saddle`` with its descent path; a failed
   first-order condition gives ``not_stationary`` (certificate ``first_order``).
2. The θ̃ certificates of DESIGN §5, applied to the given point θ̃₀ itself (not to the best
   point of its cell, which may be a different point of the cell's optimal face: a point of
   the face's relative boundary can fail where its relative interior passes).  Let C be the
   closed cell of θ₀ and R_C its convex cell problem, solved (`CellSolver`, verified) over a
   box that contains θ̃₀ strictly.
   - R(θ₀) > min R_C + tol: the segment from θ̃₀ to the cell optimum stays in C, where R is
     convex, so R drops along it at first order: ``not_stationary`` (certificate
     ``cell_descent``); the segment is mapped back to ordinary weights (output weights kept,
     which is possible because no unit has v_j = 0) and returned as the descent path.
   - else, no pre-activation on a breakpoint and no zero unit: θ̃₀ is strictly inside C and
     minimises R_C, so R ≥ R(θ₀) on a neighbourhood: ``local_min`` (certificate ``interior``).
   - else, boundary: near θ̃₀ the parameter space is the union of the closed cells C' that
     keep every untied (sample, unit) piece and give each tied pair a piece containing θ̃₀
     (a zero unit: any pattern and either sign).  R is convex on each, so θ̃₀ is a local
     minimum iff min R_{C'} ≥ R(θ₀) − tol for all of them (``boundary``).  The squared loss
     is differentiable in the fitted values and the cell rows of different units are
     separate, so there it suffices to change one unit at a time; other losses solve every
     combination.  A better C' without zero units gives ``not_stationary`` with the segment
     to its optimum as the descent path.  With zero units, the same checks are repeated with
     the zero units removed (they contribute nothing): a descent found there lifts to θ.
   θ̃-space local minima are θ-space local minima (θ ↦ θ̃ is continuous).  The converse can
   fail at zero units (DESIGN §7): with a zero unit a failed θ̃ check is ``inconclusive``.
   Without zero units θ ↦ θ̃ is a local submersion, so a θ̃ descent direction is a θ descent
   direction, and "stationary" coincides with "local minimum".
3. If that is undecided, the group bound (below) may still certify.  It is a θ-space argument,
   so it also covers points with zero units whose θ̃ check fails: e.g. Yun's step-1 point,
   whose zero units are constant but strictly active, so they cannot become hinges nearby.

**Any depth**: the group least-squares bound of DESIGN §6 (milpland.points.grouplsq; squared and
absolute loss): a point strictly inside its cell whose risk equals the bound is ``local_min``
(certificate ``group_lsq``).  Otherwise, strictly inside the cell and with a differentiable
loss, the gradient (numpy back-propagation) decides stationarity: non-zero gives
``not_stationary`` with a gradient-step path; zero gives ``inconclusive`` (stationary, bound
not attained).  On a cell boundary a deep point is ``inconclusive``.

**Gaps.**  One hidden layer: ``global_risk`` from `solve_global` (the certified minimum over
the spec's box; its ``certified`` and ``box_active`` flags are reported, and whether θ̃₀ lies
in the box) and ``gap`` = R(θ₀) − global_risk.  Two hidden layers on 1-D data with a
homogeneous two-piece activation and the squared loss: the two-layer global solve (DESIGN §6a);
when it is certified ``gap`` is exact (for a point in the box, or whatever the point when the
minimum is 0), otherwise ``gap_upper_bound`` = R(θ₀) − its lower bound.  Always (any depth)
``gap_lower_bound`` = R(θ₀) − R(best point found) is a lower bound on the true gap; the best point
is the best of the global solve's point, the one-hidden-layer global solves of widths 1 and m1
carried through the other layers (by units that stay inside one linear piece), multistart L-BFGS
from random starts and from those carried solutions, and SCIP's MINLP on tiny two-layer data;
``best_method`` names it.  Every risk is re-evaluated with numpy and the parameters are part of
the result.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

import milpland.interrupt as interrupt
from milpland.cells.arrangement import Realizer, unit_patterns
from milpland.cells.certificates import Certifier
from milpland.cells.decay import DecayCellSolver, balanced_params
from milpland.cells.problem import FEAS_TOL, Cell, CellResult, CellSolver
from milpland.cells.scaled import from_original
from milpland.errors import MilplandError, SpecError
from milpland.instance.activations import Activation
from milpland.instance.deep import DeepParams, as_deep
from milpland.instance.losses import Loss
from milpland.instance.network import OneHiddenParams
from milpland.instance.params_io import check_shapes
from milpland.instance.spec import InstanceSpec, NetworkSpec
from milpland.points.constructions import choose_piece, frame, he_deep
from milpland.points.escape import EscapeReport, escape_test
from milpland.points.grouplsq import GroupBound, group_bound
from milpland.records import jsonable
from milpland.search import decay_solve
from milpland.search.deep_incumbents import loss_gradient, multistart
from milpland.search.deep_model import TwoLayerData, canonical_from_params, two_layer_reason

MINLP_MAX_N = 5  # certify: SCIP's MINLP as a source of better points only for this few samples
MINLP_SECONDS = 30.0

VERDICTS = ("local_min", "saddle", "not_stationary", "not_local_min", "inconclusive")
CERTIFICATES = ("interior", "boundary", "group_lsq", "escape_neuron", "first_order", "cell_descent", "gradient",
                "balance", "")
RISK_RTOL = 1e-8  # a neighbouring cell is better when below R (1 - RISK_RTOL) - floor
RISK_FLOOR_RTOL = 1e-11  # absolute floor of the risk tolerance, relative to the best constant's risk
TIE_TOL = 1e-9  # |z - breakpoint| below this (relative to max(1, max|z|)) counts as tied
ZERO_TOL = 1e-12  # |v_j| below this is a zero output weight
BOX_SLACK = 1e-9  # relative: |theta~| <= box (1 + BOX_SLACK) counts as inside the box
GRAD_RTOL = 1e-8  # deep nets: |grad| below this (relative to the loss scale) counts as zero
MAX_NEIGHBOURS = 5000  # neighbouring cells beyond which a boundary point is left undecided
PATH_FRACTIONS = (0.01, 0.03, 0.1, 0.3, 1.0)


# ------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DescentPath:
    """Sampled points of a parameter curve θ(t), t > 0, starting at θ(0) = θ₀.

    ``risks`` are plain numpy forward passes of ``params`` (in the spec's reduction).
    """

    kind: str  # escape_neuron | cell_segment | gradient
    start_risk: float
    ts: tuple[float, ...]
    risks: tuple[float, ...]
    params: tuple[DeepParams, ...]
    details: dict

    @property
    def descends(self) -> bool:
        return bool(self.risks) and all(r < self.start_risk for r in self.risks)

    @property
    def min_risk(self) -> float:
        return min(self.risks) if self.risks else float("nan")

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "start_risk": self.start_risk,
            "descends": self.descends,
            "points": [
                {"t": t, "risk": r, "params": p.to_json()} for t, r, p in zip(self.ts, self.risks, self.params)
            ],
            "details": jsonable(self.details),
        }


@dataclass(frozen=True, eq=False)
class Certification:
    """What `certify_point` found; see the module docstring for the meaning of every verdict."""

    instance: str
    architecture: str
    loss: str
    reduction: str
    depth: int
    risk: float  # R(θ₀), plain numpy forward pass, in the spec's reduction
    cell: str  # one hidden layer: Cell.key() (signs and pattern); deeper: DeepParams.cell_id
    margin: float  # smallest |pre-activation - breakpoint| (in pre-activation units)
    ties: int  # (sample, unit) pairs on a breakpoint
    zero_units: tuple[int, ...]  # one hidden layer: units with v_j = 0
    stationary: bool | None
    verdict: str
    certificate: str
    reason: str
    tolerance: float  # the risk tolerance of the local-minimum statement
    cell_min: float | None = None  # best risk of the point's closed cell over `cell_box` (one hidden layer)
    cell_min_box_active: bool | None = None  # the cell optimum touches cell_box: its infimum may be lower
    cell_box: tuple[float, float] | None = None  # (weight, output) box of the cell problems
    cell_min_verdict: str | None = None  # Certifier's verdict on the cell's best point
    neighbours: int = 0  # neighbouring cells compared (boundary certificate)
    global_risk: float | None = None  # one hidden layer: minimum over the spec's box
    global_lower_bound: float | None = None
    global_certified: bool | None = None
    global_box_active: bool | None = None
    global_status: str | None = None
    global_params: DeepParams | None = None
    point_in_box: bool | None = None  # θ̃₀ inside the spec's box (else the global value is not comparable)
    gap: float | None = None  # risk - global_risk, when the global minimum is certified (or one hidden layer)
    gap_lower_bound: float | None = None  # risk - (best risk found); a lower bound on the true gap
    gap_upper_bound: float | None = None  # two layers, uncertified solve: risk - its lower bound
    best_risk: float | None = None  # deeper nets: the best point milpland found
    best_method: str | None = None
    best_params: DeepParams | None = None
    group: GroupBound | None = None
    escape: EscapeReport | None = None
    descent_path: DescentPath | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    status: str = "done"  # or "interrupted" (Ctrl-C): the steps not run are said in notes
    weight_decay: float = 0.0  # lam > 0: risk, cell_min, global_risk and gap are of risk + (lam/2)||theta||^2

    def to_json(self) -> dict:
        return {
            "instance": self.instance,
            "status": self.status,
            "weight_decay": self.weight_decay,
            "architecture": self.architecture,
            "loss": self.loss,
            "reduction": self.reduction,
            "depth": self.depth,
            "risk": _num(self.risk),
            "verdict": self.verdict,
            "certificate": self.certificate,
            "reason": self.reason,
            "stationary": self.stationary,
            "tolerance": _num(self.tolerance),
            "cell": self.cell,
            "margin": _num(self.margin),
            "ties": self.ties,
            "zero_units": list(self.zero_units),
            "cell_min": _num(self.cell_min),
            "cell_min_box_active": self.cell_min_box_active,
            "cell_box": list(self.cell_box) if self.cell_box is not None else None,
            "cell_min_verdict": self.cell_min_verdict,
            "neighbours": self.neighbours,
            "global_risk": _num(self.global_risk),
            "global_lower_bound": _num(self.global_lower_bound),
            "global_certified": self.global_certified,
            "global_box_active": self.global_box_active,
            "global_status": self.global_status,
            "global_params": self.global_params.to_json() if self.global_params is not None else None,
            "point_in_box": self.point_in_box,
            "gap": _num(self.gap),
            "gap_lower_bound": _num(self.gap_lower_bound),
            "gap_upper_bound": _num(self.gap_upper_bound),
            "best_point": None if self.best_params is None else {
                "risk": _num(self.best_risk), "method": self.best_method, "params": self.best_params.to_json(),
            },
            "group_bound": None if self.group is None else {
                "bound": _num(self.group.bound), "groups": self.group.n_groups, "interior": self.group.interior,
                "tight": self.group.tight, "certified": self.group.certified, "verdict": self.group.verdict,
            },
            "escape": None if self.escape is None else {
                "verdict": self.escape.verdict, "stationary": self.escape.stationary,
                "escape_units": list(self.escape.escape_units), "message": self.escape.message,
            },
            "descent_path": self.descent_path.to_json() if self.descent_path is not None else None,
            "seconds": self.seconds,
            "notes": list(self.notes),
        }

    def to_row(self) -> dict:
        return {
            "instance": self.instance, "architecture": self.architecture, "loss": self.loss,
            "reduction": self.reduction, "depth": self.depth, "risk": self.risk, "verdict": self.verdict,
            "certificate": self.certificate, "stationary": self.stationary, "cell": self.cell,
            "margin": self.margin, "ties": self.ties, "zero_units": len(self.zero_units),
            "cell_min": _nan(self.cell_min), "global_risk": _nan(self.global_risk),
            "global_certified": self.global_certified, "point_in_box": self.point_in_box,
            "gap": _nan(self.gap), "gap_lower_bound": _nan(self.gap_lower_bound),
            "gap_upper_bound": _nan(self.gap_upper_bound),
            "best_method": self.best_method or "", "path_min_risk": (
                self.descent_path.min_risk if self.descent_path is not None else float("nan")),
            "seconds": self.seconds, "reason": self.reason, "weight_decay": self.weight_decay,
        }


@dataclass
class _Decision:
    verdict: str = "inconclusive"
    certificate: str = ""
    stationary: bool | None = None
    reason: str = ""
    path: DescentPath | None = None


# ------------------------------------------------------------------------------------------
# The entry point
# ------------------------------------------------------------------------------------------


def certify_point(
    spec: InstanceSpec, params, *, global_result=None, run_global: bool = True, time_limit: float | None = None,
    best_point: bool = True, gd_starts: int = 4, seed: int = 0, check_cell_min: bool = False,
) -> Certification:
    """Certify ordinary weights ``params`` (DeepParams or OneHiddenParams) on the instance ``spec``.

    ``global_result``: a `SolveResult` of this spec to reuse (one hidden layer); otherwise the
    global solve runs when ``run_global`` (time limit ``time_limit``, default the spec's).
    ``best_point`` / ``gd_starts``: deeper nets, the search for a better point (embedded
    one-hidden-layer global solve when ``run_global``, and ``gd_starts`` L-BFGS starts).
    ``check_cell_min``: also run `milpland.cells.certificates.Certifier` on the point's cell and
    report its verdict on the cell's best point.
    """
    t0 = time.perf_counter()
    params = as_deep(params)
    _check_params(spec, params)
    limit = float(time_limit if time_limit is not None else spec.solve.time_limit)
    if not (math.isfinite(limit) and limit > 0):
        raise MilplandError(f"--time-limit: must be a positive finite number, got {time_limit!r}")
    with interrupt.polling():  # Ctrl-C: every step below checks the stop flag and returns what it has
        return _certify(spec, params, t0, limit, global_result, run_global, best_point, gd_starts, seed,
                        check_cell_min)


def _certify(spec, params: DeepParams, t0, limit, global_result, run_global, best_point, gd_starts, seed,
             check_cell_min) -> Certification:
    X, y, act, loss = spec.X, spec.y, spec.network.activation, spec.loss
    risk = _risk(params, spec)
    tol = RISK_RTOL * abs(risk) + RISK_FLOOR_RTOL * _constant_risk(spec)
    fields: dict = {}
    notes: list[str] = []
    group = None
    if loss.kind in ("squared", "absolute") and not loss.decayed:  # the group bound is of the risk alone
        group = group_bound(params, X, y, act, loss)
    if loss.decayed:  # risk + weight decay (DESIGN §4d): the spec allows it for one hidden layer only
        decision = _one_hidden_decay(spec, params.to_one_hidden(), risk, tol, fields, notes)
        fields.update(_global_one_hidden(spec, params, risk, global_result, run_global, limit, notes))
        if fields.get("global_certified"):
            notes.append(f"the global minimum is of risk + (lam/2)||theta||^2, certified over "
                         f"{decay_solve.region_text(spec)}")
    elif params.depth == 1:
        decision = _one_hidden(spec, params, risk, tol, fields, notes, check_cell_min, limit)
        if decision.verdict == "inconclusive" and group is not None and group.certified:
            # a θ-space argument: it holds with zero units too (where the θ̃ check can fail, DESIGN §7)
            why = f"; the θ̃ check alone: {decision.reason}" if decision.reason else ""
            decision = _Decision("local_min", "group_lsq", True,
                                 "strictly inside its cell and the risk equals the group least-squares bound" + why)
        fields.update(_global_one_hidden(spec, params, risk, global_result, run_global, limit, notes))
    else:
        fields["cell"] = params.cell_id(X, act)
        fields["zero_units"] = ()
        decision = _deep(spec, params, risk, group, notes)
        if best_point:
            fields.update(_best_deep(spec, params, risk, run_global, limit, gd_starts, seed, notes))
    status = "done"
    if interrupt.requested():
        status = "interrupted"
        notes.append("interrupted (Ctrl-C): the steps after the interruption were cut short or skipped")
    return Certification(
        instance=spec.name, architecture=spec.architecture(), loss=loss.kind, reduction=loss.reduction,
        depth=params.depth, risk=risk, margin=params.margin(X, act), ties=_ties(params, spec),
        stationary=decision.stationary, verdict=decision.verdict, certificate=decision.certificate,
        reason=decision.reason, tolerance=tol, group=group, descent_path=decision.path,
        seconds=time.perf_counter() - t0, notes=tuple(notes), status=status, weight_decay=loss.weight_decay, **fields,
    )


def _check_params(spec: InstanceSpec, params: DeepParams) -> None:
    """Shapes against the spec, and a zero output bias when the spec has none."""
    check_shapes(params, d=spec.d, hidden=spec.network.hidden, outputs=1)
    if not spec.network.output_bias and float(params.b[-1][0]) != 0.0:
        last = len(params.b) - 1
        raise SpecError(
            f"params.b[{last}]",
            f"the spec has network.output_bias = false, so the output bias must be 0, got {float(params.b[-1][0])!r}",
        )


# ------------------------------------------------------------------------------------------
# One hidden layer
# ------------------------------------------------------------------------------------------


def _one_hidden(spec, params: DeepParams, risk, tol, fields, notes, check_cell_min, limit) -> _Decision:
    X, act, loss = spec.X, spec.network.activation, spec.loss
    p1 = params.to_one_hidden()
    cell = Cell.of_params(p1, X, act)
    fields["cell"] = cell.key()
    zero = tuple(int(j) for j in np.flatnonzero(np.abs(p1.v) <= ZERO_TOL))
    fields["zero_units"] = zero
    box, inside = _cell_box(spec, from_original(p1))
    fields["cell_box"] = (box.weight, box.output)
    fields["point_in_box"] = inside
    solver = CellSolver(X, spec.y, act, loss, box, output_bias=spec.network.output_bias,
                        time_limit=max(1.0, limit / 4))
    own = solver.solve(cell)
    if own.status == "optimal":
        fields["cell_min"] = float(own.risk)
        fields["cell_min_box_active"] = bool(own.box_active)
    if check_cell_min:
        fields["cell_min_verdict"] = _certifier_verdict(spec, box, solver, cell, own)
    if zero and loss.kind == "squared":
        rep = _interruptible(escape_test, params, X, spec.y, act, loss, zero_tol=ZERO_TOL,
                             output_bias=spec.network.output_bias)
        if rep is None:  # interrupted: the θ̃ checks below see the stop flag too
            notes.append("escape-neuron test interrupted")
            return _Decision(reason="interrupted during the escape-neuron test")
        fields["escape"] = rep
        if rep.verdict == "saddle":
            path = _escape_path(rep, spec)
            if path.descends:
                return _Decision("saddle", "escape_neuron", True, rep.message, path)
            notes.append("the escape path did not descend at every sampled point (rounding): saddle not claimed")
        elif rep.verdict == "not_stationary":
            return _Decision("not_stationary", "first_order", False, rep.message)
    elif zero:
        notes.append(f"units {list(zero)} have zero output weight; the escape-neuron test needs the squared loss")
    return _theta_tilde(spec, p1, cell, zero, risk, tol, fields, solver, own)


def _theta_tilde(spec, p1: OneHiddenParams, cell: Cell, zero, risk, tol, fields, solver: CellSolver,
                 own: CellResult) -> _Decision:
    """The θ̃ certificates of DESIGN §5 at the given point (see the module docstring)."""
    X, act, loss = spec.X, spec.network.activation, spec.loss
    wu = " (no escape neuron: Wu, Simsek & Ged state such a point is a local minimum, not proven here)" \
        if fields.get("escape") is not None else ""
    if own.status != "optimal":
        return _Decision(stationary=_escape_stationary(fields),
                         reason=f"the cell problem ended {own.status} ({own.method})")
    if risk < own.risk - tol:
        return _Decision(stationary=_escape_stationary(fields),
                         reason=f"the verified cell optimum {own.risk!r} is above the point's own risk {risk!r}: "
                                "numerical trouble")
    if risk > own.risk + tol:
        if zero:
            found = _descent_without_zero_units(spec, p1, cell, zero, risk, tol, solver)
            if found is not None:
                return found
            return _Decision(stationary=_escape_stationary(fields),
                             reason=f"the cell's optimum {own.risk:.10g} is lower, but reaching it may move the "
                                    f"zero units {list(zero)} in directions their input weights cannot take{wu}")
        path = _segment_path(spec, p1, own, "own cell")
        return _Decision("not_stationary", "cell_descent", False,
                         f"the point's closed cell contains a point of risk {own.risk:.10g} < {risk:.10g}; "
                         "the risk is convex in the cell, so it drops along the segment to it", path)
    tied = _tied_pairs(p1, X, act)
    if not tied.any() and not zero:
        return _Decision("local_min", "interior", True,
                         "strictly inside its cell (no pre-activation on a breakpoint) and minimises the cell's "
                         "convex problem")
    combos = _neighbours_of_point(spec, p1, cell, tied, zero, loss)
    if combos is None:
        return _Decision(stationary=_escape_stationary(fields),
                         reason=f"more than {MAX_NEIGHBOURS} neighbouring cells: boundary certificate not attempted")
    fields["neighbours"] = len(combos)
    undecided = 0
    for done, (other, changed) in enumerate(combos):
        if interrupt.requested():
            return _Decision(stationary=_escape_stationary(fields),
                             reason=f"interrupted after {done} of {len(combos)} neighbouring cells: boundary "
                                    "certificate not completed")
        res = solver.solve(other)
        feasible = res.theta is not None and res.max_violation <= FEAS_TOL
        if feasible and res.risk < risk - tol:
            if zero:
                found = _descent_without_zero_units(spec, p1, cell, zero, risk, tol, solver)
                if found is not None:
                    return found
                return _Decision(stationary=_escape_stationary(fields),
                                 reason=f"a neighbouring cell reaches {res.risk:.10g} < {risk:.10g} in scaled "
                                        f"coordinates, which the zero units {list(zero)} may not follow{wu}")
            path = _segment_path(spec, p1, res, f"neighbouring cell (units {changed} changed)")
            return _Decision("not_stationary", "cell_descent", False,
                             f"a neighbouring cell (units {changed} change pieces at tied samples) reaches "
                             f"{res.risk:.10g} < {risk:.10g}; the risk drops along the segment into it", path)
        if not (res.status == "optimal" or (np.isfinite(res.lower_bound) and res.lower_bound >= risk - tol)):
            undecided += 1
    if undecided:
        return _Decision(stationary=_escape_stationary(fields),
                         reason=f"{undecided} neighbouring cell problem(s) not solved to optimality")
    n_tied = int(tied.sum())
    what = f"{n_tied} tied (sample, unit) pair(s)" + (f" and zero units {list(zero)}" if zero else "")
    return _Decision("local_min", "boundary", True,
                     f"on a cell boundary ({what}); none of the {len(combos)} neighbouring cells goes below it")


def _descent_without_zero_units(spec, p1: OneHiddenParams, cell: Cell, zero, risk, tol,
                                solver: CellSolver) -> _Decision | None:
    """A θ̃ descent that leaves the zero units alone (they contribute nothing, so removing them keeps
    the function): the cell of the other units, then its neighbours at their tied samples.  Such a
    descent lifts to θ with the zero units unchanged, so it proves ``not_stationary``."""
    keep = [j for j in range(cell.width) if j not in zero]
    if not keep:
        return None
    sub = OneHiddenParams(W1=p1.W1[keep], b1=p1.b1[keep], v=p1.v[keep], c=p1.c)
    sub_cell = Cell(cell.pattern[:, keep], cell.signs[keep])
    candidates = [(sub_cell, "own cell")]
    tied = _tied_pairs(sub, spec.X, spec.network.activation)
    if tied.any():
        try:
            combos = _neighbour_cells(sub_cell, _unit_options(spec, sub, sub_cell, tied, ()), spec.loss) or []
        except _TooMany:
            combos = []
        candidates += [(c, f"neighbouring cell (units {[keep[j] for j in ch]} changed)") for c, ch in combos]
    for other, where in candidates:
        if interrupt.requested():
            return None
        res = solver.solve(other)
        if res.theta is not None and res.max_violation <= FEAS_TOL and res.risk < risk - tol:
            path = _segment_path(spec, sub, res, where + ", zero units kept")
            full = tuple(_reinsert(q, p1, keep) for q in path.params)
            path = dataclasses.replace(path, params=full, risks=tuple(_risk(q, spec) for q in full),
                                       start_risk=_risk(DeepParams.from_one_hidden(p1), spec))
            return _Decision("not_stationary", "cell_descent", False,
                             f"with the zero units {list(zero)} left as they are, the {where} reaches "
                             f"{res.risk:.10g} < {risk:.10g}; the risk drops along the segment to it", path)
    return None


def _reinsert(q: DeepParams, p1: OneHiddenParams, keep) -> DeepParams:
    """The full-width point: the kept units from ``q``, the zero units as in ``p1``."""
    W1, b1, v = p1.W1.copy(), p1.b1.copy(), p1.v.copy()
    W1[keep], b1[keep], v[keep] = q.W[0], q.b[0], q.W[1][0]
    return DeepParams((W1, v[None, :]), (b1, q.b[1].copy()))


def _interruptible(function, *args, **kwargs):
    """function(*args, **kwargs) in a helper thread, waited for in steps of 50 ms, so that Ctrl-C is
    seen within them although the function spends its time in a solver (the escape test's MILPs run
    in scipy's HiGHS, which releases the GIL but has no interrupt hook).  On a stop request the
    thread is left to finish on its own (daemon: it ends with the process; it shares no state) and
    None is returned."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="milpland-certify-step", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
        if interrupt.requested():
            return None
    if "error" in box:
        raise box["error"]
    return box["value"]


def _escape_stationary(fields) -> bool | None:
    rep = fields.get("escape")
    return bool(rep.stationary) if rep is not None else None


def _cell_box(spec: InstanceSpec, theta0):
    """The spec's box when θ̃₀ lies strictly inside it, else a box twice θ̃₀'s size; and whether θ̃₀ is in the spec's box."""
    act = spec.network.activation
    wmax = float(max(np.max(np.abs(theta0.U), initial=0.0), np.max(np.abs(theta0.a), initial=0.0)))
    rmax = 0.0 if act.homogeneous else float(np.max(theta0.rho, initial=0.0))
    B, P = spec.box.weight, spec.box.output
    inside = wmax <= B * (1 + BOX_SLACK) and rmax <= P * (1 + BOX_SLACK)
    strictly = wmax < B * (1 - 1e-6) and rmax < P * (1 - 1e-6)
    if strictly:
        return spec.box, inside
    return dataclasses.replace(spec.box, weight=max(B, 2.0 * wmax), output=max(P, 2.0 * rmax)), inside


def _tied_pairs(p1: OneHiddenParams, X, act: Activation) -> np.ndarray:
    Z = p1.pre_activations(X)
    return act.on_breakpoint(Z, TIE_TOL * max(1.0, float(np.max(np.abs(Z), initial=0.0))))


def _unit_options(spec, p1: OneHiddenParams, cell: Cell, tied: np.ndarray, zero) -> list[list[tuple[float, tuple]]]:
    """Per unit, the (sign, pattern) choices of the closed cells that contain θ̃₀ (own choice first)."""
    X, act = spec.X, spec.network.activation
    Z = p1.pre_activations(X)
    tol = TIE_TOL * max(1.0, float(np.max(np.abs(Z), initial=0.0)))
    K = act.n_pieces
    lo = np.array([act.lower(k) for k in range(K)])
    hi = np.array([act.upper(k) for k in range(K)])
    patterns_within = _pattern_source(X, act)
    options = []
    for j in range(cell.width):
        own = (float(cell.signs[j]), tuple(int(k) for k in cell.pattern[:, j]))
        if j in zero:
            pats = patterns_within([np.arange(K)] * X.shape[0])  # θ̃_j = 0 lies in every piece
            signs = (1.0, -1.0)
        elif tied[:, j].any():
            allowed = [np.flatnonzero((Z[i, j] >= lo - tol) & (Z[i, j] <= hi + tol)) for i in range(X.shape[0])]
            pats = patterns_within(allowed)
            signs = (own[0],)
        else:
            options.append([own])
            continue
        opts = [own] + [(s, tuple(int(k) for k in pat)) for s in signs for pat in pats.tolist()
                        if (s, tuple(pat)) != own]
        options.append(opts)
    return options


def _pattern_source(X, act: Activation):
    """allowed -> the strictly realisable unit patterns with those pieces (milpland.cells.arrangement)."""
    realizer = Realizer(X, act)
    return lambda allowed: unit_patterns(X, act, allowed=allowed, realizer=realizer)


class _TooMany(Exception):
    """More candidate patterns than MAX_NEIGHBOURS."""


def _neighbours_of_point(spec, p1, cell: Cell, tied, zero, loss: Loss):
    """`_neighbour_cells` of the point's cell, None when there are too many to compare."""
    try:
        return _neighbour_cells(cell, _unit_options(spec, p1, cell, tied, zero), loss)
    except _TooMany:
        return None


def _neighbour_cells(cell: Cell, options, loss: Loss):
    """[(cell, changed units)] to compare; None when there are more than MAX_NEIGHBOURS."""
    import itertools

    m = cell.width
    own = [o[0] for o in options]
    choices = []
    if loss.kind == "squared":  # the first-order condition splits over the units (module docstring)
        for j in range(m):
            for opt in options[j][1:]:
                choice = list(own)
                choice[j] = opt
                choices.append(choice)
    else:
        size = int(np.prod([len(o) for o in options], dtype=float))
        if size - 1 > MAX_NEIGHBOURS:
            return None
        choices = [list(c) for c in itertools.product(*options)][1:]
    if len(choices) > MAX_NEIGHBOURS:
        return None
    seen, out = {cell.key()}, []
    for choice in choices:
        other = Cell(np.array([c[1] for c in choice], dtype=np.int64).T, np.array([c[0] for c in choice]))
        key = other.key()
        if key in seen:
            continue
        seen.add(key)
        out.append((other, [j for j in range(m) if choice[j] != own[j]]))
    return out


def _certifier_verdict(spec, box, solver, cell, own: CellResult) -> str:
    """Certifier's verdict on the best point of the cell (milpland.cells.certificates)."""
    certifier = Certifier(spec.with_box(box.weight, box.output), solver=solver)
    return certifier.certify(cell, own, found_by="sample").status


def _segment_path(spec, p1: OneHiddenParams, target: CellResult, where: str) -> DescentPath:
    """θ̃(t) = (1 − t) θ̃₀ + t θ̃* mapped back with the output weights' signs kept (all v_j ≠ 0).

    Homogeneous activations keep ρ_j = |v_j| (any ρ > 0 gives the same function), so θ(0) = θ₀;
    others interpolate ρ too, which stays > 0 for t < 1.  R(θ̃(t)) ≤ (1 − t) R₀ + t R* by convexity.
    """
    act = spec.network.activation
    theta0 = from_original(p1)
    star = target.theta
    rho0 = np.abs(p1.v)
    ts, risks, plist = [], [], []
    for frac in PATH_FRACTIONS:
        t = 0.999 * frac if frac == 1.0 else frac
        U = (1 - t) * theta0.U + t * star.U
        a = (1 - t) * theta0.a + t * star.a
        c = (1 - t) * theta0.c + t * star.c
        rho = rho0 if act.homogeneous else (1 - t) * rho0 + t * np.asarray(star.rho)
        q = OneHiddenParams(W1=U / rho[:, None], b1=a / rho, v=theta0.signs * rho, c=float(c))
        dp = DeepParams.from_one_hidden(q)
        ts.append(float(t))
        risks.append(_risk(dp, spec))
        plist.append(dp)
    return DescentPath("cell_segment", _risk(DeepParams.from_one_hidden(p1), spec), tuple(ts), tuple(risks),
                       tuple(plist), {"towards": where, "target_risk": float(target.risk)})


def _escape_path(rep: EscapeReport, spec) -> DescentPath:
    path = rep.path
    ts = [float(t) for t, _ in path.samples]
    plist = [path.params_at(t) for t in ts]
    risks = [_risk(p, spec) for p in plist]
    return DescentPath("escape_neuron", float(path.start_risk), tuple(ts), tuple(risks), tuple(plist),
                       {"unit": path.unit, "direction": list(path.direction), "g": path.g, "kappa": path.kappa,
                        "t_max": path.t_max,
                        "curve": "v_unit = -t sign(g), (w_unit, b_unit) += kappa sqrt(t) direction"})


def _global_one_hidden(spec, params, risk, global_result, run_global, limit, notes) -> dict:
    out: dict = {}
    if global_result is None and run_global and interrupt.requested():
        notes.append("global solve skipped: interrupted")
    elif global_result is None and run_global:
        # imported late: the MILP stack is heavy
        from milpland.search.solve import solve_global

        global_result = solve_global(spec.with_options(time_limit=limit))
    if global_result is None:
        return out
    if global_result.risk is None or not np.isfinite(global_result.risk):
        notes.append(f"the global solve returned no point (status {global_result.status})")
        return out
    out.update(
        global_risk=float(global_result.risk), global_lower_bound=float(global_result.lower_bound),
        global_certified=bool(global_result.certified), global_box_active=bool(global_result.box_active),
        global_status=global_result.status,
        global_params=DeepParams.from_one_hidden(global_result.params) if global_result.params is not None else None,
        gap=risk - float(global_result.risk), gap_lower_bound=risk - float(global_result.risk),
    )
    if not global_result.certified:
        notes.append("the global solve is not certified (see global_status / global_box_active): "
                     "gap = risk - best value found, a lower bound on the true gap")
    return out


# ------------------------------------------------------------------------------------------
# Weight decay (DESIGN §4d)
# ------------------------------------------------------------------------------------------


def _one_hidden_decay(spec, p1: OneHiddenParams, objective, tol, fields, notes) -> _Decision:
    """The point against risk + (lam/2)||theta||^2, in this order:

    1. balance: rescaling a unit (w, b, v) -> (a w, a b, v / a) keeps the function; the penalty's
       derivative in a at a = 1 is lam (p^2 - v^2), p = ||(w, b)|| (||w|| without decayed biases).
       Balancing every unit lowers the penalty by (lam/2) sum (p - |v|)^2; above tol: ``not_stationary``
       (certificate ``balance``) with the rescaling path.
    2. its cell's SOCP (scaled weights x0 of the balanced point): a lower cell minimum gives a descent
       along the segment x(t) (convex in the cell), each point balanced: ``not_stationary`` when no
       zero unit is revived (first order), else ``not_local_min`` (the revived units grow as sqrt(t)).
    3. equal to the cell minimum: strictly inside the cell with no zero unit: ``local_min``
       (``interior``); else every closed cell holding x0 (ties: either piece; zero units: any
       pattern, either sign) is solved: none lower gives ``local_min`` (``boundary``).
    A local minimum of the scaled objective at a balanced point is one in ordinary weights: the
    ordinary objective is >= the scaled one at its scaled point, with equality when balanced.
    """
    X, act, loss = spec.X, spec.network.activation, spec.loss
    cell = Cell.of_params(p1, X, act)
    fields["cell"] = cell.key()
    scaled = from_original(p1)
    solver = DecayCellSolver(X, spec.y, act, loss, spec.box, output_bias=spec.network.output_bias)
    zero = tuple(int(j) for j in np.flatnonzero(solver.penalty.group_norms(scaled.U, scaled.a) <= ZERO_TOL))
    fields["zero_units"] = zero
    own = solver.solve(cell, upper=max(objective, solver.zero_objective))
    fields["cell_min"] = float(own.risk)
    fields["cell_min_box_active"] = bool(own.box_active)
    path = _balance_path(spec, p1, objective, tol)
    if path is not None:
        return _Decision("not_stationary", "balance", False,
                         "rescaling units (w, b, v) -> (a w, a b, v / a) keeps the network and lowers the weight "
                         f"decay to {path.min_risk:.10g}: the point is not balanced", path)
    if own.theta is None or not np.isfinite(own.lower_bound):
        return _Decision(reason=f"the cell's SOCP ended {own.status} ({own.method})")
    if objective > own.risk + tol:
        return _decay_descent(spec, scaled, own, zero, objective, "point's own cell")
    if objective < own.lower_bound - tol:
        return _Decision(reason=f"the cell's certified lower bound {own.lower_bound!r} is above the point's own "
                                f"objective {objective!r}: numerical trouble")
    tied = _tied_pairs(p1, X, act)
    if not tied.any() and not zero:
        return _Decision("local_min", "interior", True,
                         "balanced, strictly inside its cell and minimises the cell's convex (group-lasso) problem")
    combos = _neighbours_of_point(spec, p1, cell, tied, zero, loss)
    if combos is None:
        return _Decision(reason=f"more than {MAX_NEIGHBOURS} neighbouring cells: boundary certificate not attempted")
    fields["neighbours"] = len(combos)
    for done, (other, changed) in enumerate(combos):
        if interrupt.requested():
            return _Decision(reason=f"interrupted after {done} of {len(combos)} neighbouring cells")
        res = solver.solve(other, upper=max(objective, solver.zero_objective))
        if res.theta is not None and res.risk < objective - tol:
            return _decay_descent(spec, scaled, res, zero, objective, f"neighbouring cell (units {changed} changed)")
        if not (np.isfinite(res.lower_bound) and res.lower_bound >= objective - tol):
            return _Decision(reason=f"a neighbouring cell's bound {res.lower_bound!r} does not reach the objective")
    return _Decision("local_min", "boundary", True,
                     f"balanced, on a cell boundary ({int(tied.sum())} tied pairs, zero units {list(zero)}); none of "
                     f"the {len(combos)} neighbouring cells goes below it")


def _balance_path(spec, p1: OneHiddenParams, objective, tol) -> DescentPath | None:
    """The rescaling towards balance (function unchanged, penalty down) when it gains more than tol.

    Per unit: |v| p > 0: a* = sqrt(|v| / p); v = 0: (w, b) shrink to 0; p = 0, v != 0: with decayed
    biases the unit is zero (v shrinks to 0), without them a constant unit: a* = 2 (halves v)."""
    loss = spec.loss
    p = np.sqrt(np.sum(p1.W1**2, axis=1) + (p1.b1**2 if loss.decay_biases else 0.0))
    v = np.abs(p1.v)
    gain = 0.5 * loss.weight_decay * float(np.sum((p - v) ** 2))
    if gain <= tol:
        return None
    ts, values, plist = [], [], []
    for t in PATH_FRACTIONS:
        W1, b1, out = p1.W1.copy(), p1.b1.copy(), p1.v.copy()
        for j in range(len(v)):
            if p[j] > 0 and v[j] > 0:
                a = 1.0 + t * (np.sqrt(v[j] / p[j]) - 1.0)
                sw, sv = a, 1.0 / a
            elif v[j] == 0:
                sw, sv = 1.0 - t, 1.0
            elif np.all(p1.b1[j] == 0) or loss.decay_biases:
                sw, sv = 1.0, 1.0 - t
            else:
                a = 1.0 + t
                sw, sv = a, 1.0 / a
            W1[j], b1[j], out[j] = sw * W1[j], sw * b1[j], sv * out[j]
        q = DeepParams.from_one_hidden(OneHiddenParams(W1=W1, b1=b1, v=out, c=p1.c))
        ts.append(float(t))
        values.append(_risk(q, spec))
        plist.append(q)
    path = DescentPath("balance", objective, tuple(ts), tuple(values), tuple(plist), {"penalty_gain": gain})
    return path if path.descends else None


def _decay_descent(spec, scaled, target: CellResult, zero, objective, where: str) -> _Decision:
    """The segment from the scaled point to a lower cell point, every point balanced (DESIGN §4d)."""
    act = spec.network.activation
    solver_penalty = DecayCellSolver(spec.X, spec.y, act, spec.loss, spec.box,
                                     output_bias=spec.network.output_bias).penalty
    star = target.theta
    revived = [j for j in zero if np.linalg.norm(np.r_[star.U[j], star.a[j]]) > ZERO_TOL]
    ts, values, plist = [], [], []
    for t in PATH_FRACTIONS:
        x = dataclasses.replace(scaled, U=(1 - t) * scaled.U + t * star.U, a=(1 - t) * scaled.a + t * star.a,
                                c=float((1 - t) * scaled.c + t * star.c))
        q = DeepParams.from_one_hidden(balanced_params(x, solver_penalty, act)[0])
        ts.append(float(t))
        values.append(_risk(q, spec))
        plist.append(q)
    path = DescentPath("cell_segment", objective, tuple(ts), tuple(values), tuple(plist),
                       {"towards": where, "target_risk": float(target.risk), "balanced": True})
    what = (f"the {where} reaches {target.risk:.10g} < {objective:.10g}; the objective is convex there (scaled "
            "weights), so it drops along the segment, each point balanced")
    if revived:
        return _Decision("not_local_min", "cell_descent", None,
                         what + f" (zero units {revived} grow as sqrt(t): a descent curve, not a first-order one)",
                         path)
    return _Decision("not_stationary", "cell_descent", False, what, path)


# ------------------------------------------------------------------------------------------
# Deeper networks
# ------------------------------------------------------------------------------------------


def _deep(spec, params: DeepParams, risk, group: GroupBound | None, notes) -> _Decision:
    X, act, loss = spec.X, spec.network.activation, spec.loss
    if group is not None and group.certified:
        return _Decision("local_min", "group_lsq", True,
                         f"strictly inside its cell and the risk equals the group least-squares bound "
                         f"({group.n_groups} group(s))")
    if group is None:
        notes.append(f"the group bound does not support the {loss.kind} loss")
    margin = params.margin(X, act)
    if not margin > TIE_TOL * max(1.0, _zmax(params, spec)):
        return _Decision(reason="on a cell boundary: the group bound covers only the closed cell and the "
                                "deep cell problem is not convex (DESIGN §6)")
    grad = loss_gradient(params, spec)
    if grad is None:
        return _Decision(reason="the loss is not differentiable at this point (a residual at its kink)")
    gnorm = float(np.linalg.norm(grad))
    if gnorm <= GRAD_RTOL * max(1.0, risk):
        bound = f"risk exceeds the group bound by {group.gap:.3g}" if group is not None else "no group bound"
        return _Decision(stationary=True,
                         reason=f"stationary (gradient norm {gnorm:.3g}) inside its cell, but {bound}: "
                                "no certificate")
    path = _gradient_path(spec, params, grad, risk, margin)
    if path is None or not path.descends:
        return _Decision(stationary=False, reason=f"gradient norm {gnorm:.3g} but no descending step found")
    return _Decision("not_stationary", "gradient", False,
                     f"differentiable here with gradient norm {gnorm:.3g}; a gradient step lowers the risk", path)


def _gradient_path(spec, params: DeepParams, grad, risk, margin) -> DescentPath | None:
    """θ(t) = θ₀ − t g/|g| for a few t up to a step that lowers the risk (found by halving)."""
    theta = params.flat()
    g = grad / np.linalg.norm(grad)
    step = max(margin, 1e-12)
    for _ in range(80):
        if _risk(params.from_flat(theta - step * g), spec) < risk:
            break
        step *= 0.5
    else:
        return None
    ts, risks, plist = [], [], []
    for frac in PATH_FRACTIONS:
        p = params.from_flat(theta - frac * step * g)
        ts.append(float(frac * step))
        risks.append(_risk(p, spec))
        plist.append(p)
    return DescentPath("gradient", risk, tuple(ts), tuple(risks), tuple(plist),
                       {"curve": "theta0 - t * grad / |grad|", "grad_norm": float(np.linalg.norm(grad))})


def _best_deep(spec, params: DeepParams, risk, run_global, limit, gd_starts, seed, notes) -> dict:
    """The gap of a deeper net's point (DESIGN §6): the global solve where milpland has one, and the
    best point found by every search, each re-evaluated with numpy; the best says which found it.

    Two hidden layers on 1-D data (`milpland.search.deep_solve`): the certified global minimum
    over the box gives the exact gap (when the point lies in the box, or the minimum is 0), an
    uncertified solve its incumbent and an upper bound risk - lower bound on the gap.  Otherwise, and
    besides: the one-hidden-layer global solves of widths 1 and m1 carried through the other layers,
    ``gd_starts`` L-BFGS runs (from random starts and from those carried solutions), and for tiny
    data (n <= MINLP_MAX_N, two layers, 1-D) SCIP's MINLP with a short limit."""
    fields: dict = {}
    candidates: list[tuple[float, str, DeepParams]] = []
    global_result = _deep_global(spec, params, risk, run_global, limit, fields, notes)
    if global_result is not None:
        candidates.append((_risk(global_result.params, spec), _solve_name(global_result), global_result.params))
    if fields.get("gap") is None:  # the global minimum is not known: search for better points
        seeds = _carried_solutions(spec, run_global, limit, notes)
        candidates += [(_risk(p, spec), how, p) for how, p in seeds]
        if gd_starts > 0:
            seeds += _construction_seeds(spec)
            runs = multistart(spec, params, starts=gd_starts, seed=seed,
                              seeds=[(f"L-BFGS from the {how}", p) for how, p in seeds])
            candidates += [(r, f"{how} (best of {len(runs)} descents)", p) for r, p, how in runs[:1]]
        if run_global:
            candidates += _minlp_point(spec, limit, notes)
    if not candidates:
        return fields
    best_risk, method, best = min(candidates, key=lambda c: c[0])
    fields.update(best_risk=best_risk, best_method=method, best_params=best, gap_lower_bound=risk - best_risk)
    return fields


def _solve_name(result) -> str:
    state = "certified" if result.certified else f"not certified, status {result.status}"
    return f"two-layer global solve ({state})"


def _deep_global(spec, params: DeepParams, risk, run_global, limit, fields, notes):
    """The two-layer global solve where it applies; fills the global_* fields and the exact gap."""
    reason = two_layer_reason(spec)
    if not run_global:
        return None
    if reason is not None:
        notes.append(f"no global minimum for this architecture ({reason}): gap >= risk - best point found")
        return None
    from milpland.search.solve import solve_global  # late: the search stack is heavy

    result = solve_global(spec.with_options(time_limit=limit))
    in_box = _deep_point_in_box(spec, params)
    fields.update(global_risk=float(result.risk), global_lower_bound=float(result.lower_bound),
                  global_certified=bool(result.certified), global_box_active=bool(result.box_active),
                  global_status=result.status, global_params=result.params, point_in_box=in_box)
    zero = result.certified and result.risk <= result.options.get("abs_tol", 0.0)
    if result.certified and (in_box or zero):
        fields["gap"] = risk - float(result.risk)
    elif in_box:
        fields["gap_upper_bound"] = risk - float(result.lower_bound)
        notes.append("the two-layer global solve is not certified: gap between gap_lower_bound and gap_upper_bound")
    if not in_box and not zero:
        notes.append("the point lies outside the spec's box (canonical layer-2 weights, DESIGN §6a): the global "
                     "minimum over the box is not comparable; gap_lower_bound still holds")
    return result


def _deep_point_in_box(spec, params: DeepParams) -> bool | None:
    try:
        data = TwoLayerData.of(spec)
        return canonical_from_params(params, data).in_box(data)
    except MilplandError:
        return None


def _carried_solutions(spec, run_global, limit, notes) -> list[tuple[str, DeepParams]]:
    """One-hidden-layer global minima of widths 1 and m1, carried through the other layers."""
    if not run_global:
        return []
    out = []
    for width in sorted({1, spec.network.hidden[0]}):
        try:
            deep, result = embedded_global(spec, time_limit=limit / 4, width=width)
        except MilplandError as exc:
            notes.append(f"embedded global solve (width {width}) not used: {exc}")
            continue
        state = "certified" if result.certified else "not certified"
        out.append((f"one-hidden-layer global solve (width {width}, {state}) embedded by carrying layers", deep))
    return out


def _construction_seeds(spec) -> list[tuple[str, DeepParams]]:
    """He et al.'s point (the least-squares fit carried through every layer): a descent seed."""
    try:
        c = he_deep(spec.X, spec.y, spec.network.activation, list(spec.network.hidden), loss=spec.loss)
    except MilplandError:
        return []
    if not spec.network.output_bias and float(c.params.b[-1][0]) != 0.0:
        return []
    return [("construction of He et al. (least-squares fit carried through the layers)", c.params)]


def _minlp_point(spec, limit, notes) -> list:
    """SCIP's MINLP (two layers, 1-D, n <= MINLP_MAX_N): its best point, re-evaluated."""
    if two_layer_reason(spec) is not None or spec.n > MINLP_MAX_N:
        return []
    try:
        from milpland.search.deep_minlp import solve_minlp

        out = solve_minlp(spec, time_limit=min(MINLP_SECONDS, limit / 4))
    except MilplandError as exc:
        notes.append(f"MINLP not used: {exc}")
        return []
    if out.net is None:
        return []
    p = out.net.to_params(TwoLayerData.of(spec))
    return [(_risk(p, spec), f"SCIP MINLP ({out.status}, {out.seconds:.1f} s)", p)]


def embedded_global(spec: InstanceSpec, *, time_limit: float, width: int | None = None):
    """(deep params, SolveResult): the global minimum of the one-hidden-layer net of the first width
    (or ``width`` <= it, the other units of layer 1 left at zero), carried through the remaining
    hidden layers (`carry_layers`).  Its risk equals the solve's."""
    from milpland.search.solve import solve_global

    net = spec.network
    width = net.hidden[0] if width is None else width
    shallow = dataclasses.replace(spec, network=NetworkSpec(hidden=(width,), activation=net.activation,
                                                            output_bias=net.output_bias))
    result = solve_global(shallow.with_options(time_limit=time_limit))
    if result.params is None:
        raise MilplandError(f"the one-hidden-layer solve returned no point (status {result.status})")
    deep = carry_layers(_padded(DeepParams.from_one_hidden(result.params), net.hidden[0]), spec.X, net.activation,
                        net.hidden[1:], output_bias=net.output_bias)
    return deep, result


def _padded(params: DeepParams, width: int) -> DeepParams:
    """A one-hidden-layer net widened to ``width`` units by zero units (same outputs)."""
    W1, b1, v = params.W[0], params.b[0], params.W[1]
    extra = width - W1.shape[0]
    if extra <= 0:
        return params
    return DeepParams((np.vstack([W1, np.zeros((extra, W1.shape[1]))]), np.hstack([v, np.zeros((1, extra))])),
                      (np.concatenate([b1, np.zeros(extra)]), params.b[1]))


def carry_layers(params: DeepParams, X, act: Activation, widths, *, output_bias: bool = True) -> DeepParams:
    """Append hidden layers that carry the scalar output F inside one linear piece q of σ.

    Each new layer: unit 0 has pre-activation τ + κ(F − μ) (μ = mean F on the data), the
    others the constant τ, with τ + κs inside piece q for |s| ≤ max|F − μ|; there σ = αz + β,
    so a_0 = ν + ακ(F − μ) with ν = ατ + β, and F = (a_0 − ν)/(ακ) + μ is the new readout.
    Exact on the data (not everywhere).  Without an output bias the constant μ − ν/(ακ) is
    carried by the constant unit 1 (needs width ≥ 2 and ν ≠ 0).
    """
    q = choose_piece(act)
    alpha, beta = act.slopes[q], act.intercepts[q]
    Ws, bs = list(params.W[:-1]), list(params.b[:-1])
    V, c = params.W[-1], params.b[-1]
    F = params.forward(X, act)
    target = F.copy()
    for m in widths:
        mu = float(np.mean(F))
        tau, kappa = frame(act, q, float(np.max(np.abs(F - mu))))
        nu = alpha * tau + beta
        W = np.zeros((m, V.shape[1]))
        b = np.full(m, tau)
        W[0] = kappa * V[0]
        b[0] = tau + kappa * (float(c[0]) - mu)
        Ws.append(W)
        bs.append(b)
        V = np.zeros((1, m))
        V[0, 0] = 1.0 / (alpha * kappa)
        c = np.array([mu - nu / (alpha * kappa)])
    if not output_bias and c[0] != 0.0:
        if V.shape[1] < 2 or nu == 0.0:
            raise MilplandError("carrying layers without an output bias needs a last hidden width >= 2")
        V[0, 1] = float(c[0]) / nu
        c = np.array([0.0])
    out = DeepParams(tuple(Ws) + (V,), tuple(bs) + (c,))
    got = out.forward(X, act)
    if np.max(np.abs(got - target)) > 1e-8 * max(1.0, float(np.max(np.abs(target)))):
        raise MilplandError(f"internal: carried network misses the shallow one by {np.max(np.abs(got - target)):.3g}")
    return out


def multistart_descent(spec: InstanceSpec, params: DeepParams, *, starts: int = 4, seed: int = 0,
                       max_iter: int = 2000) -> DeepParams | None:
    """The best of ``starts`` L-BFGS runs on the deep net from seeded He-normal initialisations."""
    runs = multistart(spec, params, starts=starts, seed=seed)
    return runs[0][1] if runs else None


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _risk(params: DeepParams, spec: InstanceSpec) -> float:
    """The objective: the risk, plus the weight decay (`Loss.objective`) when the spec has one."""
    if spec.loss.decayed:
        return spec.loss.objective(params.to_one_hidden(), spec.X, spec.y, spec.network.activation)
    return spec.loss.risk(params.forward(spec.X, spec.network.activation), spec.y)


def _constant_risk(spec: InstanceSpec) -> float:
    """Risk of the best constant output (0 without output bias): the scale of the risk floor."""
    y, loss = spec.y, spec.loss
    if not spec.network.output_bias:
        c = 0.0
    elif loss.kind == "squared":
        c = float(np.mean(y))
    elif loss.kind == "absolute":
        c = float(np.median(y))
    else:
        return min(loss.risk(np.full_like(y, v), y) for v in (-1.0, 1.0)) or 1.0
    return loss.risk(np.full_like(y, c), y) or 1.0


def _ties(params: DeepParams, spec: InstanceSpec) -> int:
    return params.ties(spec.X, spec.network.activation, tol=TIE_TOL * max(1.0, _zmax(params, spec)))


def _zmax(params: DeepParams, spec: InstanceSpec) -> float:
    return max((float(np.max(np.abs(z), initial=0.0)) for z in params.pre_activations(spec.X, spec.network.activation)),
               default=0.0)


def _num(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


