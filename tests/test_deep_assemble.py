"""The compiled assembly of a two-layer node's QP (`deep_assemble.frame` and `assemble`) against the
numpy assembly they replaced, written out here as the reference: the same rows in the same order, the same
bounds, on every node that real searches evaluate (ReLU, leaky ReLU and two-slope units; squared,
absolute and hinge losses; with and without the secant rows) and on nodes with random patterns.
What the rows mean is tested against random networks of a node in tests/test_deep_solve.py."""

from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np
import pytest

from milpland.instance.spec import spec_from_dict
from milpland.search import deep_relaxation as rx
from milpland.search import deep_solve as ds
from milpland.search.deep_model import TwoLayerData


def reference_qp(data, node, *, conic=True, secant=True):
    """The numpy assembly (deep_relaxation.node_qp until 2026-12-05)."""
    G = data.n_positions
    m1, m2 = data.widths
    a0, a1 = data.slopes
    frame = rx.node_frame(data, node, conic=conic)
    p0 = rx.Columns.of(m1, m2).p0
    P = node.P
    fi, fk = np.nonzero(P == rx.UNDECIDED)
    F = fi.shape[0]
    N = p0 + F
    hcol = np.full((G, m2), -1)
    hcol[fi, fk] = p0 + np.arange(F)
    Z = np.zeros((G, m2, N))
    Z[:, :, :p0] = frame.Zb
    H = np.zeros_like(Z)
    top = P == 1
    H[top] = Z[top]
    H[fi, fk, hcol[fi, fk]] = 1.0
    fitted = np.einsum("k,pkN->pN", node.signs, a0 * Z + (a1 - a0) * H)
    fitted[:, 0] = 1.0
    decided = P != rx.UNDECIDED
    side = np.where(P == 1, 1.0, -1.0)
    mcc = np.zeros((frame.mcc.shape[0], N))
    mcc[:, :p0] = frame.mcc
    rows = [(side[..., None] * Z)[decided], (H - Z)[fi, fk], convexity_rows(data, node, Z, H, frame), mcc]
    rhs = [np.zeros(sum(r.shape[0] for r in rows))]
    if secant and F:
        lo, hi = frame.zlo[fi, fk], frame.zhi[fi, fk]
        lam = hi / (hi - lo)
        srows = lam[:, None] * Z[fi, fk]
        srows[np.arange(F), hcol[fi, fk]] -= 1.0
        rows.append(srows)
        rhs.append(lam * lo)
    lower = np.concatenate([frame.lower, np.zeros(F)])
    upper = np.concatenate([frame.upper, frame.zmax[fi] if not secant else
                            np.minimum(frame.zmax[fi], frame.zhi[fi, fk])])
    return dict(Phi=fitted[data.where], A=np.concatenate(rows), rhs=np.concatenate(rhs), lower=lower,
                upper=upper, Z=Z, fi=fi, fk=fk)


def convexity_rows(data, node, Z, H, frame):
    G = data.n_positions
    if G < 3:
        return np.zeros((0, Z.shape[2]))
    x = data.positions
    a = np.arange(G - 2)
    lam = (x[a + 2] - x[a + 1]) / (x[a + 2] - x[a])
    undecided = node.P == rx.UNDECIDED
    touched = undecided[a] | undecided[a + 1] | undecided[a + 2]
    cvx = touched & (frame.convex[:, a] & frame.convex[:, a + 1]).T
    ccv = touched & ~cvx & (frame.concave[:, a] & frame.concave[:, a + 1]).T
    rows = []
    for kind, V in ((cvx, H), (ccv, H - Z)):
        ta, tk = np.nonzero(kind)
        if ta.size:
            rows.append(lam[ta, None] * V[ta, tk] + (1 - lam[ta, None]) * V[ta + 2, tk] - V[ta + 1, tk])
    return np.vstack(rows) if rows else np.zeros((0, Z.shape[2]))


def reference_frame(data, node, conic):
    """The numpy frame (deep_relaxation.node_frame until 2026-12-05): (Zb, mcc, zlo, zhi, zmax, lower, upper)."""
    m1, m2 = data.widths
    cols = rx.Columns.of(m1, m2)
    G, p0 = data.n_positions, cols.p0
    phiL = data.features(node.orientations, node.L)
    dphi = data.feature_slopes(node.orientations, node.gaps)
    D = node.U - node.L
    Zb = np.zeros((G, m2, p0))
    Zb[:, np.arange(m2), cols.b] = 1.0
    kk = np.arange(m2)[:, None]
    Zb[:, kk, cols.M] = node.sig[None] * phiL[:, None, :]
    Zb[:, kk, cols.W] = node.sig[None] * dphi[:, None, :]
    mcc = reference_mccormick_rows(node, cols, D, p0) if conic else reference_per_unit_rows(cols, D, p0)
    zlo, zhi = reference_z_range(data, node)
    lower, upper, zmax = reference_fixed_bounds(data, node, cols, D)
    return dict(Zb=Zb, mcc=mcc, zlo=zlo, zhi=zhi, zmax=zmax, lower=lower, upper=upper)


