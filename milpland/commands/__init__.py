"""One module per command (``register(subparsers)``), and what the commands share."""

from __future__ import annotations

import contextlib
import os
import sys


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
