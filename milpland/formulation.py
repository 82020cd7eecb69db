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

from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from milpland.spec import InstanceSpec


@dataclass(frozen=True)
class FormulationOptions:
    threshold_1d: bool = True  # each unit's pattern is a threshold on the sorted samples (d = 1)


def big_m(spec: InstanceSpec) -> np.ndarray:
    """M_i = B (||x_i||_1 + 1) bounds |g_ij| = |u~_j . x_i + a~_j| over the box."""
    return spec.box.weight * (np.abs(spec.X).sum(axis=1) + 1.0)


def add_weights(m: pyo.ConcreteModel, spec: InstanceSpec) -> None:
    """|u~_jl| <= B, |a~_j| <= B; 0 <= rho_j <= P when the activation is not homogeneous."""
    B = float(spec.box.weight)
    m.U = pyo.Var(m.J, m.L, bounds=(-B, B))
    m.a = pyo.Var(m.J, bounds=(-B, B))
    if not spec.network.activation.homogeneous:
        m.rho = pyo.Var(m.J, bounds=(0.0, float(spec.box.output)))
    m.c = pyo.Var() if spec.network.output_bias else pyo.Param(initialize=0.0)


def add_pieces_hull(m: pyo.ConcreteModel, spec: InstanceSpec) -> None:
    """Disjunction over pieces in convex-hull form, per (i, j):

        g_ij = sum_k g_ijk,  rho_j = sum_k r_ijk,  sum_k delta_ijk = 1,
        t_k r_ijk <= g_ijk <= t_{k+1} r_ijk,  r_ijk <= P delta_ijk,
        -M_i delta_ijk <= g_ijk <= M_i delta_ijk.
    For homogeneous activations r is dropped and the piece bounds read g_ij0 <= 0 <= g_ij1:
    then the hull form is exactly the split big-M form g_ij = g_ij1 + g_ij0.
    """
    act = spec.network.activation
    M = big_m(spec)
    homogeneous = act.homogeneous
    m.delta = pyo.Var(m.I, m.J, m.K, domain=pyo.Binary)
    m.g = pyo.Var(m.I, m.J, m.K, bounds=lambda _, i, j, k: (-float(M[i]), float(M[i])))
    m.one_piece = pyo.Constraint(m.I, m.J, rule=lambda m, i, j: sum(m.delta[i, j, k] for k in m.K) == 1)
    X = spec.X
    m.g_split = pyo.Constraint(
        m.I, m.J,
        rule=lambda m, i, j: sum(m.g[i, j, k] for k in m.K)
        == sum(float(X[i, l]) * m.U[j, l] for l in m.L) + m.a[j],
    )
    m.g_on = pyo.Constraint(m.I, m.J, m.K, rule=lambda m, i, j, k: m.g[i, j, k] <= float(M[i]) * m.delta[i, j, k])
    m.g_on_low = pyo.Constraint(m.I, m.J, m.K, rule=lambda m, i, j, k: m.g[i, j, k] >= -float(M[i]) * m.delta[i, j, k])
    if homogeneous:
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


def build_master(spec: InstanceSpec, signs: np.ndarray, options: FormulationOptions) -> pyo.ConcreteModel:
    """The MILP (absolute / hinge) or OA master (squared) of the sign class `signs`."""
    m = pyo.ConcreteModel(name=f"{spec.name}-signs{int((signs > 0).sum())}")
    m.I = pyo.RangeSet(0, spec.n - 1)
    m.J = pyo.RangeSet(0, spec.width - 1)
    m.L = pyo.RangeSet(0, spec.d - 1)
    m.K = pyo.RangeSet(0, spec.network.activation.n_pieces - 1)
    add_weights(m, spec)
    add_pieces_hull(m, spec)
    add_output(m, spec, signs)
    if options.threshold_1d and spec.d == 1 and spec.n > 1:
        add_threshold_order_1d(m, spec)
    add_loss(m, spec)
    return m


def pattern_of(m: pyo.ConcreteModel, values: np.ndarray, index) -> np.ndarray:
    """The piece index of every (i, j) read from the binaries in a solution vector."""
    n, width, K = len(m.I), len(m.J), len(m.K)
    cols = np.array([[[index(m.delta[i, j, k]) for k in range(K)] for j in range(width)] for i in range(n)])
    return np.argmax(values[cols], axis=2)
