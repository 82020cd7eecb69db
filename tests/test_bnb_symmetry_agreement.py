"""The pattern branch-and-bound's symmetry rules (orbital branching, lexicographic order, none)
against the independent brute force (tests/bruteforce.py), on widths 3 and 4 where units of equal
sign are interchangeable, and the orbital children on hand-made patterns.

Each rule keeps a different subset of the cells (one permutation of each), so each must reach the
brute force's global risk on its own; the search with no symmetry rule is the reference tree.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_global_agreement import brute, check_against_brute, instance

from milpland.instance.spec import spec_from_dict
from milpland.search import pattern_bnb as pb
from milpland.search import solve
from milpland.search.pattern_bnb import BnbOptions
from milpland.search.solve import SolveStrategy

U = pb.UNDECIDED
RULES = {"orbital": BnbOptions(), "lex": BnbOptions(orbital=False), "none": BnbOptions(symmetry=False)}
# (d, n, width): widths 3-4, where sign classes hold two to four interchangeable units
SIZES = [(1, 6, 4), (2, 5, 3), (1, 7, 3), (2, 6, 3)]
# the default rule (orbital) on 8 seeds a family and loss, the other two on 4
CASES = [(fam, loss, seed, rule) for fam in ("relu", "leaky_relu") for loss in ("squared", "absolute")
         for rule in sorted(RULES) for seed in range(8 if rule == "orbital" else 4)]


@pytest.mark.parametrize("family,loss,seed,rule", CASES, ids=[f"{f}-{l}-{s}-{r}" for f, l, s, r in CASES])
def test_each_symmetry_rule_agrees_with_brute_force(family, loss, seed, rule):
    spec = spec_from_dict({**instance(family, loss, seed, SIZES), "solve": {"method": "bnb"}})
    result = solve.solve_global(spec, strategy=SolveStrategy(bnb=RULES[rule]))
    assert result.method == "bnb"
    check_against_brute(spec, result, brute(spec))


class Identity:
    """A relaxation whose propagation forces nothing: the children are exactly the branching's."""

    @staticmethod
    def propagate(P):
        return P


def node_of(P, signs):
    return pb.Node(bound=0.0, tiebreak=0, pattern=np.asarray(P, dtype=np.int8), signs=np.asarray(signs, float))


def branch(P, signs, i, j, **rule):
    outcome = pb.NodeOutcome(bound=0.0, theta=None, excess=None)
    kids = pb.children(node_of(P, signs), i, j, Identity(), None, outcome, itertools.count(), **rule)
    return [k.pattern for k in kids]


def test_the_orbit_is_the_equal_sign_units_with_the_same_column():
    P = np.array([[1, 1, 1, 1], [U, U, 0, U], [0, 0, 0, 0]], dtype=np.int8)
    signs = np.array([1.0, 1.0, 1.0, -1.0])
    assert pb.orbit(P, signs, 0).tolist() == [0, 1]  # unit 2 differs in row 1, unit 3 in sign
    assert pb.orbit(P, signs, 1).tolist() == [0, 1]
    assert pb.orbit(P, signs, 2).tolist() == [2]
    assert pb.orbit(P, signs, 3).tolist() == [3]


def test_orbital_branching_sets_the_first_unit_on_top_and_the_whole_orbit_at_the_bottom():
    P = np.full((3, 3), U, dtype=np.int8)
    signs = [1.0, 1.0, 1.0]
    bottom, top = branch(P, signs, 1, 2)  # branching on unit 2: its orbit is all three units
    assert bottom.tolist() == [[U, U, U], [0, 0, 0], [U, U, U]]
    assert top.tolist() == [[U, U, U], [1, U, U], [U, U, U]]
    bottom, top = branch(P, signs, 1, 2, orbital=False)  # lexicographic rule: unit 2 alone
    assert bottom.tolist() == [[U, U, U], [U, U, 0], [U, U, U]]
    assert top.tolist() == [[U, U, U], [U, U, 1], [U, U, U]]


def test_orbital_children_hold_one_permutation_of_every_completion():
    """Over all completions of a node of 3 samples and 3 equal-sign units: every completion's set of
    columns (a multiset: the units are interchangeable) is a completion of one of the two orbital
    children, counted by brute force over the 2^9 patterns."""
    P = np.array([[1, 1, 0], [U, U, U], [U, U, U]], dtype=np.int8)
    signs = [1.0, 1.0, 1.0]
    kids = branch(P, signs, 1, 1)
    assert len(kids) == 2

    def completions(Q):
        free = np.argwhere(Q == U)
        for bits in itertools.product((0, 1), repeat=len(free)):
            C = Q.copy()
            C[tuple(free.T)] = bits
            yield C

    def multiset(C):
        return tuple(sorted(map(tuple, C.T)))

    parent = {multiset(C) for C in completions(P)}
    covered = set().union(*({multiset(C) for C in completions(K)} for K in kids))
    assert parent == covered
    # and the children are smaller than the parent: the bottom child drops every completion with
    # sample 1 on top of unit 0 or 1 (unit 2 differs in row 0 and is not in the orbit)
    assert sum(1 for _ in completions(kids[0])) + sum(1 for _ in completions(kids[1])) < 2 ** 6
