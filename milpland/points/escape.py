"""Stationary points with zero output weights: the escape-neuron test (DESIGN §7; Wu, Şimşek & Ged 2024).

One hidden layer, scalar output, squared loss.  With e_k = f(x_k) − y_k, unit j's output
weight a_j and input weights w_j (bias folded in: x̃_k = (x_k, 1), z_kj = w_j·x̃_k), and
the one-sided derivative σ′(z; u) = lim_{s↓0} (σ(z + su) − σ(z))/s (= σ′(z)u off the
breakpoints, = α_left u or α_right u on a breakpoint), define for a direction d

    g_j(d) = Σ_k e_k σ′(z_kj; d·x̃_k)
           = Σ_{k untied} e_k σ′(z_kj)(d·x̃_k) + Σ_{k tied} e_k σ′(z_kj; d·x̃_k).

For ReLU-like σ the tied term is e_k σ(d·x̃_k), the form in DESIGN §7.  In the loss
L = ½Σ e_k² the one-sided derivative along (δw_j = d) is a_j g_j(d), along δa_j it is
Σ_k e_k σ(z_kj), along δc it is Σ_k e_k; these add up over units and parameters, so the
point is (directionally) stationary iff Σ e_k = 0 (only when the network has an output
bias), Σ_k e_k σ(z_kj) = 0 and a_j g_j(d) ≥ 0 for every d and every j.  g_j is positively homogeneous and piecewise
linear in d, so it suffices to maximise and minimise it over the box d ∈ [−1, 1]^(d+1):
linear when no sample is tied, otherwise one LP per sign choice of the tied samples'
d·x̃_k (few ties) or a MILP with one binary per tied sample (scipy.optimize.milp, HiGHS).

A unit with a_j = 0 and g_j(d) ≠ 0 for some d is an **escape neuron**: along
a_j = −t·sign(g_j(d)), w_j → w_j + s d with s = κ√t (so 0 < t ≪ s as t → 0) the loss
changes by exactly −t·s·|g_j(d)| + ½t²Σ_k σ(z_kj + s d·x̃_k)² for s below the distance to
the next breakpoint, which is negative for small t: the point is a saddle.  Wu et al.
state that a stationary point without escape neurons is a local minimum (scalar
output); this module reports that case as "no_escape_neuron" and does not itself prove
it (milpland.points.grouplsq certifies interior points).  For vector output the test is not
sufficient and is refused.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from milpland.errors import MilplandError
from milpland.instance.activations import Activation
from milpland.instance.deep import DeepParams, as_deep
from milpland.instance.losses import Loss

VERDICTS = ("saddle", "not_stationary", "no_escape_neuron")
ENUMERATE_LIMIT = 6  # tied samples up to which the 2^T sign choices are enumerated (2^T LPs each way)


@dataclass(frozen=True)
class UnitCheck:
    unit: int
    a: float  # output weight
    ties: tuple[int, ...]  # samples whose pre-activation is on a breakpoint
    grad_a: float  # Σ_k e_k σ(z_kj)
    g_max: float  # max of g_j over the box
    g_min: float  # min of g_j over the box
    d_max: tuple[float, ...]  # a maximiser (witness: g_j(d_max) = g_max by direct evaluation)
    d_min: tuple[float, ...]
    method: str  # "linear", "enumerate" or "milp"
    zero_output: bool
    escape: bool  # zero output weight and g_j ≠ 0 somewhere
    stationary: bool  # this unit's first-order conditions hold


@dataclass(frozen=True, eq=False)
class EscapePath:
    """t ↦ params(t): a_j = −t·sign(g), (w_j, b_j) += κ√t·d, for 0 < t ≤ t_max."""

    base: DeepParams
    unit: int
    direction: tuple[float, ...]  # d over (w_j, b_j)
    g: float  # g_j(d)
    kappa: float
    t_max: float
    start_risk: float
    samples: tuple[tuple[float, float], ...]  # (t, risk(t)) in the loss's reduction

    def params_at(self, t: float) -> DeepParams:
        t = float(t)
        if t < 0:
            raise MilplandError(f"t: the path is defined for t >= 0, got {t}")
        W1, b1 = self.base.W[0].copy(), self.base.b[0].copy()
        v = self.base.W[1].copy()
        step = self.kappa * np.sqrt(t) * np.asarray(self.direction)
        W1[self.unit] += step[:-1]
        b1[self.unit] += step[-1]
        v[0, self.unit] = -t * np.sign(self.g)
        return DeepParams((W1, v), (b1, self.base.b[1].copy()))

    def to_json(self) -> dict:
        return {
            "unit": self.unit, "direction": list(self.direction), "g": self.g, "kappa": self.kappa,
            "t_max": self.t_max, "start_risk": self.start_risk, "samples": [list(s) for s in self.samples],
        }


@dataclass(frozen=True, eq=False)
class EscapeReport:
    verdict: str
    risk: float
    stationary: bool
    grad_c: float  # Σ e_k
    units: tuple[UnitCheck, ...]
    escape_units: tuple[int, ...]
    path: EscapePath | None
    tol: float
    message: str

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict, "risk": self.risk, "stationary": self.stationary, "grad_c": self.grad_c,
            "units": [
                u.__dict__ | {"ties": list(u.ties), "d_max": list(u.d_max), "d_min": list(u.d_min)} for u in self.units
            ],
            "escape_units": list(self.escape_units), "path": self.path.to_json() if self.path else None,
            "tol": self.tol, "message": self.message,
        }

    def to_row(self) -> dict:
        return {
            "verdict": self.verdict, "risk": self.risk, "stationary": self.stationary, "grad_c": self.grad_c,
            "n_units": len(self.units), "zero_output_units": sum(u.zero_output for u in self.units),
            "escape_units": str(list(self.escape_units)), "tied_pairs": sum(len(u.ties) for u in self.units),
            "path_min_risk": min(r for _, r in self.path.samples) if self.path else float("nan"),
            "message": self.message,
        }


def escape_test(
    params, X, y, act: Activation, loss: Loss = Loss(), *, tol: float = 1e-9, tie_tol: float = 1e-9,
    zero_tol: float = 1e-12, method: str = "auto", output_bias: bool = True,
) -> EscapeReport:
    """Stationarity and escape neurons of a one-hidden-layer, scalar-output point (squared loss).

    ``tol`` is relative: a first-order quantity counts as zero when its size is at most
    tol·max(1, Σ_k |e_k|·||x̃_k||_1).  ``tie_tol``: a pre-activation within this distance of a
    breakpoint counts as tied.  ``zero_tol``: |a_j| up to this is a zero output weight.
    ``method``: "auto" (enumerate up to 6 tied samples per unit, else MILP), "enumerate"
    or "milp".  ``output_bias``: whether c is a parameter (without it, dL/dc = Σ e_k is no
    condition: c stays 0).  Returns the verdict "saddle" (with an explicit descent path whose sampled
    risks are all below the start), "not_stationary", or "no_escape_neuron".
    """
    params = as_deep(params)
    if params.depth != 1 or not params.scalar_output:
        raise MilplandError(
            "escape test: needs one hidden layer and scalar output (for vector output it is not sufficient, DESIGN §7); "
            f"got hidden widths {params.hidden} and {params.output_dim} outputs"
        )
    if loss.kind != "squared":
        raise MilplandError(f"loss.kind: the escape-neuron test is for the squared loss, got {loss.kind!r}")
    if method not in ("auto", "enumerate", "milp"):
        raise MilplandError(f"method: use auto, enumerate or milp, got {method!r}")
    X = np.asarray(X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    y = np.asarray(y, dtype=float).reshape(-1)
    Xt = np.column_stack([X, np.ones(X.shape[0])])
    f = params.forward(X, act)
    e = f - y
    risk = loss.risk(f, y)
    scale = max(1.0, float(np.sum(np.abs(e) * np.sum(np.abs(Xt), axis=1))))
    atol = tol * scale
    grad_c = float(np.sum(e))
    Z = params.pre_activations(X, act)[0]
    a_out = params.W[1][0]
    units = []
    for j in range(Z.shape[1]):
        units.append(_check_unit(j, float(a_out[j]), Z[:, j], e, Xt, act, atol, tie_tol, zero_tol, method))
    units = tuple(units)
    violations = []
    if output_bias and abs(grad_c) > atol:
        violations.append(f"dL/dc = {grad_c:.3g}")
    violations += [f"unit {u.unit}: dL/da = {u.grad_a:.3g}" for u in units if abs(u.grad_a) > atol]
    violations += [
        f"unit {u.unit}: a·g(d) reaches {min(u.a * u.g_max, u.a * u.g_min):.3g} < 0"
        for u in units if not u.zero_output and not u.stationary and abs(u.grad_a) <= atol
    ]
    stationary = not violations
    escape = tuple(u.unit for u in units if u.escape)
    if not stationary:
        return EscapeReport("not_stationary", risk, False, grad_c, units, escape, None, tol,
                            "not stationary: " + "; ".join(violations))
    if escape:
        best = max((u for u in units if u.escape), key=lambda u: max(u.g_max, -u.g_min))
        path = _descent_path(params, best, X, Xt, y, Z[:, best.unit], act, loss, risk, tie_tol)
        below = all(r < risk for _, r in path.samples)
        msg = (f"saddle: escape neuron(s) {list(escape)}; along the path of unit {best.unit} the risk drops "
               f"from {risk:.6g} to {min(r for _, r in path.samples):.6g}")
        if not below:
            msg += " (warning: not every sampled risk is below the start: rounding at this scale)"
        return EscapeReport("saddle", risk, True, grad_c, units, escape, path, tol, msg)
    n_zero = sum(u.zero_output for u in units)
    ties = sum(len(u.ties) for u in units)
    return EscapeReport(
        "no_escape_neuron", risk, True, grad_c, units, (), None, tol,
        f"stationary; {n_zero} zero-output unit(s), none an escape neuron; {ties} tied (sample, unit) pair(s) checked. "
        "Wu, Simsek & Ged (2024): such a point is a local minimum (scalar output) -- not proven here; "
        "use the group bound or the cell check for a certificate",
    )


def g_value(d, z, e, Xt, act: Activation, tie_tol: float = 1e-9) -> float:
    """g_j(d) by direct evaluation of the one-sided derivatives (the witness check)."""
    u = Xt @ np.asarray(d, dtype=float)
    return float(np.sum(e * _dir_deriv(z, u, act, tie_tol)))


def _dir_deriv(z, u, act: Activation, tie_tol: float) -> np.ndarray:
    """σ′(z; u) elementwise: right slope for u > 0, left slope for u < 0 on a breakpoint."""
    t = np.asarray(act.breakpoints)
    slopes = np.asarray(act.slopes)
    dist = np.abs(z[:, None] - t[None, :])
    tied = dist.min(axis=1) <= tie_tol
    b = dist.argmin(axis=1)
    off = slopes[act.piece(z)] * u
    on = np.where(u >= 0, slopes[b + 1] * u, slopes[b] * u)
    return np.where(tied, on, off)


def _check_unit(j, a, z, e, Xt, act, atol, tie_tol, zero_tol, method) -> UnitCheck:
    t = np.asarray(act.breakpoints)
    slopes = np.asarray(act.slopes)
    dist = np.abs(z[:, None] - t[None, :])
    tied = np.flatnonzero(dist.min(axis=1) <= tie_tol)
    untied = np.setdiff1d(np.arange(z.size), tied)
    b = dist.argmin(axis=1)
    # g(d) = lin·d + Σ_tied γ_k (x̃_k·d)_+
    lin = (e[untied] * slopes[act.piece(z[untied])]) @ Xt[untied]
    lin = lin + (e[tied] * slopes[b[tied]]) @ Xt[tied]
    gamma = e[tied] * (slopes[b[tied] + 1] - slopes[b[tied]])
    A = Xt[tied]
    grad_a = float(np.sum(e * act(z)))
    if tied.size == 0:
        used = "linear"
        d_max, d_min = np.sign(lin), -np.sign(lin)
    elif method == "enumerate" or (method == "auto" and tied.size <= ENUMERATE_LIMIT):
        used = "enumerate"
        d_max, d_min = _enumerate(lin, gamma, A, +1), _enumerate(lin, gamma, A, -1)
    else:
        used = "milp"
        d_max, d_min = _milp(lin, gamma, A, +1), _milp(lin, gamma, A, -1)
    g_max = g_value(d_max, z, e, Xt, act, tie_tol)
    g_min = g_value(d_min, z, e, Xt, act, tie_tol)
    zero = abs(a) <= zero_tol
    escape = zero and max(g_max, -g_min) > atol
    if zero:
        ok = abs(grad_a) <= atol
    else:
        worst = a * (g_min if a > 0 else g_max)
        ok = abs(grad_a) <= atol and worst >= -atol * max(1.0, abs(a))
    return UnitCheck(
        unit=j, a=a, ties=tuple(int(k) for k in tied), grad_a=grad_a, g_max=g_max, g_min=g_min,
        d_max=tuple(float(v) for v in d_max), d_min=tuple(float(v) for v in d_min), method=used,
        zero_output=zero, escape=bool(escape), stationary=bool(ok),
    )


def _enumerate(lin, gamma, A, sense) -> np.ndarray:
    """Best d over the box for sense·g: one LP per sign choice of the tied samples' x̃_k·d."""
    D = lin.size
    best_d, best_val = np.zeros(D), 0.0
    for signs in itertools.product((0, 1), repeat=len(gamma)):
        s = np.asarray(signs, dtype=float)
        c = lin + (gamma * s) @ A
        # region: x̃_k·d >= 0 where s_k = 1, <= 0 where s_k = 0
        A_ub = np.where(s[:, None] == 1, -A, A)
        res = linprog(-sense * c, A_ub=A_ub, b_ub=np.zeros(len(gamma)), bounds=[(-1, 1)] * D, method="highs")
        if res.status == 0 and sense * (c @ res.x) > best_val:
            best_d, best_val = res.x, sense * float(c @ res.x)
    return best_d


