"""Weight decay (DESIGN §4d): the spec fields, the numpy objective, the cell SOCP and the global solve,
against an independent reference.

The reference shares no code with milpland's cell or search modules: it lists the unit patterns with
`tests/bruteforce.py` (generic orders of the points), forms every cell (multisets per sign class), and
solves each cell's problem in the scaled weights with scipy's SLSQP -- lam ||u_j|| in its smooth
variational form min_eta (lam/2)(||u_j||^2/eta + eta), linear cell rows (not a conic solver) -- then evaluates the
balanced ordinary weights of every cell's point with the brute force's own forward pass and the
penalty written out below.  Every such value is the objective of a real network, so it is an
upper bound on the global minimum; milpland's certified value must match the smallest (to REL) and
its lower bound must not exceed any of them.  Multistart gradient descent in ordinary weights must
never beat the certified value either.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from bruteforce import forward, risk_of, unit_assignments
from scipy.optimize import minimize

from milpland.errors import MilplandError, SpecError
from milpland.instance import activations as acts
from milpland.instance.losses import Loss
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import spec_from_dict
from milpland.search.solve import solve_global

REL = 1e-6  # agreement of the certified objective with the reference, relative to max(1e-3, value)
NUMPY_REL = 1e-9  # the returned weights reproduce the returned objective
LAMBDAS = (0.01, 0.1)
FAMILIES = {"relu": {"activation": "relu"}, "leaky_relu": {"activation": "leaky_relu", "alpha": 0.1}}
ACTIVATIONS = {"relu": acts.relu(), "leaky_relu": acts.leaky_relu(0.1)}
SIZES = [(1, 5, 2), (1, 6, 1), (2, 4, 1), (1, 4, 2), (2, 4, 2)]  # (d, n, width), cycled over seeds
FAST_SEEDS = 1  # per combination in the default run; the slow test runs N_SEEDS
N_SEEDS = 30
BOX = 100.0


def table(family: str, kind: str, lam: float, decay_biases: bool, seed: int) -> dict:
    d, n, width = SIZES[seed % len(SIZES)]
    rng = np.random.default_rng([seed, list(FAMILIES).index(family), ("squared", "absolute").index(kind),
                                 int(lam * 1000), int(decay_biases)])
    X = rng.uniform(-1.0, 1.0, (n, d))
    y = np.sin(2.0 * X[:, 0]) + 0.5 * rng.normal(size=n)
    return {"name": f"wd-{family}-{kind}-{seed}", "data": {"x": X.tolist(), "y": y.tolist()},
            "network": {"hidden": [width], **FAMILIES[family]},
            "loss": {"kind": kind, "weight_decay": lam, "decay_biases": decay_biases},
            "box": {"weight": BOX}, "solve": {"time_limit": 120}}


# ---------------------------------------------------------------------------------------------
# the independent objective and reference


def penalty(params: OneHiddenParams, lam: float, decay_biases: bool) -> float:
    """(lam/2) ||theta||^2 written out over the parameters of the issue's definition."""
    parts = [params.W1.ravel(), params.v.ravel()]
    if decay_biases:
        parts += [params.b1.ravel(), np.array([params.c])]
    return 0.5 * lam * float(sum(np.sum(p * p) for p in parts))


def objective(params: OneHiddenParams, X, y, act, kind: str, lam: float, decay_biases: bool) -> float:
    return risk_of(forward(params, X, act), y, Loss(kind=kind)) + penalty(params, lam, decay_biases)


def balanced(U, a, c, signs, decay_biases: bool) -> OneHiddenParams:
    """|v_j| = sqrt(||u_j||): the rescaling that makes (lam/2)(||w||^2 + v^2) = lam ||u|| (bias group
    included or not); units with nothing decayed are dropped (a zero unit, or with undecayed biases and
    an output bias, a constant folded into c)."""
    group = np.sqrt(np.sum(U * U, axis=1) + (a * a if decay_biases else 0.0))
    rho = np.sqrt(group)
    keep = group > 1e-12
    safe = np.where(keep, rho, 1.0)
    return OneHiddenParams(W1=np.where(keep[:, None], U / safe[:, None], 0.0), b1=np.where(keep, a / safe, 0.0),
                           v=np.where(keep, signs * rho, 0.0), c=float(c))


ETA_FLOOR = 1e-12  # lower bound of the balancing variables eta_j (their optimum is ||u_j||, possibly 0)


