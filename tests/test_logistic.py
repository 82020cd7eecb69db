"""The logistic loss log(1 + exp(-y f)) (labels +-1; DESIGN §1, §4d): the spec, the numpy loss, the
weight-decay cell program with exponential cones and its binary-entropy bound, the global solve against
an independent reference, and the refusals.

The reference shares no code with milpland's cell or search modules: it lists the unit patterns with
`tests/bruteforce.py` (generic orders of the points), forms every cell (multisets per sign class) and
solves each cell's problem in the scaled weights with scipy's SLSQP -- the logistic data term written
out below as a smooth function, lam ||u_j|| in its variational form min_eta (lam/2)(||u_j||^2/eta + eta),
linear cell rows (no conic solver) -- then evaluates the balanced ordinary weights of every cell's
point with the brute force's forward pass and the penalty of tests/test_weight_decay.py.  Every such
value is the objective of a real network, so the smallest is an upper bound on the global minimum;
milpland's certified value must match it (to REL) and its lower bound must not exceed it.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from bruteforce import forward, unit_assignments
from scipy.optimize import brentq, minimize
from test_weight_decay import balanced, penalty

from milpland.cells.decay import DecayCellSolver, binary_entropy
from milpland.cells.problem import Cell
from milpland.errors import MilplandError, SpecError
from milpland.instance import activations as acts
from milpland.instance.losses import Loss
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import Box, spec_from_dict
from milpland.search.solve import solve_global

REL = 1e-6  # agreement of the certified objective with the reference, relative to max(1e-3, value)
NUMPY_REL = 1e-9  # the returned weights reproduce the returned objective
FAMILIES = {"relu": {"activation": "relu"}, "leaky_relu": {"activation": "leaky_relu", "alpha": 0.1}}
ACTIVATIONS = {"relu": acts.relu(), "leaky_relu": acts.leaky_relu(0.1)}
SIZES = [(1, 5, 2), (1, 6, 1), (2, 4, 1), (1, 4, 2), (2, 4, 2)]  # (d, n, width), cycled over seeds
LAMBDAS = (0.01, 0.1)
FAST_SEEDS = 1  # per combination in the default run; the slow test runs N_SEEDS
N_SEEDS = 30
BOX = 100.0


def logistic(margin: np.ndarray) -> np.ndarray:
    """log(1 + exp(-m)) written out on each side of 0 (no overflow): log1p(exp(-m)) for m >= 0,
    -m + log1p(exp(m)) for m < 0."""
    m = np.asarray(margin, dtype=float)
    return np.where(m >= 0, np.log1p(np.exp(-np.abs(m))), -m + np.log1p(np.exp(-np.abs(m))))


def objective(params, X, y, act, lam: float, decay_biases: bool) -> float:
    """mean_i log(1 + exp(-y_i f_i)) + (lam/2)||theta||^2, by the brute force's forward pass."""
    return float(np.mean(logistic(y * forward(params, X, act)))) + penalty(params, lam, decay_biases)


def labels(rng, n: int) -> np.ndarray:
    """Random +-1 labels with both signs present."""
    y = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    y[0], y[1] = 1.0, -1.0
    return rng.permutation(y)


def table(family: str, lam: float, decay_biases: bool, seed: int) -> dict:
    d, n, width = SIZES[seed % len(SIZES)]
    rng = np.random.default_rng([seed, list(FAMILIES).index(family), int(lam * 1000), int(decay_biases), 17])
    X = rng.uniform(-1.0, 1.0, (n, d))
    return {"name": f"lg-{family}-{seed}", "data": {"x": X.tolist(), "y": labels(rng, n).tolist()},
            "network": {"hidden": [width], **FAMILIES[family]},
            "loss": {"kind": "logistic", "weight_decay": lam, "decay_biases": decay_biases},
            "box": {"weight": BOX}, "solve": {"time_limit": 120}}


# ---------------------------------------------------------------------------------------------
# the independent reference


ETA_FLOOR = 1e-12


