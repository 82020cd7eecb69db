"""DeepParams (forward, patterns, cells, margins) and params_io, against plain numpy written here."""

import hashlib
import json

import numpy as np
import pytest

from milpland.errors import MilplandError, SpecError
from milpland.instance import activations as acts
from milpland.instance.deep import DeepParams, as_deep, group_by_pattern
from milpland.instance.network import OneHiddenParams
from milpland.instance.params_io import (
    load_params,
    load_params_for_spec,
    params_from_json,
    write_params_json,
)
from milpland.instance.spec import spec_from_dict


def hinge_sigma(z, breakpoints, slopes, value_at_first):
    """σ(z) = α_0 (z − t_1) + value + Σ_k (α_k − α_{k−1}) (z − t_k)_+ : independent of Activation."""
    z = np.asarray(z, dtype=float)
    out = slopes[0] * (z - breakpoints[0]) + value_at_first
    for k, t in enumerate(breakpoints):
        out = out + (slopes[k + 1] - slopes[k]) * np.maximum(z - t, 0.0)
    return out


ACTS = {
    "relu": (acts.relu(), lambda z: np.maximum(z, 0.0), [0.0]),
    "leaky": (acts.leaky_relu(0.1), lambda z: np.where(z >= 0, z, 0.1 * z), [0.0]),
    "hardtanh": (acts.hardtanh(), lambda z: np.clip(z, -1.0, 1.0), [-1.0, 1.0]),
    "pwl": (
        acts.from_pieces("pwl", [-1.0, 0.0, 2.0], [0.5, -1.0, 2.0, 0.3], 0.7),
        lambda z: hinge_sigma(z, [-1.0, 0.0, 2.0], [0.5, -1.0, 2.0, 0.3], 0.7),
        [-1.0, 0.0, 2.0],
    ),
}


def plain_forward(Ws, bs, X, sigma):
    a = X
    for W, b in zip(Ws[:-1], bs[:-1]):
        a = sigma(a @ W.T + b)
    return a @ Ws[-1].T + bs[-1]


def random_params(rng, d, hidden, k=1):
    sizes = [d, *hidden, k]
    Ws = [rng.normal(size=(sizes[l + 1], sizes[l])) for l in range(len(sizes) - 1)]
    bs = [rng.normal(size=sizes[l + 1]) for l in range(len(sizes) - 1)]
    return Ws, bs


@pytest.mark.parametrize("name", sorted(ACTS))
@pytest.mark.parametrize("hidden,k", [((3,), 1), ((4, 3), 1), ((2, 5, 3), 2)])
def test_forward_pattern_margin_match_plain_numpy(name, hidden, k):
    act, sigma, t = ACTS[name]
    rng = np.random.default_rng(len(hidden) * 10 + k)
    X = rng.normal(size=(17, 3))
    Ws, bs = random_params(rng, 3, hidden, k)
    p = DeepParams(tuple(Ws), tuple(bs))
    want = plain_forward(Ws, bs, X, sigma)
    got = p.forward(X, act)
    assert got.shape == ((17,) if k == 1 else (17, k))
    np.testing.assert_allclose(got.reshape(17, k), want, rtol=1e-12, atol=1e-12)
    # pattern and margin: piece = number of breakpoints strictly below z (ties to the lower piece)
    a, margins = X, []
    for l, (W, b) in enumerate(zip(Ws[:-1], bs[:-1])):
        z = a @ W.T + b
        expected = np.sum(z[..., None] > np.asarray(t), axis=-1)
        np.testing.assert_array_equal(p.pattern(X, act)[l], expected)
        margins.append(np.min(np.abs(z[..., None] - np.asarray(t))))
        a = sigma(z)
    assert p.margin(X, act) == pytest.approx(min(margins), rel=1e-12)
    assert p.hidden == tuple(hidden) and p.output_dim == k and p.depth == len(hidden)


def test_tie_goes_to_lower_piece_and_margin_zero():
    act = acts.relu()
    X = np.array([[1.0], [2.0], [-1.0]])
    p = DeepParams((np.array([[1.0]]), np.array([[1.0]])), (np.array([-1.0]), np.array([0.0])))
    assert p.pattern(X, act)[0][:, 0].tolist() == [0, 1, 0]
    assert p.margin(X, act) == 0.0
    assert p.ties(X, act) == 1