def reference_cell(X, y, act, kind, lam, decay_biases, pattern, signs):
    """One cell's minimum by SLSQP, with lam ||u_j|| in its variational form
    min_{eta_j > 0} (lam/2)(||u_j||^2 / eta_j + eta_j) -- smooth and jointly convex (a perspective),
    with linear cell rows: no cone, no kink.  Returns (objective, ordinary weights) of the best start."""
    n, d = X.shape
    m = len(signs)
    w = 1.0 / n
    alpha = np.asarray(act.slopes)[pattern]  # (n, m)
    S = signs * alpha
    p = m * d + m + 1
    ne = n if kind == "absolute" else 0
    N = p + m + ne  # theta | eta | e
    phi = np.zeros((n, p))
    for j in range(m):
        phi[:, j * d:(j + 1) * d] = S[:, j:j + 1] * X
        phi[:, m * d + j] = S[:, j]
    phi[:, p - 1] = 1.0
    side = np.where(pattern == 1, 1.0, -1.0)  # piece 1: g >= 0, piece 0: g <= 0
    G = np.zeros((n * m, N))
    for i, j in itertools.product(range(n), range(m)):
        G[i * m + j, j * d:(j + 1) * d] = side[i, j] * X[i]
        G[i * m + j, m * d + j] = side[i, j]
    groups = [list(range(j * d, (j + 1) * d)) + ([m * d + j] if decay_biases else []) for j in range(m)]
    c_weight = lam if decay_biases else 0.0

    def fun(z):
        f = phi @ z[:p]
        eta = z[p:p + m]
        sq = np.array([np.sum(z[g] ** 2) for g in groups])
        data = w * np.sum((f - y) ** 2) if kind == "squared" else w * np.sum(z[p + m:])
        return data + 0.5 * lam * np.sum(sq / eta + eta) + 0.5 * c_weight * z[p - 1] ** 2

    def jac(z):
        g = np.zeros(N)
        if kind == "squared":
            g[:p] = 2.0 * w * phi.T @ (phi @ z[:p] - y)
        else:
            g[p + m:] = w
        for j, grp in enumerate(groups):
            eta = z[p + j]
            g[grp] += lam * z[grp] / eta
            g[p + j] = 0.5 * lam * (1.0 - np.sum(z[grp] ** 2) / eta**2)
        g[p - 1] += c_weight * z[p - 1]
        return g

    cons = [{"type": "ineq", "fun": lambda z: G @ z, "jac": lambda z: G}]
    if kind == "absolute":
        E = np.zeros((2 * n, N))
        E[:n, :p], E[:n, p + m:] = -phi, np.eye(n)
        E[n:, :p], E[n:, p + m:] = phi, np.eye(n)
        cons.append({"type": "ineq", "fun": lambda z: E @ z + np.r_[y, -y], "jac": lambda z: E})
    bounds = [(None, None)] * (m * d) + [((-BOX, BOX) if not decay_biases else (None, None))] * m
    bounds += [(None, None)] + [(ETA_FLOOR, None)] * m + [(0.0, None)] * ne
    best = None
    rng = np.random.default_rng(3)
    for k in range(3):  # theta = 0 and two seeded random starts
        z0 = np.zeros(N)
        if k > 0:
            z0[:p] = rng.normal(scale=0.5, size=p)
        z0[p:p + m] = 1.0
        if kind == "absolute":
            z0[p + m:] = np.abs(phi @ z0[:p] - y) + 0.1
        res = minimize(fun, z0, jac=jac, constraints=cons, bounds=bounds, method="SLSQP",
                       options={"ftol": 1e-15, "maxiter": 2000})
        z = res.x
        if np.min(G @ z, initial=0.0) < -1e-9:
            continue
        U, a, c = z[:m * d].reshape(m, d), z[m * d:m * d + m], z[p - 1]
        params = balanced(U, a, c, signs, decay_biases)
        value = objective(params, X, y, act, kind, lam, decay_biases)
        if best is None or value < best[0]:
            best = (value, params)
    return best


