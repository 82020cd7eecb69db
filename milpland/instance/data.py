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

import zipfile
from pathlib import Path

import numpy as np

from milpland.errors import SpecError

GENERATOR_KEYS = {"generator", "n", "d", "seed", "noise", "teacher_width", "labels"}
GENERATORS = ("teacher", "linear", "sine", "random_labels")
# Every number milpland computes with (data, box, activation parameters, weights) is at most this
# in magnitude: products of a box bound, an input and a weight, and their squares, then stay far
# inside double precision, and the solvers' absolute tolerances (1e-9) keep a meaning.
MAX_MAGNITUDE = 1e12
# A generated data set holds at most this many numbers (n (d + 1) of them, 0.8 GB): larger sizes are
# refused before anything is allocated (n = 1e11 ran out of memory with a traceback).  Every method of
# milpland is far slower than this size long before it is reached.
MAX_GENERATED_VALUES = 100_000_000
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
        return _load_csv(path)
    raise SpecError("data.path", f"unsupported file type {path.suffix!r}: use .csv or .npz")


def _load_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Comma-separated numbers, one sample per line, the target last; an optional header line.

    numpy reads the file; when it cannot, `_csv_problem` finds the first bad line itself, so that
    the message names the file's own line number (numpy counts data rows from 0) and says what is
    wrong in milpland's terms (numpy's advice about ``usecols`` does not apply to a spec)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError("data.path",
                        f"{path} is not a text file (not UTF-8): expected comma-separated numbers") from None
    except OSError as exc:
        raise SpecError("data.path", f"cannot read {path}: {exc.strerror}") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise SpecError("data.path", f"{path} is empty")
    first = lines[0][1]
    if not (_is_number(first.split(",")[0]) or _is_number(first.split(";")[0])):
        lines = lines[1:]  # a header line (numbers separated by ';' are data, reported below)
    if not lines:
        raise SpecError("data.path", f"{path} has a header but no data rows")
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=lines[0][0] - 1, ndmin=2)
    except ValueError:
        raise SpecError("data.path", _csv_problem(path, lines)) from None
    if table.shape[1] < 2:
        raise SpecError("data.path", f"{path} needs at least two columns (inputs..., target), has one")
    return table[:, :-1], table[:, -1]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_problem(path: Path, lines: list[tuple[int, str]]) -> str:
    """What is wrong with the first bad data line, with its line number in the file."""
    width = len(lines[0][1].split(","))
    for number, line in lines:
        cells = [cell.strip() for cell in line.split(",")]
        if ";" in line and len(cells) == 1:
            return (f"{path} is not a numeric CSV: line {number}: values separated by ';'; milpland reads "
                    "comma-separated values (replace ';' by ',')")
        bad = next((cell for cell in cells if not _is_number(cell)), None)
        if bad is not None:
            return f"{path} is not a numeric CSV: line {number}: {bad!r} is not a number"
        if len(cells) != width:
            return (f"{path} is not a numeric CSV: line {number}: {len(cells)} values, but the first data line "
                    f"has {width}; every line needs the same inputs and a target")
    return f"{path} is not a numeric CSV"


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
        raise SpecError("data.path", f"cannot read {path}: {npz_problem(path, exc)}") from None
    if not (np.issubdtype(X.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise SpecError("data.path", f"{path}: X and y must be numeric, got {X.dtype} and {y.dtype}")
    X = X.astype(float)
    return (X[:, None] if X.ndim == 1 else X), y.astype(float)


def npz_problem(path: Path, exc: Exception) -> str:
    """Why numpy could not read an .npz, in words that fit the file (numpy's own message mentions
    allow_pickle for any file that is not a zip archive, random bytes included)."""
    if not zipfile.is_zipfile(path):
        return "not an .npz archive (numpy.savez writes one)"
    if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
        return "holds object arrays (pickled Python objects), which are not read: save numeric arrays"
    return f"a damaged .npz archive ({_one_line(exc)})"


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
    if n * (d + 1) > MAX_GENERATED_VALUES:
        raise SpecError("data.n", f"n = {n} samples of d = {d} inputs are {n * (d + 1):.3g} numbers, more than the "
                                  f"{MAX_GENERATED_VALUES:.0e} a generated data set may hold; use a smaller n or d")
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
        if n * width > MAX_GENERATED_VALUES:
            raise SpecError("data.teacher_width", f"a teacher of width {width} on {n} samples needs "
                                                  f"{n * width:.3g} activations, more than {MAX_GENERATED_VALUES:.0e}; "
                                                  "use a narrower teacher")
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
