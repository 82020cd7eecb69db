"""The census (`landscape --method sample`) against independent numbers.

- The compiled descent ends where a plain per-start numpy descent (written here from the
  algorithm's description, with tests/bruteforce.py's forward pass for the risk) ends.
- Every minimum the census lists is in the complete enumeration's list (same fitted values and
  risk), its point re-evaluated with the brute force's forward pass; with enough starts the
  global minimum of tests/bruteforce.py's brute force is among them.
- The Wilson interval against its closed forms at k = 0 and k = n and against scipy's own
  implementation; Good-Turing against hand counts.
- The unit patterns listed in general position equal the depth-first search's.
- The bookkeeping: every start is counted once; the command's JSON and Parquet columns.
"""

import json
import math

import numpy as np
import pandas as pd
import pytest
from bruteforce import brute_force_global, forward, risk_of
from scipy.stats import binomtest

from milpland import spec_from_dict
from milpland.cells.arrangement import unit_patterns
from milpland.errors import MilplandError
from milpland.instance.activations import hardtanh, leaky_relu, relu
from milpland.instance.network import OneHiddenParams
from milpland.landscape.census import (
    ENDS,
    cover_count,
    good_turing_unseen,
    run_census,
    two_piece_patterns,
    wilson_interval,
)
from milpland.landscape.listing import landscape
from milpland.landscape.sampling import descend, initial_points

X1 = np.linspace(-1, 1, 5)
X2 = np.array([[-0.9, -0.2], [0.1, 0.8], [0.7, -0.5], [-0.3, 0.4], [0.5, 0.3]])
Z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal


def make_spec(x, y, *, activation="relu", width=2, loss="squared", bias=True, **net):
    x = np.asarray(x, dtype=float)
    data_x = x.tolist() if x.ndim == 1 else [list(r) for r in x]
    return spec_from_dict({
        "name": "t", "data": {"x": data_x, "y": list(map(float, y))},
        "network": {"hidden": [width], "activation": activation, "output_bias": bias, **net},
        "loss": {"kind": loss}, "box": {"weight": 10.0}, "solve": {"time_limit": 60.0},
    })


# --- the descent against a plain per-start descent ----------------------------------------------


def reference_descent(spec, start: OneHiddenParams, max_iter: int, gtol: float = 1e-8):
    """Armijo gradient descent of one start, as documented in milpland.landscape.sampling."""
    act, X, y = spec.network.activation, spec.X, spec.y
    w = spec.loss.weight(spec.n)
    t = np.asarray(act.breakpoints)

    def risk(p):
        return risk_of(forward(p, X, act), y, spec.loss)

    def gradient(p):
        Z = X @ p.W1.T + p.b1
        slope = np.asarray(act.slopes)[np.sum(Z[:, :, None] > t, axis=2)]  # left slope on a breakpoint
        f = forward(p, X, act)
        if spec.loss.kind == "squared":
            df = 2 * w * (f - y)
        elif spec.loss.kind == "absolute":
            df = w * np.sign(f - y)
        else:
            df = -w * y * (y * f < 1)
        D = df[:, None] * slope * p.v[None, :]
        return np.concatenate([(D.T @ X).ravel(), D.sum(axis=0), forward_units(p).T @ df,
                               [df.sum() if spec.network.output_bias else 0.0]])

    def forward_units(p):
        from bruteforce import cpwl

        return cpwl(act, X @ p.W1.T + p.b1)

    m, d = spec.width, spec.d

    def unpack(vec):
        return OneHiddenParams(vec[: m * d].reshape(m, d), vec[m * d: m * d + m], vec[m * d + m: m * d + 2 * m],
                               float(vec[-1]))

    theta = np.concatenate([start.W1.ravel(), start.b1, start.v, [start.c]])
    r, g, eta = risk(unpack(theta)), gradient(unpack(theta)), 0.1
    for step in range(max_iter + 1):
        if np.linalg.norm(g) <= gtol:
            return theta, "converged"
        if eta < 1e-14:
            return theta, "stalled"
        if step == max_iter:
            return theta, "iteration_limit"
        trial = theta - eta * g
        r_trial = risk(unpack(trial))
        if r_trial <= r - 1e-4 * eta * (g @ g):
            theta, r, g, eta = trial, r_trial, gradient(unpack(trial)), eta * 1.5
        else:
            eta *= 0.5


