"""Continuous piecewise-linear (CPWL) activations (DESIGN §2).

An activation with K pieces has breakpoints t_1 < ... < t_{K-1} and on piece k
(t_k <= z <= t_{k+1}, 0-based, with t_0 = -inf and t_K = +inf) equals
``slopes[k] * z + intercepts[k]``.  Continuity fixes every intercept from the
first one, so an activation is given by breakpoints, slopes and one value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from milpland.errors import SpecError


@dataclass(frozen=True)
class Activation:
    name: str
    breakpoints: tuple[float, ...]  # t_1 < ... < t_{K-1}
    slopes: tuple[float, ...]  # alpha_0 .. alpha_{K-1}
    intercepts: tuple[float, ...]  # beta_0 .. beta_{K-1}

    @property
    def n_pieces(self) -> int:
        return len(self.slopes)

    @property
    def homogeneous(self) -> bool:
        """Positively homogeneous: one breakpoint at 0 and no intercepts (ReLU, leaky, two-slope).

        Then rho * sigma(g / rho) = sigma(g) and the output scale rho drops out (DESIGN §3).
        """
        return self.breakpoints == (0.0,) and all(b == 0.0 for b in self.intercepts)

    @property
    def odd(self) -> bool:
        """sigma(-z) = -sigma(z) (hardtanh): then -sigma(w.x + b) = sigma(-w.x - b) and one sign class suffices."""
        t, a, b = self.breakpoints, self.slopes, self.intercepts
        return t == tuple(-v for v in reversed(t)) and a == tuple(reversed(a)) and b == tuple(-v for v in reversed(b))

    def lower(self, k: int) -> float:
        """Left end t_k of piece k (-inf for the first piece)."""
        return -np.inf if k == 0 else self.breakpoints[k - 1]

    def upper(self, k: int) -> float:
        """Right end t_{k+1} of piece k (+inf for the last piece)."""
        return np.inf if k == self.n_pieces - 1 else self.breakpoints[k]

    def piece(self, z: np.ndarray) -> np.ndarray:
        """Index of the piece that contains z; a point on a breakpoint gets the lower piece."""
        return np.searchsorted(np.asarray(self.breakpoints), np.asarray(z, dtype=float), side="left")

    def on_breakpoint(self, z: np.ndarray, tol: float) -> np.ndarray:
        """True where z is within tol of a breakpoint (both neighbouring pieces contain it)."""
        z = np.asarray(z, dtype=float)
        t = np.asarray(self.breakpoints)
        return np.min(np.abs(z[..., None] - t), axis=-1) <= tol

    def __call__(self, z: np.ndarray) -> np.ndarray:
        k = self.piece(z)
        return np.asarray(self.slopes)[k] * z + np.asarray(self.intercepts)[k]

    def derivative(self, z: np.ndarray) -> np.ndarray:
        """Slope of the piece returned by `piece` (the left derivative on a breakpoint)."""
        return np.asarray(self.slopes)[self.piece(z)]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "breakpoints": list(self.breakpoints),
            "slopes": list(self.slopes),
            "intercepts": list(self.intercepts),
        }


def from_pieces(name: str, breakpoints, slopes, value_at_first_breakpoint: float = 0.0) -> Activation:
    """The CPWL activation with these breakpoints and slopes, continuous by construction.

    beta_0 = value - alpha_0 t_1 and beta_k = beta_{k-1} + (alpha_{k-1} - alpha_k) t_k.
    """
    t = [float(v) for v in breakpoints]
    a = [float(v) for v in slopes]
    if len(t) < 1:
        raise SpecError("network.breakpoints", "needs at least one breakpoint")
    if len(a) != len(t) + 1:
        raise SpecError("network.slopes", f"needs len(breakpoints) + 1 = {len(t) + 1} slopes, got {len(a)}")
    if any(not np.isfinite(v) for v in t + a + [value_at_first_breakpoint]):
        raise SpecError("network", "breakpoints, slopes and value_at_first_breakpoint must be finite")
    if any(t2 <= t1 for t1, t2 in zip(t, t[1:])):
        raise SpecError("network.breakpoints", "must be strictly increasing")
    if any(a1 == a2 for a1, a2 in zip(a, a[1:])):
        raise SpecError("network.slopes", "neighbouring pieces must have different slopes (merge them)")
    b = [float(value_at_first_breakpoint) - a[0] * t[0]]
    for k in range(1, len(a)):
        b.append(b[-1] + (a[k - 1] - a[k]) * t[k - 1])
    b = [0.0 if abs(v) < 1e-15 else v for v in b]
    return Activation(name, tuple(t), tuple(a), tuple(b))


def check_continuous(breakpoints, slopes, intercepts, *, tol: float = 1e-12) -> None:
    """Raise SpecError if the pieces given with explicit intercepts do not meet at the breakpoints."""
    for k, t in enumerate(breakpoints):
        left = slopes[k] * t + intercepts[k]
        right = slopes[k + 1] * t + intercepts[k + 1]
        if abs(left - right) > tol * max(1.0, abs(left)):
            raise SpecError(
                "network.intercepts",
                f"activation is not continuous at breakpoint {t}: left piece gives {left}, right piece {right}",
            )


def relu() -> Activation:
    return from_pieces("relu", [0.0], [0.0, 1.0])


def leaky_relu(alpha: float = 0.01) -> Activation:
    return from_pieces("leaky_relu", [0.0], [alpha, 1.0])


def two_slope(s_plus: float, s_minus: float) -> Activation:
    """h_{s+,s-}(z) = s_plus z for z >= 0, s_minus z for z < 0 (Yun, Sra & Jadbabaie 2019)."""
    return from_pieces("two_slope", [0.0], [s_minus, s_plus])


def hardtanh() -> Activation:
    return from_pieces("hardtanh", [-1.0, 1.0], [0.0, 1.0, 0.0], value_at_first_breakpoint=-1.0)
