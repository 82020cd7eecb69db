"""The two-hidden-layer search (DESIGN §6a) against references that share no code with it.

- A plain numpy two-layer forward pass and canonical form written here.
- The node relaxation is checked on random networks of random nodes: each network's own
  variables satisfy every row, and the certified bound is never above its risk.
- Propagation and the root symmetry rules never remove a network (its strict pattern).
- End to end: the issue-17 example (x = 0..3, y = 0, 1, 0, 1) has minimum 0 and He's point gap
  2/5; small-box instances agree with SCIP's MINLP solved to optimality; the proven minimum is
  never above the best of 500 bounded descents in canonical coordinates written here
  (`box_descents`, every end point a network of the box), and at its knots the brute-force
  one-hidden-layer solve (tests/bruteforce.py) on the features reproduces it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from bruteforce import brute_force_global

from milpland.errors import MilplandError
from milpland.instance.deep import DeepParams
from milpland.instance.spec import spec_from_dict
from milpland.points.certify import certify_point
from milpland.points.constructions import he_deep
from milpland.search import deep_relaxation as rx
from milpland.search import deep_solve as ds
from milpland.search.deep_model import TwoLayerData
from milpland.search.solve import solve_global

SLOPES = {"relu": (0.0, 1.0), "leaky_relu": (0.1, 1.0)}


def make_spec(x, y, *, hidden=(2, 2), act="relu", box=100.0, time_limit=60.0, reduction="mean", rel_gap=1e-6,
              loss="squared"):
    network = {"hidden": list(hidden), "activation": act}
    if act == "leaky_relu":
        network["alpha"] = 0.1
    return spec_from_dict({"name": "t", "data": {"x": list(map(float, x)), "y": list(map(float, y))},
                           "network": network, "loss": {"kind": loss, "reduction": reduction},
                           "box": {"weight": box}, "solve": {"time_limit": time_limit, "rel_gap": rel_gap}})


def sigma(z, act="relu"):
    a0, a1 = SLOPES[act]
    return np.where(z > 0, a1 * z, a0 * z)


def forward(params: DeepParams, x, act="relu"):
    """f(x) for ordinary weights, written out here."""
    a = np.asarray(x, dtype=float).reshape(-1, 1)
    for W, b in zip(params.W[:-1], params.b[:-1]):
        a = sigma(a @ np.asarray(W).T + b, act)
    return (a @ np.asarray(params.W[-1]).T + params.b[-1])[:, 0]


def mse(params, x, y, act="relu", reduction="mean"):
    r = forward(params, x, act) - np.asarray(y, dtype=float)
    return float(np.sum(r * r) / (len(r) if reduction == "mean" else 2.0))


def canonical(params: DeepParams, x):
    """(knots, orientations, A, b) of two-layer weights, knots clamped to the data (the constant
    difference moved into b): the box of DESIGN §6a applies to A and b."""
    w, b1 = np.asarray(params.W[0])[:, 0], np.asarray(params.b[0])
    W2, b2 = np.asarray(params.W[1]), np.asarray(params.b[1]).astype(float).copy()
    v = np.asarray(params.W[2])[0]
    lo, hi = float(np.min(x)), float(np.max(x))
    A = np.zeros_like(W2)
    for j in range(w.shape[0]):
        if w[j] == 0:
            b2 = b2 + W2[:, j] * max(b1[j], 0.0)
            continue
        s, t = np.sign(w[j]), -b1[j] / w[j]
        A[:, j] = W2[:, j] * abs(w[j])
        tc = min(max(t, lo), hi)
        b2 = b2 + A[:, j] * (max(s * (lo - t), 0.0) - max(s * (lo - tc), 0.0))
    return np.abs(v)[:, None] * A, np.abs(v) * b2


def in_box(params, x, box):
    A, b = canonical(params, x)
    return bool(np.all(np.abs(A) <= box * (1 + 1e-9)) and np.all(np.abs(b) <= box * (1 + 1e-9)))


# ------------------------------------------------------------------------------------------------
# Random networks inside random nodes
# ------------------------------------------------------------------------------------------------


def random_net(rng, x, m1, m2, box):
    """A canonical network (orientations, knots, A, b, output signs, c) with knots inside the data."""
    lo, hi = float(np.min(x)), float(np.max(x))
    orient = rng.choice([-1.0, 1.0], size=m1)
    t = rng.uniform(lo, hi, size=m1)
    A = rng.uniform(-box, box, size=(m2, m1)) * rng.choice([0.2, 1.0], size=(m2, m1))
    b = rng.uniform(-box, box, size=m2) * 0.3
    signs = rng.choice([-1.0, 1.0], size=m2)
    return orient, t, A, b, signs, float(rng.normal())


def node_of(rng, data: TwoLayerData, net, *, undecided=0.5, act="relu"):
    """A node holding ``net``: its gaps and signs, random sub-intervals and share boxes around it,
    its strict layer-2 pattern with a random part left undecided."""
    orient, t, A, b, signs, c = net
    p = data.positions
    m2, m1 = A.shape
    gaps = np.clip(np.searchsorted(p, t) - 1, 0, len(p) - 2)
    L, U = np.empty(m1), np.empty(m1)
    for j, g in enumerate(gaps):
        L[j] = rng.uniform(p[g], t[j])
        U[j] = rng.uniform(t[j], p[g + 1])
    share = np.abs(A) / np.maximum(np.abs(A).sum(axis=0), 1e-300)
    mlo = np.clip(share - rng.uniform(0, 0.5, size=share.shape), 0, 1)
    mhi = np.clip(share + rng.uniform(0, 0.5, size=share.shape), 0, 1)
    z = sigma(orient[None, :] * (p[:, None] - t[None, :]), act) @ A.T + b
    P = (z > 0).astype(np.int8)
    P[rng.random(P.shape) < undecided] = rx.UNDECIDED
    node = rx.DeepNode(bound=0.0, tiebreak=0, orientations=tuple(orient), gaps=tuple(int(g) for g in gaps),
                       sig=np.where(A < 0, -1.0, 1.0), L=L, U=U, mlo=mlo, mhi=mhi, P=P, signs=signs)
    return node, z


def true_variables(data, node, net, z, qp):
    """The network's own point in the node's variables (c, b, M, W, h)."""
    orient, t, A, b, signs, c = net
    m1, m2 = data.widths
    cols = rx.Columns(m1, m2)
    x = np.zeros(qp.Phi.shape[1])
    x[0], x[cols.b] = c, b
    x[cols.M] = np.abs(A)
    x[cols.W] = np.abs(A) * (t - node.L)[None, :]
    fi, fk = qp.free
    x[qp.p0:] = np.maximum(z[fi, fk], 0.0)
    return x


def loss_of(f, y, kind):
    """weight-free sum of the loss, written out here."""
    if kind == "squared":
        return float(np.sum((f - y) ** 2))
    if kind == "absolute":
        return float(np.sum(np.abs(f - y)))
    return float(np.sum(np.maximum(0.0, 1.0 - y * f)))


@pytest.mark.parametrize("conic, act, loss", [(True, "relu", "squared"), (False, "relu", "squared"),
                                              (True, "leaky_relu", "squared"), (False, "leaky_relu", "squared"),
                                              (True, "relu", "absolute"), (True, "leaky_relu", "hinge")])
def test_every_network_of_a_node_satisfies_its_relaxation_and_bound(conic, act, loss):
    rng = np.random.default_rng(7 if conic else 8)
    x = np.array([0.0, 0.4, 1.0, 1.7, 2.0, 3.1])
    y = rng.normal(size=x.size) if loss != "hinge" else rng.choice([-1.0, 1.0], size=x.size)
    spec = make_spec(x, y, act=act, box=5.0, loss=loss)
    data = TwoLayerData.of(spec)
    checked = 0
    for _ in range(40):
        net = random_net(rng, x, 2, 2, 5.0)
        node, z = node_of(rng, data, net, act=act)
        qp = rx.node_qp(data, node, conic=conic)
        xv = true_variables(data, node, net, z, qp)
        orient, t, A, b, signs, c = net
        f = c + sigma(z, act) @ signs  # the network's outputs at the positions, written out here
        np.testing.assert_allclose(qp.Phi @ xv, f[data.where], rtol=1e-10, atol=1e-10)
        scale = 1.0 + np.abs(xv).max()
        assert np.all(qp.A @ xv >= qp.rhs - 1e-9 * scale), "a row cuts off a network of the node"
        assert np.all(xv >= qp.lower - 1e-9 * scale) and np.all(xv <= qp.upper + 1e-9 * scale)
        solved = rx.solve_qp(data, qp)
        assert solved is not None
        risk = data.weight * loss_of(f[data.where], y, loss)
        assert rx.bound(data, qp, *solved) <= risk + 1e-9 * max(1.0, risk)
        checked += 1
    assert checked == 40


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_networks_with_weights_across_the_whole_box_satisfy_the_secant_rows(act):
    """The secant rows and h's upper bounds rest on the range of z_pk over the node
    (`deep_relaxation.z_range`).  With leaky ReLU a feature is negative on its unit's bottom piece,
    so a unit of either sign can push z both ways: networks whose weights fill the whole box, every
    pair undecided, must still satisfy every row (20 of 400 did not before the range said so)."""
    rng = np.random.default_rng(5)
    x = np.array([0.0, 0.4, 1.0, 1.7, 2.0, 3.1])
    data = TwoLayerData.of(make_spec(x, rng.normal(size=x.size), act=act, box=5.0))
    for _ in range(400):
        orient, t, _, _, signs, c = random_net(rng, x, 2, 2, 5.0)
        net = (orient, t, rng.uniform(-5, 5, size=(2, 2)), rng.uniform(-5, 5, size=2), signs, c)
        node, z = node_of(rng, data, net, act=act, undecided=1.0)
        lo, hi = rx.z_range(data, node)
        assert np.all(lo <= z + 1e-12) and np.all(z <= hi + 1e-12)
        qp = rx.node_qp(data, node)
        xv = true_variables(data, node, net, z, qp)
        scale = 1.0 + np.abs(xv).max()
        assert np.all(qp.A @ xv >= qp.rhs - 1e-9 * scale), "a row cuts off a network of the node"
        assert np.all(xv <= qp.upper + 1e-9 * scale)


def test_a_pattern_child_shares_its_parents_frame_and_gets_the_same_qp_as_built_afresh():
    """The pattern-free part of a node's QP (`deep_relaxation.NodeFrame`) is built once and shared by
    pattern children; an interval child builds its own.  Either way its QP must be the one built from
    scratch for the same node."""
    import dataclasses

    rng = np.random.default_rng(11)
    x = np.array([0.0, 0.4, 1.0, 1.7, 2.0, 3.1])
    data = TwoLayerData.of(make_spec(x, rng.normal(size=x.size), box=5.0))
    counter = itertools.count()
    for _ in range(20):
        node, _ = node_of(rng, data, random_net(rng, x, 2, 2, 5.0))
        parent = dataclasses.replace(node, P=np.full_like(node.P, rx.UNDECIDED))
        rx.node_qp(data, parent)
        children = [ds._child(parent, 0.0, counter, P=node.P)]
        children += ds.split_interval(data, parent, rng.random(parent.mlo.shape), 0.0, counter, ds.SearchStats())
        assert children[0].frame is parent.frame and all(c.frame is None for c in children[1:])
        for child in children:
            cached = rx.node_qp(data, child)
            fresh = rx.node_qp(data, dataclasses.replace(child, frame=None, runs=None))
            for name in ("Phi", "A", "rhs", "lower", "upper", "Z"):
                np.testing.assert_array_equal(getattr(cached, name), getattr(fresh, name))


def test_the_first_incumbents_run_only_when_the_search_lasts():
    """The multistart heuristics are deferred (DESIGN §6a): a search that ends before their budget
    never runs them, and run first they give the same minimum.  The instance is box1-n3-s1 of
    models/suites/deep-scip.toml (three inputs, box 1), whose minimum over the box SCIP's MINLP
    certifies as 0.0349431572 (results/bench-deep-scip.md, risk of SCIP's point re-evaluated in numpy)."""
    from pathlib import Path

    from milpland.runs.suites import load_suite

    suite = Path(__file__).resolve().parents[1] / "models" / "suites" / "deep-scip.toml"
    spec = next(i.spec for i in load_suite(suite) if i.name == "box1-n3-s1")
    deferred = ds.solve_two_layer(spec, one_hidden=solve_global)
    first = ds.solve_two_layer(spec, one_hidden=solve_global, options=ds.DeepOptions(incumbent_delay=0.0))
    assert deferred.options["incumbent_seconds"] == 0.0 < first.options["incumbent_seconds"]
    x, y = spec.X[:, 0], spec.y
    for result in (deferred, first):
        assert result.status == "optimal" and result.verification.ok
        assert result.risk == pytest.approx(mse(result.params, x, y), rel=1e-9)
        assert result.risk == pytest.approx(0.0349431572, rel=1e-6)
        assert result.lower_bound >= result.risk * (1 - 2e-6)


def test_the_bound_is_valid_for_any_multipliers():
    rng = np.random.default_rng(3)
    x = np.arange(5.0)
    y = rng.normal(size=5)
    data = TwoLayerData.of(make_spec(x, y, box=3.0))
    net = random_net(rng, x, 2, 2, 3.0)
    node, z = node_of(rng, data, net)
    qp = rx.node_qp(data, node)
    xv = true_variables(data, node, net, z, qp)
    risk = data.weight * float(np.sum((qp.Phi @ xv - y) ** 2))
    for _ in range(20):  # arbitrary points and multipliers: still below every network of the node
        zr = rng.uniform(qp.lower, qp.upper)
        lam = rng.exponential(size=qp.A.shape[0])
        assert rx.bound(data, qp, zr, lam) <= risk + 1e-9


def test_propagation_never_removes_a_networks_own_pattern():
    rng = np.random.default_rng(11)
    x = np.array([0.0, 0.5, 0.9, 1.6, 2.2, 2.9, 3.3, 4.0])
    data = TwoLayerData.of(make_spec(x, rng.normal(size=x.size)))
    for _ in range(200):
        net = random_net(rng, x, 2, 2, 4.0)
        node, z = node_of(rng, data, net, undecided=0.6)
        strict = (z > 0).astype(np.int8)
        P = ds.propagate(data, node, node.P)
        assert P is not None
        decided = P != rx.UNDECIDED
        assert np.array_equal(P[decided], strict[decided])


def test_every_network_has_a_root():
    """Permuting the layer-2 units of equal output sign (positives first) and sorting layer 1,
    some permutation of every network is one of the search's roots."""
    rng = np.random.default_rng(5)
    x = np.array([0.0, 1.0, 2.5, 3.0, 4.0])
    data = TwoLayerData.of(make_spec(x, rng.normal(size=x.size)))
    counter = itertools.count()
    roots = ds.root_nodes(data, counter)
    keys = {(r.orientations, r.gaps, tuple(map(tuple, r.sig)), tuple(r.signs)) for r in roots}
    p = data.positions
    for _ in range(100):
        orient, t, A, b, signs, c = random_net(rng, x, 2, 2, 1.0)
        gaps = np.clip(np.searchsorted(p, t) - 1, 0, len(p) - 2)
        sig = np.where(A < 0, -1.0, 1.0)
        found = False
        for pk in itertools.permutations(range(2)):
            s2, sg2 = signs[list(pk)], sig[list(pk)]
            if np.any(np.diff(s2) > 0):  # positive output units first
                continue
            for pj in itertools.permutations(range(2)):
                key = (tuple(orient[list(pj)]), tuple(int(g) for g in gaps[list(pj)]),
                       tuple(map(tuple, sg2[:, list(pj)])), tuple(s2))
                found |= key in keys
        assert found


@pytest.mark.parametrize("scale, closes", [(0.5, True), (3.0, False)])
def test_a_leaf_closes_only_on_a_network_in_the_box(monkeypatch, scale, closes):
    """A leaf (pattern decided, no McCormick violation) whose relaxation point has the node's bound
    as its risk closes only when that network lies in the box: an out-of-box network is never an
    incumbent, so dropping the node would leave nothing in the box at the claimed bound."""
    from milpland.search.deep_incumbents import DeepIncumbent, constant_net
    from milpland.search.deep_model import CanonicalNet

    rng = np.random.default_rng(2)
    x = np.arange(5.0)
    spec = make_spec(x, rng.normal(size=5), box=1.0)
    data = TwoLayerData.of(spec)
    orient, t, A, b, signs, c = random_net(rng, x, 2, 2, 1.0)
    node, _ = node_of(rng, data, (orient, t, A, b, signs, c), undecided=0.0)
    A = scale * A / np.abs(A).max()  # |A| <= 1/2 (inside the box 1) or = 3 somewhere (outside)
    point = CanonicalNet(orientations=orient, t=t, A=A, b=0.5 * b / max(1.0, np.abs(b).max()), signs=signs, c=c)
    risk = point.risk(data)  # the relaxation's bound equals its point's risk: the node looks solved
    monkeypatch.setattr(ds, "evaluate", lambda *a, **k: ds._Evaluated(bound=risk, z=np.zeros(1), qp=None))
    monkeypatch.setattr(ds, "read_point", lambda *a, **k: (point, np.zeros(node.P.shape), np.zeros(A.shape)))
    incumbent = DeepIncumbent(risk=risk + 1.0, net=constant_net(data), found_by="test")
    children = ds.expand(spec, data, node, incumbent, itertools.count(), lambda: risk + 0.5, ds.SearchStats(),
                         ds.DeepOptions(polish=False, symmetry=False))
    assert point.in_box(data) == closes
    assert (children == []) == closes
    assert incumbent.risk == (risk if closes else risk + 1.0)  # only a network in the box is offered


# ------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------


def test_tent_two_layers_fit_exactly_and_hes_point_has_gap_two_fifths():
    """Issue 17: x = 0..3, y = 0, 1, 0, 1, ReLU 1-2-2-1, half-sum: the minimum is 0 (the network
    w = (1, 1), b = (0, -1); [[1, -2], [-1, 2]]; (1, 1) computes |tent| and fits), and He's
    construction computes the least-squares line, risk 2/5: its gap is exactly 2/5."""
    x, y = [0, 1, 2, 3], [0, 1, 0, 1]
    spec = make_spec(x, y, reduction="half_sum", time_limit=60)
    exact = DeepParams((np.array([[1.0], [1.0]]), np.array([[1.0, -2.0], [-1.0, 2.0]]), np.array([[1.0, 1.0]])),
                       (np.array([0.0, -1.0]), np.zeros(2), np.zeros(1)))
    assert mse(exact, x, y, reduction="half_sum") == 0.0
    result = solve_global(spec)
    assert result.certified and result.risk <= 1e-12 and result.verification.ok
    assert mse(result.params, x, y, reduction="half_sum") <= 1e-12
    he = he_deep(spec.X, spec.y, spec.network.activation, [2, 2]).params
    assert mse(he, x, y, reduction="half_sum") == pytest.approx(0.4, rel=1e-12)
    cert = certify_point(spec, he, gd_starts=0)
    assert cert.verdict == "local_min" and cert.global_certified
    assert cert.gap == pytest.approx(0.4, abs=1e-9) and cert.gap_lower_bound == pytest.approx(0.4, abs=1e-9)
    assert "two-layer global solve" in cert.best_method


def box_descents(x, y, hidden, box, *, starts, seed):
    """Best risk of ``starts`` bounded L-BFGS-B descents on the canonical coordinates of DESIGN §6a,
    written here (no milpland code): for random orientations s_j and output signs s_k, minimise the
    mean squared error of f = c + sum_k s_k relu(b_k + sum_j A_kj relu(s_j (x - t_j))) over knots in
    [min x, max x] and |A|, |b| <= box (the canonical box).  Every end point is a network of the box,
    so the minimum over the box is at most each of them."""
    from scipy.optimize import minimize

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    m1, m2 = hidden
    rng = np.random.default_rng(seed)
    lo, hi = float(x.min()), float(x.max())
    bounds = [(lo, hi)] * m1 + [(-box, box)] * (m2 * m1 + m2) + [(None, None)]

    best = math.inf
    for _ in range(starts):
        s1, s2 = rng.choice([-1.0, 1.0], size=m1), rng.choice([-1.0, 1.0], size=m2)
        start = np.concatenate([rng.uniform(lo, hi, m1), rng.uniform(-box, box, m2 * m1 + m2), [rng.normal()]])
        args = (x, y, hidden, s1, s2)
        res = minimize(canonical_risk, start, args=args, jac=True, method="L-BFGS-B", bounds=bounds)
        low = [b[0] if b[0] is not None else -np.inf for b in bounds]
        high = [b[1] if b[1] is not None else np.inf for b in bounds]
        best = min(best, canonical_risk(np.clip(res.x, low, high), *args)[0])
    return best


def canonical_risk(theta, x, y, hidden, s1, s2):
    """(mean squared error, gradient) of the canonical network theta = (t, A, b, c) with orientations
    s1 and output signs s2 (DESIGN §6a), ReLU; the gradient of relu taken as 0 at 0."""
    m1, m2 = hidden
    t, A = theta[:m1], theta[m1:m1 + m2 * m1].reshape(m2, m1)
    b, c = theta[m1 + m2 * m1:-1], theta[-1]
    g1 = s1[None, :] * (x[:, None] - t[None, :])
    phi = np.maximum(g1, 0.0)
    z = phi @ A.T + b
    r = c + np.maximum(z, 0.0) @ s2 - y
    d = 2.0 * r / x.size  # dR/df
    dz = d[:, None] * (z > 0) * s2[None, :]  # dR/dz, (n, m2)
    grad_t = -np.sum((dz @ A) * (g1 > 0) * s1[None, :], axis=0)
    return float(r @ r / x.size), np.concatenate([grad_t, (dz.T @ phi).ravel(), dz.sum(axis=0), [d.sum()]])


def test_the_descent_reference_has_the_right_risk_and_gradient():
    """`canonical_risk` (the agreement test's descents) against the ordinary forward pass and finite
    differences, away from kinks."""
    rng = np.random.default_rng(4)
    x, y = np.sort(rng.uniform(0, 1, 6)), rng.normal(size=6)
    for hidden in ((2, 2), (3, 2)):
        m1, m2 = hidden
        s1, s2 = rng.choice([-1.0, 1.0], size=m1), rng.choice([-1.0, 1.0], size=m2)
        theta = np.concatenate([rng.uniform(0, 1, m1), rng.uniform(-1, 1, m2 * m1 + m2), [0.3]])
        t, A, b = theta[:m1], theta[m1:m1 + m2 * m1].reshape(m2, m1), theta[m1 + m2 * m1:-1]
        params = DeepParams((s1.reshape(m1, 1), A, s2.reshape(1, m2)), (-s1 * t, b, np.array([theta[-1]])))
        value, grad = canonical_risk(theta, x, y, hidden, s1, s2)
        assert value == pytest.approx(mse(params, x, y), rel=1e-12)
        h = 1e-6
        numeric = [(canonical_risk(theta + h * e, x, y, hidden, s1, s2)[0]
                    - canonical_risk(theta - h * e, x, y, hidden, s1, s2)[0]) / (2 * h) for e in np.eye(theta.size)]
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def check_against_references(spec, result, *, starts, seed=0):
    """The certified minimum against ``starts`` box-respecting descents (`box_descents`) and the
    brute-force one-hidden-layer solve on the features at the result's knots."""
    x, y = spec.X[:, 0], spec.y
    assert result.status == "optimal" and result.verification.ok and spec.loss.reduction == "mean"
    risk = mse(result.params, x, y)
    assert risk == pytest.approx(result.risk, rel=1e-9, abs=1e-12)
    assert in_box(result.params, x, spec.box.weight)
    tol = max(spec.solve.rel_gap * risk, 1e-9 * float(np.var(y)))
    best_in_box = box_descents(x, y, tuple(spec.network.hidden), spec.box.weight, starts=starts, seed=seed)
    assert risk <= best_in_box + tol
    # the exact layer 2 at the result's knots, by the brute force of tests/bruteforce.py
    t, s = result.knots, result.orientations
    # rounded: a sample on a knot must give an exact 0, not round-off the brute force sees as a point
    F = np.round(sigma(s[None, :] * (x[:, None] - t[None, :])), 12)
    keep = [j for j in range(F.shape[1]) if np.ptp(F[:, j]) > 0]
    # a zero column sends the brute force to its LP test of realisable patterns: features often hold
    # three collinear points, where its 2-D generic-direction enumeration meets a projection tie
    features = np.column_stack([F[:, keep], np.zeros((F.shape[0], max(0, 3 - len(keep))))])
    brute = brute_force_global(features, y, spec.network.activation, spec.loss, spec.box.weight,
                               spec.box.output, spec.network.output_bias, width=spec.network.hidden[1])
    # the certified minimum is the best layer 2 for its own knots (dropped columns are dead units)
    assert abs(brute.risk - risk) <= tol + 1e-9 * max(1.0, risk)
    return best_in_box


def test_small_box_instance_agrees_with_scip():
    """x, y seeded, box 1 (active): SCIP's MINLP certifies 0.11176968...; so must the search."""
    pytest.importorskip("pyscipopt")
    from milpland.search.deep_minlp import solve_minlp

    rng = np.random.default_rng(0)
    x, y = np.sort(rng.uniform(0, 1, 4)).round(3), rng.normal(size=4).round(3)
    spec = make_spec(x, y, box=1.0, time_limit=120)
    result = solve_global(spec)
    scip = solve_minlp(spec, time_limit=120)
    assert scip.status == "optimal"
    assert result.status == "optimal" and result.box_active and not result.certified
    assert scip.box_active and not scip.certified  # SCIP's optimum over the box is not a global minimum either
    tol = 1e-6 * scip.risk
    assert scip.lower_bound - tol <= result.risk <= scip.risk + tol
    assert abs(result.risk - mse(scip.net.to_params(TwoLayerData.of(spec)), x, y)) <= 2 * tol
    check_against_references(spec, result, starts=20)


def test_scip_rows_are_certified_by_the_searchs_rule():
    """`certified_like_search`: finished, closed within max(rel_gap * risk, abs_tol), no box bound
    active; or a zero risk (to abs_tol = 1e-9 x the best constant's risk, here 1/4 for y = 0, 1, 0, 1)."""
    from milpland.search.deep_minlp import certified_like_search

    spec = make_spec([0, 1, 2, 3], [0, 1, 0, 1])
    data = TwoLayerData.of(spec)
    rule = lambda risk, lower, complete=True, box_active=False: certified_like_search(  # noqa: E731
        spec, data, risk, lower, complete=complete, box_active=box_active)
    assert rule(0.1, 0.1 - 0.5e-7)  # within rel_gap = 1e-6
    assert not rule(0.1, 0.1 - 2e-7)
    assert not rule(0.1, 0.1, complete=False) and not rule(0.1, 0.1, box_active=True)
    assert rule(2e-10, 0.0, complete=False, box_active=True)  # zero risk: below abs_tol = 2.5e-10
    assert not rule(1e-9, 0.0)  # SCIP's "optimal" on the tent: risk 1e-9 against bound 0
    assert not rule(math.inf, 0.0)


def test_refusals_say_why():
    spec3 = make_spec([0, 1, 2, 3], [0, 1, 0, 1], hidden=(2, 2, 2))
    with pytest.raises(MilplandError, match="no lower bound"):
        solve_global(spec3)
    spec_ht = spec_from_dict({"name": "h", "data": {"x": [0, 1, 2], "y": [0, 1, 0]},
                              "network": {"hidden": [2, 2], "activation": "hardtanh"}})
    with pytest.raises(MilplandError, match="positively homogeneous"):
        solve_global(spec_ht)
    spec_d2 = spec_from_dict({"name": "d2", "data": {"x": [[0, 0], [1, 0], [0, 1], [1, 1]], "y": [0, 1, 1, 0]},
                              "network": {"hidden": [2, 2], "activation": "relu"}})
    with pytest.raises(MilplandError, match="one-dimensional inputs, the data have d = 2"):
        solve_global(spec_d2)


def test_three_layers_certify_reports_only_a_lower_bound_on_the_gap():
    x, y = [0, 1, 2, 3, 4], [0, 1, 0, 1, 0]
    spec = make_spec(x, y, hidden=(2, 2, 2), time_limit=10)
    he = he_deep(spec.X, spec.y, spec.network.activation, [2, 2, 2]).params
    cert = certify_point(spec, he, gd_starts=3, time_limit=5)
    assert cert.gap is None and cert.global_risk is None
    assert cert.gap_lower_bound > 0 and cert.best_method
    assert mse(cert.best_params, x, y) == pytest.approx(cert.best_risk, rel=1e-9, abs=1e-14)
    assert any("no global minimum" in n for n in cert.notes)


def test_uncertified_two_layer_solve_brackets_the_gap():
    x = np.arange(8.0)
    y = [0, 1, 0, 1, 0, 1, 0, 1]
    spec = make_spec(x, y, time_limit=3)
    he = he_deep(spec.X, spec.y, spec.network.activation, [2, 2]).params
    cert = certify_point(spec, he, gd_starts=0, time_limit=3)
    assert cert.global_status == "time_limit" and not cert.global_certified
    assert cert.gap is None and cert.gap_lower_bound <= cert.gap_upper_bound
    assert cert.gap_lower_bound == pytest.approx(cert.risk - cert.best_risk, rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["absolute", "hinge"])
def test_absolute_and_hinge_losses_agree_with_scip(loss):
    """The LP node problems (DESIGN §6a): the same minimum over the box as SCIP's MINLP."""
    pytest.importorskip("pyscipopt")
    from milpland.search.deep_minlp import solve_minlp

    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 1, 5)).round(3)
    y = rng.normal(size=5).round(3) if loss == "absolute" else np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    spec = make_spec(x, y, box=1.0, time_limit=300, loss=loss)
    result = solve_global(spec)
    scip = solve_minlp(spec, time_limit=300)
    assert result.status == "optimal" and result.verification.ok and scip.status == "optimal"
    r = forward(result.params, x)
    assert result.risk == pytest.approx(loss_of(r, y, loss) / len(y), rel=1e-9)
    tol = 1e-6 * scip.risk
    assert scip.lower_bound - tol <= result.risk <= scip.risk + tol