def cell_arrays(X, act, pattern, signs):
    """phi (f = phi theta, theta = (U, a, c)) and the cell rows G theta >= 0 of a homogeneous two-piece
    activation (piece 1: g >= 0, piece 0: g <= 0), written out here."""
    n, d = X.shape
    m = len(signs)
    S = signs * np.asarray(act.slopes)[pattern]  # (n, m)
    p = m * d + m + 1
    phi = np.zeros((n, p))
    for j in range(m):
        phi[:, j * d:(j + 1) * d] = S[:, j:j + 1] * X
        phi[:, m * d + j] = S[:, j]
    phi[:, p - 1] = 1.0
    side = np.where(pattern == 1, 1.0, -1.0)
    G = np.zeros((n * m, p))
    for i, j in itertools.product(range(n), range(m)):
        G[i * m + j, j * d:(j + 1) * d] = side[i, j] * X[i]
        G[i * m + j, m * d + j] = side[i, j]
    return phi, G


def every_cell(X: np.ndarray, width: int):
    """(pattern (n, m), signs) of every cell: per sign class, every multiset of unit patterns of each sign
    (units of one sign are interchangeable), from the brute force's strictly realisable unit patterns."""
    patterns = unit_assignments(X, 2)
    for n_pos in range(width, -1, -1):
        signs = np.array([1.0] * n_pos + [-1.0] * (width - n_pos))
        for pos in itertools.combinations_with_replacement(range(len(patterns)), n_pos):
            for neg in itertools.combinations_with_replacement(range(len(patterns)), width - n_pos):
                yield patterns[list(pos) + list(neg)].T, signs


def reference_cell(X, y, act, lam, decay_biases, pattern, signs):
    """One cell's minimum by SLSQP in (theta, eta): smooth, jointly convex, linear cell rows.
    Returns the objective of the best start's balanced ordinary weights (None: no feasible start)."""
    n, d = X.shape
    m = len(signs)
    phi, G0 = cell_arrays(X, act, pattern, signs)
    p = phi.shape[1]
    N = p + m
    G = np.hstack([G0, np.zeros((G0.shape[0], m))])
    groups = [list(range(j * d, (j + 1) * d)) + ([m * d + j] if decay_biases else []) for j in range(m)]
    c_weight = lam if decay_biases else 0.0

    def fun(z):
        sq = np.array([np.sum(z[g] ** 2) for g in groups])
        eta = z[p:]
        return (float(np.mean(logistic(y * (phi @ z[:p])))) + 0.5 * lam * np.sum(sq / eta + eta)
                + 0.5 * c_weight * z[p - 1] ** 2)

    def jac(z):
        margin = y * (phi @ z[:p])
        g = np.zeros(N)
        g[:p] = phi.T @ (-y / (1.0 + np.exp(np.clip(margin, -700, 700)))) / n  # d/df log(1+e^{-yf}) = -y sigma(-yf)
        for j, grp in enumerate(groups):
            eta = z[p + j]
            g[grp] += lam * z[grp] / eta
            g[p + j] = 0.5 * lam * (1.0 - np.sum(z[grp] ** 2) / eta**2)
        g[p - 1] += c_weight * z[p - 1]
        return g

    cons = [{"type": "ineq", "fun": lambda z: G @ z, "jac": lambda z: G}]
    bounds = [(None, None)] * (m * d) + [((-BOX, BOX) if not decay_biases else (None, None))] * m
    bounds += [(None, None)] + [(ETA_FLOOR, None)] * m
    best = None
    rng = np.random.default_rng(3)
    for k in range(3):  # theta = 0 and two seeded random starts
        z0 = np.zeros(N)
        if k > 0:
            z0[:p] = rng.normal(scale=0.5, size=p)
        z0[p:] = 1.0
        res = minimize(fun, z0, jac=jac, constraints=cons, bounds=bounds, method="SLSQP",
                       options={"ftol": 1e-15, "maxiter": 2000})
        z = res.x
        if np.min(G @ z, initial=0.0) < -1e-9:
            continue
        U, a, c = z[:m * d].reshape(m, d), z[m * d:m * d + m], z[p - 1]
        value = objective(balanced(U, a, c, signs, decay_biases), X, y, act, lam, decay_biases)
        best = value if best is None else min(best, value)
    return best


