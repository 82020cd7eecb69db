"""Stage 3, the global search: the certified minimum over the box (DESIGN §3, §4, §4b).

`solve.solve_global` runs one of two searches that share an incumbent and per-class outcomes
(`outcome`), started from multistart points (`incumbents`), and returns a `result.SolveResult`:
the MILP per sign class (`formulation`, `bounds`, `highs_backend`) or the pattern
branch-and-bound (`pattern_bnb`, with the hull relaxations `unit_hull` and `hull_lp`).
`export` writes the MILPs for other solvers.

May import: instance, cells.  Imported by landscape, points, runs and commands.
"""
