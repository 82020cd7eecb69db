"""The numpy re-check of returned points: what counts as a pattern mismatch."""

from __future__ import annotations

import numpy as np

from milpland.cells.scaled import ScaledParams
from milpland.cells.verify import verify_point
from milpland.instance import activations
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import spec_from_dict

SPEC = spec_from_dict({
    "name": "v", "data": {"x": [[-1.0], [0.5], [2.0]], "y": [0.0, 1.0, 3.0]}, "network": {"hidden": [2]},
})


def test_a_real_unit_with_the_wrong_claimed_piece_is_a_mismatch():
    params = OneHiddenParams(W1=np.array([[1.0], [-1.0]]), b1=np.zeros(2), v=np.array([1.0, 1.0]), c=0.0)
    # by hand: z = [[-1, 1], [0.5, -0.5], [2, -2]] -> relu pieces [[0, 1], [1, 0], [1, 0]]
    right = np.array([[0, 1], [1, 0], [1, 0]])
    risk = float(np.mean((np.array([1.0, 0.5, 2.0]) - SPEC.y) ** 2))
    assert verify_point(SPEC, params, right, risk).ok
    wrong = right.copy()
    wrong[2, 0] = 0
    check = verify_point(SPEC, params, wrong, risk)
    assert check.pattern_mismatches == 1 and not check.ok


def test_a_unit_with_negligible_output_has_a_free_pattern():
    params = OneHiddenParams(W1=np.array([[1.0], [-1.0]]), b1=np.zeros(2), v=np.array([1.0, -1e-17]), c=0.0)
    claimed = np.array([[0, 0], [1, 1], [1, 1]])  # unit 1's claimed pieces contradict z, but it adds ~1e-17
    risk = float(np.mean((np.array([0.0, 0.5, 2.0]) - SPEC.y) ** 2))
    check = verify_point(SPEC, params, claimed, risk)
    assert check.pattern_mismatches == 0 and check.ok


def test_round_off_scaled_weights_map_back_to_an_exact_zero_unit():
    theta = ScaledParams(U=np.array([[2.0], [3e-17]]), a=np.array([1.0, -2e-17]), rho=np.ones(2), c=0.5,
                         signs=np.array([1.0, -1.0]))
    params, limit = theta.to_original(activations.relu())
    assert limit == []
    assert params.v[1] == 0.0 and params.W1[1, 0] == 0.0 and params.b1[1] == 0.0
    # unit 0 balanced by hand: ||(2, 1)|| = sqrt(5), |v| = 5 ** 0.25, w = (2, 1) / 5 ** 0.25
    assert np.isclose(params.v[0], 5 ** 0.25) and np.isclose(params.W1[0, 0], 2 / 5 ** 0.25)

