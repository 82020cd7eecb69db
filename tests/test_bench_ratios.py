"""`bench`'s headline ratios on a hand-made table: the numbers are worked out by hand below."""

from __future__ import annotations

import pandas as pd
import pytest

from milpland.runs.bench import headline_ratios


def test_ratios_use_finished_pairs_and_count_timeouts_as_lower_bounds():
    rows = [  # instance, method, status, seconds
        ("a", "milp", "optimal", 1.0), ("a", "scip", "optimal", 4.0),
        ("b", "milp", "optimal", 2.0), ("b", "scip", "optimal", 20.0),
        ("c", "milp", "optimal", 3.0), ("c", "scip", "time_limit", 60.0),
        ("d", "milp", "time_limit", 60.0), ("d", "scip", "optimal", 30.0),  # the reference did not finish: left out
    ]
    table = pd.DataFrame(rows, columns=["instance", "method", "status", "seconds"])
    row = headline_ratios(table).set_index("baseline").loc["scip"]
    assert row["instances"] == 2 and row["timeouts"] == 1
    assert row["median_ratio"] == pytest.approx((4.0 + 10.0) / 2)  # ratios 4 and 10
    assert row["geomean_ratio"] == pytest.approx((4.0 * 10.0) ** 0.5)
    assert row["min_ratio"] == 4.0 and row["max_ratio"] == 10.0
    assert row["median_ratio_with_timeouts"] == pytest.approx(10.0)  # 4, 10 and >= 20: the median is 10


def test_a_baseline_that_never_finished_still_gets_its_timeout_ratio():
    table = pd.DataFrame([("a", "milp", "optimal", 2.0), ("a", "scip", "time_limit", 60.0)],
                         columns=["instance", "method", "status", "seconds"])
    row = headline_ratios(table).set_index("baseline").loc["scip"]
    assert row["instances"] == 0 and row["timeouts"] == 1
    assert row["median_ratio_with_timeouts"] == pytest.approx(30.0)
    assert pd.isna(row.get("median_ratio", float("nan")))
