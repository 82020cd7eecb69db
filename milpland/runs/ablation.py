"""Ablation of the global solve's techniques: ``python -m milpland.runs.ablation --out results/ablation.csv``.

Runs a small seeded grid of instances (teacher data and random labels, widths 2-3, d 1-2,
n 10-100, squared and absolute loss, ReLU) with each technique of `FormulationOptions` /
`SolveStrategy` (the MILP search) and of `BnbOptions` (the pattern branch-and-bound, configurations
named bnb-*) toggled against the default, and records status, certificate, risk, lower
bound, gap, nodes, outer-approximation rounds and build / solve seconds.  Writes the rows
(CSV) and a Markdown summary (medians over repeats, with the machine) next to it.

The machine may be shared: timings are noisy, so every configuration can be repeated
(--repeats) and node counts are reported as the robust measure.  Every run has a time limit.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import highspy
import pandas as pd

from milpland.instance.spec import InstanceSpec, spec_from_dict
from milpland.search.formulation import FormulationOptions
from milpland.search.incumbents import MultistartOptions
from milpland.search.pattern_bnb import BnbOptions, applies
from milpland.search.solve import SolveStrategy, solve_global

DEFAULT_F = FormulationOptions()
DEFAULT_S = SolveStrategy()
CONFIGS: dict[str, tuple[FormulationOptions, SolveStrategy]] = {
    "default": (DEFAULT_F, DEFAULT_S),
    "no-hull-1d": (replace(DEFAULT_F, threshold_hull_1d=False), DEFAULT_S),
    "no-threshold-1d": (replace(DEFAULT_F, threshold_hull_1d=False, threshold_1d=False), DEFAULT_S),
    "no-geometry": (replace(DEFAULT_F, geometry_cuts=False), DEFAULT_S),
    "loose-bounds": (replace(DEFAULT_F, tight_bounds=False), DEFAULT_S),
    "obbt": (replace(DEFAULT_F, obbt=True), DEFAULT_S),
    "order-bias": (replace(DEFAULT_F, order_units="bias"), DEFAULT_S),
    "order-count": (replace(DEFAULT_F, order_units="count"), DEFAULT_S),
    "no-cache": (replace(DEFAULT_F, cache_classes=False), DEFAULT_S),
    "no-multistart": (DEFAULT_F, replace(DEFAULT_S, multistart=MultistartOptions(starts=0))),
    "no-cutoff": (DEFAULT_F, replace(DEFAULT_S, cutoff=False)),
    "no-warm-start": (DEFAULT_F, replace(DEFAULT_S, warm_start=False)),
    "no-class-order": (DEFAULT_F, replace(DEFAULT_S, incumbent_class_first=False)),
    "no-tangent-grid": (DEFAULT_F, replace(DEFAULT_S, tangent_grid=0)),
    "no-candidate-tangents": (DEFAULT_F, replace(DEFAULT_S, candidate_tangents=0)),
    "parallel-2": (DEFAULT_F, replace(DEFAULT_S, processes=2)),
    "all-off": (
        FormulationOptions(threshold_1d=False, threshold_hull_1d=False, geometry_cuts=False, tight_bounds=False,
                           obbt=False, order_units="none", cache_classes=False),
        SolveStrategy(multistart=MultistartOptions(starts=0), cutoff=False, warm_start=False,
                      incumbent_class_first=False, candidate_tangents=0, tangent_grid=0),
    ),
}
# The pattern branch-and-bound (method bnb; its grid is squared loss): each technique off in turn.
BNB_CONFIGS: dict[str, BnbOptions] = {
    "bnb": BnbOptions(),
    "bnb-hull": BnbOptions(relaxation="hull"),
    "bnb-middle-branching": BnbOptions(branching="middle"),
    "bnb-no-symmetry": BnbOptions(symmetry=False),
    "bnb-lex-symmetry": BnbOptions(orbital=False),  # the lexicographic order instead of orbital branching
    "bnb-no-relaxation-incumbents": BnbOptions(relaxation_incumbents=False),
    "bnb-convexity-relaxation": BnbOptions(relaxation="convexity"),
    "bnb-convexity-no-rows": BnbOptions(relaxation="convexity", convexity=False),
}
CONFIGS.update({name: (DEFAULT_F, replace(DEFAULT_S, bnb=options)) for name, options in BNB_CONFIGS.items()})
# (generator, n, d, width, loss): the full grid and the reduced one used while developing
GRID = [
    ("teacher", 20, 1, 3, "squared"), ("random_labels", 20, 1, 3, "squared"), ("teacher", 40, 1, 3, "squared"),
    ("teacher", 100, 1, 3, "squared"), ("teacher", 20, 1, 2, "absolute"), ("teacher", 10, 2, 2, "squared"),
    ("random_labels", 10, 2, 2, "squared"), ("teacher", 20, 2, 2, "absolute"), ("teacher", 20, 2, 3, "squared"),
]
REDUCED = [("teacher", 20, 1, 3, "squared"), ("random_labels", 14, 1, 2, "squared"),
           ("random_labels", 10, 2, 2, "squared"), ("teacher", 14, 1, 2, "absolute")]
BNB_GRID = [("teacher", 20, 1, 3, "squared"), ("random_labels", 20, 1, 3, "squared"), ("teacher", 40, 1, 3, "squared"),
            ("teacher", 100, 1, 3, "squared"), ("teacher", 10, 2, 2, "squared"), ("teacher", 20, 2, 3, "squared"),
            ("random_labels", 12, 2, 3, "squared"), ("teacher", 40, 2, 3, "squared")]
REDUCED_CONFIGS = ["default", "no-hull-1d", "no-geometry", "no-multistart", "no-cutoff", "no-warm-start",
                   "order-bias", "obbt", "all-off"]


def make_instance(generator: str, n: int, d: int, width: int, loss: str, *, seed: int, time_limit: float) -> InstanceSpec:
    data = {"generator": generator, "n": n, "d": d, "seed": seed}
    if generator == "teacher":
        data["noise"] = 0.1
    return spec_from_dict({
        "name": f"{generator}-n{n}-d{d}-w{width}-{loss}-s{seed}", "data": data,
        "network": {"hidden": [width], "activation": "relu"}, "loss": {"kind": loss},
        "solve": {"time_limit": float(time_limit), "seed": 0},
    })


def run_one(spec: InstanceSpec, config: str, repeat: int) -> dict:
    """One solve; the MILP configurations force method milp, the bnb ones method bnb (a bnb
    configuration on an instance bnb cannot handle is recorded as skipped)."""
    formulation, strategy = CONFIGS[config]
    method = "bnb" if config in BNB_CONFIGS else "milp"
    if method == "bnb" and applies(spec):
        return {"instance": spec.name, "config": config, "repeat": repeat, "status": "skipped"}
    spec = spec.with_options(method=method)
    started = time.perf_counter()
    result = solve_global(spec, formulation=formulation, strategy=strategy)
    wall = time.perf_counter() - started
    classes = result.options.get("classes", [])
    coef_max = max((c["coefficients"].get("matrix", [0, 0])[1] for c in classes if c["coefficients"]), default=0.0)
    coef_min = min((c["coefficients"].get("matrix", [0, 0])[0] for c in classes if c["coefficients"]), default=0.0)
    return {
        "instance": spec.name, "n": spec.n, "d": spec.d, "width": spec.width, "loss": spec.loss.kind,
        "config": config, "repeat": repeat, "status": result.status, "certified": result.certified,
        "box_active": result.box_active, "risk": result.risk, "lower_bound": result.lower_bound, "gap": result.gap,
        "nodes": result.nodes, "rounds": result.iterations, "build_s": result.seconds.build,
        "solve_s": result.seconds.solve, "total_s": wall, "incumbent_s": result.options.get("incumbent_seconds", 0.0),
        "incumbent_found_by": result.options.get("incumbent_found_by", ""), "matrix_min": coef_min,
        "matrix_max": coef_max, "time_limit": spec.solve.time_limit,
    }


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "highspy": highspy.Highs().version(), "load_1min_at_start": round(load, 2)}


def summarise(rows: pd.DataFrame, info: dict) -> str:
    """Markdown: the machine, then per instance and configuration the medians over repeats."""
    rows = rows[rows["status"] != "skipped"]
    g = rows.groupby(["instance", "config"], sort=False)
    table = g.agg(runs=("repeat", "count"), certified=("certified", "mean"), nodes=("nodes", "median"),
                  rounds=("rounds", "median"), build_s=("build_s", "median"), solve_s=("solve_s", "median"),
                  total_s=("total_s", "median"), gap=("gap", "max"), risk=("risk", "min"),
                  lower_bound=("lower_bound", "min")).reset_index()
    lines = ["# Ablation of the global solve", "",
             "Machine: " + ", ".join(f"{k} = {v}" for k, v in info.items()), "",
             "Medians over repeats; `certified` is the fraction of certified runs; build share = build / total.", "",
             "| instance | config | runs | certified | nodes | rounds | build s | solve s | total s | build share | gap | risk |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        share = r.build_s / r.total_s if r.total_s > 0 else 0.0
        lines.append(f"| {r.instance} | {r.config} | {r.runs} | {r.certified:.2f} | {r.nodes:.0f} | {r.rounds:.0f} | "
                     f"{r.build_s:.2f} | {r.solve_s:.2f} | {r.total_s:.2f} | {share:.1%} | {r.gap:.1e} | {r.risk:.6g} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m milpland.runs.ablation", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/ablation.csv", help="CSV of every run (the .md goes next to it)")
    p.add_argument("--grid", choices=("full", "reduced", "bnb"), default="full",
                   help="full / reduced: the MILP grid; bnb: 1-D squared-loss instances for the bnb-* configurations")
    p.add_argument("--configs", help="comma-separated configuration names (default: all for the grid)")
    p.add_argument("--time-limit", type=float, default=20.0, help="seconds per solve (default 20)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="data seed")
    args = p.parse_args(argv)
    grid = {"full": GRID, "reduced": REDUCED, "bnb": BNB_GRID}[args.grid]
    default_configs = {"full": list(CONFIGS), "reduced": REDUCED_CONFIGS, "bnb": ["default", *BNB_CONFIGS]}
    configs = args.configs.split(",") if args.configs else default_configs[args.grid]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = machine()
    rows = []
    for instance in grid:
        spec = make_instance(*instance, seed=args.seed, time_limit=args.time_limit)
        for config in configs:
            for repeat in range(args.repeats):
                row = run_one(spec, config, repeat)
                rows.append(row)
                print(f"{row['instance']:<36} {config:<28} {row['status']:<10} cert={row.get('certified')!s:<5} "
                      f"nodes={row.get('nodes', '-')!s:<7} rounds={row.get('rounds', '-')!s:<3} "
                      f"total={row.get('total_s', float('nan')):.1f}s", flush=True)
                pd.DataFrame(rows).to_csv(out, index=False)  # after every run: an interruption loses nothing
    frame = pd.DataFrame(rows)
    out.with_suffix(".md").write_text(summarise(frame, info), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
