"""Two hidden layers on 1-D inputs in canonical coordinates (DESIGN §6a): data, knots, networks.
The squared, absolute and hinge losses.

For a positively homogeneous activation sigma(g) = alpha_0 g + (alpha_1 - alpha_0) relu(g), a
layer-1 unit with weight w != 0 and bias b computes |w| sigma(s (x - t)), s = sign(w), t = -b/w.
Its scale |w| moves into the layer-2 weights, and each layer-2 unit's |v_k| into its own weights
(the one-hidden-layer scaling of DESIGN §3).  What is left:

    f(x) = c + sum_k s_k sigma(z_k(x)),   z_k(x) = b~_k + sum_j A_kj phi_j(x),
    phi_j(x) = sigma(s_j (x - t_j)),      s_k = sign of the output weight (+1 / -1).

On the data only the position of each knot t_j among the sorted inputs matters for the pattern:
with t_j in the closed gap [p_g, p_{g+1}] between two consecutive distinct inputs the layer-1
pattern is fixed and phi_j(x_i) is affine in t_j.  A knot outside [p_0, p_{G-1}] makes phi_j
affine on the data; it is the knot at the nearest end with the difference moved into b~.  So
every network has a *canonical* form with every knot in [p_0, p_{G-1}], and the **box** of a
two-layer spec bounds the canonical layer-2 weights: |A_kj| <= B and |b~_k| <= B (B = box.weight).
A layer-1 unit with w = 0 computes a constant: canonically A_.j = 0 and the constant in b~.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from milpland.errors import MilplandError
from milpland.instance.deep import DeepParams
from milpland.instance.spec import InstanceSpec

BOX_ACTIVE_RTOL = 1e-7  # a canonical weight within this relative distance of B is "at the bound"
ABS_TOL_FACTOR = 1e-9  # absolute certification tolerance, relative to the best constant's risk


def two_layer_reason(spec: InstanceSpec) -> str | None:
    """None when the two-layer search handles ``spec``, else why not (one line)."""
    act = spec.network.activation
    if spec.network.depth != 2:
        return f"it needs exactly two hidden layers, got hidden = {list(spec.network.hidden)}"
    if spec.d != 1:
        return f"it needs one-dimensional inputs, the data have d = {spec.d}"
    if not act.homogeneous or act.n_pieces != 2:
        return f"it needs a positively homogeneous two-piece activation (relu, leaky_relu, two_slope), not {act.name}"
    if np.unique(spec.X[:, 0]).size < 2:
        return "it needs at least two distinct inputs"
    return None


@dataclass(frozen=True, eq=False)
class TwoLayerData:
    """The instance as the search sees it: sorted distinct positions, samples mapped to them."""

    positions: np.ndarray  # (G,) sorted distinct inputs p_0 < ... < p_{G-1}
    where: np.ndarray  # (n,) position index of every sample
    y: np.ndarray  # (n,)
    weight: float  # loss weight w: risk = w sum_i loss(f_i, y_i)
    loss: str  # squared | absolute | hinge
    slopes: tuple[float, float]  # (alpha_0, alpha_1) of the activation
    widths: tuple[int, int]  # (m1, m2)
    box: float  # B
    output_bias: bool

    @classmethod
    def of(cls, spec: InstanceSpec) -> "TwoLayerData":
        reason = two_layer_reason(spec)
        if reason:
            raise MilplandError(f"two-layer search: {reason}")
        positions, where = np.unique(spec.X[:, 0], return_inverse=True)
        a0, a1 = spec.network.activation.slopes
        return cls(positions=positions, where=np.asarray(where).reshape(-1), y=spec.y.astype(float),
                   weight=float(spec.loss.weight(spec.n)), loss=spec.loss.kind, slopes=(float(a0), float(a1)),
                   widths=(int(spec.network.hidden[0]), int(spec.network.hidden[1])),
                   box=float(spec.box.weight), output_bias=bool(spec.network.output_bias))

    @property
    def n_positions(self) -> int:
        return self.positions.shape[0]

    def sigma(self, g: np.ndarray) -> np.ndarray:
        a0, a1 = self.slopes
        return a0 * g + (a1 - a0) * np.maximum(g, 0.0)

    def top(self, orientation: int, gap: int) -> np.ndarray:
        """(G,) bool: positions on the top piece of a unit with this orientation and knot in this gap."""
        idx = np.arange(self.n_positions)
        return idx > gap if orientation > 0 else idx <= gap

    def features(self, orientations, t) -> np.ndarray:
        """phi[p, j] = sigma(s_j (p - t_j)) at every position (G, m1)."""
        s = np.asarray(orientations, dtype=float)
        return self.sigma(s[None, :] * (self.positions[:, None] - np.asarray(t, dtype=float)[None, :]))

    def feature_slopes(self, orientations, gaps) -> np.ndarray:
        """d phi[p, j] / d t_j for t_j inside its gap (G, m1): -s_j alpha(piece)."""
        a0, a1 = self.slopes
        out = np.zeros((self.n_positions, len(gaps)))
        for j, (s, g) in enumerate(zip(orientations, gaps)):
            out[:, j] = -s * np.where(self.top(s, g), a1, a0)
        return out

    def risk(self, fitted_positions: np.ndarray) -> float:
        f = fitted_positions[self.where]
        if self.loss == "squared":
            return float(self.weight * np.dot(f - self.y, f - self.y))
        if self.loss == "absolute":
            return float(self.weight * np.sum(np.abs(f - self.y)))
        return float(self.weight * np.sum(np.maximum(0.0, 1.0 - self.y * f)))  # hinge

    def best_constant(self) -> float:
        """The risk-minimising constant output (0 without output bias): mean, median or +-1."""
        if not self.output_bias:
            return 0.0
        if self.loss == "squared":
            return float(np.mean(self.y))
        if self.loss == "absolute":
            return float(np.median(self.y))
        return min((-1.0, 1.0), key=lambda c: self.risk(np.full(self.n_positions, c)))

    def baseline(self) -> float:
        """Risk of the best constant output (0 without output bias)."""
        return self.risk(np.full(self.n_positions, self.best_constant()))


@dataclass(frozen=True, eq=False)
class CanonicalNet:
    """A two-layer network in canonical coordinates (module docstring)."""

    orientations: np.ndarray  # (m1,) s_j
    t: np.ndarray  # (m1,) knots
    A: np.ndarray  # (m2, m1)
    b: np.ndarray  # (m2,)
    signs: np.ndarray  # (m2,) s_k
    c: float

    def pre_activations(self, data: TwoLayerData) -> tuple[np.ndarray, np.ndarray]:
        """(layer-1 arguments s_j (p - t_j), layer-2 pre-activations z_k) at every position."""
        g1 = self.orientations[None, :] * (data.positions[:, None] - self.t[None, :])
        z2 = data.sigma(g1) @ self.A.T + self.b
        return g1, z2

    def fitted(self, data: TwoLayerData) -> np.ndarray:
        """f at every position."""
        _, z2 = self.pre_activations(data)
        return self.c + data.sigma(z2) @ self.signs

    def risk(self, data: TwoLayerData) -> float:
        return data.risk(self.fitted(data))

    def box_active(self, data: TwoLayerData) -> bool:
        limit = data.box * (1.0 - BOX_ACTIVE_RTOL)
        return bool(np.any(np.abs(self.A) >= limit) or np.any(np.abs(self.b) >= limit))

    def in_box(self, data: TwoLayerData) -> bool:
        limit = data.box * (1.0 + BOX_ACTIVE_RTOL)
        return bool(np.all(np.abs(self.A) <= limit) and np.all(np.abs(self.b) <= limit))

    def gaps(self, data: TwoLayerData) -> np.ndarray:
        """The gap of every knot (index g with p_g <= t <= p_{g+1}; the lower one on a tie)."""
        G = data.n_positions
        return np.clip(np.searchsorted(data.positions, self.t, side="left") - 1, 0, G - 2)

    def to_params(self, data: TwoLayerData) -> DeepParams:
        """Ordinary weights with the same outputs everywhere: W1[j] = r_j s_j, b1[j] = -r_j s_j t_j,
        W2[k, j] = A_kj / (r_j q_k), b2[k] = b~_k / q_k, v_k = s_k q_k, with balancing scales
        r_j, q_k > 0 (any positive scales give the same function, by positive homogeneity)."""
        m2, m1 = self.A.shape
        col = np.abs(self.A).max(axis=0, initial=0.0)
        r = np.where(col > 0, np.sqrt(np.maximum(col, 1e-300)), 1.0)
        A1 = self.A / r[None, :]
        row = np.sqrt(np.sum(A1**2, axis=1) + self.b**2)
        q = np.where(row > 0, np.sqrt(np.maximum(row, 1e-300)), 1.0)
        W1 = (r * self.orientations).reshape(m1, 1)
        b1 = -r * self.orientations * self.t + 0.0  # no -0 in the output
        W2 = A1 / q[:, None]
        b2 = self.b / q
        v = (self.signs * q).reshape(1, m2)
        c = float(self.c) if data.output_bias else 0.0
        return DeepParams((W1, W2, v), (b1, b2, np.array([c])))


def canonical_from_params(params: DeepParams, data: TwoLayerData) -> CanonicalNet:
    """The canonical form of ordinary two-layer weights (same outputs on the data).

    Knots beyond the data move to the nearest end, the affine difference going into b~ (the
    feature is affine there on the data); a unit with w = 0 is a constant, moved into b~."""
    if params.depth != 2 or params.input_dim != 1 or not params.scalar_output:
        raise MilplandError("canonical form: needs two hidden layers, one input and one output")
    w = params.W[0][:, 0]
    b1 = params.b[0]
    W2, b2 = params.W[1], params.b[1].copy()
    v = params.W[2][0]
    lo, hi = float(data.positions[0]), float(data.positions[-1])
    m1 = w.shape[0]
    orient, t = np.ones(m1), np.full(m1, lo)
    A = np.zeros_like(W2)
    for j in range(m1):
        if w[j] == 0.0:
            b2 = b2 + W2[:, j] * float(data.sigma(np.array([b1[j]]))[0])
            continue
        orient[j] = 1.0 if w[j] > 0 else -1.0
        knot = -b1[j] / w[j]
        A[:, j] = W2[:, j] * abs(w[j])
        clamped = min(max(knot, lo), hi)
        t[j] = clamped
        # on the data, sigma(s (x - knot)) differs from sigma(s (x - clamped)) by a constant
        # only when the knot lies beyond the data and every sample is on one piece
        shift = data.sigma(orient[j] * (data.positions - knot)) - data.sigma(orient[j] * (data.positions - clamped))
        b2 = b2 + A[:, j] * float(np.mean(shift))
    q = np.abs(v)
    signs = np.where(v < 0, -1.0, 1.0)
    out = CanonicalNet(orientations=orient, t=t, A=A * q[:, None], b=b2 * q, signs=signs,
                       c=float(params.b[2][0]))
    want = params.forward(data.positions.reshape(-1, 1), _ActivationShim(data))
    got = out.fitted(data)
    if np.max(np.abs(got - want)) > 1e-8 * max(1.0, float(np.max(np.abs(want)))):
        raise MilplandError("canonical form: internal mismatch of the fitted values")
    return out


class _ActivationShim:
    """The data's activation as a callable (DeepParams.forward only calls it)."""

    def __init__(self, data: TwoLayerData):
        self.data = data

    def __call__(self, z):
        return self.data.sigma(np.asarray(z, dtype=float))