# the default run: 1-2-2-1 on five inputs and on four (with SCIP), 57 s and 31 s in the slow run at
# load average 8-9 (1-3-2-1 cases take 6-11 minutes there, most of it the 500 descents and SCIP)
AGREEMENT_DEFAULT_CASES = (4, 10)
AGREEMENT_CASES = 22  # every case runs to the end (OUT_OF_REACH below is empty)

# Not certified within 600 s.  Case 7 (1-3-2-1 on five inputs) left this list on 2026-12-05 (133 s,
# 136,043 nodes); case 11 (1-3-2-1 on six inputs, 24,700 roots) the same day, with the compiled node
# QP of DESIGN §6a: the whole test passed in 78 s (it had a bound of 0.986 against 1.1766 at 600 s).
OUT_OF_REACH: dict[int, str] = {}


def _agreement_case(c: int):
    if c in AGREEMENT_DEFAULT_CASES:
        return c
    marks = [pytest.mark.slow]
    if c in OUT_OF_REACH:
        marks.append(pytest.mark.xfail(reason=OUT_OF_REACH[c], strict=False))
    return pytest.param(c, marks=marks)


def agreement_spec(case: int):
    """Case ``case`` of the agreement test: n = 4, 5, 6 inputs in [0, 1] (rounded to 1e-3), labels
    N(0, 1), 1-2-2-1 (even cases) or 1-3-2-1 (odd), box 1.  With n <= 6 distinct inputs both nets fit
    the labels exactly given room (random-n6 of the deep suite, the zigzag on six points), so a
    non-zero minimum needs the box: here it holds the canonical weights to |A|, |b| <= 1 on features
    of size <= 1, and the minimum is the minimum over the box, usually with a box bound active."""
    rng = np.random.default_rng(1000 + case)
    n = 4 + case % 3
    hidden = (2, 2) if case % 2 == 0 else (3, 2)
    x = np.sort(rng.uniform(0, 1, n)).round(3)
    y = rng.normal(size=n).round(3)
    return make_spec(x, y, hidden=hidden, box=1.0, time_limit=600)


