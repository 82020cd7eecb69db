"""Benchmarks: milpland's certified global solve against baselines, in the same run.

`run_bench(targets, methods=...)` runs every instance of a suite with every method
and returns one row per (instance, method).  Methods:

- ``milp``: `solve_global` (certified global minimum over the box).
- ``enumerate``: brute-force enumeration of every realizable cell (modulo unit
  permutations), each cell's convex problem solved; skipped above a cell limit.
- ``gd``: seeded multistart gradient descent; time, best risk, and the fraction of
  starts that reach the certified global minimum (within 1e-6 relative).
- ``scip``: SCIP through Pyomo's ``scip_direct`` on the same per-sign-class model with
  the squared loss as a quadratic objective (an MIQP; the hull MILP for absolute and
  hinge), with ``numerics/feastol = 1e-9`` (DESIGN §4).  Only when pyscipopt is installed.

`write_report` writes ``bench-<name>.csv``, ``bench-<name>.md`` (table, machine,
headline ratios) and ``bench-<name>.png`` (time against n) to the output folder.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from milpland.errors import MilplandError
from milpland.spec import InstanceSpec

GLOBAL_TOL = 1e-6


def run_milp(spec: InstanceSpec, ctx: dict) -> dict:
    from milpland.solve import solve_global

    result = solve_global(spec)
    ctx["global_risk"] = result.risk if result.certified or result.status == "optimal" else np.nan
    return {
        "status": result.status, "certified": result.certified, "risk": result.risk,
        "lower_bound": result.lower_bound, "gap": result.gap, "box_active": result.box_active,
        "seconds_build": result.seconds.build, "seconds_solve": result.seconds.solve,
        "seconds": result.seconds.total, "nodes": result.nodes, "rounds": result.iterations,
        "verified": bool(result.verification and result.verification.ok),
    }


def run_enumerate(spec: InstanceSpec, ctx: dict) -> dict:
    """Brute force: every realizable cell (modulo unit permutations) solved; the smallest optimum."""
    from milpland.cells import CellSolver
    from milpland.enumeration import count_cells, generate_cells, unit_patterns

    started = time.perf_counter()
    act = spec.network.activation
    patterns = unit_patterns(spec.X, act)
    total = count_cells(patterns.shape[0], spec.width, act)
    if total > ctx["max_cells"]:
        return {"status": "skipped", "cells": total, "seconds": time.perf_counter() - started,
                "message": f"{total} cells > --max-cells {ctx['max_cells']}"}
    solver = CellSolver(spec.X, spec.y, act, spec.loss, spec.box, output_bias=spec.network.output_bias)
    deadline = started + spec.solve.time_limit
    best, solved = np.inf, 0
    cells = generate_cells(patterns, spec.width, act)
    while time.perf_counter() < deadline:
        chunk = [cell for _, cell in zip(range(200), cells)]
        if not chunk:
            break
        best = min([best] + [r.risk for r in solver.solve_many(chunk) if r.status == "optimal"])
        solved += len(chunk)
    complete = solved == total
    return {"status": "optimal" if complete else "time_limit", "certified": complete, "risk": best,
            "lower_bound": best if complete else 0.0, "seconds": time.perf_counter() - started,
            "cells": total, "cells_solved": solved,
            "cells_per_second": solved / max(time.perf_counter() - started, 1e-9)}


def run_gd(spec: InstanceSpec, ctx: dict) -> dict:
    """Seeded multistart gradient descent (vectorised over the starts), as a landscape user would run it."""
    from milpland.sampling import descend

    started = time.perf_counter()
    run = descend(spec, starts=ctx["starts"], seed=spec.solve.seed)
    seconds = time.perf_counter() - started
    target = ctx.get("global_risk", np.nan)
    reached = np.nan
    if np.isfinite(target):
        reached = float(np.mean(run.risk <= target + GLOBAL_TOL * max(abs(target), 1e-12)))
    return {"status": "heuristic", "certified": False, "risk": float(np.min(run.risk)),
            "seconds": seconds, "starts": len(run.risk), "fraction_global": reached}


def run_scip(spec: InstanceSpec, ctx: dict) -> dict:
    """The same sign-class models solved by SCIP directly (MIQP for squared loss)."""
    import pyomo.environ as pyo
    from pyomo.contrib.solver.common.factory import SolverFactory

    from milpland.formulation import FormulationOptions, build_master
    from milpland.scaled import sign_class
    from milpland.solve import sign_class_order

    solver = SolverFactory("scip_direct")
    if not solver.available():
        raise MilplandError("SCIP is not installed: pip install 'milpland[scip]'")
    started = time.perf_counter()
    best, bound, complete, nodes = np.inf, np.inf, True, 0
    for n_positive in sign_class_order(spec):
        remaining = spec.solve.time_limit - (time.perf_counter() - started)
        if remaining <= 0:
            complete, bound = False, min(bound, 0.0)
            break
        model = build_master(spec, sign_class(n_positive, spec.width), FormulationOptions())
        if spec.loss.kind == "squared":
            model.risk.deactivate()
            weight = float(spec.loss.weight(spec.n))
            model.risk_squared = pyo.Objective(
                expr=weight * sum((model.f[i] - float(spec.y[i])) ** 2 for i in model.I), sense=pyo.minimize
            )
        result = solver.solve(
            model, time_limit=remaining, rel_gap=spec.solve.rel_gap / 4, load_solutions=False,
            raise_exception_on_nonoptimal_result=False,
            solver_options={"numerics/feastol": 1e-9, "randomization/randomseedshift": spec.solve.seed},
        )
        complete &= str(result.termination_condition).endswith("convergenceCriteriaSatisfied")
        if result.incumbent_objective is not None:
            best = min(best, float(result.incumbent_objective))
        class_bound = result.objective_bound if result.objective_bound is not None else 0.0
        bound = min(bound, float(class_bound))
        nodes += int(getattr(result.extra_info, "nodes", 0) or 0)
    version = ".".join(str(v) for v in solver.version()) if solver.version() else ""
    return {"status": "optimal" if complete else "time_limit", "certified": False, "risk": best,
            "lower_bound": bound, "gap": (best - bound) / max(abs(best), 1e-12) if np.isfinite(best) else np.nan,
            "seconds": time.perf_counter() - started, "nodes": nodes, "solver_version": version}


METHODS: dict[str, Callable[[InstanceSpec, dict], dict]] = {
    "milp": run_milp, "enumerate": run_enumerate, "gd": run_gd, "scip": run_scip,
}


def run_bench(targets: list[str], *, methods: list[str], time_limit: float | None = None,
              max_cells: int = 200_000, starts: int = 200,
              progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """One row per (instance, method); a method that fails records its error and the run goes on."""
    from milpland.suites import resolve

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise MilplandError(f"unknown method(s) {unknown}; use some of {', '.join(METHODS)}")
    say = progress or (lambda _m: None)
    rows = []
    instances = resolve(targets)
    for position, inst in enumerate(instances, 1):
        if inst.spec is None:
            rows.append({"instance": inst.name, "group": inst.group, "method": "-", "status": "error",
                         "message": inst.error})
            continue
        spec = inst.spec if time_limit is None else inst.spec.with_options(time_limit=time_limit)
        ctx = {"max_cells": max_cells, "starts": starts}
        for method in milp_first(methods):
            row = {"instance": inst.name, "group": inst.group, "method": method, **describe(spec)}
            try:
                row.update(METHODS[method](spec, ctx))
            except MilplandError as exc:
                row.update({"status": "skipped", "message": str(exc)})
            except Exception as exc:  # a baseline failing must not stop the benchmark
                row.update({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
            rows.append(row)
            say(f"[{position}/{len(instances)}] {inst.name} {method}: {row.get('status')} "
                f"risk {row.get('risk', float('nan')):.6g} in {row.get('seconds', float('nan')):.2f} s")
    return pd.DataFrame(rows)


def milp_first(methods: list[str]) -> list[str]:
    """milp runs first: the baselines are measured against its certified global risk."""
    return sorted(methods, key=lambda m: m != "milp")


def describe(spec: InstanceSpec) -> dict:
    return {"n": spec.n, "d": spec.d, "width": spec.width, "activation": spec.network.activation.name,
            "loss": spec.loss.kind, "time_limit": spec.solve.time_limit, "seed": spec.solve.seed}


def headline_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Per baseline: on instances where both it and milp finished, time(baseline) / time(milp)."""
    finished = table[table["status"] == "optimal"]
    milp = finished[finished["method"] == "milp"].set_index("instance")["seconds"]
    rows = []
    for method in sorted(set(table["method"]) - {"milp", "-"}):
        subset = table[table["method"] == method].set_index("instance")
        done = subset[subset["status"].isin(["optimal", "heuristic"])]["seconds"]
        common = milp.index.intersection(done.index)
        if len(common) == 0:
            continue
        ratio = done[common] / milp[common]
        rows.append({"baseline": method, "instances": len(common), "median_ratio": float(np.median(ratio)),
                     "geomean_ratio": float(np.exp(np.mean(np.log(ratio)))), "min_ratio": float(ratio.min()),
                     "max_ratio": float(ratio.max())})
    return pd.DataFrame(rows)