def reference_minimum(t: dict, family: str) -> float:
    """The smallest objective over every cell's SLSQP point (each a real network's objective)."""
    X = np.asarray(t["data"]["x"], dtype=float)
    y = np.asarray(t["data"]["y"], dtype=float)
    lam, decay_biases = t["loss"]["weight_decay"], t["loss"]["decay_biases"]
    width = t["network"]["hidden"][0]
    found = [reference_cell(X, y, ACTIVATIONS[family], lam, decay_biases, pattern, signs)
             for pattern, signs in every_cell(X, width)]
    return min(v for v in found if v is not None)


def check_instance(family: str, lam: float, decay_biases: bool, seed: int) -> None:
    t = table(family, lam, decay_biases, seed)
    spec = spec_from_dict(t)
    result = solve_global(spec)
    assert result.certified and result.status == "optimal", result.message
    assert result.loss == "logistic" and result.weight_decay == lam and result.decay_biases == decay_biases
    mine = objective(result.params, spec.X, spec.y, ACTIVATIONS[family], lam, decay_biases)
    assert abs(mine - result.risk) <= NUMPY_REL * max(1.0, abs(result.risk)), (mine, result.risk)
    reference = reference_minimum(t, family)
    scale = max(1e-3, abs(reference))
    assert result.risk <= reference + REL * scale, (result.risk, reference)  # nothing the reference found is lower
    assert reference >= result.lower_bound - 1e-12  # the lower bound holds for real networks
    assert abs(result.risk - reference) <= REL * scale, (result.risk, reference)


COMBOS = [(f, lam, db) for f in FAMILIES for lam in LAMBDAS for db in (True, False)]


@pytest.mark.parametrize("family,lam,decay_biases", COMBOS)
def test_certified_logistic_minimum_agrees_with_the_reference(family, lam, decay_biases):
    for seed in range(FAST_SEEDS):
        check_instance(family, lam, decay_biases, seed)


@pytest.mark.slow
@pytest.mark.parametrize("family,lam,decay_biases", COMBOS)
def test_certified_logistic_minimum_agrees_with_the_reference_30_seeds(family, lam, decay_biases):
    for seed in range(FAST_SEEDS, N_SEEDS):
        check_instance(family, lam, decay_biases, seed)


# ---------------------------------------------------------------------------------------------
# the loss, the spec


def test_per_sample_is_log_one_plus_exp_and_stable_for_large_margins():
    loss = Loss(kind="logistic")
    f = np.array([0.0, 2.0, -3.0, 800.0, -800.0])
    y = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    values = loss.per_sample(f, y)
    assert values[0] == pytest.approx(np.log(2.0), rel=1e-15)
    assert values[1] == pytest.approx(np.log1p(np.exp(-2.0)), rel=1e-15)
    assert values[2] == pytest.approx(np.log1p(np.exp(3.0)), rel=1e-15)
    assert values[3] == 0.0 or values[3] < 1e-300  # exp(-800) underflows to 0, no warning, no nan
    assert values[4] == pytest.approx(800.0, rel=1e-15)  # log(1 + e^800) = 800 + log(1 + e^-800)
    assert loss.per_sample(np.array([-2.0]), np.array([-1.0]))[0] == pytest.approx(np.log1p(np.exp(-2.0)))
    # mean and half_sum reductions
    assert loss.risk(f[:3], y[:3]) == pytest.approx(np.sum(values[:3]) / 3)
    assert Loss(kind="logistic", reduction="half_sum").risk(f[:3], y[:3]) == pytest.approx(np.sum(values[:3]) / 2)


def small_table(**loss) -> dict:
    return {"name": "lg", "data": {"x": [[-1.0], [-0.2], [0.4], [1.0]], "y": [1, -1, 1, -1]},
            "network": {"hidden": [2], "activation": "relu"}, "loss": {"kind": "logistic", **loss}}


def test_labels_must_be_plus_minus_one():
    t = small_table(weight_decay=0.1)
    t["data"]["y"] = [1, 0, 1, 0]
    with pytest.raises(SpecError) as err:
        spec_from_dict(t)
    assert "data.y" in str(err.value) and "-1 and +1" in str(err.value) and "\n" not in str(err.value)


