"""The typed result of a global solve: what it claims, and how it becomes a JSON object and a row.

Statuses follow Pyomo's contrib.solver spirit: a termination status plus the
incumbent (``risk``, an upper bound) and the proven ``lower_bound``.  ``certified``
is true only when the bound proves the incumbent, risk - lower_bound <=
max(rel_gap * risk, abs_tol), no box bound is active at the incumbent and the numpy
re-check passed.  ``abs_tol`` (recorded in ``options``) is 1e-9 times the risk of the
best constant predictor: it only matters for risks near zero, where a relative gap
means nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from milpland.cells.verify import Verification
from milpland.instance.network import OneHiddenParams
from milpland.records import SCHEMA_VERSION

STATUSES = ("optimal", "time_limit", "memory_limit", "interrupted", "infeasible", "error")


@dataclass(frozen=True)
class Seconds:
    build: float = 0.0
    solve: float = 0.0
    total: float = 0.0


@dataclass(frozen=True, eq=False)
class SolveResult:
    instance: str
    instance_hash: str
    method: str
    loss: str
    reduction: str
    architecture: str
    status: str
    risk: float  # upper bound: the risk of the returned point, in the spec's reduction
    lower_bound: float
    box_weight: float
    box_output: float
    box_active: bool
    certified: bool
    params: OneHiddenParams | None
    pattern: np.ndarray | None  # (n, m) piece index of every (sample, unit)
    signs: np.ndarray | None  # (m,) sign class of the returned point
    seconds: Seconds
    nodes: int = 0
    iterations: int = 0  # outer-approximation rounds for squared loss; 1 otherwise
    solver_name: str = "highs"
    solver_version: str = ""
    options: dict = field(default_factory=dict)
    seed: int = 0
    verification: Verification | None = None
    message: str = ""
    weight_decay: float = 0.0  # lam: risk and lower_bound are then of risk + (lam/2)||theta||^2 (DESIGN §4d)
    decay_biases: bool = True
    region: str = ""  # what the certificate covers when it is not the box (weight decay: "all weights")
    limit_point: str = ""  # logistic loss, no weight decay: why the infimum over all weights is not attained

    @property
    def gap(self) -> float:
        """Relative gap (risk - lower_bound) / max(|risk|, 1e-12); 0 when both are 0."""
        if not np.isfinite(self.risk) or not np.isfinite(self.lower_bound):
            return float("inf")
        diff = max(0.0, self.risk - self.lower_bound)
        return 0.0 if diff == 0.0 else diff / max(abs(self.risk), 1e-12)

    def to_json(self) -> dict:
        """The object printed by ``milpland solve --format json``."""
        return {
            "instance": self.instance,
            "instance_hash": self.instance_hash,
            "method": self.method,
            "loss": self.loss,
            "reduction": self.reduction,
            "architecture": self.architecture,
            "status": self.status,
            "risk": _finite_or_none(self.risk),
            "lower_bound": _finite_or_none(self.lower_bound),
            "gap": _finite_or_none(self.gap),
            "certified": self.certified,
            "box": {"weight": self.box_weight, "output": self.box_output},
            "box_active": self.box_active,
            "params": self.params.to_json() if self.params is not None else None,
            "pattern": self.pattern.tolist() if self.pattern is not None else None,
            "signs": self.signs.tolist() if self.signs is not None else None,
            "seconds": asdict(self.seconds),
            "nodes": self.nodes,
            "iterations": self.iterations,
            "solver": {"name": self.solver_name, "version": self.solver_version},
            "options": self.options,
            "seed": self.seed,
            "verification": asdict(self.verification) if self.verification is not None else None,
            "message": self.message,
            "weight_decay": self.weight_decay,
            "decay_biases": self.decay_biases,
            "region": self.region or "box",
            "limit_point": self.limit_point,
            "schema_version": SCHEMA_VERSION,
        }

    def to_row(self) -> dict:
        """A flat record for a pandas row (DESIGN §9)."""
        v = self.verification
        return {
            "instance": self.instance,
            "instance_hash": self.instance_hash,
            "method": self.method,
            "loss": self.loss,
            "reduction": self.reduction,
            "architecture": self.architecture,
            "status": self.status,
            "risk": self.risk,
            "lower_bound": self.lower_bound,
            "gap": self.gap,
            "certified": self.certified,
            "box_weight": self.box_weight,
            "box_output": self.box_output,
            "box_active": self.box_active,
            "seconds_build": self.seconds.build,
            "seconds_solve": self.seconds.solve,
            "seconds_total": self.seconds.total,
            "nodes": self.nodes,
            "iterations": self.iterations,
            "solver_name": self.solver_name,
            "solver_version": self.solver_version,
            "options": str(sorted(self.options.items())),
            "seed": self.seed,
            "verified": bool(v.ok) if v is not None else False,
            "verification_risk_difference": v.risk_difference if v is not None else float("nan"),
            "pattern_mismatches": v.pattern_mismatches if v is not None else -1,
            "message": self.message,
            "weight_decay": self.weight_decay,
            "decay_biases": self.decay_biases,
            "limit_point": self.limit_point,
            "schema_version": SCHEMA_VERSION,
        }


def _finite_or_none(value: float):
    return float(value) if value is not None and np.isfinite(value) else None
