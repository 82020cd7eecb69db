"""Stage 2, cells: one activation pattern and sign class at a time (DESIGN §2, §3, §5).

`problem`: a cell's convex problem in the scaled weights (`scaled`), solved by bounded least
squares (`bounded_lsq`) or HiGHS; `arrangement`: which unit patterns the data allow;
`certificates`: whether a cell optimum is a local minimum (a `minima.LocalMinimum`);
`verify`: the plain-numpy re-check of any returned point.

May import: instance.  Imported by search, landscape, points, runs and commands.
"""