def test_unknown_kind_lists_logistic():
    with pytest.raises(SpecError, match="loss.kind.*logistic"):
        spec_from_dict({**small_table(), "loss": {"kind": "cross_entropy"}})


def test_one_label_with_an_undecayed_output_bias_is_refused():
    """c -> inf drives every logistic loss to 0 at no penalty: no minimum exists."""
    t = small_table(weight_decay=0.1, decay_biases=False)
    t["data"]["y"] = [1, 1, 1, 1]
    with pytest.raises(MilplandError, match="loss.decay_biases.*not attained"):
        solve_global(spec_from_dict(t))


# ---------------------------------------------------------------------------------------------
# the cell program and its bound


def test_binary_entropy_is_the_negated_conjugate():
    """min_z log(1 + e^-z) - q z over z = H(-q) for q in (-1, 0), checked by a 1-D root of the derivative."""
    for p in (0.05, 0.3, 0.5, 0.9):
        z = brentq(lambda z, p=p: -1.0 / (1.0 + np.exp(z)) + p, -50, 50)  # derivative of log(1 + e^-z) + p z
        value = np.log1p(np.exp(-z)) + p * z
        assert binary_entropy(np.array([p]))[0] == pytest.approx(value, rel=1e-12)
    assert np.all(binary_entropy(np.array([0.0, 1.0])) == 0.0)


@pytest.mark.parametrize("decay_biases", [True, False])
def test_cell_bound_is_below_the_value_and_the_gap_closes(decay_biases):
    rng = np.random.default_rng(4)
    X = rng.uniform(-1, 1, (6, 2))
    y = labels(rng, 6)
    act = acts.leaky_relu(0.1)
    solver = DecayCellSolver(X, y, act, Loss(kind="logistic", weight_decay=0.05, decay_biases=decay_biases),
                             Box(weight=BOX))
    W, b = rng.normal(size=(2, 2)), rng.normal(size=2)
    cell = Cell(pattern=((X @ W.T + b) > 0).astype(int), signs=np.array([1.0, -1.0]))
    res = solver.solve(cell)
    assert res.status == "optimal"
    assert res.lower_bound <= res.risk and res.risk - res.lower_bound <= 1e-8 * res.risk
    reference = reference_cell(X, y, act, 0.05, decay_biases, cell.pattern, cell.signs)
    assert res.lower_bound <= reference + 1e-12 and res.risk == pytest.approx(reference, rel=1e-6)


def test_strong_decay_leaves_the_decayed_constant_in_closed_form():
    """lam = 10 exceeds every unit's gradient norm at theta = 0 (|dR/df_i| <= 1/n, ||(x, 1)|| <= sqrt 2,
    m = 2 units: at most 2 sqrt 2 < 10), so every unit is zero and c solves
    mean_i -y_i sigma(-y_i c) + lam c = 0 (a 1-D root)."""
    spec = spec_from_dict(small_table(weight_decay=10.0))
    y = spec.y
    c = brentq(lambda c: np.mean(-y / (1.0 + np.exp(y * c))) + 10.0 * c, -5, 5, xtol=1e-15)
    want = float(np.mean(np.log1p(np.exp(-y * c))) + 5.0 * c * c)
    result = solve_global(spec)
    assert result.certified and result.risk == pytest.approx(want, rel=1e-9)
    assert np.allclose(result.params.v, 0.0)


def test_the_example_spec_certifies():
    from milpland.instance.spec import load_spec

    spec = load_spec("models/xor-relu-logistic-wd.toml")
    result = solve_global(spec)
    assert result.certified and result.loss == "logistic" and result.region.startswith("all weights")
    mine = objective(result.params, spec.X, spec.y, acts.relu(), 0.01, True)
    assert abs(mine - result.risk) <= NUMPY_REL * max(1.0, result.risk)


# ---------------------------------------------------------------------------------------------
# no weight decay: the MILP's box minimum (outer approximation with tangent cuts, DESIGN §4e)


BOX0 = 2.0


