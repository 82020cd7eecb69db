"""The group least-squares bound (DESIGN §6), against least squares / brute-force LAD computed here."""

import itertools

import numpy as np
import pytest

from milpland.errors import MilplandError
from milpland.instance import activations as acts
from milpland.instance.deep import DeepParams
from milpland.instance.losses import Loss
from milpland.points.constructions import he_deep, liu_groups, yun_step1
from milpland.points.grouplsq import affine_fit, group_bound

RELU = acts.relu()


def relu_forward(Ws, bs, X):
    a = X
    pats = []
    for W, b in zip(Ws[:-1], bs[:-1]):
        z = a @ W.T + b
        pats.append(z > 0)
        a = np.maximum(z, 0.0)
    return a @ Ws[-1].T + bs[-1], np.concatenate(pats, axis=1)


def own_groups(full):
    keys = {}
    for i, row in enumerate(full):
        keys.setdefault(tuple(row.tolist()), []).append(i)
    return list(keys.values())


def lstsq_sse(X, Y):
    Xt = np.column_stack([X, np.ones(len(X))])
    coef = np.linalg.lstsq(Xt, Y, rcond=None)[0]
    return float(np.sum((Y - Xt @ coef) ** 2))


def lad_brute_force_1d(x, y):
    """min_{a,b} Σ|a x + b − y| for 1-D x: some optimal line passes through two samples (or is constant)."""
    best = min(np.sum(np.abs(y - np.median(y))), np.inf)
    for i, j in itertools.combinations(range(len(x)), 2):
        if x[i] == x[j]:
            continue
        a = (y[j] - y[i]) / (x[j] - x[i])
        best = min(best, np.sum(np.abs(a * (x - x[i]) + y[i] - y)))
    return float(best)


def perturbation_min_change(params, X, y, act, loss, *, seed=0, n_dirs=60):
    """Smallest relative risk change over random perturbations of radius 1e-6 .. 1e-3 (plain numpy)."""
    rng = np.random.default_rng(seed)
    theta = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(params.W, params.b)])

    def risk(th):
        pos, a = 0, X
        Ws, bs = [], []
        for w, b in zip(params.W, params.b):
            Ws.append(th[pos : pos + w.size].reshape(w.shape))
            pos += w.size
            bs.append(th[pos : pos + b.size])
            pos += b.size
        for W, b in zip(Ws[:-1], bs[:-1]):
            a = act(a @ W.T + b)
        f = (a @ Ws[-1].T + bs[-1]).reshape(np.shape(y))
        r = f - y
        return loss.weight(len(y)) * float(np.sum(r**2 if loss.kind == "squared" else np.abs(r)))

    r0 = risk(theta)
    worst = np.inf
    for radius in (1e-6, 1e-5, 1e-4, 1e-3):
        for _ in range(n_dirs):
            d = rng.normal(size=theta.size)
            worst = min(worst, (risk(theta + radius * d / np.linalg.norm(d)) - r0) / max(1.0, r0))
    return worst


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reduction", ["mean", "half_sum"])
def test_bound_is_sum_of_group_least_squares(seed, reduction):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(25, 2))
    y = np.sin(X[:, 0]) + rng.normal(size=25)
    Ws = [rng.normal(size=(3, 2)), rng.normal(size=(2, 3)), rng.normal(size=(1, 2))]
    bs = [rng.normal(size=3), rng.normal(size=2), rng.normal(size=1)]
    f, full = relu_forward(Ws, bs, X)
    loss = Loss("squared", reduction)
    w = 1 / 25 if reduction == "mean" else 0.5
    want = w * sum(lstsq_sse(X[g], y[g]) for g in own_groups(full))
    res = group_bound(DeepParams(tuple(Ws), tuple(bs)), X, y, RELU, loss)
    assert res.bound == pytest.approx(want, rel=1e-10, abs=1e-14)
    assert res.risk == pytest.approx(w * np.sum((f[:, 0] - y) ** 2), rel=1e-12)
    assert sorted(map(sorted, res.groups)) == sorted(map(sorted, own_groups(full)))
    assert res.bound <= res.risk + 1e-12


def test_vector_output_bound():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(30, 3))
    Y = rng.normal(size=(30, 2))
    Ws = [rng.normal(size=(4, 3)), rng.normal(size=(2, 4))]
    bs = [rng.normal(size=4), rng.normal(size=2)]
    f, full = relu_forward(Ws, bs, X)
    res = group_bound(DeepParams(tuple(Ws), tuple(bs)), X, Y, RELU)
    want = sum(lstsq_sse(X[g], Y[g]) for g in own_groups(full)) / 30
    assert res.bound == pytest.approx(want, rel=1e-10)
    assert res.risk == pytest.approx(np.sum((f - Y) ** 2) / 30, rel=1e-12)


