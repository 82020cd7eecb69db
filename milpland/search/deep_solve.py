"""Certified global minimum of a two-hidden-layer network on 1-D data (DESIGN §6a).

`solve_two_layer(spec)` runs a spatial branch-and-bound over the canonical networks of
`milpland.search.deep_model`.  The roots enumerate, for every layer-1 unit, the orientation and
the gap of its knot and the signs of its layer-2 weights, and the output signs (the sign class);
nodes then split a layer-2 pattern pair (top / bottom), a knot interval or a share interval
(`milpland.search.deep_relaxation`).  Every node bound is recomputed in numpy from the QP
solver's point and multipliers; a node whose bound reaches the incumbent minus half the tolerance
is pruned.  The incumbent is the best network found: the relaxation's own point as a network,
polished by the exact cell problem at its knots (`deep_incumbents.best_at_knots`), and, once the
search has run for `DeepOptions.incumbent_delay` seconds (default their own time budget) without
finishing, the multistart start points (`deep_incumbents.first_incumbents`).  Deferred because best first with lazily evaluated
nodes expands the same nodes whatever the incumbent as long as the optimum is found before the
frontier reaches it, which the relaxation's own points did on every instance of the deep-scip suite;
run first, the heuristics took 0.3-2.5 s on searches that then needed 0.2-2 s.

Symmetries removed (each keeps at least one network of every orbit): layer-1 units are a sorted
multiset of (orientation, gap, sign column); a root is kept only when no permutation of equal-sign
layer-2 units gives a smaller multiset; layer-2 units of equal output sign and equal sign rows keep
their pattern columns in lexicographic order; layer-1 units with equal descriptors keep their
knots in order (a node whose knot intervals contradict it is dropped).
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

import milpland.interrupt as interrupt
from milpland.errors import MilplandError
from milpland.instance.spec import InstanceSpec
from milpland.search import deep_relaxation as rx
from milpland.search import memory
from milpland.search.deep_incumbents import (
    KNOTS_SECONDS,
    DeepIncumbent,
    best_at_knots,
    constant_net,
    first_incumbents,
    knots_global,
)
from milpland.search.deep_model import ABS_TOL_FACTOR, CanonicalNet, TwoLayerData, two_layer_reason
from milpland.search.deep_relaxation import UNDECIDED, DeepNode
from milpland.search.deep_result import DeepSolveResult, assemble
from milpland.search.outcome import tolerance
from milpland.search.pattern_bnb import lex_ordered as pattern_lex_ordered

EXCESS_TOL = 1e-9  # h - relu(z) below this (relative to the weights) is no excess
POLISH_FACTOR = 1.5  # relaxation networks within this factor of the incumbent are polished
POLISH_SHARE = 0.1  # ... while polishing has taken less than this share of the search's time
REPORT_SECONDS = 2.0
MEMORY_CHECK_EVERY = 500  # nodes between two looks at the process's memory (a /proc read, ~20 us)


@dataclass(frozen=True)
class DeepOptions:
    """The search's switches (for the ablation and the tests)."""

    incumbent_share: float = 0.05  # at most this fraction of the time limit goes to the first incumbents
    # seconds of search before the first incumbents run (0: before the search; None: their own budget,
    # incumbent_share x time limit, so a search that ends sooner never pays for them and a longer one
    # pays at most that much more)
    incumbent_delay: float | None = None
    starts: int = 4  # multistart descents for the first incumbent (the search's own points do better)
    polish: bool = True  # relaxation points polished by the exact cell problem at their knots
    symmetry: bool = True
    conic: bool = True  # the conic McCormick relaxation; False: each unit its own knot (first order)
    secant: bool = True  # undecided layer-2 pairs: the secant of relu over z's range (False: h <= M only)


