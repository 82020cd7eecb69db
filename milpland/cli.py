"""The ``milpland`` command line.  Each command lives in milpland/commands/<name>.py and
exposes ``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.

User mistakes (`MilplandError`) are printed as one line on stderr with exit code 2,
never as a traceback.  Ctrl-C (SIGINT) is a request to stop (`milpland.interrupt`): a command
prints what it has with status ``interrupted`` and exits with 130.  A closed stdout (``milpland
... | head -1``) ends the command quietly, as Unix tools do, with exit code 141 (128 + SIGPIPE).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import milpland.interrupt as interrupt
from milpland.errors import MilplandError
from milpland.records import __version__

BROKEN_PIPE_EXIT = 141

COMMANDS = ["solve", "landscape", "certify", "construct", "batch", "report", "bench", "export"]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit 2) like every other user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
    code = _run(args)
    if argv is None and _solver_threads_left():
        # As the program (not called in-process): a solver left running after Ctrl-C or its time
        # limit (milpland.search.highs_backend.run_until_stopped) would hold the interpreter's
        # shutdown as long as it runs; the output is written, so end now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _solver_threads_left() -> bool:
    """Whether a HiGHS run was abandoned (it may still run: libhighs' exit-time destructors then
    abort the process with "terminate called without an active exception")."""
    backend = sys.modules.get("milpland.search.highs_backend")
    return bool(backend is not None and backend._ABANDONED)


def _run(args) -> int:
    try:
        with interrupt.sigint_stops():
            return int(args.func(args) or 0)
    except MilplandError as exc:
        print(f"milpland {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"milpland {args.command}: interrupted", file=sys.stderr)
        return interrupt.EXIT_CODE
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE_EXIT


def _silence_stdout() -> None:
    """The reader of stdout is gone: point stdout at /dev/null so that the final flush at exit
    does not raise (and print) a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
