"""The pattern branch-and-bound's pieces (milpland/pattern_bnb.py), each against an independent answer.

The end-to-end agreement with the brute-force enumeration is in tests/test_global_agreement.py.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from milpland.cells.problem import Cell, CellSolver
from milpland.cells.scaled import sign_class
from milpland.errors import MilplandError
from milpland.instance.spec import spec_from_dict
from milpland.search import pattern_bnb as pb

U = pb.UNDECIDED


def spec_of(X, y, *, width=2, activation="relu", loss="squared", box=10.0, **extra):
    return spec_from_dict({
        "name": "bnb-test", "data": {"x": np.asarray(X).tolist(), "y": np.asarray(y).tolist()},
        "network": {"hidden": [width], "activation": activation, **extra}, "loss": {"kind": loss},
        "box": {"weight": box, "output": box},
    })


def test_threshold_rule_completes_a_rising_unit():
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    P = np.full((5, 1), U, dtype=np.int8)
    P[1, 0], P[3, 0] = 0, 1  # bottom at x = 1, top at x = 3: kink in [1, 3], rising
    out = pb.propagate_1d(P, x)
    assert out[:, 0].tolist() == [0, 0, U, 1, 1]


def test_threshold_rule_completes_a_falling_unit_and_rejects_a_non_threshold():
    x = np.array([3.0, 0.0, 4.0, 1.0, 2.0])  # unsorted on purpose
    P = np.full((5, 1), U, dtype=np.int8)
    P[3, 0], P[0, 0] = 1, 0  # top at x = 1, bottom at x = 3: falling
    assert pb.propagate_1d(P, x)[:, 0].tolist() == [0, 1, 0, 1, U]
    P = np.full((5, 1), U, dtype=np.int8)
    P[1, 0], P[2, 0], P[4, 0] = 1, 1, 0  # top at 0 and 4, bottom at 2 between: no threshold
    assert pb.propagate_1d(P, x) is None


def test_lexicographic_order_only_between_units_of_equal_sign():
    P = np.array([[0, 1], [1, 0]], dtype=np.int8)  # column 0 < column 1 at the first difference
    assert not pb.lex_ordered(P, np.array([1.0, 1.0]))
    assert pb.lex_ordered(P, np.array([1.0, -1.0]))
    assert pb.lex_ordered(P[:, ::-1], np.array([1.0, 1.0]))
    undecided_first = np.array([[U, 1], [0, 1]], dtype=np.int8)
    assert pb.lex_ordered(undecided_first, np.array([1.0, 1.0]))


def test_one_dimensional_convexity_simplices_are_the_sorted_neighbours():
    X = np.array([[2.0], [0.0], [3.0], [1.0]])
    triples = {(k, S): lam for k, S, lam in pb.convexity_simplices(X)}
    assert set(triples) == {(3, (1, 0)), (0, (3, 2))}
    assert triples[(3, (1, 0))] == pytest.approx([0.5, 0.5])  # 1 = (0 + 2) / 2


def test_applies_names_what_it_cannot_do():
    X, y = [[0.0], [1.0]], [0.0, 1.0]
    assert pb.applies(spec_of(X, y)) is None
    assert pb.applies(spec_of(X, y, loss="absolute")) is None
    assert "hardtanh" in pb.applies(spec_of(X, y, activation="hardtanh"))
    with pytest.raises(MilplandError, match="absolute"):
        pb.Relaxation(spec_of(X, y, loss="absolute"))
    on_a_line = [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]  # no affine basis: the hull (and its LP) is not built
    assert pb.applies(spec_of(on_a_line, [0.0, 1.0, 0.0])) is None
    assert "hull" in pb.applies(spec_of(on_a_line, [0.0, 1.0, 0.0], loss="absolute"))


def completions(P: np.ndarray):
    free = np.argwhere(P == U)
    for bits in itertools.product((0, 1), repeat=len(free)):
        Q = P.copy()
        for (i, j), b in zip(free, bits):
            Q[i, j] = b
        yield Q.astype(int)


@pytest.mark.parametrize("relaxation,loss", [("convexity", "squared"), ("hull", "squared"),
                                             ("hull", "absolute"), ("hull", "hinge")])
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("activation,extra", [("relu", {}), ("leaky_relu", {"alpha": 0.2}),
                                              ("two_slope", {"s_plus": 0.6, "s_minus": 1.4})])
def test_node_bound_is_below_every_completion(seed, activation, extra, relaxation, loss):
    """The certified node bound never exceeds the best cell among the completions of the partial
    pattern (each cell solved by the verified CellSolver), and equals the cell optimum when the
    pattern is complete (the hull relaxation drops the weight box: there only when the cell's
    optimum does not touch it).  Absolute and hinge: the hull's node LP (milpland/hull_lp.py)."""
    rng = np.random.default_rng(seed)
    d = 1 + seed % 2
    n, m = 5, 2
    X = rng.uniform(-1, 1, (n, d))
    y = rng.choice([-1.0, 1.0], size=n) if loss == "hinge" else rng.normal(size=n)
    spec = spec_of(X, y, width=m, activation=activation, loss=loss, **extra)
    relaxation = pb.Relaxation(spec) if relaxation == "convexity" else pb.HullRelaxation(spec)
    cells = CellSolver(spec.X, spec.y, spec.network.activation, spec.loss, spec.box)
    signs = sign_class(int(rng.integers(0, m + 1)), m)
    P = rng.integers(0, 2, size=(n, m)).astype(np.int8)
    P[rng.random((n, m)) < 0.4] = U
    best = min(cells.solve(Cell(pattern=Q, signs=signs)).risk for Q in completions(P))
    node = pb.Node(bound=0.0, tiebreak=0, pattern=P, signs=signs)
    bound = relaxation.evaluate(node).bound
    assert bound <= best + 1e-9 * max(1.0, best)
    full = np.where(P == U, 1, P).astype(np.int8)
    exact = cells.solve(Cell(pattern=full.astype(int), signs=signs))
    full_bound = relaxation.evaluate(pb.Node(bound=0.0, tiebreak=0, pattern=full, signs=signs)).bound
    assert full_bound <= exact.risk + 1e-9 * max(1.0, exact.risk)
    if not exact.box_active:
        assert full_bound >= exact.risk - 1e-6 * max(1.0, exact.risk)