@dataclass
class SearchStats:
    nodes: int = 0
    pattern_splits: int = 0
    knot_splits: int = 0
    share_splits: int = 0
    solver_failures: int = 0
    polished: int = 0
    polish_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    leaves: int = 0
    interrupted: bool = False
    roots: int = 0
    kernel_load_seconds: float = 0.0  # `deep_relaxation.load_kernels`, before the clock
    memory_held: float = 0.0  # resident bytes when [solve] memory_limit stopped the search (0: it did not)
    notes: list = field(default_factory=list)


def solve_deep(spec: InstanceSpec, *, one_hidden, progress=None, options: DeepOptions = DeepOptions()) -> DeepSolveResult:
    """`solve_global` for more than one hidden layer: the two-layer search where it applies,
    otherwise a one-line refusal saying why (no lower bound can be proven there, DESIGN §6).
    ``one_hidden``: the one-hidden-layer solver (`solve.solve_global`), used for good points."""
    if spec.network.depth > 2:
        raise MilplandError(
            f"network.hidden: solve proves global minima for one or two hidden layers; {spec.name} has hidden = "
            f"{list(spec.network.hidden)}, for which milpland has no lower bound. `milpland certify` "
            "reports a lower bound on a point's gap from the best point found (DESIGN §6)")
    reason = two_layer_reason(spec)
    if reason:
        field = "network.activation" if "activation" in reason else "data"
        raise MilplandError(f"{field}: solve for two hidden layers: {reason} (DESIGN §6a); `milpland certify` "
                            "reports a lower bound on a point's gap from the best point found")
    return solve_two_layer(spec, one_hidden=one_hidden, progress=progress, options=options)


def solve_two_layer(spec: InstanceSpec, *, one_hidden, progress=None,
                    options: DeepOptions = DeepOptions()) -> DeepSolveResult:
    """Certified global minimum over the box of a 1-m1-m2-1 network (1-D inputs, homogeneous
    two-piece activation; squared, absolute or hinge loss): see the module docstring and DESIGN §6a."""
    reason = two_layer_reason(spec)
    if reason:
        raise MilplandError(f"solve for two hidden layers: {reason}")
    kernel_load_seconds = rx.load_kernels()  # before the clock (see there); reported with the result
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    data = TwoLayerData.of(spec)
    deadline = started + spec.solve.time_limit
    abs_tol = ABS_TOL_FACTOR * data.baseline()
    incumbent = DeepIncumbent(risk=constant_net(data).risk(data), net=constant_net(data), found_by="constant")
    heuristics = FirstIncumbents(spec, data, options, one_hidden, say)
    if heuristics.delay() <= 0:
        heuristics.run(incumbent)
    stats = SearchStats(kernel_load_seconds=kernel_load_seconds)
    lower, complete = 0.0, True  # a zero risk (to abs_tol) needs no search: every loss is >= 0
    if incumbent.risk > abs_tol:
        lower, complete = search(spec, data, incumbent, deadline=deadline, abs_tol=abs_tol, say=say,
                                 stats=stats, options=options, one_hidden=one_hidden, heuristics=heuristics)
    incumbent_seconds = heuristics.seconds
    return assemble(spec, data, incumbent, lower=lower, complete=complete, abs_tol=abs_tol, started=started,
                    stats=stats, incumbent_seconds=incumbent_seconds, options=options)


def heuristics_delay(spec: InstanceSpec, options: DeepOptions) -> float:
    """Seconds of search before the costly heuristics (the first incumbents, the exact layer 2 of a
    polished point) run: ``incumbent_delay``, by default the first incumbents' own budget."""
    given = options.incumbent_delay
    return options.incumbent_share * spec.solve.time_limit if given is None else given