def reference_minimum(spec_table: dict, family: str) -> float:
    """The smallest objective over every cell's SLSQP point (each a real network's objective)."""
    X = np.asarray(spec_table["data"]["x"], dtype=float)
    y = np.asarray(spec_table["data"]["y"], dtype=float)
    loss = spec_table["loss"]
    act = ACTIVATIONS[family]
    width = spec_table["network"]["hidden"][0]
    patterns = unit_assignments(X, 2)
    best = np.inf
    for n_pos in range(width, -1, -1):
        signs = np.array([1.0] * n_pos + [-1.0] * (width - n_pos))
        for pos in itertools.combinations_with_replacement(range(len(patterns)), n_pos):
            for neg in itertools.combinations_with_replacement(range(len(patterns)), width - n_pos):
                pattern = patterns[list(pos) + list(neg)].T
                found = reference_cell(X, y, act, loss["kind"], loss["weight_decay"], loss["decay_biases"],
                                       pattern, signs)
                if found is not None:
                    best = min(best, found[0])
    return best


def descent_values(spec_table: dict, family: str, *, starts: int = 8, steps: int = 3000, rate: float = 0.05):
    """Objectives reached by plain (sub)gradient descent in ordinary weights from random starts."""
    X = np.asarray(spec_table["data"]["x"], dtype=float)
    y = np.asarray(spec_table["data"]["y"], dtype=float)
    kind, lam, decay_biases = (spec_table["loss"][k] for k in ("kind", "weight_decay", "decay_biases"))
    act = ACTIVATIONS[family]
    slope = np.asarray(act.slopes)
    n, d = X.shape
    m = spec_table["network"]["hidden"][0]
    rng = np.random.default_rng(7)
    values = []
    for _ in range(starts):
        W, b, v, c = rng.normal(size=(m, d)), rng.normal(size=m), rng.normal(size=m), 0.0
        for _step in range(steps):
            Z = X @ W.T + b
            H = np.where(Z > 0, Z, slope[0] * Z)
            f = H @ v + c
            r = 2.0 * (f - y) / n if kind == "squared" else np.sign(f - y) / n
            D = np.where(Z > 0, 1.0, slope[0]) * v * r[:, None]
            gW, gb, gv, gc = D.T @ X + lam * W, D.sum(0) + lam * b * decay_biases, H.T @ r + lam * v, \
                r.sum() + lam * c * decay_biases
            W, b, v, c = W - rate * gW, b - rate * gb, v - rate * gv, c - rate * gc
        values.append(objective(OneHiddenParams(W1=W, b1=b, v=v, c=c), X, y, act, kind, lam, decay_biases))
    return values


# ---------------------------------------------------------------------------------------------
# agreement


def check_instance(family: str, kind: str, lam: float, decay_biases: bool, seed: int) -> None:
    t = table(family, kind, lam, decay_biases, seed)
    spec = spec_from_dict(t)
    result = solve_global(spec)
    assert result.certified and result.status == "optimal", result.message
    assert result.weight_decay == lam and result.decay_biases == decay_biases
    # the returned weights reproduce the returned objective (independent forward pass and penalty)
    mine = objective(result.params, spec.X, spec.y, ACTIVATIONS[family], kind, lam, decay_biases)
    assert abs(mine - result.risk) <= NUMPY_REL * max(1.0, abs(result.risk))
    reference = reference_minimum(t, family)
    scale = max(1e-3, abs(reference))
    assert result.risk <= reference + REL * scale, (result.risk, reference)  # nothing the reference found is lower
    assert reference >= result.lower_bound - 1e-12  # the lower bound holds for real networks
    assert abs(result.risk - reference) <= REL * scale, (result.risk, reference)
    for value in descent_values(t, family, starts=3, steps=1500):
        assert value >= result.lower_bound - 1e-12


COMBOS = [(f, k, lam, db) for f in FAMILIES for k in ("squared", "absolute") for lam in LAMBDAS for db in (True, False)]


@pytest.mark.parametrize("family,kind,lam,decay_biases", COMBOS)
def test_certified_weight_decay_minimum_agrees_with_the_reference(family, kind, lam, decay_biases):
    for seed in range(FAST_SEEDS):
        check_instance(family, kind, lam, decay_biases, seed)


@pytest.mark.slow
@pytest.mark.parametrize("family,kind,lam,decay_biases", COMBOS)
def test_certified_weight_decay_minimum_agrees_with_the_reference_30_seeds(family, kind, lam, decay_biases):
    for seed in range(FAST_SEEDS, N_SEEDS):
        check_instance(family, kind, lam, decay_biases, seed)


# ---------------------------------------------------------------------------------------------
# spec fields, the objective, refusals


