"""The independent re-check of every returned point (DESIGN §4, last paragraph).

The point is rebuilt in ordinary weights, evaluated with a plain numpy forward
pass, and its activation pattern compared with the pattern the solver claimed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import InstanceSpec

RISK_TOL = 1e-7  # relative difference between claimed and re-evaluated risk
TIE_TOL = 1e-7  # pre-activations this close (relative) to a breakpoint may sit on either piece
NEGLIGIBLE = 1e-10  # a unit changing no output by more than this (relative to |y|) has a free pattern


@dataclass(frozen=True)
class Verification:
    """The independent re-check of a returned point (plain numpy forward pass)."""

    risk_numpy: float  # objective (risk + weight decay, `Loss.objective`) of the original-coordinate network
    risk_difference: float  # |risk_numpy - claimed risk| / max(1, |claimed risk|)
    pattern_mismatches: int  # (sample, unit) pairs whose piece differs from the binaries, ties excluded
    ties: int  # (sample, unit) pairs on a breakpoint (both pieces contain them)
    limit_units: tuple[int, ...] = ()  # units attained only as limits (rho -> 0)
    ok: bool = True


def verify_point(spec: InstanceSpec, params: OneHiddenParams, claimed_pattern: np.ndarray,
                 claimed_risk: float, limit_units: list[int] | tuple[int, ...] = ()) -> Verification:
    act = spec.network.activation
    risk = spec.loss.objective(params, spec.X, spec.y, act)  # the risk, plus the weight decay when lam > 0
    difference = abs(risk - claimed_risk) / max(1.0, abs(claimed_risk))
    Z = params.pre_activations(spec.X)
    scale = 1.0 + np.abs(spec.X).sum(axis=1, keepdims=True) * np.abs(params.W1).max(initial=0.0) \
        + np.abs(params.b1).max(initial=0.0)
    ties = act.on_breakpoint(Z, TIE_TOL * scale)
    # A unit whose contribution is negligible does not change the function: its pattern is free.
    contribution = np.abs(act(Z) * params.v)
    negligible = contribution.max(axis=0, initial=0.0) <= NEGLIGIBLE * (1.0 + np.abs(spec.y).max())
    free = np.broadcast_to(negligible, Z.shape)
    # Limit units are realised approximately; compare only their function values.
    free = free | np.isin(np.arange(Z.shape[1]), list(limit_units))[None, :]
    mismatches = int(np.sum((act.piece(Z) != claimed_pattern) & ~ties & ~free))
    return Verification(
        risk_numpy=risk, risk_difference=difference, pattern_mismatches=mismatches,
        ties=int(np.sum(ties)), limit_units=tuple(int(j) for j in limit_units),
        ok=bool(difference <= RISK_TOL and mismatches == 0),
    )
