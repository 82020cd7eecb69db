"""``milpland export SPEC --format mps|lp``: the global MILP for other solvers (one file per sign class)."""

from __future__ import annotations

from pathlib import Path

from milpland.errors import MilplandError
from milpland.instance.spec import load_spec


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write the global MILP (one file per sign class) as MPS or LP",
        description=(
            "Write the per-sign-class MILPs whose smallest optimum is the global minimum over the box. "
            "For squared loss the files hold the tangent (outer-approximation) master with --cuts tangents "
            "per sample: their optimum is a lower bound."
        ),
    )
    p.add_argument("spec", metavar="SPEC", help="instance spec (TOML file)")
    # checked by export_model (milpland.search.export.FORMATS): importing it here would load Pyomo
    p.add_argument("--format", default="mps", help="file format: mps or lp (default: mps)")
    p.add_argument("--out", metavar="PREFIX", help="output path prefix (default: the spec's name)")
    p.add_argument("--cuts", type=int, default=41, help="tangents per sample for squared loss (default 41)")
    p.set_defaults(func=run)


def run(args) -> int:
    from milpland.search.export import export_model

    spec = load_spec(args.spec)
    prefix = Path(args.out or spec.name)
    if prefix.is_dir() or not prefix.name:
        raise MilplandError(f"--out: {prefix} is a folder; give a file prefix such as {prefix / spec.name}")
    try:
        written = export_model(spec, out_prefix=prefix, fmt=args.format, cuts=args.cuts)
    except OSError as exc:
        raise MilplandError(f"--out: cannot write {prefix}-*.{args.format}: {exc.strerror}") from None
    for path in written:
        print(f"wrote {path}")
    return 0
