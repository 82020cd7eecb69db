"""Instance specs: one TOML file describes one instance (data, network, loss, box, solve options).

`load_spec(path)` and `spec_from_dict(table)` return an `InstanceSpec` whose data are
already loaded.  Every problem raises `SpecError` naming the field and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from milpland.errors import SpecError
from milpland.instance import activations as acts
from milpland.instance.activations import Activation
from milpland.instance.data import GENERATOR_KEYS, MAX_MAGNITUDE, check_magnitude, generate, load_file
from milpland.instance.losses import LABEL_LOSSES, LOSS_KINDS, REDUCTIONS, Loss

ACTIVATIONS = ("relu", "leaky_relu", "two_slope", "hardtanh", "pwl")
TOP_KEYS = {"name", "description", "data", "network", "loss", "box", "solve"}
NETWORK_KEYS = {
    "hidden", "activation", "alpha", "s_plus", "s_minus", "breakpoints", "slopes",
    "value_at_first_breakpoint", "intercepts", "output_bias",
}
LOSS_KEYS = {"kind", "reduction", "weight_decay", "decay_biases"}
BOX_KEYS = {"weight", "output"}
SOLVE_KEYS = {"time_limit", "rel_gap", "seed", "threads", "verbose", "method", "memory_limit"}
SOLVE_METHODS = ("auto", "milp", "bnb")
DEFAULT_BOX = 100.0  # generous on purpose: an active bound is reported, a tight box hides minima (DESIGN §3)


@dataclass(frozen=True)
class NetworkSpec:
    hidden: tuple[int, ...]
    activation: Activation
    output_bias: bool = True

    @property
    def depth(self) -> int:
        return len(self.hidden)


@dataclass(frozen=True)
class Box:
    """|u~|, |a~| <= weight on the scaled weights; rho = |v| <= output (non-homogeneous activations)."""

    weight: float = DEFAULT_BOX
    output: float = DEFAULT_BOX

    def __post_init__(self):
        for key in ("weight", "output"):
            value = getattr(self, key)
            if not (math.isfinite(value) and 0 < value <= MAX_MAGNITUDE):
                raise SpecError(f"box.{key}", f"must be positive and at most {MAX_MAGNITUDE:g}, got {value!r}")


@dataclass(frozen=True)
class SolveOptions:
    time_limit: float = 60.0
    rel_gap: float = 1e-6  # relative gap at which a global minimum counts as certified
    seed: int = 0
    threads: int = 1
    verbose: bool = False
    method: str = "auto"  # auto | milp | bnb (milpland.search.solve.choose_method)
    memory_limit: float | None = None  # GB; None: half the machine's memory (milpland.search.memory)

    def __post_init__(self):
        if not (0 < self.rel_gap < 1):  # a gap of 1 or more is proven by the lower bound 0: no certificate
            raise SpecError("solve.rel_gap", f"must be above 0 and below 1, got {self.rel_gap!r}")
        if not (math.isfinite(self.time_limit) and self.time_limit > 0):
            raise SpecError("solve.time_limit", f"must be a positive finite number of seconds, got {self.time_limit!r}")
        if self.memory_limit is not None and not (math.isfinite(self.memory_limit) and self.memory_limit > 0):
            raise SpecError("solve.memory_limit", f"must be a positive number of GB, got {self.memory_limit!r}")


@dataclass(frozen=True, eq=False)
class InstanceSpec:
    name: str
    X: np.ndarray  # (n, d)
    y: np.ndarray  # (n,)
    network: NetworkSpec
    loss: Loss = field(default_factory=Loss)
    box: Box = field(default_factory=Box)
    solve: SolveOptions = field(default_factory=SolveOptions)
    description: str = ""
    source: str = ""

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def width(self) -> int:
        return self.network.hidden[0]

    def with_options(self, **changes) -> "InstanceSpec":
        """A copy with some solve options changed, e.g. ``spec.with_options(time_limit=5)``."""
        return replace(self, solve=replace(self.solve, **changes))

    def with_box(self, weight: float, output: float | None = None) -> "InstanceSpec":
        return replace(self, box=Box(weight=weight, output=weight if output is None else output))

    def architecture(self) -> str:
        widths = "-".join(str(w) for w in self.network.hidden)
        return f"{self.d}-{widths}-1 {self.network.activation.name}"

    def instance_hash(self) -> str:
        """Stable id of the mathematical problem (data, network, loss, box), not of the options."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.X, dtype=float).tobytes())
        h.update(np.ascontiguousarray(self.y, dtype=float).tobytes())
        meta = {
            "hidden": self.network.hidden,
            "activation": self.network.activation.describe(),
            "output_bias": self.network.output_bias,
            "loss": [self.loss.kind, self.loss.reduction],
            "box": [self.box.weight, self.box.output],
        }
        if self.loss.decayed:  # only then: the hashes of instances without weight decay stay as they were
            meta["weight_decay"] = [self.loss.weight_decay, self.loss.decay_biases]
        h.update(json.dumps(meta, sort_keys=True).encode())
        return h.hexdigest()[:12]


