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

import math
import os
import sys
import time
import traceback
import uuid
from pathlib import Path

import milpland.interrupt as interrupt
from milpland.commands import finish_interrupted, number_text, print_result, stdout_to_stderr
from milpland.errors import MilplandError
from milpland.instance.spec import InstanceSpec, load_spec

METHODS = ("auto", "enumerate", "bnb", "milp", "sample")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "landscape",
        help="certified local minima, spurious minima and risk gaps of one instance",
        description="List the certified local minima of one instance spec (TOML), ranked by risk, with their "
                    "gap to the global minimum over the box.",
    )
    p.add_argument("spec", metavar="SPEC", help="instance spec (TOML file)")
    p.add_argument("--method", choices=METHODS, default="auto",
                   help="enumerate every cell (complete; with --levels, --gap-max, --gap-rel or --risk-max "
                        "only the cells below that threshold are certified); bnb: every minimum below a threshold "
                        "(--levels, --gap-max, --risk-max) by branch-and-bound; milp (eps-interior minima by MILP); sample "
                        "(gradient descent from random starts); auto (default): enumerate up to --max-cells "
                        "cells, else bnb --levels 10")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument("--out", metavar="DIR", help="write the minima to DIR/minima.parquet (one row per minimum)")
    p.add_argument("--params-out", metavar="FILE",
                   help="write each minimum's weights to FILE with its rank added (min-1.onnx, min-2.onnx, ... "
                        "for FILE = min.onnx; rank 1 lowest): .onnx, .safetensors, .pt, .npz, else JSON")
    p.add_argument("--max-cells", type=int, metavar="N",
                   help="enumerate: refuse instances with more cells than this (default: 1000000 where the "
                        "compiled kernels apply, else 20000)")
    p.add_argument("--levels", type=int, metavar="K", help="bnb, enumerate: the K lowest distinct risk levels (bnb default 10)")
    p.add_argument("--gap-max", type=float, metavar="G",
                   help="bnb, enumerate: every minimum with risk <= global minimum + G (risk units)")
    p.add_argument("--gap-rel", type=float, metavar="F",
                   help="bnb, enumerate: every minimum with risk <= (1 + F) x global minimum")
    p.add_argument("--risk-max", type=float, metavar="R", help="bnb, enumerate: every minimum with risk <= R")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="bnb with --risk-max, --gap-max or --gap-rel: list the sign classes in N processes, after "
                        "solving the global minimum; enumerate: solve the cells in N threads (default 1)")
    p.add_argument("--starts", type=int, metavar="N", help="sample: number of random starts (default: 100)")
    p.add_argument("--seed", type=int, metavar="S",
                   help="sample and --census: seed of the starts (default: [solve] seed)")
    p.add_argument("--census", type=int, metavar="N",
                   help="enumerate, bnb, auto: after the listing, a census of N starts next to it (basin "
                        "fractions of the listed minima, the sampled minima above the threshold)")
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
        DEFAULT_STARTS,
        landscape,
    )

    spec = prepare_spec(args)
    out_dir = _check_out(args.out)
    params_out = _check_params_out(args.params_out, spec)
    say = (lambda msg: print(f"milpland landscape: {msg}", file=sys.stderr, flush=True)) \
        if (args.verbose or args.format == "json") else None
    started = time.perf_counter()
    if say:
        say(f"{args.method} on {spec.name} (n = {spec.n}, {spec.architecture()}) ...")
    try:
        with stdout_to_stderr():
            result = landscape(
                spec, method=args.method,
                max_cells=args.max_cells,
                starts=DEFAULT_STARTS if args.starts is None else args.starts,
                seed=args.seed, milp_options=_milp_options(args), progress=say,
                risk_max=args.risk_max, gap_max=args.gap_max, gap_rel=args.gap_rel, levels=args.levels,
                census=args.census, jobs=getattr(args, "jobs", 1),
            )
    except MilplandError:
        raise
    except KeyboardInterrupt:  # Ctrl-C in a part that does not poll the stop flag: nothing certified yet
        return finish_interrupted("landscape", interrupted_without_result(spec, args.method), args.format,
                                  format_text, "stopped before any minimum was certified")
    except Exception as exc:  # a solver failure, not a user mistake
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"milpland landscape: solver error: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if say:
        say(f"done in {time.perf_counter() - started:.2f} s")
    obj = result.to_json()
    obj.setdefault("status", "done")
    if out_dir is not None:
        path = write_minima(out_dir, result.to_rows())
        print(f"milpland landscape: wrote {len(result.minima)} minima to {path}", file=sys.stderr)
    if params_out is not None:
        written = write_minima_params(params_out, result.minima, spec)
        where = f": {written[0]} ... {written[-1]}" if written else ""
        print(f"milpland landscape: wrote the weights of {len(written)} minima{where}", file=sys.stderr)
    if interrupt.requested():  # a search polled the stop flag and returned what it had
        return finish_interrupted("landscape", obj, args.format, format_text,
                                  "the minima certified so far and the global bound proven so far are printed")
    print_result(obj, args.format, format_text)
    conflicts = ((obj.get("census") or {}).get("band") or {}).get("conflicts") or []
    if conflicts:  # a census minimum below the proven threshold that the listing lacks contradicts a proof
        print(f"milpland landscape: CONFLICT: {len(conflicts)} census minimum(s) below the proven threshold are not "
              "in the listing (a bug; please report it with the spec)", file=sys.stderr)
        return 1
    ver = obj["global"].get("verification")
    if not ver or not ver.get("ok", False):
        print("milpland landscape: the global reference point failed the numpy re-check", file=sys.stderr)
        return 1
    return 0