def box_reference_cell(X, y, act, pattern, signs):
    """min over the cell and the box |U|, |a| <= BOX0 (c free) of mean log(1 + exp(-y f)), by SLSQP from
    theta = 0 and two seeded random starts; the risk of each point by the brute force's forward pass of
    its ordinary weights (|v_j| = 1 for a live unit: homogeneous activations)."""
    n, d = X.shape
    m = len(signs)
    phi, G = cell_arrays(X, act, pattern, signs)
    p = phi.shape[1]

    def fun(z):
        return float(np.mean(logistic(y * (phi @ z))))

    def jac(z):
        return phi.T @ (-y / (1.0 + np.exp(np.clip(y * (phi @ z), -700, 700)))) / n

    cons = [{"type": "ineq", "fun": lambda z: G @ z, "jac": lambda z: G}]
    bounds = [(-BOX0, BOX0)] * (m * d + m) + [(None, None)]
    best = None
    rng = np.random.default_rng(5)
    for k in range(3):
        z0 = np.zeros(p) if k == 0 else np.clip(rng.normal(scale=0.5, size=p), -BOX0, BOX0)
        res = minimize(fun, z0, jac=jac, constraints=cons, bounds=bounds, method="SLSQP",
                       options={"ftol": 1e-15, "maxiter": 2000})
        z = np.clip(res.x, [b[0] if b[0] is not None else -np.inf for b in bounds],
                    [b[1] if b[1] is not None else np.inf for b in bounds])
        if np.min(G @ z, initial=0.0) < -1e-9:
            continue
        U, a, c = z[:m * d].reshape(m, d), z[m * d:m * d + m], z[p - 1]
        params = OneHiddenParams(W1=U, b1=a, v=signs.astype(float), c=float(c))  # |v| = 1: U, a unscaled
        value = float(np.mean(logistic(y * forward(params, X, act))))
        best = value if best is None else min(best, value)
    return best


def box_reference_minimum(X, y, act, width) -> float:
    found = [box_reference_cell(X, y, act, pattern, signs) for pattern, signs in every_cell(X, width)]
    return min(v for v in found if v is not None)


def box_table(family: str, seed: int) -> dict:
    d, n, width = [(1, 6, 1), (1, 5, 2), (2, 5, 1)][seed % 3]
    rng = np.random.default_rng([seed, list(FAMILIES).index(family), 23])
    X = rng.uniform(-1.0, 1.0, (n, d))
    return {"name": f"lg0-{family}-{seed}", "data": {"x": X.tolist(), "y": labels(rng, n).tolist()},
            "network": {"hidden": [width], **FAMILIES[family]}, "loss": {"kind": "logistic"},
            "box": {"weight": BOX0}, "solve": {"time_limit": 120, "method": "milp"}}


def check_box_instance(family: str, seed: int) -> None:
    t = box_table(family, seed)
    spec = spec_from_dict(t)
    result = solve_global(spec)
    assert result.status == "optimal" and result.verification.ok, result.message
    act = ACTIVATIONS[family]
    mine = float(np.mean(logistic(spec.y * forward(result.params, spec.X, act))))
    assert abs(mine - result.risk) <= NUMPY_REL * max(1.0, result.risk)
    reference = box_reference_minimum(spec.X, spec.y, act, t["network"]["hidden"][0])
    assert result.lower_bound <= reference + 1e-12, (result.lower_bound, reference)
    assert abs(result.risk - reference) <= 2e-6 * reference, (result.risk, reference)  # rel_gap 1e-6
    margins = spec.y * forward(result.params, spec.X, act)
    if np.min(margins) > 0:  # the returned network separates: always reported, never certified
        assert result.limit_point and "the returned network separates" in result.limit_point
        assert not result.certified and result.box_active
    elif result.limit_point:  # otherwise only with the margin MILP's witness
        assert "margin MILP" in result.limit_point and not result.certified
    else:
        assert "no network of this width separates the data" in result.message


@pytest.mark.parametrize("family", list(FAMILIES))
def test_milp_box_minimum_without_decay_agrees_with_the_reference(family):
    for seed in range(2):
        check_box_instance(family, seed)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_milp_box_minimum_without_decay_agrees_with_the_reference_30_seeds(family):
    for seed in range(2, N_SEEDS):
        check_box_instance(family, seed)