class FirstIncumbents:
    """The multistart heuristics of `deep_incumbents.first_incumbents`, run at most once: before the
    search (``incumbent_delay`` 0) or when it has run that long; ``seconds`` is their time."""

    def __init__(self, spec: InstanceSpec, data: TwoLayerData, options: DeepOptions, one_hidden, say):
        self.spec, self.data, self.options, self.one_hidden, self.say = spec, data, options, one_hidden, say
        self.done, self.seconds = False, 0.0

    def delay(self) -> float:
        return heuristics_delay(self.spec, self.options)

    def due(self, searched: float) -> bool:
        return not self.done and searched >= self.delay()

    def run(self, incumbent: DeepIncumbent) -> None:
        self.done = True
        began = time.perf_counter()
        found = first_incumbents(self.spec, self.data, starts=self.options.starts, seed=self.spec.solve.seed,
                                 time_limit=self.options.incumbent_share * self.spec.solve.time_limit,
                                 one_hidden=self.one_hidden)
        self.seconds = time.perf_counter() - began
        if found.risk < incumbent.risk:
            incumbent.update(found.net, found.risk, found.found_by)
        self.say(f"first incumbents {found.risk:.6g} ({found.found_by}, {self.seconds:.1f} s); "
                 f"best {incumbent.risk:.6g}")


# ----------------------------------------------------------------------------------------------
# Roots and symmetry
# ----------------------------------------------------------------------------------------------


def unit_descriptors(data: TwoLayerData) -> list[tuple]:
    """(orientation, gap, sign column) of a layer-1 unit, in a fixed order."""
    m2 = data.widths[1]
    columns = list(itertools.product((1.0, -1.0), repeat=m2))
    return [(s, g, col) for g in range(data.n_positions - 1) for s in (1, -1) for col in columns]


def canonical_root(desc: tuple, descriptors: list, index: dict, signs: np.ndarray) -> bool:
    """Whether the sorted multiset ``desc`` is the smallest of its orbit under permutations of
    layer-2 units of equal output sign (which permute every sign column)."""
    own = tuple(sorted(desc))
    groups = [np.flatnonzero(signs == s) for s in (1.0, -1.0)]
    m2 = len(signs)
    for perm in itertools.product(*[itertools.permutations(g) for g in groups]):
        order = np.empty(m2, dtype=int)
        for g, p in zip(groups, perm):
            order[g] = p
        key = tuple(sorted(index[(descriptors[d][0], descriptors[d][1], tuple(np.array(descriptors[d][2])[order]))]
                           for d in desc))
        if key < own:
            return False
    return True


def root_nodes(data: TwoLayerData, counter, *, symmetry: bool = True) -> list[DeepNode]:
    m1, m2 = data.widths
    descriptors = unit_descriptors(data)
    index = {d: i for i, d in enumerate(descriptors)}
    combos = (itertools.combinations_with_replacement(range(len(descriptors)), m1) if symmetry
              else itertools.product(range(len(descriptors)), repeat=m1))
    combos = list(combos)
    out = []
    for n_positive in range(m2, -1, -1):
        signs = np.where(np.arange(m2) < n_positive, 1.0, -1.0)
        for desc in combos:
            if symmetry and not canonical_root(desc, descriptors, index, signs):
                continue
            units = [descriptors[d] for d in desc]
            node = DeepNode(
                bound=0.0, tiebreak=next(counter),
                orientations=tuple(u[0] for u in units), gaps=tuple(u[1] for u in units),
                sig=np.array([u[2] for u in units], dtype=float).T.reshape(m2, m1),
                L=np.array([data.positions[u[1]] for u in units]),
                U=np.array([data.positions[u[1] + 1] for u in units]),
                mlo=np.zeros((m2, m1)), mhi=np.ones((m2, m1)),
                P=np.full((data.n_positions, m2), UNDECIDED, dtype=np.int8), signs=signs,
            )
            P = propagate(data, node, node.P)
            if P is not None:
                node.P = P
                out.append(node)
    return out


def lex_ordered(node: DeepNode, P: np.ndarray) -> bool:
    """Layer-2 units of equal output sign and equal sign rows: pattern columns non-increasing
    at the first decided difference (swapping such units maps the node's space onto itself).
    `pattern_bnb.lex_ordered` compares neighbours with equal keys; the key here is the pair."""
    rows = [(float(s), tuple(r)) for s, r in zip(node.signs, node.sig)]
    keys = np.array([rows.index(r) for r in rows], dtype=float)
    return pattern_lex_ordered(P, keys)


