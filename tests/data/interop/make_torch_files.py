"""Make the PyTorch-written test files of tests/test_interop.py (run where torch is installed;
the dynamo exporter also needs onnxscript):

    python tests/data/interop/make_torch_files.py

For each seeded nn.Sequential below (float32, as torch trains) it writes, next to this script,
NAME.onnx (torch.onnx.export with the TorchScript exporter, dynamo=False), NAME-dynamo.onnx (the
torch.export-based exporter, the default since torch 2.9; skipped without onnxscript),
NAME.safetensors (safetensors.torch.save_file of the state dict) and NAME.pt (torch.save of the
state dict), and records in expected.json the architecture, fixed inputs and the outputs torch
computes for them.  test_files_written_by_pytorch_are_read_correctly checks that milpland reads
every file as a network whose numpy forward pass reproduces torch's outputs.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
nn = torch.nn


def models() -> dict:
    """name -> (module, spec-like description); seeded so the files are reproducible."""
    torch.manual_seed(0)
    return {
        "relu-2-3-1": (nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)),
                       {"d": 2, "hidden": [3], "activation": "relu", "output_bias": True}),
        "leaky-2-4-3-1-nobias": (nn.Sequential(nn.Linear(2, 4), nn.LeakyReLU(0.05), nn.Linear(4, 3),
                                               nn.LeakyReLU(0.05), nn.Linear(3, 1, bias=False)),
                                 {"d": 2, "hidden": [4, 3], "activation": "leaky_relu", "alpha": 0.05,
                                  "output_bias": False}),
        "hardtanh-1-3-1": (nn.Sequential(nn.Flatten(), nn.Linear(1, 3), nn.Hardtanh(), nn.Dropout(0.1),
                                         nn.Linear(3, 1)),
                           {"d": 1, "hidden": [3], "activation": "hardtanh", "output_bias": True}),
    }


def export(name: str, net, x) -> list[str]:
    files = [f"{name}.onnx", f"{name}.safetensors", f"{name}.pt"]
    torch.onnx.export(net, (x,), str(HERE / files[0]), input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}}, dynamo=False)
    save_file(net.state_dict(), str(HERE / files[1]))
    torch.save(net.state_dict(), HERE / files[2])
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's operator library)
    except ImportError:
        return files
    program = torch.onnx.export(net, (x,), dynamo=True, input_names=["input"], output_names=["output"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},))
    program.save(str(HERE / f"{name}-dynamo.onnx"))
    return files + [f"{name}-dynamo.onnx"]


def main() -> None:
    expected = {"torch": torch.__version__, "models": {}}
    for name, (net, arch) in models().items():
        net.eval()
        x = torch.randn(16, arch["d"], generator=torch.Generator().manual_seed(1)) * 2
        with torch.no_grad():
            y = net(x)[:, 0]
        files = export(name, net, x)
        expected["models"][name] = dict(arch, files=files, x=x.tolist(), y=y.tolist())
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
