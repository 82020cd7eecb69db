"""The measurements of results/frontier.md (issue 15, items 2-4).

    python results/frontier.py rows [NAME ...]        # each acceptance row, default method, 60 s: JSON lines
    python results/frontier.py ratios results/bench-scaling.csv   # SCIP time / auto time per instance

Rows: teacher data (teacher width 3, noise 0.1, seed 0, as models/suites/targets.toml), ReLU,
squared loss unless the name says abs.  `auto`'s method for the ratios is solve.choose_method's
choice; the bench ran milp and bnb each, so both times are in the CSV.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

ROWS = {  # name: (d, width, n, loss)
    "d2-w3-n40": (2, 3, 40, "squared"), "d2-w3-n80": (2, 3, 80, "squared"), "d2-w4-n20": (2, 4, 20, "squared"),
    "d3-w3-n20": (3, 3, 20, "squared"), "d3-w2-n80": (3, 2, 80, "squared"), "d1-w3-n320": (1, 3, 320, "squared"),
    "d1-w4-n80": (1, 4, 80, "squared"), "abs-d2-w3-n40": (2, 3, 40, "absolute"),
}


def table(d: int, width: int, n: int, loss: str, method: str = "auto", time_limit: float = 60.0) -> dict:
    return {"name": f"d{d}-w{width}-n{n}-{loss}",
            "data": {"generator": "teacher", "teacher_width": 3, "noise": 0.1, "seed": 0, "d": d, "n": n},
            "network": {"activation": "relu", "hidden": [width]}, "loss": {"kind": loss},
            "solve": {"time_limit": time_limit, "method": method}}


def rows(names: list[str]) -> None:
    from milpland.instance.spec import spec_from_dict
    from milpland.search.solve import solve_global
    for name in names or list(ROWS):
        spec = spec_from_dict(table(*ROWS[name]))
        wall, cpu = time.perf_counter(), time.process_time()
        res = solve_global(spec)
        print(json.dumps({"name": name, "method": res.method, "status": res.status, "certified": res.certified,
                          "risk": res.risk, "lower_bound": res.lower_bound, "gap": res.gap, "nodes": res.nodes,
                          "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}), flush=True)


def ratios(csv: str) -> None:
    import pandas as pd

    from milpland.runs.suites import load_suite
    from milpland.search.solve import choose_method
    df = pd.read_csv(csv)
    auto = {i.name: choose_method(i.spec) for i in load_suite("models/suites/scaling.toml")}
    out = []
    print("| instance | d | width | loss | auto | auto s | SCIP s | SCIP status | SCIP / auto |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, group in df.groupby("instance", sort=False):
        by = {r.method: r for r in group.itertuples()}
        a, s = by[auto[name]], by["scip"]
        if not (a.status == "optimal" and a.certified) and s.status != "optimal":
            continue  # neither finished: no ratio
        ratio = s.seconds / a.seconds
        out.append(ratio)
        mark = " (SCIP at its limit: at least)" if s.status != "optimal" else ""
        print(f"| {name} | {a.d} | {a.width} | {a.loss} | {auto[name]} | {a.seconds:.3g} | {s.seconds:.3g} | "
              f"{s.status} | {ratio:.3g}{mark} |")
    print(f"\nmedian SCIP / auto over {len(out)} instances: {statistics.median(out):.3g}")


if __name__ == "__main__":
    {"rows": lambda: rows(sys.argv[2:]), "ratios": lambda: ratios(sys.argv[2])}[sys.argv[1]]()
