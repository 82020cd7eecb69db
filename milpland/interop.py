"""PyTorch in the Python API: `to_torch(params, activation)` and `from_torch(module, spec)`.

The networks are ``nn.Sequential(Linear, act, Linear, act, ..., Linear)`` with one activation
``act`` in {ReLU, LeakyReLU, Hardtanh (ReLU6 included)}; Identity, Flatten and Dropout modules
are skipped (no-ops at inference on a (batch, d) input).  torch is never a dependency of
milpland: it is imported when these functions are called, and its absence is a one-line
MilplandError.  Weight files (.onnx, .safetensors, .pt) are read by ``milpland certify
--params`` without torch (milpland.instance.weights_formats).

    net = to_torch(result.params, spec)          # a float64 nn.Sequential with the same forward pass
    params = from_torch(trained_net, spec)       # DeepParams for certify_point(spec, params)
"""

from __future__ import annotations

import numpy as np

from milpland.errors import MilplandError
from milpland.instance import activations as acts
from milpland.instance import weights_formats as wf
from milpland.instance.activations import Activation
from milpland.instance.deep import DeepParams, as_deep
from milpland.instance.params_io import check_shapes, params_from_json

SKIPPED_MODULES = ("Identity", "Flatten", "Dropout")


def _torch(what: str):
    try:
        import torch
    except ImportError:
        raise MilplandError(f"milpland.interop.{what} needs PyTorch, which is not installed: pip install torch "
                            "(or export the model to .onnx / .safetensors, which milpland reads without it)") from None
    return torch


def to_torch(params, activation, *, output_bias: bool = True, dtype=None):
    """The nn.Sequential(Linear, act, ..., Linear) computing the same function as ``params``.

    params: DeepParams, OneHiddenParams or their JSON; activation: an Activation, an InstanceSpec
    (its activation and output bias are used) or "relu" / "hardtanh"; dtype: torch.float64 unless
    given (then the weights are exactly milpland's)."""
    torch = _torch("to_torch")
    act, output_bias = _activation_of(activation, output_bias)
    deep = params_from_json(params) if isinstance(params, dict) else as_deep(params)
    if not output_bias and np.any(deep.b[-1] != 0.0):
        raise MilplandError(f"to_torch: output_bias = False but the output bias is {float(deep.b[-1][0])!r}")
    dtype = torch.float64 if dtype is None else dtype
    layers = []
    for l, (W, b) in enumerate(zip(deep.W, deep.b)):
        last = l == len(deep.W) - 1
        linear = torch.nn.Linear(W.shape[1], W.shape[0], bias=not last or output_bias, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.asarray(W, dtype=np.float64)))
            if linear.bias is not None:
                linear.bias.copy_(torch.from_numpy(np.asarray(b, dtype=np.float64)))
        layers.append(linear)
        if not last:
            layers.append(_torch_activation(torch, act))
    return torch.nn.Sequential(*layers)


def from_torch(module, spec=None) -> DeepParams:
    """The parameters of an nn.Sequential(Linear, act, ..., Linear) as DeepParams (float64).

    With ``spec`` the architecture is checked against it (layers, widths, input dimension,
    activation, output bias) and a mismatch is a one-line MilplandError naming both sides."""
    torch = _torch("from_torch")
    steps = []
    for name, leaf in _leaves(module):
        steps.append(_module_step(torch, name, leaf))
    steps = [s for s in steps if s is not None]
    net = wf.network_from_steps(steps)
    if spec is not None:
        wf.check_network(net, d=spec.d, hidden=spec.network.hidden, activation=spec.network.activation,
                         output_bias=spec.network.output_bias)
        check_shapes(net.params, d=spec.d, hidden=spec.network.hidden, outputs=1)
    return net.params


def _leaves(module) -> list:
    """The modules without children, in order (nested Sequentials flattened)."""
    return [(name, m) for name, m in module.named_modules() if not list(m.children())]


def _module_step(torch, name: str, m):
    """("linear", W, b) or ("act", Activation, text) for one leaf module (None for a no-op)."""
    nn = torch.nn
    if isinstance(m, nn.Linear):
        W = m.weight.detach().cpu().double().numpy()
        b = None if m.bias is None else m.bias.detach().cpu().double().numpy()
        return ("linear", W, b)
    if isinstance(m, nn.ReLU):
        return ("act", acts.relu(), "ReLU")
    if isinstance(m, nn.LeakyReLU):
        return ("act", acts.leaky_relu(float(m.negative_slope)), f"LeakyReLU({m.negative_slope:g})")
    if isinstance(m, nn.Hardtanh):  # ReLU6 is Hardtanh(0, 6)
        lo, hi = float(m.min_val), float(m.max_val)
        return ("act", wf.clip_activation(lo, hi), f"Hardtanh({lo:g}, {hi:g})")
    if type(m).__name__ in SKIPPED_MODULES:
        return None
    raise MilplandError(f"from_torch: module {name or '(root)'} is {type(m).__name__}; milpland reads "
                        "nn.Sequential(Linear, ReLU | LeakyReLU | Hardtanh, ..., Linear)")


def _activation_of(activation, output_bias: bool) -> tuple[Activation, bool]:
    if isinstance(activation, Activation):
        return activation, output_bias
    if hasattr(activation, "network"):  # an InstanceSpec
        return activation.network.activation, activation.network.output_bias
    named = {"relu": acts.relu, "hardtanh": acts.hardtanh}
    if activation in named:
        return named[activation](), output_bias
    raise MilplandError(f"to_torch: activation must be an Activation, an InstanceSpec, 'relu' or 'hardtanh', "
                        f"got {activation!r}")


def _torch_activation(torch, act: Activation):
    nn = torch.nn
    if wf.same_activation(act, acts.relu()):
        return nn.ReLU()
    if act.homogeneous and act.slopes[1] == 1.0:
        return nn.LeakyReLU(act.slopes[0])
    lo, hi = act.breakpoints[0], act.breakpoints[-1]
    if len(act.breakpoints) == 2 and wf.same_activation(act, wf.clip_activation(lo, hi)):
        return nn.Hardtanh(lo, hi)
    raise MilplandError(f"to_torch: activation {wf.activation_text(act)} has no torch module "
                        "(ReLU, LeakyReLU, Hardtanh)")
