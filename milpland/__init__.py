"""milpland: certified global and local minima of small piecewise-linear networks.

Public API (keyword-only options everywhere):

- ``load_spec(path)`` / ``spec_from_dict(table)``: an `InstanceSpec`.
- ``solve_global(spec)``: the certified global minimum over the box (a `SolveResult`).
"""

from milpland.errors import MilplandError, SpecError
from milpland.spec import InstanceSpec, load_spec, spec_from_dict

__version__ = "0.1.0"

__all__ = ["InstanceSpec", "MilplandError", "SpecError", "load_spec", "spec_from_dict", "__version__"]
