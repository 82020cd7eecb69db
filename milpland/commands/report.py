"""``milpland report``: summary tables and figures of a results folder."""

from __future__ import annotations

import sys
from pathlib import Path

from milpland.errors import MilplandError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="summarise a results folder: tables and PNG figures",
        description="Print summary tables of a batch results folder and write PNG figures.",
    )
    p.add_argument("out", metavar="DIR", help="a folder written by `milpland batch --out DIR`")
    p.add_argument("--figures", default=None, metavar="FIGDIR", help="where to write PNGs (default: DIR/figures)")
    p.add_argument("--no-figures", action="store_true", help="print the tables only")
    p.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd  # heavy: imported only when the command runs

    from milpland.runs.report import report, write_figures
    from milpland.runs.tables import load

    if not Path(args.out).is_dir():
        raise MilplandError(f"DIR: {args.out} is not a folder (give the --out folder of `milpland batch`)")
    folder = Path(args.figures) if args.figures else Path(args.out) / "figures"
    if not args.no_figures and folder.exists() and not folder.is_dir():
        raise MilplandError(f"--figures: {folder} exists and is not a folder")
    tables = report(args.out)
    with pd.option_context("display.width", 160, "display.max_columns", None, "display.max_colwidth", 70,
                           "display.float_format", "{:.4g}".format):
        _section("Summary per suite and group", tables["summary"])
        if len(tables["failures"]):
            _section("Failures (latest attempt)", tables["failures"])
        _section("Runs", tables["runs"])
    if not args.no_figures:
        try:
            written = write_figures(load(args.out), folder)
        except OSError as exc:
            raise MilplandError(f"--figures: cannot write to {folder}: {exc.strerror}") from None
        for path in written:
            print(f"wrote {path}")
    return 0


def _section(title: str, frame) -> None:
    print(f"== {title} ==")
    print(frame.to_string() if len(frame) else "(none)")
    print()
    sys.stdout.flush()
