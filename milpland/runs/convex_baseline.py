"""The convex-training baseline: Pilanci & Ergen's convex program of two-layer ReLU training with
weight decay ("Neural networks are convex regularizers", ICML 2020), over sampled activation
patterns as the `scnn` package samples them, solved with Clarabel.  A baseline for `bench`
(``--methods convex``), not part of the certified pipeline: nothing here certifies anything.

**The objective it matches.**  milpland's network f(x) = Σ_j v_j σ(w_j·x + b_j) + c and its
weight-decay objective (`[loss] weight_decay = λ`, `decay_biases`)

    J(θ) = R(f) + (λ/2) (‖W1‖² + ‖b1‖² + ‖v‖² + c²)      (decay_biases = true)
    J(θ) = R(f) + (λ/2) (‖W1‖² + ‖v‖²)                     (decay_biases = false: b1, c free)

with R(f) = ω Σ_i loss(f_i, y_i), ω = 1/n ("mean") or 1/2 ("half_sum"), exactly as milpland's
risk; c = 0 without an output bias.  Nothing is rescaled: the program below has the same ω and λ.

**Balancing (why (λ/2)‖θ‖² becomes λ Σ ‖q‖).**  σ is positively homogeneous (ReLU, leaky ReLU,
two-slope: σ(tz) = tσ(z) for t > 0), so with u_j = (w_j, b_j) and x̃ = (x, 1) the unit
v_j σ(u_j·x̃) is unchanged by u_j → t u_j, v_j → v_j / t.  Over t > 0,

    min_t (λ/2)(t²‖u_j‖² + v_j²/t²) = λ |v_j| ‖u_j‖     (AM-GM; at t² = |v_j| / ‖u_j‖),

so at any minimiser every unit is balanced (‖u_j‖ = |v_j|) and the penalty is λ ‖q_j‖ with
q_j = |v_j| u_j ∈ R^{d+1}; the unit's output is s_j σ(x̃·q_j), s_j = sign v_j.  With
decay_biases = false only w_j is penalised: the same minimisation gives λ ‖q_j[:d]‖ (the bias
coordinate free), attained when w_j ≠ 0.  A unit with w_j = 0 is the constant v_j σ(b_j); its
penalty's infimum 0 is not attained by the unit, but the constant moves into the unpenalised
output bias c at no cost, so the value is attained.  Without an output bias it is not (the
infimum of J need not be a minimum), so that case (decay_biases = false, output_bias = false)
is refused.  The output bias enters the program as the free scalar c with (λ/2)c² (decay_biases
= true) or no penalty (false).

**Patterns (why the program is convex and exact over its patterns).**  For a 0/1 diagonal D
with (2D − I) X̃ q ≥ 0, every sample's pre-activation x̃_i·q has the sign D says, so
σ(X̃ q) = D_σ X̃ q with D_σ = α₀ I + (α₁ − α₀) D (α₀, α₁ the slopes below and above 0; ReLU:
D_σ = D).  Grouping units by (pattern, sign) and summing their q's (the cone is convex; the
norm's triangle inequality only lowers the penalty) turns every network into a feasible point of

    minimise  R(Σ_i D_σ,i X̃ (v_i − w_i) + c 1) + λ Σ_i (‖v_i‖ + ‖w_i‖) [+ (λ/2) c²]
    s.t.      (2 D_i − I) X̃ v_i ≥ 0,  (2 D_i − I) X̃ w_i ≥ 0            (norms on [:d] if decay_biases = false)

with no larger objective — provided its units' patterns are among the D_i (a unit with a tie
x̃_i·q = 0 lies in the closed cone of a strictly realisable pattern, so those suffice) — and every feasible
point back into a network with the same objective: each non-zero group becomes one unit
u = q / √‖q‖, output weight ±√‖q‖ (norms of q[:d] when biases are free).  Hence: with **every**
pattern of the augmented data X̃ = [X, 1] the optimum is a lower bound on J for networks of
any width and equals the width-m minimum when its solution has at most m non-zero groups; with
**sampled** patterns (`scnn`: Gaussian gate vectors g, D = diag(1[X̃ g ≥ 0])) its network is a
real network, so its objective is an upper bound on the minimum at its width, not a bound below.

**Width.**  The network's width is its number of non-zero groups.  When it exceeds the spec's
width m the network is not comparable with milpland's width-m minimum, so it is pruned (`prune`):
two candidate supports of at most m groups — the m groups of largest penalised norm, and the
groups that survive a larger λ' (the group-lasso path: λ' doubled until at most m are left, then
bisected) — the program solved again over each (a width-≤m network, exact for those patterns),
and the one with the lower numpy objective kept.  Its objective is an upper bound on the width-m
minimum, so comparable; the unpruned width and objective are reported beside it.

**What is reported** is the objective of the returned network re-evaluated by a plain numpy
forward pass (`network_objective`), never the solver's value (given beside it).
Supported: one hidden layer, ReLU / leaky ReLU / two-slope units, squared and absolute loss;
the rest is refused with a one-line `MilplandError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from milpland.errors import MilplandError
from milpland.instance.activations import Activation
from milpland.instance.losses import Loss
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import InstanceSpec
from milpland.search.convex_program import (  # noqa: F401  (the program lives in search/; re-exported)
    ZERO_GROUP,
    ConvexProgram,
    Decay,
    ProgramSolution,
    augmented,
    network_objective,
    program_for,
    solve_program,
    support,
    to_network,
)

# scnn's quick start trains ReLU models with max_neurons = 500, i.e. 250 gate vectors (ReLU
# models have up to 2 units per gate: the v and w groups).
DEFAULT_GATES = 250
SUPPORTED_LOSSES = ("squared", "absolute")


@dataclass(frozen=True, eq=False)
class ConvexFit:
    """What the baseline returns: a network and its objective by numpy, with the program's facts."""

    params: OneHiddenParams  # the reported network (width ≤ the spec's, zero units padded)
    objective: float  # J(params) by `network_objective`
    data_risk: float  # R(f) of params, without the penalty
    solver_value: float  # the program's optimum claimed by Clarabel (the pruned program's when pruned)
    solver_status: str
    convex_width: int  # non-zero groups of the first solve
    pruned: bool  # convex_width exceeded the spec's width: params come from the re-solve (module doc)
    prune_rule: str  # "largest" or "path" (`prune`), "" when not pruned
    objective_unpruned: float  # J of the convex_width-unit network (not comparable when pruned)
    patterns: int  # distinct patterns in the program
    gates: int  # sampled gate vectors (0 when the patterns were given)
    seconds: float
    iterations: int

    def to_row(self) -> dict:
        return {"objective": self.objective, "data_risk": self.data_risk, "solver_value": self.solver_value,
                "solver_status": self.solver_status, "convex_width": self.convex_width, "pruned": self.pruned,
                "prune_rule": self.prune_rule,
                "objective_unpruned": self.objective_unpruned, "patterns": self.patterns, "gates": self.gates,
                "iterations": self.iterations}


