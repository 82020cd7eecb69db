"""Constructions from the literature (DESIGN §8), checked with least squares and forward passes written here."""

import itertools

import numpy as np
import pytest

from milpland.errors import MilplandError
from milpland.instance import activations as acts
from milpland.instance.deep import DeepParams
from milpland.instance.losses import Loss
from milpland.points.constructions import (
    embed,
    he_deep,
    liu_groups,
    valley,
    valley_range,
    yun_step1,
    yun_step2,
)


def forward(params, X, sigma):
    a = X
    for W, b in zip(params.W[:-1], params.b[:-1]):
        a = sigma(a @ W.T + b)
    out = a @ params.W[-1].T + params.b[-1]
    return out[:, 0] if out.shape[1] == 1 else out


def pre_acts(params, X, sigma):
    a, out = X, []
    for W, b in zip(params.W[:-1], params.b[:-1]):
        z = a @ W.T + b
        out.append(z)
        a = sigma(z)
    return out


def two_slope(sp, sm):
    return lambda z: np.where(z >= 0, sp * z, sm * z)


def ls_fit(X, Y):
    Xt = np.column_stack([X, np.ones(len(X))])
    coef = np.linalg.lstsq(Xt, Y, rcond=None)[0]
    return Xt @ coef


SIGMAS = {
    "relu": (acts.relu(), lambda z: np.maximum(z, 0.0), [0.0]),
    "leaky_relu": (acts.leaky_relu(0.1), lambda z: np.where(z >= 0, z, 0.1 * z), [0.0]),
    "hardtanh": (acts.hardtanh(), lambda z: np.clip(z, -1, 1), [-1.0, 1.0]),
    "two_slope": (acts.two_slope(1.5, -0.5), two_slope(1.5, -0.5), [0.0]),
    "pwl": (
        acts.from_pieces("pwl", [-1.0, 0.0, 2.0], [0.5, -1.0, 2.0, 0.0], 0.7),
        lambda z: 0.5 * (z + 1) + 0.7 - 1.5 * np.maximum(z + 1, 0) + 3.0 * np.maximum(z, 0) - 2.0 * np.maximum(z - 2, 0),
        [-1.0, 0.0, 2.0],
    ),
}


def nonlinear_data(seed, n=14, d=2):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, d))
    y = np.sin(3 * X[:, 0]) + X[:, -1] ** 2 + 0.1 * rng.normal(size=n)
    return X, y


# ------------------------------------------------------------------------- Yun et al.


@pytest.mark.parametrize("sp,sm", [(1.0, 0.0), (1.0, 0.2), (2.0, 3.0), (0.5, -1.0)])
@pytest.mark.parametrize("width", [2, 4])
def test_yun_step1_is_the_linear_fit_in_the_positive_piece(sp, sm, width):
    X, y = nonlinear_data(width)
    c = yun_step1(X, y, sp, sm, width, alpha=0.7)
    np.testing.assert_allclose(forward(c.params, X, two_slope(sp, sm)), ls_fit(X, y), atol=1e-12)
    (Z,) = pre_acts(c.params, X, two_slope(sp, sm))
    assert np.all(Z > 0)
    assert c.risk == pytest.approx(np.mean((ls_fit(X, y) - y) ** 2), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("reduction", ["mean", "half_sum"])
@pytest.mark.parametrize("direction", ["best", "fitted"])
def test_yun_step2_beats_step1_by_its_closed_form(seed, reduction, direction):
    X, y = nonlinear_data(seed, n=10 + seed)
    sp, sm = (1.0, 0.3) if seed % 2 else (2.0, 0.0)
    loss = Loss("squared", reduction)
    w = 1 / len(y) if reduction == "mean" else 0.5
    s1 = yun_step1(X, y, sp, sm, 3, loss=loss)
    s2 = yun_step2(X, y, sp, sm, 3, loss=loss, direction=direction)
    sigma = two_slope(sp, sm)
    r1 = w * np.sum((forward(s1.params, X, sigma) - y) ** 2)
    r2 = w * np.sum((forward(s2.params, X, sigma) - y) ** 2)
    # the closed form, recomputed here from the returned split
    resid = y - ls_fit(X, y)
    phi = np.maximum(X @ np.array(s2.details["direction"]) + s2.details["offset"] - s2.details["beta"], 0.0)
    closed = w * (resid @ phi) ** 2 / (phi @ phi)
    assert s2.details["better"] and closed > 1e-6 * r1
    assert s2.details["improvement"] == pytest.approx(closed, rel=1e-9)
    assert r1 - r2 >= closed * (1 - 1e-9)
    # no sample on unit 2's kink
    (Z,) = pre_acts(s2.params, X, sigma)
    assert np.min(np.abs(Z)) > 0


def test_yun_step2_best_is_at_least_the_fitted_direction():
    X, y = nonlinear_data(9)
    best = yun_step2(X, y, 1.0, 0.0, 2)
    fitted = yun_step2(X, y, 1.0, 0.0, 2, direction="fitted")
    assert best.details["improvement"] >= fitted.details["improvement"] * (1 - 1e-12)


def test_yun_on_linear_data_has_gap_zero():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (9, 2))
    y = X @ np.array([0.7, -1.3]) + 0.4
    s1 = yun_step1(X, y, 1.0, 0.2, 2)
    s2 = yun_step2(X, y, 1.0, 0.2, 2)
    assert s1.details["linearly_fittable"]
    assert np.max(np.abs(forward(s1.params, X, two_slope(1.0, 0.2)) - y)) < 1e-12
    assert not s2.details["better"] and s2.details["improvement"] == 0.0
    assert s2.risk == pytest.approx(0.0, abs=1e-24)