def separable_table(method: str = "milp") -> dict:
    """Four points on a line, labels - - + +: f = relu(x) - 0.25 (one unit) has every margin > 0."""
    return {"name": "separable", "data": {"x": [[-1.0], [-0.5], [0.5], [1.0]], "y": [-1, -1, 1, 1]},
            "network": {"hidden": [1], "activation": "relu"}, "loss": {"kind": "logistic"},
            "box": {"weight": BOX0}, "solve": {"method": method}}


def test_separable_data_are_reported_as_a_limit_point_not_a_minimum():
    spec = spec_from_dict(separable_table())
    # by hand: the network f = relu(x) - 0.25 separates, so t f has risk -> 0 as t -> inf
    hand = OneHiddenParams(W1=np.array([[1.0]]), b1=np.array([0.0]), v=np.array([1.0]), c=-0.25)
    for t in (1.0, 10.0, 100.0):
        assert np.min(spec.y * t * forward(hand, spec.X, acts.relu())) > 0
    assert np.mean(logistic(spec.y * 100 * forward(hand, spec.X, acts.relu()))) < 1e-9
    result = solve_global(spec)
    assert not result.certified and result.box_active
    assert result.limit_point.startswith("infimum 0 over all weights, not attained")
    assert f"the box minimum is {result.risk:.10g}" in result.limit_point
    assert result.to_json()["limit_point"] == result.limit_point and result.to_row()["limit_point"]
    # the box minimum by hand: U = -2, a = 2, s = -1, c = 2 gives f = (-2, -1, 1, 2): margins 2, 1, 1, 2
    hand_min = float(np.mean(logistic(np.array([2.0, 1.0, 1.0, 2.0]))))
    assert result.risk <= hand_min * (1 + 1e-9)
    assert result.risk == pytest.approx(box_reference_minimum(spec.X, spec.y, acts.relu(), 1), rel=2e-6)


def test_bnb_is_refused_in_one_line_without_decay():
    with pytest.raises(MilplandError) as err:
        solve_global(spec_from_dict(separable_table("bnb")))
    assert "logistic loss needs weight_decay > 0 or method = \"milp\"" in str(err.value)
    assert "\n" not in str(err.value)


def test_auto_takes_the_milp_without_decay():
    result = solve_global(spec_from_dict(separable_table("auto")))
    assert result.method == "milp" and result.limit_point


def test_the_margin_milp_finds_a_separation_the_box_minimiser_misses():
    """x = -1, -0.5, 0, 0.5, 1 with labels - + + + +: f = 8 relu(x + 0.75) - 1 separates (by hand:
    f = -1, 1, 5, 9, 13).  In a box of 0.05 the box minimiser leans on the free output bias and
    misclassifies x = -1, so only the margin MILP (with its numpy-verified witness) can tell."""
    X, y = np.array([[-1.0], [-0.5], [0.0], [0.5], [1.0]]), np.array([-1.0, 1.0, 1.0, 1.0, 1.0])
    hand = OneHiddenParams(W1=np.array([[1.0]]), b1=np.array([0.75]), v=np.array([8.0]), c=-1.0)
    assert np.allclose(forward(hand, X, acts.relu()), [-1.0, 1.0, 5.0, 9.0, 13.0])
    spec = spec_from_dict({"name": "lean", "data": {"x": X.tolist(), "y": y.tolist()},
                           "network": {"hidden": [1], "activation": "relu"}, "loss": {"kind": "logistic"},
                           "box": {"weight": 0.05}, "solve": {"method": "milp"}})
    result = solve_global(spec)
    assert np.min(y * forward(result.params, X, acts.relu())) < 0  # the box minimiser does not separate
    assert not result.certified
    assert result.limit_point.startswith("infimum 0 over all weights, not attained")
    assert "margin MILP" in result.limit_point


