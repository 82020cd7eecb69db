"""Make the test helpers importable both as `bruteforce` and as `tests.bruteforce`.

pytest's default (prepend) import mode puts tests/ on sys.path, but not the repository
root, so `from tests.bruteforce import ...` failed under a plain `pytest` call.
"""

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
for _p in (str(_TESTS.parent), str(_TESTS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)
