"""Ctrl-C as a request to stop with the best result so far, not as a crash.

The base of the package with `milpland.errors`: every stage may import it, it imports nothing
of milpland.  How it works:

- A command runs inside `sigint_stops()`, which installs a SIGINT handler that sets a flag.
- Code that can stop cleanly and still return what it has (the global searches, the MILPs
  through HiGHS's interrupt callback, `milpland.search.highs_backend.stop_on_request`, the
  incumbent search, certify's steps) runs inside `polling()` and checks `requested()` between
  steps; it returns its best point and its proven bound, and the result's status becomes
  ``interrupted``.
- Outside `polling()` the first SIGINT raises KeyboardInterrupt, as Python does by default:
  that code has nothing partial worth keeping, and the command prints what it has.
- A second SIGINT always raises KeyboardInterrupt (the user insists).

A new long-running search uses it in two lines: ``with interrupt.polling():`` around the loop
and ``if interrupt.requested(): break`` inside it; the commands print the partial result with
``milpland.commands.finish_interrupted``.  Tests and other threads call `request()`.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a process stopped by Ctrl-C

_state = {"requested": False, "at": 0.0, "polling": 0}


def requested() -> bool:
    """Whether a stop was requested (Ctrl-C, or `request()`)."""
    return _state["requested"]


def requested_at() -> float:
    """time.perf_counter() of the first request (0.0 when none)."""
    return _state["at"]


def request() -> None:
    """Ask every polling loop to stop (what the SIGINT handler does)."""
    if not _state["requested"]:
        _state["at"] = time.perf_counter()
    _state["requested"] = True


def clear() -> None:
    _state["requested"], _state["at"] = False, 0.0


@contextmanager
def polling():
    """Mark code that checks `requested()` itself: inside it, the first SIGINT only sets the flag."""
    _state["polling"] += 1
    try:
        yield
    finally:
        _state["polling"] -= 1


def _handler(signum, frame) -> None:
    first = not _state["requested"]
    request()
    if not first or not _state["polling"]:
        raise KeyboardInterrupt


@contextmanager
def sigint_stops():
    """Install the handler for the duration of a command (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    clear()
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        clear()  # a later call in the same process (a notebook, a test) starts afresh
