"""Activations against hand-computed values, continuity at every breakpoint, the homogeneous flag."""

import numpy as np
import pytest

from milpland.errors import SpecError
from milpland.instance import activations as acts

HAND_VALUES = [
    # (activation, z, value worked out by hand from the definition)
    (acts.relu(), -2.0, 0.0),
    (acts.relu(), 0.0, 0.0),
    (acts.relu(), 3.5, 3.5),
    (acts.leaky_relu(0.1), -2.0, -0.2),
    (acts.leaky_relu(0.1), 0.0, 0.0),
    (acts.leaky_relu(0.1), 2.0, 2.0),
    (acts.leaky_relu(0.01), -3.0, -0.03),
    (acts.two_slope(2.0, 0.5), -2.0, -1.0),  # s_minus * z
    (acts.two_slope(2.0, 0.5), 3.0, 6.0),  # s_plus * z
    (acts.two_slope(-1.0, 1.0), -4.0, -4.0),
    (acts.two_slope(-1.0, 1.0), 4.0, -4.0),
    (acts.hardtanh(), -2.0, -1.0),
    (acts.hardtanh(), -1.0, -1.0),
    (acts.hardtanh(), -0.7, -0.7),
    (acts.hardtanh(), 0.3, 0.3),
    (acts.hardtanh(), 1.0, 1.0),
    (acts.hardtanh(), 5.0, 1.0),
    # slopes 0.2, 1, 0.5 at breakpoints -1, 1 with value -1 at z = -1:
    # 0.2 z - 0.8 on the left, z in the middle, 0.5 z + 0.5 on the right
    (acts.from_pieces("pwl", [-1.0, 1.0], [0.2, 1.0, 0.5], -1.0), -3.0, -1.4),
    (acts.from_pieces("pwl", [-1.0, 1.0], [0.2, 1.0, 0.5], -1.0), 0.25, 0.25),
    (acts.from_pieces("pwl", [-1.0, 1.0], [0.2, 1.0, 0.5], -1.0), 3.0, 2.0),
    # |z - 1| - 2: slopes -1, 1 at breakpoint 1, value -2 there
    (acts.from_pieces("pwl", [1.0], [-1.0, 1.0], -2.0), -1.0, 0.0),
    (acts.from_pieces("pwl", [1.0], [-1.0, 1.0], -2.0), 4.0, 1.0),
]


@pytest.mark.parametrize("act, z, expected", HAND_VALUES)
def test_hand_values(act, z, expected):
    assert float(act(np.array(z))) == pytest.approx(expected, abs=1e-12)


def test_vectorised_call_matches_pointwise():
    act = acts.hardtanh()
    z = np.array([[-2.0, 0.3], [1.0, 7.0]])
    assert np.allclose(act(z), [[-1.0, 0.3], [1.0, 1.0]])


def test_hardtanh_pieces_are_the_design_doc_ones():
    act = acts.hardtanh()
    assert act.breakpoints == (-1.0, 1.0)
    assert act.slopes == (0.0, 1.0, 0.0)
    assert act.intercepts == (-1.0, 0.0, 1.0)


@pytest.mark.parametrize("seed", range(20))
def test_random_pwl_is_continuous_at_every_breakpoint(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 6))
    t = np.sort(rng.uniform(-3, 3, size=k))
    slopes = rng.normal(size=k + 1) * 2
    value = float(rng.normal())
    act = acts.from_pieces("pwl", t, slopes, value)
    a, b = np.array(act.slopes), np.array(act.intercepts)
    assert a[0] * t[0] + b[0] == pytest.approx(value, abs=1e-12)
    for i, tk in enumerate(t):
        left, right = a[i] * tk + b[i], a[i + 1] * tk + b[i + 1]
        assert left == pytest.approx(right, abs=1e-12), f"jump at breakpoint {tk}"
        eps = 1e-7
        assert abs(float(act(np.array(tk - eps))) - float(act(np.array(tk + eps)))) < 1e-5
    # between breakpoints the function is the stated affine piece
    mids = np.concatenate([[t[0] - 1.0], (t[:-1] + t[1:]) / 2, [t[-1] + 1.0]])
    assert np.allclose(act(mids), a * mids + b)


def test_homogeneous_flag():
    assert acts.relu().homogeneous
    assert acts.leaky_relu(0.2).homogeneous
    assert acts.two_slope(1.5, -0.5).homogeneous
    assert not acts.hardtanh().homogeneous
    assert acts.from_pieces("pwl", [0.0], [0.5, 2.0], 0.0).homogeneous
    assert not acts.from_pieces("pwl", [0.0], [0.5, 2.0], 1.0).homogeneous  # shifted: sigma(0) = 1
    assert not acts.from_pieces("pwl", [0.5], [0.0, 1.0], 0.0).homogeneous  # kink off zero
    assert not acts.from_pieces("pwl", [-1.0, 1.0], [0.2, 1.0, 0.5], -1.0).homogeneous


def test_homogeneous_means_scale_invariant():
    """rho * sigma(g / rho) = sigma(g) exactly when the flag says so."""
    g = np.linspace(-3, 3, 13)
    for act in (acts.relu(), acts.leaky_relu(0.3), acts.two_slope(2.0, -1.0), acts.hardtanh()):
        invariant = np.allclose(2.5 * act(g / 2.5), act(g))
        assert invariant == act.homogeneous


def test_piece_and_ties():
    act = acts.hardtanh()
    assert act.piece(np.array([-2.0, -1.0, 0.0, 1.0, 2.0])).tolist() == [0, 0, 1, 1, 2]  # ties go to the lower piece
    assert act.derivative(np.array([-2.0, 0.0, 2.0])).tolist() == [0.0, 1.0, 0.0]
    assert act.on_breakpoint(np.array([-1.0, 1.0 + 1e-12, 0.5]), 1e-9).tolist() == [True, True, False]
    assert act.lower(0) == -np.inf and act.upper(2) == np.inf
    assert (act.lower(1), act.upper(1)) == (-1.0, 1.0)
    assert act.n_pieces == 3


@pytest.mark.parametrize(
    "args, field",
    [
        (([1.0, 0.0], [0.0, 1.0, 2.0], 0.0), "network.breakpoints"),  # not increasing
        (([0.0, 0.0], [0.0, 1.0, 2.0], 0.0), "network.breakpoints"),  # repeated
        (([0.0], [0.0, 1.0, 2.0], 0.0), "network.slopes"),  # one slope too many
        (([0.0, 1.0], [0.0, 1.0], 0.0), "network.slopes"),  # one slope too few
        (([0.0], [1.0, 1.0], 0.0), "network.slopes"),  # a single piece in disguise
        (([], [1.0], 0.0), "network.breakpoints"),
        (([float("inf")], [0.0, 1.0], 0.0), "network"),
    ],
)
def test_from_pieces_rejects(args, field):
    with pytest.raises(SpecError) as info:
        acts.from_pieces("pwl", *args)
    assert info.value.field == field


def test_check_continuous():
    acts.check_continuous([-1.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0])  # hardtanh: meets
    with pytest.raises(SpecError) as info:
        acts.check_continuous([-1.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 2.0])  # jumps at 1
    assert info.value.field == "network.intercepts"
    assert "1.0" in info.value.problem


def test_describe_round_trips():
    act = acts.from_pieces("pwl", [-1.0, 1.0], [0.2, 1.0, 0.5], -1.0)
    d = act.describe()
    again = acts.from_pieces("pwl", d["breakpoints"], d["slopes"], d["slopes"][0] * d["breakpoints"][0] + d["intercepts"][0])
    assert again == act
