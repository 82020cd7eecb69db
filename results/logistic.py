"""The cost of the logistic loss (DESIGN §4d, §4e), against the losses it sits next to, same run.

With weight decay: every cell's conic program for the logistic loss (two exponential cones per sample)
against the squared loss (an SOCP) on the same data and labels (+-1): seconds per cell, cells whose
certified gap stayed above 1e-8, certified or not.  Without weight decay: the MILP's outer approximation
for the logistic loss (tangent cuts, exponential-cone cells, the margin MILP) against the exact hinge
MILP on the same data: seconds, rounds, nodes.

    PYTHONPATH=. python results/logistic.py > results/logistic.csv
"""

from __future__ import annotations

import csv
import sys
import time

import numpy as np

from milpland.instance.spec import spec_from_dict
from milpland.search.decay_solve import solve_every_cell
from milpland.search.solve import solve_global

SIZES = [(1, 6, 2), (2, 5, 2), (1, 8, 2), (2, 6, 1)]  # (d, n, width)
SEEDS = range(3)


def table(d: int, n: int, width: int, seed: int, loss: dict, box: float | None = None) -> dict:
    rng = np.random.default_rng([seed, d, n, width])
    X = rng.uniform(-1.0, 1.0, (n, d))
    y = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    y[0], y[1] = 1.0, -1.0
    t = {"name": f"d{d}-n{n}-w{width}-s{seed}", "data": {"x": X.tolist(), "y": y.tolist()},
         "network": {"hidden": [width], "activation": "relu"}, "loss": loss, "solve": {"time_limit": 300}}
    if box is not None:
        t["box"] = {"weight": box}
    return t


def decay_row(d, n, width, seed, kind):
    spec = spec_from_dict(table(d, n, width, seed, {"kind": kind, "weight_decay": 0.01}))
    started = time.perf_counter()
    out = solve_every_cell(spec)
    seconds = time.perf_counter() - started
    result = solve_global(spec)
    return {"part": "decay", "instance": spec.name, "loss": kind, "cells": len(out.results),
            "seconds": round(seconds, 3), "ms_per_cell": round(1e3 * seconds / len(out.results), 3),
            "cells_above_1e-8": sum(r.status != "optimal" for r in out.results), "certified": result.certified,
            "value": result.risk, "gap": result.gap}


def box_row(d, n, width, seed, kind):
    spec = spec_from_dict(table(d, n, width, seed, {"kind": kind}, box=2.0))
    result = solve_global(spec.with_options(method="milp"))
    return {"part": "no-decay", "instance": spec.name, "loss": kind, "cells": "", "seconds": round(result.seconds.total, 3),
            "ms_per_cell": "", "cells_above_1e-8": "", "certified": result.certified, "value": result.risk,
            "gap": result.gap, "rounds": result.iterations, "nodes": result.nodes, "limit_point": bool(result.limit_point),
            "status": result.status}


def main() -> None:
    fields = ["part", "instance", "loss", "cells", "seconds", "ms_per_cell", "cells_above_1e-8", "certified",
              "value", "gap", "rounds", "nodes", "limit_point", "status"]
    out = csv.DictWriter(sys.stdout, fieldnames=fields)
    out.writeheader()
    for d, n, width in SIZES:
        for seed in SEEDS:
            for kind in ("squared", "logistic"):
                out.writerow(decay_row(d, n, width, seed, kind))
            for kind in ("hinge", "logistic"):
                out.writerow(box_row(d, n, width, seed, kind))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