def test_lower_bound_is_valid_for_arbitrary_multipliers():
    """Any z and lam >= 0 give a bound below the node optimum (here: the cell optimum)."""
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, (6, 1))
    y = rng.normal(size=6)
    spec = spec_of(X, y)
    relaxation = pb.Relaxation(spec)
    P = rng.integers(0, 2, size=(6, 2)).astype(np.int8)
    signs = sign_class(1, 2)
    exact = CellSolver(spec.X, spec.y, spec.network.activation, spec.loss, spec.box).solve(
        Cell(pattern=P.astype(int), signs=signs))
    prob = relaxation.problem(P, signs)
    for _ in range(20):
        z = rng.normal(size=prob.Phi.shape[1])
        lam = rng.exponential(size=prob.A.shape[0])
        assert relaxation.lower_bound(prob, z, lam) <= exact.risk + 1e-12


def test_bench_runs_both_searches_and_they_agree_with_the_brute_force(tmp_path):
    from bruteforce import brute_force_global

    from milpland.runs.bench import run_bench

    rng = np.random.default_rng(11)
    X = np.sort(rng.uniform(-1, 1, (7, 1)), axis=0)
    y = np.abs(X[:, 0]) - 0.3 + 0.1 * rng.normal(size=7)
    path = tmp_path / "v.toml"
    path.write_text(f'name = "vee"\n[data]\nx = {X.tolist()}\ny = {y.tolist()}\n[network]\nhidden = [2]\n'
                    '[box]\nweight = 10.0\n')
    seen = []
    table = run_bench([str(path)], methods=["bnb", "milp", "scip"], on_row=lambda rows: seen.append(len(rows)))
    spec = spec_of(X, y)
    ref = brute_force_global(spec.X, spec.y, spec.network.activation, spec.loss, 10.0, 10.0, True, width=2)
    assert list(table["method"]) == ["milp", "bnb", "scip"]
    assert seen == [1, 2, 3]  # the table so far after every row
    assert list(table["status"]) == ["optimal", "optimal", "optimal"]  # SCIP runs in a child process
    assert np.allclose(table["risk"], ref.risk, rtol=1e-6, atol=1e-12)


def test_a_baseline_that_crashes_its_process_becomes_an_error_not_a_dead_benchmark():
    """run_in_child (SCIP's wrapper) turns a native crash (os.abort) into RuntimeError and passes
    results and user errors through."""
    import os

    from milpland.runs.bench import run_in_child

    with pytest.raises(RuntimeError, match="died"):
        run_in_child(os.abort, (), limit=60)
    assert run_in_child(divmod, (7, 3), limit=60) == (2, 1)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        run_in_child(divmod, (1, 0), limit=60)