def knots_ordered(node: DeepNode) -> bool:
    """Layer-1 units with equal descriptors keep t_j <= t_{j+1}: false when the intervals forbid it."""
    for j in range(len(node.gaps) - 1):
        same = (node.orientations[j], node.gaps[j]) == (node.orientations[j + 1], node.gaps[j + 1]) \
            and np.all(node.sig[:, j] == node.sig[:, j + 1])
        if same and node.L[j] > node.U[j + 1]:
            return False
    return True


# ----------------------------------------------------------------------------------------------
# Propagation: what convexity forces on a layer-2 pattern
# ----------------------------------------------------------------------------------------------


def propagate(data: TwoLayerData, node: DeepNode, P: np.ndarray) -> np.ndarray | None:
    """Complete what the kink signs force; None when no network realises the pattern.

    On a run of positions where z_k is convex, {z_k <= 0} is an interval: bottom positions fill
    the span between them, and a top position left (right) of a bottom one makes every position
    further left (right) top.  Where z_k is concave the same holds with top and bottom swapped.
    Between two knots z_k is affine, both rules apply: the 1-D threshold rule.
    (Plain lists: the columns are a few positions long, where numpy's per-call cost dominated.)"""
    if not np.any(P != UNDECIDED):  # nothing decided (a root): nothing to force
        return P
    runs = node_runs(data, node)
    cols = P.T.tolist()
    for _ in range(2 * data.n_positions + 2):
        changed = False
        for col, unit_runs in zip(cols, runs):
            for inner, run in unit_runs:
                values = [col[i] for i in run]
                new = _interval_rule(values, inner)
                if new is None:
                    return None
                if new != values:
                    for i, v in zip(run, new):
                        col[i] = v
                    changed = True
        if not changed:
            break
    return np.array(cols, dtype=np.int8).T.copy()


def node_runs(data: TwoLayerData, node: DeepNode) -> list[list[tuple[int, list[int]]]]:
    """Per layer-2 unit, (inner piece, positions) of every maximal convex run (inner 0: bottom)
    and concave run (inner 1: top); computed once per node (its children share its kinks)."""
    if node.runs is None:
        convex, concave = rx.kink_runs(data, node)
        G = data.n_positions
        node.runs = [[(inner, run.tolist()) for inner, ok in ((0, convex[k]), (1, concave[k]))
                      for run in _runs(ok, G) if run.size > 1] for k in range(convex.shape[0])]
    return node.runs


def _runs(ok: np.ndarray, G: int) -> list[np.ndarray]:
    """Maximal runs of positions joined by gaps where ``ok`` holds."""
    runs, start = [], 0
    for g in range(G):
        if g == G - 1 or not ok[g]:
            runs.append(np.arange(start, g + 1))
            start = g + 1
    return runs


def _interval_rule(col: list[int], inner: int) -> list[int] | None:
    """``inner`` positions form an interval, the others a prefix and a suffix."""
    outer = 1 - inner
    at = [i for i, v in enumerate(col) if v == inner]
    if not at:
        return col
    lo, hi = at[0], at[-1]
    if outer in col[lo:hi + 1]:
        return None
    col = col[:lo] + [inner] * (hi + 1 - lo) + col[hi + 1:]
    left = [i for i in range(lo) if col[i] == outer]
    if left:
        col[:left[-1]] = [outer] * left[-1]
    right = [i for i in range(hi + 1, len(col)) if col[i] == outer]
    if right:
        col[right[0] + 1:] = [outer] * (len(col) - right[0] - 1)
    return col


# ----------------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------------


@dataclass
class _Evaluated:
    bound: float
    z: np.ndarray | None
    qp: rx.NodeQP


