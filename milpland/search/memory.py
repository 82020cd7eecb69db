"""How much memory a global solve will take, estimated before anything large is built.

`estimate(spec, method)` adds up, per phase, the arrays that phase allocates, from the sizes of
the instance alone (n samples, d inputs, m units, K pieces); the phases run one after another, so
the peak is the largest phase on top of the interpreter with its libraries (BASE_BYTES).
`solve.choose_method_within_memory` compares the peak with ``[solve] memory_limit`` (default:
half the machine's memory): ``method = "auto"`` falls back from bnb to milp when only milp fits,
anything else that does not fit is refused with the estimate in the message.

The phases and what they hold (8 bytes a float; the factors count the copies the code makes):

- incumbent search (`milpland.search.incumbents`): S starts x (n samples x m units) activations
  and their gradients, S x m x d weights with two Adam moments.
- cell problems (`milpland.cells.problem`): p = m (d + 1) + 1 weights (+ m output scales for
  non-homogeneous activations), R = n m cell rows; the squared loss keeps Phi (n x p), the rows
  and their normalised copy (R x p) and p x p Gram and SVD matrices; the absolute and hinge losses
  a dense LP matrix (R + 2n) x (p + n) and an n x n identity.
- bnb, hull relaxation (`milpland.search.unit_hull`): vertex rays (2n in 1-D, 2 C(n, d) above)
  times samples, twice (features and signs), and a node's least-squares matrix n x (m rays) with
  the solver's copies.
- bnb, convexity relaxation (`pattern_bnb.Relaxation`): dense Phi (n x N) and constraint rows
  (R' x N) with N = m (d + 1) + 1 + n m columns and R' = n m excess rows plus m rows per convexity
  simplex; the rows exist three times while they are stacked and negated for Clarabel.
- data geometry (milp and the convexity relaxation from d = 2 on): the differences of every pair
  of samples, n x n x d, for the neighbour simplices (`formulation.containing_simplices`).
- milp (`milpland.search.formulation`): the Pyomo model, about 1.2 kB per row and column and
  250 B per nonzero (measured on 1-D and 2-D models of 300-5000 samples), times 1.5 while it is
  compiled, plus HiGHS's copy with its presolve.

Measured on n = 5000, d = 1, width 2 (squared loss): bnb (convexity relaxation) estimated 5.3 GB,
peak resident 5.2 GB; milp estimated 1.0 GB, peak 1.0 GB.  An estimate, not a bound: it is
there to refuse what cannot fit, not to account for every byte.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import comb

from milpland.instance.spec import InstanceSpec

MEMORY_NOTE = "memory limit"  # how a search stopped by [solve] memory_limit begins its note
BASE_BYTES = 250e6  # python with numpy, scipy, pyomo and highspy loaded
FLOAT = 8.0
PYOMO_PER_COMPONENT = 1200.0  # bytes per row and per column of a Pyomo model (measured)
PYOMO_PER_NONZERO = 250.0
COMPILE_FACTOR = 1.5  # the model and its standard form exist together while compiling
HIGHS_PER_NONZERO = 100.0  # HiGHS's matrix, its presolved copy and the tangent rows
TANGENT_ROWS_PER_SAMPLE = 14  # squared loss: incumbent, 4 candidates and 9 grid levels


def machine_bytes() -> float:
    """Physical memory of this machine (8 GB when the system does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 8e9


def resident_bytes() -> float:
    """This process's resident memory now (Linux /proc; elsewhere its peak so far, from getrusage)."""
    try:
        with open("/proc/self/statm") as fh:
            return float(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        import resource

        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024.0


def default_limit_gb() -> float:
    """``[solve] memory_limit`` when the spec gives none: half the machine's memory, in GB."""
    return machine_bytes() / 2 / 1e9


def limit_bytes(spec: InstanceSpec) -> float:
    limit = spec.solve.memory_limit
    return (default_limit_gb() if limit is None else float(limit)) * 1e9


def gigabytes(value: float) -> str:
    return f"{value / 1e9:.3g} GB"


def stopped_note(held: float, cap: float) -> str:
    """The note of a search that [solve] memory_limit stopped while it ran (it begins with MEMORY_NOTE)."""
    return (f"{MEMORY_NOTE}: the search held {gigabytes(held)}, more than [solve] memory_limit = {gigabytes(cap)}; "
            "the open nodes' bound stays proven")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per phase of one solve with `method`; `peak` is what the process will reach."""

    method: str
    phases: tuple[tuple[str, float, str], ...]  # (phase, bytes, what dominates it)

    @property
    def peak(self) -> float:
        return BASE_BYTES + max(b for _, b, _ in self.phases)

    def describe(self) -> str:
        """e.g. 'about 5.3 GB (bnb node problems: dense 5000 x 10005 matrices ...)'."""
        phase, _, what = max(self.phases, key=lambda p: p[1])
        return f"about {gigabytes(self.peak)} ({phase}: {what})"


def estimate(spec: InstanceSpec, method: str, *, starts: int = 64, hull: bool | None = None) -> MemoryEstimate:
    """The memory of `solve_global` with `method` ("milp" or "bnb") on `spec`.

    ``hull``: whether bnb bounds its nodes by the hull relaxation (`pattern_bnb.uses_hull`);
    ``starts``: the multistart's starts."""
    phases = [incumbent_phase(spec, starts), cell_phase(spec)]
    if method == "bnb":
        phases.append(hull_phase(spec) if hull else convexity_phase(spec))
    else:
        phases.append(milp_phase(spec))
    if spec.d >= 2 and (method == "milp" or not hull):  # formulation.containing_simplices
        phases.append(("data geometry", FLOAT * 2 * spec.n * spec.n * (spec.d + 1),
                       f"{spec.n} x {spec.n} x {spec.d} sample differences"))
    return MemoryEstimate(method=method, phases=tuple(phases))


def incumbent_phase(spec: InstanceSpec, starts: int) -> tuple[str, float, str]:
    n, d, m = spec.n, spec.d, spec.width
    size = FLOAT * starts * (4 * m * d + 6 * n * m + 2 * n)
    return "incumbent search", size, f"{starts} starts x {n} samples x {m} units"


def cell_params(spec: InstanceSpec) -> int:
    m = spec.width
    extra = 0 if spec.network.activation.homogeneous else m
    return m * (spec.d + 1) + extra + 1


def cell_phase(spec: InstanceSpec) -> tuple[str, float, str]:
    n, m = spec.n, spec.width
    p = cell_params(spec)
    rows = n * m * (1 if spec.network.activation.n_pieces == 2 else 2)
    if spec.loss.kind == "squared":
        size = FLOAT * (2 * n * p + 3 * rows * p + 4 * p * p)
        return "cell problems", size, f"{p} weights: {p} x {p} and {rows} x {p} dense matrices"
    size = FLOAT * (2 * (rows + 2 * n) * (p + n) + n * n + rows * p)
    return "cell problems", size, f"a dense {rows + 2 * n} x {p + n} LP matrix"


def hull_rays(spec: InstanceSpec) -> int:
    return 2 * spec.n if spec.d == 1 else 2 * comb(spec.n, spec.d)


def hull_phase(spec: InstanceSpec) -> tuple[str, float, str]:
    n, m = spec.n, spec.width
    rays = hull_rays(spec)
    size = FLOAT * (2 * rays * n + 4 * n * (m * rays + 1))
    return "bnb node problems", size, f"{rays} vertex rays x {n} samples"


def convexity_node_shape(spec: InstanceSpec) -> tuple[int, int]:
    """(rows, columns) of the root node problem of the convexity relaxation."""
    n, d, m = spec.n, spec.d, spec.width
    columns = m * (d + 1) + 1 + n * m
    simplices = max(n - 2, 0) if d == 1 else 4 * n
    return n * m + m * simplices, columns


def convexity_node_entries(spec: InstanceSpec) -> float:
    """Dense entries a root node of the convexity relaxation writes (Phi, rows and their copies)."""
    rows, columns = convexity_node_shape(spec)
    return float(columns) * (spec.n + 3 * rows)


def convexity_phase(spec: InstanceSpec) -> tuple[str, float, str]:
    rows, columns = convexity_node_shape(spec)
    size = FLOAT * convexity_node_entries(spec)
    return "bnb node problems", size, f"dense {spec.n} x {columns} and {rows} x {columns} matrices"


def milp_counts(spec: InstanceSpec) -> tuple[int, int, int]:
    """(rows, columns, nonzeros) of one sign class's Pyomo model (`formulation.build_master`)."""
    n, d, m = spec.n, spec.d, spec.width
    act = spec.network.activation
    if d == 1 and act.homogeneous:  # the threshold hull (add_threshold_hull_1d)
        groups = len(set(spec.X[:, 0].tolist()))
        copies = 2 * groups
        rows = m * (6 * copies + 3 * groups + 3) + 3 * n * m + 2 * n
        cols = m * (3 * copies + 3 * groups + 2) + 3 * n * m + 2 * n + 1
        return rows, cols, 3 * (rows + cols)
    K = act.n_pieces
    per_pair_rows = 2 + 2 * K + (0 if act.homogeneous else 1 + K + 2 * (K - 1))
    rows = n * m * per_pair_rows + 2 * n + 4 * n * m * (K - 1)  # + threshold or geometry rows
    cols = m * (d + 1) + n * m * K * (2 if act.homogeneous else 3) + 2 * n + 2 * m + 1
    nonzeros = n * m * (d + 1 + K) + 3 * (rows + cols)
    return rows, cols, nonzeros


def milp_phase(spec: InstanceSpec) -> tuple[str, float, str]:
    rows, cols, nonzeros = milp_counts(spec)
    pyomo = PYOMO_PER_COMPONENT * (rows + cols) + PYOMO_PER_NONZERO * nonzeros
    highs = HIGHS_PER_NONZERO * (nonzeros + 2 * TANGENT_ROWS_PER_SAMPLE * spec.n)
    return "milp model", COMPILE_FACTOR * pyomo + highs, f"about {rows} rows, {cols} columns, {nonzeros} nonzeros"