def test_yun_argument_errors():
    X, y = nonlinear_data(0)
    with pytest.raises(MilplandError, match="s_plus != s_minus"):
        yun_step1(X, y, 1.0, 1.0, 2)
    with pytest.raises(MilplandError, match="width >= 2"):
        yun_step2(X, y, 1.0, 0.0, 1)
    with pytest.raises(MilplandError, match="squared loss"):
        yun_step2(X, y, 1.0, 0.0, 2, loss=Loss("absolute"))


# ------------------------------------------------------------------------- He et al.


@pytest.mark.parametrize("name", sorted(SIGMAS))
@pytest.mark.parametrize("widths", [[2], [3, 2], [2, 4, 3]])
def test_he_deep_computes_ls_fit_in_one_piece(name, widths):
    act, sigma, t = SIGMAS[name]
    X, y = nonlinear_data(len(widths))
    c = he_deep(X, y, act, widths)
    np.testing.assert_allclose(forward(c.params, X, sigma), ls_fit(X, y), atol=1e-10)
    q = c.details["piece"]
    for Z in pre_acts(c.params, X, sigma):
        pieces = np.sum(Z[..., None] > np.asarray(t), axis=-1)
        assert np.all(pieces == q)
        assert np.min(np.abs(Z[..., None] - np.asarray(t))) > 0.1


def test_he_deep_vector_output():
    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, (12, 3))
    Y = np.column_stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]])
    c = he_deep(X, Y, acts.relu(), [2, 3])
    np.testing.assert_allclose(forward(c.params, X, lambda z: np.maximum(z, 0)), ls_fit(X, Y), atol=1e-10)
    with pytest.raises(MilplandError, match="at least 2 units"):
        he_deep(X, Y, acts.relu(), [1, 3])


@pytest.mark.parametrize("name", ["relu", "hardtanh", "pwl", "two_slope"])
def test_valley_keeps_risk_and_pattern(name):
    act, sigma, t = SIGMAS[name]
    X, y = nonlinear_data(4)
    c = he_deep(X, y, act, [3, 2, 2])
    r0 = np.mean((forward(c.params, X, sigma) - y) ** 2)
    pat0 = [np.sum(Z[..., None] > np.asarray(t), axis=-1) for Z in pre_acts(c.params, X, sigma)]
    for layer in range(3):
        t_max = valley_range(c.params, X, act, layer=layer)
        for s in (0.05, 0.5, 1.7, 30.0):
            if s >= t_max:
                with pytest.raises(MilplandError, match="leaves the cell"):
                    valley(c.params, X, act, s, layer=layer)
                continue
            p = valley(c.params, X, act, s, layer=layer)
            assert np.allclose(p.W[layer], s * c.params.W[layer])
            r = np.mean((forward(p, X, sigma) - y) ** 2)
            assert abs(r - r0) <= 1e-12
            pat = [np.sum(Z[..., None] > np.asarray(t), axis=-1) for Z in pre_acts(p, X, sigma)]
            assert all(np.array_equal(a, b) for a, b in zip(pat, pat0))


