"""Unit patterns: which pieces one hidden unit can give the samples (DESIGN §2).

A hidden unit assigns every sample i a piece k_i through one affine
function z_i = w . x_i + b (for rho > 0, z = g / rho).  A pattern is *strictly realisable*
when some (w, b) puts every z_i in the open piece: t_{k_i - 1} < z_i < t_{k_i}.  Only those
are enumerated: their open cells are disjoint, open and dense (the rest of parameter space
lies on the hyperplanes g_ij = rho_j t), so the closed cells of the strict patterns cover
the whole box, and a local minimum of R in a closed cell C is a minimum of the convex
problem of C.  Enumerating the strict cells and certifying each cell optimum therefore
finds every local minimum (up to the certificates' tolerances).

- d = 1: z is monotone along the sorted inputs, so a pattern is a non-decreasing or a
  non-increasing assignment of pieces to the distinct x values (samples with equal x
  share their piece).  With at most two breakpoints every such assignment is realisable
  (an affine map can send any two cut positions to t_1 < t_2); with more breakpoints each
  one is checked by the LP below.
- general d (and neighbour patterns with some pieces fixed, used by the certificates):
  depth-first search over the samples, extending a partial assignment one sample at a time
  and pruning with the LP  max eps  s.t.  t_{k_i - 1} + eps <= w . x_i + b <= t_{k_i} - eps,
  eps <= 1:  the partial pattern is strictly realisable iff eps* > 0, and a pattern is only
  realisable if each of its prefixes is.  For two pieces these are the dichotomies of the
  lifted points (x_i, 1); for more pieces, nested dichotomies with fixed threshold ratios.
"""

from __future__ import annotations

import itertools
import math

import highspy
import numpy as np

from milpland.cells.problem import Cell
from milpland.cells.scaled import sign_class
from milpland.errors import MilplandError
from milpland.instance.activations import Activation

REALIZE_TOL = 1e-9  # strict realisability: the LP margin eps* (in units of z) must exceed this
HIGHS_INF = highspy.kHighsInf


class Realizer:
    """Strict realisability of (partial) unit patterns by one LP each (reused HiGHS object)."""

    def __init__(self, X: np.ndarray, act: Activation):
        self.X = np.asarray(X, dtype=float)
        self.t_lo = np.array([act.lower(k) for k in range(act.n_pieces)], dtype=float)
        self.t_hi = np.array([act.upper(k) for k in range(act.n_pieces)], dtype=float)
        self.lp_solves = 0
        h = highspy.Highs()
        for name, value in (("output_flag", False), ("threads", 1), ("presolve", "off"),
                            ("primal_feasibility_tolerance", 1e-10), ("dual_feasibility_tolerance", 1e-10)):
            h.setOptionValue(name, value)
        self._h = h

    def margin(self, samples: np.ndarray, pieces: np.ndarray) -> float:
        """max eps s.t. t_lo[k_i] + eps <= w . x_i + b <= t_hi[k_i] - eps (eps <= 1); -1 if infeasible."""
        samples = np.asarray(samples, dtype=int)
        pieces = np.asarray(pieces, dtype=int)
        d = self.X.shape[1]
        lo, hi = self.t_lo[pieces], self.t_hi[pieces]
        rows, rl, ru = [], [], []
        for i, a, b in zip(samples, lo, hi):
            if np.isfinite(a):
                rows.append(np.concatenate([self.X[i], [1.0, -1.0]]))
                rl.append(a)
                ru.append(HIGHS_INF)
            if np.isfinite(b):
                rows.append(np.concatenate([self.X[i], [1.0, 1.0]]))
                rl.append(-HIGHS_INF)
                ru.append(b)
        if not rows:
            return 1.0
        M = np.array(rows)
        nc = d + 2
        cost = np.zeros(nc)
        cost[-1] = -1.0  # maximise eps
        cl = np.concatenate([np.full(d + 1, -HIGHS_INF), [0.0]])
        cu = np.concatenate([np.full(d + 1, HIGHS_INF), [1.0]])
        nz = np.nonzero(M)
        indptr = np.zeros(M.shape[0] + 1, dtype=np.int32)
        np.cumsum(np.bincount(nz[0], minlength=M.shape[0]), out=indptr[1:])
        h = self._h
        # integrality given explicitly: HiGHS reads an empty array as garbage
        h.passModel(nc, M.shape[0], len(nz[0]), 2, 1, 0.0, cost, cl, cu, np.array(rl), np.array(ru),
                    indptr, nz[1].astype(np.int32), M[nz], np.zeros(nc, dtype=np.int32))
        h.run()
        self.lp_solves += 1
        status = h.getModelStatus()
        if status == highspy.HighsModelStatus.kOptimal:
            return float(h.getSolution().col_value[-1])
        if status == highspy.HighsModelStatus.kInfeasible:
            return -1.0
        return self._margin_with_presolve(cost, M, np.array(rl), np.array(ru), d)

    def _margin_with_presolve(self, cost, M, rl, ru, d) -> float:
        """The margin LP again through scipy's HiGHS with presolve.  Without presolve HiGHS ended
        some of these LPs with status "unknown" (measured: 2 of the 84 cells of 7 points in 3-D,
        which were then missing from the enumeration)."""
        from scipy.optimize import linprog

        finite_hi, finite_lo = np.isfinite(ru), np.isfinite(rl)
        A_ub = np.vstack([M[finite_hi], -M[finite_lo]])
        b_ub = np.concatenate([ru[finite_hi], -rl[finite_lo]])
        res = linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=[(None, None)] * (d + 1) + [(0.0, 1.0)], method="highs")
        if res.status == 0:
            return float(res.x[-1])
        if res.status == 2:
            return -1.0
        raise MilplandError(f"realisability LP failed twice (HiGHS status {res.status}: {res.message})")

    def realizable(self, samples, pieces) -> bool:
        return self.margin(samples, pieces) > REALIZE_TOL


