"""Stage 6, commands: one module per command (``register(subparsers)``), and what they share.

May import every stage below; imported only by milpland.cli.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Callable

import milpland.interrupt as interrupt
from milpland.errors import MilplandError


def number_text(value, digits: int = 10) -> str:
    """A number for the readable tables: 10 significant digits, n/a for a missing value."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def writable_file(option: str, name: str | None) -> Path | None:
    """Fail before the work, not after it, when the output file cannot be written."""
    if name is None:
        return None
    path = Path(name)
    if path.is_dir():
        raise MilplandError(f"{option}: {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise MilplandError(f"{option}: directory {path.parent} does not exist")
    return path


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to stdout (Python and C level, e.g. HiGHS logs) to stderr.

    HiGHS writes its log to file descriptor 1 itself, so redirecting ``sys.stdout`` is not
    enough to keep a ``--format json`` stdout clean: the descriptor is redirected too.
    """
    sys.stdout.flush()
    try:
        fd, err_fd = sys.stdout.fileno(), sys.stderr.fileno()
        saved = os.dup(fd)
    except (AttributeError, OSError, ValueError):  # stdout is not a real file (captured in tests)
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    try:
        sys.stderr.flush()
        os.dup2(err_fd, fd)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)


def print_result(obj: dict, fmt: str, text: Callable[[dict], str]) -> None:
    """The command's result on stdout: one JSON object (``--format json``) or the readable text."""
    print(json.dumps(obj, allow_nan=False) if fmt == "json" else text(obj), flush=True)


def finish_interrupted(command: str, obj: dict | None, fmt: str, text: Callable[[dict], str], what: str) -> int:
    """After Ctrl-C (`milpland.interrupt`): print the partial result ``obj`` with status
    ``interrupted`` (when there is one), say on stderr what it holds, and return exit code 130."""
    if obj is not None:
        obj["status"] = "interrupted"
        print_result(obj, fmt, text)
    print(f"milpland {command}: interrupted (Ctrl-C): {what}", file=sys.stderr, flush=True)
    return interrupt.EXIT_CODE
