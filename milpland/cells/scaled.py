"""The scaled reparameterisation of a one-hidden-layer network (DESIGN §3).

With s_j = sign(v_j), rho_j = |v_j|, u~_j = rho_j w_j and a~_j = rho_j b_j, the
scaled pre-activation g_ij = u~_j . x_i + a~_j = rho_j z_ij is linear, and on piece k
unit j contributes s_j (alpha_k g_ij + beta_k rho_j).  For positively homogeneous
activations beta = 0 and rho drops out.

The two maps here, `from_original` and `ScaledParams.to_original`, are the only
places where the two coordinate systems meet.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from milpland.instance.activations import Activation
from milpland.instance.network import OneHiddenParams

# A unit with rho below this but non-zero scaled weights is a limit point v -> 0, w -> inf.
RHO_ATTAINED = 1e-9
# The rho used to realise such a limit point approximately in original coordinates.
RHO_LIMIT_SUBSTITUTE = 1e-7
# Scaled weights this small (relative to the largest unit) are solver round-off: the unit is zero.
NEGLIGIBLE_NORM = 1e-12


@dataclass(frozen=True, eq=False)
class ScaledParams:
    U: np.ndarray  # (m, d)  u~_j
    a: np.ndarray  # (m,)    a~_j
    rho: np.ndarray  # (m,)  |v_j|; ignored by homogeneous activations
    c: float
    signs: np.ndarray  # (m,) +1 / -1

    def scaled_pre_activations(self, X: np.ndarray) -> np.ndarray:
        """G[i, j] = u~_j . x_i + a~_j."""
        return X @ self.U.T + self.a

    def forward(self, X: np.ndarray, act: Activation) -> np.ndarray:
        """Network output computed in scaled coordinates: c + sum_j s_j rho_j sigma(g_ij / rho_j)."""
        G = self.scaled_pre_activations(X)
        if act.homogeneous:
            return act(G) @ self.signs + self.c
        rho = np.maximum(self.rho, RHO_ATTAINED)
        return (rho * act(G / rho)) @ self.signs + self.c

    def to_original(self, act: Activation) -> tuple[OneHiddenParams, list[int]]:
        """Ordinary weights (W1, b1, v, c) with the same outputs.

        Homogeneous activations: any rho > 0 works; we take the balanced choice
        |v_j| = ||(w_j, b_j)||, i.e. rho_j = sqrt(||(u~_j, a~_j)||).  Returns also the
        units that are limit points (rho_j = 0 with non-zero scaled weights on an
        unbounded sloped piece): they are realised with a tiny rho and a warning.
        """
        m = len(self.a)
        norms = np.sqrt(np.sum(self.U**2, axis=1) + self.a**2)
        # Solver round-off (|u~| ~ 1e-16) would otherwise become an arbitrary direction w = u~ / rho.
        norms = np.where(norms <= NEGLIGIBLE_NORM * (1.0 + norms.max(initial=0.0)), 0.0, norms)
        if act.homogeneous:
            rho = np.sqrt(norms)
            limit_units: list[int] = []
        else:
            rho = np.array(self.rho, dtype=float)
            limit_units = [j for j in range(m) if rho[j] <= RHO_ATTAINED and norms[j] > RHO_ATTAINED]
            if limit_units:
                warnings.warn(
                    f"units {limit_units} are limit points (output weight -> 0, input weights -> inf); "
                    f"realised approximately with |v| = {RHO_LIMIT_SUBSTITUTE}",
                    stacklevel=2,
                )
                rho[limit_units] = RHO_LIMIT_SUBSTITUTE
        safe = np.where(rho > 0, rho, 1.0)
        W1 = np.where(rho[:, None] > 0, self.U / safe[:, None], 0.0)
        b1 = np.where(rho > 0, self.a / safe, 0.0)
        return OneHiddenParams(W1=W1, b1=b1, v=self.signs * rho, c=float(self.c)), limit_units


def from_original(params: OneHiddenParams) -> ScaledParams:
    """The scaled coordinates of ordinary weights; sign(0) is taken as +1."""
    rho = np.abs(params.v)
    signs = np.where(params.v < 0, -1.0, 1.0)
    return ScaledParams(
        U=rho[:, None] * params.W1,
        a=rho * params.b1,
        rho=rho,
        c=float(params.c),
        signs=signs,
    )


def sign_class(n_positive: int, width: int) -> np.ndarray:
    """The canonical sign vector of a class: the first n_positive units positive (DESIGN §3)."""
    return np.where(np.arange(width) < n_positive, 1.0, -1.0)
