"""Data sets: loading from files and seeded generators.

Generators (``[data] generator = ...``), all with inputs x ~ Uniform[-1, 1]^d unless said:

- ``teacher``: y = a random one-hidden-layer ReLU network of width ``teacher_width``
  (default 2, weights N(0, 1)) plus ``noise`` * N(0, 1).
- ``linear``: y = w . x + b with w, b ~ N(0, 1), plus noise: a linear model fits it
  exactly when noise = 0 (the control case of the papers).
- ``sine``: d = 1, x evenly spaced on [-1, 1], y = sin(pi x) plus noise.
- ``random_labels``: y ~ N(0, 1) (or +-1 with ``labels = "pm1"``, for the hinge loss).

Every generator takes ``n``, ``d`` (default 1), ``seed`` (default 0) and, except
``random_labels`` (whose labels are noise already), ``noise`` (default 0).
``teacher_width`` applies to ``teacher`` only, ``labels`` to ``random_labels`` only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from milpland.errors import SpecError

GENERATOR_KEYS = {"generator", "n", "d", "seed", "noise", "teacher_width", "labels"}
GENERATORS = ("teacher", "linear", "sine", "random_labels")
# Every number milpland computes with (data, box, activation parameters, weights) is at most this
# in magnitude: products of a box bound, an input and a weight, and their squares, then stay far
# inside double precision, and the solvers' absolute tolerances (1e-9) keep a meaning.
MAX_MAGNITUDE = 1e12
_ONLY_FOR = {"teacher_width": ("teacher",), "labels": ("random_labels",), "noise": ("teacher", "linear", "sine")}


def check_magnitude(values, field: str) -> None:
    """SpecError naming ``field`` when a value exceeds MAX_MAGNITUDE (non-finite values are the
    callers' own message)."""
    values = np.asarray(values, dtype=float)
    big = np.abs(values[np.isfinite(values)])
    if big.size and big.max() > MAX_MAGNITUDE:
        raise SpecError(field, f"holds {big.max():.3g}, beyond the limit of {MAX_MAGNITUDE:g} in magnitude "
                               "(larger values overflow or lose double precision in the solvers); rescale")


def load_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """CSV (last column is the target, an optional header line is skipped) or .npz (X, y)."""
    if not path.exists():
        raise SpecError("data.path", f"file not found: {path}")
    if not path.is_file():
        raise SpecError("data.path", f"not a file: {path}")
    if path.suffix == ".npz":
        return _load_npz(path)
    if path.suffix == ".csv":
        try:
            text = path.read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError("data.path", f"cannot read {path}: {exc}") from None
        if not text:
            raise SpecError("data.path", f"{path} is empty")
        try:
            float(text[0].split(",")[0])
            skip = 0
        except ValueError:
            skip = 1  # a header line
        if len(text) <= skip:
            raise SpecError("data.path", f"{path} has a header but no data rows")
        try:
            table = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
        except ValueError as exc:
            raise SpecError("data.path", f"{path} is not a numeric CSV: {_one_line(exc)}") from None
        if table.shape[1] < 2:
            raise SpecError("data.path", f"{path} needs at least two columns (inputs..., target)")
        return table[:, :-1], table[:, -1]
    raise SpecError("data.path", f"unsupported file type {path.suffix!r}: use .csv or .npz")


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays X (n x d, or n for d = 1) and y (n) from an .npz file; pickled objects are refused."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if "X" not in arrays or "y" not in arrays:
                raise SpecError("data.path", f"{path} must hold arrays named X and y, has {sorted(arrays.files)}")
            X, y = np.asarray(arrays["X"]), np.asarray(arrays["y"])
    except SpecError:
        raise
    except Exception as exc:  # numpy raises several types for corrupt or non-npz files
        raise SpecError("data.path", f"cannot read {path} as .npz: {_one_line(exc)}") from None
    if not (np.issubdtype(X.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise SpecError("data.path", f"{path}: X and y must be numeric, got {X.dtype} and {y.dtype}")
    X = X.astype(float)
    return (X[:, None] if X.ndim == 1 else X), y.astype(float)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def generate(options: dict) -> tuple[np.ndarray, np.ndarray]:
    """The data set of a ``[data] generator = ...`` table (see the module docstring)."""
    kind = options["generator"]
    if kind not in GENERATORS:
        raise SpecError("data.generator", f"unknown generator {kind!r}; use one of {', '.join(GENERATORS)}")
    for key, kinds in _ONLY_FOR.items():
        if key in options and kind not in kinds:
            raise SpecError(f"data.{key}", f"does not apply to the {kind} generator")
    n = _positive_int(options, "n")
    d = _positive_int(options, "d", default=1)
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError("data.seed", f"must be a non-negative integer, got {seed!r}")
    noise = options.get("noise", 0.0)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not np.isfinite(noise) or noise < 0:
        raise SpecError("data.noise", f"must be a finite non-negative number, got {noise!r}")
    noise = float(noise)
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
    else:  # random_labels
        X = rng.uniform(-1.0, 1.0, size=(n, d))
        labels = options.get("labels", "gaussian")
        if labels not in ("gaussian", "pm1"):
            raise SpecError("data.labels", f"must be 'gaussian' or 'pm1', got {labels!r}")
        y = rng.normal(size=n) if labels == "gaussian" else rng.choice([-1.0, 1.0], size=n)
        return X, y
    return X, y + noise * rng.normal(size=n)


def _positive_int(options: dict, key: str, default: int | None = None) -> int:
    value = options.get(key, default)
    if value is None:
        raise SpecError(f"data.{key}", "is required by the generator")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"data.{key}", f"must be a positive integer, got {value!r}")
    return value