def _milp(lin, gamma, A, sense) -> np.ndarray:
    """Best d over the box for sense·g with p_k = (x̃_k·d)_+ modelled exactly by binaries."""
    D, T = lin.size, len(gamma)
    M = np.sum(np.abs(A), axis=1)  # |x̃_k·d| <= ||x̃_k||_1 on the box
    # variables: d (D), p (T), z (T)
    c = -sense * np.concatenate([lin, gamma, np.zeros(T)])
    I, O = np.eye(T), np.zeros((T, T))
    rows = [
        np.hstack([-A, I, O]),  # p - x̃·d >= 0
        np.hstack([-A, I, np.diag(M)]),  # p - x̃·d + M z <= M   (p <= x̃·d + M(1 - z))
        np.hstack([np.zeros((T, D)), I, -np.diag(M)]),  # p - M z <= 0
    ]
    lb = np.concatenate([np.zeros(T), np.full(T, -np.inf), np.full(T, -np.inf)])
    ub = np.concatenate([np.full(T, np.inf), M, np.zeros(T)])
    cons = LinearConstraint(np.vstack(rows), lb, ub)
    bounds = Bounds(np.concatenate([-np.ones(D), np.zeros(T), np.zeros(T)]), np.concatenate([np.ones(D), M, np.ones(T)]))
    integrality = np.concatenate([np.zeros(D + T), np.ones(T)])
    res = milp(c, constraints=cons, bounds=bounds, integrality=integrality, options={"mip_rel_gap": 1e-9})
    if res.x is None:
        raise MilplandError(f"escape test: the MILP over the tied samples failed: {res.message}")
    return np.clip(res.x[:D], -1.0, 1.0)