def machine_description() -> str:
    import highspy

    from milpland.batch import machine_info

    info = machine_info()
    return (f"{info.get('cpu_model', platform.processor())}, {info.get('cpu_count')} cores, "
            f"{platform.platform()}, Python {platform.python_version()}, highspy {highspy.Highs().version()}")


def write_report(table: pd.DataFrame, *, name: str, out_dir: str | Path, command: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv, md, png = out / f"bench-{name}.csv", out / f"bench-{name}.md", out / f"bench-{name}.png"
    table.to_csv(csv, index=False)
    ratios = headline_ratios(table)
    columns = [c for c in ["instance", "method", "n", "d", "width", "loss", "status", "certified", "risk",
                           "lower_bound", "gap", "seconds_build", "seconds_solve", "seconds", "nodes", "rounds",
                           "cells", "cells_per_second", "fraction_global", "box_active", "message"] if c in table.columns]
    lines = [f"# Benchmark `{name}`", "", f"Command: `{command}`", "", f"Machine: {machine_description()}",
             f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}", "", "## Headline ratios (time of baseline / time of milp)", "",
             markdown_table(ratios) if len(ratios) else "(no instance finished by both)",
             "", "## All runs", "", markdown_table(table[columns]), ""]
    md.write_text("\n".join(lines))
    plot_times(table, png)
    return [csv, md, png]


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table (pandas' to_markdown needs the optional tabulate package)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if np.isnan(value) else f"{value:.4g}"
        return str(value).replace("|", "/")

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def plot_times(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, rows in table[table["method"] != "-"].groupby("method"):
        rows = rows.sort_values("n")
        done = rows["status"].isin(["optimal", "heuristic"])
        ax.scatter(rows.loc[done, "n"], rows.loc[done, "seconds"], label=f"{method}", alpha=0.8)
        ax.scatter(rows.loc[~done, "n"], rows.loc[~done, "seconds"], marker="x", color="grey", alpha=0.6)
    ax.set_xlabel("samples n")
    ax.set_ylabel("seconds (x: did not finish)")
    ax.set_yscale("log")
    ax.set_title("time to certified global minimum, and baselines")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
