"""The convex-training baseline (milpland/runs/convex_baseline.py) against independent numbers.

- Every activation pattern of 1-D augmented data enumerated by hand (the cells of the hyperplane
  arrangement of the points (x_i, 1): thresholds between sorted samples, both orientations, plus
  all-on and all-off): the convex optimum is a lower bound on the weight-decay objective of every
  network, checked against multistart L-BFGS on the non-convex objective (own forward pass and
  gradient here), including starts next to the convex network; the convex network attains it.
- One sample: the optimum derived by hand (below).
- Sampled patterns give networks whose objective is never below the all-patterns optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
from scipy.optimize import minimize

from milpland.errors import MilplandError
from milpland.instance.activations import hardtanh, leaky_relu, relu
from milpland.instance.losses import Loss
from milpland.instance.spec import spec_from_dict
from milpland.runs.convex_baseline import Decay, bench_row, fit_convex, fit_spec

TOL = 1e-7


@dataclass(frozen=True)
class DecayLoss(Loss):
    """Loss with the weight-decay fields of issue 16 (until they are in milpland's Loss)."""

    weight_decay: float = 0.0
    decay_biases: bool = True


# ------------------------------------------------------------------------------------------------
# independent pieces: the objective, its gradient, the patterns of 1-D data


def unpack(theta: np.ndarray, m: int, d: int):
    W = theta[:m * d].reshape(m, d)
    return W, theta[m * d:m * d + m], theta[m * d + m:m * d + 2 * m], theta[-1]


def objective_and_gradient(theta, X, y, slope_lo, kind, omega, lam, decay_biases, m, output_bias=True):
    """J = ω Σ loss + (λ/2)‖θ‖² for f = Σ_j v_j σ(w_j·x + b_j) + c, σ(z) = z (z ≥ 0), slope_lo z (z < 0)."""
    W, b, v, c = unpack(theta, m, X.shape[1])
    c = c if output_bias else 0.0
    Z = X @ W.T + b
    H = np.where(Z >= 0, Z, slope_lo * Z)
    f = H @ v + c
    res = f - y
    if kind == "squared":
        risk, g = omega * res @ res, 2 * omega * res
    else:
        risk, g = omega * np.abs(res).sum(), omega * np.sign(res)
    pen = (W ** 2).sum() + (v ** 2).sum() + ((b ** 2).sum() + c ** 2 if decay_biases else 0.0)
    dZ = g[:, None] * v[None, :] * np.where(Z >= 0, 1.0, slope_lo)
    gW = dZ.T @ X + lam * W
    gb = dZ.sum(axis=0) + (lam * b if decay_biases else 0.0)
    gv = H.T @ g + lam * v
    gc = (g.sum() + (lam * c if decay_biases else 0.0)) if output_bias else 0.0
    return risk + 0.5 * lam * pen, np.concatenate([gW.ravel(), gb, gv, [gc]])


def theta_of(params) -> np.ndarray:
    return np.concatenate([params.W1.ravel(), params.b1, params.v, [params.c]])


def descend(theta0, *args):
    out = minimize(objective_and_gradient, theta0, args=args, jac=True, method="L-BFGS-B",
                   options={"maxiter": 500, "gtol": 1e-10, "ftol": 1e-13})
    return float(objective_and_gradient(out.x, *args)[0])


def all_patterns_1d(x: np.ndarray) -> np.ndarray:
    """The 2n patterns 1[w x_i + b ≥ 0] of distinct 1-D points: all on, all off, and for each of
    the n − 1 gaps between sorted samples the samples above it or below it."""
    order, n = np.argsort(x), len(x)
    masks = [np.ones(n, bool), np.zeros(n, bool)]
    for k in range(1, n):
        above = np.zeros(n, bool)
        above[order[k:]] = True
        masks += [above, ~above]
    return np.array(masks)


def tiny_instance(seed: int, n: int):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-2, 2, n))
    while np.min(np.diff(x)) < 0.05:
        x = np.sort(rng.uniform(-2, 2, n))
    return x[:, None], rng.normal(0, 1, n)


CASES = [(lam, kind, slope, biases) for lam in (0.01, 0.1) for kind in ("squared", "absolute")
         for slope in (0.0, 0.1) for biases in (True, False)]


# ------------------------------------------------------------------------------------------------
# (a) every pattern: a lower bound on every network, attained by the convex network


