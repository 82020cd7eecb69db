"""Stage 1, the instance: what a problem is, before anything is solved.

The spec read from TOML (`spec`: data, network, loss, box, solve options; `data` loads and
generates the samples), the activations and losses, plain-numpy networks of one hidden layer
(`network`) and deeper (`deep`), and parameter files (`params_io`).

May import: milpland.errors, milpland.records.  Imported by every later stage.
"""
