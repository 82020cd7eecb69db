"""Upper bounds for deeper networks: good points, each a network whose risk is re-evaluated with numpy.

Any depth (`descend`, `multistart`): full-batch L-BFGS on the ordinary weights from seeded random
starts and from given seeds (one-hidden-layer solutions carried into the deep net, constructions).

Two hidden layers on 1-D data (`first_incumbents`, `knots_global`, `best_at_knots`): once the
knots of layer 1 are fixed the rest is a one-hidden-layer problem on the features
phi_j(x) = sigma(s_j (x - t_j)) (DESIGN §6a), which milpland solves exactly: `knots_global` takes
the knots of a point and returns the best network with those knots (over the same box);
`best_at_knots` only solves the point's own layer-2 cell (a convex QP), cheap enough for the
search's relaxation points.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

import milpland.interrupt as interrupt
from milpland.cells.problem import Cell, CellSolver
from milpland.errors import MilplandError
from milpland.instance.deep import DeepParams
from milpland.instance.spec import Box, InstanceSpec, NetworkSpec, SolveOptions
from milpland.search.deep_model import CanonicalNet, TwoLayerData, canonical_from_params

KNOTS_SHARE = 0.5  # of the incumbent budget, at most this much goes to exact solves at fixed knots
MAX_KNOT_SETS = 3  # the shallow solve's knots and those of the best descents
KNOTS_SECONDS = 2.0  # time limit of one exact solve at fixed knots (its best point is used either way)
KNOTS_MILP_MAX_N = 12  # up to this many samples the solves at fixed knots use the MILP: on 3-4 samples with a
# box-1 feature spec the pattern search hit its 2 s limit where the MILP finished in under a second
# (models/suites/deep-scip.toml, five random knot sets each, shared machine)
DESCENT_ITERATIONS = 300  # L-BFGS iterations of a first-incumbent descent


@dataclass
class DeepIncumbent:
    """The best network found so far (canonical coordinates) and who found it."""

    risk: float
    net: CanonicalNet
    found_by: str

    def update(self, net: CanonicalNet, risk: float, found_by: str) -> None:
        self.risk, self.net, self.found_by = float(risk), net, found_by


# ----------------------------------------------------------------------------------------------
# Any depth: descent from random starts and from seeds
# ----------------------------------------------------------------------------------------------


def risk_of(params: DeepParams, spec: InstanceSpec) -> float:
    return spec.loss.risk(params.forward(spec.X, spec.network.activation), spec.y)


def loss_gradient(params: DeepParams, spec: InstanceSpec) -> np.ndarray | None:
    """∇R by back-propagation (plain numpy), flat in DeepParams.flat order; None where R is not differentiable.

    With δ_L = ∂R/∂f (w·2(f − y), w·sign(f − y), −w·y·[1 − y f > 0]), ∂R/∂W[l] = δ_lᵀ a^{l−1},
    ∂R/∂b[l] = Σ_i δ_l, δ_{l−1} = (δ_l W[l]) ⊙ σ′(z^{l−1}).  Valid off the breakpoints (the
    caller checks the margin) and off the loss's own kink.  The output bias of a spec without
    one is held at 0 (its gradient entry is zeroed).
    """
    X, y, act, loss = spec.X, spec.y, spec.network.activation, spec.loss
    n = X.shape[0]
    w = loss.weight(n)
    Z = params.pre_activations(X, act)
    A = [X] + [act(z) for z in Z]
    f = params.forward(X, act)
    r = f - y
    scale = max(1.0, float(np.max(np.abs(y))))
    if loss.kind == "squared":
        delta = 2.0 * w * r
    elif loss.kind == "absolute":
        if np.any(np.abs(r) <= 1e-12 * scale):
            return None
        delta = w * np.sign(r)
    else:
        s = 1.0 - y * f
        if np.any(np.abs(s) <= 1e-12):
            return None
        delta = -w * y * (s > 0)
    delta = delta[:, None]
    gW, gb = [None] * len(params.W), [None] * len(params.W)
    for l in range(len(params.W) - 1, -1, -1):
        gW[l] = delta.T @ A[l]
        gb[l] = delta.sum(axis=0)
        if l > 0:
            delta = (delta @ params.W[l]) * act.derivative(Z[l - 1])
    if not spec.network.output_bias:
        gb[-1] = np.zeros_like(gb[-1])
    return np.concatenate([np.concatenate([a.ravel(), b]) for a, b in zip(gW, gb)])


def descend(spec: InstanceSpec, start: DeepParams, *, max_iter: int = 2000) -> DeepParams:
    """Full-batch L-BFGS on the ordinary weights from ``start`` (a subgradient at kinks)."""

    def fun(theta):
        p = start.from_flat(theta)
        g = loss_gradient(p, spec)
        if g is None:  # on the loss's own kink: any subgradient-like value keeps L-BFGS going
            g = np.zeros_like(theta)
        return risk_of(p, spec), g

    def stop_when_asked(_intermediate) -> None:  # Ctrl-C (interrupt.polling) ends the run where it is
        if interrupt.requested():
            raise StopIteration

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = minimize(fun, start.flat(), jac=True, method="L-BFGS-B", options={"maxiter": max_iter},
                       callback=stop_when_asked)
    return start.from_flat(res.x)


def random_start(template: DeepParams, rng: np.random.Generator, *, output_bias: bool = True) -> DeepParams:
    """He-normal weights, small biases (the output bias 0 without one)."""
    Ws = [rng.normal(size=w.shape) * np.sqrt(2.0 / w.shape[1]) for w in template.W]
    bs = [0.1 * rng.normal(size=b.shape) for b in template.b]
    if not output_bias:
        bs[-1] = np.zeros_like(bs[-1])
    return DeepParams(tuple(Ws), tuple(bs))


def multistart(spec: InstanceSpec, template: DeepParams, *, starts: int, seed: int, seeds=(),
               deadline: float = math.inf, max_iter: int = 2000) -> list[tuple[float, DeepParams, str]]:
    """(risk, params, how) of every descent: from each seed (name, params) first, then from
    ``starts`` seeded random starts; best first.  Stops starting new runs at the deadline."""
    rng = np.random.default_rng(seed)
    runs = [(name, p) for name, p in seeds]
    runs += [(f"L-BFGS from random start {i} (seed {seed})", None) for i in range(starts)]
    out = []
    for name, start in runs:
        if time.perf_counter() > deadline or interrupt.requested():
            break
        if start is None:
            start = random_start(template, rng, output_bias=spec.network.output_bias)
        p = descend(spec, start, max_iter=max_iter)
        r = risk_of(p, spec)
        if np.isfinite(r):
            out.append((r, p, name))
    out.sort(key=lambda item: item[0])
    return out


# ----------------------------------------------------------------------------------------------
# Two hidden layers, 1-D: exact solves at fixed knots
# ----------------------------------------------------------------------------------------------


def independent_features(X: np.ndarray) -> np.ndarray:
    """Indices of feature columns that, with a constant, are affinely independent (greedy)."""
    keep: list[int] = []
    for j in range(X.shape[1]):
        trial = np.column_stack([np.ones(X.shape[0])] + [X[:, i] for i in keep + [j]])
        if np.linalg.matrix_rank(trial, tol=1e-9 * max(1.0, float(np.abs(trial).max()))) == trial.shape[1]:
            keep.append(j)
    return np.array(keep, dtype=int)


def feature_spec(spec: InstanceSpec, data: TwoLayerData, orientations, t, *, time_limit: float,
                 columns=None) -> InstanceSpec:
    """The one-hidden-layer instance on the features at fixed knots (same box, loss and y).

    Built directly (not from TOML): features of different samples may coincide, which a spec
    file would reject as duplicate samples.  ``columns``: the features used (default all)."""
    X = data.features(orientations, t)[data.where]
    if columns is not None:
        X = X[:, columns]
    net = NetworkSpec(hidden=(data.widths[1],), activation=spec.network.activation,
                      output_bias=spec.network.output_bias)
    solve = SolveOptions(time_limit=max(time_limit, 0.1), rel_gap=spec.solve.rel_gap, seed=spec.solve.seed,
                         method="milp" if spec.n <= KNOTS_MILP_MAX_N else "auto")
    return InstanceSpec(name=f"{spec.name}-features", X=X, y=spec.y, network=net, loss=spec.loss,
                        box=Box(weight=data.box, output=data.box), solve=solve)


def knots_global(spec: InstanceSpec, data: TwoLayerData, orientations, t, *, one_hidden,
                 time_limit: float) -> tuple[CanonicalNet, float] | None:
    """The best network with layer-1 knots ``t``: ``one_hidden`` (`solve.solve_global`, passed in by
    the caller because solve.py dispatches to this stage) on the features."""
    # dependent features (a knot at the data's end, equal knots) would leave the one-hidden-layer
    # search without its hull relaxation; their weights stay 0, which keeps the point in the box
    columns = independent_features(data.features(orientations, t)[data.where])
    if columns.size == 0:
        return None
    result = one_hidden(feature_spec(spec, data, orientations, t, time_limit=time_limit, columns=columns))
    if result.params is None or result.risk is None or not np.isfinite(result.risk):
        return None
    p = result.params
    q = np.abs(p.v)
    A = np.zeros((data.widths[1], data.widths[0]))
    A[:, columns] = p.W1 * q[:, None]
    net = CanonicalNet(orientations=np.asarray(orientations, dtype=float), t=np.asarray(t, dtype=float),
                       A=A, b=p.b1 * q, signs=np.where(p.v < 0, -1.0, 1.0),
                       c=float(p.c) if data.output_bias else 0.0)
    if not net.in_box(data):
        return None
    return net, net.risk(data)


def best_at_knots(spec: InstanceSpec, data: TwoLayerData, net: CanonicalNet) -> tuple[CanonicalNet, float] | None:
    """The optimum of ``net``'s own layer-2 cell at its knots (a verified convex cell problem)."""
    X = data.features(net.orientations, net.t)[data.where]
    _, z2 = net.pre_activations(data)
    pattern = (z2[data.where] > 0).astype(int)
    solver = CellSolver(X, spec.y, spec.network.activation, spec.loss, Box(weight=data.box, output=data.box),
                        output_bias=spec.network.output_bias, time_limit=5.0)
    res = solver.solve(Cell(pattern=pattern, signs=net.signs))
    if res.status != "optimal" or res.theta is None:
        return None
    th = res.theta
    out = CanonicalNet(orientations=net.orientations, t=net.t, A=np.asarray(th.U, dtype=float).copy(),
                       b=np.asarray(th.a, dtype=float).copy(), signs=np.asarray(th.signs, dtype=float).copy(),
                       c=float(th.c) if data.output_bias else 0.0)
    if not out.in_box(data):
        return None
    return out, out.risk(data)


