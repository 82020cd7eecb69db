"""Losses and the empirical risk R = weight * sum_i loss(f_i, y_i) (DESIGN §1).

``reduction = "mean"`` gives weight 1/n; ``"half_sum"`` gives weight 1/2 (Yun et al.
use 1/2 * SSE).  Every value milpland reports is in the spec's reduction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOSS_KINDS = ("squared", "absolute", "hinge")
REDUCTIONS = ("mean", "half_sum")


@dataclass(frozen=True)
class Loss:
    kind: str = "squared"
    reduction: str = "mean"

    def weight(self, n: int) -> float:
        return 1.0 / n if self.reduction == "mean" else 0.5

    def per_sample(self, f: np.ndarray, y: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=float)
        y = np.asarray(y, dtype=float)
        if self.kind == "squared":
            return (f - y) ** 2
        if self.kind == "absolute":
            return np.abs(f - y)
        return np.maximum(0.0, 1.0 - y * f)  # hinge, labels +-1

    def risk(self, f: np.ndarray, y: np.ndarray) -> float:
        return float(self.weight(len(y)) * np.sum(self.per_sample(f, y)))

    @property
    def is_linear_programmable(self) -> bool:
        """Absolute and hinge cells are LPs; squared cells are convex QPs."""
        return self.kind != "squared"
