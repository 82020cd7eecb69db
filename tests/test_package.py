"""The package surface: what `import milpland` gives and what it costs."""

from __future__ import annotations


def test_package_exports_resolve_lazily():
    import subprocess
    import sys

    code = ("import sys, milpland; assert 'pyomo' not in sys.modules; "
            "from milpland.search.solve import solve_global; from milpland.points.certify import certify_point; "
            "from milpland.runs.tables import load; "
            "assert milpland.solve_global is solve_global and milpland.certify_point is certify_point "
            "and milpland.load_results is load")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
