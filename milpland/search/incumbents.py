"""First incumbents before any MILP: seeded multistart gradient descent, then exact cell solves.

A good incumbent is the cheapest speed-up of the global solve (DESIGN §3): its risk is
the cutoff of every sign class and its residuals are where the first tangents of the
squared-loss outer approximation go.  The constant fit is a poor cutoff.

1. `multistart_descent`: S networks trained at once (numpy, vectorised over the starts)
   with Adam on the risk R = w sum_i loss(f_i, y_i); every start places each unit's kink
   through a random sample so that no unit starts dead.
2. The distinct activation patterns of the best starts (deduplicated up to a
   permutation of the units, `Cell.key`) are solved exactly as cell problems
   (`CellSolver`, verified with numpy).
3. `cell_descent`: from the best cell optima, flip one tied (sample, unit) pair at a
   time (a pair whose pre-activation sits on a breakpoint at the optimum, so the point
   also lies in the neighbouring cell) and keep a flip when the neighbour's optimum is
   lower.  Each accepted flip strictly lowers the risk, so it terminates.

Nothing here is a certificate: these are upper bounds only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

import milpland.interrupt as interrupt
from milpland.cells.problem import Cell, CellResult, CellSolver
from milpland.cells.scaled import ScaledParams
from milpland.instance.spec import InstanceSpec

TIE_RTOL = 1e-7  # |g_ij - rho_j t| below this (relative to the row scale) counts as a tie


@dataclass(frozen=True)
class MultistartOptions:
    """How hard to look for a first incumbent; starts = 0 switches the search off."""

    starts: int = 64
    iterations: int = 600
    learning_rate: float = 0.03
    cells: int = 8  # distinct patterns of the best starts solved exactly
    descent_rounds: int = 20  # accepted tie flips per cell descent
    descent_cells: int = 3  # cell optima that get a cell descent


@dataclass(frozen=True, eq=False)
class Candidate:
    """A verified cell optimum: an upper bound on the global minimum."""

    risk: float
    theta: ScaledParams
    cell: Cell
    box_active: bool
    fitted: np.ndarray
    found_by: str


def multistart_descent(spec: InstanceSpec, *, starts: int, iterations: int, learning_rate: float,
                       seed: int, deadline: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Adam on S = `starts` networks at once; returns their final patterns (S, n, m) and signs (S, m).

    Stops early, with the networks as they are, at `deadline` or on a stop request (Ctrl-C): an
    iteration costs O(S n m d), which for large data sets would otherwise eat the whole time limit.

    Gradients of f_i = sum_j v_j sigma(z_ij) + c, z_ij = w_j . x_i + b_j:
    df/dv_j = sigma(z_ij), df/dz_ij = v_j sigma'(z_ij), dz/dw_j = x_i, dz/db_j = 1;
    dR/df_i = w * (2 r_i | sign r_i | -y_i [1 - y_i f_i > 0] | -y_i sigma(-y_i f_i)) for squared | absolute |
    hinge | logistic.
    """
    act = spec.network.activation
    X, y = spec.X, spec.y
    n, d = X.shape
    m = spec.width
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(starts, m, d)) / np.sqrt(d)
    anchors = X[rng.integers(0, n, size=(starts, m))]  # (S, m, d): each kink through a sample
    t = np.asarray(act.breakpoints)[rng.integers(0, len(act.breakpoints), size=(starts, m))]
    b = t - np.einsum("smd,smd->sm", W, anchors) + 0.01 * rng.normal(size=(starts, m))
    ys = float(np.std(y)) if np.std(y) > 0 else 1.0
    v = rng.normal(size=(starts, m)) * ys
    c = np.full(starts, float(np.mean(y)) if spec.network.output_bias else 0.0)
    params = [W, b, v, c]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    w = spec.loss.weight(n)
    slopes = np.asarray(act.slopes)
    for step in range(1, iterations + 1):
        if time.perf_counter() > deadline or interrupt.requested():
            break
        Z = np.einsum("nd,smd->snm", X, W) + b[:, None, :]
        H = act(Z)
        f = np.einsum("snm,sm->sn", H, v) + c[:, None]
        df = w * _loss_derivative(spec.loss.kind, f, y)  # (S, n)
        dZ = df[:, :, None] * v[:, None, :] * slopes[act.piece(Z)]
        grads = [np.einsum("snm,nd->smd", dZ, X), dZ.sum(axis=1), np.einsum("sn,snm->sm", df, H),
                 df.sum(axis=1) if spec.network.output_bias else np.zeros(starts)]
        rate = learning_rate * 0.5 * (1.0 + np.cos(np.pi * step / iterations))  # cosine decay
        for p, g, m1, m2 in zip(params, grads, first, second):
            m1 *= 0.9
            m1 += 0.1 * g
            m2 *= 0.999
            m2 += 0.001 * g * g
            p -= rate * (m1 / (1 - 0.9**step)) / (np.sqrt(m2 / (1 - 0.999**step)) + 1e-12)
    Z = np.einsum("nd,smd->snm", X, W) + b[:, None, :]
    f = np.einsum("snm,sm->sn", act(Z), v) + c[:, None]
    risk = w * np.sum(spec.loss.per_sample(f, y[None, :]), axis=1)
    order = np.argsort(risk, kind="stable")
    return act.piece(Z)[order], np.where(v < 0, -1.0, 1.0)[order]