def interrupted_without_result(spec: InstanceSpec, method: str) -> dict:
    """The landscape JSON of a run stopped before anything was certified (status interrupted)."""
    return {"instance": spec.name, "instance_hash": spec.instance_hash(), "method": method, "status": "interrupted",
            "complete": False, "global": None, "global_source": None, "global_risk": None, "tolerance": None,
            "n_minima": 0, "n_spurious": 0, "minima": [], "counts": {}, "timings": {}, "seconds": None,
            "message": "interrupted before any minimum was certified"}


def prepare_spec(args) -> InstanceSpec:
    spec = load_spec(args.spec)
    if args.time_limit is not None:
        if not (math.isfinite(args.time_limit) and args.time_limit > 0):
            raise MilplandError(f"--time-limit: must be a positive finite number, got {args.time_limit!r}")
        spec = spec.with_options(time_limit=float(args.time_limit))
    limits = (("--max-cells", args.max_cells, 1), ("--starts", args.starts, 1), ("--seed", args.seed, 0),
              ("--levels", args.levels, 1), ("--census", args.census, 1))
    for flag, value, least in limits:
        if value is not None and value < least:
            raise MilplandError(f"{flag}: must be an integer >= {least}, got {value}")
    query = [flag for flag, value in (("--levels", args.levels), ("--gap-max", args.gap_max),
                                      ("--gap-rel", args.gap_rel), ("--risk-max", args.risk_max))
             if value is not None]
    if query and args.method not in ("bnb", "enumerate", "auto"):
        raise MilplandError(f"{query[0]}: only for --method bnb, enumerate or auto, not {args.method}")
    if len(query) > 1:
        raise MilplandError(f"give one of --levels, --gap-max, --gap-rel, --risk-max, not {' and '.join(query)}")
    for flag, value in (("--gap-max", args.gap_max), ("--gap-rel", args.gap_rel), ("--risk-max", args.risk_max)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise MilplandError(f"{flag}: must be a finite number >= 0, got {value!r}")
    if args.census is not None and args.method not in ("bnb", "enumerate", "auto"):
        raise MilplandError(f"--census: only with --method bnb, enumerate or auto, not {args.method}"
                            + (" (--starts N sets the census of sample)" if args.method == "sample" else ""))
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
    "bnb": "every local minimum in the box up to the threshold",
    "milp": "every eps-interior risk level in the box",
    "sample": "never: sampling proves nothing is missing",
}
GLOBAL_SOURCES = {"enumerate": "the complete enumeration", "bnb": "the listing's branch-and-bound",
                  "solve_global": "solve_global"}


def complete_means(obj: dict) -> str:
    """What `complete` claims for this listing: the method's meaning, over the certificate's region
    (weight decay: not the box), up to the threshold when a query restricted it."""
    means = COMPLETE_MEANS.get(obj["method"], "?")
    region = (obj.get("global") or {}).get("region", "box")
    if region != "box":
        means = means.replace("in the box", f"over {region}")
    if obj["method"] == "enumerate" and obj.get("threshold") is not None:
        means += " up to the threshold"
    return means


