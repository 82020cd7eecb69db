"""The ``milpland`` command line.  Each command lives in milpland/commands/<name>.py and
exposes ``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.

User mistakes (`MilplandError`) are printed as one line on stderr with exit code 2,
never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from milpland.errors import MilplandError
from milpland.records import __version__

COMMANDS = ["solve", "landscape", "certify", "construct", "batch", "report", "bench", "export"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="milpland",
        description="Certified global and local minima of small piecewise-linear networks.",
    )
    parser.add_argument("--version", action="version", version=f"milpland {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"milpland.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MilplandError as exc:
        print(f"milpland {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"milpland {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