def constant_net(data: TwoLayerData) -> CanonicalNet:
    m1, m2 = data.widths
    c = data.best_constant()
    return CanonicalNet(orientations=np.ones(m1), t=np.full(m1, data.positions[0]), A=np.zeros((m2, m1)),
                        b=np.zeros(m2), signs=np.ones(m2), c=c)


def first_incumbents(spec: InstanceSpec, data: TwoLayerData, *, starts: int, seed: int,
                     time_limit: float, one_hidden) -> DeepIncumbent:
    """The search's first incumbent: the best of the constant network, the one-hidden-layer global
    minimum of width m1 (its knots, then the exact layer 2 for them), and ``starts`` multistart
    descents (the knots of the best few, then the exact layer 2 for them)."""
    started = time.perf_counter()
    deadline = started + time_limit
    best = DeepIncumbent(risk=constant_net(data).risk(data), net=constant_net(data), found_by="constant")
    knot_sets: list[tuple[str, np.ndarray, np.ndarray]] = []
    shallow = _shallow_knots(spec, data, time_limit=0.25 * time_limit, one_hidden=one_hidden)
    if shallow is not None:
        knot_sets.append(("one-hidden-layer global solve (width %d): its knots, exact layer 2" % data.widths[0],
                          *shallow))
    template = _template(data)
    runs = multistart(spec, template, starts=starts, seed=seed, max_iter=DESCENT_ITERATIONS,
                      deadline=started + (1.0 - KNOTS_SHARE) * time_limit)
    for r, p, how in runs:  # best first
        try:
            net = canonical_from_params(p, data)
        except MilplandError:
            continue
        if net.in_box(data) and r < best.risk:
            best.update(net, net.risk(data), how)
        knot_sets.append((f"{how}: its knots, exact layer 2", net.orientations, net.t))
    seen = set()
    zero = 1e-9 * best.risk  # a zero risk needs no better point
    for how, orient, t in knot_sets[:MAX_KNOT_SETS]:
        key = (tuple(orient), tuple(np.round(t, 12)))
        if key in seen or time.perf_counter() > deadline or best.risk <= zero:
            continue
        seen.add(key)
        got = knots_global(spec, data, orient, t, one_hidden=one_hidden,
                           time_limit=min(KNOTS_SECONDS, max(0.1, (deadline - time.perf_counter()) / 4)))
        if got is not None and got[1] < best.risk:
            best.update(got[0], got[1], how)
    return best


