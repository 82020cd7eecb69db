"""Stage 5, runs: many instances at once, and what is kept of them.

`suites` (files of instances), `batch` (parallel and resumable), `tables` (the Parquet result
tables and `load`), `report` (summaries and figures), `bench` (baselines side by side) and
`ablation` (the searches with one technique off at a time).

May import: every stage below.  Imported by commands.
"""
