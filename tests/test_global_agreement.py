"""Acceptance test of the global solve: milpland's MILP answer against the independent brute force.

For every activation family x {squared, absolute}: 30 seeded tiny instances (teacher
targets, noisy teacher targets, random targets; box 10 or 100).  The solver is called
through its contract only (`solve_global(spec)` -> SolveResult) and checked against
`tests/bruteforce.py` (cell enumeration + Clarabel, no shared code) and against a plain
numpy forward pass of the returned weights.  Plus invariances (sample permutation,
target scaling with the box scaled alike) and the hinge loss on +-1 labels.
"""

from __future__ import annotations

import numpy as np
import pytest
from bruteforce import BruteResult, brute_force_global, forward, risk_of

from milpland.instance import activations as acts
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import InstanceSpec, spec_from_dict
from milpland.search import solve
from milpland.search.pattern_bnb import BnbOptions
from milpland.search.solve import SolveStrategy

FAMILIES = {
    "relu": {"activation": "relu"},
    "leaky_relu": {"activation": "leaky_relu", "alpha": 0.1},
    "two_slope": {"activation": "two_slope", "s_plus": 1.3, "s_minus": 0.7},
    "hardtanh": {"activation": "hardtanh"},
    "pwl3": {"activation": "pwl", "breakpoints": [-0.5, 0.5], "slopes": [0.2, 1.0, -0.3]},
}
ACTIVATIONS = {
    "relu": acts.relu(), "leaky_relu": acts.leaky_relu(0.1), "two_slope": acts.two_slope(1.3, 0.7),
    "hardtanh": acts.hardtanh(), "pwl3": acts.from_pieces("pwl", [-0.5, 0.5], [0.2, 1.0, -0.3]),
}
HOMOGENEOUS = {"relu", "leaky_relu", "two_slope"}
# (d, n, width), cycled over the seeds; 3-piece activations get smaller n for width 2
SIZES_TWO_PIECE = [(1, 8, 1), (1, 7, 2), (2, 6, 1), (1, 5, 3), (2, 5, 2), (1, 8, 2)]
SIZES_THREE_PIECE = [(1, 8, 1), (1, 4, 2), (2, 6, 1), (1, 6, 1), (2, 4, 2), (2, 5, 1)]
TARGETS = ("teacher", "noisy_teacher", "random")
N_SEEDS = 30
REL = 1e-6  # agreement of global risks, relative to max(1, risk)
NUMPY_REL = 1e-9  # the returned weights must reproduce the returned risk
BOX_TOL = 1e-6
# Absolute floor on a certified gap.  results.py speaks of the relative gap only, but a risk of
# 1e-15 over a bound of 0 has relative gap 1 and is rightly certified; measured certified gaps
# were up to 7e-10 absolute (3.7e-6 relative at risk 1.9e-4).
CERT_ABS = 1e-9  # relative distance to a box face that counts as "on the bound"


def tol(value: float, rel: float = REL) -> float:
    return rel * max(1.0, abs(value))