def check_all_patterns(lam, kind, slope, biases, seeds, starts):
    act = relu() if slope == 0.0 else leaky_relu(slope)
    loss, decay = Loss(kind), Decay(lam, biases)
    for seed in seeds:
        X, y = tiny_instance(seed, 4 + seed % 2)
        n = len(y)
        fit = fit_convex(X, y, act, loss, decay, masks=all_patterns_1d(X[:, 0]))
        optimum = fit.solver_value
        # the network attains the program's optimum, by the test's own forward pass
        args = (X, y, slope, kind, 1.0 / n, lam, biases)
        m = fit.params.width
        own, _ = objective_and_gradient(theta_of(fit.params), *args, m)
        assert abs(own - optimum) <= TOL * max(1.0, abs(optimum)), (own, optimum)
        assert abs(fit.objective - own) <= 1e-12 * max(1.0, own)
        assert not fit.pruned and fit.convex_width == m
        # no network of width 2 or m + 1 from random starts, nor one next to the convex network, goes lower
        rng = np.random.default_rng(100 + seed)
        floor = optimum - 1e-8 * max(1.0, abs(optimum))
        for width in sorted({2, m + 1}):
            for _ in range(starts):
                assert descend(rng.normal(0, 1, width * 3 + 1), *args, width) >= floor
        base = theta_of(fit.params)
        for _ in range(starts):
            assert descend(base + rng.normal(0, 1e-2, base.size), *args, m) >= floor


@pytest.mark.parametrize("lam,kind,slope,biases", CASES)
def test_all_patterns_bound_every_network_and_are_attained(lam, kind, slope, biases):
    check_all_patterns(lam, kind, slope, biases, seeds=[CASES.index((lam, kind, slope, biases)) % 4], starts=2)


@pytest.mark.slow
@pytest.mark.parametrize("lam,kind,slope,biases", CASES)
def test_all_patterns_bound_every_network_many_instances(lam, kind, slope, biases):
    check_all_patterns(lam, kind, slope, biases, seeds=range(4, 10), starts=6)


def test_all_patterns_width_at_most_m_is_the_width_m_minimum():
    """When the all-pattern solution has at most m groups, fit_convex(width=m) is not pruned and
    its objective is the program's optimum (a lower bound for every width): gradient descent at
    width m reaches it from some start but never goes below it."""
    X, y = tiny_instance(7, 5)
    act, loss, decay = relu(), Loss("squared"), Decay(0.1, True)
    fit = fit_convex(X, y, act, loss, decay, masks=all_patterns_1d(X[:, 0]), width=3)
    assert fit.convex_width <= 3 and not fit.pruned and fit.params.width == 3
    args = (X, y, 0.0, "squared", 1 / 5, 0.1, True)
    rng = np.random.default_rng(0)
    best = min(descend(rng.normal(0, 1, 10), *args, 3) for _ in range(15))
    assert best >= fit.objective - 1e-8
    assert best <= fit.objective + 1e-5  # the optimum is reached by some start: it is the width-3 minimum


# ------------------------------------------------------------------------------------------------
# (b) one sample, by hand
#
# n = 1, x̃ = (x, 1), ReLU.  A unit contributes s relu(q·x̃) with |relu(q·x̃)| ≤ ‖q‖‖x̃‖ and costs at
# least λ‖q‖ (balanced), so a total contribution a costs at least μ|a|, μ = λ/‖x̃‖, attained by
# q = a x̃/‖x̃‖².  With the output bias c at (λ/2)c², the cheapest way to output f ≥ 0 is
# h(f) = (λ/2) f² for f ≤ c* = μ/λ = 1/‖x̃‖ (all in c: its marginal cost λc is below μ), and
# h(f) = (λ/2) c*² + μ (f − c*) beyond.  Then J* = min_f ω loss(f − y) + h(f) with y > 0:
# squared: f = 2ωy/(2ω + λ) if that is ≤ c*, else f = y − μ/(2ω) if that is ≥ c*, else c*;
# absolute: f grows while h'(f) < ω; h' ≤ μ everywhere, so if ω ≥ μ then f = y, else f stops where
# λf = ω inside the c part or at its end: f = min(y, ω/λ, c*).
# decay_biases = false: c is free, f = y, J* = 0.  No output bias: h(f) = μ f.


def one_sample_optimum(x: float, y: float, lam: float, omega: float, kind: str, output_bias: bool) -> float:
    mu = lam / math.hypot(x, 1.0)
    c_star = 1.0 / math.hypot(x, 1.0) if output_bias else 0.0

    def h(f: float) -> float:
        return 0.5 * lam * f * f if f <= c_star else 0.5 * lam * c_star ** 2 + mu * (f - c_star)

    if kind == "squared":
        candidates = [c_star, y - mu / (2 * omega)]
        if output_bias:
            candidates.append(2 * omega * y / (2 * omega + lam))
        f = min((max(c, 0.0) for c in candidates), key=lambda f: omega * (f - y) ** 2 + h(f))
        return omega * (f - y) ** 2 + h(f)
    f = y if omega >= mu else min(y, omega / lam, c_star)
    return omega * abs(f - y) + h(f)