DESCENT_CASES = {
    "relu-d2-squared": lambda: make_spec(X2, [0.5, -0.4, 1.0, 0.2, 0.3], width=3),
    "leaky-d1-squared": lambda: make_spec(X1, X1**2, activation="leaky_relu", alpha=0.2),
    "relu-d1-absolute": lambda: make_spec(X1, [0.3, -0.5, 0.9, 0.1, 0.6], loss="absolute"),
    "relu-d1-hinge": lambda: make_spec(X1, [1, -1, 1, -1, 1], loss="hinge"),
    "hardtanh-no-bias": lambda: make_spec(X1, np.sin(np.pi * X1), activation="hardtanh", bias=False),
}


@pytest.mark.parametrize("case", sorted(DESCENT_CASES))
def test_compiled_descent_ends_where_the_plain_descent_ends(case):
    spec = DESCENT_CASES[case]()
    run = descend(spec, starts=12, seed=7, max_iter=400)
    points = initial_points(spec, 12, 7)
    names = ("iteration_limit", "converged", "stalled")
    same_status = 0
    for s in range(12):
        m, d = spec.width, spec.d
        start = OneHiddenParams(points[s, : m * d].reshape(m, d), points[s, m * d: m * d + m],
                                points[s, m * d + m: m * d + 2 * m], float(points[s, -1]))
        end, status = reference_descent(spec, start, 400)
        assert np.max(np.abs(end - run.theta[s])) <= 1e-7 * (1 + np.max(np.abs(end)))
        same_status += status == names[run.status[s]]
        # the risk of the compiled end point, recomputed with the brute force's forward pass
        assert run.risk[s] == pytest.approx(risk_of(forward(run.params(s), spec.X, spec.network.activation),
                                                    spec.y, spec.loss), rel=1e-12, abs=1e-15)
    # summation order can decide an Armijo test at round-off level next to a kink: measured once
    # (leaky-d1, start 10: the plain descent stalls at step 399, the compiled one reaches 400 steps,
    # at the same point to 1e-8)
    assert same_status >= 11


def test_starts_follow_the_documented_distribution():
    spec = make_spec(X2, [0.5, -0.4, 1.0, 0.2, 0.3], width=3)
    rng = np.random.default_rng(11)
    W = rng.normal(scale=1 / np.sqrt(2), size=(4, 3, 2))
    b = rng.normal(size=(4, 3))
    v = rng.normal(scale=1 / np.sqrt(3), size=(4, 3))
    got = initial_points(spec, 4, 11)
    assert np.array_equal(got, np.concatenate([W.reshape(4, 6), b, v, np.zeros((4, 1))], axis=1))


def test_descent_never_increases_the_risk():
    spec = DESCENT_CASES["relu-d2-squared"]()
    start = descend(spec, starts=20, seed=3, max_iter=0)
    end = descend(spec, starts=20, seed=3, max_iter=500)
    assert np.all(end.risk <= start.risk) and np.all(end.iterations <= 500)
    assert np.array_equal(end.theta, descend(spec, starts=20, seed=3, max_iter=500).theta)  # seeded


# --- the census against the enumeration and the brute force ---------------------------------------


CENSUS_CASES = {
    "tent": lambda: make_spec([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 0.0, 1.0]),
    "relu-d2": lambda: make_spec(X2[:4], [0.5, -0.4, 1.0, 0.2]),
    "leaky-abs": lambda: make_spec(X1, [0.3, -0.5, 0.9, 0.1, 0.6], activation="leaky_relu", alpha=0.1,
                                   loss="absolute"),
}


STARTS = 3000  # leaky-abs: the global minimum's basin is 0.27 % of the starts (8 of 3000 with seed 5)


@pytest.fixture(scope="module")
def censuses():
    return {name: (make(), run_census(make(), starts=STARTS, seed=5)) for name, make in CENSUS_CASES.items()}


