"""Stage 4, the landscape: local and spurious minima of an instance (DESIGN §5).

`listing.landscape` runs one method and ranks its minima against the global minimum:
every cell (`enumeration`), the census of descents from random starts (`census`, whose descent
is `sampling`) or the local-minima MILP (`localmin_milp`).

May import: instance, cells, search.  Imported by runs and commands (not by points, its
sibling stage).
"""

from milpland.landscape.listing import LandscapeResult, landscape

__all__ = ["LandscapeResult", "landscape"]