def _loss_derivative(kind: str, f: np.ndarray, y: np.ndarray) -> np.ndarray:
    r = f - y
    if kind == "squared":
        return 2.0 * r
    if kind == "absolute":
        return np.sign(r)
    if kind == "logistic":  # d/df log(1 + exp(-y f)) = -y sigma(-y f)
        return -y * expit(-y * f)
    return np.where(1.0 - y * f > 0, -y, 0.0) * np.ones_like(f)


def first_incumbents(spec: InstanceSpec, cells: CellSolver, options: MultistartOptions, *,
                     seed: int, deadline: float = np.inf, cell_seconds: float = 0.0) -> list[Candidate]:
    """Verified cell optima of the best multistart patterns, improved by cell descent, best first.

    Every step stops at `deadline` (a time.perf_counter() value) or on a stop request: the descent
    with the networks it has, the cell solves with the cells solved so far.  `cell_seconds`: the
    expected time of one cell solve; none is started that would end after the deadline.
    """
    if options.starts <= 0:
        return []
    patterns, signs = multistart_descent(spec, starts=options.starts, iterations=options.iterations,
                                         learning_rate=options.learning_rate, seed=seed, deadline=deadline)
    seen: set[str] = set()
    found: list[Candidate] = []
    for pattern, sign in zip(patterns, signs):
        if time.perf_counter() + cell_seconds > deadline and cell_seconds > 0:
            break
        cell = Cell(pattern=pattern, signs=sign)
        key = cell.key()
        if key in seen:
            continue
        seen.add(key)
        candidate = _solve(cells, cell, "multistart")
        if candidate is not None:
            found.append(candidate)
        if len(seen) >= options.cells or time.perf_counter() > deadline or interrupt.requested():
            break
    found.sort(key=lambda c: c.risk)
    improved = [cell_descent(spec, cells, c, rounds=options.descent_rounds, seen=seen, deadline=deadline)
                for c in found[: options.descent_cells]]
    return sorted(improved + found[options.descent_cells:], key=lambda c: c.risk)


def _solve(cells: CellSolver, cell: Cell, how: str) -> Candidate | None:
    result: CellResult = cells.solve(cell)
    if result.status != "optimal" or result.theta is None:
        return None
    return Candidate(risk=result.risk, theta=result.theta, cell=cell, box_active=result.box_active,
                     fitted=result.fitted, found_by=how)


def tied_pairs(spec: InstanceSpec, theta: ScaledParams) -> list[tuple[int, int, int]]:
    """(sample, unit, neighbouring piece) for every pre-activation on a breakpoint of its unit."""
    act = spec.network.activation
    G = theta.scaled_pre_activations(spec.X)
    rho = np.ones(spec.width) if act.homogeneous else np.asarray(theta.rho, dtype=float)
    scale = (np.abs(spec.X).sum(axis=1, keepdims=True) + 1.0) * (np.abs(theta.U).max(initial=0.0)
                                                                + np.abs(theta.a).max(initial=0.0) + 1e-300)
    out = []
    for b, t in enumerate(act.breakpoints):
        ii, jj = np.nonzero(np.abs(G - rho[None, :] * t) <= TIE_RTOL * scale)
        out += [(int(i), int(j), b) for i, j in zip(ii, jj)]
    return out


def cell_descent(spec: InstanceSpec, cells: CellSolver, start: Candidate, *, rounds: int,
                 seen: set[str], deadline: float = np.inf) -> Candidate:
    """Greedy walk over neighbouring cells through tied pairs (see the module docstring)."""
    best = start
    for _ in range(rounds):
        moved = False
        for i, j, b in tied_pairs(spec, best.theta):
            if time.perf_counter() > deadline or interrupt.requested():
                return best
            pattern = best.cell.pattern.copy()
            pattern[i, j] = b + 1 if pattern[i, j] <= b else b  # the other piece at breakpoint b
            cell = Cell(pattern=pattern, signs=best.cell.signs)
            key = cell.key()
            if key in seen:
                continue
            seen.add(key)
            candidate = _solve(cells, cell, "cell-descent")
            if candidate is not None and candidate.risk < best.risk * (1 - 1e-12):
                best, moved = candidate, True
                break
        if not moved:
            break
    return best
