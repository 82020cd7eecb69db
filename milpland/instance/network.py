"""Network parameters in ordinary (original) coordinates and the plain numpy forward pass.

This is the independent side of every verification: nothing here knows about
MILPs, scaled variables or cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from milpland.instance.activations import Activation


@dataclass(frozen=True, eq=False)
class OneHiddenParams:
    """f(x) = sum_j v_j sigma(W1[j] . x + b1[j]) + c."""

    W1: np.ndarray  # (m, d)
    b1: np.ndarray  # (m,)
    v: np.ndarray  # (m,)
    c: float

    @property
    def width(self) -> int:
        return self.W1.shape[0]

    def pre_activations(self, X: np.ndarray) -> np.ndarray:
        """Z[i, j] = W1[j] . x_i + b1[j]."""
        return X @ self.W1.T + self.b1

    def forward(self, X: np.ndarray, act: Activation) -> np.ndarray:
        return act(self.pre_activations(X)) @ self.v + self.c

    def pattern(self, X: np.ndarray, act: Activation) -> np.ndarray:
        """Piece index of every (sample, unit); ties at a breakpoint go to the lower piece."""
        return act.piece(self.pre_activations(X))

    def to_json(self) -> dict:
        return {
            "W1": self.W1.tolist(),
            "b1": self.b1.tolist(),
            "v": self.v.tolist(),
            "c": float(self.c),
        }

    @classmethod
    def from_json(cls, obj: dict) -> "OneHiddenParams":
        W1 = np.atleast_2d(np.asarray(obj["W1"], dtype=float))
        return cls(
            W1=W1,
            b1=np.asarray(obj["b1"], dtype=float).reshape(-1),
            v=np.asarray(obj["v"], dtype=float).reshape(-1),
            c=float(obj.get("c", 0.0)),
        )
