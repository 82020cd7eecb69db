"""Pilanci & Ergen's convex program of two-layer training with weight decay, over given activation
patterns (the mathematics: the docstring of `milpland.runs.convex_baseline`, which samples the
patterns; DESIGN §8c), and its Lagrangian lower bound recomputed in numpy (`dual_bound`).

With every pattern of the augmented data X̃ = [X, 1] the program's optimum is a lower bound on the
weight-decay objective of networks of any width, so a numpy bound on it bounds the width-m global
minimum from below; when the program's solution has at most m units it is a width-m network, and
the two meet (`milpland.search.convex_certificate`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from milpland.instance.activations import Activation
from milpland.instance.losses import Loss
from milpland.instance.network import OneHiddenParams

SOLVER_TOL = 1e-10
ZERO_GROUP = 1e-7  # a group is zero below this fraction of the largest group norm or of one unit (`support`)


@dataclass(frozen=True)
class Decay:
    """The weight-decay terms of the objective: λ and whether b1 and c are penalised."""

    weight_decay: float = 0.0
    decay_biases: bool = True


@dataclass(frozen=True, eq=False)
class ConvexProgram:
    """The data of one program: groups of (pattern, sign) over the augmented inputs.

    masks[g] is the 0/1 diagonal of D for group g and signs[g] = ±1 (v or w group)."""

    Xt: np.ndarray  # (n, d + 1): [X, 1]
    y: np.ndarray  # (n,)
    masks: np.ndarray  # (G, n) bool
    signs: np.ndarray  # (G,) ±1.0
    slopes: tuple[float, float]  # σ's slopes below and above 0
    loss: Loss
    decay: Decay
    output_bias: bool

    @property
    def groups(self) -> int:
        return self.masks.shape[0]

    def subset(self, keep: np.ndarray) -> "ConvexProgram":
        return ConvexProgram(self.Xt, self.y, self.masks[keep], self.signs[keep], self.slopes, self.loss,
                             self.decay, self.output_bias)

    def penalised(self, Q: np.ndarray) -> np.ndarray:
        """The coordinates of each group's q that carry the λ‖·‖ penalty (all, or w without b)."""
        return Q if self.decay.decay_biases else Q[:, :-1]


@dataclass(frozen=True)
class ProgramSolution:
    Q: np.ndarray  # (G, d + 1) group weights q_g
    c: float
    value: float  # Clarabel's objective value (a claim; the network is re-evaluated in numpy)
    status: str
    iterations: int
    seconds: float
    mu: np.ndarray | None = None  # Clarabel's multipliers of the residual rows (n,), for `dual_bound`
    nu: np.ndarray | None = None  # and of the cone rows (G, n), >= 0 up to its tolerance


def augmented(X: np.ndarray) -> np.ndarray:
    """X̃ = [X, 1]: the hidden biases as a last input coordinate."""
    return np.column_stack([np.asarray(X, dtype=float), np.ones(len(X))])


def program_for(X: np.ndarray, y: np.ndarray, act: Activation, loss: Loss, decay: Decay, *,
                output_bias: bool, masks: np.ndarray) -> ConvexProgram:
    """Every pattern twice (a v group, sign +1, and a w group, sign −1).  ReLU drops the all-zero
    pattern (it contributes nothing); leaky units keep it (α₀ X̃ q is not zero)."""
    masks = np.unique(np.asarray(masks, dtype=bool), axis=0)
    slopes = (float(act.slopes[0]), float(act.slopes[1]))
    if slopes[0] == 0.0:
        masks = masks[masks.any(axis=1)]
    G = masks.shape[0]
    return ConvexProgram(augmented(X), np.asarray(y, dtype=float), np.vstack([masks, masks]),
                         np.r_[np.ones(G), -np.ones(G)], slopes, loss, decay, output_bias)


# ----------------------------------------------------------------------------------------------
# The program in Clarabel's form
# ----------------------------------------------------------------------------------------------