@pytest.mark.parametrize("x,y,lam", [(1.0, 2.0, 0.1), (1.0, 0.5, 0.1), (-0.5, 0.3, 0.5), (2.0, 1.0, 3.0),
                                     (0.0, 1.0, 1.0), (1.5, 0.2, 2.5)])
@pytest.mark.parametrize("kind", ["squared", "absolute"])
@pytest.mark.parametrize("reduction", ["mean", "half_sum"])
@pytest.mark.parametrize("output_bias", [True, False])
def test_one_sample_closed_form(x, y, lam, kind, reduction, output_bias):
    loss = Loss(kind, reduction)
    omega = loss.weight(1)
    expected = one_sample_optimum(x, y, lam, omega, kind, output_bias)
    for sign in (1.0, -1.0):  # a negative target uses the negative (w) groups: the same value
        fit = fit_convex(np.array([[x]]), np.array([sign * y]), relu(), loss, Decay(lam, True),
                         output_bias=output_bias, width=1, gates=50, seed=3)
        assert fit.objective == pytest.approx(expected, rel=1e-7, abs=1e-9)
        assert fit.params.width == 1 and not fit.pruned


def test_one_sample_free_biases_fit_exactly():
    fit = fit_convex(np.array([[0.7]]), np.array([1.3]), relu(), Loss("squared"), Decay(0.5, False), width=1)
    assert abs(fit.objective) <= 1e-9 and abs(fit.params.c - 1.3) <= 1e-6


def test_one_sample_hand_value_is_what_descent_finds():
    """The hand derivation itself, checked by descent (so that the closed form is not trusted blindly)."""
    X, y = np.array([[1.0]]), np.array([2.0])
    expected = one_sample_optimum(1.0, 2.0, 0.1, 1.0, "squared", True)
    rng = np.random.default_rng(1)
    best = min(descend(rng.normal(0, 1, 4), X, y, 0.0, "squared", 1.0, 0.1, True, 1) for _ in range(4))
    assert best == pytest.approx(expected, rel=1e-7)


# ------------------------------------------------------------------------------------------------
# (c) sampled patterns: an upper bound


@pytest.mark.parametrize("kind", ["squared", "absolute"])
@pytest.mark.parametrize("biases", [True, False])
def test_sampled_patterns_never_beat_all_patterns(kind, biases):
    act, loss, decay = relu(), Loss(kind), Decay(0.05, biases)
    for seed in range(6):
        X, y = tiny_instance(20 + seed, 6)
        exact = fit_convex(X, y, act, loss, decay, masks=all_patterns_1d(X[:, 0])).solver_value
        floor = exact - 1e-8 * max(1.0, exact)
        for gates in (2, 4, 8):
            wide = fit_convex(X, y, act, loss, decay, gates=gates, seed=seed)
            narrow = fit_convex(X, y, act, loss, decay, gates=gates, seed=seed, width=1)
            assert wide.objective >= floor and narrow.objective >= floor
            assert narrow.params.width == 1
            own, _ = objective_and_gradient(theta_of(narrow.params), X, y, 0.0, kind, 1 / 6, 0.05, biases, 1)
            assert own == pytest.approx(narrow.objective, rel=1e-12, abs=1e-14)


def test_many_gates_find_every_pattern_of_1d_data():
    X, y = tiny_instance(3, 5)
    fit = fit_convex(X, y, relu(), Loss("squared"), Decay(0.1, True), gates=4000, seed=0)
    exact = fit_convex(X, y, relu(), Loss("squared"), Decay(0.1, True), masks=all_patterns_1d(X[:, 0]))
    assert fit.patterns == 2 * 5 - 1  # all 2n patterns but the all-off one (nothing for ReLU)
    assert fit.objective == pytest.approx(exact.objective, rel=1e-7)


def test_pruned_network_has_the_spec_width_and_its_own_objective():
    X, y = tiny_instance(11, 6)
    act, loss, decay = relu(), Loss("squared"), Decay(0.01, True)
    wide = fit_convex(X, y, act, loss, decay, masks=all_patterns_1d(X[:, 0]))
    assert wide.convex_width >= 2
    narrow = fit_convex(X, y, act, loss, decay, masks=all_patterns_1d(X[:, 0]), width=1)
    assert narrow.pruned and narrow.params.width == 1 and narrow.convex_width == wide.convex_width
    assert narrow.prune_rule in ("largest", "path")
    assert narrow.objective_unpruned == pytest.approx(wide.objective, rel=1e-9)
    own, _ = objective_and_gradient(theta_of(narrow.params), X, y, 0.0, "squared", 1 / 6, 0.01, True, 1)
    assert own == pytest.approx(narrow.objective, rel=1e-12)
    assert narrow.objective >= wide.solver_value - 1e-9