def _descent_path(params: DeepParams, unit: UnitCheck, X, Xt, y, z, act, loss, risk, tie_tol) -> EscapePath:
    """The explicit path of DESIGN §7 with κ, t_max chosen so that the risk provably drops."""
    d = np.asarray(unit.d_max if unit.g_max >= -unit.g_min else unit.d_min)
    G = unit.g_max if unit.g_max >= -unit.g_min else unit.g_min
    u = Xt @ d
    s_max = _linear_reach(z, u, act, tie_tol)
    L = max(abs(s) for s in act.slopes)
    Q = float(np.sum((np.abs(act(z)) + s_max * L * np.abs(u)) ** 2))  # >= Σ σ(z + s u)² for s <= s_max
    # ½SSE changes by −t·s|G| + ½t²Q(s) with s = κ√t; κ = s_max/√t_max and t_max = s_max|G|/Q
    # give ½tQ(s) ≤ ½√(t·t_max)·Q < s|G| for all 0 < t ≤ t_max: a strict decrease along the path.
    t_max = float(s_max * abs(G) / max(Q, 1e-300))
    kappa = s_max / np.sqrt(t_max)
    path = EscapePath(params, unit.unit, tuple(float(v) for v in d), float(G), float(kappa), t_max, risk, ())
    samples = []
    for frac in (0.01, 0.03, 0.1, 0.3, 1.0):
        t = frac * t_max
        f = path.params_at(t).forward(X, act)
        samples.append((t, loss.risk(f, y)))
    return EscapePath(params, unit.unit, path.direction, path.g, path.kappa, t_max, risk, tuple(samples))


def _linear_reach(z, u, act: Activation, tie_tol: float) -> float:
    """Half the largest s such that every z_k + s·u_k stays in one piece of σ (past a tied breakpoint)."""
    t = np.asarray(act.breakpoints)
    reach = np.inf
    for zk, uk in zip(z, u):
        if uk == 0:
            continue
        ahead = t[t > zk + tie_tol] - zk if uk > 0 else zk - t[t < zk - tie_tol]
        if ahead.size:
            reach = min(reach, float(np.min(ahead)) / abs(uk))
    return 0.5 * reach if np.isfinite(reach) else 1.0
