"""``milpland solve SPEC``: the certified global minimum of one instance over its box.

Exit codes: 0 when a verified point was reported (read ``certified`` to see whether it
is a certificate), 1 when the solver failed (error, no point, or a point that the numpy
re-check rejects), 2 for user mistakes (handled by milpland.cli).

With ``--format json`` stdout carries exactly one JSON object; solver logs and
progress go to stderr (HiGHS writes its log to file descriptor 1, so the descriptor
itself is redirected during the solve, not only ``sys.stdout``).
"""

from __future__ import annotations

import math
import sys
import time
import traceback

from milpland.commands import finish_interrupted, number_text, print_result, stdout_to_stderr, writable_file
from milpland.errors import MilplandError
from milpland.instance.data import MAX_MAGNITUDE
from milpland.instance.params_io import check_params_file, write_params
from milpland.instance.spec import InstanceSpec, SolveOptions, load_spec

# A point is reported (exit 0) with these statuses; anything else is a solver failure.
REPORTED_STATUSES = ("optimal", "time_limit", "memory_limit")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "solve",
        help="certified global minimum of the training risk over the box",
        description="Solve one instance spec (TOML) to a certified global minimum over its box.",
    )
    p.add_argument("spec", metavar="SPEC", help="instance spec (TOML file)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument("--time-limit", type=float, metavar="S", help="wall-clock limit in seconds (overrides [solve])")
    p.add_argument("--rel-gap", type=float, metavar="G", help="relative gap that counts as certified (overrides [solve])")
    p.add_argument("--box", type=float, metavar="B", help="box bound on every scaled weight and output scale (overrides [box])")
    p.add_argument("--method", choices=("auto", "milp", "bnb"),
                   help="search: milp (sign-class MILPs), bnb (pattern branch-and-bound: homogeneous two-piece "
                        "activation), auto (bnb for inputs of dimension 1-2 where it applies; overrides [solve])")
    p.add_argument("--memory-limit", type=float, metavar="GB",
                   help="refuse a search estimated to need more memory (overrides [solve]; default: half the machine's)")
    p.add_argument("--params-out", metavar="FILE",
                   help="write the minimiser's weights: .onnx, .safetensors, .pt or .npz by the extension, "
                        "else JSON (same shape as 'params')")
    p.add_argument("--verbose", action="store_true", help="solver log on stderr; traceback on solver errors")
    p.set_defaults(func=run)


def run(args) -> int:
    spec = prepare_spec(args)
    params_out = writable_file("--params-out", args.params_out)
    check_params_file("--params-out", params_out, spec.network.activation)
    # imported late: building the parser must stay cheap
    from milpland.search.solve import solve_global

    _progress(args, f"solving {spec.name} ({spec.architecture()}, {spec.loss.kind} loss, n = {spec.n}) ...")
    started = time.perf_counter()
    try:
        with stdout_to_stderr():
            result = solve_global(spec, progress=(lambda msg: _progress(args, msg)) if args.verbose else None)
    except MilplandError:
        raise
    except Exception as exc:  # a solver failure, not a user mistake: exit 1 with one line
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"milpland solve: solver error: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    _progress(args, f"done in {time.perf_counter() - started:.2f} s")

    obj = result.to_json()
    if params_out is not None and obj.get("params") is not None:
        write_params(obj["params"], params_out, activation=spec.network.activation,
                     output_bias=spec.network.output_bias)
    text = lambda o: format_text(o, rel_gap=spec.solve.rel_gap,  # noqa: E731
                                 output_box_used=not spec.network.activation.homogeneous)
    if result.status == "interrupted":
        return finish_interrupted("solve", obj, args.format, text, "the best point found and the lower bound "
                                  "proven so far are printed")
    print_result(obj, args.format, text)
    failure = solver_failure(obj)
    if failure:
        print(f"milpland solve: {failure}", file=sys.stderr)
        return 1
    return 0


def prepare_spec(args) -> InstanceSpec:
    """The spec with the command-line overrides applied; bad overrides are user errors."""
    spec = load_spec(args.spec)
    for flag, value in (("--time-limit", args.time_limit), ("--rel-gap", args.rel_gap), ("--box", args.box),
                        ("--memory-limit", args.memory_limit)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise MilplandError(f"{flag}: must be a positive finite number, got {value!r}")
    if args.rel_gap is not None and args.rel_gap >= 1:
        raise MilplandError(f"--rel-gap: must be below 1 (a gap of 1 is proven by the lower bound 0), got {args.rel_gap!r}")
    if args.box is not None and args.box > MAX_MAGNITUDE:
        raise MilplandError(f"--box: must be at most {MAX_MAGNITUDE:g} (double precision), got {args.box!r}")
    options = {}
    if args.time_limit is not None:
        options["time_limit"] = float(args.time_limit)
    if args.rel_gap is not None:
        options["rel_gap"] = float(args.rel_gap)
    if args.verbose:
        options["verbose"] = True
    if args.method is not None:
        options["method"] = args.method
    if args.memory_limit is not None:
        options["memory_limit"] = float(args.memory_limit)
    if options:
        spec = spec.with_options(**options)
    if args.box is not None:
        spec = spec.with_box(float(args.box))
    return spec


def solver_failure(obj: dict) -> str:
    """Why the result is not a reportable answer ('' when it is)."""
    if obj.get("status") not in REPORTED_STATUSES:
        detail = f": {obj['message']}" if obj.get("message") else ""
        return f"solver returned status {obj.get('status')!r}{detail}"
    if obj.get("risk") is None or obj.get("params") is None:
        return f"no point found (status {obj.get('status')!r}); try a larger --time-limit"
    ver = obj.get("verification")
    if ver is None:
        return "the returned point was not verified"
    if not ver.get("ok", False):
        return (
            "verification failed: the numpy forward pass does not reproduce the solver's point "
            f"(relative risk difference {ver.get('risk_difference')}, {ver.get('pattern_mismatches')} pattern mismatches)"
        )
    return ""


def format_text(obj: dict, *, rel_gap: float | None = None, output_box_used: bool = True) -> str:
    """A readable summary of ``SolveResult.to_json()``; rel_gap is the gap that counts as certified.
    ``output_box_used``: whether the box bounds the output scale (not for positively homogeneous
    activations such as ReLU, where the scaled weights carry |v_j| and only they are bounded)."""
    if rel_gap is None:
        rel_gap = (obj.get("options") or {}).get("rel_gap")
    box = obj.get("box") or {}
    output = (f"output scale <= {number_text(box.get('output'))}" if output_box_used
              else "output scale not bounded (homogeneous activation: the scaled weights carry |v|)")
    decay = obj.get("weight_decay") or 0.0
    lines = [
        f"instance      {obj['instance']}  (hash {obj.get('instance_hash', '?')})",
        f"architecture  {obj.get('architecture', '?')}, {obj.get('loss', '?')} loss ({obj.get('reduction', '?')})",
        f"method        {obj.get('method', '?')}",
        f"status        {obj['status']}",
        f"risk          {number_text(obj['risk'])}   (upper bound: risk of the returned point)",
        f"lower bound   {number_text(obj['lower_bound'])}",
        f"gap           {number_text(obj['gap'])}   (relative; rel_gap = {number_text(rel_gap)})",
        f"region        {obj.get('region')}  (weight decay: DESIGN §4d)" if decay else
        f"box           |scaled weights| <= {number_text(box.get('weight'))}, {output}"
        if obj.get("knots") is None else
        f"box           |canonical layer-2 weights and biases| <= {number_text(box.get('weight'))} (DESIGN §6a)",
        f"box active    {'YES' if obj['box_active'] else 'no'}" + _box_note(obj["box_active"]),
        f"certified     {_certificate_line(obj, rel_gap)}",
    ]
    if obj.get("limit_point"):  # logistic loss without weight decay, separable data (DESIGN §4e)
        lines.append(f"limit point   {obj['limit_point']}")
    if decay:  # every value is of the regularised objective, and the certificate's region is not the box
        lines.insert(4, f"objective     risk + (lam/2)||theta||^2, lam = {number_text(decay)}"
                        f"{'' if obj.get('decay_biases', True) else ' (biases not decayed)'}; risk and bounds below are of it")
        lines[-1] = lines[-1].replace("global minimum over the box", f"global minimum over {obj.get('region')}")
    params = obj.get("params")
    if params is not None and "W" in params:  # deeper nets (two layers: milpland.search.deep_solve)
        lines += _deep_minimiser(obj)
    elif params is not None:
        lines.append("minimiser     f(x) = sum_j v_j sigma(W1[j] . x + b1[j]) + c")
        for j, (w, b, v) in enumerate(zip(params["W1"], params["b1"], params["v"])):
            ws = ", ".join(number_text(t) for t in w)
            lines.append(f"  unit {j}: W1 = [{ws}]  b1 = {number_text(b)}  v = {number_text(v)}")
        lines.append(f"  c = {number_text(params['c'])}")
    lines.append(f"verification  {_verification_line(obj.get('verification'))}")
    sec = obj.get("seconds") or {}
    lines.append(
        f"seconds       build {number_text(sec.get('build'), 3)}, solve {number_text(sec.get('solve'), 3)}, total {number_text(sec.get('total'), 3)}"
        f"  ({obj.get('nodes', 0)} nodes, {obj.get('iterations', 0)} iterations)"
    )
    solver = obj.get("solver") or {}
    lines.append(f"solver        {solver.get('name', '?')} {solver.get('version', '')}".rstrip())
    if obj.get("message"):
        lines.append(f"message       {obj['message']}")
    return "\n".join(lines)


def _deep_minimiser(obj: dict) -> list[str]:
    """The layers of a deep minimiser, and the knots t_j of layer 1 (two layers, 1-D)."""
    params = obj["params"]
    lines = ["minimiser     f(x) = W[L] a^{L-1} + b[L],  a^l = sigma(W[l] a^{l-1} + b[l]),  a^0 = x"]
    for layer, (W, b) in enumerate(zip(params["W"], params["b"])):
        rows = "; ".join(", ".join(number_text(v) for v in row) for row in W)
        lines.append(f"  layer {layer}: W = [{rows}]  b = [{', '.join(number_text(v) for v in b)}]")
    if obj.get("knots") is not None:
        knots = ", ".join(f"({'+' if s > 0 else '-'}, {number_text(t)})" for t, s in zip(obj["knots"], obj["orientations"]))
        lines.append(f"  layer-1 units (orientation s, knot t), sigma(s (x - t)): {knots}")
    return lines


def _certificate_line(obj: dict, rel_gap: float | None) -> str:
    if obj["certified"] and rel_gap is not None and rel_gap > SolveOptions.rel_gap:
        return (f"yes, within a relative gap of {number_text(rel_gap)}: no point in the box has risk below "
                f"{number_text(obj['lower_bound'])} (no box bound active, verified)")
    if obj["certified"]:
        return "yes: global minimum over the box (bounds meet within tolerance, no box bound active, verified)"
    reasons = []
    if obj["status"] != "optimal":
        reasons.append(f"status {obj['status']}")
    risk, lower = obj.get("risk"), obj.get("lower_bound")
    abs_tol = (obj.get("options") or {}).get("abs_tol", 0.0)
    if risk is None or lower is None or (rel_gap is not None and risk - lower > max(rel_gap * abs(risk), abs_tol)):
        reasons.append("gap not closed")
    if obj["box_active"]:
        reasons.append("a box bound is active")
    if not (obj.get("verification") or {}).get("ok", False):
        reasons.append("verification failed")
    return "NO" + (f" ({'; '.join(reasons)})" if reasons else "")


def _box_note(active: bool) -> str:
    if active:
        return "  -> the value is a minimum over the box only, not a global minimum; re-solve with a larger --box"
    return "  (no bound is tight at the returned point)"


def _verification_line(ver: dict | None) -> str:
    if ver is None:
        return "not run"
    state = "ok" if ver.get("ok") else "FAILED"
    text = (
        f"{state}: numpy risk {number_text(ver.get('risk_numpy'))}, relative difference {number_text(ver.get('risk_difference'))}, "
        f"{ver.get('pattern_mismatches')} pattern mismatches, {ver.get('ties')} ties"
    )
    if ver.get("limit_units"):
        text += f", limit units {list(ver['limit_units'])} (realised approximately)"
    return text


def _progress(args, message: str) -> None:
    if args.verbose or args.format == "json":
        print(f"milpland solve: {message}", file=sys.stderr, flush=True)