def unit_patterns(X: np.ndarray, act: Activation, *, allowed=None, realizer: Realizer | None = None,
                  limit: int | None = None) -> np.ndarray:
    """All strictly realisable unit patterns, as a (P, n) int array in lexicographic order.

    ``allowed[i]`` (optional) restricts sample i to a set of pieces -- the certificates use it
    for the patterns of a unit that keep the untied samples' pieces.  ``limit``: stop once that
    many are found (then only ``limit`` patterns are returned; callers use it to learn "at least").
    """
    X = np.asarray(X, dtype=float)
    n = X.shape[0]
    K = act.n_pieces
    realizer = realizer or Realizer(X, act)
    if allowed is None and X.shape[1] == 1:
        return _monotone_patterns(X[:, 0], act, realizer)
    sets = [list(range(K))] * n if allowed is None else [sorted({int(k) for k in a}) for a in allowed]
    if any(not s for s in sets):
        return np.zeros((0, n), dtype=np.int64)
    fixed = np.array([i for i in range(n) if len(sets[i]) == 1], dtype=int)
    free = [i for i in range(n) if len(sets[i]) > 1]
    base = np.full(n, -1, dtype=np.int64)
    base[fixed] = [sets[i][0] for i in fixed]
    if not realizer.realizable(fixed, base[fixed]):
        return np.zeros((0, n), dtype=np.int64)
    found = []
    stack = [(0, base)]
    while stack:
        level, assign = stack.pop()
        if level == len(free):
            found.append(assign)
            if limit is not None and len(found) >= limit:
                break
            continue
        i = free[level]
        for k in sets[i]:
            nxt = assign.copy()
            nxt[i] = k
            idx = np.flatnonzero(nxt >= 0)
            if realizer.realizable(idx, nxt[idx]):
                stack.append((level + 1, nxt))
    if not found:
        return np.zeros((0, n), dtype=np.int64)
    return np.array(sorted(map(tuple, found)), dtype=np.int64)


def _monotone_patterns(x: np.ndarray, act: Activation, realizer: Realizer) -> np.ndarray:
    """d = 1: monotone assignments of pieces along the sorted distinct inputs, both directions."""
    values, group = np.unique(x, return_inverse=True)
    K = act.n_pieces
    seqs = set()
    for seq in itertools.combinations_with_replacement(range(K), len(values)):
        seqs.add(seq)
        seqs.add(seq[::-1])
    patterns = sorted(tuple(np.asarray(s)[group].tolist()) for s in seqs)
    if len(act.breakpoints) > 2:  # fixed threshold ratios: not every monotone assignment is realisable
        n = len(x)
        patterns = [p for p in patterns if realizer.realizable(np.arange(n), np.asarray(p))]
    return np.array(patterns, dtype=np.int64).reshape(len(patterns), len(x))


# Cells: multisets of unit patterns per sign class (DESIGN §5c); the landscape enumeration and the
# weight-decay solve (search/decay_solve.py) both walk them.


def sign_classes(act: Activation, width: int) -> list[int]:
    """Numbers of positive units, all-positive first; odd activations need only that one."""
    return [width] if act.odd else list(range(width, -1, -1))


def count_cells(n_patterns: int, width: int, act: Activation) -> int:
    """Multisets of unit patterns per sign class: sum_p C(P + p - 1, p) C(P + m - p - 1, m - p)."""
    P = int(n_patterns)
    return sum(math.comb(P + p - 1, p) * math.comb(P + width - p - 1, width - p)
               for p in sign_classes(act, width))


def patterns_for_cells(max_cells: int, width: int, act: Activation) -> int:
    """The fewest unit patterns whose cells (`count_cells`, increasing in P) exceed max_cells."""
    P = 1
    while count_cells(P, width, act) <= max_cells:
        P *= 2
    lo, hi = P // 2, P  # count(lo) <= max_cells < count(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count_cells(mid, width, act) <= max_cells else (lo, mid)
    return hi


def generate_cells(patterns: np.ndarray, width: int, act: Activation):
    """Every cell (one per multiset of unit patterns and sign class), canonical unit order."""
    P = patterns.shape[0]
    for n_pos in sign_classes(act, width):
        signs = sign_class(n_pos, width)
        for pos in itertools.combinations_with_replacement(range(P), n_pos):
            for neg in itertools.combinations_with_replacement(range(P), width - n_pos):
                yield Cell(patterns[list(pos) + list(neg)].T, signs).canonical()
