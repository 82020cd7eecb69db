"""certify_point (milpland.points.certify) against truths obtained here: least-squares fits and forward passes
written in this file, hand-derived stationarity conditions, finite differences and random perturbations.

Global solves are kept tiny (n <= 8, width <= 3) so this file runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from milpland.errors import MilplandError
from milpland.instance.deep import DeepParams
from milpland.instance.spec import spec_from_dict
from milpland.points.certify import (
    Certification,
    carry_layers,
    certify_point,
    loss_gradient,
)
from milpland.points.constructions import (
    embed,
    he_deep,
    liu_groups,
    valley,
    valley_range,
    yun_step1,
    yun_step2,
)

SIGMA = {
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.1 * z),
    "two_slope": lambda z: np.where(z >= 0, 1.01 * z, 1.0 * z),
    "hardtanh": lambda z: np.clip(z, -1.0, 1.0),
}
EXTRA = {"relu": {}, "leaky_relu": {"alpha": 0.1}, "two_slope": {"s_plus": 1.01, "s_minus": 1.0}, "hardtanh": {}}
SLOPES = {"relu": (1.0, 0.0), "leaky_relu": (1.0, 0.1), "two_slope": (1.01, 1.0)}


def make_spec(X, y, act="relu", hidden=(2,), box=10.0, output_bias=True, time_limit=60.0):
    net = {"hidden": list(hidden), "activation": act, "output_bias": output_bias, **EXTRA[act]}
    return spec_from_dict({
        "name": "t", "data": {"x": np.asarray(X).tolist(), "y": np.asarray(y).tolist()}, "network": net,
        "box": {"weight": float(box)}, "solve": {"time_limit": time_limit},
    })


def forward(params, X, act):
    """Plain forward pass (independent of milpland.instance.deep)."""
    sigma = SIGMA[act]
    a = np.asarray(X, dtype=float)
    for W, b in zip(params.W[:-1], params.b[:-1]):
        a = sigma(a @ np.asarray(W).T + b)
    return (a @ np.asarray(params.W[-1]).T + params.b[-1])[:, 0]


def mse(params, X, y, act):
    return float(np.mean((forward(params, X, act) - y) ** 2))


def patterns(params, X, act):
    """Sign pattern of every pre-activation relative to the breakpoints, all layers."""
    sigma = SIGMA[act]
    a, out = np.asarray(X, dtype=float), []
    for W, b in zip(params.W[:-1], params.b[:-1]):
        z = a @ np.asarray(W).T + b
        out.append(np.sign(z) if act != "hardtanh" else np.sign(z - 1) + np.sign(z + 1))
        a = sigma(z)
    return np.concatenate(out, axis=1)


def ls_risk(X, y):
    Xt = np.column_stack([X, np.ones(len(X))])
    coef = np.linalg.lstsq(Xt, y, rcond=None)[0]
    return float(np.mean((Xt @ coef - y) ** 2))


def never_below(params, X, y, act, *, radii=(1e-3, 1e-5), trials=1500, seed=0) -> bool:
    """No random perturbation of the given sizes lowers the risk by more than 1e-12 (evidence, not proof)."""
    rng = np.random.default_rng(seed)
    base = mse(params, X, y, act)
    flat = params.flat()
    for r in radii:
        for _ in range(trials):
            u = rng.normal(size=flat.size)
            q = params.from_flat(flat + r * rng.uniform() * u / np.linalg.norm(u))
            if mse(q, X, y, act) < base - 1e-12:
                return False
    return True


def sine_data(seed, n=7, d=1):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, d))
    y = np.sin(3 * X[:, 0]) + 0.1 * rng.normal(size=n)
    return X, y


def theta_norm(params):
    W1, b1, v = params.W[0], params.b[0], params.W[1][0]
    return float(max(np.max(np.abs(v[:, None] * W1)), np.max(np.abs(v * b1))))


# The non-differentiable stationary point of the escape example (models/papers/escape-neuron-relu.toml):
# f(x) = 0.05 + 0.03 relu(4 - x), sample x = 4 on the kink.
ESC_X = np.arange(6.0)[:, None]
ESC_Y = np.array([0.1, -0.1, 0.6, 0.1, -0.5, 0.4])
ESC_NARROW = DeepParams((np.array([[-1.0]]), np.array([[0.03]])), (np.array([4.0]), np.array([0.05])))


# ------------------------------------------------------------------------- Yun et al., one hidden layer


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_yun_step1_is_a_spurious_local_min_with_gap_above_the_step2_improvement(seed):
    X, y = sine_data(seed)
    sp, sm = SLOPES["relu"]
    s1, s2 = yun_step1(X, y, sp, sm, 2), yun_step2(X, y, sp, sm, 2)
    spec = make_spec(X, y, box=max(10.0, 2 * theta_norm(s2.params)))
    cert = certify_point(spec, s1.params)
    # truths computed here: the point is the least-squares fit, strictly inside the positive piece
    r1 = mse(s1.params, X, y, "relu")
    assert r1 == pytest.approx(ls_risk(X, y), rel=1e-10)
    assert np.all(X @ s1.params.W[0].T + s1.params.b[0] > 0)
    assert cert.risk == pytest.approx(r1, rel=1e-12)
    assert cert.verdict == "local_min" and cert.stationary is True
    assert cert.certificate == "group_lsq"  # zero-output units: the θ̃ check alone cannot certify it
    assert never_below(s1.params, X, y, "relu")
    # the global minimum: its point re-evaluated here; the gap exceeds the improvement measured here
    assert cert.global_certified and cert.point_in_box
    assert mse(cert.global_params, X, y, "relu") == pytest.approx(cert.global_risk, rel=1e-7, abs=1e-14)
    improvement = r1 - mse(s2.params, X, y, "relu")
    assert improvement > 0
    assert improvement == pytest.approx(s2.details["improvement"], rel=1e-8)
    assert cert.gap == pytest.approx(r1 - cert.global_risk, rel=1e-12)
    assert cert.gap > 0 and cert.gap >= improvement - 1e-12
    if seed == 0:  # the global value against an independent brute force (clarabel, every cell)
        bruteforce = pytest.importorskip("bruteforce")
        ref = bruteforce.brute_force_global(X, y, spec.network.activation, spec.loss, spec.box.weight,
                                            spec.box.output, width=2)
        assert cert.global_risk == pytest.approx(ref.risk, rel=1e-6)
    # step 2 is better but not a local minimum: a descent path that lowers the risk (re-evaluated here)
    c2 = certify_point(spec, s2.params, run_global=False)
    assert c2.verdict == "not_stationary" and c2.stationary is False
    start = mse(s2.params, X, y, "relu")
    assert all(mse(p, X, y, "relu") < start for p in c2.descent_path.params)
    assert c2.cell_min < start


@pytest.mark.parametrize("act", ["leaky_relu", "two_slope"])
def test_yun_step1_other_two_slope_activations(act):
    X, y = sine_data(3, n=6)
    sp, sm = SLOPES[act]
    s1, s2 = yun_step1(X, y, sp, sm, 2), yun_step2(X, y, sp, sm, 2)
    spec = make_spec(X, y, act=act, box=max(10.0, 2 * theta_norm(s2.params)))
    cert = certify_point(spec, s1.params)
    assert cert.verdict == "local_min"
    assert mse(s1.params, X, y, act) == pytest.approx(ls_risk(X, y), rel=1e-10)
    improvement = mse(s1.params, X, y, act) - mse(s2.params, X, y, act)
    # With the slightest nonlinearity the minimum over the box sits at the box (an active bound):
    # the solve is complete but "global over the box" only; the true gap is then even larger.
    assert cert.global_status == "optimal" and (cert.global_certified or cert.global_box_active)
    assert cert.gap > 0 and cert.gap >= improvement - 1e-12


def test_linearly_fittable_data_have_gap_zero():
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, (6, 2))
    y = X @ np.array([0.7, -1.3]) + 0.4
    assert ls_risk(X, y) < 1e-28  # an affine function fits: the true global minimum is 0
    s1 = yun_step1(X, y, 1.0, 0.0, 2)
    s2 = yun_step2(X, y, 1.0, 0.0, 2)
    assert s2.details["improvement"] == 0.0
    cert = certify_point(make_spec(X, y), s1.params)
    assert cert.verdict == "local_min"
    assert cert.risk < 1e-28 and abs(cert.gap) <= 1e-12 and cert.global_risk <= 1e-12


# ------------------------------------------------------------------------- He et al., deep, valley


@pytest.mark.parametrize("act,hidden", [("relu", (2, 2)), ("hardtanh", (2, 3, 2))])
def test_he_deep_and_its_valley_are_certified_local_minima_of_constant_risk(act, hidden):
    X, y = sine_data(4, n=8)
    spec = make_spec(X, y, act=act, hidden=hidden)
    c = he_deep(X, y, spec.network.activation, list(hidden))
    r0 = mse(c.params, X, y, act)
    assert r0 == pytest.approx(ls_risk(X, y), rel=1e-10)
    pat0 = patterns(c.params, X, act)
    t_max = valley_range(c.params, X, spec.network.activation)
    ts = [0.2, 0.7, 1.9, 5.0] if np.isinf(t_max) else list(np.linspace(0.05, 0.95, 5) * t_max)
    cells = set()
    for t in ts:
        p = valley(c.params, X, spec.network.activation, float(t))
        assert abs(mse(p, X, y, act) - r0) <= 1e-12
        assert np.array_equal(patterns(p, X, act), pat0)
        cert = certify_point(spec, p, run_global=False, gd_starts=0)
        assert cert.verdict == "local_min" and cert.certificate == "group_lsq"
        cells.add(cert.cell)
    assert len(cells) == 1


def test_deep_gap_lower_bound_is_positive_with_a_better_point_on_nonfittable_data():
    X, y = sine_data(6, n=7)
    spec = make_spec(X, y, hidden=(2, 2), time_limit=30.0)
    c = he_deep(X, y, spec.network.activation, [2, 2])
    cert = certify_point(spec, c.params, gd_starts=2, time_limit=4.0)
    assert cert.verdict == "local_min" and cert.certificate == "group_lsq"
    # two layers on 1-D data: the two-layer global solve runs (4 s here: not certified, so no exact gap)
    assert cert.global_risk is not None and cert.global_status in ("optimal", "time_limit")
    if cert.global_certified:
        assert cert.gap == pytest.approx(cert.risk - cert.global_risk, rel=1e-12)
    else:
        assert cert.gap is None and cert.gap_upper_bound >= cert.gap_lower_bound
    best = cert.best_params
    assert best.hidden == (2, 2)
    r_best = mse(best, X, y, "relu")
    assert r_best == pytest.approx(cert.best_risk, rel=1e-9, abs=1e-14)
    assert r_best < mse(c.params, X, y, "relu")
    assert cert.gap_lower_bound == pytest.approx(mse(c.params, X, y, "relu") - r_best, rel=1e-9)
    assert cert.gap_lower_bound > 0
    assert "gap_lower_bound" in cert.to_json()


def test_carry_layers_reproduce_the_shallow_net_on_the_data():
    X, y = sine_data(7, n=8)
    rng = np.random.default_rng(0)
    shallow = DeepParams((rng.normal(size=(3, 1)), rng.normal(size=(1, 3))), (rng.normal(size=3), np.array([0.2])))
    for act in ("relu", "hardtanh"):
        spec = make_spec(X, y, act=act, hidden=(3, 2, 1))
        deep = carry_layers(shallow, X, spec.network.activation, [2, 1])
        np.testing.assert_allclose(forward(deep, X, act), forward(shallow, X, act), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------- Liu


def test_liu_groups_one_and_two_hidden_layers():
    X, y = sine_data(8, n=8)
    order = np.argsort(X[:, 0])
    labels = np.zeros(8, dtype=int)
    labels[order[4:]] = 1
    spec = make_spec(X, y, hidden=(3,))
    L = liu_groups(X, y, spec.network.activation, [3], labels)
    expected = sum(ls_risk(X[labels == g], y[labels == g]) * np.sum(labels == g) for g in (0, 1)) / 8
    assert mse(L.params, X, y, "relu") == pytest.approx(expected, rel=1e-9)
    cert = certify_point(spec, L.params)
    assert cert.verdict == "local_min" and cert.certificate == "interior"
    assert cert.cell_min == pytest.approx(expected, rel=1e-7)
    assert cert.global_certified and cert.gap > 0
    assert never_below(L.params, X, y, "relu")
    deep_spec = make_spec(X, y, hidden=(3, 2))
    Ld = liu_groups(X, y, deep_spec.network.activation, [3, 2], labels)
    cd = certify_point(deep_spec, Ld.params, run_global=False, gd_starts=0)
    assert cd.verdict == "local_min" and cd.certificate == "group_lsq"


# ------------------------------------------------------------------------- embeddings (Wu, Simsek & Ged)


def test_the_narrow_point_is_a_nondifferentiable_local_min():
    X, y = ESC_X, ESC_Y
    r = y - forward(ESC_NARROW, X, "relu")
    # stationarity by hand: dR/dc and dR/dv vanish, and sample x = 4 sits on the kink
    assert abs(r.sum()) < 1e-12 and abs(r @ np.maximum(4 - X[:, 0], 0)) < 1e-12
    assert (X @ ESC_NARROW.W[0].T + ESC_NARROW.b[0])[4, 0] == 0.0
    cert = certify_point(make_spec(X, y, hidden=(1,)), ESC_NARROW, run_global=False)
    assert cert.verdict == "local_min" and cert.certificate == "boundary" and cert.ties == 1
    assert cert.risk == pytest.approx(0.728 / 6, rel=1e-12)
    assert never_below(ESC_NARROW, X, y, "relu")


@pytest.mark.parametrize("lam", [0.3, 0.7])
def test_splitting_with_lambda_in_0_1_keeps_a_local_min(lam):
    p = embed(ESC_NARROW, "split", unit=0, lam=lam).params
    cert = certify_point(make_spec(ESC_X, ESC_Y), p, run_global=False)
    assert cert.verdict == "local_min" and cert.certificate == "boundary"
    assert mse(p, ESC_X, ESC_Y, "relu") == pytest.approx(0.728 / 6, rel=1e-12)
    assert never_below(p, ESC_X, ESC_Y, "relu")


@pytest.mark.parametrize("how", ["zero", "split_lam1"])
def test_adding_a_zero_unit_makes_a_saddle_with_a_descent_path(how):
    if how == "zero":
        p = embed(ESC_NARROW, "zero", weights=[-1.0], bias=4.0).params
    else:
        p = embed(ESC_NARROW, "split", unit=0, lam=1.0).params
    spec = make_spec(ESC_X, ESC_Y)
    cert = certify_point(spec, p, run_global=False)
    assert cert.verdict == "saddle" and cert.certificate == "escape_neuron" and cert.stationary is True
    start = mse(p, ESC_X, ESC_Y, "relu")
    path = cert.descent_path
    assert path.start_risk == pytest.approx(start, rel=1e-12)
    for t, q in zip(path.ts, path.params):
        assert mse(q, ESC_X, ESC_Y, "relu") < start  # re-evaluated here
        assert np.max(np.abs(q.flat() - p.flat())) <= 10 * np.sqrt(t) * (1 + path.details["kappa"])
    # the curve starts at the point: small t stays close
    first = path.params[0]
    assert np.max(np.abs(first.flat() - p.flat())) < 0.1
    js = cert.to_json()
    assert js["descent_path"]["points"][0]["params"]["W"] is not None


def test_splitting_with_lambda_outside_0_1_is_not_stationary():
    p = embed(ESC_NARROW, "split", unit=0, lam=1.5).params
    cert = certify_point(make_spec(ESC_X, ESC_Y), p, run_global=False)
    assert cert.verdict == "not_stationary"
    start = mse(p, ESC_X, ESC_Y, "relu")
    assert all(mse(q, ESC_X, ESC_Y, "relu") < start for q in cert.descent_path.params)


def test_global_gap_of_the_escape_example_against_brute_force():
    bruteforce = pytest.importorskip("bruteforce")
    spec = make_spec(ESC_X, ESC_Y)
    cert = certify_point(spec, embed(ESC_NARROW, "split", unit=0, lam=0.5).params)
    assert cert.global_certified and not cert.global_box_active
    assert mse(cert.global_params, ESC_X, ESC_Y, "relu") == pytest.approx(cert.global_risk, rel=1e-7)
    ref = bruteforce.brute_force_global(ESC_X, ESC_Y, spec.network.activation, spec.loss, spec.box.weight,
                                        spec.box.output, width=2)
    assert cert.global_risk == pytest.approx(ref.risk, rel=1e-6, abs=1e-12)
    assert cert.gap == pytest.approx(0.728 / 6 - ref.risk, rel=1e-5)
    assert cert.gap > 0


# ------------------------------------------------------------------------- other verdicts and checks


def test_random_points_are_not_stationary_with_descending_paths():
    X, y = sine_data(9, n=7, d=2)
    rng = np.random.default_rng(3)
    p1 = DeepParams((rng.normal(size=(2, 2)), rng.normal(size=(1, 2))), (rng.normal(size=2), rng.normal(size=1)))
    c1 = certify_point(make_spec(X, y), p1, run_global=False)
    assert c1.verdict == "not_stationary" and c1.stationary is False
    assert all(mse(q, X, y, "relu") < mse(p1, X, y, "relu") for q in c1.descent_path.params)
    p2 = DeepParams(
        (rng.normal(size=(2, 2)), rng.normal(size=(2, 2)), rng.normal(size=(1, 2))),
        (rng.normal(size=2), rng.normal(size=2), rng.normal(size=1)),
    )
    c2 = certify_point(make_spec(X, y, hidden=(2, 2)), p2, run_global=False, gd_starts=0)
    assert c2.verdict == "not_stationary" and c2.certificate == "gradient"
    assert all(mse(q, X, y, "relu") < mse(p2, X, y, "relu") for q in c2.descent_path.params)


def test_zero_units_left_alone_still_prove_descent_for_the_absolute_loss():
    """He's point is the least-squares fit; under the absolute loss the LAD fit (an LP solved here)
    is better, and the descent never needs the zero-output unit."""
    from scipy.optimize import linprog

    X, y = sine_data(12, n=7)
    spec = spec_from_dict({
        "name": "abs", "data": {"x": X.tolist(), "y": y.tolist()},
        "network": {"hidden": [2], "activation": "relu"}, "loss": {"kind": "absolute"}, "box": {"weight": 10.0},
    })
    p = he_deep(X, y, spec.network.activation, [2]).params
    assert p.W[1][0, 1] == 0.0  # unit 1 is a zero-output unit
    mae = lambda q: float(np.mean(np.abs(forward(q, X, "relu") - y)))  # noqa: E731
    Xt = np.column_stack([X, np.ones(7)])
    lad = linprog(np.r_[0, 0, np.ones(7)], A_ub=np.block([[Xt, -np.eye(7)], [-Xt, -np.eye(7)]]),
                  b_ub=np.r_[y, -y], bounds=[(None, None)] * 2 + [(0, None)] * 7, method="highs")
    assert lad.fun / 7 < mae(p) - 1e-6
    cert = certify_point(spec, p, run_global=False)
    assert cert.verdict == "not_stationary" and cert.certificate == "cell_descent"
    for q in cert.descent_path.params:
        assert mae(q) < mae(p)
        assert q.W[1][0, 1] == 0.0 and np.array_equal(q.W[0][1], p.W[0][1])


def test_gradient_matches_finite_differences():
    X, y = sine_data(10, n=7, d=2)
    rng = np.random.default_rng(4)
    p = DeepParams(
        (rng.normal(size=(3, 2)), rng.normal(size=(2, 3)), rng.normal(size=(1, 2))),
        (rng.normal(size=3), rng.normal(size=2), rng.normal(size=1)),
    )
    spec = make_spec(X, y, act="leaky_relu", hidden=(3, 2))
    g = loss_gradient(p, spec)
    theta, h = p.flat(), 1e-6
    fd = np.array([
        (mse(p.from_flat(theta + h * e), X, y, "leaky_relu") - mse(p.from_flat(theta - h * e), X, y, "leaky_relu")) / (2 * h)
        for e in np.eye(theta.size)
    ])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)


def test_point_outside_the_box_is_reported():
    X, y = sine_data(11, n=6)
    s1 = yun_step1(X, y, 1.0, 0.0, 2, alpha=1.0)
    spec = make_spec(X, y, box=0.01)  # the step-1 point is far outside
    cert = certify_point(spec, s1.params, run_global=False)
    assert cert.point_in_box is False
    assert cert.cell_box[0] > 0.01  # the cell problems used a box that contains the point
    assert cert.verdict == "local_min"


def test_output_bias_false_requires_a_zero_output_bias():
    spec = make_spec(ESC_X, ESC_Y, hidden=(1,), output_bias=False)
    with pytest.raises(MilplandError, match=r"params\.b\[1\].*output_bias = false"):
        certify_point(spec, ESC_NARROW, run_global=False)


def test_shape_mismatch_names_the_field():
    spec = make_spec(ESC_X, ESC_Y, hidden=(3,))
    with pytest.raises(MilplandError, match=r"params\.W\[0\]"):
        certify_point(spec, ESC_NARROW, run_global=False)


def test_json_and_row():
    cert = certify_point(make_spec(ESC_X, ESC_Y, hidden=(1,)), ESC_NARROW, run_global=False)
    assert isinstance(cert, Certification)
    js = cert.to_json()
    for key in ("instance", "risk", "verdict", "certificate", "stationary", "cell", "cell_min", "global_risk",
                "gap", "gap_lower_bound", "descent_path"):
        assert key in js
    assert js["global_risk"] is None and js["gap"] is None  # --no-global
    row = cert.to_row()
    assert row["verdict"] == "local_min" and row["risk"] == pytest.approx(0.728 / 6)