@pytest.mark.parametrize("case", [_agreement_case(c) for c in range(AGREEMENT_CASES)])
def test_random_tiny_instances_agree_with_multistart_and_references(case):
    """Issue 17's agreement test: n <= 6, 1-D, 1-2-2-1 and 1-3-2-1, box 1 (`agreement_spec`).  The
    search proves its minimum over the box (status optimal, bounds closed, re-checked) and the minimum
    is non-zero; it is never above the best of 500 descents that stay in the box (`box_descents`,
    written here), it equals the brute-force layer 2 (tests/bruteforce.py) at its own knots, and on
    four inputs SCIP's MINLP (a different formulation and solver), where it finishes within 300 s,
    brackets it.  `certified` holds exactly when no box bound is active at the minimiser (most
    cases: the minimum over all weights is 0, and the minimum over the box sits on it)."""
    spec = agreement_spec(case)
    result = solve_global(spec)
    assert result.status == "optimal" and result.lower_bound >= result.risk * (1 - 2e-6)
    assert result.risk >= 1e-3 * float(np.var(spec.y)), "a zero minimum would test less than it seems"
    assert result.certified == (not result.box_active)  # most minima sit on the box (then not certified)
    check_against_references(spec, result, starts=500, seed=case)
    if spec.n == 4:
        pytest.importorskip("pyscipopt")
        from milpland.search.deep_minlp import solve_minlp

        scip = solve_minlp(spec, time_limit=300)
        tol = 1e-6 * max(result.risk, 1e-9)
        assert result.risk >= scip.lower_bound - tol
        if scip.status == "optimal":
            assert result.risk <= scip.risk + tol