def solve_program(program: ConvexProgram, *, time_limit: float = np.inf) -> ProgramSolution:
    """Clarabel on  min ½ x'Px + q'x  s.t.  Ax + s = b, s ∈ K,  with x = (q_1..q_G, t_1..t_G, r, [e], [c]):

    r = Σ_g s_g D_σ,g X̃ q_g + c 1 − y                    (zero cone: the residuals)
    (2 D_g − I) X̃ q_g ≥ 0                                 (non-negative cone: q_g in its pattern's cone)
    e ≥ r, e ≥ −r                                          (absolute loss only)
    (t_g, q_g) ∈ SOC  (q_g[:d] when biases are free)       (t_g ≥ ‖q_g‖)
    objective ω‖r‖² (squared) or ω Σ e (absolute), + λ Σ t_g, + (λ/2) c² when c is penalised."""
    import clarabel  # imported here: bench without --methods convex does not need it

    started = time.perf_counter()
    Xt, n, k, G = program.Xt, program.Xt.shape[0], program.Xt.shape[1], program.groups
    absolute = program.loss.kind == "absolute"
    k_pen = k if program.decay.decay_biases else k - 1
    nq, nt, ne, nc = G * k, G, n if absolute else 0, 1 if program.output_bias else 0
    N = nq + nt + n + ne + nc
    q_at, t_at, r_at, e_at, c_at = 0, nq, nq + nt, nq + nt + n, nq + nt + n + ne

    a0, a1 = program.slopes
    Dsig = a0 + (a1 - a0) * program.masks  # (G, n): diagonals of D_σ,g
    # (n, G k): column block g is s_g D_σ,g X̃;  (G n, G k): block-diagonal −(2 D_g − I) X̃
    fit_q = (program.signs[:, None] * Dsig).T[:, :, None] * Xt[:, None, :]
    cone_q = _block_diagonal(-(2.0 * program.masks - 1.0)[:, :, None] * Xt[None, :, :]) if G else None

    rows, rhs, cones = [], [], []
    # r − Σ_g s_g D_σ X̃ q_g − c = −y
    fit = sp.hstack([sp.csr_matrix(-fit_q.reshape(n, nq)), sp.csr_matrix((n, nt)), sp.identity(n),
                     sp.csr_matrix((n, ne)), sp.csr_matrix(-np.ones((n, nc)))])
    rows.append(fit), rhs.append(-program.y), cones.append(clarabel.ZeroConeT(n))
    if G:
        rows.append(sp.hstack([cone_q, sp.csr_matrix((G * n, N - nq))]))
        rhs.append(np.zeros(G * n))
    if absolute:  # r − e ≤ 0 and −r − e ≤ 0
        I = sp.identity(n)
        rows.append(sp.hstack([sp.csr_matrix((2 * n, nq + nt)), sp.vstack([I, -I]), sp.vstack([-I, -I]),
                               sp.csr_matrix((2 * n, nc))]))
        rhs.append(np.zeros(2 * n))
    if G or absolute:
        cones.append(clarabel.NonnegativeConeT(G * n + (2 * n if absolute else 0)))
    if G:  # s = (t_g, q_g[:k_pen]) = −A x, one second-order cone a group, all rows built at once
        rows.append(_cone_rows(G, k, k_pen, t_at, q_at, N))
        rhs.append(np.zeros(G * (1 + k_pen)))
        cones += [clarabel.SecondOrderConeT(1 + k_pen)] * G
    A = sp.vstack(rows).tocsc()
    b = np.concatenate(rhs)

    lam, omega = program.decay.weight_decay, program.loss.weight(n)
    diag = np.zeros(N)
    cost = np.zeros(N)
    cost[t_at:t_at + nt] = lam
    if absolute:
        cost[e_at:e_at + ne] = omega
    else:
        diag[r_at:r_at + n] = 2.0 * omega
    if nc and program.decay.decay_biases:
        diag[c_at] = lam
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = SOLVER_TOL
    settings.max_iter = 500
    if np.isfinite(time_limit):
        settings.time_limit = max(float(time_limit), 1e-3)
    sol = clarabel.DefaultSolver(sp.diags(diag).tocsc(), cost, A, b, cones, settings).solve()
    status = str(sol.status)
    if status not in ("Solved", "AlmostSolved"):
        raise RuntimeError(f"convex: Clarabel returned {status}")
    x, z = np.asarray(sol.x), np.asarray(sol.z)
    return ProgramSolution(Q=x[:nq].reshape(G, k), c=float(x[c_at]) if nc else 0.0, value=float(sol.obj_val),
                           status=status, iterations=int(sol.iterations), seconds=time.perf_counter() - started,
                           mu=z[:n].copy(), nu=z[n:n + G * n].reshape(G, n).copy())


# ----------------------------------------------------------------------------------------------
# Back to a network, and its objective in numpy
# ----------------------------------------------------------------------------------------------


def support(program: ConvexProgram, Q: np.ndarray) -> np.ndarray:
    """Groups whose penalised norm is not zero: above ZERO_GROUP times the largest, or times the
    size of one unit that fits max |y| alone (max |y| / max ‖x̃_i‖) when every group is tiny."""
    norms = np.linalg.norm(program.penalised(Q), axis=1)
    one_unit = np.abs(program.y).max() / np.linalg.norm(program.Xt, axis=1).max()
    return norms > ZERO_GROUP * max(norms.max(initial=0.0), one_unit, 1e-300)


def to_network(program: ConvexProgram, solution: ProgramSolution, act: Activation, width: int = 0) -> OneHiddenParams:
    """One unit per non-zero group: u = q / √‖q‖, output weight s √‖q‖ (‖q[:d]‖ when biases are
    free); with free biases a group with q[:d] = 0 is the constant s σ(b) and joins c.  Padded with
    zero units to `width`."""
    Q, c = solution.Q, solution.c
    keep = support(program, Q)
    scale = np.sqrt(np.linalg.norm(program.penalised(Q), axis=1))
    W, b, v = [], [], []
    for g in np.flatnonzero(keep):
        W.append(Q[g, :-1] / scale[g]), b.append(Q[g, -1] / scale[g]), v.append(program.signs[g] * scale[g])
    if not program.decay.decay_biases and program.output_bias:  # constant groups (q[:d] = 0) into c
        for g in np.flatnonzero(~keep):
            c += program.signs[g] * float(act(np.array(Q[g, -1])))
    d, units = program.Xt.shape[1] - 1, max(len(v), width)
    W1, b1, vv = np.zeros((units, d)), np.zeros(units), np.zeros(units)
    if v:
        W1[:len(v)], b1[:len(v)], vv[:len(v)] = np.array(W), np.array(b), np.array(v)
    return OneHiddenParams(W1=W1, b1=b1, v=vv, c=float(c) if program.output_bias else 0.0)