def test_cell_id_is_hash_of_documented_layout_and_changes_with_pattern():
    act = acts.relu()
    rng = np.random.default_rng(0)
    Ws, bs = random_params(rng, 2, (3, 2))
    p = DeepParams(tuple(Ws), tuple(bs))
    X = rng.normal(size=(6, 2))
    pats = []
    a = X
    for W, b in zip(Ws[:-1], bs[:-1]):
        z = a @ W.T + b
        pats.append((z > 0).astype("<i2"))
        a = np.maximum(z, 0)
    h = hashlib.sha256(repr(tuple(q.shape for q in pats)).encode())
    for q in pats:
        h.update(q.tobytes())
    assert p.cell_id(X, act) == h.hexdigest()[:12]
    # float32 copies of the same weights, same pattern => same id
    p32 = DeepParams(tuple(w.astype(np.float32) for w in Ws), tuple(v.astype(np.float32) for v in bs))
    if all(np.array_equal(x, y) for x, y in zip(p32.pattern(X, act), p.pattern(X, act))):
        assert p32.cell_id(X, act) == p.cell_id(X, act)
    # a unit forced dead (bias -1e6) or forced active (+1e6) on all samples: one of them changes the cell
    ids = set()
    for big in (-1e6, 1e6):
        b0 = bs[0].copy()
        b0[0] = big
        q = p.replace_layer(0, b=b0)
        assert np.all(q.pattern(X, act)[0][:, 0] == (big > 0))
        ids.add(q.cell_id(X, act))
    assert len(ids) == 2


def test_group_by_pattern():
    full = np.array([[0, 1], [1, 1], [0, 1], [1, 0], [1, 1]])
    assert group_by_pattern(full) == ((0, 2), (1, 4), (3,))


def test_one_hidden_round_trip_matches_onehiddenparams():
    rng = np.random.default_rng(1)
    oh = OneHiddenParams(rng.normal(size=(4, 2)), rng.normal(size=4), rng.normal(size=4), 0.3)
    X = rng.normal(size=(9, 2))
    act = acts.leaky_relu(0.2)
    deep = DeepParams.from_one_hidden(oh)
    np.testing.assert_allclose(deep.forward(X, act), oh.forward(X, act), rtol=1e-13)
    back = deep.to_one_hidden()
    np.testing.assert_array_equal(back.W1, oh.W1)
    assert back.c == oh.c
    assert as_deep(oh).n_params == 4 * 2 + 4 + 4 + 1
    with pytest.raises(MilplandError, match="one hidden layer"):
        DeepParams(tuple(random_params(rng, 2, (3, 3))[0]), tuple(random_params(rng, 2, (3, 3))[1])).to_one_hidden()


def test_flat_round_trip():
    rng = np.random.default_rng(2)
    Ws, bs = random_params(rng, 3, (4, 2), 2)
    p = DeepParams(tuple(Ws), tuple(bs))
    theta = p.flat()
    assert theta.size == p.n_params == 3 * 4 + 4 + 4 * 2 + 2 + 2 * 2 + 2
    q = p.from_flat(theta + 1.0)
    np.testing.assert_array_equal(q.W[1], Ws[1] + 1.0)
    with pytest.raises(MilplandError, match="flat vector"):
        p.from_flat(theta[:-1])


def test_inconsistent_shapes_raise():
    with pytest.raises(MilplandError, match=r"params.W\[1\]: expected 3 columns"):
        DeepParams((np.zeros((3, 2)), np.zeros((1, 4))), (np.zeros(3), np.zeros(1)))
    with pytest.raises(MilplandError, match=r"params.b\[0\]"):
        DeepParams((np.zeros((3, 2)), np.zeros((1, 3))), (np.zeros(2), np.zeros(1)))
    p = DeepParams((np.zeros((3, 2)), np.zeros((1, 3))), (np.zeros(3), np.zeros(1)))
    with pytest.raises(MilplandError, match="takes 2 inputs"):
        p.forward(np.zeros((4, 3)), acts.relu())


# ---------------------------------------------------------------- params_io


def test_json_round_trip_deep(tmp_path):
    rng = np.random.default_rng(3)
    Ws, bs = random_params(rng, 2, (3, 4))
    p = DeepParams(tuple(Ws), tuple(bs))
    path = write_params_json(p, tmp_path / "p.json", activation=acts.relu())
    q = load_params(path, d=2, hidden=[3, 4], outputs=1)
    X = rng.normal(size=(5, 2))
    np.testing.assert_array_equal(q.forward(X, acts.relu()), plain_forward(Ws, bs, X, lambda z: np.maximum(z, 0))[:, 0])