def load_spec(path: str | Path) -> InstanceSpec:
    path = Path(path)
    if not path.exists():
        raise SpecError("spec", f"file not found: {path}")
    if not path.is_file():
        raise SpecError("spec", f"not a file: {path}")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SpecError("spec", f"{path} is not a text file (not UTF-8): expected a TOML instance spec") from None
    except OSError as exc:
        raise SpecError("spec", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError("spec", f"not valid TOML: {exc}", source=str(path)) from None
    try:
        return spec_from_dict(table, base_dir=path.parent, source=str(path))
    except SpecError as exc:
        raise exc.in_file(str(path)) from None


def spec_from_dict(table: dict, *, base_dir: Path | None = None, source: str = "") -> InstanceSpec:
    _reject_unknown(table, TOP_KEYS, "")
    name = table.get("name")
    if name is None:
        raise SpecError("name", "is required: a non-empty string naming the instance")
    if not isinstance(name, str) or not name.strip():
        raise SpecError("name", f"must be a non-empty string naming the instance, got {name!r}")
    X, y = _parse_data(_table(table, "data", required=True), base_dir or Path("."))
    network = _parse_network(_table(table, "network", required=True))
    loss = _parse_loss(_table(table, "loss"))
    box = _parse_box(_table(table, "box"))
    solve = _parse_solve(_table(table, "solve"))
    _check_data(X, y, network, loss)
    description = table.get("description", "")
    if not isinstance(description, str):
        raise SpecError("description", f"must be a string, got {description!r}")
    return InstanceSpec(
        name=name, X=X, y=y, network=network, loss=loss, box=box, solve=solve,
        description=description, source=source,
    )


def _table(table: dict, key: str, *, required: bool = False) -> dict:
    if key not in table:
        if required:
            raise SpecError(key, f"the [{key}] table is required")
        return {}
    value = table[key]
    if not isinstance(value, dict):
        raise SpecError(key, f"must be a table [{key}], got {type(value).__name__}")
    return value


def _reject_unknown(table: dict, allowed: set[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            where = f"{prefix}." if prefix else ""
            raise SpecError(f"{where}{key}", f"unknown key; allowed here: {', '.join(sorted(allowed))}")


def _number(table: dict, key: str, prefix: str, default=None, *, positive: bool = False) -> float:
    value = table.get(key, default)
    if value is None:
        raise SpecError(f"{prefix}.{key}", "is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{prefix}.{key}", f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise SpecError(f"{prefix}.{key}", f"must be finite, got {value!r}")
    check_magnitude(value, f"{prefix}.{key}")
    if positive and value <= 0:
        raise SpecError(f"{prefix}.{key}", f"must be positive, got {value!r}")
    return float(value)


def _number_list(table: dict, key: str, prefix: str) -> list[float]:
    value = table.get(key)
    if not isinstance(value, list) or not value:
        raise SpecError(f"{prefix}.{key}", "must be a non-empty list of numbers")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SpecError(f"{prefix}.{key}", f"must hold finite numbers, got {v!r}")
        check_magnitude(v, f"{prefix}.{key}")
        out.append(float(v))
    return out


def _parse_data(table: dict, base_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    sources = [k for k in ("x", "path", "generator") if k in table]
    if len(sources) != 1:
        raise SpecError("data", "give exactly one of: x and y inline, path (CSV or .npz), generator")
    kind = sources[0]
    if kind == "x":
        _reject_unknown(table, {"x", "y"}, "data")
        if "y" not in table:
            raise SpecError("data.y", "is required with inline x")
        X = _inline_matrix(table["x"])
        y = np.array(_inline_numbers(table["y"], "data.y"), dtype=float)
    elif kind == "path":
        _reject_unknown(table, {"path"}, "data")
        if not isinstance(table["path"], str) or not table["path"]:
            raise SpecError("data.path", f"must be a file name (string), got {table['path']!r}")
        X, y = load_file(base_dir / table["path"])
    else:
        _reject_unknown(table, GENERATOR_KEYS, "data")
        X, y = generate(table)
    return X, y


def _inline_numbers(value, field: str) -> list[float]:
    """A list of numbers (TOML ints or floats; booleans and strings are mistakes)."""
    if not isinstance(value, list):
        raise SpecError(field, f"must be a list of numbers, got {value!r}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SpecError(field, f"must hold numbers only, got {v!r}")
    return [float(v) for v in value]


def _inline_matrix(value) -> np.ndarray:
    """x as a list of rows (n x d), or a flat list of numbers for d = 1."""
    if not isinstance(value, list):
        raise SpecError("data.x", f"must be a list of rows (lists of numbers), got {value!r}")
    if all(not isinstance(row, list) for row in value):
        return np.array(_inline_numbers(value, "data.x"), dtype=float).reshape(-1, 1)
    rows = [_inline_numbers(row, "data.x") for row in value]
    if len({len(row) for row in rows}) > 1:
        raise SpecError("data.x", f"rows must be equally long, got lengths {sorted({len(r) for r in rows})}")
    return np.array(rows, dtype=float).reshape(len(rows), -1)


def _parse_network(table: dict) -> NetworkSpec:
    _reject_unknown(table, NETWORK_KEYS, "network")
    hidden = table.get("hidden")
    if not isinstance(hidden, list) or not hidden:
        raise SpecError("network.hidden", "must be a non-empty list of layer widths, e.g. hidden = [2]")
    for w in hidden:
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise SpecError("network.hidden", f"widths must be positive integers, got {w!r}")
    name = table.get("activation", "relu")
    if name not in ACTIVATIONS:
        raise SpecError("network.activation", f"unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}")
    extra = {"alpha", "s_plus", "s_minus", "breakpoints", "slopes", "value_at_first_breakpoint", "intercepts"}
    allowed_extra = {
        "relu": set(), "hardtanh": set(), "leaky_relu": {"alpha"}, "two_slope": {"s_plus", "s_minus"},
        "pwl": {"breakpoints", "slopes", "value_at_first_breakpoint", "intercepts"},
    }[name]
    for key in (extra & table.keys()) - allowed_extra:
        raise SpecError(f"network.{key}", f"does not apply to activation {name!r}")
    if name == "relu":
        act = acts.relu()
    elif name == "hardtanh":
        act = acts.hardtanh()
    elif name == "leaky_relu":
        alpha = _number(table, "alpha", "network", 0.01)
        if alpha == 1.0:
            raise SpecError("network.alpha", "alpha = 1 makes the activation linear; use alpha != 1")
        act = acts.leaky_relu(alpha)
    elif name == "two_slope":
        s_plus, s_minus = _number(table, "s_plus", "network"), _number(table, "s_minus", "network")
        if s_plus == s_minus:
            raise SpecError("network.s_minus", "s_plus = s_minus makes the activation linear; use different slopes")
        act = acts.two_slope(s_plus, s_minus)
    else:
        act = _parse_pwl(table)
    output_bias = table.get("output_bias", True)
    if not isinstance(output_bias, bool):
        raise SpecError("network.output_bias", f"must be true or false, got {output_bias!r}")
    return NetworkSpec(hidden=tuple(hidden), activation=act, output_bias=output_bias)


def _parse_pwl(table: dict) -> Activation:
    t = _number_list(table, "breakpoints", "network")
    a = _number_list(table, "slopes", "network")
    if "intercepts" in table:
        if "value_at_first_breakpoint" in table:
            raise SpecError("network.intercepts", "give intercepts or value_at_first_breakpoint, not both")
        b = _number_list(table, "intercepts", "network")
        if len(b) != len(a):
            raise SpecError("network.intercepts", f"needs one intercept per slope ({len(a)}), got {len(b)}")
        # from_pieces checks lengths and ordering first, so a continuity error is about continuity only.
        act = acts.from_pieces("pwl", t, a, a[0] * t[0] + b[0])
        acts.check_continuous(t, a, b)
        return act
    value = _number(table, "value_at_first_breakpoint", "network", 0.0)
    return acts.from_pieces("pwl", t, a, value)


def _parse_loss(table: dict) -> Loss:
    _reject_unknown(table, LOSS_KEYS, "loss")
    kind = table.get("kind", "squared")
    if kind not in LOSS_KINDS:
        raise SpecError("loss.kind", f"unknown loss {kind!r}; use one of {', '.join(LOSS_KINDS)}")
    reduction = table.get("reduction", "mean")
    if reduction not in REDUCTIONS:
        raise SpecError("loss.reduction", f"unknown reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}")
    weight_decay = _number(table, "weight_decay", "loss", 0.0)
    if weight_decay < 0:
        raise SpecError("loss.weight_decay", f"must be a number >= 0 (0: no weight decay), got {weight_decay!r}")
    decay_biases = table.get("decay_biases", True)
    if not isinstance(decay_biases, bool):
        raise SpecError("loss.decay_biases", f"must be true or false, got {decay_biases!r}")
    return Loss(kind=kind, reduction=reduction, weight_decay=weight_decay, decay_biases=decay_biases)


def _parse_box(table: dict) -> Box:
    _reject_unknown(table, BOX_KEYS, "box")
    weight = _number(table, "weight", "box", DEFAULT_BOX, positive=True)
    return Box(weight=weight, output=_number(table, "output", "box", weight, positive=True))


def _parse_solve(table: dict) -> SolveOptions:
    _reject_unknown(table, SOLVE_KEYS, "solve")
    defaults = SolveOptions()
    seed = table.get("seed", defaults.seed)
    threads = table.get("threads", defaults.threads)
    for key, value, least in (("seed", seed, 0), ("threads", threads, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            kind = "non-negative" if least == 0 else "positive"
            raise SpecError(f"solve.{key}", f"must be a {kind} integer, got {value!r}")
    verbose = table.get("verbose", False)
    if not isinstance(verbose, bool):
        raise SpecError("solve.verbose", f"must be true or false, got {verbose!r}")
    method = table.get("method", defaults.method)
    if method not in SOLVE_METHODS:
        raise SpecError("solve.method", f"must be one of {', '.join(SOLVE_METHODS)}, got {method!r}")
    memory = _number(table, "memory_limit", "solve", positive=True) if "memory_limit" in table else None
    return SolveOptions(
        time_limit=_number(table, "time_limit", "solve", defaults.time_limit, positive=True),
        rel_gap=_number(table, "rel_gap", "solve", defaults.rel_gap, positive=True),
        seed=seed, threads=threads, verbose=verbose, method=method, memory_limit=memory,
    )


def _check_data(X: np.ndarray, y: np.ndarray, network: NetworkSpec, loss: Loss) -> None:
    if X.ndim != 2 or y.ndim != 1:
        raise SpecError("data", f"x must be a matrix (n x d) and y a vector, got shapes {X.shape} and {y.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise SpecError("data", "is empty: give at least one sample with at least one input")
    if X.shape[0] != y.shape[0]:
        raise SpecError("data", f"x has {X.shape[0]} samples but y has {y.shape[0]}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise SpecError("data", "holds non-finite values (nan or inf)")
    check_magnitude(X, "data.x")
    check_magnitude(y, "data.y")
    _check_weight_decay(network, loss)
    rows = np.column_stack([X, y])
    unique = np.unique(rows, axis=0)
    if unique.shape[0] != rows.shape[0]:
        raise SpecError("data", f"holds {rows.shape[0] - unique.shape[0]} duplicate samples (same x and y): remove them")
    if loss.kind == "logistic" and network.depth != 1:  # the two-layer search has no logistic bound
        raise SpecError("loss.kind", f"the logistic loss handles one hidden layer, not hidden = {list(network.hidden)}")
    if loss.kind in LABEL_LOSSES and not np.all(np.isin(y, (-1.0, 1.0))):
        raise SpecError("data.y", f"the {loss.kind} loss needs labels -1 and +1; map your classes to -1 and +1")


def _check_weight_decay(network: NetworkSpec, loss: Loss) -> None:
    """Weight decay is exact in the scaled weights only for one hidden layer and a positively
    homogeneous activation (DESIGN §4d); elsewhere it is refused rather than ignored."""
    if not loss.decayed:
        return
    if not network.activation.homogeneous:
        raise SpecError("loss.weight_decay", f"needs a positively homogeneous activation (relu, leaky_relu, two_slope), "
                        f"not {network.activation.name!r}; use weight_decay = 0")
    if network.depth != 1:
        raise SpecError("loss.weight_decay", f"handles one hidden layer, not hidden = {list(network.hidden)}; "
                        "use weight_decay = 0")
