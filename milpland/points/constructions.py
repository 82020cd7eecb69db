"""Constructions of local minima from the literature (DESIGN §8), with what each builds.

- `yun_step1`, `yun_step2`: Yun, Sra & Jadbabaie 2019, Thm 1 (one hidden layer, the
  two-slope activation h_{s+,s-}): the linear-fit local minimum and a strictly better point.
- `he_deep`, `valley`, `valley_range`: He, Wang & Tao 2020, Part 1: every unit of every
  layer in one linear piece, so the net computes the least-squares affine fit; and the
  constant-risk valley obtained by rescaling consecutive layers.
- `liu_groups`: Liu 2021: a partition of the samples, each group fitted by its own
  affine piece, every sample strictly inside its piece.
- `embed`: network embedding (a zero unit, a dead unit, a split unit; DESIGN §7).

Every function returns a `Construction`: the parameters (`DeepParams`), the activation,
the risk by a plain numpy forward pass in the given loss, and a record of what was built.
Whether a point is a local minimum is not asserted here: `milpland.points.grouplsq.group_bound`
certifies it (the constructions of Yun step 1, He and Liu are strictly interior points
whose risk equals the group bound) and `milpland.points.escape` tests zero-output units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from milpland.errors import MilplandError
from milpland.instance import activations as acts
from milpland.instance.activations import Activation
from milpland.instance.deep import DeepParams, as_deep
from milpland.instance.losses import Loss
from milpland.points.grouplsq import affine_fit
from milpland.records import jsonable

EMBEDDINGS = ("zero", "dead", "split")


@dataclass(frozen=True, eq=False)
class Construction:
    name: str
    params: DeepParams
    activation: Activation | None
    risk: float  # plain numpy forward pass, in `loss`'s reduction (nan when no data were given)
    loss: Loss
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "params": self.params.to_json(),
            "activation": self.activation.describe() if self.activation is not None else None,
            "risk": float(self.risk) if np.isfinite(self.risk) else None,
            "loss": {"kind": self.loss.kind, "reduction": self.loss.reduction},
            "details": jsonable(self.details),
        }


# ------------------------------------------------------------------------------------------
# Yun, Sra & Jadbabaie 2019, Theorem 1
# ------------------------------------------------------------------------------------------


def yun_step1(X, y, s_plus: float, s_minus: float, width: int, *, alpha: float = 1.0, loss: Loss = Loss()) -> Construction:
    """Step 1 of Yun et al. Thm 1: a one-hidden-layer h_{s+,s-} net equal to the least-squares fit.

    With the least-squares affine fit W̄ (fitted values ȳ_i = W̄ x̃_i) and
    η = min(−1, 2 min_i ȳ_i): unit 1 has input weights α W̄_x and bias α(W̄_1 − η), units
    2..m have zero input weights and bias −αη > 0, the output weights are (1/(α s+), 0, …)
    and the output bias is η.  Unit 1's pre-activation α(ȳ_i − η) is ≥ α·max(1, −min ȳ) > 0
    and the others are −αη ≥ α > 0, so every unit is strictly in the positive piece and
    f(x_i) = (1/(α s+)) s+ α (ȳ_i − η) + η = ȳ_i.  Near this point the network is an affine
    function of x, so R ≥ R(linear fit) there: a (non-strict) local minimum, certified by
    the group bound (one group).  Needs s+ > 0, s+ ≠ s−, width ≥ 1 (Thm 1 assumes ≥ 2), α > 0.
    """
    X, y = _xy(X, y)
    _check_two_slope(s_plus, s_minus, width, alpha, min_width=1)
    act = acts.two_slope(float(s_plus), float(s_minus))
    coef, fitted = _ls(X, y)
    eta = min(-1.0, 2.0 * float(np.min(fitted)))
    params = _yun_linear_point(coef, eta, width, alpha, s_plus, X.shape[1])
    risk = _risk(params, X, y, act, loss)
    residual = y - fitted
    return Construction(
        "yun_step1", params, act, risk, loss,
        {
            "eta": eta, "alpha": alpha, "width": width, "ls_coef": coef.tolist(),
            "ls_risk": loss.risk(fitted, y), "linearly_fittable": bool(_fits_exactly(residual, y)),
        },
    )


def yun_step2(
    X, y, s_plus: float, s_minus: float, width: int, *, alpha: float = 1.0, loss: Loss = Loss(),
    direction: str = "best", seed: int = 0,
) -> Construction:
    """A point strictly better than `yun_step1` when the data are not linearly fittable.

    Derivation (our own; the paper's Step 2 text was not available to us, and it splits
    the sorted ȳ at an index j0 with a non-zero partial residual sum in the same spirit).
    Let r = y − ȳ be the least-squares residual: r ⊥ every affine function of x, r ≠ 0.
    For a projection q_i = u·x̃_i and a threshold β strictly between two consecutive
    distinct sorted values q_(j0) < β < q_(j0+1), let φ_i = (q_i − β)_+.  Then
    S = Σ r_i φ_i = Σ_{i: q_i>β} r_i (q_i − β) is affine in β on that interval with slope
    −Σ_{q_i>β} r_i = +Σ_{i≤j0} r_i (the partial residual sum), so whenever that sum is
    non-zero S vanishes at most once in the interval; and some (u, β) with S ≠ 0 exists
    whenever the x_i are distinct, because hinges (u·x − β)_+ and affine functions span
    every function on finitely many distinct points.  The network output
    f = ȳ + ε φ changes the risk by w(−2εS + ε²Q), Q = Σ φ_i², w = Loss.weight(n);
    ε = S/Q gives the exact improvement w S²/Q > 0 — a lower bound on the gap between
    step 1 and the global minimum.

    Realisation (width ≥ 2): since h(z) − s− z = (s+ − s−) z_+, unit 2 with pre-activation
    α(q − β) and output weight ε/(α(s+ − s−)) contributes ε s−(q − β)/(s+ − s−) + ε φ;
    unit 1 carries the affine remainder L = ȳ − ε s−(q − β)/(s+ − s−) exactly as in step 1
    (η' = min(−1, 2 min L)); units 3..m are as in step 1.  No sample sits on unit 2's kink
    because β lies strictly between sample projections.

    ``direction``: "fitted" tries only q = ±ȳ (the paper's choice); "best" (default) also
    tries ± each coordinate axis and 16 seeded random directions and keeps the split with
    the largest improvement.  For linearly fittable data (or when no split improves)
    the step-1 point is returned with improvement 0 and details["better"] = False.
    """
    X, y = _xy(X, y)
    _check_two_slope(s_plus, s_minus, width, alpha, min_width=2)
    if loss.kind != "squared":
        raise MilplandError(f"loss.kind: Yun step 2 is derived for the squared loss, got {loss.kind!r}")
    if direction not in ("best", "fitted"):
        raise MilplandError(f"direction: use 'best' or 'fitted', got {direction!r}")
    act = acts.two_slope(float(s_plus), float(s_minus))
    step1 = yun_step1(X, y, s_plus, s_minus, width, alpha=alpha, loss=loss)
    coef, fitted = _ls(X, y)
    residual = y - fitted
    n, d = X.shape
    w = loss.weight(n)
    if _fits_exactly(residual, y):
        return _no_step2(step1, "the data are fitted exactly by an affine function: step 1 is a global minimum")
    best = _best_split(X, residual, coef, direction, seed, w)
    if best is None:
        return _no_step2(step1, "no hinge split has a non-zero residual correlation (repeated inputs?)")
    u, u0, beta, S, Q, kind = best
    eps = S / Q
    q = X @ u + u0
    phi = np.maximum(q - beta, 0.0)
    ds = float(s_plus) - float(s_minus)
    lin = eps * float(s_minus) / ds  # unit 2's linear part, which unit 1 cancels
    L_slope = coef[:d] - lin * u
    L_icpt = coef[d] - lin * (u0 - beta)
    L = X @ L_slope + L_icpt
    eta = min(-1.0, 2.0 * float(np.min(L)))
    params = _yun_linear_point(np.concatenate([L_slope, [L_icpt]]), eta, width, alpha, s_plus, d)
    W1, b1, v = params.W[0].copy(), params.b[0].copy(), params.W[1].copy()
    W1[1], b1[1], v[0, 1] = alpha * u, alpha * (u0 - beta), eps / (alpha * ds)
    params = DeepParams((W1, v), (b1, params.b[1]))
    f = params.forward(X, act)
    if np.max(np.abs(f - (fitted + eps * phi))) > 1e-8 * max(1.0, float(np.max(np.abs(y)))):
        raise RuntimeError("internal: yun_step2 network does not compute ȳ + εφ")
    order = np.argsort(q, kind="stable")
    j0 = int(np.sum(q < beta))
    return Construction(
        "yun_step2", params, act, _risk(params, X, y, act, loss), loss,
        {
            "better": True, "improvement": float(w * S * S / Q),
            "improvement_is": "exact drop from step 1; a lower bound on the gap to the global minimum",
            "step1_risk": step1.risk, "direction": u.tolist(), "offset": float(u0), "direction_kind": kind,
            "beta": float(beta), "j0": j0, "partial_residual_sum": float(np.sum(residual[order[:j0]])),
            "epsilon": float(eps), "correlation": float(S), "phi_norm2": float(Q), "eta": eta, "alpha": alpha,
        },
    )


def _yun_linear_point(coef, eta, width, alpha, s_plus, d) -> DeepParams:
    W1 = np.zeros((width, d))
    b1 = np.full(width, -alpha * eta)
    W1[0] = alpha * np.asarray(coef[:d], dtype=float)
    b1[0] = alpha * (float(coef[d]) - eta)
    v = np.zeros((1, width))
    v[0, 0] = 1.0 / (alpha * float(s_plus))
    return DeepParams((W1, v), (b1, np.array([eta])))


def _best_split(X, residual, coef, direction, seed, w):
    """The (u, u0, β, S, Q, kind) with the largest S²/Q over the candidate projections."""
    n, d = X.shape
    cands = [(coef[:d], float(coef[d]), "fitted_values")]
    if direction == "best":
        cands += [(np.eye(d)[k], 0.0, f"axis_{k}") for k in range(d)]
        rng = np.random.default_rng(seed)
        for k in range(16):
            g = rng.normal(size=d)
            cands.append((g / np.linalg.norm(g), 0.0, f"random_{k}"))
    best, best_val = None, 0.0
    scale = float(np.sum(residual**2))
    for u0_vec, u0, kind in cands:
        for sign in (1.0, -1.0):
            u, off = sign * np.asarray(u0_vec, dtype=float), sign * u0
            q = X @ u + off
            vals = np.unique(q)
            if vals.size < 2 or vals[-1] - vals[0] <= 1e-12 * max(1.0, np.max(np.abs(vals))):
                continue
            for lo, hi in zip(vals[:-1], vals[1:]):
                if hi - lo <= 1e-12 * max(1.0, abs(hi)):
                    continue
                for frac in (1 / 3, 1 / 2, 2 / 3):
                    beta = lo + frac * (hi - lo)
                    phi = np.maximum(q - beta, 0.0)
                    S, Q = float(residual @ phi), float(phi @ phi)
                    if Q <= 0:
                        continue
                    val = S * S / Q
                    if val > best_val and val > 1e-12 * max(scale, 1e-300):
                        best, best_val = (u, off, beta, S, Q, kind), val
    return best


def _no_step2(step1: Construction, reason: str) -> Construction:
    details = dict(step1.details, better=False, improvement=0.0, reason=reason, step1_risk=step1.risk)
    return Construction("yun_step2", step1.params, step1.activation, step1.risk, step1.loss, details)


def _check_two_slope(s_plus, s_minus, width, alpha, *, min_width):
    if not (np.isfinite(s_plus) and np.isfinite(s_minus)) or s_plus <= 0 or s_plus == s_minus:
        raise MilplandError(f"s_plus, s_minus: need s_plus > 0 and s_plus != s_minus, got {s_plus}, {s_minus}")
    if not isinstance(width, (int, np.integer)) or width < min_width:
        raise MilplandError(f"width: Yun's construction needs width >= {min_width}, got {width!r}")
    if not (np.isfinite(alpha) and alpha > 0):
        raise MilplandError(f"alpha: must be positive, got {alpha!r}")


# ------------------------------------------------------------------------------------------
# He, Wang & Tao 2020, Part 1: one linear piece through any depth, and its valley
# ------------------------------------------------------------------------------------------


def he_deep(X, y, activation: Activation, hidden_widths, *, piece: int | None = None, loss: Loss = Loss()) -> Construction:
    """Every unit of every hidden layer strictly inside one linear piece; the net equals the LS fit.

    Pick a piece q with slope α ≠ 0 (σ = αz + β there).  Layer by layer carry the k
    fitted-value signals F (n x k; F = least-squares affine fit of y at layer 0): unit j < k
    of the next layer gets pre-activation τ + κ(F_j − μ_j) (μ = column means), the other
    units the constant τ, with τ, κ chosen so that every pre-activation stays at least
    `margin` inside piece q ("translate the inputs into the interior of one piece").  Then
    a_j = ν + ακ(F_j − μ_j), ν = ατ + β, and F is recovered as (a_j − ν)/(ακ) + μ_j: an
    affine map folded into the next layer.  The output layer returns F = ȳ.  All samples
    share one pattern, so the group bound is the least-squares risk = the point's risk and
    the point is a certified local minimum.  Every hidden width must be ≥ k (outputs).
    """
    X, Y = _xy(X, y, vector=True)
    widths = _widths(hidden_widths)
    k = Y.shape[1]
    if min(widths) < k:
        raise MilplandError(f"hidden_widths: every layer needs at least {k} units to carry {k} outputs, got {list(widths)}")
    q = choose_piece(activation) if piece is None else _check_piece(activation, piece)
    coef, _ = _ls(X, Y)
    V, c = coef[:-1].T, coef[-1]  # readout F = x V^T + c
    Ws, bs = [], []
    a = X
    for m in widths:
        W, b, V, c, a = _carry_layer(a, V, c, m, activation, q)
        Ws.append(W)
        bs.append(b)
    params = DeepParams(tuple(Ws) + (V,), tuple(bs) + (c,))
    return Construction(
        "he_deep", params, activation, _risk(params, X, Y if k > 1 else Y[:, 0], activation, loss), loss,
        {"piece": q, "slope": activation.slopes[q], "hidden_widths": list(widths), "ls_coef": coef.tolist(),
         "margin": params.margin(X, activation)},
    )


def _carry_layer(a, V, c, m, act, q):
    """One hidden layer carrying the signals F = a V^T + c inside piece q; returns the new readout."""
    k = V.shape[0]
    F = a @ V.T + c
    mu = F.mean(axis=0)
    spread = max(float(np.max(np.abs(F - mu))), 1e-300)
    tau, kappa = frame(act, q, spread)
    alpha, beta = act.slopes[q], act.intercepts[q]
    W = np.zeros((m, V.shape[1]))
    b = np.full(m, tau)
    W[:k] = kappa * V
    b[:k] = tau + kappa * (c - mu)
    nu = alpha * tau + beta
    V_new = np.zeros((k, m))
    V_new[:, :k] = np.eye(k) / (alpha * kappa)
    c_new = mu - nu / (alpha * kappa)
    return W, b, V_new, c_new, act(a @ W.T + b)


def valley_range(params, X, act: Activation, *, layer: int = 0) -> float:
    """Largest t_max such that `valley(..., t)` stays in the cell for every 0 < t < t_max.

    See `valley` for the map.  With the centre τ_j at an end of unit j's piece, the
    rescaled pre-activation τ_j + t(z − τ_j) stays on the same side of τ_j for every
    t > 0 and stays below the far end of a bounded piece while t < (far − τ_j)/(z − τ_j).
    """
    params = as_deep(params)
    Z = params.pre_activations(X, act)[layer]
    centres, far = _valley_centres(Z, act, layer)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isfinite(far), (far - centres) / (Z - centres), np.inf)
    ratio = np.where(ratio > 0, ratio, np.inf)  # far end on the other side of τ: never reached
    return float(np.min(ratio)) if ratio.size else float("inf")


def valley(params, X, act: Activation, t: float, *, layer: int = 0) -> DeepParams:
    """The point of the constant-risk valley at rescaling t (He et al.: W[l] *= t, W[l+1] /= t).

    Homogeneous activations: z' = t z, σ(t z) = t σ(z) for t > 0, and the next layer takes
    W[l+1]/t: the network function is unchanged everywhere.  Other activations: every
    unit j of layer l must lie in one piece (σ = α_j z + β_j) on all samples; rescale about
    an end τ_j of that piece: z' = τ_j + t(z − τ_j), i.e. W'[l] = t W[l], b'[l] = t b[l] +
    (1 − t)τ, so a' = t a + (1 − t)ν with ν_j = σ(τ_j), and the next layer absorbs it:
    W'[l+1] = W[l+1]/t, b'[l+1] = b[l+1] − ((1 − t)/t) W[l+1] ν.  Outputs on the data and the
    pattern are unchanged for 0 < t < valley_range(...).
    """
    params = as_deep(params)
    if not (0 <= layer < params.depth):
        raise MilplandError(f"layer: must be a hidden layer index in [0, {params.depth - 1}], got {layer}")
    if not (np.isfinite(t) and t > 0):
        raise MilplandError(f"t: the rescaling factor must be positive, got {t!r}")
    Z = params.pre_activations(X, act)[layer]
    centres, _ = _valley_centres(Z, act, layer)
    t_max = valley_range(params, X, act, layer=layer)
    if t >= t_max:
        raise MilplandError(
            f"t: the valley leaves the cell at t = {t_max:.6g} (a unit would reach the end of its piece), got t = {t}"
        )
    nu = act(centres)
    W, b = list(params.W), list(params.b)
    W[layer] = t * W[layer]
    b[layer] = t * b[layer] + (1.0 - t) * centres
    b[layer + 1] = b[layer + 1] - ((1.0 - t) / t) * (params.W[layer + 1] @ nu)
    W[layer + 1] = params.W[layer + 1] / t
    return DeepParams(tuple(W), tuple(b))


def _valley_centres(Z, act: Activation, layer: int):
    """Per unit: the centre τ_j (a piece end) and the far end of its piece."""
    if act.homogeneous:
        m = Z.shape[1]
        pieces = act.piece(Z)
        far = np.where(pieces == 0, -np.inf, np.inf)
        return np.zeros(m), far
    pieces = act.piece(Z)
    centres, far = [], []
    for j in range(Z.shape[1]):
        ks = np.unique(pieces[:, j])
        if ks.size != 1:
            raise MilplandError(
                f"layer {layer} unit {j}: its samples lie in pieces {ks.tolist()}; exact rescaling of a "
                "non-homogeneous activation needs every unit in one piece"
            )
        k = int(ks[0])
        lo, hi = act.lower(k), act.upper(k)
        centres.append(lo if np.isfinite(lo) else hi)
        far.append(hi if np.isfinite(lo) else lo)
    return np.array(centres), np.array(far)


# ------------------------------------------------------------------------------------------
# Liu 2021: groups fitted by separate affine pieces
# ------------------------------------------------------------------------------------------


def liu_groups(X, y, activation: Activation, hidden_widths, groups, *, loss: Loss = Loss()) -> Construction:
    """A point whose net fits each group of a partition by that group's own best affine piece.

    What is realisable (scalar output, any CPWL activation, any depth; layer 1 does the
    work, deeper layers carry the output inside one linear piece as in `he_deep`): an
    ordered partition G_1, …, G_K that is a *separable chain* — for every j the prefix
    G_1 ∪ … ∪ G_j and the suffix G_{j+1} ∪ … ∪ G_K are strictly separated by a hyperplane.
    For 1-D data this means contiguous groups along the sorted x (groups are sorted by
    their smallest x automatically; elsewhere the given order is used).

    Let ℓ_k be G_k's best affine fit (least squares, or least absolute deviations for the
    absolute loss) and δ_j = ℓ_{j+1} − ℓ_j.  The target is f = ℓ_1 + Σ_j δ_j·[x in suffix j],
    which equals ℓ_k on G_k.  Each junction j is realised by hinge units g_+ whose kink
    hyperplane separates prefix from suffix (g < 0 before, g > 0 after):
    - 1 unit, g = ±δ_j, when δ_j itself separates (with margin ≥ 1 % of max|δ_j|);
    - 2 units, g₁ = s and g₂ = s + μδ_j (s a separating LP solution, s ≤ −1 before and
      ≥ 1 after, μ = 0.5/max|δ_j|), with coefficients ∓1/μ, otherwise;
    - 0 units when δ_j vanishes on the data (the two groups then share one pattern).
    A unit with breakpoint t_b has pre-activation t_b + κg, κ small enough that the
    samples stay in the two pieces next to t_b, where σ(t_b + κg) = σ(t_b) + α_{b−1}κg +
    (α_b − α_{b−1})κ g_+.  The affine remainder is carried by one extra unit kept inside
    a linear piece (not needed when the remainder is constant on the data).  Layer 1
    therefore needs  Σ_j units_j + (1 if a carrier is needed)  units; fewer raise
    MilplandError.  Every pre-activation is strictly inside its piece, samples in one group
    share the full pattern and the net equals ℓ_k on G_k, so R = Σ_k (G_k's best fit)
    = the group bound: a certified local minimum (milpland.points.grouplsq).
    """
    X, y = _xy(X, y)
    widths = _widths(hidden_widths)
    n, d = X.shape
    parts = _partition(groups, n)
    if d == 1:
        parts.sort(key=lambda g: float(np.min(X[g, 0])))
    Xt = np.column_stack([X, np.ones(n)])
    fits = [affine_fit(X[g], y[g], loss)[0][:, 0] for g in parts]
    # Hinge units (g coefficients, lambda) junction by junction.
    units, kinds = [], []
    for j in range(len(parts) - 1):
        pre = np.concatenate(parts[: j + 1])
        suf = np.concatenate(parts[j + 1 :])
        delta = fits[j + 1] - fits[j]
        vals = Xt @ delta
        big = float(np.max(np.abs(vals)))
        if big <= 1e-12 * max(1.0, float(np.max(np.abs(y)))):
            kinds.append(0)
            continue
        if np.max(vals[pre]) < -0.01 * big and np.min(vals[suf]) > 0.01 * big:
            units.append((delta, 1.0))
            kinds.append(1)
            continue
        if np.min(vals[pre]) > 0.01 * big and np.max(vals[suf]) < -0.01 * big:
            units.append((-delta, -1.0))
            kinds.append(1)
            continue
        s = _separator(Xt[pre], Xt[suf], j)
        mu = 0.5 / big
        units.append((s, -1.0 / mu))
        units.append((s + mu * delta, 1.0 / mu))
        kinds.append(2)
    b_idx = _kink_breakpoint(activation)
    t_b = activation.breakpoints[b_idx]
    a_left, a_right = activation.slopes[b_idx], activation.slopes[b_idx + 1]
    lo_b = activation.lower(b_idx)  # the piece left of t_b starts here
    hi_b = activation.upper(b_idx + 1)  # the piece right of t_b ends here
    rows, biases, outs = [], [], []
    remainder = fits[0].copy()  # ℓ_1 minus the affine parts of the hinge units
    for g, lam in units:
        gv = Xt @ g
        kappa = _kink_scale(gv, t_b, lo_b, hi_b)
        v = lam / ((a_right - a_left) * kappa)
        rows.append(kappa * g[:d])
        biases.append(t_b + kappa * g[d])
        outs.append(v)
        remainder -= v * a_left * kappa * g
    # Constants go into the output bias; only a non-constant remainder needs a carrier unit.
    need_carrier = bool(np.ptp(X @ remainder[:d]) > 1e-12 * max(1.0, float(np.max(np.abs(Xt @ remainder)))))
    needed = len(units) + int(need_carrier)
    if widths[0] < needed:
        raise MilplandError(
            f"hidden_widths: these {len(parts)} groups need {needed} units in the first hidden layer "
            f"({sum(kinds)} hinge units for junctions of sizes {kinds}"
            f"{' + 1 carrier for the affine part' if need_carrier else ''}), the width is {widths[0]}"
        )
    q = choose_piece(activation)
    if need_carrier:
        h = X @ remainder[:d]
        h_mu = float(np.mean(h))
        tau, kappa = frame(activation, q, float(np.max(np.abs(h - h_mu))))
        alpha_q = activation.slopes[q]
        rows.append(kappa * remainder[:d])
        biases.append(tau - kappa * h_mu)
        outs.append(1.0 / (alpha_q * kappa))
    tau0, _ = frame(activation, q, 1.0)
    while len(rows) < widths[0]:
        rows.append(np.zeros(d))
        biases.append(tau0)
        outs.append(0.0)
    W1, b1 = np.array(rows).reshape(widths[0], d), np.array(biases)
    v = np.array(outs).reshape(1, -1)
    target = np.empty(n)
    for g, coef in zip(parts, fits):
        target[g] = Xt[g] @ coef
    c = float(np.mean(target - _act_out(X, W1, b1, v, activation)))
    params = DeepParams((W1, v), (b1, np.array([c])))
    f = params.forward(X, activation)
    if np.max(np.abs(f - target)) > 1e-7 * max(1.0, float(np.max(np.abs(target)))):
        raise RuntimeError(f"internal: liu_groups network misses its target by {np.max(np.abs(f - target)):.3g}")
    if len(widths) > 1:
        a = activation(X @ W1.T + b1)
        Ws, bs = [W1], [b1]
        V, cc = v, np.array([c])
        for m in widths[1:]:
            W, b, V, cc, a = _carry_layer(a, V, cc, m, activation, q)
            Ws.append(W)
            bs.append(b)
        params = DeepParams(tuple(Ws) + (V,), tuple(bs) + (cc,))
    expected = loss.weight(n) * float(np.sum(loss.per_sample(target, y)))
    return Construction(
        "liu_groups", params, activation, _risk(params, X, y, activation, loss), loss,
        {
            "groups": [sorted(int(i) for i in g) for g in parts], "junction_units": kinds, "carrier": need_carrier,
            "units_used": needed, "group_fits": [f.tolist() for f in fits], "expected_risk": float(expected),
            "margin": params.margin(X, activation), "kink_breakpoint": t_b, "carrier_piece": q,
        },
    )


def _act_out(X, W1, b1, v, act):
    """One-hidden-layer output without the output bias."""
    return act(X @ W1.T + b1) @ v[0]


def _partition(groups, n: int) -> list[np.ndarray]:
    """Index arrays from a list of index lists, or from one integer label per sample."""
    if isinstance(groups, np.ndarray) and groups.ndim == 1 and groups.shape[0] == n and groups.dtype.kind in "iu":
        parts = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    else:
        try:
            parts = [np.asarray(list(g), dtype=int).reshape(-1) for g in groups]
        except (TypeError, ValueError):
            raise MilplandError("groups: give a list of lists of sample indices, or an integer label per sample") from None
    if not parts or any(p.size == 0 for p in parts):
        raise MilplandError("groups: need at least one group, and every group needs at least one sample")
    seen = np.concatenate(parts)
    if seen.size != n or not np.array_equal(np.sort(seen), np.arange(n)):
        raise MilplandError(f"groups: must be a partition of the {n} sample indices 0..{n - 1} (each exactly once)")
    return parts


def _separator(A_pre, A_suf, j):
    """An affine s with s ≤ −1 on the prefix and s ≥ 1 on the suffix, minimising ||s||_1 (LP)."""
    p = A_pre.shape[1]
    cost = np.ones(2 * p)
    A_ub = np.vstack([np.hstack([A_pre, -A_pre]), np.hstack([-A_suf, A_suf])])
    b_ub = -np.ones(A_ub.shape[0])
    res = linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=[(0, None)] * (2 * p), method="highs")
    if res.status != 0:
        raise MilplandError(
            f"groups: groups 1..{j + 1} cannot be separated from groups {j + 2}.. by a hyperplane "
            "(only separable chains of groups are realisable; reorder or merge groups)"
        )
    s = res.x[:p] - res.x[p:]
    if np.max(A_pre @ s) >= -0.5 or np.min(A_suf @ s) <= 0.5:  # the LP's claim, re-checked
        raise RuntimeError("internal: separating LP returned a non-separating hyperplane")
    return s


def _kink_breakpoint(act: Activation) -> int:
    jumps = [abs(act.slopes[k + 1] - act.slopes[k]) for k in range(len(act.breakpoints))]
    return int(np.argmax(jumps))


def _kink_scale(gv, t_b, lo, hi) -> float:
    """κ > 0 such that t_b + κ g stays strictly inside (lo, hi) on the samples."""
    limits = []
    if np.isfinite(hi) and np.max(gv) > 0:
        limits.append(0.5 * (hi - t_b) / np.max(gv))
    if np.isfinite(lo) and np.min(gv) < 0:
        limits.append(0.5 * (t_b - lo) / -np.min(gv))
    # Unbounded neighbouring pieces: the scale is free; κ = 1/min|g| puts every sample at
    # distance >= 1 from the kink, so weight perturbations of that size keep the pattern.
    return float(min(limits)) if limits else 1.0 / float(np.min(np.abs(gv)))


# ------------------------------------------------------------------------------------------
# Network embedding
# ------------------------------------------------------------------------------------------


def embed(
    params, how: str, *, X=None, y=None, act: Activation | None = None, loss: Loss = Loss(), layer: int = 0,
    unit: int = 0, lam: float = 0.5, weights=None, bias: float | None = None, out=None, seed: int = 0,
) -> Construction:
    """Add one unit to hidden layer ``layer`` without changing the network's outputs on the data.

    - "zero": input weights ``weights``/``bias`` (default seeded N(0, 1)), outgoing weights 0.
      The function is unchanged everywhere.
    - "dead": a unit whose pre-activation is strictly inside a flat piece (slope 0, value
      β) on every sample; outgoing weights ``out`` (default seeded N(0, 1)) and the next
      layer's bias reduced by out·β.  Needs X, act and an activation with a flat piece
      (ReLU, hard-tanh).  The function is unchanged on the data.
    - "split": unit ``unit`` is duplicated; its outgoing weights become lam·w and the
      copy's (1 − lam)·w.  The function is unchanged everywhere.
    """
    params = as_deep(params)
    if how not in EMBEDDINGS:
        raise MilplandError(f"how: use one of {', '.join(EMBEDDINGS)}, got {how!r}")
    if not (0 <= layer < params.depth):
        raise MilplandError(f"layer: must be a hidden layer index in [0, {params.depth - 1}], got {layer}")
    rng = np.random.default_rng(seed)
    W_in, b_in, W_out = params.W[layer], params.b[layer], params.W[layer + 1]
    n_in, k_out = W_in.shape[1], W_out.shape[0]
    b_next = params.b[layer + 1].copy()
    details = {"how": how, "layer": layer, "new_unit": W_in.shape[0]}
    if how == "split":
        if not (0 <= unit < W_in.shape[0]):
            raise MilplandError(f"unit: layer {layer} has units 0..{W_in.shape[0] - 1}, got {unit}")
        if not np.isfinite(lam):
            raise MilplandError(f"lam: must be finite, got {lam!r}")
        row, b_new = W_in[unit].copy(), float(b_in[unit])
        col = W_out[:, unit].copy()
        W_out = W_out.copy()
        W_out[:, unit] = lam * col
        new_col = (1.0 - lam) * col
        details.update(unit=unit, lam=float(lam))
    else:
        row = rng.normal(size=n_in) if weights is None else np.asarray(weights, dtype=float).reshape(n_in)
        b_new = float(rng.normal()) if bias is None else float(bias)
        if how == "zero":
            new_col = np.zeros(k_out)
        else:
            if X is None or act is None:
                raise MilplandError("embed 'dead': needs the data X and the activation act")
            row, b_new, value, k = _dead_unit(params, X, act, layer, row)
            new_col = rng.normal(size=k_out) if out is None else np.asarray(out, dtype=float).reshape(k_out)
            b_next = b_next - new_col * value
            details.update(flat_piece=k, flat_value=value)
    W = list(params.W)
    b = list(params.b)
    W[layer] = np.vstack([W_in, row[None, :]])
    b[layer] = np.concatenate([b_in, [b_new]])
    W[layer + 1] = np.hstack([W_out, new_col[:, None]])
    b[layer + 1] = b_next
    new = DeepParams(tuple(W), tuple(b))
    risk = float("nan")
    if X is not None and y is not None and act is not None:
        risk = _risk(new, np.asarray(X, dtype=float), np.asarray(y, dtype=float), act, loss)
    return Construction(f"embed_{how}", new, act, risk, loss, details)


def _dead_unit(params: DeepParams, X, act: Activation, layer: int, row: np.ndarray):
    """Input weights and bias putting the new unit strictly inside a flat piece on every sample."""
    flat = [k for k in range(act.n_pieces) if act.slopes[k] == 0.0]
    if not flat:
        raise MilplandError(f"embed 'dead': activation {act.name!r} has no flat piece; use 'zero' instead")
    k = flat[0]
    X = np.asarray(X, dtype=float)
    A = X if layer == 0 else act(params.pre_activations(X, act)[layer - 1])
    s = A @ row
    lo, hi = act.lower(k), act.upper(k)
    if np.isfinite(lo) and np.isfinite(hi):
        spread = float(np.max(s) - np.min(s))
        if spread > 0.5 * (hi - lo):
            row = row * (0.5 * (hi - lo) / spread)
            s = A @ row
        bias = 0.5 * (lo + hi) - 0.5 * (np.max(s) + np.min(s))
    elif np.isfinite(hi):
        bias = hi - 1.0 - float(np.max(s))
    else:
        bias = lo + 1.0 - float(np.min(s))
    return row, float(bias), float(act.intercepts[k]), k


# ------------------------------------------------------------------------------------------
# shared helpers
# ------------------------------------------------------------------------------------------


def _xy(X, y, *, vector: bool = False):
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    Y = np.asarray(y, dtype=float)
    if X.ndim != 2 or X.shape[0] == 0:
        raise MilplandError(f"data.x: must be a non-empty matrix (n x d), got shape {X.shape}")
    if vector:
        Y = Y.reshape(X.shape[0], -1) if Y.size % max(X.shape[0], 1) == 0 and Y.ndim <= 2 else Y
        if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
            raise MilplandError(f"data.y: expected {X.shape[0]} rows, got shape {np.shape(y)}")
    else:
        Y = Y.reshape(-1)
        if Y.shape[0] != X.shape[0]:
            raise MilplandError(f"data.y: expected {X.shape[0]} values (one per sample), got shape {np.shape(y)}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        raise MilplandError("data: holds non-finite values (nan or inf)")
    return X, Y


def _ls(X, Y):
    Xt = np.column_stack([X, np.ones(X.shape[0])])
    coef = np.linalg.lstsq(Xt, Y, rcond=None)[0]
    return coef, Xt @ coef


def _fits_exactly(residual, y) -> bool:
    return float(np.sum(residual**2)) <= 1e-20 * max(1.0, float(np.sum(np.asarray(y) ** 2)))


def _widths(hidden_widths) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in hidden_widths)
    except TypeError:
        widths = (int(hidden_widths),)
    if not widths or any(w < 1 for w in widths):
        raise MilplandError(f"hidden_widths: need one or more positive widths, got {hidden_widths!r}")
    return widths


def choose_piece(act: Activation) -> int:
    """A piece with non-zero slope: unbounded ones first (roomier), then the steepest."""
    cands = [k for k in range(act.n_pieces) if act.slopes[k] != 0.0]
    if not cands:
        raise MilplandError(f"activation {act.name!r} has no piece with non-zero slope")
    return max(cands, key=lambda k: (not (np.isfinite(act.lower(k)) and np.isfinite(act.upper(k))), abs(act.slopes[k])))


def _check_piece(act: Activation, piece: int) -> int:
    if not (0 <= piece < act.n_pieces) or act.slopes[piece] == 0.0:
        raise MilplandError(
            f"piece: must index a piece with non-zero slope of {act.name!r} (0..{act.n_pieces - 1}), got {piece}"
        )
    return piece


def frame(act: Activation, q: int, spread: float) -> tuple[float, float]:
    """(τ, κ) with τ + κs inside piece q for every |s| ≤ spread, away from the piece's ends by

    at least a quarter of the piece (bounded piece: τ = midpoint, κ = width/(4·spread)) or by
    at least max(spread, 1) (half-line piece: κ = 1, τ two such distances from the end).
    """
    spread = max(float(spread), 1e-12)
    lo, hi = act.lower(q), act.upper(q)
    if np.isfinite(lo) and np.isfinite(hi):
        return 0.5 * (lo + hi), 0.25 * (hi - lo) / spread
    room = max(spread, 1.0)
    if np.isfinite(lo):
        return lo + 2.0 * room, 1.0
    return hi - 2.0 * room, 1.0


def _risk(params: DeepParams, X, y, act, loss: Loss) -> float:
    f = params.forward(X, act)
    return loss.risk(f, np.asarray(y, dtype=float).reshape(f.shape))