@pytest.mark.parametrize("name", sorted(CENSUS_CASES))
def test_every_census_minimum_is_an_enumerated_minimum(censuses, name):
    spec, run = censuses[name]
    listed = landscape(spec, method="enumerate")
    assert listed.complete
    fits = np.array([m.fitted for m in listed.minima])
    assert run.minima
    for m in run.minima:
        dist = np.max(np.abs(fits - m.fitted[None, :]), axis=1)
        k = int(np.argmin(dist))
        assert dist[k] <= 1e-6, f"census minimum {m.risk} is not an enumerated minimum"
        assert listed.minima[k].risk == pytest.approx(m.risk, rel=1e-9, abs=1e-12)
        numpy_risk = risk_of(forward(m.params, spec.X, spec.network.activation), spec.y, spec.loss)
        assert numpy_risk == pytest.approx(m.risk, rel=1e-7, abs=1e-12)


@pytest.mark.parametrize("name", sorted(CENSUS_CASES))
def test_enough_starts_find_the_brute_force_global_minimum(censuses, name):
    spec, run = censuses[name]
    act = spec.network.activation
    brute = brute_force_global(spec.X, spec.y, act, spec.loss, spec.box.weight, spec.box.output,
                               spec.network.output_bias, width=spec.width)
    assert run.minima[0].risk == pytest.approx(brute.risk, rel=1e-7, abs=1e-12)


@pytest.mark.parametrize("name", sorted(CENSUS_CASES))
def test_every_start_is_counted_once(censuses, name):
    _, run = censuses[name]
    c = run.census
    assert set(c.ends) == set(ENDS) and sum(c.ends.values()) == STARTS
    assert sum(b.count for b in c.basins.values()) == c.ends["minimum"]
    assert sum(c.jumps.values()) == STARTS and sum(c.descent.values()) == STARTS
    assert {m.cell for m in run.minima} == set(c.basins)
    for m in run.minima:
        b = c.basins[m.cell]
        assert m.basin_fraction == b.fraction == b.count / STARTS
        assert (b.ci_low, b.ci_high) == wilson_interval(b.count, STARTS)
    assert c.singletons == sum(b.count == 1 for b in c.basins.values())
    assert c.unseen_mass == c.singletons / STARTS


def test_without_jumps_the_ends_are_the_end_cells_verdicts():
    """max_jumps = 0: a start ends in a minimum exactly when the cell of its end point certifies
    to one (checked here with a fresh Certifier on every end point)."""
    from milpland.cells.certificates import Certifier

    spec = CENSUS_CASES["relu-d2"]()
    run = run_census(spec, starts=60, seed=2, max_iter=50, max_jumps=0)
    first = descend(spec, starts=60, seed=2, max_iter=50)
    cert = Certifier(spec)
    statuses = [cert.certify_params(first.params(s), found_by="sample").status for s in range(60)]
    assert run.census.ends["minimum"] == statuses.count("local_minimum")
    assert run.census.ends["jump_limit"] == statuses.count("not_local_minimum")
    assert run.census.jumps == {0: 60}


def test_jumps_carry_short_descents_to_minima():
    """Ten steps leave most starts short of a minimum; the jumps from cell optima finish them."""
    spec = CENSUS_CASES["relu-d2"]()
    short = run_census(spec, starts=60, seed=2, max_iter=10, max_jumps=0)
    jumped = run_census(spec, starts=60, seed=2, max_iter=10, max_jumps=10)
    assert jumped.census.ends["minimum"] > short.census.ends["minimum"]
    once = run_census(spec, starts=60, seed=2, max_iter=10, max_jumps=1)
    assert max(once.census.jumps) <= 1 and max(jumped.census.jumps) <= 10
    assert short.census.ends["minimum"] <= once.census.ends["minimum"] <= jumped.census.ends["minimum"]
    assert jumped.census.ends["minimum"] + jumped.census.ends["stuck"] + jumped.census.ends["box_limited"] \
        + jumped.census.ends["not_attained"] + jumped.census.ends["undetermined"] \
        + jumped.census.ends["jump_limit"] == 60


