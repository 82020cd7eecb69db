"""The group least-squares bound: certify a given point of a network of any depth (DESIGN §6).

Let A be the full activation pattern (all layers) of the point θ₀ on the data, with a
pre-activation on a breakpoint counted in the lower piece, and let C be the closed cell
{θ : every pre-activation z_ilj(θ) lies in the closed piece interval [t_{k-1}, t_k] that A
assigns to it}.  On a closed piece σ(z) = α_k z + β_k, so for θ in C every layer acts on
sample i by a fixed affine map and f_θ(x_i) = M_{A_i}(θ) x̃_i with x̃ = (x, 1): the map
M depends on θ and on the sample's own pattern A_i only.  Samples with the same A_i form
a group G and share one affine map of x (vector-valued for vector output).  Hence, for
every θ in C,

    R(θ) = w Σ_G Σ_{i∈G} ℓ(M_G(θ) x̃_i, y_i)  ≥  w Σ_G min_M Σ_{i∈G} ℓ(M x̃_i, y_i)  =: B(A),

w = Loss.weight(n) (the spec's reduction).  The inner minima are ordinary least squares
(squared loss, numpy lstsq) or least absolute deviations (absolute loss, an LP solved by
HiGHS whose value is replaced by a dual lower bound repaired to exact feasibility).

**When this certifies a local minimum.**  If θ₀ is strictly inside its cell (margin > 0:
no pre-activation on a breakpoint), continuity of θ ↦ z(θ) gives a neighbourhood N of θ₀
inside C, so R(θ) ≥ B(A) on N.  If moreover R(θ₀) = B(A), then R(θ) ≥ R(θ₀) on N: θ₀ is
a local minimum of R, and also a minimiser of R over the whole closed cell C.  With the
numerical tolerance tol the statement proven is: R(θ) ≥ R(θ₀) − tol·max(1, R(θ₀)) for
all θ near θ₀.  Nothing is claimed when the point is on a cell boundary (margin ≤
margin_tol; the neighbourhood meets other cells: use the tied-pair check of DESIGN §5)
or when R(θ₀) > B(A) (the group maps are coupled through shared weights, so B may not be
attainable in the cell: the point may or may not be a local minimum).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linprog

from milpland.errors import MilplandError
from milpland.instance.activations import Activation
from milpland.instance.deep import DeepParams, as_deep, group_by_pattern, pattern_hash
from milpland.instance.losses import Loss

VERDICTS = ("local_minimum", "bound_not_attained", "on_boundary")


@dataclass(frozen=True)
class GroupBound:
    bound: float  # B(A): lower bound on R over the closed cell, in the spec's reduction
    risk: float  # R(θ₀), plain numpy forward pass
    groups: tuple[tuple[int, ...], ...]  # sample indices sharing the full pattern
    group_bounds: tuple[float, ...]  # w * best affine fit of each group
    group_risks: tuple[float, ...]  # w * the point's loss on each group
    margin: float  # min distance of a pre-activation to a breakpoint
    interior: bool  # margin > margin_tol
    tight: bool  # risk <= bound + tol * max(1, risk)
    certified: bool  # interior and tight: a local minimum and the best point of its cell
    verdict: str
    cell: str  # pattern hash (milpland.instance.deep.pattern_hash)
    loss: str
    reduction: str
    tol: float
    margin_tol: float
    dual_gap: float = 0.0  # absolute loss: largest LP primal - dual gap over the groups
    message: str = ""

    @property
    def gap(self) -> float:
        """risk - bound (>= 0 up to rounding)."""
        return self.risk - self.bound

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def to_json(self) -> dict:
        out = asdict(self)
        out["groups"] = [list(g) for g in self.groups]
        out["group_bounds"] = list(self.group_bounds)
        out["group_risks"] = list(self.group_risks)
        out["gap"] = self.gap
        out["n_groups"] = self.n_groups
        out["margin"] = _finite_or_none(self.margin)
        return out

    def to_row(self) -> dict:
        return {
            "cell": self.cell,
            "risk": self.risk,
            "bound": self.bound,
            "gap": self.gap,
            "n_groups": self.n_groups,
            "margin": self.margin,
            "interior": self.interior,
            "tight": self.tight,
            "certified": self.certified,
            "verdict": self.verdict,
            "loss": self.loss,
            "reduction": self.reduction,
            "tol": self.tol,
            "dual_gap": self.dual_gap,
            "message": self.message,
        }


def group_bound(
    params, X: np.ndarray, y: np.ndarray, act: Activation, loss: Loss = Loss(), *,
    tol: float = 1e-9, margin_tol: float = 1e-9,
) -> GroupBound:
    """The group bound B(A) of the point's cell and whether it certifies a local minimum.

    ``params``: DeepParams or OneHiddenParams.  ``y``: (n,) for scalar output, (n, k) for k
    outputs.  Supported losses: squared and absolute (the hinge loss raises MilplandError).
    See the module docstring for exactly what ``certified`` proves.
    """
    params = as_deep(params)
    if loss.kind not in ("squared", "absolute"):
        raise MilplandError(f"loss.kind: the group bound supports squared and absolute loss, got {loss.kind!r}")
    X = np.asarray(X, dtype=float)
    Y = _targets(y, params, X.shape[0])
    n = X.shape[0]
    w = loss.weight(n)
    pattern = params.pattern(X, act)
    full = np.concatenate(pattern, axis=1) if pattern else np.zeros((n, 0), dtype=np.int16)
    groups = group_by_pattern(full)
    F = params.forward(X, act).reshape(n, -1)
    per_sample = loss.per_sample(F, Y).sum(axis=1)
    risk = float(w * per_sample.sum())
    Xt = np.column_stack([X, np.ones(n)])
    bounds, risks, dual_gap = [], [], 0.0
    for g in groups:
        idx = np.asarray(g)
        if loss.kind == "squared":
            value = _least_squares(Xt[idx], Y[idx])
        else:
            value, gap = _least_absolute(Xt[idx], Y[idx])
            dual_gap = max(dual_gap, gap)
        bounds.append(float(w * value))
        risks.append(float(w * per_sample[idx].sum()))
    bound = float(sum(bounds))
    margin = params.margin(X, act)
    interior = bool(margin > margin_tol)
    tight = bool(risk <= bound + tol * max(1.0, abs(risk)))
    certified = interior and tight
    if certified:
        verdict, message = "local_minimum", "strictly inside its cell and risk equals the group bound"
    elif not interior:
        verdict = "on_boundary"
        message = f"a pre-activation is within {margin_tol:g} of a breakpoint: the bound covers only the closed cell"
    else:
        verdict = "bound_not_attained"
        message = f"risk exceeds the group bound by {risk - bound:.3g}: inconclusive"
    return GroupBound(
        bound=bound, risk=risk, groups=groups, group_bounds=tuple(bounds), group_risks=tuple(risks),
        margin=margin, interior=interior, tight=tight, certified=certified, verdict=verdict,
        cell=pattern_hash(pattern), loss=loss.kind, reduction=loss.reduction, tol=tol, margin_tol=margin_tol,
        dual_gap=dual_gap, message=message,
    )


def affine_fit(X: np.ndarray, y: np.ndarray, loss: Loss = Loss()) -> tuple[np.ndarray, float]:
    """Best affine fit of all samples: coefficients ((d+1) x k, last row the intercept) and its risk.

    Squared loss: least squares.  Absolute loss: least absolute deviations (LP).
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(y, dtype=float).reshape(X.shape[0], -1)
    Xt = np.column_stack([X, np.ones(X.shape[0])])
    if loss.kind == "squared":
        coef = np.linalg.lstsq(Xt, Y, rcond=None)[0]
    elif loss.kind == "absolute":
        coef = np.column_stack([_lad(Xt, Y[:, c])[0] for c in range(Y.shape[1])])
    else:
        raise MilplandError(f"loss.kind: affine fits support squared and absolute loss, got {loss.kind!r}")
    return coef, loss.risk(Xt @ coef, Y)


