"""Stage 6, commands: one module per command (``register(subparsers)``), and what they share.

May import every stage below; imported only by milpland.cli.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

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