def small_table(**loss) -> dict:
    return {"name": "wd", "data": {"x": [[-1.0], [-0.2], [0.4], [1.0]], "y": [0.3, -0.5, 0.8, 0.1]},
            "network": {"hidden": [2], "activation": "relu"}, "loss": {"kind": "squared", **loss}}


@pytest.mark.parametrize("value,fragment", [(-0.1, "must be a number >= 0"), ("0.1", "must be a number"),
                                            (True, "must be a number")])
def test_weight_decay_spec_errors_name_the_field(value, fragment):
    with pytest.raises(SpecError) as err:
        spec_from_dict(small_table(weight_decay=value))
    assert "loss.weight_decay" in str(err.value) and fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_decay_biases_must_be_a_bool():
    with pytest.raises(SpecError, match="loss.decay_biases.*true or false"):
        spec_from_dict(small_table(weight_decay=0.1, decay_biases="no"))


@pytest.mark.parametrize("network", [{"hidden": [2], "activation": "hardtanh"}, {"hidden": [2, 2], "activation": "relu"}])
def test_weight_decay_is_refused_where_it_is_not_exact(network):
    t = small_table(weight_decay=0.1)
    t["network"] = network
    with pytest.raises(SpecError, match="loss.weight_decay"):
        spec_from_dict(t)


def test_hash_changes_with_weight_decay_only_when_it_is_on():
    plain = spec_from_dict(small_table())
    zero = spec_from_dict(small_table(weight_decay=0.0, decay_biases=False))
    on = spec_from_dict(small_table(weight_decay=0.1))
    off_bias = spec_from_dict(small_table(weight_decay=0.1, decay_biases=False))
    assert plain.instance_hash() == zero.instance_hash()
    assert len({plain.instance_hash(), on.instance_hash(), off_bias.instance_hash()}) == 3


def test_objective_is_risk_plus_half_lambda_squared_norm():
    params = OneHiddenParams(W1=np.array([[1.0, -2.0], [0.5, 0.0]]), b1=np.array([0.5, -1.0]), v=np.array([2.0, -1.0]), c=3.0)
    X, y, act = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.0, 1.0]), acts.relu()
    # by hand: z = [[1.5, -0.5], [-1.5, -1.0]] -> relu [[1.5, 0], [0, 0]] -> f = [2 * 1.5 + 3, 3] = [6, 3]
    risk = (6.0**2 + 2.0**2) / 2
    assert Loss().objective(params, X, y, act) == pytest.approx(risk, rel=1e-15)
    full = 1 + 4 + 0.25 + 0.25 + 1 + 4 + 1 + 9  # W1, b1, v, c
    assert Loss(weight_decay=0.2).objective(params, X, y, act) == pytest.approx(risk + 0.1 * full, rel=1e-15)
    no_bias = 1 + 4 + 0.25 + 4 + 1
    assert Loss(weight_decay=0.2, decay_biases=False).objective(params, X, y, act) == pytest.approx(risk + 0.1 * no_bias)


def test_strong_decay_leaves_the_decayed_constant_in_closed_form():
    """lam = 10 exceeds every unit's gradient norm at theta = 0 (at most 2 max|c - y| max||(x, 1)|| < 6),
    so every unit is zero and min_c mean (c - y)^2 + (lam/2) c^2 gives c = 2 mean(y) / (2 + lam)."""
    spec = spec_from_dict(small_table(weight_decay=10.0))
    result = solve_global(spec)
    c = 2 * spec.y.mean() / (2 + 10.0)
    want = float(np.mean((c - spec.y) ** 2) + 5.0 * c * c)
    assert result.certified and result.risk == pytest.approx(want, rel=1e-9)
    assert np.allclose(result.params.v, 0.0) and result.params.c == pytest.approx(c, rel=1e-7)


@pytest.mark.parametrize("method", ["milp", "bnb"])
def test_methods_that_cannot_honour_weight_decay_refuse_it(method):
    t = small_table(weight_decay=0.1)
    t["solve"] = {"method": method}
    with pytest.raises(MilplandError, match="loss.weight_decay.*cannot honour weight decay"):
        solve_global(spec_from_dict(t))


def test_the_certificate_says_it_holds_over_all_weights():
    result = solve_global(spec_from_dict(small_table(weight_decay=0.1)))
    assert result.certified and result.region.startswith("all weights")
    assert "certificate over all weights" in result.message and result.to_json()["weight_decay"] == 0.1