# ----------------------------------------------------------------------------------------------
# What the baseline accepts
# ----------------------------------------------------------------------------------------------


def decay_of(spec: InstanceSpec) -> Decay:
    """λ and decay_biases from the spec's loss (getattr: weight decay may not be in `Loss` yet)."""
    return Decay(float(getattr(spec.loss, "weight_decay", 0.0)), bool(getattr(spec.loss, "decay_biases", True)))


def check_supported(spec: InstanceSpec) -> None:
    """A one-line MilplandError for what the convex program cannot represent exactly."""
    act = spec.network.activation
    if spec.network.depth != 1:
        raise MilplandError("convex: the convex program is for one hidden layer; this network has "
                            f"{spec.network.depth}")
    if not (act.homogeneous and act.n_pieces == 2):
        raise MilplandError(f"convex: needs a positively homogeneous two-piece activation (relu, leaky_relu, "
                            f"two_slope), not {act.name}")
    if spec.loss.kind not in SUPPORTED_LOSSES:
        raise MilplandError(f"convex: supports the {' and '.join(SUPPORTED_LOSSES)} losses, not {spec.loss.kind}")
    decay = decay_of(spec)
    if not (np.isfinite(decay.weight_decay) and decay.weight_decay >= 0):
        raise MilplandError(f"convex: loss.weight_decay must be a finite number >= 0, got {decay.weight_decay!r}")
    if not decay.decay_biases and not spec.network.output_bias and decay.weight_decay > 0:
        raise MilplandError("convex: decay_biases = false needs an output bias (a constant unit's penalty has "
                            "infimum 0 that no network attains); set network.output_bias = true")