def format_text(obj: dict) -> str:
    """A readable table of ``LandscapeResult.to_json()``."""
    g = obj["global"]
    if g is None:  # interrupted before anything was computed
        return "\n".join([f"instance      {obj['instance']}  (hash {obj['instance_hash']})",
                          f"method        {obj['method']}", f"status        {obj.get('status', '?')}",
                          f"message       {obj['message']}"])
    counts = obj.get("counts") or {}
    source = GLOBAL_SOURCES.get(obj["global_source"], obj["global_source"])
    if obj["global_source"] == "solve_global":
        source += f" ({g.get('method', '?')}, status {g.get('status', '?')})"
    lines = [
        headline_text(obj),
        f"instance      {obj['instance']}  (hash {obj['instance_hash']})",
        f"architecture  {g.get('architecture', '?')}, {g.get('loss', '?')} loss ({g.get('reduction', '?')})",
        f"method        {obj['method']}" + (f" (asked: {obj['requested']})" if obj.get("requested") != obj["method"]
                                             else "")
        + f"  (complete, i.e. {complete_means(obj)}: {'yes' if obj['complete'] else 'no'})",
        *_listing_lines(obj),
        f"global        {number_text(obj['global_risk'])}  from {source}; certified: {'yes' if g['certified'] else 'NO'}"
        + ("; box bound active" if g.get("box_active") else "")
        + (f"; lower bound {number_text(g.get('lower_bound'))}" if not g["certified"] else ""),
        f"minima        {obj['n_minima']} distinct local minima, {obj['n_spurious']} spurious "
        f"(gap > {number_text(obj['tolerance'], 3)})",
        "",
    ]
    census = obj.get("census")
    header = ("#", "risk", "gap", "spurious", "certificate", "margin", "valley_dim", "cell", "found_by",
              "starts  basin [95% CI]" if census else "basin")
    table = [header]
    for rank, m in enumerate(obj["minima"], start=1):
        table.append((
            str(rank), number_text(m["risk"]), _gap(m["gap"], obj["tolerance"]), "yes" if m["spurious"] else "no",
            m["certificate"],
            number_text(m["margin"], 3), str(m["valley_dim"]), m["cell"], m["found_by"], _basin(m),
        ))
    if len(table) == 1:
        lines.append("(no certified local minimum)")
    else:
        widths = [max(len(row[k]) for row in table) for k in range(len(header))]
        cut = _band_cut(obj)
        for k, row in enumerate(table):
            if k == cut + 1 and cut < len(obj["minima"]):
                lines.append(f"-- proven threshold {number_text((census or {})['band']['proven_below'])}: the rows "
                             "above are every local minimum up to it; the rows below come from the census "
                             "(not complete)")
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    lines.append("")
    if census and census.get("band"):
        lines += band_census_lines(census) + [""]
    elif census:
        lines += census_lines(census) + [""]
    shown = ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    if shown:
        lines.append(f"counts        {shown}")
    lines.append(f"seconds       {number_text(obj['seconds'], 3)}")
    if obj.get("status") == "interrupted":
        lines.append("status        interrupted (Ctrl-C): the minima certified so far; the list is not complete")
    if obj.get("message"):
        lines.append(f"message       {obj['message']}")
    return "\n".join(lines)


def headline_text(obj: dict) -> str:
    """The first line: the spurious gap, and whether it is proven."""
    h = obj["spurious_gap"]
    if h["gap"] is None:
        return f"spurious gap  none: {h['statement']}"
    proof = "proven" if h["proven"] else "NOT proven"
    return (f"spurious gap  {number_text(h['gap'])} (lowest spurious minimum {number_text(h['lowest_spurious_risk'])}, "
            f"global {number_text(h['global_risk'])}); {proof}: {h['statement']}")


def _listing_lines(obj: dict) -> list[str]:
    if obj["method"] != "bnb" and not (obj["method"] == "enumerate" and obj.get("query")):
        return []
    line = f"listing       {obj['query']}: threshold {number_text(obj['threshold'])}"
    if obj["method"] == "enumerate":
        cells = (obj.get("counts") or {}).get("cells_bounded_above")
        if cells:
            line += f" ({cells} cells proven above it by a bound, not certified further)"
    elif not obj["complete"]:
        line += (f"; stopped early: every minimum below {number_text(obj['proven_below'])} is listed "
                 f"(open bound {number_text(obj['open_bound'])})")
    return [line]


def _basin(m: dict) -> str:
    """The basin column: the fraction, and with a census the count and the Wilson interval."""
    basin = m.get("basin_fraction")
    if basin is None:
        return "-"
    if m.get("basin_count") is None:
        return f"{basin:.3f}"
    return f"{m['basin_count']:<6d}  {basin:.3g} [{m['basin_ci_low']:.3g}, {m['basin_ci_high']:.3g}]"