# ---------------------------------------------------------------------------------------------
# certify


def gd_table() -> dict:
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (8, 1))
    return {"name": "gd", "data": {"x": X.tolist(), "y": np.sin(3 * X[:, 0]).tolist()},
            "network": {"hidden": [2], "activation": "relu"}, "loss": {"kind": "squared", "weight_decay": 0.01}}


def test_certify_the_certified_minimiser_is_a_local_minimum_with_zero_gap():
    from milpland.points.certify import certify_point

    spec = spec_from_dict(gd_table())
    best = solve_global(spec)
    cert = certify_point(spec, best.params, global_result=best)
    assert cert.verdict == "local_min" and cert.gap == pytest.approx(0.0, abs=1e-12)
    assert cert.risk == pytest.approx(objective(best.params, spec.X, spec.y, acts.relu(), "squared", 0.01, True),
                                      rel=1e-12)


def test_certify_finds_the_rescaling_of_an_unbalanced_point():
    from milpland.points.certify import certify_point

    spec = spec_from_dict(gd_table())
    best = solve_global(spec)
    p = best.params
    scale = np.array([2.0] + [1.0] * (p.width - 1))  # unit 0: (w, b) doubled, v halved: same network
    q = OneHiddenParams(W1=p.W1 * scale[:, None], b1=p.b1 * scale, v=p.v / scale, c=p.c)
    assert np.allclose(forward(q, spec.X, acts.relu()), forward(p, spec.X, acts.relu()))
    cert = certify_point(spec, q, global_result=best)
    assert (cert.verdict, cert.certificate) == ("not_stationary", "balance")
    assert cert.descent_path.descends and cert.gap > 0
    for value, point in zip(cert.descent_path.risks, cert.descent_path.params):
        assert value == pytest.approx(objective(point.to_one_hidden(), spec.X, spec.y, acts.relu(), "squared", 0.01,
                                                True), rel=1e-12)


def test_certify_descends_in_the_cell_when_the_output_bias_is_off():
    from milpland.points.certify import certify_point

    spec = spec_from_dict(gd_table())
    best = solve_global(spec)
    p = best.params
    q = OneHiddenParams(W1=p.W1, b1=p.b1, v=p.v, c=p.c + 0.05)
    cert = certify_point(spec, q, global_result=best)
    assert (cert.verdict, cert.certificate) == ("not_stationary", "cell_descent")
    assert cert.descent_path.descends and cert.descent_path.min_risk == pytest.approx(best.risk, rel=1e-9)


def test_certify_a_network_trained_by_gradient_descent_with_weight_decay():
    """The README example: plain gradient descent on risk + (lam/2)||theta||^2; certify gives a verdict and
    the gap to the certified global minimum of that objective (gap = objective - global, both numpy)."""
    from milpland.points.certify import certify_point

    t = gd_table()
    spec = spec_from_dict(t)
    rng = np.random.default_rng(1)
    X, y, lam, n = spec.X, spec.y, 0.01, spec.n
    W, b, v, c = rng.normal(size=(2, 1)), rng.normal(size=2), rng.normal(size=2), 0.0
    for _ in range(5000):
        Z = X @ W.T + b
        H = np.maximum(Z, 0.0)
        r = 2.0 * (H @ v + c - y) / n
        D = (Z > 0) * v * r[:, None]
        W, b, v, c = W - 0.05 * (D.T @ X + lam * W), b - 0.05 * (D.sum(0) + lam * b), \
            v - 0.05 * (H.T @ r + lam * v), c - 0.05 * (r.sum() + lam * c)
    trained = OneHiddenParams(W1=W, b1=b, v=v, c=c)
    cert = certify_point(spec, trained)
    mine = objective(trained, X, y, acts.relu(), "squared", lam, True)
    assert cert.verdict in ("local_min", "not_stationary", "not_local_min") and cert.global_certified
    assert cert.risk == pytest.approx(mine, rel=1e-12)
    assert cert.gap == pytest.approx(mine - cert.global_risk, rel=1e-9) and cert.gap >= -1e-12


# ---------------------------------------------------------------------------------------------
# landscape