def test_bound_holds_for_every_point_of_the_cell():
    """Random points that keep the pattern never go below the bound (the bound's claim, tested)."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(20, 2))
    y = np.abs(X[:, 0]) - X[:, 1] ** 2
    Ws = [rng.normal(size=(3, 2)), rng.normal(size=(3, 3)), rng.normal(size=(1, 3))]
    bs = [rng.normal(size=3), rng.normal(size=3), rng.normal(size=1)]
    p = DeepParams(tuple(Ws), tuple(bs))
    res = group_bound(p, X, y, RELU)
    cell = p.cell_id(X, RELU)
    kept = 0
    for _ in range(400):
        q = p.from_flat(p.flat() + 0.15 * rng.normal(size=p.n_params))
        if q.cell_id(X, RELU) != cell:
            continue
        kept += 1
        assert np.mean((q.forward(X, RELU) - y) ** 2) >= res.bound - 1e-12
    assert kept >= 10


def test_absolute_loss_uses_lad_and_matches_brute_force():
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 14)
    y = np.cos(3 * x) + 0.2 * rng.normal(size=14)
    X = x[:, None]
    W1 = np.array([[1.0], [-1.0]])
    b1 = np.array([-0.2, -0.1])
    p = DeepParams((W1, np.array([[1.0, 0.5]])), (b1, np.array([0.0])))
    _, full = relu_forward(list(p.W), list(p.b), X)
    res = group_bound(p, X, y, RELU, Loss("absolute"))
    want = sum(lad_brute_force_1d(x[g], y[g]) for g in own_groups(full)) / 14
    assert res.bound == pytest.approx(want, rel=1e-9)
    assert res.dual_gap < 1e-9
    coef, risk = affine_fit(X, y, Loss("absolute"))
    assert risk == pytest.approx(lad_brute_force_1d(x, y) / 14, rel=1e-9)


@pytest.mark.parametrize("act", [acts.relu(), acts.leaky_relu(0.2), acts.hardtanh()], ids=lambda a: a.name)
def test_certified_constructions_survive_random_perturbations(act):
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, (12, 2))
    y = np.sin(3 * X[:, 0]) * X[:, 1] + 0.1 * rng.normal(size=12)
    loss = Loss()
    c = he_deep(X, y, act, [3, 2])
    res = group_bound(c.params, X, y, act, loss)
    assert res.certified and res.verdict == "local_minimum" and res.n_groups == 1
    assert res.risk == pytest.approx(lstsq_sse(X, y) / 12, rel=1e-10)
    assert perturbation_min_change(c.params, X, y, act, loss) >= -1e-9


def test_yun_step1_and_liu_are_certified_and_locally_minimal():
    rng = np.random.default_rng(8)
    x = np.sort(rng.uniform(-1, 1, 12))
    y = np.sin(4 * x)
    X = x[:, None]
    s1 = yun_step1(X, y, 1.0, 0.3, 3)
    r1 = group_bound(s1.params, X, y, s1.activation)
    assert r1.certified
    assert perturbation_min_change(s1.params, X, y, s1.activation, Loss(), seed=1) >= -1e-9
    liu = liu_groups(X, y, RELU, [6], [range(0, 4), range(4, 8), range(8, 12)])
    r2 = group_bound(liu.params, X, y, RELU)
    assert r2.certified and r2.n_groups == 3
    want = sum(lstsq_sse(X[g], y[g]) for g in (range(0, 4), range(4, 8), range(8, 12))) / 12
    assert r2.risk == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert perturbation_min_change(liu.params, X, y, RELU, Loss(), seed=2) >= -1e-9


def test_boundary_point_is_not_certified():
    X = np.array([[-1.0], [0.0], [1.0], [2.0]])
    y = np.array([0.0, 0.0, 1.0, 2.0])
    # f = relu(x): fits exactly, but sample x = 0 sits on the kink
    p = DeepParams((np.array([[1.0]]), np.array([[1.0]])), (np.array([0.0]), np.array([0.0])))
    res = group_bound(p, X, y, RELU)
    assert res.risk == 0.0 and res.tight
    assert not res.interior and not res.certified and res.verdict == "on_boundary"


def test_interior_point_above_bound_is_inconclusive():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(10, 2))
    y = rng.normal(size=10)
    p = DeepParams((rng.normal(size=(3, 2)), rng.normal(size=(1, 3))), (rng.normal(size=3), rng.normal(size=1)))
    res = group_bound(p, X, y, RELU)
    assert res.interior and not res.tight and not res.certified
    assert res.verdict == "bound_not_attained"
    assert res.to_row()["verdict"] == "bound_not_attained"
    assert res.to_json()["n_groups"] == res.n_groups
    # the perturbation probe used above does detect descent at a non-stationary point
    assert perturbation_min_change(p, X, y, RELU, Loss()) < -1e-6


def test_hinge_loss_refused():
    p = DeepParams((np.ones((1, 1)), np.ones((1, 1))), (np.zeros(1), np.zeros(1)))
    with pytest.raises(MilplandError, match="squared and absolute"):
        group_bound(p, np.ones((2, 1)), np.array([1.0, -1.0]), RELU, Loss("hinge"))
