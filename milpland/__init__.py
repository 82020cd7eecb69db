"""milpland: certified global and local minima of small piecewise-linear networks.

Public API (keyword-only options everywhere):

- ``load_spec(path)`` / ``spec_from_dict(table)``: an `InstanceSpec` (data already loaded).
- ``solve_global(spec)``: the certified global minimum over the box (a `SolveResult`).
- ``milpland.landscape.listing.landscape(spec, method=...)``: the local minima, ranked, with gaps
  (not re-exported here: the name is also the module's).
- ``certify_point(spec, params)``: what a given point is (a `Certification`).
- ``load_results(out_dir)``: the result tables of a batch folder as pandas DataFrames.

The solver-backed names are imported on first use, so that ``import milpland`` stays cheap.
"""

from milpland.errors import MilplandError, SpecError
from milpland.instance.spec import InstanceSpec, load_spec, spec_from_dict
from milpland.records import __version__

_LAZY = {
    "solve_global": ("milpland.search.solve", "solve_global"),
    "certify_point": ("milpland.points.certify", "certify_point"),
    "load_results": ("milpland.runs.tables", "load"),
}

__all__ = ["InstanceSpec", "MilplandError", "SpecError", "load_spec", "spec_from_dict", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'milpland' has no attribute {name!r}")
