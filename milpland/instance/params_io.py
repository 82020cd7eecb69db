"""Reading and writing network parameters (for ``milpland certify`` and ``construct``).

Accepted inputs:

- JSON ``{"W": [W0, W1, ...], "b": [b0, b1, ...]}``: one (out x in) matrix and one bias
  list per layer, the last layer linear (the format `write_params_json` writes);
- JSON ``{"W1": [[...]], "b1": [...], "v": [...], "c": number}``: one hidden layer,
  scalar output (milpland.instance.network.OneHiddenParams, the ``params`` of a solve result);
- a JSON object with a ``"params"`` member holding either of the above (a whole
  ``milpland solve --format json`` result);
- ``.npz`` with arrays ``W0, b0, W1, b1, ...`` (or ``W1, b1, v, c`` for one hidden layer);
- ``.onnx`` (the graph ``torch.onnx.export`` writes), ``.safetensors`` and ``.pt`` (the state dict
  of an ``nn.Sequential(Linear, act, ..., Linear)``): milpland.instance.weights_formats; these
  files record the architecture, which is compared with the spec's (layers, widths, input
  dimension, activation where the file names it, output bias present or absent).

`write_params` writes any of these formats, chosen by the file's extension.

`check_shapes` compares the parameters with the data dimension, the hidden widths and
the number of outputs of a spec and names the first field that does not fit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from milpland.errors import MilplandError, SpecError
from milpland.instance import weights_formats
from milpland.instance.activations import Activation
from milpland.instance.data import check_magnitude, npz_problem
from milpland.instance.deep import DeepParams, as_deep

DEEP_KEYS = {"W", "b"}
ONE_HIDDEN_KEYS = {"W1", "b1", "v", "c"}
META_KEYS = {"activation", "format", "name", "description", "note"}
NPZ_ARRAYS = "expected numeric arrays W1, b1, v, c or W0, b0, W1, b1, ..."
SUFFIX_TEXT = ".json, .npz, .onnx, .safetensors or .pt"


def params_from_json(obj, *, d: int | None = None, hidden=None, outputs: int | None = None,
                     output_bias: bool | None = None) -> DeepParams:
    """DeepParams from a parsed JSON object, shape-checked against d / hidden / outputs when given;
    ``output_bias = False`` lets the one-hidden-layer form leave out c."""
    if isinstance(obj, dict) and "params" in obj and isinstance(obj["params"], dict):
        obj = obj["params"]
    if not isinstance(obj, dict):
        raise SpecError("params", f"must be a JSON object with W and b (or W1, b1, v, c), got {type(obj).__name__}")
    keys = set(obj)
    if keys & DEEP_KEYS and keys & ONE_HIDDEN_KEYS:
        raise SpecError("params", "give either W and b (any depth) or W1, b1, v, c (one hidden layer), not both")
    if keys & DEEP_KEYS:
        _reject_unknown(keys, DEEP_KEYS)
        params = _deep_from_lists(obj, d=d)
    elif keys & ONE_HIDDEN_KEYS:
        _reject_unknown(keys, ONE_HIDDEN_KEYS)
        params = _one_hidden_from_lists(obj, d=d, output_bias=output_bias)
    else:
        raise SpecError("params", f"needs W and b, or W1, b1, v and c; found keys {sorted(keys)}")
    check_shapes(params, d=d, hidden=hidden, outputs=outputs)
    return params


def load_params(path, *, d: int | None = None, hidden=None, outputs: int | None = None,
                output_bias: bool | None = None, activation: Activation | None = None) -> DeepParams:
    """Read params from .json, .npz, .onnx, .safetensors or .pt (see the module docstring); `activation`
    is compared with the one an .onnx file (or a safetensors file milpland wrote) records."""
    path = Path(path)
    if not path.exists():
        raise SpecError("params", f"file not found: {path}")
    if not path.is_file():
        raise SpecError("params", f"not a file: {path}")
    try:
        if path.suffix == ".json":
            params = params_from_json(_read_json(path), d=d, hidden=hidden, outputs=outputs, output_bias=output_bias)
        elif path.suffix == ".npz":
            params = params_from_arrays(_read_npz(path), d=d, hidden=hidden, outputs=outputs, output_bias=output_bias)
        elif path.suffix in weights_formats.FORMATS:
            net = weights_formats.read_network(path)
            weights_formats.check_network(net, d=d, hidden=hidden, activation=activation, output_bias=output_bias)
            params = net.params
            check_shapes(params, d=d, hidden=hidden, outputs=outputs)
        else:
            raise SpecError("params", f"unsupported file type {path.suffix!r}: use {SUFFIX_TEXT}")
        if output_bias is False and float(params.b[-1][0]) != 0.0:
            raise SpecError(f"params.b[{len(params.b) - 1}]", "the spec has network.output_bias = false, so the "
                                                            f"output bias must be 0, got {float(params.b[-1][0])!r}")
        return params
    except SpecError as exc:
        raise exc.in_file(str(path)) from None


def _read_json(path: Path):
    """The parsed file; a file that is not UTF-8 JSON (e.g. binary) is a SpecError, not a traceback."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SpecError("params", "not a text file (not UTF-8): expected JSON") from None
    except json.JSONDecodeError as exc:
        raise SpecError("params", f"not valid JSON: {exc}") from None
    except OSError as exc:
        raise SpecError("params", f"cannot read: {exc.strerror}") from None