def test_user_mistakes_are_one_line_errors():
    spec = CENSUS_CASES["tent"]()
    with pytest.raises(MilplandError, match="--starts"):
        run_census(spec, starts=0, seed=0)
    deep = spec_from_dict({"name": "t", "data": {"x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 0.0]},
                           "network": {"hidden": [2, 2]}})
    with pytest.raises(MilplandError, match="network.hidden"):
        run_census(deep, starts=5, seed=0)


# --- statistics -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 40, 10000])
def test_wilson_interval_at_zero_and_all(n):
    """k = 0: (0, z^2/(n + z^2)); k = n: (n/(n + z^2), 1) -- the score interval's closed forms."""
    z2 = Z95**2
    lo, hi = wilson_interval(0, n)
    assert lo == 0.0 and hi == pytest.approx(z2 / (n + z2), rel=1e-12)
    lo, hi = wilson_interval(n, n)
    assert hi == 1.0 and lo == pytest.approx(n / (n + z2), rel=1e-12)


@pytest.mark.parametrize("k,n", [(1, 10), (3, 10), (50, 100), (81, 263), (1, 10000), (9916, 10000)])
def test_wilson_interval_matches_scipy(k, n):
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ref.low, rel=1e-10) and hi == pytest.approx(ref.high, rel=1e-10)
    mirror = wilson_interval(n - k, n)
    assert mirror[0] == pytest.approx(1 - hi, abs=1e-12) and mirror[1] == pytest.approx(1 - lo, abs=1e-12)
    assert lo < k / n < hi


def test_wilson_interval_by_hand():
    """k = 1, n = 4: centre (1/4 + z^2/8)/(1 + z^2/4), half z sqrt(3/64 + z^2/64)/(1 + z^2/4)."""
    z2 = Z95**2
    centre = (0.25 + z2 / 8) / (1 + z2 / 4)
    half = Z95 * math.sqrt(3 / 64 + z2 / 64) / (1 + z2 / 4)
    assert wilson_interval(1, 4) == pytest.approx((centre - half, centre + half), rel=1e-12)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_good_turing_counts_the_singletons():
    # 12 starts: minima reached 1, 1, 2 and 5 times, 3 starts in no minimum -> 2 singletons
    assert good_turing_unseen([1, 1, 2, 5], 12) == pytest.approx(2 / 12)
    assert good_turing_unseen([3, 4], 7) == 0.0
    assert good_turing_unseen([1] * 10, 10) == 1.0  # every start found a new minimum: nothing is known
    with pytest.raises(ValueError):
        good_turing_unseen([2, 3], 4)


# --- unit patterns in general position ----------------------------------------------------------


@pytest.mark.parametrize("d,n,seed", [(2, 9, 0), (2, 14, 1), (3, 9, 2)])
@pytest.mark.parametrize("act", [relu(), leaky_relu(0.3)], ids=["relu", "leaky"])
def test_general_position_patterns_equal_the_search(d, n, seed, act):
    X = np.random.default_rng(seed).uniform(-1, 1, size=(n, d))
    fast = two_piece_patterns(X, act)
    assert fast is not None and len(fast) == cover_count(n, d)
    assert np.array_equal(fast, unit_patterns(X, act))


def test_general_position_patterns_refuse_degenerate_data():
    collinear = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 1.0], [1.0, 0.0]])
    repeated = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    assert two_piece_patterns(collinear, relu()) is None
    assert two_piece_patterns(repeated, relu()) is None
    assert two_piece_patterns(np.random.default_rng(0).uniform(size=(6, 2)), hardtanh()) is None  # 3 pieces


# --- the command ------------------------------------------------------------------------------------


def test_command_json_and_parquet_carry_the_census(tmp_path, capsys):
    from test_landscape import TENT, run_cli

    spec_path = tmp_path / "tent.toml"
    spec_path.write_text(TENT)
    out = tmp_path / "out"
    argv = ["landscape", str(spec_path), "--method", "sample", "--starts", "50", "--seed", "2", "--format", "json",
            "--out", str(out)]
    assert run_cli(argv) == 0
    obj = json.loads(capsys.readouterr().out)
    census = obj["census"]
    assert census["starts"] == 50 and census["proofs"] and census["estimates"]
    assert census["unseen_mass"]["estimate"] == census["singletons"] / 50
    assert sum(m["basin_count"] for m in obj["minima"]) == census["ends"]["minimum"]
    frame = pd.read_parquet(out / "minima.parquet")
    assert (frame["basin_ci_low"] <= frame["basin_fraction"]).all()
    assert (frame["basin_fraction"] <= frame["basin_ci_high"]).all()
    assert frame["basin_count"].sum() == census["ends"]["minimum"]
    assert run_cli(["landscape", str(spec_path), "--method", "sample", "--starts", "50", "--seed", "2"]) == 0
    text = capsys.readouterr().out
    assert "proven" in text and "estimated" in text and "not proven" in text and "95% CI" in text