def search(spec: InstanceSpec, data: TwoLayerData, incumbent: DeepIncumbent, *, deadline: float, abs_tol: float,
           say, stats: SearchStats, options: DeepOptions, one_hidden=None,
           heuristics: FirstIncumbents | None = None) -> tuple[float, bool]:
    """Best-first search; improves ``incumbent`` in place.  Returns (lower bound, complete).

    The lower bound is the least bound of the open nodes (capped by the final cutoff: every
    pruned node's bound reached the cutoff in force then).  Ctrl-C ends the search with the node
    in hand put back, so the bound stays valid; so does a resident size above [solve] memory_limit
    (looked at every MEMORY_CHECK_EVERY nodes: no estimate before the search, the tree's size is
    not known in advance)."""
    started = time.perf_counter()
    counter = itertools.count()
    heap = root_nodes(data, counter, symmetry=options.symmetry)
    stats.roots = len(heap)
    heapq.heapify(heap)
    say(f"two-layer search: {len(heap)} root nodes")
    last = started
    memory_cap = memory.limit_bytes(spec)
    popped = 0

    def cutoff() -> float:
        return incumbent.risk - tolerance(incumbent.risk, spec, abs_tol) / 2

    while heap and heap[0].bound < cutoff() and time.perf_counter() < deadline:
        if interrupt.requested():  # Ctrl-C inside interrupt.polling() (certify, solve): stop, bound intact
            stats.interrupted = True
            break
        # the open nodes (and the frames they share) grow with the tree: past the limit stop as at a time limit
        popped += 1
        if popped % MEMORY_CHECK_EVERY == 0 and (held := memory.resident_bytes()) > memory_cap:
            stats.memory_held = held
            break
        node = heapq.heappop(heap)
        try:
            for child in expand(spec, data, node, incumbent, counter, cutoff, stats, options, one_hidden):
                heapq.heappush(heap, child)
        except KeyboardInterrupt:
            heapq.heappush(heap, node)
            stats.interrupted = True
            break
        if heuristics is not None and heuristics.due(time.perf_counter() - started):
            heuristics.run(incumbent)
        if time.perf_counter() - last > REPORT_SECONDS:
            last = time.perf_counter()
            say(f"{stats.nodes} nodes, bound {heap[0].bound if heap else cutoff():.8g}, best {incumbent.risk:.8g}, "
                f"{len(heap)} open, {last - started:.1f} s")
    final = cutoff()
    open_bound = min((n.bound for n in heap if n.bound < final), default=np.inf)
    lower = max(0.0, min(open_bound, final))
    return lower, not np.isfinite(open_bound)


def expand(spec, data: TwoLayerData, node: DeepNode, incumbent: DeepIncumbent, counter, cutoff, stats: SearchStats,
           options: DeepOptions, one_hidden=None) -> list[DeepNode]:
    """Evaluate one node and return its children (none when it is pruned or solved)."""
    if options.symmetry and not knots_ordered(node):
        return []
    stats.nodes += 1
    ev = evaluate(data, node, stats, conic=options.conic, secant=options.secant)
    if ev.bound >= cutoff():
        return []
    net, excess, violation = read_point(data, node, ev)
    offer(spec, data, net, node, incumbent, stats, options, one_hidden)
    if ev.bound >= cutoff():
        return []
    undecided = node.P == UNDECIDED
    if ev.z is None and undecided.any():  # no usable QP answer: keep splitting, the bound stays valid
        return split_pattern(data, node, undecided.astype(float), ev.bound, counter, stats)
    if excess.max(initial=0.0) > 0.0:
        return split_pattern(data, node, excess, ev.bound, counter, stats)
    if violation.max(initial=0.0) > 0.0 or ev.z is None:
        return split_interval(data, node, violation, ev.bound, counter, stats, shares=options.conic)
    if undecided.any():  # numerically no excess, but the pattern is still open
        return split_pattern(data, node, undecided.astype(float), ev.bound, counter, stats)
    # the relaxation's point is a network of the node (offered above when in the box): when it is,
    # its risk closes the node up to the solver's accuracy; otherwise keep splitting
    stats.leaves += 1
    if net.in_box(data) and net.risk(data) <= ev.bound + tolerance(incumbent.risk, spec, 0.0) / 2:
        return []
    return split_interval(data, node, np.ones_like(node.mlo), ev.bound, counter, stats, shares=options.conic)


