"""The two-layer training problem as a big-M MINLP for SCIP (a baseline and a source of points).

The model is the canonical problem of `milpland.search.deep_model` over the same box, so its
optimum is comparable with `solve_two_layer`'s; one model per sign class of the output weights
(positive units first), each with the best risk so far as a cutoff.  Per layer-1 unit j a binary
orientation o_j (s_j = 2 o_j - 1) and a knot t_j in [p_0, p_{G-1}] (o_j t_j linearised exactly);
per (position, unit) of both layers a binary for the piece with big-M rows from the box; the
products A_kj phi_pj are bilinear constraints, which SCIP handles by spatial branching.  The squared
loss is a convex quadratic epigraph, the absolute and hinge losses linear epigraphs.  ``numerics/feastol = 1e-9`` (DESIGN §4).  Every point SCIP
returns is rebuilt as a network and re-evaluated with numpy; SCIP's bound is reported as SCIP's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from milpland.errors import MilplandError
from milpland.instance.spec import InstanceSpec
from milpland.search.deep_model import ABS_TOL_FACTOR, CanonicalNet, TwoLayerData


@dataclass(frozen=True, eq=False)
class MinlpOutcome:
    """SCIP's answer.  ``status`` optimal: SCIP closed every sign class (its own tolerances).
    ``certified``: what the two-layer search's flag claims (DESIGN §6a), checked the same way:
    SCIP finished, its point (re-evaluated with numpy) is within max(rel_gap * risk, abs_tol) of
    its bound and touches no box bound; or that point's risk is zero to abs_tol."""

    status: str  # optimal (every class closed by SCIP) | time_limit
    risk: float  # numpy risk of the best point (inf if none)
    lower_bound: float  # SCIP's dual bound (min over classes)
    net: CanonicalNet | None
    nodes: int
    seconds: float
    version: str
    box_active: bool = False
    certified: bool = False


def solve_minlp(spec: InstanceSpec, *, time_limit: float | None = None, cutoff: float = np.inf) -> MinlpOutcome:
    """SCIP on the canonical MINLP of every sign class (see the module docstring)."""
    try:
        import pyscipopt
    except ImportError:
        raise MilplandError("SCIP is not installed: pip install 'milpland[scip]'") from None
    data = TwoLayerData.of(spec)
    limit = spec.solve.time_limit if time_limit is None else time_limit
    started = time.perf_counter()
    m2 = data.widths[1]
    best_risk, best_net, bound, nodes, complete = cutoff, None, np.inf, 0, True
    for n_positive in range(m2, -1, -1):
        remaining = limit - (time.perf_counter() - started)
        if remaining <= 0:
            complete, bound = False, min(bound, 0.0)
            break
        signs = np.where(np.arange(m2) < n_positive, 1.0, -1.0)
        model, read = build_model(pyscipopt, data, signs)
        model.setParam("limits/time", float(remaining))
        model.setParam("limits/gap", spec.solve.rel_gap / 4)
        model.setParam("numerics/feastol", 1e-9)
        model.setParam("randomization/randomseedshift", int(spec.solve.seed))
        if np.isfinite(best_risk):
            model.setObjlimit(float(best_risk))
        model.optimize()
        status = model.getStatus()
        complete &= status in ("optimal", "gaplimit", "infeasible")
        nodes += int(model.getNNodes())
        if status != "infeasible":
            bound = min(bound, max(float(model.getDualbound()), 0.0))
        for sol in model.getSols()[:5]:
            net = read(model, sol)
            risk = net.risk(data)
            if net.in_box(data) and risk < best_risk:
                best_risk, best_net = risk, net
    version = pyscipopt.Model().version()
    if not np.isfinite(bound):
        bound = best_risk
    risk = best_risk if best_net is not None else np.inf
    lower = min(bound, best_risk)
    box_active = best_net is not None and best_net.box_active(data)
    return MinlpOutcome(status="optimal" if complete else "time_limit", risk=risk, lower_bound=lower,
                        net=best_net, nodes=nodes, seconds=time.perf_counter() - started, version=str(version),
                        box_active=box_active,
                        certified=certified_like_search(spec, data, risk, lower, complete=complete,
                                                        box_active=box_active))


def certified_like_search(spec: InstanceSpec, data: TwoLayerData, risk: float, lower: float, *, complete: bool,
                          box_active: bool) -> bool:
    """The two-layer search's `certified` rule (`deep_result.assemble`) applied to SCIP's answer."""
    if not np.isfinite(risk):
        return False
    abs_tol = ABS_TOL_FACTOR * data.baseline()
    closed = risk - lower <= max(spec.solve.rel_gap * abs(risk), abs_tol)
    return bool((complete and closed and not box_active) or risk <= abs_tol)