@pytest.mark.parametrize("decay_biases", [True, False])
def test_landscape_lists_minima_that_certify_and_random_perturbations_confirm(decay_biases):
    """Each listed minimum: certify (its own neighbour-cell enumeration) says local_min, and 2000 random
    perturbations in ordinary weights (steps 1e-2 .. 1e-5) never lower the objective; the first is the
    certified global minimum of solve."""
    from milpland.landscape.listing import landscape
    from milpland.points.certify import certify_point

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (6, 1))
    spec = spec_from_dict({"name": "ls", "data": {"x": X.tolist(), "y": np.sin(3 * X[:, 0]).tolist()},
                           "network": {"hidden": [2], "activation": "relu"},
                           "loss": {"kind": "squared", "weight_decay": 0.001, "decay_biases": decay_biases}})
    result = landscape(spec, method="enumerate")
    best = solve_global(spec)
    assert result.complete and result.global_result.certified and len(result.minima) >= 2
    assert result.minima[0].risk == pytest.approx(best.risk, rel=1e-9) and not result.minima[0].spurious
    noise = np.random.default_rng(1)
    for m in result.minima:
        p = m.params
        value = objective(p, spec.X, spec.y, acts.relu(), "squared", 0.001, decay_biases)
        assert value == pytest.approx(m.risk, rel=1e-9)
        assert certify_point(spec, p, global_result=best).verdict == "local_min"
        for step in (1e-2, 1e-3, 1e-4, 1e-5):
            for _ in range(500):
                q = OneHiddenParams(W1=p.W1 + step * noise.normal(size=p.W1.shape),
                                    b1=p.b1 + step * noise.normal(size=p.b1.shape),
                                    v=p.v + step * noise.normal(size=p.v.shape), c=p.c + step * noise.normal())
                assert objective(q, spec.X, spec.y, acts.relu(), "squared", 0.001, decay_biases) >= value - 1e-12


@pytest.mark.parametrize("method", ["bnb", "sample", "milp"])
def test_landscape_methods_that_cannot_honour_weight_decay_refuse_it(method):
    from milpland.landscape.listing import landscape

    with pytest.raises(MilplandError, match="loss.weight_decay.*--method"):
        landscape(spec_from_dict(small_table(weight_decay=0.1)), method=method)


def test_a_threshold_query_with_weight_decay_is_refused():
    from milpland.landscape.listing import landscape

    with pytest.raises(MilplandError, match="loss.weight_decay: --levels, --gap-max"):
        landscape(spec_from_dict(small_table(weight_decay=0.1)), gap_rel=0.5)


# ---------------------------------------------------------------------------------------------
# batch, bench, export, construct


def test_batch_row_re_evaluates_the_regularised_objective():
    from milpland.runs.batch import solve_row

    spec = spec_from_dict(small_table(weight_decay=0.1))
    row = solve_row(spec, solve_global(spec))
    mine = objective(OneHiddenParams.from_json(__import__("json").loads(row["params"])), spec.X, spec.y, acts.relu(),
                     "squared", 0.1, True)
    assert row["weight_decay"] == 0.1 and row["decay_biases"] is True
    assert row["risk_numpy"] == pytest.approx(mine, rel=1e-12) and row["risk_numpy_difference"] <= 1e-9


SPEC_TOML = """name = "wd-bench"
[data]
x = [-1.0, -0.2, 0.4, 1.0]
y = [0.3, -0.5, 0.8, 0.1]
[network]
hidden = [2]
activation = "relu"
[loss]
weight_decay = 0.1
"""


def test_bench_shows_lambda_and_skips_what_ignores_it(tmp_path):
    from milpland.runs.bench import run_bench

    path = tmp_path / "wd.toml"
    path.write_text(SPEC_TOML)
    table = run_bench([str(path)], methods=["milp", "bnb", "gd"])
    rows = {r["method"]: r for r in table.to_dict("records")}
    assert all(r["weight_decay"] == 0.1 for r in rows.values())
    assert rows["bnb"]["certified"] and rows["bnb"]["search"] in ("enumerate", "convex-all-patterns")
    assert rows["bnb"]["risk"] == pytest.approx(solve_global(spec_from_dict(small_table(weight_decay=0.1))).risk,
                                                rel=1e-9)
    assert rows["milp"]["status"] == rows["gd"]["status"] == "skipped"
    assert "loss.weight_decay" in rows["gd"]["message"]


def test_export_and_construct_refuse_weight_decay(tmp_path):
    from milpland.search.export import export_model

    with pytest.raises(MilplandError, match="loss.weight_decay"):
        export_model(spec_from_dict(small_table(weight_decay=0.1)), out_prefix=tmp_path / "m")
