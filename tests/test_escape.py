"""The escape-neuron test (DESIGN §7), checked with finite differences and forward passes written here."""

import numpy as np
import pytest

from milpland.errors import MilplandError
from milpland.instance import activations as acts
from milpland.instance.deep import DeepParams
from milpland.instance.losses import Loss
from milpland.points.constructions import embed, yun_step1
from milpland.points.escape import escape_test

RELU = acts.relu()


def relu_net(params, X):
    return np.maximum(X @ params.W[0].T + params.b[0], 0.0) @ params.W[1][0] + params.b[1][0]


def risk(params, X, y):
    return float(np.mean((relu_net(params, X) - y) ** 2))


def g_finite_difference(params, X, y, j, d, s=1e-7):
    """g_j(d) = lim_{s↓0} Σ_k e_k (σ(z_kj + s d·x̃_k) − σ(z_kj))/s, with a one-sided difference."""
    e = relu_net(params, X) - y
    Xt = np.column_stack([X, np.ones(len(X))])
    z = Xt @ np.concatenate([params.W[0][j], [params.b[0][j]]])
    u = Xt @ d
    return float(np.sum(e * (np.maximum(z + s * u, 0) - np.maximum(z, 0)) / s))


def data(seed, n=10):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    return X, np.abs(X[:, 0]) - X[:, 1] ** 2 + 0.1 * rng.normal(size=n)


@pytest.mark.parametrize("seed", range(3))
def test_linear_fit_point_is_stationary_without_escape_neurons(seed):
    X, y = data(seed)
    c = yun_step1(X, y, 1.0, 0.0, 3)  # ReLU: units 2, 3 have zero output weight, positive constant input
    rep = escape_test(c.params, X, y, RELU)
    assert rep.verdict == "no_escape_neuron" and rep.stationary and rep.path is None
    e = relu_net(c.params, X) - y
    assert abs(np.sum(e)) < 1e-10 and abs(rep.grad_c - np.sum(e)) < 1e-12
    assert [u.zero_output for u in rep.units] == [False, True, True]
    for u in rep.units:  # no direction changes the first-order loss: finite differences agree
        for d in (np.array(u.d_max), np.array(u.d_min)):
            assert abs(g_finite_difference(c.params, X, y, u.unit, d)) < 1e-6


@pytest.mark.parametrize("seed", range(3))
def test_zero_unit_at_the_origin_is_an_escape_neuron_with_a_descent_path(seed):
    X, y = data(seed)
    base = yun_step1(X, y, 1.0, 0.0, 2).params
    p = embed(base, "zero", weights=[0.0, 0.0], bias=0.0).params  # w = 0: every sample tied
    rep = escape_test(p, X, y, RELU)
    assert rep.verdict == "saddle" and rep.escape_units == (2,)
    unit = rep.units[2]
    assert unit.method == "milp" and len(unit.ties) == len(y)
    # the witnesses' g values agree with finite differences computed here
    assert g_finite_difference(p, X, y, 2, np.array(unit.d_max)) == pytest.approx(unit.g_max, rel=1e-5, abs=1e-9)
    assert g_finite_difference(p, X, y, 2, np.array(unit.d_min)) == pytest.approx(unit.g_min, rel=1e-5, abs=1e-9)
    # the path: re-evaluated here, every sampled point strictly below the start
    start = risk(p, X, y)
    assert risk(rep.path.params_at(0.0), X, y) == pytest.approx(start, rel=1e-14)
    for t, r in rep.path.samples:
        q = rep.path.params_at(t)
        assert risk(q, X, y) == pytest.approx(r, rel=1e-12)
        assert risk(q, X, y) < start
        assert q.W[1][0, 2] == pytest.approx(-t * np.sign(rep.path.g))
    ts = np.linspace(0, rep.path.t_max, 40)[1:]
    assert all(risk(rep.path.params_at(t), X, y) < start for t in ts)