def test_a_stop_request_ends_the_two_layer_search_with_a_valid_bound():
    """Ctrl-C inside interrupt.polling() only sets a flag (certify runs so): the search and the
    descents poll it; the result is `interrupted` with the open nodes' bound, below the minimum 1/10
    of the zigzag (x = 0..7, DESIGN §6a; certified in the bench, results/bench-deep.md)."""
    import milpland.interrupt as interrupt

    spec = make_spec(np.arange(8.0), [0, 1, 0, 1, 0, 1, 0, 1], time_limit=60)
    interrupt.request()
    try:
        result = solve_global(spec)
    finally:
        interrupt.clear()
    assert result.status == "interrupted" and not result.certified and result.verification.ok
    assert result.lower_bound <= 0.1 <= result.risk + 1e-12
    assert result.risk == pytest.approx(mse(result.params, np.arange(8.0), [0, 1, 0, 1, 0, 1, 0, 1]), rel=1e-9)


def test_a_two_layer_search_that_outgrows_the_memory_limit_stops_with_its_best_point_and_bound(monkeypatch):
    """Past [solve] memory_limit the search stops as at a time limit (status memory_limit, a note
    naming the limit), with a valid bound below the zigzag's minimum 1/10 (DESIGN §6a)."""
    from milpland.search import memory

    x, y = np.arange(8.0), [0, 1, 0, 1, 0, 1, 0, 1]
    spec = make_spec(x, y, time_limit=60).with_options(memory_limit=1.0)
    monkeypatch.setattr(ds, "MEMORY_CHECK_EVERY", 5)
    monkeypatch.setattr(memory, "resident_bytes", lambda: 2e9)  # 2 GB held, limit 1 GB
    result = solve_global(spec)
    assert result.status == "memory_limit" and not result.certified and result.nodes == 4
    assert "memory limit" in result.message and "1 GB" in result.message and "2 GB" in result.message
    assert result.verification.ok and result.risk == pytest.approx(mse(result.params, x, y), rel=1e-9)
    assert result.lower_bound <= 0.1 <= result.risk + 1e-12


def test_a_one_hidden_layer_method_on_a_two_layer_spec_is_refused_in_one_line(tmp_path, capsys):
    from milpland.cli import main as cli_main

    path = tmp_path / "deep.toml"
    path.write_text('name = "deep"\n[data]\nx = [0.0, 1.0, 2.0, 3.0]\ny = [0.0, 1.0, 0.0, 1.0]\n'
                    '[network]\nhidden = [2, 2]\n')
    assert cli_main(["solve", str(path), "--method", "milp"]) == 2
    err = capsys.readouterr().err
    assert "applies to one hidden layer" in err and "hidden = [2, 2]" in err and "Traceback" not in err