# ----------------------------------------------------------------------------------------------
# Patterns
# ----------------------------------------------------------------------------------------------


def sample_patterns(Xt: np.ndarray, gates: int, seed: int) -> np.ndarray:
    """Distinct patterns 1[X̃ g ≥ 0] of `gates` Gaussian gate vectors g ~ N(0, I) (as `scnn`)."""
    G = np.random.default_rng(seed).standard_normal((Xt.shape[1], gates))
    return np.unique((Xt @ G >= 0).T, axis=0)


# ----------------------------------------------------------------------------------------------
# The baseline
# ----------------------------------------------------------------------------------------------


def fit_convex(X: np.ndarray, y: np.ndarray, act: Activation, loss: Loss, decay: Decay, *, output_bias: bool = True,
               width: int | None = None, gates: int = DEFAULT_GATES, seed: int = 0,
               masks: np.ndarray | None = None) -> ConvexFit:
    """Solve the convex program over `gates` sampled patterns (or the given `masks`, (P, n) 0/1),
    map it to a network, prune to `width` when it has more units (module doc), re-evaluate in numpy."""
    started = time.perf_counter()
    Xt = augmented(X)
    drawn = masks if masks is not None else sample_patterns(Xt, gates, seed)
    full = program_for(X, y, act, loss, decay, output_bias=output_bias, masks=drawn)
    program, solution = _solve_on_support(full)
    convex_width = len(to_network(program, solution, act).v)
    wide = to_network(program, solution, act, width or 0)
    objective_wide, _ = network_objective(wide, X, y, act, loss, decay)
    pruned = width is not None and convex_width > width
    rule = ""
    if pruned:
        rule, program, solution = prune(program, solution, width, act, X, y)
    params = to_network(program, solution, act, width or 0) if pruned else wide
    objective, risk = network_objective(params, X, y, act, loss, decay)
    return ConvexFit(params=params, objective=objective, data_risk=risk, solver_value=solution.value,
                     solver_status=solution.status, convex_width=convex_width, pruned=pruned, prune_rule=rule,
                     objective_unpruned=objective_wide, patterns=full.groups // 2,
                     gates=0 if masks is not None else gates, seconds=time.perf_counter() - started,
                     iterations=solution.iterations)


def prune(program: ConvexProgram, solution: ProgramSolution, width: int, act: Activation, X: np.ndarray,
          y: np.ndarray) -> tuple[str, ConvexProgram, ProgramSolution]:
    """The better (numpy objective) of two width-≤m networks, each the program re-solved over at
    most m of the solution's groups: ``largest``, the m groups of largest penalised norm; ``path``,
    the groups that survive a larger λ' (doubled from λ until at most m groups are left, then
    bisected on log λ' towards the largest such support), the group-lasso way to pick a support."""
    norms = np.linalg.norm(program.penalised(solution.Q), axis=1)
    candidates = [("largest", *_solve_on_support(program.subset(np.argsort(-norms)[:width])))]
    survivors = path_support(program, width)
    if survivors is not None:
        candidates.append(("path", *_solve_on_support(program.subset(survivors))))
    return min(candidates, key=lambda c: network_objective(to_network(c[1], c[2], act), X, y, act, c[1].loss,
                                                           c[1].decay)[0])