def _template(data: TwoLayerData) -> DeepParams:
    m1, m2 = data.widths
    return DeepParams((np.zeros((m1, 1)), np.zeros((m2, m1)), np.zeros((1, m2))),
                      (np.zeros(m1), np.zeros(m2), np.zeros(1)))


def _shallow_knots(spec: InstanceSpec, data: TwoLayerData, *, time_limit: float, one_hidden):
    """(orientations, knots) of the one-hidden-layer global minimum of width m1 (None if none):
    a two-layer net whose first layer-2 unit is linear on the data reproduces it."""
    m1 = data.widths[0]
    shallow = dataclasses.replace(spec, network=NetworkSpec(hidden=(m1,), activation=spec.network.activation,
                                                            output_bias=spec.network.output_bias),
                                  solve=dataclasses.replace(spec.solve, time_limit=max(time_limit, 0.1),
                                                            method="milp" if spec.n <= KNOTS_MILP_MAX_N else "auto"))
    result = one_hidden(shallow)
    if result.params is None:
        return None
    w, b = result.params.W1[:, 0], result.params.b1
    orient = np.where(w < 0, -1.0, 1.0)
    safe = np.where(w != 0, w, 1.0)
    t = np.clip(np.where(w != 0, -b / safe, data.positions[0]), data.positions[0], data.positions[-1])
    return orient, t
