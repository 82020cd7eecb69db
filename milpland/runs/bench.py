"""Benchmarks: milpland's certified global solve against baselines, in the same run.

`run_bench(targets, methods=...)` runs every instance of a suite with every method
and returns one row per (instance, method).  Methods:

- ``milp``, ``bnb``: `solve_global` with ``[solve] method`` set to that search (certified global
  minimum over the box; the sign-class MILPs or the pattern branch-and-bound).  ``bnb`` is
  skipped where it does not apply (not squared loss, not a homogeneous two-piece activation).
- ``enumerate``: brute-force enumeration of every realizable cell (modulo unit
  permutations), each cell's convex problem solved; skipped above a cell limit.
- ``gd``: seeded multistart gradient descent; time, best risk, and the fraction of
  starts that reach the certified global minimum (within 1e-6 relative).
- ``landscape-enumerate``, ``landscape-milp``, ``landscape-sample``: the local-minimum
  methods (`milpland.landscape.listing`), timed, with the number of minima and of interior risk
  levels; milp's levels and sample's minima are checked against the enumeration's.
  ``landscape-bnb`` and ``landscape-band`` list the band up to (1 + --band) x the global risk, by
  bnb and by auto in two threads or processes (the enumeration of every cell, certifying only the
  band, where the cells fit under --max-cells; else bnb); ``landscape-gap``: bnb --levels 2.
- ``scip``: SCIP (pyscipopt) on the same per-sign-class model, the squared loss as a
  quadratic epigraph (an MIQP; the same MILP for absolute and hinge), with
  ``numerics/feastol = 1e-9`` (DESIGN §4).  Only when pyscipopt is installed.
- ``convex``: the Pilanci–Ergen convex program over sampled activation patterns
  (`milpland.runs.convex_baseline`, Clarabel); its network's weight-decay objective by numpy,
  compared with the certified minimum of the same run.

`write_report` writes ``bench-<name>.csv``, ``bench-<name>.md`` (table, machine,
headline ratios) and ``bench-<name>.png`` (time against n) to the output folder.
"""

from __future__ import annotations

import math
import multiprocessing
import platform
import signal
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

import milpland.interrupt as interrupt
from milpland.errors import MilplandError
from milpland.instance.spec import InstanceSpec
from milpland.landscape.collect import distinct_levels
from milpland.landscape.listing import default_max_cells

GLOBAL_TOL = 1e-6


def run_solve(method: str) -> Callable[[InstanceSpec, dict], dict]:
    """`solve_global` with the given search; the first certified risk becomes the reference of the
    baselines (`gd`'s fraction of starts that reach it).  ``deep``: the two-layer search (DESIGN §6a)."""

    def run(spec: InstanceSpec, ctx: dict) -> dict:
        from milpland.search.solve import solve_global

        if (spec.network.depth == 2) != (method == "deep"):
            raise MilplandError("two hidden layers: use --methods deep" if method != "deep"
                                else "deep: needs two hidden layers")
        # weight decay: only the every-cell SOCP solve honours it (DESIGN §4d); bnb runs it, column `search`
        decayed_bnb = spec.loss.decayed and method == "bnb"
        result = solve_global(spec if method == "deep" or decayed_bnb else spec.with_options(method=method))
        if result.status == "optimal" and not np.isfinite(ctx.get("global_risk", np.nan)):
            ctx["global_risk"] = result.risk
        return {
            "status": result.status, "certified": result.certified, "risk": result.risk,
            "lower_bound": result.lower_bound, "gap": result.gap, "box_active": result.box_active,
            "seconds_build": result.seconds.build, "seconds_solve": result.seconds.solve,
            "seconds": result.seconds.total, "nodes": result.nodes, "rounds": result.iterations,
            "verified": bool(result.verification and result.verification.ok), "search": result.method,
        }

    return run


