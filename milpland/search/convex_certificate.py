"""A global certificate for weight decay from the convex program over EVERY activation pattern
(DESIGN §4f): no cell enumeration when the program's solution has at most m units.

Every width-m network with balanced units maps to a feasible point of the program over all unit
patterns of the data (`milpland.cells.arrangement.unit_patterns`: every strictly realisable
pattern; a unit with ties lies in the closed cone of one of them) with no larger objective, so

    program minimum  <=  width-m global minimum  <=  J(any width-m network).

Lower bound: `convex_program.dual_bound` at Clarabel's multipliers, recomputed in numpy, over the
region ‖q_g‖ <= U/λ with U the numpy objective of the program's own network (the program's
minimiser has λ‖q_g‖ <= its objective <= U).  Upper bound: that network, when it has at most m
units (a width-m network, re-evaluated by the plain forward pass).  When both meet within the
solve's tolerance the width-m global minimum is certified over ALL weights.  Otherwise the bound
is still valid but the search falls back to the cells.

Applies to one hidden layer, positively homogeneous two-piece activations, squared or absolute
loss, λ > 0 with penalised biases (decay_biases = true).
"""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np

from milpland.cells.arrangement import unit_patterns
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import InstanceSpec
from milpland.search.convex_program import (
    ConvexProgram,
    Decay,
    ProgramSolution,
    dual_bound,
    program_for,
    solve_program,
    support,
    to_network,
)
from milpland.search.unit_hull import vertex_rays

TIE_TOL = 1e-9  # a sample is on a vertex ray's hyperplane when |x̃·r| <= this times ||x̃|| (unit r)
PARALLEL_TOL = 1e-9  # groups of one sign this close to parallel are one unit (`merge_parallel`)
MAX_PROGRAM_ENTRIES = 2_000_000  # groups x samples of the cone rows: larger programs are not tried


@dataclass(frozen=True, eq=False)
class ConvexCertificate:
    lower_bound: float  # numpy bound on the program's minimum, hence on the width-m global minimum
    params: OneHiddenParams  # the program's network, padded to the spec's width when it has fewer units
    objective: float  # J(params) by the plain forward pass
    units: int  # non-zero groups of the program's solution (the network's width)
    patterns: int  # unit patterns in the program
    solver_status: str
    seconds: float

    def width_fits(self, width: int) -> bool:
        return self.units <= width


def merge_parallel(program: ConvexProgram, solution: ProgramSolution) -> ProgramSolution:
    """Groups of one sign whose q's point the same way (cosine >= 1 - PARALLEL_TOL) are one unit: σ is positively
    homogeneous, so s σ(x̃·q1) + s σ(x̃·q2) = s σ(x̃·(q1 + q2)) and ‖q1‖ + ‖q2‖ = ‖q1 + q2‖ for parallel q's.  A
    unit with ties lies on the boundary of several patterns' cones and the solver may split it among
    them; merged it is one unit.  (Near-parallel groups merge approximately: the network is re-evaluated
    in numpy, so the upper bound stays a real network's objective.)"""
    Q = solution.Q.copy()
    keep = support(program, Q)
    norms = np.linalg.norm(Q, axis=1)
    live = [g for g in np.argsort(-norms) if keep[g]]
    for i, g in enumerate(live):
        if not keep[g]:
            continue
        for h in live[i + 1:]:
            if keep[h] and program.signs[h] == program.signs[g] and \
                    Q[g] @ Q[h] >= (1.0 - PARALLEL_TOL) * norms[g] * norms[h]:
                Q[g] += Q[h]
                Q[h] = 0.0
                keep[h] = False
    return replace(solution, Q=Q)


def program_patterns(X: np.ndarray, act) -> np.ndarray:
    """0/1 patterns (P, n) whose closed cones {q : (2D − I) X̃ q >= 0} cover R^{d+1}.

    d = 1: the strictly realisable patterns (`unit_patterns`, a sort).  d >= 2, where those cost an LP
    each: the patterns around every vertex ray r of the arrangement (`unit_hull.vertex_rays`) — sign(X̃ r)
    with the samples tied at r (x̃_i·r = 0) set every way.  When X̃ has full column rank every cell is a
    pointed cone, so it has a vertex ray and its pattern is among these.  The set may hold patterns that
    no open cell has; that is harmless: on its closed cone a pattern differs from sign(X̃ q) only where
    x̃_i·q = 0, where both pieces give 0, so its units are real units."""
    if X.shape[1] == 1:
        return unit_patterns(X, act) == 1
    Xt = np.column_stack([X, np.ones(len(X))])
    if np.linalg.matrix_rank(Xt) < Xt.shape[1]:
        return unit_patterns(X, act) == 1
    rays = vertex_rays(Xt)
    Z = Xt @ rays.T  # (n, rays)
    tied = np.abs(Z) <= TIE_TOL * np.linalg.norm(Xt, axis=1)[:, None]
    found = []
    for r in range(rays.shape[0]):
        base = Z[:, r] > 0
        ties = np.flatnonzero(tied[:, r])
        for bits in itertools.product((False, True), repeat=len(ties)):
            pattern = base.copy()
            pattern[ties] = bits
            found.append(pattern)
    return np.unique(np.array(found), axis=0)


def convex_certificate_applies(spec: InstanceSpec) -> bool:
    act, loss = spec.network.activation, spec.loss
    return (spec.network.depth == 1 and act.homogeneous and act.n_pieces == 2 and loss.kind in ("squared", "absolute")
            and loss.weight_decay > 0 and loss.decay_biases)


def convex_certificate(spec: InstanceSpec, *, time_limit: float = np.inf) -> ConvexCertificate | None:
    """The program over every unit pattern, its network and its numpy lower bound; None when it does not
    apply, is too large (MAX_PROGRAM_ENTRIES), or Clarabel fails or reaches ``time_limit`` seconds (the
    caller falls back to the cells)."""
    if not convex_certificate_applies(spec):
        return None
    started = time.perf_counter()
    act = spec.network.activation
    masks = program_patterns(spec.X, act)
    if 2 * masks.shape[0] * spec.n > MAX_PROGRAM_ENTRIES:
        return None
    decay = Decay(float(spec.loss.weight_decay), True)
    program = program_for(spec.X, spec.y, act, spec.loss, decay, output_bias=spec.network.output_bias, masks=masks)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solution = solve_program(program, time_limit=time_limit - (time.perf_counter() - started))
    except RuntimeError:
        return None
    merged = merge_parallel(program, solution)
    units = int(np.count_nonzero(support(program, merged.Q)))
    params = to_network(program, merged, act, spec.width)
    objective = spec.loss.objective(params, spec.X, spec.y, act)
    rho = objective / decay.weight_decay
    lower = min(dual_bound(program, solution.mu, solution.nu, rho), objective)
    return ConvexCertificate(lower_bound=lower, params=params, objective=objective, units=units,
                             patterns=int(masks.shape[0]), solver_status=solution.status,
                             seconds=time.perf_counter() - started)