def evaluate(data: TwoLayerData, node: DeepNode, stats: SearchStats, *, conic: bool = True,
             secant: bool = True) -> _Evaluated:
    qp = rx.node_qp(data, node, conic=conic, secant=secant)
    solved = rx.solve_qp(data, qp)
    if solved is None:
        stats.solver_failures += 1
        return _Evaluated(bound=node.bound, z=None, qp=qp)
    z, lam, slopes = solved
    return _Evaluated(bound=max(node.bound, rx.bound(data, qp, z, lam, slopes)), z=z, qp=qp)


def read_point(data: TwoLayerData, node: DeepNode, ev: _Evaluated):
    """The relaxation's point as a network (knots t_j = L_j + E_j / a_j), the excess h - relu(z) of
    every undecided pair and the McCormick violation |W_kj - M_kj v_j| of every weight."""
    m1, m2 = data.widths
    G = data.n_positions
    excess = np.zeros((G, m2))
    violation = np.zeros((m2, m1))
    if ev.z is None:
        return None, excess, np.ones((m2, m1))
    z = ev.z
    cols = rx.Columns.of(m1, m2)
    M = np.maximum(z[cols.M], 0.0)
    W = np.maximum(z[cols.W], 0.0)
    a = M.sum(axis=0)
    D = node.U - node.L
    v = np.where(a > 1e-300, np.clip(W.sum(axis=0) / np.maximum(a, 1e-300), 0.0, D), 0.5 * D)
    scale = max(1.0, float(np.abs(z[1:cols.p0]).max(initial=0.0)))
    violation = np.abs(W - M * v[None, :])
    violation[violation <= EXCESS_TOL * scale * np.maximum(D, 1e-300)[None, :]] = 0.0
    fi, fk = ev.qp.free
    if fi.size:
        zval = np.einsum("pkN,N->pk", ev.qp.Z, z)
        gap = z[ev.qp.p0 + np.arange(fi.size)] - np.maximum(zval[fi, fk], 0.0)
        excess[fi, fk] = np.where(gap > EXCESS_TOL * scale, gap, 0.0)
    c = float(z[0]) if data.output_bias else 0.0
    net = CanonicalNet(orientations=np.array(node.orientations, dtype=float), t=node.L + v,
                       A=node.sig * M, b=z[cols.b].copy(), signs=node.signs.copy(), c=c)
    return net, excess, violation


def offer(spec, data: TwoLayerData, net: CanonicalNet | None, node: DeepNode, incumbent: DeepIncumbent,
          stats: SearchStats, options: DeepOptions, one_hidden=None) -> None:
    """The relaxation's network as an incumbent; promising ones polished in their layer-2 cell at
    their knots, and a new best point once more by the exact layer 2 for its knots."""
    if net is None or not net.in_box(data):
        return
    risk = net.risk(data)
    improved = risk < incumbent.risk
    if improved:
        incumbent.update(net, risk, "relaxation")
    if not options.polish or risk > POLISH_FACTOR * incumbent.risk:
        return
    # polishing finds better points early but costs a cell solve: it keeps to its share of the time
    # (profile of a 1-3-2-1 search: a quarter of the time went to polishing points that did not improve)
    if not improved and stats.polish_seconds > POLISH_SHARE * (time.perf_counter() - stats.started):
        return
    stats.polished += 1
    began = time.perf_counter()
    # the exact layer 2 (a MILP per call, 0.1-0.3 s on four samples) only once the search runs long: on the
    # deep-scip suite the cell polish alone found the same minima in the same number of nodes
    exact = one_hidden if began - stats.started >= heuristics_delay(spec, options) else None
    try:
        polish(spec, data, net, incumbent, exact)
    finally:
        stats.polish_seconds += time.perf_counter() - began


