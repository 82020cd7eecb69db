"""Old against new enumeration, side by side in one session (results/enumeration-speed.md).

    python results/enumeration-speed.py --old /path/to/old/checkout --out results/enumeration-speed.csv

Each instance runs `landscape(spec, method="enumerate")` in a fresh process per code version
(PYTHONPATH = that checkout) and records the minima.  Times: wall and CPU of the landscape call
(end to end in a new process: the first use of the kernels, loaded from numba's cache after a
warm-up run, and landscape's own lazy imports included) and, for the new code, the enumeration's
own wall time from patterns to the last certificate (`timings`).
Where both versions ran, the lists are compared: the same number of distinct minima, each
minimum of one list matched by fitted values (max norm 1e-5) in the other with risks equal to
1e-9 relative and the same certificate kind, and the same `complete`.  ``--compile`` adds a run of
the new code with an empty numba cache on the smallest instance (the one-off compilation).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NEW = Path(__file__).resolve().parent.parent

# teacher data: teacher width = student width, noise 0.1, seed 0, ReLU, squared loss, default box
INSTANCES = [  # name, d, width, n, run the old code too
    ("d1-w3-n12", 1, 3, 12, True),
    ("d1-w3-n20", 1, 3, 20, True),
    ("d2-w2-n12", 2, 2, 12, True),
    ("d1-w3-n40", 1, 3, 40, False),
    ("d2-w2-n20", 2, 2, 20, False),
]

CHILD = r"""
import json, sys, time
import numpy as np
from milpland import spec_from_dict
from milpland.landscape.listing import landscape
spec = spec_from_dict(json.loads(sys.argv[1]))
started, cpu_started = time.perf_counter(), time.process_time()
res = landscape(spec, method="enumerate", max_cells=10**8)
wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
print(json.dumps({
    "wall": wall, "cpu": cpu, "cells": res.counts["cells"],
    "complete": bool(res.complete), "n_minima": len(res.minima), "n_spurious": len(res.spurious),
    "global_risk": res.global_risk, "counts": {k: v for k, v in res.counts.items() if isinstance(v, int)},
    "timings": {k: float(v) for k, v in res.timings.items()},
    "minima": [[m.risk, m.certificate, m.fitted.tolist()] for m in res.minima],
}))
"""


def spec_table(name: str, d: int, width: int, n: int) -> dict:
    return {"name": name, "data": {"generator": "teacher", "n": n, "d": d, "teacher_width": width, "noise": 0.1,
                                   "seed": 0},
            "network": {"hidden": [width], "activation": "relu"}, "loss": {"kind": "squared"}}


def run(root: Path, table: dict, env_extra: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root), **(env_extra or {}))
    load = os.getloadavg()[0]
    # cwd elsewhere: `python -c` puts the working directory first on sys.path, before PYTHONPATH
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(table)], env=env, capture_output=True, text=True,
                         check=True, cwd=tempfile.gettempdir())
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_before"], result["load_after"] = load, os.getloadavg()[0]
    return result


def identical(old: dict, new: dict) -> tuple[bool, str]:
    """The comparison of the module docstring; returns (identical, what differs)."""
    import numpy as np

    notes = []
    if old["n_minima"] != new["n_minima"]:
        notes.append(f"{old['n_minima']} against {new['n_minima']} minima")
    if old["complete"] != new["complete"]:
        notes.append("complete differs")
    scale = max(abs(m[0]) for m in old["minima"])
    for a, b in ((old, new), (new, old)):
        fits = np.array([m[2] for m in b["minima"]])
        for risk, kind, fit in a["minima"]:
            dist = np.max(np.abs(fits - np.array(fit)), axis=1)
            k = int(np.argmin(dist))
            if dist[k] > 1e-5:
                notes.append(f"minimum {risk:.10g} unmatched")
            elif abs(b["minima"][k][0] - risk) > 1e-9 * max(abs(risk), 1e-12 * scale):
                notes.append(f"risk {risk!r} against {b['minima'][k][0]!r}")
            elif b["minima"][k][1] != kind:
                notes.append(f"minimum {risk:.10g}: {kind} against {b['minima'][k][1]}")
    return not notes, "; ".join(sorted(set(notes))[:5])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="checkout of the old code (the reference)")
    parser.add_argument("--out", default=str(NEW / "results" / "enumeration-speed.csv"))
    parser.add_argument("--compile", action="store_true", help="also time the numba compilation (empty cache)")
    args = parser.parse_args()
    rows = []
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    if args.compile:
        with tempfile.TemporaryDirectory() as cache:
            res = run(NEW, spec_table("compile-d1-w3-n12", 1, 3, 12), {"NUMBA_CACHE_DIR": cache})
        rows.append({"instance": "compile-d1-w3-n12", "code": "new (empty numba cache)", **_row(res), "identical": ""})
        print(rows[-1])
    run(NEW, spec_table("warm-up", 1, 3, 20))  # fill the numba cache: the timed runs load the kernels
    for name, d, width, n, with_old in INSTANCES:
        table = spec_table(name, d, width, n)
        results = {"new": run(NEW, table)}
        if with_old:
            results["old"] = run(Path(args.old), table)
        same, notes = identical(results["old"], results["new"]) if with_old else ("", "")
        for code, res in results.items():
            rows.append({"instance": name, "code": code, **_row(res),
                         "identical": "" if not with_old else ("yes" if same else f"NO: {notes}")})
            print(rows[-1], flush=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out} at {time.strftime('%Y-%m-%d %H:%M')}")


def _row(res: dict) -> dict:
    enum_s = res["cells"] / res["timings"]["cells_per_second_end_to_end"] if "cells_per_second_end_to_end" in \
        res["timings"] else float("nan")
    return {"cells": res["cells"], "wall_s": round(res["wall"], 2), "cpu_s": round(res["cpu"], 2),
            "cells_per_s_wall": round(res["cells"] / res["wall"]), "cells_per_s_cpu": round(res["cells"] / res["cpu"]),
            "enumeration_wall_s": round(enum_s, 2),
            "enumeration_cells_per_s": round(res["cells"] / enum_s) if enum_s == enum_s else "",
            "minima": res["n_minima"], "spurious": res["n_spurious"], "complete": res["complete"],
            "global_risk": res["global_risk"], "load_before": round(res["load_before"], 2),
            "load_after": round(res["load_after"], 2)}


if __name__ == "__main__":
    main()