# ------------------------------------------------------------------------------------------------
# refusals and bench


def spec(**changes):
    table = {"name": "t", "data": {"x": [[1.0]], "y": [2.0]}, "network": {"hidden": [1], "activation": "relu"}}
    table.update(changes)
    return spec_from_dict(table)


@pytest.mark.parametrize("table,needle", [
    ({"loss": {"kind": "hinge"}, "data": {"x": [[1.0], [2.0]], "y": [1.0, -1.0]}}, "not hinge"),
    ({"network": {"hidden": [1], "activation": "hardtanh"}}, "not hardtanh"),
    ({"network": {"hidden": [1, 1], "activation": "relu"}}, "one hidden layer"),
])
def test_refusals_are_one_line(table, needle):
    with pytest.raises(MilplandError, match=needle) as info:
        fit_spec(spec(**table))
    assert "\n" not in str(info.value)


def test_free_biases_without_output_bias_refused():
    s = spec(network={"hidden": [1], "activation": "relu", "output_bias": False})
    with pytest.raises(MilplandError, match="output bias"):
        fit_spec(replace(s, loss=DecayLoss("squared", weight_decay=0.1, decay_biases=False)))
    with pytest.raises(MilplandError, match="--gates"):
        fit_spec(s, gates=0)


def test_bench_row_against_the_hand_optimum():
    s = replace(spec(), loss=DecayLoss("squared", weight_decay=0.1))
    expected = one_sample_optimum(1.0, 2.0, 0.1, 1.0, "squared", True)
    row = bench_row(s, {"global_risk": expected, "gates": 20})
    assert row["status"] == "heuristic" and row["certified"] is False
    assert row["risk"] == pytest.approx(expected, rel=1e-7) and row["reached_global"] is True
    assert abs(row["miss"]) <= 1e-6 and row["weight_decay"] == 0.1 and row["solver_name"] == "clarabel"
    worse = bench_row(s, {"global_risk": expected / 2, "gates": 20})
    assert worse["reached_global"] is False and worse["miss"] == pytest.approx(1.0, rel=1e-6)


def test_bench_runs_convex_after_bnb(tmp_path):
    from milpland.runs.bench import run_bench, write_report

    path = tmp_path / "one.toml"
    path.write_text('name = "one"\n[data]\ngenerator = "teacher"\nn = 5\nd = 1\nseed = 2\n'
                    '[network]\nhidden = [2]\n[solve]\ntime_limit = 20\n')
    table = run_bench([str(path)], methods=["convex", "bnb"], gates=30)
    assert list(table["method"]) == ["bnb", "convex"]
    row = table.set_index("method").loc["convex"]
    assert row["status"] == "heuristic" and row["gates"] == 30 and row["risk"] >= 0
    assert "weight_decay = 0" in row["message"]
    written = write_report(table, name="one", out_dir=tmp_path, command="test", figure=False)
    assert "Convex baseline" in written[1].read_text()
    with pytest.raises(MilplandError, match="--gates"):
        run_bench([str(path)], methods=["convex"], gates=0)


# ------------------------------------------------------------------------------------------------
# against milpland's certified weight-decay minimum (once `[loss] weight_decay` exists)


@pytest.mark.skipif(not hasattr(Loss(), "weight_decay"), reason="needs [loss] weight_decay (issue 16 item 1)")
@pytest.mark.parametrize("lam", [0.01, 0.1])
def test_against_the_certified_weight_decay_minimum(lam):
    """The certified minimum J* (every cell's SOCP, a different method) sits between the all-pattern
    convex optimum (a lower bound for every width) and the sampled network (a real width-m network),
    and equals the convex optimum when the convex solution has at most m units."""
    from milpland.search.solve import solve_global

    equal = 0
    for seed in range(3):
        s = spec_from_dict({"name": "t", "data": {"generator": "teacher", "n": 7, "d": 1, "seed": seed,
                                                  "teacher_width": 3, "noise": 0.1},
                            "network": {"hidden": [2], "activation": "relu"},
                            "loss": {"kind": "squared", "weight_decay": lam}})
        result = solve_global(s)
        assert result.certified
        star = result.risk
        exact = fit_convex(s.X, s.y, relu(), s.loss, Decay(lam, True), masks=all_patterns_1d(s.X[:, 0]))
        assert exact.solver_value <= star + 1e-8 * max(1.0, star)
        if exact.convex_width <= 2:
            assert exact.objective == pytest.approx(star, rel=1e-7)
            equal += 1
        assert fit_spec(s, gates=50).objective >= star - 1e-8 * max(1.0, star)
    assert equal >= 1  # the equality case was checked (widths measured: 6, 4, 2 at 0.01; 1, 1, 1 at 0.1)
