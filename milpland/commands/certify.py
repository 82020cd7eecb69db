"""``milpland certify SPEC --params FILE``: what is this parameter point?  (DESIGN §5-§8)

Reports the risk, the cell, whether the point is stationary, the verdict (local_min, saddle,
not_stationary, inconclusive) with its certificate, the best minimum of its cell and the gap
to the global minimum (one hidden layer), or a lower bound on the gap from the best point
milpland finds (deeper nets).  A saddle comes with a descent path.  See milpland.points.certify.

Exit codes: 0 when a verdict was reported (any verdict, including inconclusive), 1 when a
solver failed, 2 for user mistakes (bad spec or params file; handled by milpland.cli).
With ``--format json`` stdout carries exactly one JSON object; solver logs go to stderr.
"""

from __future__ import annotations

import math
import sys
import traceback

from milpland.commands import finish_interrupted, number_text, print_result
from milpland.errors import MilplandError
from milpland.instance.spec import load_spec


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "certify",
        help="certify a given parameter point: local minimum, saddle, gap to the global minimum",
        description="Certify a parameter point of an instance: risk, cell, stationarity, verdict with its "
                    "certificate, best minimum of its cell, and the gap to the global minimum.",
    )
    p.add_argument("spec", metavar="SPEC", help="instance spec (TOML file)")
    p.add_argument("--params", required=True, metavar="FILE",
                   help="the point: JSON {W: [...], b: [...]} per layer, or {W1, b1, v, c} (one hidden layer), "
                        "or a solve/construct JSON result with a 'params' member, or .npz, .onnx, .safetensors, .pt")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument("--time-limit", type=float, metavar="S", help="time limit of the global solve (default: the spec's)")
    p.add_argument("--no-global", action="store_true", help="skip the global solve (no gap, no better point from it)")
    p.add_argument("--gd-starts", type=int, default=4, metavar="N",
                   help="deeper nets: multistart L-BFGS runs in the search for a better point (default 4; 0 = none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the multistart search (default 0)")
    p.add_argument("--check-cell-min", action="store_true",
                   help="one hidden layer: also certify the best point of the point's cell")
    p.add_argument("--verbose", action="store_true", help="progress on stderr; traceback on solver errors")
    p.set_defaults(func=run)


def run(args) -> int:
    from milpland.instance.params_io import load_params_for_spec

    spec = load_spec(args.spec)
    if args.time_limit is not None and not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise MilplandError(f"--time-limit: must be a positive finite number, got {args.time_limit!r}")
    if args.gd_starts < 0:
        raise MilplandError(f"--gd-starts: must be a non-negative integer, got {args.gd_starts}")
    params = load_params_for_spec(args.params, spec)
    if args.verbose:
        print(f"milpland certify: certifying a point of {spec.name} ...", file=sys.stderr, flush=True)
    from milpland.commands import stdout_to_stderr
    from milpland.points.certify import certify_point  # late: building the parser must stay cheap

    try:
        with stdout_to_stderr():
            cert = certify_point(spec, params, run_global=not args.no_global, time_limit=args.time_limit,
                                 gd_starts=args.gd_starts, seed=args.seed, check_cell_min=args.check_cell_min)
    except MilplandError:
        raise
    except Exception as exc:  # a solver failure, not a user mistake
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"milpland certify: solver error: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    obj = cert.to_json()
    if cert.status == "interrupted":
        return finish_interrupted("certify", obj, args.format, format_text,
                                  "the verdict so far and the global bound proven so far are printed")
    print_result(obj, args.format, format_text)
    return 0


VERDICT_TEXT = {
    "local_min": "LOCAL MINIMUM (certified)",
    "saddle": "SADDLE (stationary, with an explicit descent path)",
    "not_stationary": "NOT STATIONARY (a descent direction exists)",
    "not_local_min": "NOT A LOCAL MINIMUM (an explicit descent curve, not a first-order one)",
    "inconclusive": "INCONCLUSIVE (no certificate either way)",
}
CERTIFICATE_TEXT = {
    "interior": "strictly inside its cell and optimal for the cell's convex problem (DESIGN §5)",
    "boundary": "on a cell boundary; no neighbouring cell goes below it (DESIGN §5)",
    "group_lsq": "group least-squares bound attained strictly inside the cell (DESIGN §6)",
    "escape_neuron": "escape neuron of Wu, Simsek & Ged (DESIGN §7)",
    "first_order": "a first-order condition fails (DESIGN §7)",
    "cell_descent": "the risk is convex on a cell containing the point and lower elsewhere in it (DESIGN §5)",
    "gradient": "differentiable with a non-zero gradient",
    "balance": "rescaling a unit keeps the network and lowers the weight decay (DESIGN §4d)",
    "": "none",
}


