"""The measurements of results/convex-certificate.md (DESIGN §4e): the all-pattern convex program
against the cell enumeration of the weight-decay solve, same run, on a suite.

    python results/convex-certificate.py models/suites/weight-decay-scale.toml > results/convex-certificate.md

Per instance: the program (patterns, units after merging parallel groups, objective, numpy bound,
certified or not, seconds) and, where the instance has at most 200,000 cells, every cell's SOCP
(the weight-decay solve without the program: its certified minimum and seconds), so that a
certificate by the program is checked against an independent route.
"""

from __future__ import annotations

import platform
import sys
import time


def main(suite: str) -> None:
    import clarabel

    from milpland.errors import MilplandError
    from milpland.runs.suites import load_suite
    from milpland.search.convex_certificate import convex_certificate
    from milpland.search.decay_solve import _convex_result, result_from_cells, solve_every_cell

    print("| instance | n | d | width | λ | patterns | units | program J | program bound | certified by program "
          "| program s | cells | cells J (certified) | cells s | agree |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    counts = {"instances": 0, "by_program": 0, "checked": 0, "disagree": 0, "bound_above": 0}
    for inst in load_suite(suite):
        spec = inst.spec
        started = time.perf_counter()
        cert = convex_certificate(spec, time_limit=spec.solve.time_limit)
        prog_s = time.perf_counter() - started
        counts["instances"] += 1
        certified = cert is not None and _convex_result(spec, cert, started).certified
        counts["by_program"] += certified
        cells_text, cells_s, agree = "refused (> 200,000 cells)", float("nan"), "—"
        try:
            started = time.perf_counter()
            out = solve_every_cell(spec, deadline=started + 600.0)
            res = result_from_cells(spec, out, started)
            cells_s = time.perf_counter() - started
            cells_text = f"{res.risk:.10g} ({'yes' if res.certified else 'no'}), {out.total} cells"
            if cert is not None and res.certified:
                counts["checked"] += 1
                above = cert.lower_bound > res.risk + 1e-9 * max(1.0, abs(res.risk))
                counts["bound_above"] += above
                same = abs(cert.objective - res.risk) <= 1e-6 * max(1e-3, abs(res.risk))
                counts["disagree"] += certified and not same
                agree = ("yes" if same else "NO") if certified else ("bound below" if not above else "BOUND ABOVE")
        except MilplandError:
            pass
        row = [inst.name, spec.n, spec.d, spec.width, spec.loss.weight_decay]
        if cert is None:
            row += ["—", "—", "—", "—", "no (program not solved)", f"{prog_s:.2f}"]
        else:
            row += [cert.patterns, cert.units, f"{cert.objective:.10g}", f"{cert.lower_bound:.10g}",
                    "yes" if certified else "no", f"{prog_s:.2f}"]
        row += [cells_text.split(", ")[-1] if "cells" in cells_text and "refused" not in cells_text else "> 200,000",
                cells_text.split(", ")[0], f"{cells_s:.2f}", agree]
        print("| " + " | ".join(str(v) for v in row) + " |", flush=True)
    print()
    print(f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"Clarabel {clarabel.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    print(f"Summary: {counts}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models/suites/weight-decay-scale.toml")
