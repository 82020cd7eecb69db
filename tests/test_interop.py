"""Weights from the deep-learning ecosystem: .onnx, .safetensors, .pt (issue 16 item 3).

The ONNX graphs here are built node by node with onnx.helper (as torch.onnx.export lays them
out), not by milpland's writer, and the loaded network is checked twice: its weights equal the
arrays put into the file, and milpland's numpy forward pass equals the output of
onnx.reference.ReferenceEvaluator -- an independent implementation of the operators -- on
random inputs.  The state dicts are written by safetensors' own numpy API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("safetensors")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from milpland.errors import MilplandError  # noqa: E402
from milpland.instance import activations as acts  # noqa: E402
from milpland.instance.params_io import load_params, load_params_for_spec, write_params  # noqa: E402
from milpland.instance.spec import load_spec  # noqa: E402
from milpland.instance.weights_formats import read_network  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ESC = ROOT / "models" / "papers" / "escape-neuron-relu.toml"
NARROW = ROOT / "models" / "papers" / "escape-narrow.json"
TORCH_FILES = ROOT / "tests" / "data" / "interop"

# name -> (milpland activation, the ONNX node(s) torch exports for it)
ACTIVATIONS = {
    "relu": (acts.relu(), ("Relu", {})),
    "leaky": (acts.leaky_relu(0.1), ("LeakyRelu", {"alpha": 0.1})),
    "hardtanh": (acts.hardtanh(), ("Clip", {})),
}
SPEC_ACTIVATION = {"relu": 'activation = "relu"', "leaky": 'activation = "leaky_relu"\nalpha = 0.1',
                   "hardtanh": 'activation = "hardtanh"'}


# --- building files independently of milpland's writers ----------------------------------------

def random_layers(rng, d: int, hidden, *, output_bias: bool = True) -> list[tuple[np.ndarray, np.ndarray | None]]:
    widths = [d, *hidden, 1]
    layers = []
    for l, (m_in, m_out) in enumerate(zip(widths, widths[1:])):
        W = rng.normal(size=(m_out, m_in))
        b = rng.normal(size=m_out) if (l < len(hidden) or output_bias) else None
        layers.append((W, b))
    return layers


def onnx_graph(layers, kind: str, *, style: str = "gemm", dtype=np.float32, noise: bool = False):
    """The graph of nn.Sequential(Linear, act, ..., Linear): Gemm(transB=1), or MatMul by a Transpose
    of the weight plus Add; activations Relu / LeakyRelu / Clip(min, max inputs: initializers, or
    CastLike of Constant nodes); Identity and Flatten nodes sprinkled in when ``noise``."""
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    nodes, inits, current = [], [], "input"
    if noise:
        nodes.append(helper.make_node("Flatten", [current], ["flat"], axis=1))
        current = "flat"
    for l, (W, b) in enumerate(layers):
        i, out = 2 * l, f"/{2 * l}/out"
        inits.append(numpy_helper.from_array(W.astype(dtype), f"{i}.weight"))
        if b is not None:
            inits.append(numpy_helper.from_array(b.astype(dtype), f"{i}.bias"))
        if style == "gemm":
            nodes.append(helper.make_node("Gemm", [current, f"{i}.weight"] + ([f"{i}.bias"] if b is not None else []),
                                          [out], alpha=1.0, beta=1.0, transB=1, name=f"/{i}/Gemm"))
        else:
            nodes.append(helper.make_node("Transpose", [f"{i}.weight"], [f"/{i}/Wt"], perm=[1, 0]))
            mm = f"/{i}/MatMul" if b is not None else out
            nodes.append(helper.make_node("MatMul", [current, f"/{i}/Wt"], [mm], name=f"/{i}/MatMul"))
            if b is not None:
                nodes.append(helper.make_node("Add", [mm, f"{i}.bias"], [out], name=f"/{i}/Add"))
        current = out
        if l < len(layers) - 1:
            op, attrs = ACTIVATIONS[kind][1]
            inputs = [current]
            if op == "Clip" and style == "gemm":  # bounds as initializers (torch.onnx.export, dynamo=False)
                inits += [numpy_helper.from_array(np.array(v, dtype=dtype), f"/{i + 1}/{n}")
                          for v, n in ((-1.0, "min"), (1.0, "max"))]
                inputs += [f"/{i + 1}/min", f"/{i + 1}/max"]
            elif op == "Clip":  # bounds as Constant nodes cast like the input (the dynamo exporter)
                for v, n in ((-1.0, "min"), (1.0, "max")):
                    nodes.append(helper.make_node("Constant", [], [f"/{i + 1}/{n}_c"], value_float=v))
                    nodes.append(helper.make_node("CastLike", [f"/{i + 1}/{n}_c", current], [f"/{i + 1}/{n}"]))
                inputs += [f"/{i + 1}/min", f"/{i + 1}/max"]
            nodes.append(helper.make_node(op, inputs, [f"/{i + 1}/act"], name=f"/{i + 1}/{op}", **attrs))
            current = f"/{i + 1}/act"
            if noise:
                nodes.append(helper.make_node("Identity", [current], [f"/{i + 1}/id"]))
                current = f"/{i + 1}/id"
    nodes.append(helper.make_node("Identity", [current], ["output"]))
    d = layers[0][0].shape[1]
    graph = helper.make_graph(nodes, "torch_jit", [helper.make_tensor_value_info("input", elem, ["batch", d])],
                              [helper.make_tensor_value_info("output", elem, ["batch", 1])], inits)
    model = helper.make_model(graph, producer_name="pytorch", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def state_dict(layers, dtype=np.float32) -> dict:
    out = {}
    for l, (W, b) in enumerate(layers):
        out[f"{2 * l}.weight"] = W.astype(dtype)
        if b is not None:
            out[f"{2 * l}.bias"] = b.astype(dtype)
    return out


def write_spec(path: Path, *, d: int, hidden, kind: str = "relu", output_bias: bool = True, n: int = 5,
               seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).round(3).tolist()
    y = rng.normal(size=n).round(3).tolist()
    path.write_text(f'name = "interop"\n[data]\nx = {X}\ny = {y}\n[network]\nhidden = {list(hidden)}\n'
                    f"{SPEC_ACTIVATION[kind]}\noutput_bias = {str(output_bias).lower()}\n"
                    '[loss]\nkind = "squared"\n[box]\nweight = 50.0\n')
    return path


def run_cli(*args, timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "milpland.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def reference_output(model, X: np.ndarray, dtype) -> np.ndarray:
    return np.asarray(ReferenceEvaluator(model).run(None, {"input": X.astype(dtype)})[0], dtype=float)[:, 0]


# --- reading ONNX --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("style", ["gemm", "matmul"])
@pytest.mark.parametrize("hidden", [(3,), (4, 2)])
@pytest.mark.parametrize("kind", list(ACTIVATIONS))
def test_onnx_graph_reads_back_its_weights_and_its_function(tmp_path, kind, hidden, style, dtype):
    rng = np.random.default_rng(len(hidden) * 10 + len(kind))
    d = 2
    layers = random_layers(rng, d, hidden)
    model = onnx_graph(layers, kind, style=style, dtype=dtype, noise=(style == "matmul"))
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    act = ACTIVATIONS[kind][0]
    params = load_params(path, d=d, hidden=hidden, outputs=1, activation=act, output_bias=True)
    for l, (W, b) in enumerate(layers):  # the numbers put into the file, at the file's precision
        assert np.array_equal(params.W[l], W.astype(dtype).astype(float))
        assert np.array_equal(params.b[l], b.astype(dtype).astype(float))
    X = rng.normal(scale=2.0, size=(200, d))
    X = X.astype(dtype).astype(float)
    expected = reference_output(model, X, dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    # the activation as the file holds it: ONNX attributes are float32 (LeakyRelu's alpha 0.1f)
    file_act = read_network(path).activation
    np.testing.assert_allclose(params.forward(X, file_act), expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(params.forward(X, act), expected, rtol=1e-5, atol=1e-5)  # the spec's alpha 0.1


def save_graph(path: Path, nodes, inits, d: int, opset: int):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.DOUBLE, ["n", d])],
                              [helper.make_tensor_value_info("output", TensorProto.DOUBLE, ["n", 1])],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return model


def test_onnx_clip_with_attributes(tmp_path):
    """Clip with min/max attributes (opset 6, where Gemm broadcasts C by an attribute)."""
    (W0, b0), (W1, b1) = random_layers(np.random.default_rng(3), 1, (2,))
    nodes = [helper.make_node("Gemm", ["input", "0.weight", "0.bias"], ["h"], transB=1, broadcast=1),
             helper.make_node("Clip", ["h"], ["a"], min=-1.0, max=1.0),
             helper.make_node("Gemm", ["a", "2.weight", "2.bias"], ["output"], transB=1, broadcast=1)]
    path = tmp_path / "clip6.onnx"
    model = save_graph(path, nodes, {"0.weight": W0, "0.bias": b0, "2.weight": W1, "2.bias": b1}, 1, 6)
    params = load_params(path, d=1, hidden=(2,), outputs=1, activation=acts.hardtanh(), output_bias=True)
    assert np.array_equal(params.W[0], W0) and np.array_equal(params.W[1], W1) and np.array_equal(params.b[1], b1)
    X = np.linspace(-3, 3, 41).reshape(-1, 1)
    np.testing.assert_allclose(params.forward(X, acts.hardtanh()), reference_output(model, X, np.float64),
                               rtol=1e-13, atol=1e-13)


def test_onnx_matmul_without_bias_is_a_net_without_output_bias(tmp_path):
    """Linear(bias=False) last: a MatMul by the pre-transposed weight with no Add (torch's legacy export)."""
    (W0, b0), (W1, _) = random_layers(np.random.default_rng(4), 2, (3,), output_bias=False)
    nodes = [helper.make_node("Gemm", ["input", "0.weight", "0.bias"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("MatMul", ["a", "onnx::MatMul_7"], ["output"])]
    path = tmp_path / "nobias.onnx"
    model = save_graph(path, nodes, {"0.weight": W0, "0.bias": b0, "onnx::MatMul_7": W1.T.copy()}, 2, 17)
    params = load_params(path, d=2, hidden=(3,), outputs=1, activation=acts.relu(), output_bias=False)
    assert np.array_equal(params.W[1], W1) and params.b[1].tolist() == [0.0]
    X = np.random.default_rng(0).normal(size=(30, 2))
    np.testing.assert_allclose(params.forward(X, acts.relu()), reference_output(model, X, np.float64),
                               rtol=1e-13, atol=1e-13)
    with pytest.raises(MilplandError, match="no output bias in the file"):
        load_params(path, d=2, hidden=(3,), outputs=1, activation=acts.relu(), output_bias=True)


def test_onnx_gemm_with_alpha_beta_and_untransposed_weight(tmp_path):
    """Gemm(x, B, C; alpha = 2, beta = 0.5, transB = 0) = 2 x B + 0.5 C: W = 2 B', b = 0.5 C."""
    (W0, b0), (W1, b1) = random_layers(np.random.default_rng(6), 2, (3,))
    nodes = [helper.make_node("Gemm", ["input", "B0", "C0"], ["h"], alpha=2.0, beta=0.5),
             helper.make_node("LeakyRelu", ["h"], ["a"], alpha=0.25),
             helper.make_node("Gemm", ["a", "B1", "C1"], ["output"], transB=1)]
    path = tmp_path / "gemm.onnx"
    model = save_graph(path, nodes, {"B0": W0.T.copy(), "C0": b0, "B1": W1, "C1": b1}, 2, 17)
    act = acts.leaky_relu(0.25)
    params = load_params(path, d=2, hidden=(3,), outputs=1, activation=act)
    assert np.array_equal(params.W[0], 2.0 * W0) and np.array_equal(params.b[0], 0.5 * b0)
    X = np.random.default_rng(1).normal(size=(40, 2))
    np.testing.assert_allclose(params.forward(X, act), reference_output(model, X, np.float64), rtol=1e-13, atol=1e-13)


def test_missing_optional_packages_are_one_line_errors(monkeypatch, tmp_path):
    from milpland.instance.params_io import check_params_file

    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(MilplandError, match=r"^--params-out: writing \.onnx needs the onnx package, which is not "
                                            r"installed: pip install 'milpland\[interop\]'$"):
        check_params_file("--params-out", tmp_path / "m.onnx", acts.relu())
    (tmp_path / "m.safetensors").write_bytes(b"")
    with pytest.raises(MilplandError, match=r"reading \.safetensors needs the safetensors package"):
        load_params(tmp_path / "m.safetensors")


# --- reading state dicts ------------------------------------------------------------------------

@pytest.mark.parametrize("hidden", [(3,), (2, 3)])
def test_safetensors_state_dict_reads_back_its_weights(tmp_path, hidden):
    rng = np.random.default_rng(7)
    layers = random_layers(rng, 2, hidden)
    path = tmp_path / "model.safetensors"
    save_file(state_dict(layers), str(path))
    params = load_params(path, d=2, hidden=hidden, outputs=1, activation=acts.relu(), output_bias=True)
    for l, (W, b) in enumerate(layers):
        assert np.array_equal(params.W[l], W.astype(np.float32).astype(float))
        assert np.array_equal(params.b[l], b.astype(np.float32).astype(float))
    # f(x) by hand for one hidden layer: v . relu(W1 x + b1) + c
    if len(hidden) == 1:
        x = np.array([0.3, -1.2])
        (W1, b1), (v, c) = [(W.astype(np.float32).astype(float), b.astype(np.float32).astype(float))
                            for W, b in layers]
        by_hand = float(v[0] @ np.maximum(W1 @ x + b1, 0.0) + c[0])
        assert params.forward(x.reshape(1, -1), acts.relu())[0] == pytest.approx(by_hand, rel=1e-14)


def test_safetensors_under_a_module_prefix(tmp_path):
    """self.net = nn.Sequential(...): keys net.0.weight, ... are read as the Sequential's."""
    layers = random_layers(np.random.default_rng(1), 1, (2,))
    path = tmp_path / "prefixed.safetensors"
    save_file({f"net.{k}": v for k, v in state_dict(layers).items()}, str(path))
    params = load_params(path, d=1, hidden=(2,), outputs=1)
    assert np.array_equal(params.W[1], layers[1][0].astype(np.float32).astype(float))


# --- round trips through the commands ----------------------------------------------------------

def test_solve_params_out_round_trips_onnx_and_safetensors(tmp_path):
    """The minimiser written as .json, .onnx and .safetensors reads back as the same numbers, and
    the written .onnx computes, in ReferenceEvaluator, the fit that numpy computes from the JSON."""
    spec_path = ROOT / "models" / "tent-relu-w2.toml"
    outs = {ext: tmp_path / f"min{ext}" for ext in (".json", ".onnx", ".safetensors", ".npz")}
    for out in outs.values():
        res = run_cli("solve", spec_path, "--params-out", out, "--time-limit", 60)
        assert res.returncode == 0, res.stderr
    obj = json.loads(outs[".json"].read_text())
    spec = load_spec(spec_path)
    reference = load_params_for_spec(outs[".json"], spec)
    for ext in (".onnx", ".safetensors", ".npz"):
        got = load_params_for_spec(outs[ext], spec)
        assert all(np.array_equal(a, b) for a, b in zip(got.W + got.b, reference.W + reference.b)), ext
    model = onnx.load(str(outs[".onnx"]))
    f = reference_output(model, spec.X, np.float64)
    hidden = np.maximum(spec.X @ np.asarray(obj["W1"]).T + np.asarray(obj["b1"]), 0.0)
    by_json = hidden @ np.asarray(obj["v"]) + obj["c"]
    np.testing.assert_allclose(f, by_json, rtol=1e-13, atol=1e-13)
    assert float(np.mean((f - spec.y) ** 2)) == pytest.approx(1 / 8, rel=1e-9)  # the tent's global minimum


def test_landscape_params_out_writes_every_minimum(tmp_path):
    out = tmp_path / "lm.safetensors"
    res = run_cli("landscape", ESC, "--params-out", out, "--format", "json")
    assert res.returncode == 0, res.stderr
    obj = json.loads(res.stdout)
    spec = load_spec(ESC)
    assert obj["n_minima"] >= 2
    for rank, m in enumerate(obj["minima"], start=1):
        got = load_params_for_spec(tmp_path / f"lm-{rank}.safetensors", spec)
        assert np.array_equal(got.W[0], np.asarray(m["params"]["W1"]).reshape(got.W[0].shape))
        assert np.array_equal(got.W[1][0], np.asarray(m["params"]["v"])) and got.b[1][0] == m["params"]["c"]
        assert float(np.mean((got.forward(spec.X, acts.relu()) - spec.y) ** 2)) == pytest.approx(m["risk"], rel=1e-9)
    assert not (tmp_path / f"lm-{obj['n_minima'] + 1}.safetensors").exists()


def test_certify_of_an_onnx_local_minimum_equals_the_json_certificate(tmp_path):
    """The split embedding of the escape-narrow point is a local minimum (Wu, Simsek & Ged; see
    test_construct_cli); given as .onnx it gets the same certificate as given as JSON."""
    results = {}
    for ext in (".json", ".onnx"):
        out = tmp_path / f"split{ext}"
        made = run_cli("construct", "embed", ESC, "--params", NARROW, "--how", "split", "--unit", 0, "--lam", 0.3,
                       "--out", out)
        assert made.returncode == 0, made.stderr
        res = run_cli("certify", ESC, "--params", out, "--format", "json")
        assert res.returncode == 0, res.stderr
        results[ext] = json.loads(res.stdout)
    a, b = results[".json"], results[".onnx"]
    assert a["verdict"] == "local_min" and a["certificate"] == "boundary"
    for key in set(a) - {"seconds"}:
        assert b[key] == a[key], key
    # the point: 0.05 + 0.3 * 0.03 relu(4 - x) + 0.7 * 0.03 relu(4 - x), risk 0.728 / 6 (escape-neuron-relu.toml)
    assert a["risk"] == pytest.approx(0.728 / 6, rel=1e-12)


# --- mismatches: one line naming both sides -------------------------------------------------------

MISMATCHES = {
    # name: (file: hidden, kind, output bias, d), (spec: hidden, kind, output bias, d), words in the message
    "activation": (((3,), "leaky", True, 2), ((3,), "relu", True, 2), ["LeakyRelu(alpha=0.1)", "relu", "leaky_relu"]),
    "leaky-alpha": (((3,), "leaky", True, 2), ((3,), "leaky", True, 2), ["alpha=0.2", "alpha = 0.1"]),
    "hardtanh": (((3,), "hardtanh", True, 2), ((3,), "relu", True, 2), ["Clip(min=-1, max=1)", "relu", "hardtanh"]),
    "width": (((4,), "relu", True, 2), ((3,), "relu", True, 2), ["[4]", "hidden = [3]"]),
    "layers": (((3, 3), "relu", True, 2), ((3,), "relu", True, 2), ["2 hidden layer(s)", "hidden = [3]"]),
    "input-dim": (((3,), "relu", True, 3), ((3,), "relu", True, 2), ["input dimension 3", "d = 2"]),
    "no-output-bias": (((3,), "relu", False, 2), ((3,), "relu", True, 2), ["no output bias", "output_bias = true"]),
    "output-bias": (((3,), "relu", True, 2), ((3,), "relu", False, 2), ["an output bias", "output_bias = false"]),
}


# a torch state dict does not record its activation: the activation cases are .onnx only
CASES = [(name, ext) for name in MISMATCHES for ext in (".onnx", ".safetensors")
         if not (ext == ".safetensors" and name in ("activation", "leaky-alpha", "hardtanh"))]


@pytest.mark.parametrize("name, ext", CASES)
def test_architecture_mismatch_is_one_line_naming_both_sides(tmp_path, name, ext):
    (hidden, kind, bias, d), (s_hidden, s_kind, s_bias, s_d), words = MISMATCHES[name]
    layers = random_layers(np.random.default_rng(5), d, hidden, output_bias=bias)
    path = tmp_path / f"model{ext}"
    if ext == ".onnx":
        model = onnx_graph(layers, kind)
        if name == "leaky-alpha":
            [node] = [n for n in model.graph.node if n.op_type == "LeakyRelu"]
            node.attribute[0].f = 0.2
        onnx.save(model, str(path))
    else:
        save_file(state_dict(layers), str(path))
    spec = write_spec(tmp_path / "spec.toml", d=s_d, hidden=s_hidden, kind=s_kind, output_bias=s_bias)
    res = run_cli("certify", spec, "--params", path, "--no-global")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert str(path) in lines[0] and "in the file" in lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_matching_safetensors_from_milpland_checks_its_recorded_activation(tmp_path):
    """milpland's own .safetensors records the activation in its metadata, so it is checked too."""
    spec = write_spec(tmp_path / "leaky.toml", d=1, hidden=(2,), kind="leaky")
    out = tmp_path / "p.safetensors"
    assert run_cli("construct", "yun-step1", spec, "--out", out).returncode == 0
    relu_spec = write_spec(tmp_path / "relu.toml", d=1, hidden=(2,), kind="relu")
    res = run_cli("certify", relu_spec, "--params", out, "--no-global")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "activation leaky_relu (alpha = 0.1) in the file but the spec says relu" in res.stderr
    assert run_cli("certify", spec, "--params", out, "--no-global").returncode == 0


@pytest.mark.parametrize("content, words", [
    (b"not a model", "not an ONNX model"),
])
def test_damaged_files_are_one_line_errors(tmp_path, content, words):
    spec = write_spec(tmp_path / "s.toml", d=2, hidden=(3,))
    for ext, expected in ((".onnx", words), (".safetensors", "not a readable safetensors file")):
        path = tmp_path / f"bad{ext}"
        path.write_bytes(content)
        res = run_cli("certify", spec, "--params", path, "--no-global")
        assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
        assert expected in res.stderr


def test_unsupported_graphs_are_named(tmp_path):
    """A Sigmoid between the layers and two Linear layers without an activation are refused by name."""
    layers = random_layers(np.random.default_rng(2), 2, (3,))
    model = onnx_graph(layers, "relu")
    [relu] = [n for n in model.graph.node if n.op_type == "Relu"]
    relu.op_type = "Sigmoid"
    path = tmp_path / "sigmoid.onnx"
    onnx.save(model, str(path))
    with pytest.raises(MilplandError, match="unsupported ONNX operator Sigmoid"):
        load_params(path, d=2, hidden=(3,))
    relu.op_type = "Identity"
    onnx.save(model, str(path))
    with pytest.raises(MilplandError, match="expected Linear, activation, Linear"):
        load_params(path, d=2, hidden=(3,))


def test_onnx_cannot_hold_two_slope_and_says_so_before_the_solve(tmp_path):
    spec = tmp_path / "two.toml"
    write_spec(spec, d=1, hidden=(2,))
    spec.write_text(spec.read_text().replace('activation = "relu"', 'activation = "two_slope"\ns_plus = 2.0\n'
                                             's_minus = 0.5'))
    res = run_cli("solve", spec, "--params-out", tmp_path / "m.onnx")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == ("milpland solve: error: --params-out: activation two_slope (s_plus = 2, "
                                  "s_minus = 0.5) has no single ONNX operator (Relu, LeakyRelu, Clip); "
                                  "write .json, .npz or .safetensors instead")
    assert not (tmp_path / "m.onnx").exists()


# --- PyTorch (optional) ---------------------------------------------------------------------------

def test_without_torch_the_api_says_how_to_get_it(monkeypatch, tmp_path):
    import milpland.interop as interop
    from milpland.instance.params_io import load_params as load

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(MilplandError, match="needs PyTorch, which is not installed: pip install torch"):
        interop.to_torch(load(NARROW), "relu")
    with pytest.raises(MilplandError, match="needs PyTorch"):
        interop.from_torch(object())
    (tmp_path / "m.pt").write_bytes(b"")
    with pytest.raises(MilplandError, match=r"reading \.pt needs the torch package"):
        load(tmp_path / "m.pt")


def test_torch_round_trip_when_torch_is_installed(tmp_path):
    torch = pytest.importorskip("torch")
    import milpland.interop as interop

    spec = load_spec(write_spec(tmp_path / "s.toml", d=2, hidden=(3,), kind="leaky"))
    layers = random_layers(np.random.default_rng(4), 2, (3,))
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.LeakyReLU(0.1), torch.nn.Linear(3, 1)).double()
    with torch.no_grad():
        for lin, (W, b) in zip((net[0], net[2]), layers):
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
    params = interop.from_torch(net, spec)
    assert all(np.array_equal(p, W) for p, (W, _) in zip(params.W, layers))
    X = np.random.default_rng(0).normal(size=(50, 2))
    np.testing.assert_allclose(params.forward(X, spec.network.activation),
                               net(torch.from_numpy(X)).detach().numpy()[:, 0], rtol=1e-12, atol=1e-12)
    back = interop.to_torch(params, spec)
    assert torch.equal(back[0].weight, net[0].weight) and isinstance(back[1], torch.nn.LeakyReLU)
    torch.save(net.state_dict(), tmp_path / "m.pt")
    read = load_params_for_spec(tmp_path / "m.pt", spec)
    assert all(np.array_equal(a, b) for a, b in zip(read.W + read.b, params.W + params.b))
    write_params(params, tmp_path / "w.pt", activation=spec.network.activation)  # milpland's .pt writer
    loaded = torch.load(tmp_path / "w.pt", weights_only=True)
    assert sorted(loaded) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert torch.equal(loaded["2.weight"], net[2].weight.detach())


TORCH_EXPECTED = json.loads((TORCH_FILES / "expected.json").read_text())


@pytest.mark.parametrize("name, file", [(n, f) for n, m in TORCH_EXPECTED["models"].items() for f in m["files"]])
def test_files_written_by_pytorch_are_read_correctly(name, file):
    """Files made by torch.onnx.export (both exporters), safetensors.torch.save_file and torch.save
    (tests/data/interop/make_torch_files.py, torch 2.14): read against the Sequential's architecture,
    milpland's forward pass reproduces the outputs torch computed (float32, hence the tolerance)."""
    if file.endswith(".pt"):
        pytest.importorskip("torch")
    model = TORCH_EXPECTED["models"][name]
    act = {"relu": acts.relu(), "hardtanh": acts.hardtanh(),
           "leaky_relu": acts.leaky_relu(model.get("alpha", 0.01))}[model["activation"]]
    params = load_params(TORCH_FILES / file, d=model["d"], hidden=model["hidden"], outputs=1, activation=act,
                         output_bias=model["output_bias"])
    X = np.asarray(model["x"])
    np.testing.assert_allclose(params.forward(X, act), model["y"], rtol=1e-5, atol=1e-6)
    if file.endswith(".onnx"):  # the exporters record the activation: a relu spec must refuse leaky / hardtanh
        wrong = acts.leaky_relu(0.3) if model["activation"] == "relu" else acts.relu()
        with pytest.raises(MilplandError, match="in the file but the spec says"):
            load_params(TORCH_FILES / file, d=model["d"], hidden=model["hidden"], outputs=1, activation=wrong)