def polish(spec, data: TwoLayerData, net: CanonicalNet, incumbent: DeepIncumbent, one_hidden=None) -> None:
    """``net``'s own layer-2 cell at its knots; when that beats the incumbent, the exact layer 2 too."""
    better = best_at_knots(spec, data, net)
    if better is None or better[1] >= incumbent.risk:
        return
    incumbent.update(better[0], better[1], "relaxation, polished in its cell at its knots")
    if one_hidden is not None:
        best = knots_global(spec, data, better[0].orientations, better[0].t, one_hidden=one_hidden,
                            time_limit=KNOTS_SECONDS)
        if best is not None and best[1] < incumbent.risk:
            incumbent.update(best[0], best[1], "relaxation, exact layer 2 at its knots")


def split_pattern(data: TwoLayerData, node: DeepNode, excess: np.ndarray, bound: float, counter,
                  stats: SearchStats) -> list[DeepNode]:
    """Branch on the undecided pair of largest excess, in the unit of largest total excess."""
    stats.pattern_splits += 1
    undecided = node.P == UNDECIDED
    weight = np.where(undecided, excess, -1.0)
    k = int(np.argmax(np.where(undecided, excess, 0.0).sum(axis=0)))
    if not undecided[:, k].any():
        k = int(np.argmax(undecided.sum(axis=0)))
    p = int(np.argmax(weight[:, k]))
    out = []
    for piece in (0, 1):
        P = node.P.copy()
        P[p, k] = piece
        P = propagate(data, node, P)
        if P is None or not lex_ordered(node, P):
            continue
        out.append(_child(node, bound, counter, P=P))
    return out


def split_interval(data: TwoLayerData, node: DeepNode, violation: np.ndarray, bound: float, counter,
                   stats: SearchStats, *, shares: bool = True) -> list[DeepNode]:
    """Halve the knot interval or the share interval behind the largest McCormick violation,
    whichever is wider relative to its full range (the envelope's error is their product)."""
    k, j = np.unravel_index(int(np.argmax(violation)), violation.shape)
    g = node.gaps[j]
    knot_width = (node.U[j] - node.L[j]) / (data.positions[g + 1] - data.positions[g])
    share_width = node.mhi[k, j] - node.mlo[k, j] if shares and data.widths[1] > 1 else 0.0
    if knot_width >= share_width:
        stats.knot_splits += 1
        mid = 0.5 * (node.L[j] + node.U[j])
        out = []
        for lo, hi in ((node.L[j], mid), (mid, node.U[j])):
            L, U = node.L.copy(), node.U.copy()
            L[j], U[j] = lo, hi
            out.append(_child(node, bound, counter, L=L, U=U))
        return out
    stats.share_splits += 1
    mid = 0.5 * (node.mlo[k, j] + node.mhi[k, j])
    out = []
    for lo, hi in ((node.mlo[k, j], mid), (mid, node.mhi[k, j])):
        mlo, mhi = node.mlo.copy(), node.mhi.copy()
        mlo[k, j], mhi[k, j] = lo, hi
        if data.widths[1] == 2:  # the other share is the complement
            mlo[1 - k, j], mhi[1 - k, j] = 1.0 - hi, 1.0 - lo
        out.append(_child(node, bound, counter, mlo=mlo, mhi=mhi))
    return out


def _child(node: DeepNode, bound: float, counter, **changes) -> DeepNode:
    fields = dict(bound=bound, tiebreak=-next(counter), orientations=node.orientations, gaps=node.gaps,
                  sig=node.sig, L=node.L, U=node.U, mlo=node.mlo, mhi=node.mhi, P=node.P, signs=node.signs,
                  runs=node.runs, frame=node.frame if set(changes) <= {"P"} else None)
    fields.update(changes)
    return DeepNode(**fields)