def test_data_no_network_of_the_width_separates_are_said_to_be_so():
    """x = -1, 0, 1 with labels - + -: one ReLU unit gives f = c + v relu(w x + b), monotone in x, so no
    width-1 network separates them (by hand); the margin MILP proves it and no limit point is claimed."""
    spec = spec_from_dict({"name": "bump", "data": {"x": [[-1.0], [0.0], [1.0]], "y": [-1, 1, -1]},
                           "network": {"hidden": [1], "activation": "relu"}, "loss": {"kind": "logistic"},
                           "box": {"weight": BOX0}, "solve": {"method": "milp"}})
    result = solve_global(spec)
    assert result.limit_point == ""
    assert "no network of this width separates the data" in result.message
    assert result.risk == pytest.approx(box_reference_minimum(spec.X, spec.y, acts.relu(), 1), rel=2e-6)


def test_two_hidden_layers_are_refused_in_one_line():
    t = small_table(weight_decay=0.0)
    t["network"] = {"hidden": [2, 2], "activation": "relu"}
    with pytest.raises(SpecError) as err:
        spec_from_dict(t)
    assert "loss.kind" in str(err.value) and "one hidden layer" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# landscape, certify, batch with weight decay


def test_landscape_minima_certify_and_random_perturbations_confirm():
    """Each listed minimum of the logistic objective: certify says local_min and 1000 random
    perturbations in ordinary weights never lower the independent objective by more than the listing's
    certificate tolerance (1e-8 relative); the first is solve's.  The steps are 1e-5 and 1e-6: this
    instance has a flat valley (one unit split into two parallel ones costs the same group-lasso
    penalty) whose listed end points carry a unit of size 1e-4, and a step of 1e-2 flips that unit's
    pattern into cells that do not contain the point (measured: -3e-6 at 1e-2, -1e-12 at 1e-5)."""
    from milpland.landscape.listing import landscape
    from milpland.points.certify import certify_point

    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, (5, 1))
    spec = spec_from_dict({"name": "ls", "data": {"x": X.tolist(), "y": labels(rng, 5).tolist()},
                           "network": {"hidden": [2], "activation": "relu"},
                           "loss": {"kind": "logistic", "weight_decay": 0.01}})
    result = landscape(spec, method="enumerate")
    best = solve_global(spec)
    assert result.complete and result.global_result.certified
    assert result.minima[0].risk == pytest.approx(best.risk, rel=1e-9) and not result.minima[0].spurious
    noise = np.random.default_rng(1)
    for m in result.minima:
        p = m.params
        value = objective(p, spec.X, spec.y, acts.relu(), 0.01, True)
        assert value == pytest.approx(m.risk, rel=1e-9)
        assert certify_point(spec, p, global_result=best).verdict == "local_min"
        for step in (1e-5, 1e-6):
            for _ in range(500):
                q = OneHiddenParams(W1=p.W1 + step * noise.normal(size=p.W1.shape),
                                    b1=p.b1 + step * noise.normal(size=p.b1.shape),
                                    v=p.v + step * noise.normal(size=p.v.shape), c=p.c + step * noise.normal())
                assert objective(q, spec.X, spec.y, acts.relu(), 0.01, True) >= value - 1e-8 * value


def test_batch_row_re_evaluates_the_logistic_objective():
    import json

    from milpland.runs.batch import solve_row

    spec = spec_from_dict(small_table(weight_decay=0.1))
    row = solve_row(spec, solve_global(spec))
    mine = objective(OneHiddenParams.from_json(json.loads(row["params"])), spec.X, spec.y, acts.relu(), 0.1, True)
    assert row["loss"] == "logistic" and row["limit_point"] == ""
    assert row["risk_numpy"] == pytest.approx(mine, rel=1e-12) and row["risk_numpy_difference"] <= 1e-9


@pytest.mark.parametrize("method", ["sample", "milp", "bnb", "enumerate"])
def test_landscape_without_decay_is_refused_in_one_line(method):
    from milpland.landscape.listing import landscape

    with pytest.raises(MilplandError) as err:
        landscape(spec_from_dict(separable_table()), method=method)
    assert "logistic loss without weight decay" in str(err.value) and "\n" not in str(err.value)


def test_export_is_refused_in_one_line(tmp_path):
    from milpland.search.export import export_model

    with pytest.raises(MilplandError, match="loss.kind: export writes MILPs, which cannot hold the logistic loss"):
        export_model(spec_from_dict(separable_table()), out_prefix=tmp_path / "m")