def _read_npz(path: Path) -> dict:
    """The arrays of an .npz; a file numpy cannot read as one is a SpecError naming the file type."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for files that are no archive
        raise SpecError("params", f"{npz_problem(path, exc)}; {NPZ_ARRAYS}") from None
    if not hasattr(loaded, "files"):
        raise SpecError("params", f"holds a single array (an .npy file?); {NPZ_ARRAYS}")
    with loaded as arrays:
        try:
            return {k: arrays[k] for k in arrays.files}
        except Exception as exc:  # object arrays, a damaged member
            raise SpecError("params", f"{npz_problem(path, exc)}; {NPZ_ARRAYS}") from None


def load_params_for_spec(path, spec) -> DeepParams:
    """Read params and check them against an InstanceSpec (data dimension, hidden widths, scalar output)."""
    return load_params(path, d=spec.d, hidden=spec.network.hidden, outputs=1, output_bias=spec.network.output_bias,
                       activation=spec.network.activation)


def params_from_arrays(table: dict, *, d: int | None = None, hidden=None, outputs: int | None = None,
                       output_bias: bool | None = None) -> DeepParams:
    """DeepParams from arrays named W0, b0, W1, b1, ... (or W1, b1, v, c)."""
    if "v" in table:
        _reject_unknown(set(table), ONE_HIDDEN_KEYS)
        params = _one_hidden_from_lists({k: np.asarray(v).tolist() for k, v in table.items()}, d=d,
                                        output_bias=output_bias)
    else:
        n_layers = sum(1 for k in table if k.startswith("W"))
        expected = {f"W{l}" for l in range(n_layers)} | {f"b{l}" for l in range(n_layers)}
        if n_layers == 0 or set(table) != expected:
            raise SpecError(
                "params", f"an .npz needs arrays W0, b0, W1, b1, ... (or W1, b1, v, c); found {sorted(table)}"
            )
        params = _deep_from_lists(
            {"W": [table[f"W{l}"] for l in range(n_layers)], "b": [table[f"b{l}"] for l in range(n_layers)]}, d=d
        )
    check_shapes(params, d=d, hidden=hidden, outputs=outputs)
    return params


def check_shapes(params: DeepParams, *, d: int | None = None, hidden=None, outputs: int | None = None) -> None:
    """Raise SpecError naming the first field whose shape does not fit the spec."""
    if d is not None and params.input_dim != d:
        m0 = params.W[0].shape[0]
        raise SpecError(
            "params.W[0]",
            f"expected shape ({m0}, {d}) for data dimension d = {d}, got {params.W[0].shape}",
        )
    if hidden is not None:
        hidden = tuple(int(h) for h in hidden)
        if len(params.hidden) != len(hidden):
            raise SpecError(
                "params.W",
                f"expected {len(hidden) + 1} layers (hidden widths {list(hidden)}), got {len(params.W)} "
                f"(hidden widths {list(params.hidden)})",
            )
        for l, (got, want) in enumerate(zip(params.hidden, hidden)):
            if got != want:
                raise SpecError(
                    f"params.W[{l}]",
                    f"expected shape ({want}, {params.W[l].shape[1]}) for hidden width {want}, got {params.W[l].shape}",
                )
    if outputs is not None and params.output_dim != outputs:
        last = len(params.W) - 1
        raise SpecError(
            f"params.W[{last}]",
            f"expected shape ({outputs}, {params.W[last].shape[1]}) for {outputs} output(s), got {params.W[last].shape}",
        )


def params_to_json(params: DeepParams) -> dict:
    return params.to_json()


def write_params_json(params: DeepParams, path, *, activation=None) -> Path:
    """Write {"W": [...], "b": [...]} (plus the activation's description when given)."""
    path = Path(path)
    obj = params.to_json()
    if activation is not None:
        obj["activation"] = activation.describe()
    path.write_text(json.dumps(obj, indent=1) + "\n")
    return path


def check_params_file(option: str, path: Path | None, activation: Activation) -> None:
    """Before the work: MilplandError naming `option` when the package of `path`'s format is missing
    or the format cannot hold the activation (e.g. two_slope in .onnx)."""
    if path is None:
        return
    try:
        weights_formats.check_writable(path, activation)
    except SpecError as exc:
        raise MilplandError(f"{option}: {exc.problem}") from None


def write_params(params, path, *, activation: Activation, output_bias: bool = True) -> Path:
    """Write params (DeepParams, OneHiddenParams or their JSON) in the format of path's extension:
    .npz (W0, b0, ...), .onnx, .safetensors, .pt; JSON for any other name ({"W1", "b1", "v", "c"}
    as given, or {"W", "b"}), as --params-out always wrote."""
    path = Path(path)
    if path.suffix not in (".npz",) + weights_formats.FORMATS:
        obj = params if isinstance(params, dict) else as_deep(params).to_json()
        path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
        return path
    deep = params_from_json(params) if isinstance(params, dict) else as_deep(params)
    if path.suffix == ".npz":
        arrays = {f"{k}{l}": a for l, (W, b) in enumerate(zip(deep.W, deep.b)) for k, a in (("W", W), ("b", b))}
        np.savez(path, **arrays)
        return path
    return weights_formats.write_network(deep, path, activation=activation, output_bias=output_bias)


def _reject_unknown(keys: set, allowed: set) -> None:
    extra = sorted(keys - allowed - META_KEYS)
    if extra:
        raise SpecError(f"params.{extra[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")


def _matrix(value, field: str, what: str = "a list of equally long lists of numbers") -> np.ndarray:
    """The numbers of one params field; `what` says what the field should hold when it does not."""
    if isinstance(value, (str, bytes, dict)) or isinstance(value, bool):
        raise SpecError(field, f"must be {what}, got {value!r}")
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise SpecError(field, f"must be {what}, got {_short(value)}") from None
    if not np.all(np.isfinite(arr)):
        raise SpecError(field, "holds non-finite values (nan or inf)")
    check_magnitude(arr, field)
    return arr


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _deep_from_lists(obj: dict, *, d: int | None) -> DeepParams:
    Ws, bs = obj.get("W"), obj.get("b")
    if not isinstance(Ws, (list, tuple)) or not isinstance(bs, (list, tuple)):
        raise SpecError("params", "W and b must both be lists with one entry per layer")
    if len(Ws) == 0 or len(Ws) != len(bs):
        raise SpecError("params.b", f"needs one bias per layer: {len(Ws)} weight matrices, {len(bs)} biases")
    W, b = [], []
    for l, (w, v) in enumerate(zip(Ws, bs)):
        w = _matrix(w, f"params.W[{l}]", "a matrix: a list of rows (out x in) of numbers")
        v = _matrix(v, f"params.b[{l}]", "a list of numbers, one bias per unit of the layer")
        if w.ndim == 1:
            # A bare list is ambiguous; read it as a single row only where the shape forces it.
            prev = d if l == 0 else W[-1].shape[0]
            if prev == 1 and l == 0 and d is not None:
                w = w.reshape(-1, 1)
            elif prev is not None and w.size == prev:
                w = w.reshape(1, -1)
            else:
                raise SpecError(f"params.W[{l}]", f"must be a matrix (list of rows, out x in), got a flat list of {w.size}")
        if w.ndim != 2:
            raise SpecError(f"params.W[{l}]", f"must be a matrix (out x in), got shape {w.shape}")
        expected_in = d if l == 0 else W[-1].shape[0]
        if expected_in is not None and w.shape[1] != expected_in:
            what = f"data dimension d = {expected_in}" if l == 0 else f"width {expected_in} of layer {l - 1}"
            raise SpecError(f"params.W[{l}]", f"expected shape ({w.shape[0]}, {expected_in}) for {what}, got {w.shape}")
        if v.ndim > 1 and v.size == w.shape[0]:
            v = v.reshape(-1)
        if v.shape != (w.shape[0],):
            raise SpecError(f"params.b[{l}]", f"expected shape ({w.shape[0]},) to match W[{l}] {w.shape}, got {v.shape}")
        W.append(w)
        b.append(v)
    return DeepParams(tuple(W), tuple(b))


def _one_hidden_from_lists(obj: dict, *, d: int | None, output_bias: bool | None = None) -> DeepParams:
    # c may be left out only when the spec has no output bias (then it is 0): reading a missing c
    # as 0 for a network with one would certify another point than the user's.
    required = ("W1", "b1", "v") if output_bias is False else ("W1", "b1", "v", "c")
    missing = [k for k in required if k not in obj]
    if missing:
        why = " (the spec has an output bias)" if missing[0] == "c" else ""
        raise SpecError(f"params.{missing[0]}", f"is required with the one-hidden-layer shape W1, b1, v, c{why}")
    W1 = _matrix(obj["W1"], "params.W1", "a matrix: one list of d input weights per hidden unit")
    b1 = _matrix(obj["b1"], "params.b1", "a list of numbers, one bias per hidden unit").reshape(-1)
    v = _matrix(obj["v"], "params.v", "a list of numbers, one output weight per hidden unit")
    c = obj.get("c", 0.0)
    if W1.ndim == 1:
        if d == 1:
            W1 = W1.reshape(-1, 1)
        else:
            raise SpecError("params.W1", f"must be a matrix (m x d: one row per hidden unit), got a flat list of {W1.size}")
    if W1.ndim != 2:
        raise SpecError("params.W1", f"must be a matrix (m x d), got shape {W1.shape}")
    m = W1.shape[0]
    if d is not None and W1.shape[1] != d:
        raise SpecError("params.W1", f"expected shape ({m}, {d}) for data dimension d = {d}, got {W1.shape}")
    if b1.shape != (m,):
        raise SpecError("params.b1", f"expected shape ({m},) to match W1 {W1.shape}, got {b1.shape}")
    if v.ndim <= 1 and v.size != m:
        raise SpecError("params.v", f"expected shape ({m},): one output weight per hidden unit, got {v.size} "
                                    f"number{'s' if v.size != 1 else ''}")
    if v.ndim <= 1:
        v = v.reshape(1, -1)
    if v.ndim != 2 or v.shape[1] != m:
        raise SpecError("params.v", f"expected shape ({m},): one output weight per hidden unit, got shape {v.shape}")
    c_arr = _matrix(c, "params.c", "a number (the output bias)").reshape(-1)
    if c_arr.shape != (v.shape[0],):
        raise SpecError("params.c", f"expected {v.shape[0]} output bias value(s), got shape {c_arr.shape}")
    if not all(math.isfinite(x) for x in c_arr):
        raise SpecError("params.c", "must be finite")
    if output_bias is False and np.any(c_arr != 0.0):
        raise SpecError("params.c", f"the spec has network.output_bias = false, so c must be 0 (or left out), "
                                    f"got {float(c_arr[0])!r}")
    return DeepParams((W1, v), (b1, c_arr))