def test_json_one_hidden_shape_and_result_wrapper(tmp_path):
    rng = np.random.default_rng(4)
    oh = OneHiddenParams(rng.normal(size=(3, 2)), rng.normal(size=3), rng.normal(size=3), -0.5)
    X = rng.normal(size=(6, 2))
    act = acts.relu()
    for obj in (oh.to_json(), {"status": "optimal", "risk": 0.1, "params": oh.to_json()}):
        path = tmp_path / "r.json"
        path.write_text(json.dumps(obj))
        q = load_params(path, d=2, hidden=(3,), outputs=1)
        np.testing.assert_allclose(q.forward(X, act), oh.forward(X, act), rtol=1e-14)


def test_npz_both_layouts(tmp_path):
    rng = np.random.default_rng(5)
    Ws, bs = random_params(rng, 2, (3, 2))
    np.savez(tmp_path / "deep.npz", W0=Ws[0], b0=bs[0], W1=Ws[1], b1=bs[1], W2=Ws[2], b2=bs[2])
    X = rng.normal(size=(4, 2))
    q = load_params(tmp_path / "deep.npz")
    np.testing.assert_allclose(q.forward(X, acts.relu()), plain_forward(Ws, bs, X, lambda z: np.maximum(z, 0))[:, 0])
    np.savez(tmp_path / "one.npz", W1=Ws[0], b1=bs[0], v=rng.normal(size=3), c=np.array(0.2))
    assert load_params(tmp_path / "one.npz", d=2).hidden == (3,)
    np.savez(tmp_path / "bad.npz", W0=Ws[0], b0=bs[0], W2=Ws[2], b2=bs[2])
    with pytest.raises(SpecError, match="W0, b0, W1, b1"):
        load_params(tmp_path / "bad.npz")


def test_shape_errors_name_field_and_shapes(tmp_path):
    obj = {"W": [[[1, 2, 3, 4], [0, 0, 0, 0]], [[1, 1]]], "b": [[0, 0], [0]]}
    with pytest.raises(SpecError, match=r"params.W\[0\]: expected shape \(2, 3\) for data dimension d = 3, got \(2, 4\)"):
        params_from_json(obj, d=3)
    with pytest.raises(SpecError, match=r"params.W\[0\]: expected shape \(5, 4\) for hidden width 5, got \(2, 4\)"):
        params_from_json(obj, hidden=[5])
    with pytest.raises(SpecError, match=r"params.W: expected 3 layers"):
        params_from_json(obj, hidden=[2, 2])
    with pytest.raises(SpecError, match=r"params.W\[1\]: expected shape \(2, 2\) for 2 output"):
        params_from_json(obj, outputs=2)
    with pytest.raises(SpecError, match=r"params.b\[0\]: expected shape \(2,\)"):
        params_from_json({"W": obj["W"], "b": [[0, 0, 0], [0]]})
    with pytest.raises(SpecError, match=r"params.v: expected shape \(2,\)"):
        params_from_json({"W1": [[1.0], [2.0]], "b1": [0, 0], "v": [1, 2, 3], "c": 0})
    with pytest.raises(SpecError, match=r"params.W1: expected shape \(2, 3\) for data dimension d = 3"):
        params_from_json({"W1": [[1.0], [2.0]], "b1": [0, 0], "v": [1, 2], "c": 0}, d=3)
    with pytest.raises(SpecError, match="not both"):
        params_from_json({"W": [], "b": [], "W1": []})
    with pytest.raises(SpecError, match=r"params.Wx: unknown key"):
        params_from_json({"W": obj["W"], "b": obj["b"], "Wx": 1})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpecError, match="bad.json: params: not valid JSON"):
        load_params(tmp_path / "bad.json")


def test_load_for_spec(tmp_path):
    spec = spec_from_dict({
        "name": "t", "data": {"x": [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], "y": [0.0, 1.0, 2.0]},
        "network": {"hidden": [2]},
    })
    (tmp_path / "ok.json").write_text(json.dumps({"W1": [[1, 0], [0, 1]], "b1": [0, 0], "v": [1, 1], "c": 0}))
    p = load_params_for_spec(tmp_path / "ok.json", spec)
    np.testing.assert_allclose(p.forward(spec.X, acts.relu()), spec.X.sum(axis=1))
    (tmp_path / "wide.json").write_text(json.dumps({"W1": [[1, 0], [0, 1], [1, 1]], "b1": [0, 0, 0], "v": [1, 1, 1], "c": 0}))
    with pytest.raises(SpecError, match=r"wide.json: params.W\[0\]: expected shape \(2, 2\) for hidden width 2, got \(3, 2\)"):
        load_params_for_spec(tmp_path / "wide.json", spec)
