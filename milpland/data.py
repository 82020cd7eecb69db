"""Data sets: loading from files and seeded generators.

Generators (``[data] generator = ...``), all with inputs x ~ Uniform[-1, 1]^d unless said:

- ``teacher``: y = a random one-hidden-layer ReLU network of width ``teacher_width``
  (default 2, weights N(0, 1)) plus ``noise`` * N(0, 1).
- ``linear``: y = w . x + b with w, b ~ N(0, 1), plus noise: a linear model fits it
  exactly when noise = 0 (the control case of the papers).
- ``sine``: d = 1, x evenly spaced on [-1, 1], y = sin(pi x) plus noise.
- ``random_labels``: y ~ N(0, 1) (or +-1 with ``labels = "pm1"``, for the hinge loss).

Every generator takes ``n``, ``d``, ``seed`` (default 0) and ``noise`` (default 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from milpland.errors import SpecError

GENERATOR_KEYS = {"generator", "n", "d", "seed", "noise", "teacher_width", "labels"}


def load_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """CSV (last column is the target, an optional header line is skipped) or .npz (X, y)."""
    if not path.exists():
        raise SpecError("data.path", f"file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            if "X" not in arrays or "y" not in arrays:
                raise SpecError("data.path", f"{path} must hold arrays named X and y, has {sorted(arrays.files)}")
            return np.asarray(arrays["X"], dtype=float), np.asarray(arrays["y"], dtype=float)
    if path.suffix == ".csv":
        text = path.read_text().strip().splitlines()
        try:
            float(text[0].split(",")[0])
            skip = 0
        except (ValueError, IndexError):
            skip = 1
        try:
            table = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
        except ValueError as exc:
            raise SpecError("data.path", f"{path} is not a numeric CSV: {exc}") from None
        if table.shape[1] < 2:
            raise SpecError("data.path", f"{path} needs at least two columns (inputs..., target)")
        return table[:, :-1], table[:, -1]
    raise SpecError("data.path", f"unsupported file type {path.suffix!r}: use .csv or .npz")


def generate(options: dict) -> tuple[np.ndarray, np.ndarray]:
    kind = options["generator"]
    n = _positive_int(options, "n")
    d = _positive_int(options, "d", default=1)
    seed = int(options.get("seed", 0))
    noise = float(options.get("noise", 0.0))
    rng = np.random.default_rng(seed)
    if kind == "sine":
        if d != 1:
            raise SpecError("data.d", "the sine generator is one-dimensional: use d = 1")
        X = np.linspace(-1.0, 1.0, n)[:, None]
        y = np.sin(np.pi * X[:, 0])
    elif kind == "teacher":
        width = _positive_int(options, "teacher_width", default=2)
        X = rng.uniform(-1.0, 1.0, size=(n, d))
        W, b, v = rng.normal(size=(width, d)), rng.normal(size=width), rng.normal(size=width)
        y = np.maximum(X @ W.T + b, 0.0) @ v
    elif kind == "linear":
        X = rng.uniform(-1.0, 1.0, size=(n, d))
        y = X @ rng.normal(size=d) + rng.normal()
    elif kind == "random_labels":
        X = rng.uniform(-1.0, 1.0, size=(n, d))
        labels = options.get("labels", "gaussian")
        if labels not in ("gaussian", "pm1"):
            raise SpecError("data.labels", f"must be 'gaussian' or 'pm1', got {labels!r}")
        y = rng.normal(size=n) if labels == "gaussian" else rng.choice([-1.0, 1.0], size=n)
        return X, y
    else:
        raise SpecError(
            "data.generator", f"unknown generator {kind!r}; use one of teacher, linear, sine, random_labels"
        )
    return X, y + noise * rng.normal(size=n)


def _positive_int(options: dict, key: str, default: int | None = None) -> int:
    value = options.get(key, default)
    if value is None:
        raise SpecError(f"data.{key}", "is required by the generator")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"data.{key}", f"must be a positive integer, got {value!r}")
    return value