END_TEXT = {
    "minimum": "in a certified local minimum",
    "jump_limit": "at a cell optimum that is not a local minimum after the last jump",
    "stuck": "at a cell optimum that is not a local minimum, the descent from it going nowhere lower",
    "box_limited": "at a box-limited cell optimum",
    "not_attained": "at a cell optimum that is not attained",
    "undetermined": "at a cell whose certificate is undetermined",
}


def census_lines(census: dict) -> list[str]:
    """What the census proves and what it estimates, in words (`Census.to_json()`)."""
    ends = census["ends"]
    d = census["descent"]
    settings = census["settings"]
    lines = [
        f"census        {census['starts']} starts, seed {census['seed']}: {census['start_distribution']}",
        f"descent       first descent: {d.get('converged', 0)} converged, {d.get('stalled', 0)} stalled "
        f"(no step down along -gradient: a kink), {d.get('iteration_limit', 0)} at the iteration limit "
        f"({settings['max_iter']}); then up to {settings['max_jumps']} jumps "
        "(cell optimum not a local minimum: descend again from it)",
        "ends          " + "; ".join(f"{v} {END_TEXT.get(k, k)}" for k, v in ends.items() if v),
        "jumps         " + ", ".join(f"{v} starts {k}" for k, v in census["jumps"].items()),
    ]
    lines += [f"proven        {text}" for text in census["proofs"]]
    lines += [f"estimated     {text}" for text in census["estimates"][:-1]]
    lines += [f"not proven    {text.removeprefix('not proven: ')}" for text in census["estimates"][-1:]]
    return lines


def _band_cut(obj: dict) -> int:
    """With a census next to a listing with a finite proven threshold: the number of leading rows the
    listing proves complete (rows are ranked by risk); else the number of rows (no separator)."""
    band = (obj.get("census") or {}).get("band")
    below = band.get("proven_below") if band else None
    if not isinstance(below, (int, float)):
        return len(obj["minima"])
    return sum(1 for m in obj["minima"] if m["found_by"] != "sample" or m["risk"] <= below)


def band_census_lines(census: dict) -> list[str]:
    """The census next to a listing: first what the listing proves, then what the census estimates."""
    band = census["band"]
    lines = [f"proof         {text}" for text in band["proofs"]]
    lines += census_lines(census)[:4]  # census, descent, ends, jumps
    lines += [f"estimate      {band['estimates'][0]}",
              f"estimate      {census['estimates'][1]}"]
    last = band["estimates"][-1]
    lines.append(f"not proven    {last.removeprefix('not proven: ')}" if last.startswith("not proven")
                 else f"              {last}")
    for c in band["conflicts"]:
        lines.append(f"CONFLICT      census minimum at risk {number_text(c['risk'])} (cell {c['cell']}, "
                     f"{c['starts']} starts) lies below the proven threshold {number_text(c['proven_below'])} "
                     "but the listing does not hold it: one of the two is wrong (a bug)")
    return lines


def _gap(gap, tol) -> str:
    """The gap, shown as 0 when it is within the tolerance (rounding of equal risks)."""
    if gap is None:
        return "n/a"
    return "0" if abs(gap) <= tol else f"{gap:.4g}"


def minima_params_paths(params_out: Path, count: int) -> list[Path]:
    """FILE = min.onnx -> min-1.onnx, ..., min-<count>.onnx (rank 1 = lowest risk)."""
    return [params_out.with_name(f"{params_out.stem}-{rank}{params_out.suffix}") for rank in range(1, count + 1)]


def write_minima_params(params_out: Path, minima: list, spec: InstanceSpec) -> list[Path]:
    """Each ranked minimum's weights in the format of params_out's extension (milpland.instance.params_io)."""
    from milpland.instance.params_io import write_params

    paths = minima_params_paths(params_out, len(minima))
    for path, minimum in zip(paths, minima):
        write_params(minimum.params, path, activation=spec.network.activation, output_bias=spec.network.output_bias)
    return paths


def _check_params_out(name: str | None, spec: InstanceSpec) -> Path | None:
    from milpland.commands import writable_file
    from milpland.instance.params_io import check_params_file

    path = writable_file("--params-out", name)
    check_params_file("--params-out", path, spec.network.activation)
    return path


def _check_out(name: str | None) -> Path | None:
    """Fail before the run, not after it, when DIR cannot be a folder."""
    if name is None:
        return None
    path = Path(name)
    if path.exists() and not path.is_dir():
        raise MilplandError(f"--out: {path} exists and is not a folder")
    return path
