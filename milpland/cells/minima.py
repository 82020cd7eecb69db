"""Records of certified local minima (DESIGN §5, §9): one row per distinct local minimum."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from milpland.instance.network import OneHiddenParams
from milpland.records import SCHEMA_VERSION

CERTIFICATES = ("interior", "boundary")
FOUND_BY = ("enumerate", "bnb", "milp", "sample")


@dataclass(frozen=True, eq=False)
class LocalMinimum:
    instance: str
    cell: str  # stable id of the pattern and signs (Cell.key())
    risk: float  # in the spec's reduction
    certificate: str  # interior | boundary
    margin: float  # largest interior margin of an optimal point of the cell (0 for boundary minima)
    valley_dim: int  # dim null(Phi_A): dimension of the optimal valley inside the cell (theta~ space)
    params: OneHiddenParams  # a minimiser in ordinary weights
    fitted: np.ndarray  # f(x_1..x_n): the key by which distinct minima are deduplicated
    found_by: str  # enumerate | milp | sample
    gap: float = float("nan")  # risk - global minimum (nan until the global minimum is known)
    spurious: bool = False  # gap > tolerance
    basin_fraction: float = float("nan")  # sample: fraction of the starts that ended in this minimum

    def to_json(self) -> dict:
        return {
            "instance": self.instance,
            "cell": self.cell,
            "risk": float(self.risk),
            "gap": _float_or_none(self.gap),
            "spurious": bool(self.spurious),
            "certificate": self.certificate,
            "margin": float(self.margin),
            "valley_dim": int(self.valley_dim),
            "params": self.params.to_json(),
            "fitted": self.fitted.tolist(),
            "found_by": self.found_by,
            "basin_fraction": _float_or_none(self.basin_fraction),
        }

    def to_row(self) -> dict:
        row = self.to_json()
        row["params"] = json.dumps(row["params"])
        row["fitted"] = json.dumps(row["fitted"])
        row["gap"] = self.gap
        row["basin_fraction"] = self.basin_fraction
        row["schema_version"] = SCHEMA_VERSION
        return row


def _float_or_none(value: float):
    return float(value) if np.isfinite(value) else None