def run_enumerate(spec: InstanceSpec, ctx: dict) -> dict:
    """Brute force: every realizable cell (modulo unit permutations) solved; the smallest optimum."""
    from milpland.cells.problem import CellSolver
    from milpland.landscape.enumeration import (
        count_cells,
        generate_cells,
        patterns_for_cells,
        unit_patterns,
    )

    started = time.perf_counter()
    act = spec.network.activation
    # the pattern search stops as soon as there are too many (listing all took 200 s at d = 6, n = 20)
    too_many = patterns_for_cells(ctx["max_cells"], spec.width, act)
    patterns = unit_patterns(spec.X, act, limit=too_many)
    total = count_cells(patterns.shape[0], spec.width, act)
    if total > ctx["max_cells"]:
        return {"status": "skipped", "seconds": time.perf_counter() - started,
                "message": f"at least {patterns.shape[0]} unit patterns{_cover_note(spec)}: more than "
                           f"--max-cells {ctx['max_cells']} cells"}
    solver = CellSolver(spec.X, spec.y, act, spec.loss, spec.box, output_bias=spec.network.output_bias)
    deadline = started + spec.solve.time_limit
    best, solved, failed = np.inf, 0, 0
    cells = generate_cells(patterns, spec.width, act)
    while time.perf_counter() < deadline:
        chunk = [cell for _, cell in zip(range(200), cells)]
        if not chunk:
            break
        results = solver.solve_many(chunk)
        best = min([best] + [r.risk for r in results if r.status == "optimal"])
        failed += sum(r.status != "optimal" for r in results)
        solved += len(chunk)
    # the minimum over all cells is the global minimum only if every cell was solved and verified
    complete = solved == total and failed == 0
    status = "optimal" if complete else ("error" if solved == total else "time_limit")
    return {"status": status, "certified": complete, "risk": best,
            "lower_bound": best if complete else np.nan, "seconds": time.perf_counter() - started,
            "cells": total, "cells_solved": solved, "cells_failed": failed,
            "cells_per_second": solved / max(time.perf_counter() - started, 1e-9)}


def _cover_note(spec: InstanceSpec) -> str:
    """Cover's count of a two-piece unit's patterns for inputs in general position (an aside in
    the message: it is exact only in general position)."""
    from milpland.landscape.enumeration import count_cells

    if spec.network.activation.n_pieces != 2:
        return ""
    P = 2 * sum(math.comb(spec.n - 1, k) for k in range(spec.d + 1))
    return f" (in general position {P}, {count_cells(P, spec.width, spec.network.activation)} cells)"


def run_gd(spec: InstanceSpec, ctx: dict) -> dict:
    """Seeded multistart gradient descent (vectorised over the starts), as a landscape user would run it."""
    from milpland.landscape.sampling import descend

    started = time.perf_counter()
    run = descend(spec, starts=ctx["starts"], seed=spec.solve.seed)
    seconds = time.perf_counter() - started
    target = ctx.get("global_risk", np.nan)
    reached = np.nan
    if np.isfinite(target):
        reached = float(np.mean(run.risk <= target + GLOBAL_TOL * max(abs(target), 1e-12)))
    status = "interrupted" if len(run.risk) < ctx["starts"] else "heuristic"  # Ctrl-C between chunks
    return {"status": status, "certified": False, "risk": float(np.min(run.risk, initial=np.inf)),
            "seconds": seconds, "starts": len(run.risk), "fraction_global": reached}


def run_scip(spec: InstanceSpec, ctx: dict) -> dict:
    """`scip_in_process` in a child process: a crash inside SCIP (measured twice at the end of a
    solve: "munmap_chunk(): invalid pointer", which killed the whole benchmark) becomes an error
    row."""
    return run_in_child(scip_in_process, (spec, ctx), limit=spec.solve.time_limit + 600)


