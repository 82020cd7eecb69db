"""Local minima reached by gradient descent from many seeded random starts (DESIGN §5).

**Descent.**  Full-batch gradient descent on the ordinary weights theta = (W1, b1, v, c),
vectorised over S starts at once (arrays (S, m, d), (S, m), (S, m), (S,)).  Gradients of
R = w sum_i loss(f_i, y_i):  dR/df_i = w loss'(f_i, y_i) (2 r_i, sign(r_i), or -y_i [y_i f_i < 1]),
dR/dv_j = sum_i dR/df_i sigma(z_ij), dR/dc = sum_i dR/df_i, and with
D_ij = dR/df_i v_j sigma'(z_ij):  dR/dW1_j = sum_i D_ij x_i, dR/db1_j = sum_i D_ij (sigma' of
the piece `Activation.piece` picks; a breakpoint gets the lower piece's slope).
Each start has its own step size: a step is accepted when it satisfies the Armijo condition
R(theta - eta g) <= R(theta) - 1e-4 eta |g|^2, after which eta grows by 1.5; a rejected step
halves eta and leaves theta alone.  A start stops when |g| <= gtol (converged), when eta
underflows (stalled: at a kink of a non-smooth loss, or a flat ridge), or at ``max_iter``.

Starts: W1 ~ N(0, 1/d), b1 ~ N(0, 1), v ~ N(0, 1/m), c = 0 (numpy's default_rng(seed)).

**Certification.**  Each end point lies in the closed cell of its pattern (ties go to the
lower piece).  That cell is solved and its optimum certified (`Certifier`, found_by "sample").
The choice of piece on a tie does not matter: if the end point is a local minimum then, R
being convex on every closed cell containing it, it minimises each of them, and the
certificate of any of those cells examines a relative-interior point of the same optimal
face.  A start *ends in* a minimum when its end cell certifies to it; ``basin_fraction`` is
the fraction of all starts that end in the minimum.  Starts whose cell optimum is not a local
minimum (the descent stopped at a saddle, on a plateau, or short of the cell's optimum and
its cell has no local minimum) are counted, not reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from milpland.cells.certificates import Certifier, match_minimum
from milpland.cells.problem import Cell
from milpland.errors import MilplandError
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import InstanceSpec

DEFAULT_STARTS = 100
MAX_ITER = 3000
GTOL = 1e-8  # gradient norm (risk units per unit weight) at which a start has converged
ARMIJO = 1e-4
ETA0 = 0.1
ETA_MIN = 1e-14
Progress = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class Descent:
    """End points of the vectorised descent, one row per start."""

    W1: np.ndarray  # (S, m, d)
    b1: np.ndarray  # (S, m)
    v: np.ndarray  # (S, m)
    c: np.ndarray  # (S,)
    risk: np.ndarray  # (S,)
    grad_norm: np.ndarray  # (S,)
    iterations: np.ndarray  # (S,) accepted + rejected steps
    converged: np.ndarray  # (S,) bool: |g| <= gtol
    stalled: np.ndarray  # (S,) bool: step size underflow
    seconds: float

    def params(self, s: int) -> OneHiddenParams:
        return OneHiddenParams(W1=self.W1[s].copy(), b1=self.b1[s].copy(), v=self.v[s].copy(), c=float(self.c[s]))


def _value_and_grad(spec: InstanceSpec, W, b, v, c):
    """Risk (S,) and its gradient w.r.t. (W, b, v, c) for every start (see the module docstring)."""
    act = spec.network.activation
    X, y = spec.X, spec.y
    Z = np.einsum("nd,smd->snm", X, W) + b[:, None, :]
    k = act.piece(Z)
    slopes = np.asarray(act.slopes)[k]
    A = slopes * Z + np.asarray(act.intercepts)[k]
    f = np.einsum("snm,sm->sn", A, v) + c[:, None]
    w = spec.loss.weight(spec.n)
    r = f - y[None, :]
    kind = spec.loss.kind
    if kind == "squared":
        risk = w * np.sum(r * r, axis=1)
        gf = 2.0 * w * r
    elif kind == "absolute":
        risk = w * np.sum(np.abs(r), axis=1)
        gf = w * np.sign(r)
    else:
        margin = 1.0 - y[None, :] * f
        risk = w * np.sum(np.maximum(margin, 0.0), axis=1)
        gf = -w * y[None, :] * (margin > 0)
    gv = np.einsum("sn,snm->sm", gf, A)
    gc = np.sum(gf, axis=1) if spec.network.output_bias else np.zeros(len(c))
    D = gf[:, :, None] * v[:, None, :] * slopes
    gW = np.einsum("snm,nd->smd", D, X)
    gb = np.sum(D, axis=1)
    return risk, (gW, gb, gv, gc)


def descend(spec: InstanceSpec, *, starts: int, seed: int, max_iter: int = MAX_ITER, gtol: float = GTOL) -> Descent:
    """Armijo gradient descent from ``starts`` seeded random points, all at once."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    S, m, d = starts, spec.width, spec.d
    W = rng.normal(scale=1.0 / np.sqrt(d), size=(S, m, d))
    b = rng.normal(size=(S, m))
    v = rng.normal(scale=1.0 / np.sqrt(m), size=(S, m))
    c = np.zeros(S)
    eta = np.full(S, ETA0)
    risk, g = _value_and_grad(spec, W, b, v, c)
    iters = np.zeros(S, dtype=np.int64)
    active = np.ones(S, dtype=bool)
    converged = np.zeros(S, dtype=bool)
    stalled = np.zeros(S, dtype=bool)
    gnorm = _norm(g)
    for _ in range(max_iter):
        converged |= active & (gnorm <= gtol)
        stalled |= active & (eta < ETA_MIN)
        active &= ~(converged | stalled)
        if not active.any():
            break
        idx = np.flatnonzero(active)
        e = eta[idx]
        tW = W[idx] - e[:, None, None] * g[0][idx]
        tb = b[idx] - e[:, None] * g[1][idx]
        tv = v[idx] - e[:, None] * g[2][idx]
        tc = c[idx] - e * g[3][idx]
        t_risk, t_g = _value_and_grad(spec, tW, tb, tv, tc)
        ok = t_risk <= risk[idx] - ARMIJO * e * gnorm[idx] ** 2
        acc = idx[ok]
        W[acc], b[acc], v[acc], c[acc] = tW[ok], tb[ok], tv[ok], tc[ok]
        risk[acc] = t_risk[ok]
        for full, part in zip(g, t_g):
            full[acc] = part[ok]
        gnorm[acc] = _norm(t_g)[ok]
        eta[idx] = np.where(ok, e * 1.5, e * 0.5)
        iters[idx] += 1
    converged |= active & (gnorm <= gtol)
    return Descent(W1=W, b1=b, v=v, c=c, risk=risk, grad_norm=gnorm, iterations=iters, converged=converged,
                   stalled=stalled & ~converged, seconds=time.perf_counter() - t0)


def _norm(g) -> np.ndarray:
    gW, gb, gv, gc = g
    return np.sqrt(np.sum(gW**2, axis=(1, 2)) + np.sum(gb**2, axis=1) + np.sum(gv**2, axis=1) + gc**2)


@dataclass
class Sampling:
    """What `sample_minima` found; `landscape` turns it into a LandscapeResult."""

    minima: list  # LocalMinimum, found_by "sample", with basin_fraction
    descent: Descent
    counts: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


def sample_minima(spec: InstanceSpec, *, starts: int = DEFAULT_STARTS, seed: int = 0, max_iter: int = MAX_ITER,
                  gtol: float = GTOL, progress: Progress | None = None, certifier=None) -> Sampling:
    """Descend from ``starts`` seeded random points, certify every end cell, count the basins."""
    if spec.network.depth != 1:
        raise MilplandError(f"network.hidden: sampling handles one hidden layer, got {list(spec.network.hidden)}")
    if not (isinstance(starts, int) and starts >= 1):
        raise MilplandError(f"--starts: must be a positive integer, got {starts!r}")
    say = progress or (lambda _msg: None)
    descent = descend(spec, starts=starts, seed=seed, max_iter=max_iter, gtol=gtol)
    say(f"{starts} descents: {int(descent.converged.sum())} converged, {int(descent.stalled.sum())} stalled, "
        f"{descent.seconds:.1f} s")
    t1 = time.perf_counter()
    certifier = certifier or Certifier(spec)
    act = spec.network.activation
    groups: dict[tuple, list[int]] = {}
    cells: dict[tuple, Cell] = {}
    for s in range(starts):
        cell = Cell.of_params(descent.params(s), spec.X, act)
        key = certifier.cache_key(cell)
        groups.setdefault(key, []).append(s)
        cells.setdefault(key, cell)
    counts = {"starts": starts, "converged": int(descent.converged.sum()), "stalled": int(descent.stalled.sum()),
              "end_cells": len(groups), "ended_in_minimum": 0, "not_local": 0, "box_limited": 0,
              "not_attained": 0, "undetermined": 0}
    minima, basins = [], []
    fits = np.zeros((0, spec.n))
    messages = []
    status_count = {"not_local_minimum": "not_local", "box_limited": "box_limited", "not_attained": "not_attained",
                    "undetermined": "undetermined"}
    for key, members in groups.items():
        verdict = certifier.certify(cells[key], found_by="sample")
        if verdict.status != "local_minimum":
            counts[status_count[verdict.status]] += len(members)
            if verdict.status == "undetermined" and len(messages) < 5:
                messages.append(f"cell {verdict.cell}: {verdict.reason}")
            continue
        counts["ended_in_minimum"] += len(members)
        m = verdict.minimum
        at = match_minimum(m.fitted, fits, spec)
        if at < 0:
            minima.append(m)
            basins.append(len(members))
            fits = np.vstack([fits, m.fitted[None, :]])
        else:
            basins[at] += len(members)
            if m.certificate == "interior" and minima[at].certificate != "interior":
                minima[at] = m
    minima = [replace(m, basin_fraction=count / starts) for m, count in zip(minima, basins)]
    counts["distinct_minima"] = len(minima)
    counts["cell_solves"] = certifier.cell_solves
    t_cert = time.perf_counter() - t1
    say(f"{len(groups)} end cells, {len(minima)} distinct local minima; certification {t_cert:.1f} s")
    return Sampling(minima=sorted(minima, key=lambda m: m.risk), descent=descent, counts=counts,
                    seconds={"descent": descent.seconds, "certificates": t_cert}, messages=messages)