def reference_z_range(data, node):
    B = data.box
    phiL = data.features(node.orientations, node.L)
    phiU = data.features(node.orientations, node.U)
    up = np.maximum(np.maximum(phiL, phiU), 0.0)  # (G, m1): max(0, hi)
    down = np.maximum(-np.minimum(phiL, phiU), 0.0)  # max(0, -lo)
    positive, negative = B * (node.sig > 0).T, B * (node.sig < 0).T  # (m1, m2)
    return -B - down @ positive - up @ negative, B + up @ positive + down @ negative


def reference_mccormick_rows(node, cols, D, N):
    m2, m1 = cols.m2, cols.m1
    M, W = cols.M.T, cols.W.T  # (m1, m2): the columns of unit j
    j1 = np.arange(m1)[:, None]
    knot = np.zeros((m1, N))
    knot[j1, W] = -1.0
    knot[j1, M] = D[:, None]
    if m2 == 1:
        return knot  # a single unit: mu = 1 and W = E exactly
    lo, hi, d = node.mlo.T, node.mhi.T, D[:, None]  # (m1, m2), (m1, 1)
    block = np.zeros((m1, 6, m2, N))
    jj, kk = np.arange(m1)[:, None, None], np.arange(m2)[None, :, None]
    every_M, every_W = M[:, None, :], W[:, None, :]  # (m1, 1, m2): the sums a and E
    jk = (np.arange(m1)[:, None], np.arange(m2)[None, :])
    # 0: M_kj - lo a >= 0 ; 1: hi a - M_kj >= 0
    block[jj, 0, kk, every_M] = -lo[..., None]
    block[jk[0], 0, jk[1], M] += 1.0
    block[jj, 1, kk, every_M] = hi[..., None]
    block[jk[0], 1, jk[1], M] -= 1.0
    # 2: W - lo E >= 0
    block[jj, 2, kk, every_W] = -lo[..., None]
    block[jk[0], 2, jk[1], W] += 1.0
    # 3: W - hi E - d M + hi d a >= 0
    block[jj, 3, kk, every_W] = -hi[..., None]
    block[jk[0], 3, jk[1], W] += 1.0
    block[jj, 3, kk, every_M] = (hi * d)[..., None]
    block[jk[0], 3, jk[1], M] -= d
    # 4: -W + hi E >= 0
    block[jj, 4, kk, every_W] = hi[..., None]
    block[jk[0], 4, jk[1], W] -= 1.0
    # 5: -W + lo E + d M - lo d a >= 0
    block[jj, 5, kk, every_W] = lo[..., None]
    block[jk[0], 5, jk[1], W] -= 1.0
    block[jj, 5, kk, every_M] = (-lo * d)[..., None]
    block[jk[0], 5, jk[1], M] += d
    keep = np.ones((m1, 6, m2), dtype=bool)
    keep[:, 0], keep[:, 1], keep[:, 2] = lo > 0, hi < 1, lo > 0
    return np.vstack([knot, block[keep]])


def reference_per_unit_rows(cols, D, N):
    out = np.zeros((cols.m1 * cols.m2, N))
    for r, (k, j) in enumerate(np.ndindex(cols.m2, cols.m1)):
        out[r, cols.W[k, j]] = -1.0
        out[r, cols.M[k, j]] = D[j]
    return out


def reference_fixed_bounds(data, node, cols, D):
    B = data.box
    m2 = data.widths[1]
    a0, a1 = data.slopes
    lower, upper = np.zeros(cols.p0), np.zeros(cols.p0)
    span = np.maximum(np.abs(data.features(node.orientations, node.L)),
                      np.abs(data.features(node.orientations, node.U)))
    zmax = B * (1.0 + span.sum(axis=1))  # |z_pk| <= |b~| + sum_j |A_kj| max_t |phi_pj(t)|
    reach = m2 * (abs(a0) + abs(a1 - a0)) * float(zmax.max())
    c_bound = float(np.max(np.abs(data.y)) + reach + 1.0) if data.output_bias else 0.0
    lower[0], upper[0] = -c_bound, c_bound
    lower[cols.b], upper[cols.b] = -B, B
    upper[cols.M] = B
    upper[cols.W] = B * D[None, :]
    return lower, upper, zmax