def test_enumeration_and_milp_agree_and_bound_random_directions():
    X, y = data(7, n=6)
    base = yun_step1(X, y, 1.0, 0.0, 2).params
    p = embed(base, "zero", weights=[0.0, 0.0], bias=0.0).params
    enum = escape_test(p, X, y, RELU, method="enumerate").units[2]
    mip = escape_test(p, X, y, RELU, method="milp").units[2]
    assert enum.method == "enumerate" and mip.method == "milp"
    assert enum.g_max == pytest.approx(mip.g_max, rel=1e-7, abs=1e-12)
    assert enum.g_min == pytest.approx(mip.g_min, rel=1e-7, abs=1e-12)
    rng = np.random.default_rng(0)
    for d in rng.uniform(-1, 1, (300, 3)):
        g = g_finite_difference(p, X, y, 2, d)
        assert mip.g_min - 1e-6 <= g <= mip.g_max + 1e-6


def test_g_matches_finite_differences_for_an_active_unit_with_ties():
    X = np.array([[-1.0, 0.5], [0.0, 1.0], [1.0, -0.5], [2.0, 0.0], [0.5, 0.5]])
    y = np.array([0.3, -0.2, 1.0, 0.4, 0.0])
    # unit 0: z = x_1, tied at sample 1 (x_1 = 0)
    p = DeepParams((np.array([[1.0, 0.0], [0.3, 1.0]]), np.array([[0.8, -0.4]])), (np.array([0.0, 0.2]), np.array([0.1])))
    rep = escape_test(p, X, y, RELU, method="enumerate")
    u = rep.units[0]
    assert u.ties == (1,)
    assert g_finite_difference(p, X, y, 0, np.array(u.d_max)) == pytest.approx(u.g_max, rel=1e-5, abs=1e-9)
    assert g_finite_difference(p, X, y, 0, np.array(u.d_min)) == pytest.approx(u.g_min, rel=1e-5, abs=1e-9)
    rng = np.random.default_rng(1)
    for d in rng.uniform(-1, 1, (200, 3)):
        assert u.g_min - 1e-6 <= g_finite_difference(p, X, y, 0, d) <= u.g_max + 1e-6
    assert rep.verdict == "not_stationary"


def test_random_point_is_not_stationary():
    rng = np.random.default_rng(2)
    X, y = data(2)
    p = DeepParams((rng.normal(size=(3, 2)), rng.normal(size=(1, 3))), (rng.normal(size=3), rng.normal(size=1)))
    rep = escape_test(p, X, y, RELU)
    assert rep.verdict == "not_stationary" and not rep.stationary
    assert "dL/dc" in rep.message
    assert rep.to_row()["verdict"] == "not_stationary"


def test_split_and_dead_embeddings_of_a_stationary_point():
    X, y = data(4)
    base = yun_step1(X, y, 1.0, 0.0, 2).params
    for how, kw in (("split", {"unit": 0, "lam": 1.0}), ("split", {"unit": 0, "lam": 0.4}), ("dead", {})):
        p = embed(base, how, X=X, act=RELU, **kw).params
        rep = escape_test(p, X, y, RELU)
        assert rep.verdict == "no_escape_neuron", (how, kw, rep.message)
        assert risk(p, X, y) == pytest.approx(risk(base, X, y), rel=1e-12)


def test_refusals():
    X, y = data(0)
    p2 = DeepParams((np.ones((2, 2)), np.ones((2, 2))), (np.zeros(2), np.zeros(2)))
    with pytest.raises(MilplandError, match="scalar output"):
        escape_test(p2, X, np.column_stack([y, y]), RELU)
    p = DeepParams((np.ones((2, 2)), np.ones((1, 2))), (np.zeros(2), np.zeros(1)))
    with pytest.raises(MilplandError, match="squared loss"):
        escape_test(p, X, y, RELU, Loss("absolute"))