def run_in_child(function, args: tuple, *, limit: float):
    """function(*args) in a spawned process.  Its MilplandError and other exceptions come back as
    such; a child that dies (a native crash) or runs past `limit` seconds raises RuntimeError.
    A result sent before the child dies is kept.  Ctrl-C stops the child at once.

    The result comes back through a pipe, not a multiprocessing.Queue: a Queue's semaphores are
    registered with the resource tracker, and a child stopped while using them left "leaked
    semaphore objects" warnings at exit."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(function, args, send), daemon=True)
    child.start()
    send.close()  # the child holds the other end: when it dies, the pipe reports EOF
    give_up = time.perf_counter() + limit
    try:
        kind, value = _receive(receive, child, limit, give_up)
    except KeyboardInterrupt:  # Ctrl-C: the child ignores it (see _child); stop it now, not after its limit
        child.terminate()
        raise
    finally:
        child.join(timeout=5)
        if child.is_alive():
            child.terminate()
            child.join(timeout=5)
        receive.close()
    if kind == "skipped":
        raise MilplandError(value)
    if kind == "error":
        raise RuntimeError(value)
    return value


def _receive(receive, child, limit: float, give_up: float):
    while True:
        if receive.poll(0.2):
            try:
                return receive.recv()
            except EOFError:
                child.join(timeout=5)
                raise RuntimeError(f"the child process died (exit code {child.exitcode})") from None
        if not child.is_alive() and not receive.poll(0):
            raise RuntimeError(f"the child process died (exit code {child.exitcode})")
        if time.perf_counter() > give_up:
            raise RuntimeError(f"no result within {limit:.0f} s")


def _child(function, args: tuple, send) -> None:
    from milpland.runs.batch import release_pyomo_lock

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    release_pyomo_lock()  # a child terminated by Ctrl-C leaves no semaphore behind
    try:
        send.send(("ok", function(*args)))
    except MilplandError as exc:
        send.send(("skipped", str(exc)))
    except Exception as exc:  # reported by the parent as an error row
        send.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        send.close()


def scip_in_process(spec: InstanceSpec, ctx: dict) -> dict:
    """The same sign-class models solved by SCIP directly (an MIQP for squared loss).

    Each class's Pyomo model is compiled to the arrays that HiGHS receives and handed to
    pyscipopt row by row; for squared loss the tangent epigraph is replaced by
    z >= w sum_i (f_i - y_i)^2.  (Pyomo's scip_direct interface hung on these models, and
    SCIP's LP reader rejects Pyomo's quadratic objective syntax.)
    """
    try:
        import pyscipopt
    except ImportError:
        raise MilplandError("SCIP is not installed: pip install 'milpland[scip]'") from None
    from milpland.cells.scaled import sign_class
    from milpland.search.formulation import FormulationOptions, build_master
    from milpland.search.highs_backend import compile_model
    from milpland.search.solve import sign_class_order

    started = time.perf_counter()
    best, bound, complete, nodes = np.inf, np.inf, True, 0
    for n_positive in sign_class_order(spec):
        remaining = spec.solve.time_limit - (time.perf_counter() - started)
        if remaining <= 0:
            complete, bound = False, 0.0
            break
        model = build_master(spec, sign_class(n_positive, spec.width), FormulationOptions())
        scip = scip_model(pyscipopt, spec, model, compile_model(model))
        scip.setParam("limits/time", remaining)
        scip.setParam("limits/gap", spec.solve.rel_gap / 4)
        scip.setParam("numerics/feastol", 1e-9)  # DESIGN §4: bounds too low at the default
        scip.setParam("randomization/randomseedshift", int(spec.solve.seed))
        scip.optimize()
        complete &= scip.getStatus() in ("optimal", "gaplimit")
        if scip.getNSols():
            best = min(best, float(scip.getObjVal()))
        bound = min(bound, max(float(scip.getDualbound()), 0.0))
        nodes += int(scip.getNNodes())
    return {"status": "optimal" if complete else "time_limit", "certified": False, "risk": best,
            "lower_bound": bound, "gap": (best - bound) / max(abs(best), 1e-12) if np.isfinite(best) else np.nan,
            "seconds": time.perf_counter() - started, "nodes": nodes,
            "solver_version": pyscipopt.Model().version()}


def scip_model(pyscipopt, spec: InstanceSpec, model, compiled):
    """A pyscipopt model of the compiled arrays; squared loss as a quadratic epigraph."""
    scip = pyscipopt.Model()
    scip.hideOutput(True)
    x = [scip.addVar(lb=None if not np.isfinite(lo) else float(lo), ub=None if not np.isfinite(hi) else float(hi),
                     vtype="I" if integer else "C")
         for lo, hi, integer in zip(compiled.col_lower, compiled.col_upper, compiled.integer)]
    A = compiled.A.tocsr()
    for r in range(A.shape[0]):
        lo, hi = compiled.row_lower[r], compiled.row_upper[r]
        expr = pyscipopt.quicksum(float(v) * x[j] for j, v in zip(A.indices[A.indptr[r]:A.indptr[r + 1]],
                                                                  A.data[A.indptr[r]:A.indptr[r + 1]]))
        if np.isfinite(lo) and np.isfinite(hi) and lo == hi:
            scip.addCons(expr == float(lo))
        else:
            if np.isfinite(lo):
                scip.addCons(expr >= float(lo))
            if np.isfinite(hi):
                scip.addCons(expr <= float(hi))
    if spec.loss.kind == "squared":
        z = scip.addVar(lb=0.0, vtype="C")
        f = [x[compiled.column(model.f[i])] for i in model.I]
        weight = float(spec.loss.weight(spec.n))
        scip.addCons(z >= weight * pyscipopt.quicksum((f[i] - float(spec.y[i])) ** 2 for i in range(spec.n)))
        scip.setObjective(z, "minimize")
    else:
        scip.setObjective(pyscipopt.quicksum(float(c) * x[j] for j, c in enumerate(compiled.cost) if c != 0.0)
                          + compiled.offset, "minimize")
    return scip


def run_scip_deep(spec: InstanceSpec, ctx: dict) -> dict:
    """SCIP on the two-layer MINLP (`milpland.search.deep_minlp`), in a child process."""
    return run_in_child(scip_deep_in_process, (spec, ctx), limit=spec.solve.time_limit + 600)


def scip_deep_in_process(spec: InstanceSpec, ctx: dict) -> dict:
    from milpland.search.deep_minlp import solve_minlp

    out = solve_minlp(spec)
    risk, bound = out.risk, out.lower_bound
    return {"status": out.status, "certified": out.certified, "box_active": out.box_active, "risk": risk,
            "lower_bound": bound, "gap": (risk - bound) / max(abs(risk), 1e-12) if np.isfinite(risk) else np.nan,
            "seconds": out.seconds, "nodes": out.nodes, "solver_version": out.version}


def run_convex(spec: InstanceSpec, ctx: dict) -> dict:
    """The convex-training baseline (`milpland.runs.convex_baseline.bench_row`)."""
    from milpland.runs.convex_baseline import bench_row

    return bench_row(spec, ctx)


def run_landscape(method: str, *, jobs: int = 1, **query) -> Callable[[InstanceSpec, dict], dict]:
    """A landscape method, timed, with its list checked against the enumeration's in the same run:
    milp must find the enumeration's interior risk levels, sample only minima enumeration has, bnb
    exactly the enumeration's minima up to its threshold.  ``query``: the bnb listing's (its
    ``gap_rel`` is the bench's --band when not given; so is auto's, which enumerates the band where
    the cells fit under --max-cells, else lists it by bnb)."""

    def run(spec: InstanceSpec, ctx: dict) -> dict:
        from milpland.landscape.listing import landscape

        started = time.perf_counter()
        asked = query or ({"gap_rel": ctx["band"]} if method in ("bnb", "auto") else {})
        # without --max-cells, landscape's own default (higher for a fixed threshold: only the band is certified)
        result = landscape(spec, method=method, max_cells=ctx.get("max_cells_option"), starts=ctx["starts"], jobs=jobs,
                           **asked)
        seconds = time.perf_counter() - started
        tol = 1e-6 * max(1.0, abs(result.global_risk))
        levels = distinct_levels([m.risk for m in result.minima if m.certificate == "interior"], tol)
        headline = result.spurious_gap()
        row = {"status": "optimal" if result.complete else "incomplete", "certified": bool(result.complete),
               "risk": result.global_risk, "seconds": seconds, "local_minima": len(result.minima),
               "spurious": sum(m.spurious for m in result.minima), "interior_levels": len(levels),
               "spurious_gap": np.nan if headline["gap"] is None else headline["gap"],
               "spurious_gap_proven": headline["proven"]}
        if result.query:
            row.update(query=result.query, threshold=result.threshold, proven_below=result.proven_below,
                       nodes=result.counts.get("nodes", 0), leaves=result.counts.get("leaves", 0),
                       global_certified=bool(result.global_result.certified), listed_by=result.method, jobs=jobs)
        if method == "enumerate":
            ctx["enumerated"] = (result.complete, levels, np.array([m.fitted for m in result.minima]))
            ctx["enumerated_minima"] = result.minima
            cells, cell_seconds = result.counts.get("cells", 0), result.timings.get("cells", np.nan)
            row.update(cells=cells, cells_per_second=cells / cell_seconds if cell_seconds else np.nan)
        elif ctx.get("enumerated") and ctx["enumerated"][0]:
            _, reference, fits = ctx["enumerated"]
            if result.query:
                row["matches_enumerate"] = same_minima_below(result, ctx["enumerated_minima"], spec)
            elif method == "milp":
                row["matches_enumerate"] = len(levels) == len(reference) and bool(
                    np.allclose(levels, reference, rtol=0, atol=tol))
            else:
                scale = 1e-6 * (1.0 + np.abs(spec.y).max())
                row["matches_enumerate"] = all(
                    len(fits) and np.min(np.abs(fits - m.fitted).max(axis=1)) <= scale for m in result.minima)
        return row

    return run


def same_minima_below(result, enumerated: list, spec: InstanceSpec) -> bool:
    """The listing holds exactly the enumeration's minima with risk up to what it proves: the same
    fitted values (squared loss) or the same risk levels (absolute and hinge: faces)."""
    limit = result.proven_below + result.tolerance
    expected = [m for m in enumerated if m.risk <= limit]
    listed = [m for m in result.minima if m.risk <= limit]
    if spec.loss.kind != "squared":
        tol = 1e-9 * max(1.0, abs(result.global_risk))
        a, b = distinct_levels([m.risk for m in listed], tol), distinct_levels([m.risk for m in expected], tol)
        return len(a) == len(b) and bool(np.allclose(a, b, rtol=0, atol=10 * tol))
    scale = 1e-6 * (1.0 + np.abs(spec.y).max())
    return len(listed) == len(expected) and all(
        min(np.abs(m.fitted - e.fitted).max() for m in listed) <= scale for e in expected)


METHODS: dict[str, Callable[[InstanceSpec, dict], dict]] = {
    "milp": run_solve("milp"), "bnb": run_solve("bnb"), "enumerate": run_enumerate, "gd": run_gd,
    "scip": run_scip, "deep": run_solve("deep"), "scip-deep": run_scip_deep,
    "landscape-enumerate": run_landscape("enumerate"), "landscape-milp": run_landscape("milp"),
    "landscape-sample": run_landscape("sample"), "landscape-bnb": run_landscape("bnb"),
    "landscape-gap": run_landscape("bnb", levels=2), "landscape-band": run_landscape("auto", jobs=2),
    "convex": run_convex,
}


DECAY_UNAWARE = ("enumerate", "gd", "scip", "scip-deep")  # risk-only baselines: skipped with weight decay
LOGISTIC_UNAWARE = ("enumerate", "gd", "scip", "scip-deep")  # baselines without the logistic loss: skipped


def run_bench(targets: list[str], *, methods: list[str], time_limit: float | None = None,
              max_cells: int | None = None, starts: int = 200, band: float = 0.5, gates: int = 250,
              progress: Callable[[str], None] | None = None,
              on_row: Callable[[pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """One row per (instance, method); a method that fails records its error and the run goes on.
    on_row gets the table so far after every row (the command saves it: an interruption loses
    nothing).  Ctrl-C (`milpland.interrupt`) ends the run: the method running then gets a row with
    status ``interrupted`` (the solves report their best point and bound so far) and the table so
    far is returned, with ``attrs["interrupted"]`` set."""
    from milpland.runs.suites import resolve

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise MilplandError(f"unknown method(s) {unknown}; use some of {', '.join(METHODS)}")
    check_bench_options(time_limit=time_limit, max_cells=max_cells, starts=starts, gates=gates)
    say = progress or (lambda _m: None)
    rows: list[dict] = []
    instances = resolve(targets)
    try:
        for position, inst in enumerate(instances, 1):
            if inst.spec is None:
                rows.append({"instance": inst.name, "group": inst.group, "method": "-", "status": "error",
                             "message": inst.error})
                continue
            spec = inst.spec if time_limit is None else inst.spec.with_options(time_limit=time_limit)
            ctx = {"max_cells": max_cells or default_max_cells(spec), "max_cells_option": max_cells, "starts": starts,
                   "band": band, "gates": gates}
            for method in milp_first(methods):
                row = run_method(inst, spec, method, ctx)
                rows.append(row)
                if on_row is not None:
                    on_row(pd.DataFrame(rows))
                say(f"[{position}/{len(instances)}] {inst.name} {method}: {row.get('status')} "
                    f"risk {row.get('risk', float('nan')):.6g} in {row.get('seconds', float('nan')):.2f} s")
                if row.get("status") == "interrupted" or interrupt.requested():
                    return _table(rows, interrupted=True)
    except KeyboardInterrupt:  # between two methods: the rows so far stand
        return _table(rows, interrupted=True)
    return _table(rows, interrupted=False)


def _table(rows: list[dict], *, interrupted: bool) -> pd.DataFrame:
    """The rows as a table; ``attrs["interrupted"]`` says whether Ctrl-C ended the run."""
    table = pd.DataFrame(rows)
    table.attrs["interrupted"] = interrupted
    return table


def run_method(inst, spec: InstanceSpec, method: str, ctx: dict) -> dict:
    """One row: the method's own columns, or its error; Ctrl-C gives status interrupted."""
    row = {"instance": inst.name, "group": inst.group, "method": method, **describe(spec)}
    started = time.perf_counter()
    if spec.loss.decayed and method in DECAY_UNAWARE:
        row.update({"status": "skipped", "message": f"loss.weight_decay: {method} minimises the risk alone"})
        return row
    if spec.loss.kind == "logistic" and method in LOGISTIC_UNAWARE:
        row.update({"status": "skipped", "message": f"loss.kind: {method} does not model the logistic loss"})
        return row
    try:
        row.update(METHODS[method](spec, ctx))
    except KeyboardInterrupt:  # a method that does not poll the stop flag (`milpland.interrupt`)
        row.update({"status": "interrupted", "seconds": time.perf_counter() - started,
                    "message": "interrupted (Ctrl-C)"})
    except MilplandError as exc:
        row.update({"status": "skipped", "message": str(exc)})
    except Exception as exc:  # a baseline failing must not stop the benchmark
        row.update({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
    return row


def check_bench_options(*, time_limit: float | None, max_cells: int | None, starts: int, gates: int = 1) -> None:
    """The options as user errors, before any instance runs."""
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise MilplandError(f"--time-limit: must be a positive finite number of seconds, got {time_limit!r}")
    for flag, value in (("--max-cells", max_cells), ("--starts", starts), ("--gates", gates)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise MilplandError(f"--{flag.lstrip('-')}: must be a positive integer, got {value!r}")


def milp_first(methods: list[str]) -> list[str]:
    """milp, bnb and deep run first (the baselines are measured against their certified global risk),
    and the landscape enumeration before the other landscape methods (they are checked against it)."""
    return sorted(methods, key=lambda m: (m not in ("milp", "bnb", "deep"), m != "milp",
                                          m != "landscape-enumerate"))


def describe(spec: InstanceSpec) -> dict:
    return {"n": spec.n, "d": spec.d, "width": spec.width,
            "hidden": "-".join(str(w) for w in spec.network.hidden), "activation": spec.network.activation.name,
            "loss": spec.loss.kind, "weight_decay": spec.loss.weight_decay,
            "time_limit": spec.solve.time_limit, "seed": spec.solve.seed}


def reference_method(table: pd.DataFrame) -> str:
    """The search the ratios compare with: milp, else the two-layer search (deep)."""
    methods = set(table["method"])
    return "deep" if "milp" not in methods and "deep" in methods else "milp"


def headline_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Per baseline: on instances where both it and the reference (`reference_method`) finished,
    time(baseline) / time(reference); ``timeouts`` counts the instances the reference finished and the
    baseline stopped at its time limit, and ``median_ratio_with_timeouts`` counts those at the time the
    baseline was stopped (a lower bound on their ratio, so the median is one too)."""
    finished = table[table["status"] == "optimal"]
    reference = reference_method(table)
    milp = finished[finished["method"] == reference].set_index("instance")["seconds"]
    rows = []
    for method in sorted(set(table["method"]) - {reference, "-"}):
        subset = table[table["method"] == method].set_index("instance")
        done = subset[subset["status"].isin(["optimal", "heuristic"])]["seconds"]
        stopped = subset[subset["status"] == "time_limit"]["seconds"]
        common = milp.index.intersection(done.index)
        late = milp.index.intersection(stopped.index).difference(common)
        if len(common) + len(late) == 0:
            continue
        ratio = done[common] / milp[common]
        with_timeouts = pd.concat([ratio, stopped[late] / milp[late]])
        row = {"baseline": method, "instances": len(common)}
        if len(common):
            row.update(median_ratio=float(np.median(ratio)), geomean_ratio=float(np.exp(np.mean(np.log(ratio)))),
                       min_ratio=float(ratio.min()), max_ratio=float(ratio.max()))
        row.update(timeouts=len(late), median_ratio_with_timeouts=float(np.median(with_timeouts)))
        rows.append(row)
    return pd.DataFrame(rows)


def machine_description() -> str:
    import highspy

    from milpland.runs.batch import machine_info

    info = machine_info()
    return (f"{info.get('cpu_model', platform.processor())}, {info.get('cpu_count')} cores, "
            f"{platform.platform()}, Python {platform.python_version()}, highspy {highspy.Highs().version()}")


REPORT_COLUMNS = {"instance": "", "method": "-", "status": "", "n": np.nan, "loss": "", "seconds": np.nan}


def write_report(table: pd.DataFrame, *, name: str, out_dir: str | Path, command: str, note: str = "",
                 figure: bool = True) -> list[Path]:
    """bench-<name>.csv, .md and (with `figure`) .png in out_dir; `note` (e.g. an interruption) heads the .md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv, md, png = out / f"bench-{name}.csv", out / f"bench-{name}.md", out / f"bench-{name}.png"
    table = table.copy()
    for column, empty in REPORT_COLUMNS.items():  # an empty or all-error table still makes a report
        if column not in table:
            table[column] = empty
    table.to_csv(csv, index=False)
    ratios = headline_ratios(table)
    columns = [c for c in ["instance", "method", "n", "d", "width", "hidden", "loss", "weight_decay", "status", "certified", "risk",
                           "lower_bound", "gap", "seconds_build", "seconds_solve", "seconds", "nodes", "rounds",
                           "cells", "cells_per_second", "fraction_global", "local_minima", "spurious",
                           "interior_levels", "query", "threshold", "proven_below", "leaves", "spurious_gap",
                           "spurious_gap_proven", "matches_enumerate", "box_active", "convex_width", "pruned", "miss",
                           "message"] if c in table.columns]
    lines = [f"# Benchmark `{name}`", "", *([f"**{note}**", ""] if note else []), f"Command: `{command}`", "",
             f"Machine: {machine_description()}",
             f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}", "",
             f"## Headline ratios (time of baseline / time of {reference_method(table)})", "",
             markdown_table(ratios) if len(ratios) else "(no instance finished by both)",
             "", *convex_summary_lines(table), "## All runs", "", markdown_table(table[columns]), ""]
    md.write_text("\n".join(lines))
    if not figure:
        png.unlink(missing_ok=True)  # a figure of an earlier run would not match these tables
        return [csv, md]
    plot_times(table, png)
    return [csv, md, png]


def convex_summary_lines(table: pd.DataFrame) -> list[str]:
    from milpland.runs.convex_baseline import summary_lines

    return summary_lines(table)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table (pandas' to_markdown needs the optional tabulate package)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if np.isnan(value) else f"{value:.4g}"
        return str(value).replace("|", "/")

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


REACHED = ("optimal", "heuristic")
LOSS_MARKERS = {"squared": "o", "absolute": "s", "hinge": "^", "logistic": "D"}


def reached_global(table: pd.DataFrame) -> np.ndarray:
    """Per row: did the method end at the global minimum?  milp, bnb, enumerate and the landscape
    methods when they finished (status optimal) with no box bound active; gd when at least one start reached the certified
    risk (fraction_global > 0); nothing else (time limits, errors, SCIP's unchecked answers count
    only when SCIP itself says optimal)."""
    finished = table["status"].isin(["optimal"]).to_numpy().copy()
    if "box_active" in table:  # a minimum over the box with a box bound active is not the global minimum
        finished &= ~table["box_active"].eq(True).to_numpy()
    if "fraction_global" in table:
        gd = (table["method"] == "gd").to_numpy()
        reached = table["fraction_global"].fillna(0.0).to_numpy(float) > 0
        finished = np.where(gd, reached, finished)
    if "reached_global" in table:  # convex: its network's objective is the certified minimum
        convex = (table["method"] == "convex").to_numpy()
        finished = np.where(convex, table["reached_global"].eq(True).to_numpy(), finished)
    return finished


def plot_times(table: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = times_figure(table)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def times_figure(table: pd.DataFrame):
    """Time per instance and method against n: colour = method, marker = loss, filled = the run
    ended at the global minimum (`reached_global`; for the landscape methods: the listing is
    complete), hollow = it did not (time limit, gradient descent whose starts all missed it, the
    census).  Points sit at their exact n."""
    import matplotlib
    import matplotlib.ticker
    from matplotlib.lines import Line2D

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    shown = table[~table["status"].isin(["skipped", "error", "-", "interrupted"])]  # skipped runs took no time
    reached = reached_global(shown)
    methods = sorted(shown["method"].unique())
    colour = {m: f"C{k % 10}" for k, m in enumerate(methods)}
    losses = sorted(shown["loss"].dropna().unique()) if "loss" in shown else []
    for (method, loss), rows in shown.groupby(["method", "loss"]):
        done = reached[shown.index.get_indexer(rows.index)]
        x, y = rows["n"].to_numpy(float), rows["seconds"].to_numpy(float)
        m = LOSS_MARKERS.get(loss, "D")
        ax.scatter(x[done], y[done], color=colour[method], marker=m, s=36, alpha=0.8)
        ax.scatter(x[~done], y[~done], facecolors="none", edgecolors=colour[method], marker=m, s=36, linewidths=1.3)
    ns = sorted(shown["n"].dropna().unique())
    ax.set_xscale("log")
    ax.set_yscale("log")
    if ns:
        ax.set_xticks(ns)
        ax.set_xlim(min(ns) / 1.2, max(ns) * 1.2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("samples n (log scale)")
    ax.set_ylabel("seconds, wall clock (log scale)")
    ax.set_title("Time per instance and method")
    ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", color=colour[m], label=m) for m in methods]
    handles += [Line2D([], [], ls="", marker=LOSS_MARKERS.get(l, "D"), color="0.35", label=f"{l} loss") for l in losses]
    listing = all(str(m).startswith("landscape-") for m in methods)  # there "optimal" means a complete list
    filled, hollow = (("filled: complete (every minimum asked for is listed)",
                       "hollow: incomplete (time limit; sample is never complete)") if listing else
                      ("filled: ended at the global minimum (landscape: complete)",
                       "hollow: did not (time limit; gd: no start reached it),\n"
                       "    or only at the minimum over the box (a box bound active)"))
    handles += [Line2D([], [], ls="", marker="o", color="0.35", label=filled),
                Line2D([], [], ls="", marker="o", markerfacecolor="none", markeredgecolor="0.35", label=hollow)]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig
