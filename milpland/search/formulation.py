"""The global MILP of one sign class of a one-hidden-layer network (DESIGN §3-§4), in Pyomo.

Variables (scaled coordinates, DESIGN §3): U[j, l], a[j] in [-B, B]; rho[j] in [0, P]
(non-homogeneous activations only); c (output bias); f[i] the network output;
delta[i, j, k] = 1 when sample i is on piece k of unit j; g[i, j, k] and r[i, j, k]
the disaggregated copies of g_ij and rho_j (the convex-hull form of the disjunction).

Each piece of the model is one small function below; `build_master` assembles them
according to `FormulationOptions`, so that every optional piece can be switched off
and benchmarked.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp

import milpland.interrupt as interrupt
from milpland.cells.scaled import ScaledParams
from milpland.errors import MilplandError
from milpland.instance.spec import InstanceSpec
from milpland.search import bounds, memory
from milpland.search.highs_backend import CompiledModel, compile_model

ORDER_UNITS = ("none", "bias", "count")
# Building and compiling a model, per row and column (measured: n = 5000, d = 1, width 2, 315,000 rows and
# columns in 10.8 s on a shared two-core machine; 37,000 in 1.8 s).  A build that would need more
# than the time left is not started (`check_build_time`).
BUILD_SECONDS_PER_COMPONENT = 35e-6


class BuildStopped(Exception):
    """A model build stopped before its end: it would not finish in time, or a stop was requested."""


def check_build_time(spec: InstanceSpec, deadline: float) -> None:
    """Raise BuildStopped when the MILP of `spec` (`memory.milp_counts`) cannot be built by `deadline`."""
    rows, cols, _ = memory.milp_counts(spec)
    seconds = BUILD_SECONDS_PER_COMPONENT * (rows + cols)
    left = deadline - time.perf_counter()
    if seconds > left:
        raise BuildStopped(f"the MILP (about {rows + cols} rows and columns) takes about {seconds:.3g} s to build, "
                           f"more than the {max(left, 0.0):.3g} s left: not built")


class WatchedModel(pyo.ConcreteModel):
    """A ConcreteModel that stops adding components (each one is built when added) after `deadline`
    or on a stop request (Ctrl-C), raising BuildStopped, so that a long build cannot overrun."""

    def __init__(self, *args, deadline: float = np.inf, **kwargs):
        super().__init__(*args, **kwargs)
        self._milpland_deadline = deadline

    def add_component(self, name, val):
        if interrupt.requested():
            raise BuildStopped("the model build was interrupted")
        if time.perf_counter() > self._milpland_deadline:
            raise BuildStopped(f"the model build ran out of time (at component {name})")
        super().add_component(name, val)


@dataclass(frozen=True)
class FormulationOptions:
    """What goes into the master MILP; every piece can be switched off and benchmarked (ablation.py).

    threshold_1d: each unit's pattern is a threshold on the sorted samples (d = 1).
    threshold_hull_1d: d = 1, homogeneous activation: the convex hull of each unit's threshold
        patterns (`add_threshold_hull_1d`) instead of the per-sample big-M (then threshold_1d,
        tight_bounds' piece bounds and the geometry cuts do not apply: the hull implies them).
    geometry_cuts: implications "a sample inside a small simplex of neighbours whose vertices are
        all on one side of a breakpoint is on that side too" (any d; for d = 1 the simplices are
        the two neighbours, which `threshold_1d` already implies).
    geometry_neighbours / geometry_per_sample: the simplices' vertices are among this many nearest
        neighbours, and at most this many simplices (the smallest) are used per sample.
    tight_bounds: piece-specific big-M (a bounded piece caps |g| by P |t|), and bounds on f_i and
        the loss epigraph e_i from the cutoff (a better point has w e_i <= cutoff).
    obbt: tighten every big-M by LP (max / min of g_ijk over the LP relaxation and the cutoff).
    order_units: symmetry breaking inside a sign class: "bias" (a~_j non-decreasing within the
        units of one sign), "count" (number of samples on the top piece non-decreasing), "none".
    cache_classes: build the Pyomo model once per solve and derive every sign class from it by
        changing the sign-dependent coefficients (False: one Pyomo build per class).
    """

    threshold_1d: bool = True
    threshold_hull_1d: bool = True
    geometry_cuts: bool = True
    geometry_neighbours: int = 8
    geometry_per_sample: int = 2
    tight_bounds: bool = True
    obbt: bool = False
    order_units: str = "none"
    cache_classes: bool = True

    def __post_init__(self):
        if self.order_units not in ORDER_UNITS:
            raise MilplandError(f"order_units: unknown {self.order_units!r}; use one of {', '.join(ORDER_UNITS)}")
        if self.geometry_neighbours < 1 or self.geometry_per_sample < 0:
            raise MilplandError("geometry_neighbours must be >= 1 and geometry_per_sample >= 0")

    def describe(self) -> dict:
        return asdict(self)


def big_m(spec: InstanceSpec) -> np.ndarray:
    """M_i = B (||x_i||_1 + 1) bounds |g_ij| = |u~_j . x_i + a~_j| over the box."""
    return bounds.big_m(spec)


def add_weights(m: pyo.ConcreteModel, spec: InstanceSpec) -> None:
    """|u~_jl| <= B, |a~_j| <= B; 0 <= rho_j <= P when the activation is not homogeneous."""
    B = float(spec.box.weight)
    m.U = pyo.Var(m.J, m.L, bounds=(-B, B))
    m.a = pyo.Var(m.J, bounds=(-B, B))
    if not spec.network.activation.homogeneous:
        m.rho = pyo.Var(m.J, bounds=(0.0, float(spec.box.output)))
    m.c = pyo.Var() if spec.network.output_bias else pyo.Param(initialize=0.0)


def add_pieces_hull(m: pyo.ConcreteModel, spec: InstanceSpec, *, tight: bool = False) -> None:
    """Disjunction over pieces in convex-hull form, per (i, j):

        g_ij = sum_k g_ijk,  rho_j = sum_k r_ijk,  sum_k delta_ijk = 1,
        t_k r_ijk <= g_ijk <= t_{k+1} r_ijk,  r_ijk <= P delta_ijk,
        lower_ik delta_ijk <= g_ijk <= upper_ik delta_ijk   (`bounds.piece_bounds`).
    For homogeneous activations r is dropped and the piece bounds read g_ij0 <= 0 <= g_ij1:
    then the hull form is exactly the split big-M form g_ij = g_ij1 + g_ij0.  A big-M row whose
    bound is 0 is a column bound instead (`tight`).
    """
    act = spec.network.activation
    lower, upper = bounds.piece_bounds(spec, tight=tight)
    homogeneous = act.homogeneous
    m.delta = pyo.Var(m.I, m.J, m.K, domain=pyo.Binary)
    m.g = pyo.Var(m.I, m.J, m.K, bounds=lambda _, i, j, k: (float(lower[i, k]), float(upper[i, k])))
    m.one_piece = pyo.Constraint(m.I, m.J, rule=lambda m, i, j: sum(m.delta[i, j, k] for k in m.K) == 1)
    X = spec.X
    m.g_split = pyo.Constraint(
        m.I, m.J,
        rule=lambda m, i, j: sum(m.g[i, j, k] for k in m.K)
        == sum(float(X[i, l]) * m.U[j, l] for l in m.L) + m.a[j],
    )
    m.g_on = pyo.Constraint(
        m.I, m.J, m.K,
        rule=lambda m, i, j, k: pyo.Constraint.Skip if tight and upper[i, k] == 0.0
        else m.g[i, j, k] <= float(upper[i, k]) * m.delta[i, j, k],
    )
    m.g_on_low = pyo.Constraint(
        m.I, m.J, m.K,
        rule=lambda m, i, j, k: pyo.Constraint.Skip if tight and lower[i, k] == 0.0
        else m.g[i, j, k] >= float(lower[i, k]) * m.delta[i, j, k],
    )
    if homogeneous:
        if not tight:  # with tight bounds these are the column bounds of g
            m.piece_low = pyo.Constraint(m.I, m.J, rule=lambda m, i, j: m.g[i, j, 1] >= 0)
            m.piece_high = pyo.Constraint(m.I, m.J, rule=lambda m, i, j: m.g[i, j, 0] <= 0)
        return
    P = float(spec.box.output)
    m.r = pyo.Var(m.I, m.J, m.K, bounds=(0.0, P))
    m.rho_split = pyo.Constraint(m.I, m.J, rule=lambda m, i, j: sum(m.r[i, j, k] for k in m.K) == m.rho[j])
    m.r_on = pyo.Constraint(m.I, m.J, m.K, rule=lambda m, i, j, k: m.r[i, j, k] <= P * m.delta[i, j, k])
    m.piece_low = pyo.Constraint(
        m.I, m.J, m.K,
        rule=lambda m, i, j, k: pyo.Constraint.Skip if k == 0
        else m.g[i, j, k] >= float(act.lower(k)) * m.r[i, j, k],
    )
    m.piece_high = pyo.Constraint(
        m.I, m.J, m.K,
        rule=lambda m, i, j, k: pyo.Constraint.Skip if k == act.n_pieces - 1
        else m.g[i, j, k] <= float(act.upper(k)) * m.r[i, j, k],
    )


def add_output(m: pyo.ConcreteModel, spec: InstanceSpec, signs: np.ndarray) -> None:
    """f_i = c + sum_j s_j sum_k (alpha_k g_ijk + beta_k r_ijk)."""
    act = spec.network.activation
    alpha = [float(v) for v in act.slopes]
    beta = [float(v) for v in act.intercepts]
    m.f = pyo.Var(m.I)

    def rule(m, i):
        total = m.c
        for j in m.J:
            unit = sum(alpha[k] * m.g[i, j, k] for k in m.K)
            if not act.homogeneous:
                unit = unit + sum(beta[k] * m.r[i, j, k] for k in m.K if beta[k] != 0.0)
            total = total + float(signs[j]) * unit
        return m.f[i] == total

    m.output = pyo.Constraint(m.I, rule=rule)


def add_threshold_order_1d(m: pyo.ConcreteModel, spec: InstanceSpec) -> None:
    """For d = 1 the piece index of unit j is monotone along the sorted samples.

    With direction binary q_j (1: u~_j >= 0, pattern non-decreasing in x) and the
    cumulative indicators C_ijk = sum_{k' >= k} delta_ijk', for consecutive sorted
    samples i -> i':  -(1 - q_j) <= C_i'jk - C_ijk <= q_j.  Valid because g_ij is
    affine in the scalar x_i; ties on a breakpoint can always be assigned monotonically.
    """
    order = np.argsort(spec.X[:, 0], kind="stable")
    pairs = list(zip(order[:-1].tolist(), order[1:].tolist()))
    B = float(spec.box.weight)
    m.q = pyo.Var(m.J, domain=pyo.Binary)
    m.q_up = pyo.Constraint(m.J, rule=lambda m, j: m.U[j, 0] <= B * m.q[j])
    m.q_down = pyo.Constraint(m.J, rule=lambda m, j: m.U[j, 0] >= -B * (1 - m.q[j]))
    m.PAIRS = pyo.Set(initialize=range(len(pairs)))
    m.KUP = pyo.Set(initialize=range(1, spec.network.activation.n_pieces))

    def cum(m, i, j, k):
        return sum(m.delta[i, j, kk] for kk in m.K if kk >= k)

    m.monotone_up = pyo.Constraint(
        m.PAIRS, m.J, m.KUP,
        rule=lambda m, p, j, k: cum(m, pairs[p][1], j, k) - cum(m, pairs[p][0], j, k) >= -(1 - m.q[j]),
    )
    m.monotone_down = pyo.Constraint(
        m.PAIRS, m.J, m.KUP,
        rule=lambda m, p, j, k: cum(m, pairs[p][1], j, k) - cum(m, pairs[p][0], j, k) <= m.q[j],
    )


def threshold_groups(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, group): the distinct sorted inputs v_0 < ... < v_{G-1} and each sample's index in them."""
    values, group = np.unique(x, return_inverse=True)
    return values, group.reshape(-1)


def threshold_copies(G: int) -> list[tuple[int, int]]:
    """The patterns a unit can have on G sorted distinct inputs, as (direction, p):
    (+1, p) for p = 0..G: active on groups >= p (p = 0: all, p = G: none);
    (-1, p) for p = 1..G-1: active on groups < p."""
    return [(1, p) for p in range(G + 1)] + [(-1, p) for p in range(1, G)]


def add_threshold_hull_1d(m: pyo.ConcreteModel, spec: InstanceSpec, signs: np.ndarray) -> None:
    """d = 1, homogeneous activation: each unit's disjunction over its 2G threshold patterns in
    convex-hull form (the strongest formulation of one unit), replacing the per-sample big-M.

    Copy t = (o, p) of unit j has its own weights u_jt, a_jt with |u_jt|, |a_jt| <= B z_jt,
    sum_t z_jt = 1, and the two cell rows of its pattern at the groups next to the threshold
    (g is affine in x, so they imply the rest): (+, p): g(v_{p-1}) <= 0 <= g(v_p);
    (-, p): g(v_{p-1}) >= 0 >= g(v_p); all: g(v_0), g(v_{G-1}) >= 0; none: both <= 0.
    The unit's top-piece part h_ij = sum_{t active at i} (u_jt x_i + a_jt) is carried by running
    sums over the sorted groups (sparse rows), u~_j = sum_t u_jt, a~_j = sum_t a_jt, and
        f_i = c + sum_j s_j [(alpha_1 - alpha_0) h_ij + alpha_0 (u~_j x_i + a~_j)].
    The LP relaxation of a unit is then a conic combination of ramps with kinks in the allowed
    range, convex for s_j = +1 and concave for s_j = -1 (the big-M relaxation leaves the samples
    of an undecided range free).  delta_ijk (k = 0, 1) are kept, tied to the z, for branching and
    for reading the pattern.
    """
    act = spec.network.activation
    B = float(spec.box.weight)
    values, group = threshold_groups(spec.X[:, 0])
    G = len(values)
    copies = threshold_copies(G)
    alpha0, alpha1 = float(act.slopes[0]), float(act.slopes[1])
    m.kind = "hull1d"
    m.T = pyo.Set(initialize=range(len(copies)))
    m.GR = pyo.Set(initialize=range(G))
    m.U = pyo.Var(m.J, m.L, bounds=(-B, B))
    m.a = pyo.Var(m.J, bounds=(-B, B))
    m.c = pyo.Var() if spec.network.output_bias else pyo.Param(initialize=0.0)
    m.z = pyo.Var(m.J, m.T, domain=pyo.Binary)
    m.ut = pyo.Var(m.J, m.T, bounds=(-B, B))
    m.at = pyo.Var(m.J, m.T, bounds=(-B, B))
    m.one_copy = pyo.Constraint(m.J, rule=lambda m, j: sum(m.z[j, t] for t in m.T) == 1)
    m.ut_on = pyo.Constraint(m.J, m.T, [1, -1], rule=lambda m, j, t, s: s * m.ut[j, t] <= B * m.z[j, t])
    m.at_on = pyo.Constraint(m.J, m.T, [1, -1], rule=lambda m, j, t, s: s * m.at[j, t] <= B * m.z[j, t])

    def g_at(m, j, t, v):
        return m.ut[j, t] * float(v) + m.at[j, t]

    def cell_rows(m, j, t, side):
        o, p = copies[t]
        if o == 1 and p == 0:  # all active
            return g_at(m, j, t, values[0 if side == 0 else G - 1]) >= 0
        if o == 1 and p == G:  # none active
            return g_at(m, j, t, values[0 if side == 0 else G - 1]) <= 0
        left, right = g_at(m, j, t, values[p - 1]), g_at(m, j, t, values[p])
        if o == 1:
            return left <= 0 if side == 0 else right >= 0
        return left >= 0 if side == 0 else right <= 0

    m.copy_cell = pyo.Constraint(m.J, m.T, [0, 1], rule=cell_rows)
    m.u_sum = pyo.Constraint(m.J, rule=lambda m, j: m.U[j, 0] == sum(m.ut[j, t] for t in m.T))
    m.a_sum = pyo.Constraint(m.J, rule=lambda m, j: m.a[j] == sum(m.at[j, t] for t in m.T))
    up = {p: t for t, (o, p) in enumerate(copies) if o == 1}
    down = {p: t for t, (o, p) in enumerate(copies) if o == -1}
    # running sums: R[j, q] = sum of copies active at group q (rising: p <= q; falling: p > q)
    m.Ru = pyo.Var(m.J, m.GR)
    m.Ra = pyo.Var(m.J, m.GR)

    def run_rule(var_copy, var_run):
        def rule(m, j, q):
            if q == 0:  # (the sums only here: written for every q they made the build O(n^2))
                rising = var_copy[j, up[0]]
                falling = sum(var_copy[j, down[p]] for p in range(1, G) if p in down)
                return var_run[j, 0] == rising + falling
            # R_q - R_{q-1} = (rising copy p = q) - (falling copy p = q)
            return var_run[j, q] - var_run[j, q - 1] == var_copy[j, up[q]] - (var_copy[j, down[q]] if q in down else 0)
        return rule

    m.run_u = pyo.Constraint(m.J, m.GR, rule=run_rule(m.ut, m.Ru))
    m.run_a = pyo.Constraint(m.J, m.GR, rule=run_rule(m.at, m.Ra))
    m.h = pyo.Var(m.I, m.J)
    m.h_def = pyo.Constraint(
        m.I, m.J, rule=lambda m, i, j: m.h[i, j] == float(spec.X[i, 0]) * m.Ru[j, int(group[i])] + m.Ra[j, int(group[i])]
    )
    # the pattern: delta_ij1 = sum of z over the copies active at sample i's group
    m.delta = pyo.Var(m.I, m.J, m.K, domain=pyo.Binary)

    # the same running sum over z (sparse: a dense sum per sample made the LPs O(n^2))
    m.Rz = pyo.Var(m.J, m.GR, bounds=(0.0, 1.0))
    m.run_z = pyo.Constraint(m.J, m.GR, rule=run_rule(m.z, m.Rz))
    m.delta_top = pyo.Constraint(m.I, m.J, rule=lambda m, i, j: m.delta[i, j, 1] == m.Rz[j, int(group[i])])
    m.one_piece = pyo.Constraint(m.I, m.J, rule=lambda m, i, j: m.delta[i, j, 0] + m.delta[i, j, 1] == 1)
    m.f = pyo.Var(m.I)

    def output(m, i):
        total = m.c
        for j in m.J:
            unit = (alpha1 - alpha0) * m.h[i, j]
            if alpha0 != 0.0:
                unit = unit + alpha0 * (float(spec.X[i, 0]) * m.U[j, 0] + m.a[j])
            total = total + float(signs[j]) * unit
        return m.f[i] == total

    m.output = pyo.Constraint(m.I, rule=output)
    m.sign_vars = {j: [m.h[i, j] for i in m.I] + [m.U[j, 0], m.a[j]] for j in m.J}
    m.copies = copies
    m.groups = group


def hull_1d_applies(spec: InstanceSpec, options: FormulationOptions) -> bool:
    return options.threshold_hull_1d and spec.d == 1 and spec.network.activation.homogeneous


def add_loss(m: pyo.ConcreteModel, spec: InstanceSpec) -> None:
    """Epigraph e_i of the per-sample loss; the objective is weight * sum_i e_i.

    absolute: e_i >= +-(f_i - y_i).  hinge: e_i >= 1 - y_i f_i, e_i >= 0.
    squared: e_i >= 0 plus tangent cuts e_i >= 2 r (f_i - y_i) - r^2 added by the
    outer-approximation loop (DESIGN §4), which make the master a lower bound.
    """
    y = spec.y
    m.e = pyo.Var(m.I, bounds=(0.0, None))
    kind = spec.loss.kind
    if kind == "absolute":
        m.loss_up = pyo.Constraint(m.I, rule=lambda m, i: m.e[i] >= m.f[i] - float(y[i]))
        m.loss_down = pyo.Constraint(m.I, rule=lambda m, i: m.e[i] >= float(y[i]) - m.f[i])
    elif kind == "hinge":
        m.loss_hinge = pyo.Constraint(m.I, rule=lambda m, i: m.e[i] >= 1.0 - float(y[i]) * m.f[i])
    m.risk = pyo.Objective(expr=float(spec.loss.weight(spec.n)) * sum(m.e[i] for i in m.I), sense=pyo.minimize)


def containing_simplices(X: np.ndarray, *, neighbours: int, per_sample: int) -> list[tuple[int, tuple[int, ...]]]:
    """(sample k, vertices S) with x_k in the convex hull of {x_s : s in S}, |S| = d + 1 (d = 1: 2).

    The vertices are among the `neighbours` nearest samples of x_k; of the simplices that
    contain x_k (barycentric coordinates >= 0) the `per_sample` smallest (by their longest edge
    to x_k) are kept, so the model grows by at most n * per_sample rows per unit and breakpoint.
    """
    n, d = X.shape
    size = d + 1
    if per_sample == 0 or n < size + 1:
        return []
    dist = np.linalg.norm(X[:, None, :] - X[None, :, :], axis=2)
    out = []
    for k in range(n):
        near = [int(s) for s in np.argsort(dist[k], kind="stable") if s != k][:neighbours]
        found = []
        for S in itertools.combinations(near, size):
            V = np.vstack([X[list(S)].T, np.ones(size)])  # (d + 1) x (d + 1)
            if abs(np.linalg.det(V)) < 1e-12:
                continue
            lam = np.linalg.solve(V, np.append(X[k], 1.0))
            if np.all(lam >= -1e-12):
                found.append((float(dist[k, list(S)].max()), tuple(sorted(S))))
        found.sort()
        out += [(k, S) for _, S in found[:per_sample]]
    return out


def add_geometry_cuts(m: pyo.ConcreteModel, spec: InstanceSpec, simplices) -> None:
    """Data-geometry implications: g_ij is affine in x_i, so for x_k = sum_s lambda_s x_s (lambda >= 0,
    sum 1) and any breakpoint t_b:  all g_sj >= rho_j t_b  =>  g_kj >= rho_j t_b, and the same for <.

    With C_ijb = sum_{k > b} delta_ijk (1: sample i is at or above breakpoint b, ties counted
    above, which every other constraint of the model allows):
        C_kjb >= sum_{s in S} C_sjb - |S| + 1     and     C_kjb <= sum_{s in S} C_sjb.
    """
    K = spec.network.activation.n_pieces
    m.GEO = pyo.Set(initialize=range(len(simplices)))
    m.BRK = pyo.Set(initialize=range(K - 1))

    def above(m, i, j, b):
        return sum(m.delta[i, j, k] for k in range(b + 1, K))

    m.geo_up = pyo.Constraint(
        m.GEO, m.J, m.BRK,
        rule=lambda m, p, j, b: above(m, simplices[p][0], j, b)
        >= sum(above(m, s, j, b) for s in simplices[p][1]) - len(simplices[p][1]) + 1,
    )
    m.geo_down = pyo.Constraint(
        m.GEO, m.J, m.BRK,
        rule=lambda m, p, j, b: above(m, simplices[p][0], j, b) <= sum(above(m, s, j, b) for s in simplices[p][1]),
    )


def add_unit_order(m: pyo.ConcreteModel, spec: InstanceSpec, how: str, signs: np.ndarray | None) -> None:
    """Symmetry breaking: units of one sign are interchangeable, so order them.

    Row unit_order[j] compares units j and j + 1: a~_j <= a~_{j+1} ("bias") or
    sum_i C_ij <= sum_i C_i,j+1 with C the top-piece indicator ("count").  With `signs` only pairs of
    equal sign get a row; without (the class template) every pair gets one and `ClassTemplate`
    frees the rows that straddle the sign boundary of a class.
    """
    top = spec.network.activation.n_pieces - 1
    pairs = [j for j in range(spec.width - 1) if signs is None or signs[j] == signs[j + 1]]
    m.PAIRS_J = pyo.Set(initialize=pairs)
    if how == "bias":
        m.unit_order = pyo.Constraint(m.PAIRS_J, rule=lambda m, j: m.a[j] <= m.a[j + 1])
    else:
        m.unit_order = pyo.Constraint(
            m.PAIRS_J, rule=lambda m, j: sum(m.delta[i, j, top] for i in m.I) <= sum(m.delta[i, j + 1, top] for i in m.I)
        )


def build_master(spec: InstanceSpec, signs: np.ndarray | None, options: FormulationOptions, *,
                 deadline: float = np.inf) -> pyo.ConcreteModel:
    """The MILP (absolute / hinge) or OA master (squared) of the sign class `signs`.

    ``signs = None`` builds the class template: all signs +1 and ordering rows for every pair
    of neighbouring units (see `add_unit_order` and `ClassTemplate`).  Past `deadline` the build
    stops with BuildStopped (`WatchedModel`).
    """
    template = signs is None
    signs = np.ones(spec.width) if template else np.asarray(signs, dtype=float)
    m = WatchedModel(name=f"{spec.name}-" + ("template" if template else f"signs{int((signs > 0).sum())}"),
                     deadline=deadline)
    m.I = pyo.RangeSet(0, spec.n - 1)
    m.J = pyo.RangeSet(0, spec.width - 1)
    m.L = pyo.RangeSet(0, spec.d - 1)
    m.K = pyo.RangeSet(0, spec.network.activation.n_pieces - 1)
    if hull_1d_applies(spec, options):
        add_threshold_hull_1d(m, spec, signs)
        if options.order_units != "none" and spec.width > 1:
            add_unit_order(m, spec, options.order_units, None if template else signs)
        add_loss(m, spec)
        return m
    m.kind = "bigm"
    add_weights(m, spec)
    add_pieces_hull(m, spec, tight=options.tight_bounds)
    add_output(m, spec, signs)
    m.sign_vars = {j: [m.g[i, j, k] for i in m.I for k in m.K] + ([m.r[i, j, k] for i in m.I for k in m.K]
                                                                    if hasattr(m, "r") else []) for j in m.J}
    if options.threshold_1d and spec.d == 1 and spec.n > 1:
        add_threshold_order_1d(m, spec)
    if options.geometry_cuts and not (spec.d == 1 and options.threshold_1d):
        simplices = containing_simplices(spec.X, neighbours=options.geometry_neighbours,
                                         per_sample=options.geometry_per_sample)
        if simplices:
            add_geometry_cuts(m, spec, simplices)
    if options.order_units != "none" and spec.width > 1:
        add_unit_order(m, spec, options.order_units, None if template else signs)
    add_loss(m, spec)
    return m


def pattern_of(m: pyo.ConcreteModel, values: np.ndarray, index) -> np.ndarray:
    """The piece index of every (i, j) read from the binaries in a solution vector."""
    n, width, K = len(m.I), len(m.J), len(m.K)
    cols = np.array([[[index(m.delta[i, j, k]) for k in range(K)] for j in range(width)] for i in range(n)])
    return np.argmax(values[cols], axis=2)


# ----------------------------------------------------------------------------------------------
# One model for every sign class, and points lifted into it
# ----------------------------------------------------------------------------------------------


class ClassTemplate:
    """The master of every sign class from one Pyomo build (`FormulationOptions.cache_classes`).

    The signs enter only the output rows  f_i - c - sum_j s_j sum_k (alpha_k g_ijk + beta_k r_ijk) = 0,
    so the template is built with s = +1 and a class flips the entries of unit j's columns in
    those rows; ordering rows between units of different sign are freed (both bounds infinite).
    `for_class` returns the same matrix as compiling `build_master(spec, signs, options)`, up to
    those free rows (tests/test_formulation_options.py checks it entry by entry).
    """

    def __init__(self, spec: InstanceSpec, options: FormulationOptions, *, signs: np.ndarray | None = None,
                 deadline: float = np.inf):
        """``signs`` given: a model of that class only (no caching; the reference build)."""
        self.spec = spec
        self.options = options
        self.signs = None if signs is None else np.asarray(signs, dtype=float)
        self.model = build_master(spec, self.signs, options, deadline=deadline)
        if interrupt.requested() or time.perf_counter() > deadline:
            raise BuildStopped("the model build ran out of time before compiling")
        self.compiled = compile_model(self.model)
        c, m = self.compiled, self.model
        A = c.A
        positions: list[list[int]] = [[] for _ in range(spec.width)]
        out_rows = {c.row(m.output[i]): i for i in m.I}
        unit_cols = {c.column(var): j for j, variables in m.sign_vars.items() for var in variables
                     if id(var) in c.index}
        for col, j in unit_cols.items():
            for pos in range(A.indptr[col], A.indptr[col + 1]):
                if int(A.indices[pos]) in out_rows:
                    positions[j].append(pos)
        self.unit_positions = [np.array(p, dtype=np.int64) for p in positions]
        self.order_rows = {j: c.row(m.unit_order[j]) for j in m.PAIRS_J} if hasattr(m, "unit_order") else {}

    def for_class(self, signs: np.ndarray) -> CompiledModel:
        c = self.compiled
        if self.signs is not None:
            if not np.array_equal(self.signs, signs):
                raise MilplandError("this template was built for one sign class only")
            return c
        data = c.A.data.copy()
        for j, s in enumerate(signs):
            if s < 0:
                data[self.unit_positions[j]] *= -1.0
        A = sp.csc_array((data, c.A.indices, c.A.indptr), shape=c.A.shape)
        row_lower, row_upper = c.row_lower.copy(), c.row_upper.copy()
        for j, r in self.order_rows.items():
            if signs[j] != signs[j + 1]:
                row_lower[r], row_upper[r] = -bounds.INF, bounds.INF
        return replace(c, A=A, row_lower=row_lower, row_upper=row_upper)


def class_arrangement(spec: InstanceSpec, theta: ScaledParams, pattern: np.ndarray,
                      order_units: str) -> tuple[ScaledParams, np.ndarray]:
    """Permute the units into the canonical order of their sign class: positive units first, and
    within one sign in the order `add_unit_order` demands.  Returns (theta, pattern) permuted."""
    top = spec.network.activation.n_pieces - 1
    if order_units == "bias":
        key = theta.a
    elif order_units == "count":
        key = np.sum(pattern == top, axis=0).astype(float)
    else:
        key = np.zeros(spec.width)
    perm = np.lexsort((key, -theta.signs))  # last key is primary: positive first
    permuted = ScaledParams(U=theta.U[perm], a=theta.a[perm], rho=np.asarray(theta.rho)[perm], c=theta.c,
                            signs=theta.signs[perm])
    return permuted, pattern[:, perm]


def lift_point(template: ClassTemplate, theta: ScaledParams) -> np.ndarray | None:
    """The full column vector of the master at the network `theta` (units already arranged by
    `class_arrangement`): the Pyomo variables get their values and are read in column order.

    Each (i, j) goes to the piece of g_ij, ties to the upper piece (the rule that the 1-D
    thresholds, the geometry cuts and the ordering rows all admit); e_i is the loss itself,
    which lies above every tangent of the outer approximation.  None when the lifted point
    violates the model by more than 1e-7 (then it is no warm start).
    """
    spec, m = template.spec, template.model
    act = spec.network.activation
    G = theta.scaled_pre_activations(spec.X)
    rho = np.asarray(theta.rho, dtype=float) if not act.homogeneous else np.zeros(spec.width)
    scale = 1e-10 * (1.0 + np.abs(G).max(initial=0.0))
    t = np.asarray(act.breakpoints)
    tie_rho = rho if not act.homogeneous else np.ones(spec.width)
    piece = np.sum(G[:, :, None] >= tie_rho[None, :, None] * t[None, None, :] - scale, axis=2)
    alpha, beta = np.asarray(act.slopes), np.asarray(act.intercepts)
    f = (alpha[piece] * G + beta[piece] * rho[None, :]) @ theta.signs + float(theta.c)
    for (j, l), var in m.U.items():
        var.set_value(float(theta.U[j, l]), skip_validation=True)
    for j, var in m.a.items():
        var.set_value(float(theta.a[j]), skip_validation=True)
    if isinstance(m.c, pyo.Var):
        m.c.set_value(float(theta.c), skip_validation=True)
    if m.kind == "hull1d":
        if not _lift_hull_1d(m, theta, piece, G):
            return None
    else:
        _lift_bigm(m, theta, piece, G, rho)
    per_sample = spec.loss.per_sample(f, spec.y)
    for i in m.I:
        m.f[i].set_value(float(f[i]), skip_validation=True)
        m.e[i].set_value(float(per_sample[i]), skip_validation=True)
    x = np.array([np.nan if v.value is None else float(v.value) for v in template.compiled.columns])
    if np.isnan(x).any():
        return None
    return x


def _lift_bigm(m, theta: ScaledParams, piece: np.ndarray, G: np.ndarray, rho: np.ndarray) -> None:
    if hasattr(m, "rho"):
        for j, var in m.rho.items():
            var.set_value(float(rho[j]), skip_validation=True)
    for (i, j, k), var in m.delta.items():
        on = piece[i, j] == k
        var.set_value(1.0 if on else 0.0, skip_validation=True)
        m.g[i, j, k].set_value(float(G[i, j]) if on else 0.0, skip_validation=True)
        if hasattr(m, "r"):
            m.r[i, j, k].set_value(float(rho[j]) if on else 0.0, skip_validation=True)
    if hasattr(m, "q"):
        for j, var in m.q.items():
            var.set_value(0.0 if theta.U[j, 0] < 0 else 1.0, skip_validation=True)


def _lift_hull_1d(m, theta: ScaledParams, piece: np.ndarray, G: np.ndarray) -> bool:
    """The copy of each unit is the threshold pattern of its active groups; False if a unit's
    active set is no prefix / suffix of the sorted groups (cannot happen for affine g)."""
    group = m.groups
    n_groups = int(group.max()) + 1
    index = {copy: t for t, copy in enumerate(m.copies)}
    for j in m.J:
        on = np.zeros(n_groups, dtype=bool)
        on[group[piece[:, j] == 1]] = True
        if on.all():
            copy = (1, 0)
        elif not on.any():
            copy = (1, n_groups)
        else:
            p = int(np.argmax(on != on[0]))  # first change
            if np.any(on[p:] != on[p]):
                return False
            copy = (1, p) if not on[0] else (-1, p)
        chosen = index[copy]
        for t in m.T:
            is_on = t == chosen
            m.z[j, t].set_value(1.0 if is_on else 0.0, skip_validation=True)
            m.ut[j, t].set_value(float(theta.U[j, 0]) if is_on else 0.0, skip_validation=True)
            m.at[j, t].set_value(float(theta.a[j]) if is_on else 0.0, skip_validation=True)
        for q in m.GR:
            m.Rz[j, q].set_value(1.0 if on[q] else 0.0, skip_validation=True)
            m.Ru[j, q].set_value(float(theta.U[j, 0]) if on[q] else 0.0, skip_validation=True)
            m.Ra[j, q].set_value(float(theta.a[j]) if on[q] else 0.0, skip_validation=True)
        for i in m.I:
            active = bool(on[group[i]])
            m.h[i, j].set_value(float(G[i, j]) if active else 0.0, skip_validation=True)
            m.delta[i, j, 1].set_value(1.0 if active else 0.0, skip_validation=True)
            m.delta[i, j, 0].set_value(0.0 if active else 1.0, skip_validation=True)
    return True
