"""What every result carries: the package and schema versions, and how values become JSON.

The base of the package with `milpland.errors`: every stage may import it, it imports
nothing of milpland.
"""

from __future__ import annotations

import numpy as np

__version__ = "0.1.0"
SCHEMA_VERSION = 1  # of the result rows and JSON objects (milpland.runs.tables)


def jsonable(obj):
    """Plain JSON values: numpy arrays and scalars converted, non-finite floats as null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
