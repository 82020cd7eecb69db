"""Networks of any depth with a CPWL activation: forward pass, patterns, cells, margins (DESIGN §2, §6).

f(x) = W[L] a^{L-1} + b[L],  a^l = sigma(z^l),  z^l = W[l] a^{l-1} + b[l],  a^0 = x,

with W[l] of shape (out, in).  Every hidden layer uses the same activation; the last
layer is linear.  The output is scalar when W[-1] has one row (then `forward` returns a
vector of length n) and vector-valued otherwise (an (n, k) matrix).

Like milpland.instance.network, this module is the plain-numpy side of every verification:
nothing here knows about MILPs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from milpland.errors import MilplandError
from milpland.instance.activations import Activation
from milpland.instance.network import OneHiddenParams


@dataclass(frozen=True, eq=False)
class DeepParams:
    """Weights W[l] (out x in) and biases b[l] (out,) of every layer; the last layer is linear."""

    W: tuple[np.ndarray, ...]
    b: tuple[np.ndarray, ...]

    def __post_init__(self):
        W = tuple(np.atleast_2d(np.asarray(w, dtype=float)) for w in self.W)
        b = tuple(np.asarray(v, dtype=float).reshape(-1) for v in self.b)
        if len(W) == 0 or len(W) != len(b):
            raise MilplandError(
                f"params: need one bias per weight matrix and at least one layer, got {len(W)} W and {len(b)} b"
            )
        for l, (w, v) in enumerate(zip(W, b)):
            if w.ndim != 2:
                raise MilplandError(f"params.W[{l}]: must be a matrix (out x in), got shape {w.shape}")
            if v.shape != (w.shape[0],):
                raise MilplandError(
                    f"params.b[{l}]: expected shape ({w.shape[0]},) to match W[{l}] {w.shape}, got {v.shape}"
                )
            if l > 0 and w.shape[1] != W[l - 1].shape[0]:
                raise MilplandError(
                    f"params.W[{l}]: expected {W[l - 1].shape[0]} columns (the width of layer {l - 1}), got shape {w.shape}"
                )
            if not (np.all(np.isfinite(w)) and np.all(np.isfinite(v))):
                raise MilplandError(f"params.W[{l}]/b[{l}]: hold non-finite values")
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "b", b)

    # -- shape ---------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        return self.W[0].shape[1]

    @property
    def output_dim(self) -> int:
        return self.W[-1].shape[0]

    @property
    def scalar_output(self) -> bool:
        return self.output_dim == 1

    @property
    def hidden(self) -> tuple[int, ...]:
        """Widths of the hidden layers."""
        return tuple(w.shape[0] for w in self.W[:-1])

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.W) - 1

    @property
    def n_params(self) -> int:
        return sum(w.size + v.size for w, v in zip(self.W, self.b))

    # -- evaluation ----------------------------------------------------------------------
    def pre_activations(self, X: np.ndarray, act: Activation) -> list[np.ndarray]:
        """Z[l] (n x width_l) for every hidden layer l."""
        a = _inputs(X, self.input_dim)
        out = []
        for w, v in zip(self.W[:-1], self.b[:-1]):
            z = a @ w.T + v
            out.append(z)
            a = act(z)
        return out

    def forward(self, X: np.ndarray, act: Activation) -> np.ndarray:
        """Network output: shape (n,) for scalar output, (n, k) otherwise."""
        a = _inputs(X, self.input_dim)
        for w, v in zip(self.W[:-1], self.b[:-1]):
            a = act(a @ w.T + v)
        out = a @ self.W[-1].T + self.b[-1]
        return out[:, 0] if self.scalar_output else out

    def pattern(self, X: np.ndarray, act: Activation) -> tuple[np.ndarray, ...]:
        """Piece index of every (sample, unit), one (n x width_l) int array per hidden layer.

        A pre-activation on a breakpoint gets the lower piece (`Activation.piece`); `margin`
        tells whether that happened.
        """
        return tuple(act.piece(z).astype(np.int16) for z in self.pre_activations(X, act))

    def full_pattern(self, X: np.ndarray, act: Activation) -> np.ndarray:
        """The pattern of all layers side by side: (n x sum of widths)."""
        parts = self.pattern(X, act)
        n = _inputs(X, self.input_dim).shape[0]
        return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), dtype=np.int16)

    def cell_id(self, X: np.ndarray, act: Activation) -> str:
        """Stable 12-hex id of the cell: a hash of the widths and the full pattern.

        The hash does not depend on numpy's byte order or dtype: the pattern is written
        as little-endian int16.
        """
        return pattern_hash(self.pattern(X, act))

    def margins(self, X: np.ndarray, act: Activation) -> tuple[np.ndarray, ...]:
        """Distance of every pre-activation to the nearest breakpoint, per hidden layer."""
        t = np.asarray(act.breakpoints, dtype=float)
        return tuple(np.min(np.abs(z[..., None] - t), axis=-1) for z in self.pre_activations(X, act))

    def margin(self, X: np.ndarray, act: Activation) -> float:
        """min over (sample, layer, unit) of |z - nearest breakpoint|; +inf without hidden layers.

        margin > 0 means every pre-activation lies strictly inside its piece, and since
        the pre-activations are continuous in the weights, a whole neighbourhood of the
        point has the same pattern: the point is in the interior of its cell.  The value
        is in pre-activation units, not a distance in weight space.
        """
        ms = [m.min() for m in self.margins(X, act) if m.size]
        return float(min(ms)) if ms else float("inf")

    def ties(self, X: np.ndarray, act: Activation, *, tol: float = 1e-9) -> int:
        """Number of (sample, layer, unit) whose pre-activation is within tol of a breakpoint."""
        return int(sum(int(np.sum(m <= tol)) for m in self.margins(X, act)))

    # -- conversions ---------------------------------------------------------------------
    def flat(self) -> np.ndarray:
        """All weights in one vector: W[0] row-major, b[0], W[1], b[1], ..."""
        return np.concatenate([np.concatenate([w.ravel(), v]) for w, v in zip(self.W, self.b)])

    def from_flat(self, theta: np.ndarray) -> "DeepParams":
        """Parameters of the same shapes filled from a vector laid out as by `flat`."""
        theta = np.asarray(theta, dtype=float).ravel()
        if theta.size != self.n_params:
            raise MilplandError(f"params: flat vector has {theta.size} entries, expected {self.n_params}")
        W, b, pos = [], [], 0
        for w, v in zip(self.W, self.b):
            W.append(theta[pos : pos + w.size].reshape(w.shape))
            pos += w.size
            b.append(theta[pos : pos + v.size].copy())
            pos += v.size
        return DeepParams(tuple(W), tuple(b))

    def replace_layer(self, l: int, W: np.ndarray | None = None, b: np.ndarray | None = None) -> "DeepParams":
        Ws, bs = list(self.W), list(self.b)
        if W is not None:
            Ws[l] = np.asarray(W, dtype=float)
        if b is not None:
            bs[l] = np.asarray(b, dtype=float)
        return DeepParams(tuple(Ws), tuple(bs))

    @classmethod
    def from_one_hidden(cls, params: OneHiddenParams) -> "DeepParams":
        return cls(
            W=(np.asarray(params.W1, dtype=float), np.asarray(params.v, dtype=float).reshape(1, -1)),
            b=(np.asarray(params.b1, dtype=float).reshape(-1), np.array([float(params.c)])),
        )

    def to_one_hidden(self) -> OneHiddenParams:
        if self.depth != 1 or not self.scalar_output:
            raise MilplandError(
                f"params: one hidden layer and scalar output needed, got hidden widths {self.hidden} "
                f"and {self.output_dim} outputs"
            )
        return OneHiddenParams(W1=self.W[0].copy(), b1=self.b[0].copy(), v=self.W[1][0].copy(), c=float(self.b[1][0]))

    def to_json(self) -> dict:
        return {"W": [w.tolist() for w in self.W], "b": [v.tolist() for v in self.b]}

    def copy(self) -> "DeepParams":
        return DeepParams(tuple(w.copy() for w in self.W), tuple(v.copy() for v in self.b))


def as_deep(params) -> DeepParams:
    """DeepParams from DeepParams or OneHiddenParams."""
    if isinstance(params, DeepParams):
        return params
    if isinstance(params, OneHiddenParams):
        return DeepParams.from_one_hidden(params)
    raise MilplandError(f"params: expected DeepParams or OneHiddenParams, got {type(params).__name__}")


def pattern_hash(pattern: tuple[np.ndarray, ...]) -> str:
    h = hashlib.sha256()
    h.update(repr(tuple(p.shape for p in pattern)).encode())
    for p in pattern:
        h.update(np.ascontiguousarray(p, dtype="<i2").tobytes())
    return h.hexdigest()[:12]


def group_by_pattern(full_pattern: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """Samples that share the whole pattern (all layers), each group sorted, groups by first sample."""
    _, labels = np.unique(full_pattern, axis=0, return_inverse=True)
    labels = np.asarray(labels).reshape(-1)
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(labels):
        groups.setdefault(int(g), []).append(i)
    return tuple(sorted((tuple(v) for v in groups.values()), key=lambda g: g[0]))


def _inputs(X: np.ndarray, d: int) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None] if d == 1 else X[None, :]
    if X.shape[1] != d:
        raise MilplandError(f"data: the network takes {d} inputs, the data have {X.shape[1]} columns")
    return X