def instance(family: str, loss: str, seed: int, sizes=None) -> dict:
    """A seeded spec table.  Teachers are networks of the same family with scaled weights in the box."""
    sizes = sizes or (SIZES_TWO_PIECE if family in HOMOGENEOUS else SIZES_THREE_PIECE)
    d, n, width = sizes[seed % len(sizes)]
    target = TARGETS[(seed // len(sizes)) % len(TARGETS)]
    rng = np.random.default_rng([seed, sorted(FAMILIES).index(family), ("squared", "absolute", "hinge").index(loss)])
    X = rng.uniform(-1.0, 1.0, (n, d))
    box = 10.0 if seed % 2 else 100.0
    if target == "random":
        y = rng.normal(size=n)
    else:
        act = ACTIVATIONS[family]
        m = int(rng.integers(1, width + 1))
        teacher = OneHiddenParams(
            W1=rng.normal(size=(m, d)) * 1.5, b1=rng.normal(size=m) * 0.5,
            v=rng.choice([-1.0, 1.0], size=m) * rng.uniform(0.5, 2.0, size=m), c=float(rng.normal() * 0.3),
        )
        y = forward(teacher, X, act)
        if target == "noisy_teacher":
            y = y + 0.1 * rng.normal(size=n)
    return {
        "name": f"agree-{family}-{loss}-{seed}-{target}-d{d}n{n}m{width}",
        "data": {"x": X.tolist(), "y": y.tolist()},
        "network": {"hidden": [width], **FAMILIES[family]},
        "loss": {"kind": loss},
        "box": {"weight": box, "output": box},
    }


def brute(spec: InstanceSpec) -> BruteResult:
    return brute_force_global(spec.X, spec.y, spec.network.activation, spec.loss, spec.box.weight,
                              spec.box.output, spec.network.output_bias, width=spec.width)


def scaled_box_distance(spec: InstanceSpec, params) -> float:
    """max over |u~|/B, |a~|/B and (non-homogeneous) rho/P of the returned weights: 1 means on a face."""
    rho = np.abs(np.asarray(params.v, dtype=float))
    U = rho[:, None] * np.asarray(params.W1, dtype=float)
    a = rho * np.asarray(params.b1, dtype=float)
    ratio = max(np.max(np.abs(U)), np.max(np.abs(a))) / spec.box.weight
    if spec.network.activation.name in ("hardtanh", "pwl"):
        ratio = max(ratio, np.max(rho) / spec.box.output)
    return float(ratio)


def check_against_brute(spec: InstanceSpec, result, ref: BruteResult) -> None:
    """Every claim of a SolveResult that an independent computation can check."""
    where = f"{spec.name}: solver {result.risk!r} (lb {result.lower_bound!r}), brute force {ref.risk!r}"
    assert ref.risk_numpy == pytest.approx(ref.risk, rel=1e-7, abs=1e-9), f"brute-force point: {where}"
    assert result.status == "optimal", f"status {result.status} {result.message}: {where}"
    assert abs(result.risk - ref.risk) <= tol(ref.risk), where
    assert result.lower_bound <= ref.risk + tol(ref.risk), where
    assert result.lower_bound <= result.risk + tol(result.risk), where
    # the returned weights, through our own forward pass, give the returned risk
    assert result.params is not None, where
    f = forward(result.params, spec.X, spec.network.activation)
    risk_np = risk_of(f, spec.y, spec.loss)
    assert abs(risk_np - result.risk) <= tol(result.risk, NUMPY_REL), f"numpy risk {risk_np!r}: {where}"
    # the returned point lies in the box, and box_active says whether it touches a face
    ratio = scaled_box_distance(spec, result.params)
    assert ratio <= 1.0 + BOX_TOL, f"returned point outside the box (ratio {ratio}): {where}"
    if result.box_active:
        assert ratio >= 1.0 - BOX_TOL, f"box_active True but no scaled weight on the box (ratio {ratio}): {where}"
    else:
        assert ratio < 1.0 - BOX_TOL, f"box_active False but a scaled weight is on the box (ratio {ratio}): {where}"
    check_certificate(spec, result, where)


def check_certificate(spec: InstanceSpec, result, where: str) -> None:
    """certified only when the bound proves the incumbent within the gap and no bound is active (results.py).

    "Within the gap" is rel_gap * risk + CERT_ABS.  Conversely a solve that is within the gap
    and box-free must name why it is not certified: a failed verification or units realised only
    as limits (rho -> 0).
    """
    gap = result.risk - result.lower_bound
    within = gap <= spec.solve.rel_gap * abs(result.risk) + CERT_ABS
    v = result.verification
    reason = (v is not None and (not v.ok or len(v.limit_units) > 0)) or not within
    if result.certified:
        # an active bound is harmless only at risk zero, the floor of every loss
        assert within and (not result.box_active or result.risk <= CERT_ABS), \
            f"certified with an active bound or open gap: {where}"
        assert v is None or v.ok, f"certified although verification failed ({v}): {where}"
    elif not result.box_active:
        assert reason, f"optimal, within the gap, box inactive, verified, but not certified: {where}"


CASES = [(fam, loss, seed) for fam in FAMILIES for loss in ("squared", "absolute") for seed in range(N_SEEDS)]


@pytest.mark.parametrize("family,loss,seed", CASES, ids=[f"{f}-{l}-{s}" for f, l, s in CASES])
def test_global_solve_agrees_with_brute_force(family, loss, seed):
    spec = spec_from_dict(instance(family, loss, seed))
    result = solve.solve_global(spec)
    check_against_brute(spec, result, brute(spec))


# `auto` picks the pattern branch-and-bound for instances with a homogeneous activation and
# d <= AUTO_BNB_MAX_D (squared loss: node least squares; absolute: node LPs), the MILP otherwise:
# each homogeneous case is solved here by the search that `auto` does not pick, so that both are
# checked against the brute force on every case.
OTHER_METHOD_CASES = [(fam, loss, seed) for fam in sorted(HOMOGENEOUS) for loss in ("squared", "absolute")
                      for seed in range(N_SEEDS)]


@pytest.mark.parametrize("family,loss,seed", OTHER_METHOD_CASES,
                         ids=[f"{f}-{l}-{s}" for f, l, s in OTHER_METHOD_CASES])
def test_the_search_auto_does_not_pick_agrees_with_brute_force(family, loss, seed):
    table = instance(family, loss, seed)
    method = "milp" if len(table["data"]["x"][0]) <= solve.AUTO_BNB_MAX_D else "bnb"
    spec = spec_from_dict({**table, "solve": {"method": method}})
    result = solve.solve_global(spec)
    assert result.method == method
    check_against_brute(spec, result, brute(spec))


def test_auto_picks_bnb_with_node_lps_for_the_absolute_loss_in_two_dimensions():
    spec = spec_from_dict(instance("relu", "absolute", 2))  # d = 2
    assert spec.d == 2 and solve.choose_method(spec) == "bnb"


SQUARED_CASES = [(fam, seed) for fam in sorted(HOMOGENEOUS) for seed in range(N_SEEDS)]


@pytest.mark.parametrize("relaxation", ["convexity", "hull"])
@pytest.mark.parametrize("family,seed", SQUARED_CASES, ids=[f"{f}-{s}" for f, s in SQUARED_CASES])
def test_bnb_with_each_node_relaxation_agrees_with_brute_force(family, seed, relaxation):
    """bnb's default ("auto") uses the hull relaxation except for 1-D inputs with n > 100 (the
    convexity relaxation); each is forced here on every case, so both are checked in 1-D and 2-D."""
    spec = spec_from_dict({**instance(family, "squared", seed), "solve": {"method": "bnb"}})
    result = solve.solve_global(spec, strategy=SolveStrategy(bnb=BnbOptions(relaxation=relaxation)))
    assert result.method == "bnb"
    assert result.solver_name == {"convexity": "clarabel+highs", "hull": "nnls+highs"}[relaxation]
    check_against_brute(spec, result, brute(spec))


# The hull relaxation's vertex rays are lines where d hyperplanes meet: d = 3 exercises the
# general cofactor formula (the cases above have d <= 2).
SIZES_D3 = [(3, 6, 1), (3, 5, 2)]
D3_CASES = [(fam, seed) for fam in sorted(HOMOGENEOUS) for seed in range(6)]


@pytest.mark.parametrize("family,seed", D3_CASES, ids=[f"{f}-{s}" for f, s in D3_CASES])
def test_bnb_agrees_with_brute_force_in_three_dimensions(family, seed):
    spec = spec_from_dict({**instance(family, "squared", seed, SIZES_D3), "solve": {"method": "bnb"}})
    result = solve.solve_global(spec)
    assert result.solver_name == "nnls+highs"
    check_against_brute(spec, result, brute(spec))


HINGE_CASES = [("relu", 1, 7, 2), ("relu", 2, 6, 1), ("leaky_relu", 2, 5, 2), ("hardtanh", 1, 6, 1),
               ("hardtanh", 2, 5, 1), ("pwl3", 1, 6, 1), ("two_slope", 1, 6, 2), ("relu", 2, 7, 2),
               ("leaky_relu", 1, 8, 3)]


@pytest.mark.parametrize("method", ["milp", "auto"])
@pytest.mark.parametrize("family,d,n,width", HINGE_CASES)
def test_hinge_loss_agrees_with_brute_force(family, d, n, width, method):
    """auto: bnb (node LPs) for the homogeneous activations, the MILP for the others."""
    rng = np.random.default_rng([d, n, width, sorted(FAMILIES).index(family)])
    X = rng.uniform(-1.0, 1.0, (n, d))
    y = rng.choice([-1.0, 1.0], size=n)
    y[:2] = (-1.0, 1.0)  # both labels present
    spec = spec_from_dict({
        "name": f"hinge-{family}-d{d}n{n}m{width}", "data": {"x": X.tolist(), "y": y.tolist()},
        "network": {"hidden": [width], **FAMILIES[family]}, "loss": {"kind": "hinge"},
        "box": {"weight": 10.0, "output": 10.0}, "solve": {"method": method},
    })
    result = solve.solve_global(spec)
    assert result.method == ("bnb" if method == "auto" and family in HOMOGENEOUS else "milp")
    check_against_brute(spec, result, brute(spec))


INVARIANCE_CASES = [("relu", "squared", 4), ("leaky_relu", "absolute", 7), ("two_slope", "squared", 2),
                    ("hardtanh", "absolute", 0), ("hardtanh", "squared", 5), ("pwl3", "squared", 3),
                    ("pwl3", "absolute", 8)]


@pytest.mark.parametrize("family,loss,seed", INVARIANCE_CASES)
def test_permuting_the_samples_leaves_the_global_risk_unchanged(family, loss, seed):
    table = instance(family, loss, seed)
    perm = np.random.default_rng(seed).permutation(len(table["data"]["y"]))
    permuted = {**table, "name": table["name"] + "-perm",
                "data": {"x": [table["data"]["x"][i] for i in perm], "y": [table["data"]["y"][i] for i in perm]}}
    ref = brute(spec_from_dict(table))
    for t in (table, permuted):
        result = solve.solve_global(spec_from_dict(t))
        assert result.status == "optimal"
        assert abs(result.risk - ref.risk) <= tol(ref.risk), (t["name"], result.risk, ref.risk)


@pytest.mark.parametrize("family,loss,seed", INVARIANCE_CASES)
@pytest.mark.parametrize("factor", [-2.5, 0.4])
def test_scaling_the_targets_scales_the_global_risk(family, loss, seed, factor):
    """y -> c y with the box -> |c| box: v -> c v maps networks onto networks, so R -> c^2 R or |c| R.

    rho = |v| and the scaled weights u~ = rho w, a~ = rho b all scale by |c|.
    """
    table = instance(family, loss, seed)
    box = table["box"]["weight"] * abs(factor)
    scaled = {**table, "name": table["name"] + f"-times{factor}", "box": {"weight": box, "output": box},
              "data": {"x": table["data"]["x"], "y": [factor * v for v in table["data"]["y"]]}}
    ref = brute(spec_from_dict(table))
    expected = ref.risk * (factor**2 if loss == "squared" else abs(factor))
    result = solve.solve_global(spec_from_dict(scaled))
    assert result.status == "optimal"
    assert abs(result.risk - expected) <= tol(expected), (scaled["name"], result.risk, expected)