def network_objective(params: OneHiddenParams, X: np.ndarray, y: np.ndarray, act: Activation, loss: Loss,
                      decay: Decay) -> tuple[float, float]:
    """(J, R): the objective and the risk of a network by the plain forward pass (module doc)."""
    f = act(np.asarray(X, dtype=float) @ params.W1.T + params.b1) @ params.v + params.c
    risk = float(loss.weight(len(y)) * np.sum(loss.per_sample(f, y)))
    squares = np.sum(params.W1 ** 2) + np.sum(params.v ** 2)
    if decay.decay_biases:
        squares += np.sum(params.b1 ** 2) + params.c ** 2
    return risk + 0.5 * decay.weight_decay * float(squares), risk


def dual_bound(program: ConvexProgram, mu: np.ndarray, nu: np.ndarray, rho: float) -> float:
    """A lower bound on the program's minimum over groups with ‖q_g‖ <= rho, for ANY μ ∈ R^n and ν >= 0
    (weak duality; Clarabel's multipliers are only a good choice), in plain numpy.  Penalised biases only.

    With r = Σ_g s_g D_σ,g X̃ q_g + c 1 − y the Lagrangian
        ω loss(r) + λ Σ‖q_g‖ + (λ/2)c² + μᵀ(r − Σ_g s_g D_σ,g X̃ q_g − c 1 + y) − Σ_g ν_gᵀ (2D_g − I) X̃ q_g
    separates:  min_r ω‖r‖² + μᵀr = −‖μ‖²/(4ω) (squared; absolute: 0 when |μ_i| <= ω, so μ is clipped),
    min_c (λ/2)c² − c 1ᵀμ = −(1ᵀμ)²/(2λ), and per group, with ρ_g = −s_g X̃ᵀ D_σ,g μ − X̃ᵀ(2D_g − I)ν_g,
    min_{‖q‖ <= rho} λ‖q‖ + ρ_gᵀq = min(0, (λ − ‖ρ_g‖) rho); plus μᵀy."""
    if not program.decay.decay_biases:
        raise ValueError("dual_bound: needs penalised biases (a free bias coordinate has no finite bound)")
    lam, omega = program.decay.weight_decay, program.loss.weight(len(program.y))
    mu = np.asarray(mu, dtype=float)
    if program.loss.kind == "absolute":
        mu = np.clip(mu, -omega, omega)
        fitting = 0.0
    else:
        fitting = -float(mu @ mu) / (4.0 * omega)
    bias = -float(np.sum(mu)) ** 2 / (2.0 * lam) if program.output_bias else 0.0
    a0, a1 = program.slopes
    Dsig = a0 + (a1 - a0) * program.masks
    nu = np.maximum(np.asarray(nu, dtype=float), 0.0)
    reduced = -(program.signs[:, None] * Dsig * mu[None, :]) @ program.Xt \
        - ((2.0 * program.masks - 1.0) * nu) @ program.Xt
    groups = np.minimum(0.0, (lam - np.linalg.norm(reduced, axis=1)) * rho)
    return float(mu @ program.y) + fitting + bias + float(np.sum(groups))


def _block_diagonal(blocks: np.ndarray) -> sp.csr_matrix:
    """The block-diagonal matrix of ``blocks`` (G, n, k), built as one sparse matrix (no loop over groups)."""
    G, n, k = blocks.shape
    rows = np.broadcast_to(np.arange(G)[:, None, None] * n + np.arange(n)[None, :, None], blocks.shape)
    cols = np.broadcast_to(np.arange(G)[:, None, None] * k + np.arange(k)[None, None, :], blocks.shape)
    return sp.csr_matrix((blocks.ravel(), (rows.ravel(), cols.ravel())), shape=(G * n, G * k))


def _cone_rows(G: int, k: int, k_pen: int, t_at: int, q_at: int, N: int) -> sp.csr_matrix:
    """Rows of the G second-order cones (t_g, q_g[:k_pen]) = −A x: group g's rows are g (1 + k_pen) + 0..k_pen."""
    size = 1 + k_pen
    g = np.arange(G)
    rows = np.concatenate([g * size] + [g * size + 1 + j for j in range(k_pen)])
    cols = np.concatenate([t_at + g] + [q_at + g * k + j for j in range(k_pen)])
    return sp.csr_matrix((-np.ones(rows.size), (rows, cols)), shape=(G * size, N))
