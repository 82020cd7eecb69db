"""Weights from the deep-learning ecosystem: ``.onnx``, ``.safetensors`` and PyTorch ``.pt`` files.

The networks are those of ``nn.Sequential(Linear, act, Linear, act, ..., Linear)`` with one
activation ``act`` in {ReLU, LeakyReLU(alpha), Hardtanh(min, max)} -- what milpland models:

    f(x) = W[L] a^{L-1} + b[L],   a^l = sigma(W[l] a^{l-1} + b[l]),   a^0 = x.

- ``.onnx``: the graph ``torch.onnx.export`` writes. A linear layer is ``Gemm`` (Y = alpha A B' + beta C
  with transB = 1, or A B with transB = 0) or ``MatMul`` (by the weight, or by a ``Transpose`` of it)
  followed by ``Add`` of the bias; the activation is a node: ``Relu``, ``LeakyRelu(alpha)``, ``Clip``
  (min/max as inputs, opset >= 11, or attributes) or ``HardTanh``. ``Identity``, ``Flatten`` and
  ``Dropout`` (no-ops at inference on a (batch, d) input) are skipped; weights and Clip bounds may be
  initializers, ``Constant`` nodes, or a Transpose / Cast / CastLike of those. The file records
  the activation, so it is checked against the spec.
- ``.safetensors`` / ``.pt``: the Sequential's ``state_dict``: ``0.weight`` (out x in), ``0.bias``,
  ``2.weight``, ... (every Linear at an even index, activations hold no tensors), optionally
  under one common prefix (``net.0.weight``). A state dict does not record the activation;
  milpland writes it into the safetensors metadata (``milpland.activation``) and checks it when present.

Every reader returns a `NetworkFile`; `check_network` compares it with the spec and raises a
one-line SpecError naming both sides (layers, widths, input dimension, activation, output bias).
The optional packages (onnx, safetensors, torch) are imported only when a file of theirs is used.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from milpland.errors import SpecError
from milpland.instance import activations as acts
from milpland.instance.activations import Activation
from milpland.instance.data import check_magnitude
from milpland.instance.deep import DeepParams

FORMATS = (".onnx", ".safetensors", ".pt")
ONNX_OPSET = 17  # what torch.onnx.export writes by default; every operator used here exists since opset 13
ONNX_IR_VERSION = 8  # the IR version of opset 17: files stay readable by older onnx / onnxruntime
ACTIVATION_METADATA = "milpland.activation"
SKIPPED_OPS = ("Identity", "Flatten", "Dropout")
FOLDED_OPS = ("Transpose", "Cast", "CastLike", "Identity")
# Activations compare to 1e-6: ONNX stores attributes (LeakyRelu's alpha) as float32.
ACTIVATION_RTOL = 1e-6
EXPORT_HINT = "or export the matching model"


@dataclass(frozen=True)
class NetworkFile:
    """What a weights file holds: the parameters, the activation when the format records it
    (None for a plain state dict), how the file names it, and whether the last layer has a bias
    (a missing output bias is read as 0)."""

    params: DeepParams
    activation: Activation | None
    activation_text: str | None
    output_bias: bool


# --- reading ----------------------------------------------------------------------------------

def read_network(path: Path) -> NetworkFile:
    """The network in an .onnx, .safetensors or .pt file (SpecError with field "params" when it is not one)."""
    readers = {".onnx": read_onnx, ".safetensors": read_safetensors, ".pt": read_torch_state}
    return readers[path.suffix](path)


def read_onnx(path: Path) -> NetworkFile:
    onnx = _optional("onnx", "reading .onnx")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError, onnx its own types, for files that are no model
        raise SpecError("params", f"not an ONNX model ({type(exc).__name__}); export with torch.onnx.export") from None
    return _onnx_chain(model.graph, onnx.numpy_helper)


def read_safetensors(path: Path) -> NetworkFile:
    _optional("safetensors", "reading .safetensors")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            metadata = f.metadata() or {}
    except Exception as exc:  # SafetensorError for a damaged header; TypeError for bf16 tensors numpy lacks
        raise SpecError("params", f"not a readable safetensors file ({' '.join(str(exc).split())[:120]})") from None
    activation = _activation_from_metadata(metadata.get(ACTIVATION_METADATA))
    return network_from_state_dict(tensors, activation=activation)


def read_torch_state(path: Path) -> NetworkFile:
    torch = _optional("torch", "reading .pt", install="torch")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickled module (not weights_only), a damaged archive
        raise SpecError("params", f"torch.load failed ({type(exc).__name__}); a .pt file must hold a state dict: "
                                  "torch.save(model.state_dict(), path)") from None
    for key in ("state_dict", "model_state_dict"):  # common checkpoint layouts
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise SpecError("params", f"a .pt file must hold a state dict (torch.save(model.state_dict(), path)), "
                                  f"got {type(obj).__name__}")
    tensors = {k: v.detach().cpu().double().numpy() for k, v in obj.items() if hasattr(v, "detach")}
    return network_from_state_dict(tensors, activation=None)


def network_from_state_dict(tensors: dict, *, activation: Activation | None) -> NetworkFile:
    """A NetworkFile from the state dict of nn.Sequential(Linear, act, ..., Linear): keys
    ``<prefix><i>.weight`` / ``<prefix><i>.bias``, the Linear layers in increasing index order."""
    layers: dict[int, dict[str, np.ndarray]] = {}
    prefixes = set()
    for key, value in tensors.items():
        match = re.fullmatch(r"(.*?)(\d+)\.(weight|bias)", key)
        if match is None:
            raise SpecError("params", f"unexpected tensor {key!r}: expected the state dict of an nn.Sequential "
                                      "(keys 0.weight, 0.bias, 2.weight, ...)")
        prefixes.add(match.group(1))
        layers.setdefault(int(match.group(2)), {})[match.group(3)] = np.asarray(value, dtype=float)
    if not layers:
        raise SpecError("params", "holds no tensors; expected keys 0.weight, 0.bias, 2.weight, ...")
    if len(prefixes) > 1:
        raise SpecError("params", f"tensors of several modules ({', '.join(sorted(repr(p) for p in prefixes))}); "
                                  "save the state dict of the nn.Sequential alone")
    order = sorted(layers)
    W, b = [], []
    for pos, index in enumerate(order):
        layer = layers[index]
        if "weight" not in layer:
            raise SpecError("params", f"{index}.bias has no {index}.weight")
        last = pos == len(order) - 1
        W.append(_weight(layer["weight"], f"{index}.weight"))
        b.append(_bias(layer.get("bias"), W[-1].shape[0], f"{index}.bias", last))
    return NetworkFile(_params(W, b), activation, _describe(activation), output_bias="bias" in layers[order[-1]])


# --- the ONNX graph -----------------------------------------------------------------------------

def _onnx_chain(graph, numpy_helper) -> NetworkFile:
    """Walk the graph from its single data input along the one node that reads each tensor,
    collecting linear layers and activations (see the module docstring for the operators)."""
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = _fold_constants(list(graph.node), consts, numpy_helper)
    inputs = [i.name for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise SpecError("params", f"the ONNX graph has {len(inputs)} data inputs {inputs}; expected one (the batch x)")
    steps: list = []  # ("linear", W, b or None) and ("act", Activation, text)
    current = inputs[0]
    while True:
        readers = [n for n in nodes if current in n.input]
        if not readers:
            break
        if len(readers) > 1:
            raise SpecError("params", f"tensor {current!r} feeds {len(readers)} nodes; milpland reads a chain "
                                      "(nn.Sequential)")
        node = readers[0]
        _onnx_step(node, current, consts, steps)
        current = node.output[0]
    if current not in {o.name for o in graph.output}:
        raise SpecError("params", f"the chain from the input ends at {current!r}, which is not a graph output")
    return network_from_steps(steps)


def _fold_constants(nodes: list, consts: dict, numpy_helper) -> list:
    """Record what is computed from constants alone as constants -- Constant nodes, and Transpose,
    Cast, CastLike or Identity of constants (a MatMul's transposed weight, Clip bounds cast to the
    input's type) -- and return the other nodes."""
    rest = []
    for node in nodes:
        if node.op_type == "Constant":
            consts[node.output[0]] = _constant_value(node, numpy_helper)
        elif node.op_type in FOLDED_OPS and node.input and node.input[0] in consts:
            value = np.asarray(consts[node.input[0]])
            if node.op_type == "Transpose":
                perm = _attr(node, "perm")
                value = np.transpose(value, None if perm is None else list(perm))
            consts[node.output[0]] = value  # a cast keeps the number (read as float64 anyway)
        else:
            rest.append(node)
    return rest


def _constant_value(node, numpy_helper) -> np.ndarray:
    """A Constant node's value: a tensor (``value``) or a number / list (``value_float(s)``, ``value_int(s)``)."""
    for a in node.attribute:
        value = _attr(node, a.name)
        if a.name == "value":
            return numpy_helper.to_array(value)
        if a.name in ("value_float", "value_floats", "value_int", "value_ints"):
            return np.asarray(value, dtype=float)
    raise SpecError("params", f"Constant node {node.name!r}: expected a numeric value")


def _onnx_step(node, current: str, consts: dict, steps: list) -> None:
    op = node.op_type
    if op in SKIPPED_OPS:
        return
    if op == "Gemm":
        steps.append(("linear", *_gemm(node, current, consts)))
    elif op == "MatMul":
        if node.input[0] != current or node.input[1] not in consts:
            raise SpecError("params", f"MatMul node {node.name!r}: expected x times a constant weight")
        steps.append(("linear", _weight(np.asarray(consts[node.input[1]]).T, f"{node.input[1]} (transposed)"), None))
    elif op == "Add":
        other = [t for t in node.input if t != current]
        after_matmul = bool(steps) and steps[-1][0] == "linear" and steps[-1][2] is None
        if len(other) != 1 or other[0] not in consts or not after_matmul:
            raise SpecError("params", f"Add node {node.name!r}: expected the bias of the MatMul just before it")
        steps[-1] = ("linear", steps[-1][1], np.asarray(consts[other[0]], dtype=float))
    elif op in ("Relu", "LeakyRelu", "Clip", "HardTanh"):
        steps.append(("act", *_onnx_activation(node, consts)))
    else:
        raise SpecError("params", f"unsupported ONNX operator {op} (node {node.name!r}); milpland reads Gemm or "
                                  "MatMul + Add layers with Relu, LeakyRelu or Clip between them")


def _gemm(node, current: str, consts: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Gemm: Y = alpha A op(B) + beta C with A = x, op(B) = B' (transB = 1) or B; so W = alpha op(B)'."""
    if node.input[0] != current or _attr(node, "transA", 0) != 0:
        raise SpecError("params", f"Gemm node {node.name!r}: expected the batch as its first input, not transposed")
    if node.input[1] not in consts:
        raise SpecError("params", f"Gemm node {node.name!r}: its weight {node.input[1]!r} is not a constant")
    B = np.asarray(consts[node.input[1]], dtype=float)
    W = _attr(node, "alpha", 1.0) * (B if _attr(node, "transB", 0) == 1 else B.T)
    if len(node.input) < 3 or node.input[2] == "":
        return _weight(W, node.input[1]), None
    if node.input[2] not in consts:
        raise SpecError("params", f"Gemm node {node.name!r}: its bias {node.input[2]!r} is not a constant")
    return _weight(W, node.input[1]), _attr(node, "beta", 1.0) * np.asarray(consts[node.input[2]], dtype=float)


def _onnx_activation(node, consts: dict) -> tuple[Activation, str]:
    """The activation of a Relu / LeakyRelu / Clip / HardTanh node and how the file names it."""
    if node.op_type == "Relu":
        return acts.relu(), "Relu"
    if node.op_type == "LeakyRelu":
        alpha = float(_attr(node, "alpha", 0.01))
        return acts.leaky_relu(alpha), f"LeakyRelu(alpha={alpha:.7g})"
    if node.op_type == "HardTanh":
        lo, hi = float(_attr(node, "min_val", -1.0)), float(_attr(node, "max_val", 1.0))
    else:  # Clip: min / max are inputs since opset 11, attributes before; absent means unbounded
        lo, hi = (_clip_bound(node, consts, k, name, default) for k, name, default in
                  ((1, "min", -math.inf), (2, "max", math.inf)))
    return clip_activation(lo, hi), f"Clip(min={lo:.7g}, max={hi:.7g})"


def _clip_bound(node, consts: dict, position: int, name: str, default: float) -> float:
    if len(node.input) > position and node.input[position] != "":
        if node.input[position] not in consts:
            raise SpecError("params", f"Clip node {node.name!r}: its {name} is not a constant")
        return float(np.asarray(consts[node.input[position]]).reshape(-1)[0])
    return float(_attr(node, name, default))


def clip_activation(lo: float, hi: float) -> Activation:
    """clip(z, lo, hi) as a CPWL activation: ReLU-like for (0, inf), hardtanh for (-1, 1)."""
    if not lo < hi:
        raise SpecError("params", f"Clip(min={lo:g}, max={hi:g}) is constant; expected min < max")
    if math.isinf(lo) and math.isinf(hi):
        raise SpecError("params", "a Clip without bounds is the identity: milpland needs a piecewise-linear activation")
    if math.isinf(hi):
        return acts.from_pieces("clip", [lo], [0.0, 1.0], value_at_first_breakpoint=lo)
    if math.isinf(lo):
        return acts.from_pieces("clip", [hi], [1.0, 0.0], value_at_first_breakpoint=hi)
    return acts.from_pieces("clip", [lo, hi], [0.0, 1.0, 0.0], value_at_first_breakpoint=lo)


def network_from_steps(steps: list) -> NetworkFile:
    """linear, act, linear, ..., linear -> NetworkFile (one activation for every hidden layer)."""
    kinds = "".join("L" if s[0] == "linear" else "A" for s in steps)
    if not re.fullmatch(r"L(AL)+", kinds):
        raise SpecError("params", f"expected Linear, activation, Linear, ... ending with a Linear (a hidden layer "
                                  f"at least); the graph has {_layer_names(steps)}")
    activations = [s for s in steps if s[0] == "act"]
    first = activations[0]
    for other in activations[1:]:
        if not same_activation(first[1], other[1]):
            raise SpecError("params", f"hidden layers with different activations ({first[2]} and {other[2]}); "
                                      "milpland uses one activation for every hidden layer")
    linears = [s for s in steps if s[0] == "linear"]
    W = [s[1] for s in linears]
    b = [_bias(s[2], w.shape[0], f"bias of layer {l}", l == len(W) - 1) for l, (s, w) in enumerate(zip(linears, W))]
    return NetworkFile(_params(W, b), first[1], first[2], output_bias=linears[-1][2] is not None)


def _layer_names(steps: list) -> str:
    return ", ".join("Linear" if s[0] == "linear" else s[2] for s in steps) or "no layers"


def _attr(node, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            import onnx

            return onnx.helper.get_attribute_value(a)
    return default


# --- comparing with the spec --------------------------------------------------------------------

def check_network(net: NetworkFile, *, d: int | None, hidden, activation: Activation | None,
                  output_bias: bool | None) -> None:
    """SpecError naming the file's side and the spec's side of the first mismatch, with the fix."""
    got = list(net.params.hidden)
    if hidden is not None and len(got) != len(hidden):
        raise SpecError("params", f"{len(got)} hidden layer(s) {got} in the file but the spec has {len(hidden)} "
                                  f"(hidden = {list(hidden)}); set [network] hidden = {got} {EXPORT_HINT}")
    if hidden is not None and got != list(hidden):
        raise SpecError("params", f"hidden widths {got} in the file but the spec has hidden = {list(hidden)}; "
                                  f"set [network] hidden = {got} {EXPORT_HINT}")
    if d is not None and net.params.input_dim != d:
        raise SpecError("params", f"input dimension {net.params.input_dim} in the file but the data have d = {d}; "
                                  f"give data with {net.params.input_dim} feature(s) {EXPORT_HINT}")
    if activation is not None and net.activation is not None and not same_activation(net.activation, activation):
        raise SpecError("params", f"activation {net.activation_text} in the file but the spec says "
                                  f"{activation_text(activation)}; set [network] {spec_activation(net.activation)} "
                                  f"{EXPORT_HINT}")
    if output_bias is True and not net.output_bias:
        raise SpecError("params", "no output bias in the file (last Linear with bias=False) but the spec has "
                                  f"network.output_bias = true; set output_bias = false {EXPORT_HINT}")
    if output_bias is False and net.output_bias and np.any(net.params.b[-1] != 0.0):
        raise SpecError("params", f"an output bias ({float(net.params.b[-1][0])!r}) in the file but the spec has "
                                  f"network.output_bias = false; set output_bias = true {EXPORT_HINT}")


def same_activation(a: Activation, b: Activation) -> bool:
    """Equal pieces (breakpoints, slopes, intercepts) to ACTIVATION_RTOL; names do not matter."""
    def close(x, y):
        return len(x) == len(y) and all(abs(p - q) <= ACTIVATION_RTOL * max(1.0, abs(q)) for p, q in zip(x, y))
    return close(a.breakpoints, b.breakpoints) and close(a.slopes, b.slopes) and close(a.intercepts, b.intercepts)


def activation_text(act: Activation) -> str:
    """The spec's activation as its TOML names it."""
    if same_activation(act, acts.relu()):
        return "relu"
    if same_activation(act, acts.hardtanh()):
        return "hardtanh"
    if act.homogeneous and act.slopes[1] == 1.0:
        return f"leaky_relu (alpha = {act.slopes[0]:.7g})"
    if act.homogeneous:
        return f"two_slope (s_plus = {act.slopes[1]:.7g}, s_minus = {act.slopes[0]:.7g})"
    return f"{act.name} (breakpoints {list(act.breakpoints)}, slopes {list(act.slopes)})"


def spec_activation(act: Activation) -> str:
    """The [network] lines that select `act` in a spec."""
    text = activation_text(act)
    if text in ("relu", "hardtanh"):
        return f'activation = "{text}"'
    if text.startswith("leaky_relu"):
        return f'activation = "leaky_relu", alpha = {act.slopes[0]:.7g}'
    if text.startswith("two_slope"):
        return f'activation = "two_slope", s_plus = {act.slopes[1]:.7g}, s_minus = {act.slopes[0]:.7g}'
    return (f'activation = "pwl", breakpoints = {list(act.breakpoints)}, slopes = {list(act.slopes)}, '
            f"intercepts = {list(act.intercepts)}")


# --- writing ------------------------------------------------------------------------------------

def write_network(params: DeepParams, path: Path, *, activation: Activation, output_bias: bool = True) -> Path:
    """Write params as .onnx, .safetensors or .pt (float64, so reading back gives the same numbers)."""
    writers = {".onnx": write_onnx, ".safetensors": write_safetensors, ".pt": write_torch_state}
    return writers[path.suffix](params, path, activation=activation, output_bias=output_bias)


def check_writable(path: Path, activation: Activation) -> None:
    """Before the work: the package for path's format is installed and the format can hold the activation."""
    if path.suffix == ".onnx":
        onnx = _optional("onnx", "writing .onnx")
        _onnx_activation_nodes(activation, "x", 1, onnx.numpy_helper)
    elif path.suffix == ".safetensors":
        _optional("safetensors", "writing .safetensors")
    elif path.suffix == ".pt":
        _optional("torch", "writing .pt", install="torch")


def write_onnx(params: DeepParams, path: Path, *, activation: Activation, output_bias: bool = True) -> Path:
    """The graph torch.onnx.export writes for the Sequential (Gemm with transB = 1, initializers
    named as the state dict), in double precision: x of shape (batch, d) -> y of shape (batch, 1)."""
    onnx = _optional("onnx", "writing .onnx")
    helper, TensorProto, numpy_helper = onnx.helper, onnx.TensorProto, onnx.numpy_helper
    nodes, inits, current = [], [], "input"
    for l, (W, b) in enumerate(zip(params.W, params.b)):
        index, last = 2 * l, l == len(params.W) - 1
        inits.append(numpy_helper.from_array(np.asarray(W, dtype=np.float64), f"{index}.weight"))
        gemm_inputs = [current, f"{index}.weight"]
        if not (last and not output_bias):
            inits.append(numpy_helper.from_array(np.asarray(b, dtype=np.float64), f"{index}.bias"))
            gemm_inputs.append(f"{index}.bias")
        out = "output" if last else f"/{index}/Gemm_output_0"
        nodes.append(helper.make_node("Gemm", gemm_inputs, [out], name=f"/{index}/Gemm", alpha=1.0, beta=1.0, transB=1))
        current = out
        if not last:
            act_nodes, act_inits, current = _onnx_activation_nodes(activation, current, index + 1, numpy_helper)
            nodes += act_nodes
            inits += act_inits
    graph = helper.make_graph(
        nodes, "milpland", [helper.make_tensor_value_info("input", TensorProto.DOUBLE, ["batch", params.input_dim])],
        [helper.make_tensor_value_info("output", TensorProto.DOUBLE, ["batch", params.output_dim])], inits)
    model = helper.make_model(graph, producer_name="milpland", opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              ir_version=ONNX_IR_VERSION)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _onnx_activation_nodes(act: Activation, current: str, index: int, numpy_helper):
    """Relu, LeakyRelu(alpha) or Clip(lo, hi) nodes for `act` (SpecError when ONNX has no single operator)."""
    import onnx

    out = f"/{index}/Act_output_0"
    if same_activation(act, acts.relu()):
        return [onnx.helper.make_node("Relu", [current], [out], name=f"/{index}/Relu")], [], out
    if act.homogeneous and act.slopes[1] == 1.0:
        node = onnx.helper.make_node("LeakyRelu", [current], [out], name=f"/{index}/LeakyRelu", alpha=act.slopes[0])
        return [node], [], out
    lo, hi = act.breakpoints[0], act.breakpoints[-1]
    if len(act.breakpoints) == 2 and same_activation(act, clip_activation(lo, hi)):
        bounds = [numpy_helper.from_array(np.array(v, dtype=np.float64), f"/{index}/Clip_{name}")
                  for v, name in ((lo, "min"), (hi, "max"))]
        node = onnx.helper.make_node("Clip", [current, bounds[0].name, bounds[1].name], [out], name=f"/{index}/Clip")
        return [node], bounds, out
    raise SpecError("params", f"activation {activation_text(act)} has no single ONNX operator (Relu, LeakyRelu, Clip); "
                              "write .json, .npz or .safetensors instead")


def write_safetensors(params: DeepParams, path: Path, *, activation: Activation, output_bias: bool = True) -> Path:
    """The Sequential's state dict (0.weight, 0.bias, 2.weight, ...; float64) with the activation in the metadata."""
    _optional("safetensors", "writing .safetensors")
    from safetensors.numpy import save_file

    save_file(state_dict(params, output_bias=output_bias), str(path),
              metadata={ACTIVATION_METADATA: json.dumps(activation.describe())})
    return path


def write_torch_state(params: DeepParams, path: Path, *, activation: Activation, output_bias: bool = True) -> Path:
    torch = _optional("torch", "writing .pt", install="torch")
    torch.save({k: torch.from_numpy(v) for k, v in state_dict(params, output_bias=output_bias).items()}, str(path))
    return path


def state_dict(params: DeepParams, *, output_bias: bool = True) -> dict[str, np.ndarray]:
    """{"0.weight": W[0], "0.bias": b[0], "2.weight": W[1], ...}: nn.Sequential's keys (activations between)."""
    out = {}
    for l, (W, b) in enumerate(zip(params.W, params.b)):
        out[f"{2 * l}.weight"] = np.ascontiguousarray(W, dtype=np.float64)
        if output_bias or l < len(params.W) - 1:
            out[f"{2 * l}.bias"] = np.ascontiguousarray(b, dtype=np.float64)
    return out


# --- shared pieces ------------------------------------------------------------------------------

def _optional(module: str, what: str, *, install: str = "'milpland[interop]'"):
    """Import an optional package, or a one-line SpecError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpecError("params", f"{what} needs the {module} package, which is not installed: "
                                  f"pip install {install}") from None


def _weight(value, name: str) -> np.ndarray:
    W = np.asarray(value, dtype=float)
    if W.ndim != 2:
        raise SpecError("params", f"{name}: a Linear weight must be a matrix (out x in), got shape {W.shape}")
    _finite(W, name)
    return W


def _bias(value, width: int, name: str, last: bool) -> np.ndarray:
    """The layer's bias; only the output layer may lack one (then it is 0)."""
    if value is None:
        if not last:
            raise SpecError("params", f"{name}: a hidden layer without a bias (Linear(bias=False)); milpland's "
                                      "hidden units have biases")
        return np.zeros(width)
    b = np.asarray(value, dtype=float).reshape(-1)
    if b.size == 1 and width > 1:
        b = np.full(width, b[0])
    if b.shape != (width,):
        raise SpecError("params", f"{name}: expected {width} values (one per unit), got shape {np.shape(value)}")
    _finite(b, name)
    return b


def _finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        raise SpecError("params", f"{name} holds non-finite values (nan or inf)")
    check_magnitude(arr, f"params {name}")


def _params(W: list, b: list) -> DeepParams:
    for l in range(1, len(W)):
        if W[l].shape[1] != W[l - 1].shape[0]:
            raise SpecError("params", f"layer {l} takes {W[l].shape[1]} inputs but layer {l - 1} has "
                                      f"{W[l - 1].shape[0]} units")
    return DeepParams(tuple(W), tuple(b))


def _activation_from_metadata(text: str | None) -> Activation | None:
    if text is None:
        return None
    try:
        obj = json.loads(text)
        return Activation(str(obj["name"]), tuple(map(float, obj["breakpoints"])), tuple(map(float, obj["slopes"])),
                          tuple(map(float, obj["intercepts"])))
    except (ValueError, KeyError, TypeError):
        raise SpecError("params", f"metadata {ACTIVATION_METADATA} is not an activation description") from None


def _describe(act: Activation | None) -> str | None:
    return None if act is None else activation_text(act)
