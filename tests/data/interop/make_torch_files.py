"""Make the PyTorch-written test files of tests/test_interop.py (run where torch is installed):

    python tests/data/interop/make_torch_files.py

writes, next to this script, relu-2-3-1.onnx (torch.onnx.export, the TorchScript exporter),
relu-2-3-1.safetensors (safetensors.torch.save_file of the state dict) and expected.json (fixed
inputs and the outputs torch computes for them), all of one seeded nn.Sequential(Linear(2, 3),
ReLU(), Linear(3, 1)) in float32.  test_files_written_by_pytorch_are_read_correctly checks that
milpland reads both files as a network whose numpy forward pass reproduces torch's outputs.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent


def main() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)).eval()
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    torch.onnx.export(net, (x,), str(HERE / "relu-2-3-1.onnx"), input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}}, dynamo=False)
    save_file(net.state_dict(), str(HERE / "relu-2-3-1.safetensors"))
    with torch.no_grad():
        y = net(x)[:, 0]
    (HERE / "expected.json").write_text(json.dumps({"torch": torch.__version__, "x": x.tolist(), "y": y.tolist()}))


if __name__ == "__main__":
    main()