def test_valley_range_for_bounded_piece_matches_hand_formula():
    act, sigma, _ = SIGMAS["hardtanh"]
    X, y = nonlinear_data(6)
    c = he_deep(X, y, act, [3])
    (Z,) = pre_acts(c.params, X, sigma)
    # piece [-1, 1] rescaled about -1: -1 + t(z + 1) < 1  <=>  t < 2/(z + 1)
    assert valley_range(c.params, X, act) == pytest.approx(np.min(2.0 / (Z + 1.0)), rel=1e-12)
    p = valley(c.params, X, act, 0.999 * valley_range(c.params, X, act))
    (Zp,) = pre_acts(p, X, sigma)
    assert np.all((Zp > -1) & (Zp < 1))


def test_valley_homogeneous_relu_any_pattern():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(10, 2))
    p = DeepParams((rng.normal(size=(3, 2)), rng.normal(size=(2, 3)), rng.normal(size=(1, 2))),
                   (rng.normal(size=3), rng.normal(size=2), rng.normal(size=1)))
    relu = acts.relu()
    assert valley_range(p, X, relu) == np.inf
    q = valley(p, X, relu, 7.5, layer=1)
    Xtest = rng.normal(size=(50, 2))  # unchanged everywhere, not only on the data
    np.testing.assert_allclose(forward(q, Xtest, lambda z: np.maximum(z, 0)), forward(p, Xtest, lambda z: np.maximum(z, 0)), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------- Liu


def group_sse(X, y, groups):
    return sum(np.sum((ls_fit(X[g], y[g]) - y[g]) ** 2) for g in groups)


@pytest.mark.parametrize("name", sorted(SIGMAS))
@pytest.mark.parametrize("widths", [[8], [8, 2]])
def test_liu_groups_1d_fits_each_group_by_its_own_line(name, widths):
    act, sigma, t = SIGMAS[name]
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 15)
    y = np.sin(4 * x) + 0.1 * rng.normal(size=15)
    order = np.argsort(x)
    groups = [order[:5], order[5:9], order[9:]]
    shuffled = [groups[2], groups[0], groups[1]]  # 1-D groups are sorted by position automatically
    c = liu_groups(x[:, None], y, act, widths, shuffled)
    f = forward(c.params, x[:, None], sigma)
    for g in groups:
        np.testing.assert_allclose(f[g], ls_fit(x[g, None], y[g]), atol=1e-8)
    assert c.risk == pytest.approx(group_sse(x[:, None], y, groups) / 15, rel=1e-8)
    Zs = pre_acts(c.params, x[:, None], sigma)
    pats = np.concatenate([np.sum(Z[..., None] > np.asarray(t), axis=-1) for Z in Zs], axis=1)
    for g in groups:
        assert np.all(pats[g] == pats[g[0]])  # one pattern per group
    assert len({tuple(pats[g[0]]) for g in groups}) == 3
    assert min(np.min(np.abs(Z[..., None] - np.asarray(t))) for Z in Zs) > 0


def test_liu_groups_2d_separable_chain_and_refusals():
    rng = np.random.default_rng(6)
    X = rng.uniform(-1, 1, (24, 2))
    y = rng.normal(size=24)
    labels = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.4, 0.5])
    c = liu_groups(X, y, acts.relu(), [6], labels)
    groups = [np.flatnonzero(labels == k) for k in range(3)]
    f = forward(c.params, X, lambda z: np.maximum(z, 0))
    for g in groups:
        np.testing.assert_allclose(f[g], ls_fit(X[g], y[g]), atol=1e-8)
    with pytest.raises(MilplandError, match="cannot be separated"):
        liu_groups(X, y, acts.relu(), [6], np.arange(24) % 2)
    with pytest.raises(MilplandError, match=r"need \d+ units in the first hidden layer"):
        liu_groups(X, y, acts.relu(), [2], labels)
    with pytest.raises(MilplandError, match="partition"):
        liu_groups(X, y, acts.relu(), [6], [list(range(10)), list(range(9, 24))])


