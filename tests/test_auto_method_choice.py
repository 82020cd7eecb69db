"""`auto`'s choice of search by loss, d and the size of the hull (solve.choose_method): bnb where it
was measured faster (results/bench-scaling.md), milp elsewhere."""

from __future__ import annotations

import pytest

from milpland.instance.spec import spec_from_dict
from milpland.search.solve import choose_method


def teacher(d, n, loss, width=2, activation="relu"):
    return spec_from_dict({"name": "auto", "data": {"generator": "teacher", "d": d, "n": n, "seed": 0, "noise": 0.1},
                           "network": {"hidden": [width], "activation": activation}, "loss": {"kind": loss}})


@pytest.mark.parametrize("d,n,loss,expected", [
    (2, 40, "squared", "bnb"), (2, 40, "absolute", "bnb"),
    (3, 20, "squared", "bnb"),  # 2 C(20, 3) = 2,280 rays x 20 samples
    (4, 20, "squared", "bnb"),  # 9,690 rays x 20
    (3, 20, "absolute", "milp"),  # the node LPs: milp from d = 3
    (3, 80, "squared", "bnb"),  # 164,320 rays x 80 samples: bnb certified in 50 s, milp's bound 0 at 60 s
    (4, 30, "squared", "milp"),  # 54,810 rays x 30 samples, above AUTO_BNB_MAX_RAY_ENTRIES[4]
    (6, 20, "squared", "milp"),
])
def test_auto_picks_by_loss_dimension_and_hull_size(d, n, loss, expected):
    assert choose_method(teacher(d, n, loss)) == expected


def test_auto_picks_milp_for_activations_bnb_does_not_handle_at_any_d():
    assert choose_method(teacher(3, 20, "squared", activation="hardtanh")) == "milp"
