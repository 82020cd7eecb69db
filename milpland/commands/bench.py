"""``milpland bench SUITE...``: the certified global solve against baselines, in one run.

Writes bench-<name>.csv, bench-<name>.md (with the machine and headline ratios) and
bench-<name>.png to --out (default results/).  While it runs, bench-<name>.partial.csv holds
every finished row (removed when the report is written).  See milpland/bench.py for the methods.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import milpland.interrupt as interrupt
from milpland.errors import MilplandError

METHOD_NAMES = ("milp", "bnb", "enumerate", "gd", "scip", "deep", "scip-deep", "landscape-enumerate", "landscape-milp",
                "landscape-sample", "landscape-bnb", "landscape-gap", "landscape-band",
                "convex")  # milpland.runs.bench.METHODS, without importing pandas here


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark the global solve against enumeration, multistart GD and SCIP",
        description="Run a benchmark suite (or spec files) with baselines and write tables and a figure.",
    )
    p.add_argument("targets", nargs="+", metavar="SUITE_OR_SPEC", help="suite files, spec files or globs")
    p.add_argument("--methods", default="milp,bnb,enumerate,gd,scip",
                   help=f"comma-separated, from {', '.join(METHOD_NAMES)} (default: all; scip only if installed)")
    p.add_argument("--out", default="results", metavar="DIR", help="output folder (default: results/)")
    p.add_argument("--name", help="report name (default: the first target's file name)")
    p.add_argument("--time-limit", type=float, metavar="S", help="per instance and method (overrides the specs)")
    p.add_argument("--max-cells", type=int, default=None,
                   help="enumeration is skipped above this many cells (default: 1000000 where the compiled cell "
                        "kernels apply, squared loss with ReLU-type units; else 20000)")
    p.add_argument("--starts", type=int, default=200, help="gradient-descent starts (default 200)")
    p.add_argument("--band", type=float, default=0.5, metavar="F",
                   help="landscape-bnb: list every minimum up to (1 + F) x the global minimum (default 0.5); "
                        "landscape-gap lists the 2 lowest levels")
    p.add_argument("--gates", type=int, default=250, metavar="N",
                   help="convex: sampled gate vectors, one activation pattern each (default 250, as scnn's quick "
                        "start: max_neurons 500)")
    p.set_defaults(func=run)


def run(args) -> int:
    from milpland.runs.bench import (  # pandas and the solvers load only when used
        run_bench,
        write_report,
    )

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise MilplandError(f"--methods: name at least one of {', '.join(METHOD_NAMES)}")
    name = report_name(args.name or Path(args.targets[0]).stem)
    out = output_folder(args.out)
    partial = out / f"bench-{name}.partial.csv"
    table = run_bench(args.targets, methods=methods, time_limit=args.time_limit, max_cells=args.max_cells,
                      starts=args.starts, band=args.band, gates=args.gates,
                      progress=lambda msg: print(msg, file=sys.stderr, flush=True),
                      on_row=lambda rows: _write_atomic(rows, partial))
    stopped = bool(table.attrs.get("interrupted"))
    command = "milpland bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    note = f"interrupted (Ctrl-C) after {len(table)} run(s)" if stopped else ""
    # interrupted: tables only, so that Ctrl-C ends the command within a second (the figure needs matplotlib)
    for path in write_report(table, name=name, out_dir=out, command=command, note=note, figure=not stopped):
        print(f"wrote {path}", flush=True)
    partial.unlink(missing_ok=True)
    if stopped:
        print(f"milpland bench: interrupted (Ctrl-C): the {len(table)} finished run(s) are in the report "
              "(the one running then has status interrupted)", file=sys.stderr, flush=True)
        return interrupt.EXIT_CODE
    return 0


def report_name(name: str) -> str:
    """--name becomes part of file names in --out: a plain name, no folders."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise MilplandError(f"--name: must be a plain file name (letters, digits, - and _; no folders), got {name!r}")
    return name


def output_folder(name: str) -> Path:
    out = Path(name)
    if out.exists() and not out.is_dir():
        raise MilplandError(f"--out: {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MilplandError(f"--out: cannot create the folder {out}: {exc.strerror}") from None
    return out


def _write_atomic(rows, path: Path) -> None:
    """The partial table, written whole or not at all (a Ctrl-C during the write keeps the last one)."""
    tmp = path.with_name(path.name + ".tmp")
    rows.to_csv(tmp, index=False)
    os.replace(tmp, path)