def test_liu_one_unit_junction_when_lines_cross_in_the_gap():
    # a constant and a line crossing it at x = 0 inside the gap (-0.5, 0.5): one ReLU unit, no carrier
    x = np.array([-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0])
    y = np.where(x < 0, 1.0, 1.0 + 2 * x)
    c = liu_groups(x[:, None], y, acts.relu(), [1], [range(4), range(4, 8)])
    assert c.details["junction_units"] == [1] and not c.details["carrier"]
    np.testing.assert_allclose(forward(c.params, x[:, None], lambda z: np.maximum(z, 0)), y, atol=1e-12)
    # a sloped first line needs the carrier unit as well
    with pytest.raises(MilplandError, match=r"need 2 units .*1 carrier"):
        liu_groups(x[:, None], np.where(x < 0, -x, 2 * x), acts.relu(), [1], [range(4), range(4, 8)])


def test_liu_absolute_loss_uses_lad_fits():
    x = np.linspace(-1, 1, 10)
    y = np.array([0.0, 0.1, 0.0, 3.0, 0.2, 1.0, 1.2, 0.9, 1.1, -2.0])
    groups = [range(5), range(5, 10)]
    c = liu_groups(x[:, None], y, acts.relu(), [5], groups, loss=Loss("absolute"))

    def lad(xs, ys):
        best = np.inf
        for i, j in itertools.combinations(range(len(xs)), 2):
            a = (ys[j] - ys[i]) / (xs[j] - xs[i])
            best = min(best, np.sum(np.abs(a * (xs - xs[i]) + ys[i] - ys)))
        return best

    want = sum(lad(x[list(g)], y[list(g)]) for g in groups) / 10
    assert c.risk == pytest.approx(want, rel=1e-9)


# ------------------------------------------------------------------------- embedding


@pytest.mark.parametrize("how", ["zero", "dead", "split"])
@pytest.mark.parametrize("layer", [0, 1])
def test_embed_keeps_outputs(how, layer):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(12, 2))
    y = rng.normal(size=12)
    p = DeepParams((rng.normal(size=(3, 2)), rng.normal(size=(2, 3)), rng.normal(size=(1, 2))),
                   (rng.normal(size=3), rng.normal(size=2), rng.normal(size=1)))
    act, sigma, _ = SIGMAS["hardtanh"] if how == "dead" else SIGMAS["relu"]
    c = embed(p, how, X=X, y=y, act=act, layer=layer, unit=1, lam=0.3, seed=4)
    assert c.params.hidden[layer] == p.hidden[layer] + 1
    np.testing.assert_allclose(forward(c.params, X, sigma), forward(p, X, sigma), rtol=1e-12, atol=1e-12)
    assert c.risk == pytest.approx(np.mean((forward(p, X, sigma) - y) ** 2), rel=1e-12)
    W_next = c.params.W[layer + 1]
    if how == "zero":
        assert np.all(W_next[:, -1] == 0)
    if how == "dead":
        Z = pre_acts(c.params, X, sigma)[layer][:, -1]
        assert np.all(Z < -1) or np.all(Z > 1)  # strictly inside a flat piece of hard-tanh
        assert np.any(W_next[:, -1] != 0)
    if how == "split":
        np.testing.assert_allclose(W_next[:, 1], 0.3 * p.W[layer + 1][:, 1])
        np.testing.assert_allclose(W_next[:, -1], 0.7 * p.W[layer + 1][:, 1])
        Xtest = rng.normal(size=(40, 2))
        np.testing.assert_allclose(forward(c.params, Xtest, sigma), forward(p, Xtest, sigma), rtol=1e-12, atol=1e-12)


def test_embed_dead_needs_flat_piece():
    p = DeepParams((np.ones((1, 1)), np.ones((1, 1))), (np.zeros(1), np.zeros(1)))
    with pytest.raises(MilplandError, match="no flat piece"):
        embed(p, "dead", X=np.ones((2, 1)), act=acts.leaky_relu(0.1))
    with pytest.raises(MilplandError, match="how: use one of"):
        embed(p, "grow")
