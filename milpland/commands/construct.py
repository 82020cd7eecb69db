"""``milpland construct KIND SPEC``: a parameter point from the literature's constructions (DESIGN §8).

KIND is one of

- ``yun-step1``: Yun, Sra & Jadbabaie 2019, Thm 1, step 1 -- the linear least-squares fit as a
  one-hidden-layer net with every unit in its positive piece (ReLU, leaky ReLU, two-slope);
- ``yun-step2``: the strictly better point of step 2; prints its closed-form improvement
  (a lower bound on the gap between the step-1 point and the global minimum);
- ``he-deep``: He, Wang & Tao 2020, Part 1 -- every unit of every hidden layer inside one
  linear piece (any depth, any CPWL activation); ``--valley T`` moves along the constant-risk
  valley (layer ``--layer`` rescaled by T);
- ``liu-groups``: Liu 2021 -- each group of ``--groups`` fitted by its own affine piece
  (labels "0,0,1,1,2" or a file with labels or a JSON list of index lists);
- ``embed``: the point ``--params`` of a network one unit narrower in layer ``--layer``, with
  a unit added: ``--how zero`` (zero output weight; ``--unit J`` copies unit J's input weights,
  otherwise seeded random ones), ``dead`` (in a flat piece on every sample) or ``split``
  (unit J split with output weights lam·v and (1 − lam)·v, ``--lam``).

The point is written as JSON ({"W": [...], "b": [...], "activation": ...}) to ``--out``, which
``milpland certify SPEC --params FILE`` reads.  Without ``--out``: ``--format text`` prints the
params JSON on stdout and the summary on stderr; ``--format json`` prints one object whose
``params`` member is the point (also readable by certify).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from milpland.commands import number_text, writable_file
from milpland.errors import MilplandError

KINDS = ("yun-step1", "yun-step2", "he-deep", "liu-groups", "embed")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "construct",
        help="build a parameter point from a construction in the literature (writes a params file)",
        description="Build a parameter point from the literature's constructions for an instance spec; "
                    "`milpland certify SPEC --params FILE` then says what it is.",
    )
    p.add_argument("kind", choices=KINDS, metavar="KIND", help=f"one of: {', '.join(KINDS)}")
    p.add_argument("spec", metavar="SPEC", help="instance spec (TOML file)")
    p.add_argument("--out", metavar="FILE", help="write the params here: JSON, or .onnx / .safetensors / .pt / .npz "
                                                 "by the extension")
    p.add_argument("--format", choices=("text", "json"), default="text", help="summary format (default: text)")
    p.add_argument("--groups", metavar="G", help="liu-groups: labels '0,0,1,1,2' (one per sample) or a file")
    p.add_argument("--how", choices=("zero", "dead", "split"), help="embed: how the unit is added")
    p.add_argument("--unit", type=int, metavar="J", help="embed: the unit to split (split) or to copy (zero)")
    p.add_argument("--lam", type=float, metavar="L", help="embed split: output weights lam*v and (1-lam)*v")
    p.add_argument("--layer", type=int, default=0, metavar="L", help="embed / --valley: hidden layer index (default 0)")
    p.add_argument("--params", metavar="FILE",
                   help="embed: the narrower network's point (.json, .npz, .onnx, .safetensors or .pt)")
    p.add_argument("--valley", type=float, metavar="T", help="he-deep: the valley point with rescaling factor T > 0")
    p.add_argument("--alpha", type=float, default=1.0, metavar="A", help="yun-*: scale of the first layer (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed (yun-step2 random directions, embed random weights)")
    p.set_defaults(func=run)


def run(args) -> int:
    from milpland.instance.spec import load_spec

    spec = load_spec(args.spec)
    if spec.loss.decayed:  # the constructions are of the risk's critical points, not of risk + weight decay
        raise MilplandError("loss.weight_decay: construct builds critical points of the risk alone; use weight_decay = 0")
    _check_flags(args)
    construction = build(args, spec)
    params = construction.params
    _check_result(spec, params)
    obj = summary(args, spec, construction)
    params_json = params.to_json() | {"activation": spec.network.activation.describe()}
    if args.out is not None:
        out = writable_file("--out", args.out)
        _write_out(out, params_json, spec)
        obj["out"] = str(out)
        print(json.dumps(obj | {"params": params.to_json()}, allow_nan=False) if args.format == "json"
              else format_text(obj))
    elif args.format == "json":
        print(json.dumps(obj | {"params": params.to_json()}, allow_nan=False))
    else:
        print(format_text(obj), file=sys.stderr)
        print(json.dumps(params_json, indent=1))
    return 0


def _write_out(out: Path, params_json: dict, spec) -> None:
    """JSON with the activation, or .onnx / .safetensors / .pt / .npz by the extension."""
    from milpland.instance.params_io import check_params_file, params_from_json, write_params

    if out.suffix not in (".npz", ".onnx", ".safetensors", ".pt"):
        out.write_text(json.dumps(params_json, indent=1) + "\n")
        return
    check_params_file("--out", out, spec.network.activation)
    write_params(params_from_json(params_json), out, activation=spec.network.activation,
                 output_bias=spec.network.output_bias)


def build(args, spec):
    """The Construction for ``args.kind`` on ``spec`` (MilplandError for what does not apply)."""
    from milpland.points import constructions as cons

    X, y, act, loss, hidden = spec.X, spec.y, spec.network.activation, spec.loss, spec.network.hidden
    if args.kind in ("yun-step1", "yun-step2"):
        if len(hidden) != 1:
            raise MilplandError(f"{args.kind}: Yun's construction has one hidden layer; the spec has hidden = {list(hidden)}")
        s_minus, s_plus = _two_slopes(act, args.kind)
        if args.kind == "yun-step1":
            return cons.yun_step1(X, y, s_plus, s_minus, hidden[0], alpha=args.alpha, loss=loss)
        return cons.yun_step2(X, y, s_plus, s_minus, hidden[0], alpha=args.alpha, loss=loss, seed=args.seed)
    if args.kind == "he-deep":
        c = cons.he_deep(X, y, act, list(hidden), loss=loss)
        if args.valley is None:
            return c
        if not (math.isfinite(args.valley) and args.valley > 0):
            raise MilplandError(f"--valley: the rescaling factor must be a positive number, got {args.valley!r}")
        p = cons.valley(c.params, X, act, float(args.valley), layer=args.layer)
        risk = loss.risk(p.forward(X, act), y)
        details = dict(c.details, valley_t=float(args.valley), valley_layer=args.layer,
                       valley_t_max=cons.valley_range(c.params, X, act, layer=args.layer))
        return cons.Construction("he_deep_valley", p, act, risk, loss, details)
    if args.kind == "liu-groups":
        if args.groups is None:
            raise MilplandError("--groups: liu-groups needs a partition, e.g. --groups 0,0,1,1,2 (one label per sample)")
        return cons.liu_groups(X, y, act, list(hidden), parse_groups(args.groups, spec.n), loss=loss)
    return _embed(args, spec)


def _embed(args, spec):
    from milpland.instance.params_io import load_params
    from milpland.points import constructions as cons

    hidden = list(spec.network.hidden)
    if args.how is None or args.params is None:
        raise MilplandError("embed: needs --how zero|dead|split and --params FILE (the narrower network's point)")
    if not (0 <= args.layer < len(hidden)):
        raise MilplandError(f"--layer: must be a hidden layer index in [0, {len(hidden) - 1}], got {args.layer}")
    if hidden[args.layer] < 2:
        raise MilplandError(f"--layer: layer {args.layer} of the spec has width {hidden[args.layer]}; "
                            "embedding needs width >= 2 (the narrower point has one unit less)")
    narrow = list(hidden)
    narrow[args.layer] -= 1
    base = load_params(args.params, d=spec.d, hidden=narrow, outputs=1, activation=spec.network.activation)
    width = narrow[args.layer]
    kw: dict = {"layer": args.layer, "seed": args.seed, "X": spec.X, "y": spec.y, "act": spec.network.activation,
                "loss": spec.loss}
    if args.how == "split":
        if args.unit is None or args.lam is None:
            raise MilplandError("embed split: needs --unit J and --lam L")
        if not math.isfinite(args.lam):
            raise MilplandError(f"--lam: must be finite, got {args.lam!r}")
        kw.update(unit=args.unit, lam=float(args.lam))
    elif args.lam is not None:
        raise MilplandError(f"--lam: applies to --how split only, not {args.how!r}")
    if args.unit is not None and not (0 <= args.unit < width):
        raise MilplandError(f"--unit: layer {args.layer} of the narrower point has units 0..{width - 1}, got {args.unit}")
    if args.how == "zero" and args.unit is not None:
        kw.update(weights=base.W[args.layer][args.unit], bias=float(base.b[args.layer][args.unit]))
    if args.how == "dead" and args.unit is not None:
        raise MilplandError("--unit: does not apply to --how dead")
    return cons.embed(base, args.how, **kw)


def parse_groups(text: str, n: int):
    """Labels (one integer per sample) or a list of index lists, from the option or from a file."""
    path = Path(text)
    if path.is_file():
        text = path.read_text().strip()
    text = text.strip()
    if text.startswith("["):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MilplandError(f"--groups: not valid JSON: {exc}") from None
        if isinstance(obj, list) and all(isinstance(g, list) for g in obj):
            return obj
        if isinstance(obj, list):
            text = ",".join(str(v) for v in obj)
        else:
            raise MilplandError("--groups: JSON must be a list of labels or a list of index lists")
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        labels = np.array([int(p) for p in parts], dtype=np.int64)
    except ValueError:
        raise MilplandError(f"--groups: expected integer labels such as 0,0,1,1,2, got {text[:60]!r}") from None
    if labels.shape[0] != n:
        raise MilplandError(f"--groups: expected one label per sample ({n}), got {labels.shape[0]}")
    return labels


def _two_slopes(act, kind: str) -> tuple[float, float]:
    """(s_minus, s_plus) of a positively homogeneous activation (ReLU, leaky ReLU, two-slope)."""
    if not act.homogeneous or act.slopes[1] <= 0:
        raise MilplandError(
            f"network.activation: {kind} needs a two-slope activation h(z) = s_plus z (z >= 0), s_minus z (z < 0) "
            f"with s_plus > 0 (relu, leaky_relu, two_slope), got {act.name!r}; try he-deep"
        )
    return float(act.slopes[0]), float(act.slopes[1])


def _check_flags(args) -> None:
    used = {"--groups": args.groups, "--how": args.how, "--unit": args.unit, "--lam": args.lam,
            "--params": args.params, "--valley": args.valley}
    allowed = {"yun-step1": set(), "yun-step2": set(), "he-deep": {"--valley"}, "liu-groups": {"--groups"},
               "embed": {"--how", "--unit", "--lam", "--params"}}[args.kind]
    for flag, value in used.items():
        if value is not None and flag not in allowed:
            raise MilplandError(f"{flag}: does not apply to {args.kind}")
    if not (math.isfinite(args.alpha) and args.alpha > 0):
        raise MilplandError(f"--alpha: must be positive, got {args.alpha!r}")


def _check_result(spec, params) -> None:
    from milpland.instance.params_io import check_shapes

    check_shapes(params, d=spec.d, hidden=spec.network.hidden, outputs=1)
    if not spec.network.output_bias and float(params.b[-1][0]) != 0.0:
        raise MilplandError(
            f"network.output_bias: the construction needs an output bias ({float(params.b[-1][0]):.6g}) but the "
            "spec has output_bias = false; set output_bias = true"
        )


def summary(args, spec, construction) -> dict:
    from milpland.records import jsonable

    details = jsonable(construction.details)
    obj = {
        "kind": args.kind,
        "construction": construction.name,
        "instance": spec.name,
        "architecture": spec.architecture(),
        "loss": spec.loss.kind,
        "reduction": spec.loss.reduction,
        "risk": float(construction.risk) if np.isfinite(construction.risk) else None,
        "details": details,
    }
    if args.kind == "yun-step2":
        obj["improvement"] = details.get("improvement")
        obj["step1_risk"] = details.get("step1_risk")
    return obj


def format_text(obj: dict) -> str:
    d = obj["details"]
    lines = [
        f"construction  {obj['construction']}  ({obj['kind']})",
        f"instance      {obj['instance']}  ({obj['architecture']}, {obj['loss']} loss, {obj['reduction']})",
        f"risk          {number_text(obj['risk'])}",
    ]
    if obj["kind"] == "yun-step2":
        lines.append(f"step-1 risk   {number_text(obj.get('step1_risk'))}")
        if d.get("better"):
            lines.append(f"improvement   {number_text(obj.get('improvement'))}  (closed form w S^2/Q: exact drop from "
                         "step 1, a lower bound on its gap to the global minimum)")
        else:
            lines.append(f"improvement   0  ({d.get('reason', 'no better point')})")
    if obj["kind"] == "yun-step1":
        lines.append(f"linear fit    risk {number_text(d.get('ls_risk'))}; linearly fittable: {d.get('linearly_fittable')}")
    if "valley_t" in d:
        lines.append(f"valley        t = {number_text(d['valley_t'])} on layer {d['valley_layer']} "
                     f"(the cell is kept for 0 < t < {number_text(d['valley_t_max']) if d['valley_t_max'] is not None else 'infinity'})")
    if obj["kind"] == "liu-groups":
        lines.append(f"groups        {d.get('groups')}  (expected risk {number_text(d.get('expected_risk'))})")
    if obj["kind"] == "embed":
        extra = {k: v for k, v in d.items() if k in ("how", "layer", "unit", "lam", "new_unit")}
        lines.append(f"embedding     {extra}")
    if obj.get("out"):
        lines.append(f"written to    {obj['out']}  (milpland certify SPEC --params {obj['out']})")
    return "\n".join(lines)