def path_support(program: ConvexProgram, width: int, *, steps: int = 6) -> np.ndarray | None:
    """The non-zero groups at a λ' ≥ λ where at most `width` remain (module doc); None if doubling
    λ' 60 times never got there."""
    def survivors(lam: float) -> np.ndarray:
        harder = replace(program, decay=Decay(lam, program.decay.decay_biases))
        return support(harder, solve_program(harder).Q)

    low = program.decay.weight_decay if program.decay.weight_decay > 0 else 1e-6
    for _ in range(60):
        high = 2.0 * low
        keep = survivors(high)
        if keep.sum() <= width:
            break
        low = high
    else:
        return None
    for _ in range(steps):  # the smallest λ' that still leaves at most `width` groups, roughly
        middle = np.sqrt(low * high)
        trial = survivors(middle)
        if trial.sum() <= width:
            high, keep = middle, trial
        else:
            low = middle
    return keep


def _solve_on_support(program: ConvexProgram) -> tuple[ConvexProgram, ProgramSolution]:
    """Solve; if some groups are zero, solve again over the others only, so that the returned
    groups are the solution's support and not interior-point residue (the dropped groups are
    zero at this optimum, so the optimum is unchanged up to the solver's tolerance)."""
    solution = solve_program(program)
    keep = support(program, solution.Q)
    if keep.all() or not keep.any():
        return program, solution
    reduced = program.subset(keep)
    return reduced, solve_program(reduced)


def fit_spec(spec: InstanceSpec, *, gates: int = DEFAULT_GATES, seed: int | None = None) -> ConvexFit:
    """`fit_convex` on an instance (width = the spec's; seed = [solve] seed unless given)."""
    check_supported(spec)
    if isinstance(gates, bool) or not isinstance(gates, int) or gates < 1:
        raise MilplandError(f"--gates: must be a positive integer, got {gates!r}")
    return fit_convex(spec.X, spec.y, spec.network.activation, spec.loss, decay_of(spec),
                      output_bias=spec.network.output_bias, width=spec.width, gates=gates,
                      seed=spec.solve.seed if seed is None else seed)


# ----------------------------------------------------------------------------------------------
# bench
# ----------------------------------------------------------------------------------------------

REACHED_TOL = 1e-6  # relative: the same tolerance as bench's fraction_global


def bench_row(spec: InstanceSpec, ctx: dict) -> dict:
    """bench's row for ``convex``: `risk` is the objective J of its network (the value milpland's
    weight-decay solve minimises), compared with the certified minimum of the same run when there
    is one (`reached_global`, `miss` = (J − J*) / |J*|)."""
    import clarabel

    decay = decay_of(spec)
    fit = fit_spec(spec, gates=ctx.get("gates", DEFAULT_GATES))
    target = ctx.get("global_risk", np.nan)
    row = {"status": "heuristic", "certified": False, "risk": fit.objective, "seconds": fit.seconds,
           "weight_decay": decay.weight_decay, "decay_biases": decay.decay_biases,
           "solver_name": "clarabel", "solver_version": clarabel.__version__, **fit.to_row()}
    if decay.weight_decay == 0:
        row["message"] = "weight_decay = 0: the program does not limit its width (pruned networks are poor)"
    if np.isfinite(target):
        scale = max(abs(target), 1e-12)
        row["miss"] = (fit.objective - target) / scale
        row["reached_global"] = bool(fit.objective <= target + REACHED_TOL * scale)
    return row


def summary_lines(table) -> list[str]:
    """The report's paragraph on the convex rows: how often they reached the certified minimum of
    the same run, the median and largest miss, the median time."""
    rows = table[(table["method"] == "convex") & table["status"].eq("heuristic")] if "method" in table else table[:0]
    if not len(rows):
        return []
    compared = rows.dropna(subset=["miss"]) if "miss" in rows else rows[:0]
    lines = ["## Convex baseline (sampled patterns)", "",
             f"{len(rows)} instance(s), median {np.median(rows['seconds']):.3g} s; widths above the spec's "
             f"(pruned and re-solved): {int(rows['pruned'].sum())}."]
    if len(compared):
        reached = compared["reached_global"].astype(bool)
        lines.append(f"Against the certified minimum of the same run ({len(compared)} instance(s)): reached it "
                     f"(within {REACHED_TOL:g} relative) on {int(reached.sum())}; miss (J − J*)/J*: median "
                     f"{np.median(compared['miss']):.3g}, largest {compared['miss'].max():.3g}.")
    return lines + [""]
