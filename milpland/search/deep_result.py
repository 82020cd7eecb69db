"""The result of a two-layer solve: what it claims, its numpy re-check, JSON and a row.

The same keys as `SolveResult` where they mean the same (risk, lower_bound, gap, certified,
box_active, verification, ...); ``params`` is ``{"W": [...], "b": [...]}`` per layer and
``pattern`` one (n x width) piece matrix per hidden layer.  ``certified`` holds when the search
finished, the bounds meet within max(rel_gap * risk, abs_tol), no canonical layer-2 weight is on
the box and the re-check passed; a verified risk of zero (to abs_tol) is certified regardless.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from milpland.cells.verify import Verification
from milpland.instance.deep import DeepParams
from milpland.instance.spec import InstanceSpec
from milpland.records import SCHEMA_VERSION
from milpland.search import memory
from milpland.search.deep_model import CanonicalNet, TwoLayerData
from milpland.search.result import Seconds, SolveResult
from milpland.search.result import _finite_or_none as _finite

RISK_TOL = 1e-7  # relative difference between the claimed and the re-evaluated risk
TIE_TOL = 1e-7  # pre-activations this close (relative) to 0 may sit on either piece


@dataclass(frozen=True, eq=False)
class DeepSolveResult:
    instance: str
    instance_hash: str
    method: str
    loss: str
    reduction: str
    architecture: str
    status: str  # optimal | time_limit | interrupted
    risk: float
    lower_bound: float
    box_weight: float
    box_output: float
    box_active: bool
    certified: bool
    params: DeepParams | None
    pattern: tuple  # one (n, width) int array per hidden layer (canonical claim)
    signs: np.ndarray | None  # (m2,) output signs
    knots: np.ndarray | None  # (m1,) layer-1 knots t_j
    orientations: np.ndarray | None  # (m1,) s_j
    seconds: Seconds
    nodes: int = 0
    iterations: int = 0
    solver_name: str = "clarabel+highs"
    solver_version: str = ""
    options: dict = field(default_factory=dict)
    seed: int = 0
    verification: Verification | None = None
    message: str = ""

    gap = SolveResult.gap  # (risk - lower_bound) / |risk|, the same definition

    def to_json(self) -> dict:
        return {
            "instance": self.instance, "instance_hash": self.instance_hash, "method": self.method,
            "loss": self.loss, "reduction": self.reduction, "architecture": self.architecture,
            "status": self.status, "risk": _finite(self.risk), "lower_bound": _finite(self.lower_bound),
            "gap": _finite(self.gap), "certified": self.certified,
            "box": {"weight": self.box_weight, "output": self.box_output}, "box_active": self.box_active,
            "params": self.params.to_json() if self.params is not None else None,
            "pattern": [p.tolist() for p in self.pattern],
            "signs": self.signs.tolist() if self.signs is not None else None,
            "knots": self.knots.tolist() if self.knots is not None else None,
            "orientations": self.orientations.tolist() if self.orientations is not None else None,
            "seconds": asdict(self.seconds), "nodes": self.nodes, "iterations": self.iterations,
            "solver": {"name": self.solver_name, "version": self.solver_version},
            "options": self.options, "seed": self.seed,
            "verification": asdict(self.verification) if self.verification is not None else None,
            "message": self.message, "schema_version": SCHEMA_VERSION,
        }

    def to_row(self) -> dict:
        v = self.verification
        return {
            "instance": self.instance, "instance_hash": self.instance_hash, "method": self.method,
            "loss": self.loss, "reduction": self.reduction, "architecture": self.architecture,
            "status": self.status, "risk": self.risk, "lower_bound": self.lower_bound, "gap": self.gap,
            "certified": self.certified, "box_weight": self.box_weight, "box_output": self.box_output,
            "box_active": self.box_active, "seconds_build": self.seconds.build,
            "seconds_solve": self.seconds.solve, "seconds_total": self.seconds.total, "nodes": self.nodes,
            "iterations": self.iterations, "solver_name": self.solver_name, "solver_version": self.solver_version,
            "options": str(sorted(self.options.items())), "seed": self.seed,
            "verified": bool(v.ok) if v is not None else False,
            "verification_risk_difference": v.risk_difference if v is not None else float("nan"),
            "pattern_mismatches": v.pattern_mismatches if v is not None else -1,
            "message": self.message, "schema_version": SCHEMA_VERSION,
        }


def verify_deep(spec: InstanceSpec, data: TwoLayerData, net: CanonicalNet, params: DeepParams,
                claimed_risk: float) -> tuple[Verification, tuple]:
    """Re-check ``params`` with the numpy forward pass of `DeepParams`: its risk against the claim,
    and its pattern in both layers against the canonical network's (ties and units that change
    no output excluded)."""
    act = spec.network.activation
    risk = spec.loss.risk(params.forward(spec.X, act), spec.y)
    difference = abs(risk - claimed_risk) / max(1.0, abs(claimed_risk))
    g1, z2 = net.pre_activations(data)
    claimed = ((g1[data.where] > 0).astype(int), (z2[data.where] > 0).astype(int))
    Z = params.pre_activations(spec.X, act)
    mismatches, ties = 0, 0
    free = [np.all(net.A == 0, axis=0), np.all(net.A == 0, axis=1) & (net.b == 0)]
    for layer, (z, want) in enumerate(zip(Z, claimed)):
        tie = np.abs(z) <= TIE_TOL * (1.0 + np.abs(z).max(initial=0.0))
        ties += int(np.sum(tie))
        mismatches += int(np.sum((act.piece(z) != want) & ~tie & ~free[layer][None, :]))
    ver = Verification(risk_numpy=risk, risk_difference=difference, pattern_mismatches=mismatches, ties=ties,
                       ok=bool(difference <= RISK_TOL and mismatches == 0))
    return ver, claimed


# node QPs (and the absolute and hinge losses' LPs): the compiled interior point (small_qp, numba) with
# Clarabel as its fallback; the exact layer-2 solves by HiGHS
SOLVER_NAME = "small_qp+clarabel+highs"


def assemble(spec: InstanceSpec, data: TwoLayerData, incumbent, *, lower: float, complete: bool, abs_tol: float,
             started: float, stats, incumbent_seconds: float, options) -> DeepSolveResult:
    """Bounds, status, certificate and verification of a two-layer solve."""
    import clarabel
    import highspy
    import numba

    net = incumbent.net
    params = net.to_params(data)
    verification, claimed = verify_deep(spec, data, net, params, incumbent.risk)
    upper = verification.risk_numpy
    closed = upper - lower <= max(spec.solve.rel_gap * abs(upper), abs_tol)
    zero_risk = upper <= abs_tol
    box_active = net.box_active(data)
    certified = bool(verification.ok and ((closed and complete and not box_active) or zero_risk))
    notes = list(stats.notes)
    if stats.interrupted:
        notes.append("interrupted")
    if zero_risk and box_active:
        notes.insert(0, "the risk is zero (to abs_tol), the smallest any network can reach: a global minimum "
                        "over all weights, although the returned point touches the box")
    elif box_active:
        notes.insert(0, "a box bound is active at the minimiser (a canonical layer-2 weight is at the box): "
                        "this is the minimum over the box, not a global minimum; re-solve with a larger box")
    if stats.memory_held and not complete:
        notes.append(memory.stopped_note(stats.memory_held, memory.limit_bytes(spec)))
    if stats.solver_failures:
        notes.append(f"{stats.solver_failures} node QP(s) without a usable solution kept their parent's bound")
    total = time.perf_counter() - started
    return DeepSolveResult(
        instance=spec.name, instance_hash=spec.instance_hash(), method="deep-bnb", loss=spec.loss.kind,
        reduction=spec.loss.reduction, architecture=spec.architecture(),
        status="optimal" if complete else ("interrupted" if stats.interrupted else
                                           "memory_limit" if stats.memory_held else "time_limit"),
        risk=upper, lower_bound=min(lower, upper),
        box_weight=spec.box.weight, box_output=spec.box.output, box_active=box_active, certified=certified,
        params=params, pattern=claimed, signs=net.signs.copy(), knots=net.t.copy(),
        orientations=net.orientations.copy(),
        seconds=Seconds(build=0.0, solve=total - incumbent_seconds, total=total), nodes=stats.nodes,
        iterations=0, solver_name=SOLVER_NAME,
        solver_version=f"{numba.__version__}+{clarabel.__version__}+{highspy.Highs().version()}",
        options={"time_limit": spec.solve.time_limit, "rel_gap": spec.solve.rel_gap, "abs_tol": abs_tol,
                 "method": "deep-bnb", "incumbent_found_by": incumbent.found_by,
                 "incumbent_seconds": incumbent_seconds, "kernel_load_seconds": stats.kernel_load_seconds,
                 "roots": stats.roots,
                 "pattern_splits": stats.pattern_splits, "knot_splits": stats.knot_splits,
                 "share_splits": stats.share_splits, "polished": stats.polished,
                 "solver_failures": stats.solver_failures, "options": asdict(options)},
        seed=spec.solve.seed, verification=verification, message="; ".join(notes),
    )