def build_model(pyscipopt, data: TwoLayerData, signs: np.ndarray):
    """(SCIP model, reader): reader(model, solution) -> CanonicalNet."""
    m1, m2 = data.widths
    G = data.n_positions
    a0, a1 = data.slopes
    B = data.box
    p = data.positions
    lo, hi = float(p[0]), float(p[-1])
    span = hi - lo
    phi_max = max(abs(a0), abs(a1)) * span
    z_max = B * (1.0 + m1 * phi_max)
    c_max = float(np.max(np.abs(data.y))) + m2 * (abs(a0) + abs(a1 - a0)) * z_max + 1.0
    quick = pyscipopt.quicksum
    model = pyscipopt.Model()
    model.hideOutput(True)
    o = [model.addVar(vtype="B", name=f"o{j}") for j in range(m1)]
    t = [model.addVar(lb=lo, ub=hi, name=f"t{j}") for j in range(m1)]
    q = [model.addVar(lb=min(lo, 0.0), ub=max(hi, 0.0), name=f"q{j}") for j in range(m1)]  # o_j t_j
    for j in range(m1):
        model.addCons(q[j] <= hi * o[j])
        model.addCons(q[j] >= lo * o[j])
        model.addCons(q[j] <= t[j] - lo * (1 - o[j]))
        model.addCons(q[j] >= t[j] - hi * (1 - o[j]))
    phi = {}
    for pos in range(G):
        for j in range(m1):
            g = 2 * p[pos] * o[j] - 2 * q[j] - p[pos] + t[j]  # s_j (p - t_j)
            r = model.addVar(lb=0.0, ub=span)
            d = model.addVar(vtype="B")
            model.addCons(r >= g)
            model.addCons(r <= g + span * (1 - d))
            model.addCons(r <= span * d)
            f = model.addVar(lb=-phi_max, ub=phi_max)
            model.addCons(f == a0 * g + (a1 - a0) * r)
            phi[pos, j] = f
    A = [[model.addVar(lb=-B, ub=B, name=f"A{k}_{j}") for j in range(m1)] for k in range(m2)]
    b = [model.addVar(lb=-B, ub=B, name=f"b{k}") for k in range(m2)]
    c = model.addVar(lb=-c_max if data.output_bias else 0.0, ub=c_max if data.output_bias else 0.0, name="c")
    fitted = []
    for pos in range(G):
        out = c
        for k in range(m2):
            z = model.addVar(lb=-z_max, ub=z_max)
            prods = []
            for j in range(m1):
                u = model.addVar(lb=-B * phi_max, ub=B * phi_max)
                model.addCons(u == A[k][j] * phi[pos, j])
                prods.append(u)
            model.addCons(z == b[k] + quick(prods))
            h = model.addVar(lb=0.0, ub=z_max)
            e = model.addVar(vtype="B")
            model.addCons(h >= z)
            model.addCons(h <= z + z_max * (1 - e))
            model.addCons(h <= z_max * e)
            out = out + float(signs[k]) * (a0 * z + (a1 - a0) * h)
        fv = model.addVar(lb=None, ub=None)
        model.addCons(fv == out)
        fitted.append(fv)
    loss = model.addVar(lb=0.0, name="loss")
    n = data.y.shape[0]
    if data.loss == "squared":
        model.addCons(loss >= data.weight * quick((fitted[data.where[i]] - float(data.y[i])) ** 2 for i in range(n)))
    else:
        e = [model.addVar(lb=0.0) for _ in range(n)]
        for i in range(n):
            f, y = fitted[data.where[i]], float(data.y[i])
            if data.loss == "absolute":
                model.addCons(e[i] >= f - y)
                model.addCons(e[i] >= y - f)
            else:
                model.addCons(e[i] >= 1.0 - y * f)
        model.addCons(loss >= data.weight * quick(e))
    model.setObjective(loss, "minimize")

    def read(m, sol) -> CanonicalNet:
        orient = np.array([1.0 if m.getSolVal(sol, o[j]) > 0.5 else -1.0 for j in range(m1)])
        return CanonicalNet(orientations=orient, t=np.array([m.getSolVal(sol, t[j]) for j in range(m1)]),
                            A=np.array([[m.getSolVal(sol, A[k][j]) for j in range(m1)] for k in range(m2)]),
                            b=np.array([m.getSolVal(sol, b[k]) for k in range(m2)]), signs=signs.copy(),
                            c=float(m.getSolVal(sol, c)))

    return model, read