def format_text(obj: dict) -> str:
    lines = [
        f"instance      {obj['instance']}  ({obj['architecture']}, {obj['loss']} loss, {obj['reduction']})",
        f"risk          {number_text(obj['risk'])}" + _objective_note(obj),
        f"verdict       {VERDICT_TEXT.get(obj['verdict'], obj['verdict'])}",
        f"certificate   {obj['certificate'] or '-'}: {CERTIFICATE_TEXT.get(obj['certificate'], '')}",
        f"reason        {obj['reason']}",
        f"stationary    {_tri(obj['stationary'])}",
        f"cell          {obj['cell']}  (margin {number_text(obj['margin'])}, {obj['ties']} tied pair(s)"
        + (f", zero-output units {obj['zero_units']}" if obj["zero_units"] else "") + ")",
    ]
    if obj["depth"] == 1:
        box = obj.get("cell_box") or [None, None]
        note = "  (touches the box: the cell's infimum may be lower)" if obj.get("cell_min_box_active") else ""
        where = ("all weights" if obj.get("weight_decay") else f"|scaled weights| <= {number_text(box[0])}")
        lines.append(f"cell minimum  {number_text(obj['cell_min'])}  over {where}{note}")
        if obj.get("cell_min_verdict"):
            lines.append(f"cell's best   {obj['cell_min_verdict']} (milpland.cells.certificates)")
        if obj.get("global_risk") is not None:
            cert = "certified" if obj["global_certified"] else "NOT certified"
            act = ", a box bound is active" if obj["global_box_active"] else ""
            over = "the certificate's region, see the note" if obj.get("weight_decay") else "the spec's box"
            lines.append(f"global min    {number_text(obj['global_risk'])}  (over {over}; {cert}{act}; "
                         f"lower bound {number_text(obj['global_lower_bound'])})")
            lines.append(f"gap           {number_text(obj['gap'])}  (risk - global minimum)")
            if obj.get("point_in_box") is False:
                lines.append("              the point lies OUTSIDE the spec's box: the global value is over the box "
                             "only and need not be below the point")
        else:
            lines.append("global min    not computed (--no-global)")
    else:
        lines += _deep_gap_lines(obj)
    gb = obj.get("group_bound")
    if gb is not None:
        lines.append(f"group bound   {number_text(gb['bound'])}  ({gb['groups']} group(s), {gb['verdict']})")
    esc = obj.get("escape")
    if esc is not None:
        lines.append(f"escape test   {esc['verdict']}" + (f", escape units {esc['escape_units']}" if esc["escape_units"] else ""))
    path = obj.get("descent_path")
    if path is not None:
        lines.append(f"descent path  {path['kind']}: risk from {number_text(path['start_risk'])} to "
                     f"{number_text(min(p['risk'] for p in path['points']))} over t in "
                     f"[{number_text(path['points'][0]['t'], 3)}, {number_text(path['points'][-1]['t'], 3)}]"
                     + ("" if path["descends"] else "  (NOT below the start everywhere)"))
        lines.append("              (every point with its parameters in --format json)")
    for note in obj.get("notes") or []:
        lines.append(f"note          {note}")
    if obj.get("status") == "interrupted":
        lines.append("status        interrupted (Ctrl-C)")
    lines.append(f"seconds       {number_text(obj['seconds'], 3)}")
    return "\n".join(lines)


def _deep_gap_lines(obj: dict) -> list[str]:
    """Deeper nets: the global solve where there is one (two layers, DESIGN §6a) and the best point."""
    lines = []
    if obj.get("global_risk") is not None:
        cert = "certified" if obj["global_certified"] else f"NOT certified, status {obj['global_status']}"
        act = ", a box bound is active" if obj["global_box_active"] else ""
        lines.append(f"global min    {number_text(obj['global_risk'])}  (two-layer solve over the spec's box; {cert}{act}; "
                     f"lower bound {number_text(obj['global_lower_bound'])})")
    best = obj.get("best_point")
    if best is not None:
        lines.append(f"best found    {number_text(best['risk'])}  by {best['method']}")
    if obj.get("gap") is not None:
        lines.append(f"gap           {number_text(obj['gap'])}  (risk - global minimum: exact, the minimum is certified)")
    elif best is not None:
        upper = obj.get("gap_upper_bound")
        tail = (f"; gap <= {number_text(upper)} (risk - the solve's lower bound)" if upper is not None
                else "; no global minimum is known for this net")
        lines.append(f"gap >=        {number_text(obj['gap_lower_bound'])}  (a LOWER BOUND on the gap to the global "
                     f"minimum: risk - best point found{tail})")
    else:
        lines.append("best found    none searched")
    if obj.get("point_in_box") is False:
        lines.append("              the point lies OUTSIDE the spec's box: the global value is over the box only")
    return lines


def _objective_note(obj: dict) -> str:
    """With weight decay every value is of risk + (lam/2)||theta||^2 (DESIGN §4d)."""
    if not obj.get("weight_decay"):
        return ""
    return f"  (objective: risk + (lam/2)||theta||^2, lam = {number_text(obj['weight_decay'])})"


def _tri(value) -> str:
    return "undecided" if value is None else ("yes" if value else "no")


