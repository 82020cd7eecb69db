"""Losses, the empirical risk R = weight * sum_i loss(f_i, y_i) (DESIGN §1) and the objective
with weight decay (DESIGN §4d).

The logistic loss log(1 + exp(-y f)) (labels +-1) is evaluated as ``np.logaddexp(0, -y f)``: no
overflow for large margins of either sign.

``reduction = "mean"`` gives weight 1/n; ``"half_sum"`` gives weight 1/2 (Yun et al.
use 1/2 * SSE).  Every value milpland reports is in the spec's reduction.

``weight_decay = lam`` adds (lam / 2) * ||theta||^2 to the risk -- over W1, b1, v and the output
bias c, or over W1 and v only with ``decay_biases = false`` -- which is what PyTorch's SGD
``weight_decay = lam`` minimises.  `Loss.objective` is the one numpy evaluation of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOSS_KINDS = ("squared", "absolute", "hinge", "logistic")
LABEL_LOSSES = ("hinge", "logistic")  # classification losses: labels -1 and +1
REDUCTIONS = ("mean", "half_sum")
# Without weight decay a logistic minimum may lie at infinity (DESIGN §4e): only `solve` (the MILP's box
# minimum, with its limit-point report) handles it; everything else refuses with this line.
LOGISTIC_NEEDS_DECAY = ("loss.kind: the logistic loss without weight decay is handled by solve (method milp) only; "
                        "set [loss] weight_decay > 0 for this")


@dataclass(frozen=True)
class Loss:
    kind: str = "squared"
    reduction: str = "mean"
    weight_decay: float = 0.0  # lam >= 0: objective = risk + (lam / 2) ||theta||^2
    decay_biases: bool = True  # false: the penalty leaves b1 and c out

    def weight(self, n: int) -> float:
        return 1.0 / n if self.reduction == "mean" else 0.5

    def per_sample(self, f: np.ndarray, y: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=float)
        y = np.asarray(y, dtype=float)
        if self.kind == "squared":
            return (f - y) ** 2
        if self.kind == "absolute":
            return np.abs(f - y)
        if self.kind == "logistic":  # log(1 + exp(-y f)), stable for any margin
            return np.logaddexp(0.0, -y * f)
        return np.maximum(0.0, 1.0 - y * f)  # hinge, labels +-1

    def risk(self, f: np.ndarray, y: np.ndarray) -> float:
        return float(self.weight(len(y)) * np.sum(self.per_sample(f, y)))

    @property
    def decayed(self) -> bool:
        """The objective has a weight-decay term (lam > 0)."""
        return self.weight_decay > 0.0

    def penalty(self, params) -> float:
        """(lam / 2) (||W1||^2 + ||v||^2 [+ ||b1||^2 + c^2 with decay_biases]) of `OneHiddenParams`."""
        if not self.decayed:
            return 0.0
        total = float(np.sum(np.square(params.W1)) + np.sum(np.square(params.v)))
        if self.decay_biases:
            total += float(np.sum(np.square(params.b1)) + float(params.c) ** 2)
        return 0.5 * self.weight_decay * total

    def objective(self, params, X: np.ndarray, y: np.ndarray, act) -> float:
        """risk(f(X), y) + penalty(params): the value milpland minimises, by a plain numpy forward pass."""
        return self.risk(params.forward(X, act), y) + self.penalty(params)

    @property
    def is_linear_programmable(self) -> bool:
        """Absolute and hinge cells are LPs; squared cells are convex QPs (logistic: exponential cones)."""
        return self.kind in ("absolute", "hinge")

    @property
    def smooth(self) -> bool:
        """A loss with a curved graph (squared, logistic): the MILP bounds it by tangent cuts (DESIGN §4)."""
        return self.kind in ("squared", "logistic")