def assert_same(data, node, *, conic=True, secant=True):
    want_frame = reference_frame(data, node, conic)
    got_frame = rx.node_frame(data, dataclasses.replace(node, frame=None), conic=conic)
    for name, want in want_frame.items():
        np.testing.assert_allclose(getattr(got_frame, name), want, rtol=1e-14, atol=1e-14, err_msg=name)
    got = rx.node_qp(data, node, conic=conic, secant=secant)
    want = reference_qp(data, node, conic=conic, secant=secant)
    for name in ("Phi", "A", "rhs", "lower", "upper", "Z"):
        np.testing.assert_allclose(getattr(got, name), want[name], rtol=1e-14, atol=1e-14, err_msg=name)
    np.testing.assert_array_equal(got.free[0], want["fi"])
    np.testing.assert_array_equal(got.free[1], want["fk"])


def spec_for(act, loss, n, seed, hidden=(2, 2)):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-1, 1, size=n))
    y = rng.choice([-1.0, 1.0], size=n) if loss == "hinge" else rng.normal(size=n)
    return spec_from_dict({"name": "assemble", "data": {"x": x[:, None].tolist(), "y": y.tolist()},
                           "network": {"hidden": list(hidden), "activation": act,
                                       **({"s_plus": 1.0, "s_minus": -0.5} if act == "two_slope" else {})}, "loss": {"kind": loss},
                           "box": {"weight": 2.0}, "solve": {"time_limit": 5.0}})


@pytest.mark.parametrize("act, loss, hidden, secant", [
    ("relu", "squared", (2, 2), True), ("leaky_relu", "squared", (2, 2), True), ("relu", "absolute", (2, 2), True),
    ("two_slope", "hinge", (2, 2), True), ("relu", "squared", (3, 2), False), ("relu", "squared", (2, 1), True)])
def test_the_compiled_assembly_writes_the_numpy_rows_on_the_nodes_of_a_search(monkeypatch, act, loss, hidden, secant):
    spec = spec_for(act, loss, 5 if hidden[0] < 3 else 4, seed=len(act) + len(loss), hidden=hidden)
    data = TwoLayerData.of(spec)
    seen = []
    real = rx.node_qp

    def recording(data, node, **kw):
        seen.append(dataclasses.replace(node))
        return real(data, node, **kw)

    rx.node_qp(data, ds.root_nodes(data, itertools.count())[0])  # compiled before the clock runs
    monkeypatch.setattr(rx, "node_qp", recording)
    ds.search(spec, data, ds.DeepIncumbent(risk=data.baseline(), net=ds.constant_net(data), found_by="constant"),
              deadline=time.perf_counter() + 5.0, abs_tol=1e-9, say=lambda _m: None,
              stats=ds.SearchStats(), options=ds.DeepOptions(polish=False, secant=secant))
    monkeypatch.undo()
    assert len(seen) >= 20
    patterns = {node.P.tobytes() for node in seen}
    assert len(patterns) > 3, "the search evaluated nodes with different patterns"
    for node in seen[:400]:
        assert_same(data, node, secant=secant)


def test_random_patterns_knot_and_share_intervals_and_the_first_order_relaxation():
    """Nodes no search of the suite reaches often: random partial patterns, knot sub-intervals and
    share intervals narrower than [0, 1] (the McCormick rows 0-2 exist only then)."""
    rng = np.random.default_rng(4)
    data = TwoLayerData.of(spec_for("leaky_relu", "squared", 7, seed=2))
    roots = ds.root_nodes(data, itertools.count())
    narrowed = 0
    for node in rng.choice(roots, size=30, replace=False):
        cut = np.sort(rng.uniform(node.L, node.U, size=(2, node.L.size)), axis=0)
        lo = rng.uniform(0.0, 0.6, size=node.mlo.shape) * (rng.random(node.mlo.shape) < 0.7)
        hi = np.where(rng.random(node.mhi.shape) < 0.7, lo + rng.uniform(0.05, 1.0 - lo), 1.0)
        node = dataclasses.replace(node, P=rng.integers(-1, 2, size=node.P.shape).astype(np.int8), L=cut[0],
                                   U=cut[1], mlo=lo, mhi=np.minimum(hi, 1.0), frame=None, runs=None)
        narrowed += int(np.any(node.mlo > 0) and np.any(node.mhi < 1))
        for conic in (True, False):
            assert_same(data, dataclasses.replace(node, frame=None), conic=conic)
    assert narrowed >= 20