def _targets(y, params: DeepParams, n: int) -> np.ndarray:
    Y = np.asarray(y, dtype=float)
    Y = Y.reshape(n, -1) if Y.size == n * params.output_dim else Y
    if Y.shape != (n, params.output_dim):
        raise MilplandError(
            f"data.y: expected {n} samples with {params.output_dim} output(s) to match the network, got shape {np.shape(y)}"
        )
    return Y


def _least_squares(Xt: np.ndarray, Y: np.ndarray) -> float:
    """min_M Σ ||M x̃_i - y_i||² via the residual of the orthogonal projection."""
    coef = np.linalg.lstsq(Xt, Y, rcond=None)[0]
    return float(np.sum((Y - Xt @ coef) ** 2))


def _least_absolute(Xt: np.ndarray, Y: np.ndarray) -> tuple[float, float]:
    """Σ over output columns of min_a Σ_i |x̃_i·a - y_i|, as a certified lower bound, and the primal-dual gap."""
    total, gap = 0.0, 0.0
    for c in range(Y.shape[1]):
        _, primal, lower = _lad(Xt, Y[:, c])
        total += lower
        gap = max(gap, primal - lower)
    return total, gap


def _lad(Xt: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least absolute deviations: coefficients, primal value (numpy) and a dual lower bound.

    Weak duality: for any λ with |λ_i| ≤ 1 and X̃ᵀλ = 0, Σ|y - X̃a| ≥ λᵀ(y - X̃a) = λᵀy for
    every a.  HiGHS' duals are projected onto {X̃ᵀλ = 0} and rescaled into the box, so
    the lower bound does not rest on HiGHS' optimality claim.
    """
    n, p = Xt.shape
    cost = np.concatenate([np.zeros(p), np.ones(n)])
    eye = np.eye(n)
    A_ub = np.block([[Xt, -eye], [-Xt, -eye]])
    b_ub = np.concatenate([y, -y])
    bounds = [(None, None)] * p + [(0, None)] * n
    res = linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:
        raise MilplandError(f"least absolute deviations LP failed: {res.message}")
    coef = res.x[:p]
    primal = float(np.sum(np.abs(y - Xt @ coef)))
    marg = np.asarray(res.ineqlin.marginals)
    lam = marg[:n] - marg[n:]  # d(value)/d(y): the LAD dual vector, up to sign convention
    if lam @ y < 0:
        lam = -lam
    lam = lam - Xt @ np.linalg.lstsq(Xt, lam, rcond=None)[0]  # project onto null(X̃ᵀ)
    lam = lam / max(1.0, float(np.max(np.abs(lam))))
    lower = float(lam @ y)
    return coef, primal, min(lower, primal)


def _finite_or_none(value: float):
    return float(value) if np.isfinite(value) else None
