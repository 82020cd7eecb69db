"""``milpland landscape SPEC``: the certified local minima of one instance, ranked, with gaps.

Exit codes: 0 when the landscape was computed and its global reference point passed the numpy
re-check, 1 on a solver failure (exception, or a global point the re-check rejects), 2 for
user mistakes (handled by milpland.cli).

With ``--format json`` stdout carries exactly one JSON object (`LandscapeResult.to_json`);
progress and solver logs go to stderr.  ``--out DIR`` writes DIR/minima.parquet, one row per
minimum (the ``minima`` columns of milpland.runs.tables plus rank, method, global_risk), which
``pandas.read_parquet`` reads directly.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
import uuid
from pathlib import Path

from milpland.commands import number_text, stdout_to_stderr
from milpland.errors import MilplandError
from milpland.instance.spec import InstanceSpec, load_spec

METHODS = ("enumerate", "milp", "sample")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "landscape",
        help="certified local minima, spurious minima and risk gaps of one instance",
        description="List the certified local minima of one instance spec (TOML), ranked by risk, with their "
                    "gap to the global minimum over the box.",
    )
    p.add_argument("spec", metavar="SPEC", help="instance spec (TOML file)")
    p.add_argument("--method", choices=METHODS, default="enumerate",
                   help="enumerate every cell (complete), milp (eps-interior minima by MILP), or sample "
                        "(gradient descent from random starts); default: enumerate")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument("--out", metavar="DIR", help="write the minima to DIR/minima.parquet (one row per minimum)")
    p.add_argument("--max-cells", type=int, metavar="N",
                   help="enumerate: refuse instances with more cells than this (default: 1000000)")
    p.add_argument("--starts", type=int, metavar="N", help="sample: number of random starts (default: 100)")
    p.add_argument("--seed", type=int, metavar="S", help="sample: seed of the starts (default: [solve] seed)")
    p.add_argument("--epsilon", type=float, metavar="E",
                   help="milp: margin of the minima searched (|g_ij| >= E; default 1e-6); completeness is "
                        "relative to it")
    p.add_argument("--max-levels", type=int, metavar="N", help="milp: stop after this many risk levels (default 50)")
    p.add_argument("--time-limit", type=float, metavar="S",
                   help="seconds for each global solve / MILP search (overrides [solve])")
    p.add_argument("--verbose", action="store_true", help="progress on stderr; traceback on solver errors")
    p.set_defaults(func=run)


def run(args) -> int:
    from milpland.landscape.listing import (  # keep the parser cheap
        DEFAULT_MAX_CELLS,
        DEFAULT_STARTS,
        landscape,
    )

    spec = prepare_spec(args)
    out_dir = _check_out(args.out)
    say = (lambda msg: print(f"milpland landscape: {msg}", file=sys.stderr, flush=True)) \
        if (args.verbose or args.format == "json") else None
    started = time.perf_counter()
    try:
        with stdout_to_stderr():
            result = landscape(
                spec, method=args.method,
                max_cells=DEFAULT_MAX_CELLS if args.max_cells is None else args.max_cells,
                starts=DEFAULT_STARTS if args.starts is None else args.starts,
                seed=args.seed, milp_options=_milp_options(args), progress=say,
            )
    except MilplandError:
        raise
    except Exception as exc:  # a solver failure, not a user mistake
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"milpland landscape: solver error: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if say:
        say(f"done in {time.perf_counter() - started:.2f} s")
    obj = result.to_json()
    if args.format == "json":
        print(json.dumps(obj, allow_nan=False))
    else:
        print(format_text(obj))
    if out_dir is not None:
        path = write_minima(out_dir, result.to_rows())
        print(f"milpland landscape: wrote {len(result.minima)} minima to {path}", file=sys.stderr)
    ver = obj["global"].get("verification")
    if not ver or not ver.get("ok", False):
        print("milpland landscape: the global reference point failed the numpy re-check", file=sys.stderr)
        return 1
    return 0


def prepare_spec(args) -> InstanceSpec:
    spec = load_spec(args.spec)
    if args.time_limit is not None:
        if not (math.isfinite(args.time_limit) and args.time_limit > 0):
            raise MilplandError(f"--time-limit: must be a positive finite number, got {args.time_limit!r}")
        spec = spec.with_options(time_limit=float(args.time_limit))
    limits = (("--max-cells", args.max_cells, 1), ("--starts", args.starts, 1), ("--seed", args.seed, 0))
    for flag, value, least in limits:
        if value is not None and value < least:
            raise MilplandError(f"{flag}: must be an integer >= {least}, got {value}")
    if args.verbose:
        spec = spec.with_options(verbose=False)  # HiGHS logs would drown the progress lines
    return spec


def write_minima(out_dir: Path, rows: list[dict]) -> Path:
    """DIR/minima.parquet, written to a temporary file and renamed (atomic)."""
    import pyarrow.parquet as pq

    from milpland.runs.tables import prepare, to_arrow

    prepare(out_dir)
    final = out_dir / "minima.parquet"
    tmp = out_dir / f".tmp-{uuid.uuid4().hex}.parquet"
    try:
        pq.write_table(to_arrow("minima", rows), tmp)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final


def _milp_options(args) -> dict:
    options = {}
    if args.epsilon is not None:
        if not args.epsilon > 0:
            raise MilplandError(f"--epsilon: must be positive, got {args.epsilon}")
        options["epsilon"] = args.epsilon
    if args.max_levels is not None:
        if args.max_levels < 1:
            raise MilplandError(f"--max-levels: must be a positive integer, got {args.max_levels}")
        options["max_levels"] = args.max_levels
    return options


COMPLETE_MEANS = {
    "enumerate": "every local minimum in the box",
    "milp": "every eps-interior risk level in the box",
    "sample": "never: sampling proves nothing is missing",
}


def format_text(obj: dict) -> str:
    """A readable table of ``LandscapeResult.to_json()``."""
    g = obj["global"]
    counts = obj.get("counts") or {}
    source = "the complete enumeration" if obj["global_source"] == "enumerate" else "solve_global (MILP)"
    lines = [
        f"instance      {obj['instance']}  (hash {obj['instance_hash']})",
        f"architecture  {g.get('architecture', '?')}, {g.get('loss', '?')} loss ({g.get('reduction', '?')})",
        f"method        {obj['method']}  (complete, i.e. {COMPLETE_MEANS.get(obj['method'], '?')}: "
        f"{'yes' if obj['complete'] else 'no'})",
        f"global        {number_text(obj['global_risk'])}  from {source}; certified: {'yes' if g['certified'] else 'NO'}"
        + ("; box bound active" if g.get("box_active") else ""),
        f"minima        {obj['n_minima']} distinct local minima, {obj['n_spurious']} spurious "
        f"(gap > {number_text(obj['tolerance'], 3)})",
        "",
    ]
    header = ("#", "risk", "gap", "spurious", "certificate", "margin", "valley_dim", "cell", "found_by", "basin")
    table = [header]
    for rank, m in enumerate(obj["minima"], start=1):
        basin = m.get("basin_fraction")
        table.append((
            str(rank), number_text(m["risk"]), _gap(m["gap"], obj["tolerance"]), "yes" if m["spurious"] else "no",
            m["certificate"],
            number_text(m["margin"], 3), str(m["valley_dim"]), m["cell"], m["found_by"],
            "-" if basin is None else f"{basin:.3f}",
        ))
    if len(table) == 1:
        lines.append("(no certified local minimum)")
    else:
        widths = [max(len(row[k]) for row in table) for k in range(len(header))]
        for row in table:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    lines.append("")
    shown = ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    if shown:
        lines.append(f"counts        {shown}")
    lines.append(f"seconds       {number_text(obj['seconds'], 3)}")
    if obj.get("message"):
        lines.append(f"message       {obj['message']}")
    return "\n".join(lines)


def _gap(gap, tol) -> str:
    """The gap, shown as 0 when it is within the tolerance (rounding of equal risks)."""
    if gap is None:
        return "n/a"
    return "0" if abs(gap) <= tol else f"{gap:.4g}"


def _check_out(name: str | None) -> Path | None:
    """Fail before the run, not after it, when DIR cannot be a folder."""
    if name is None:
        return None
    path = Path(name)
    if path.exists() and not path.is_dir():
        raise MilplandError(f"--out: {path} exists and is not a folder")
    return path
