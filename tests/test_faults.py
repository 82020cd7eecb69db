"""Fault injection: bad input, broken promises and limits (issue 14), one test per item.

Each test asserts the behaviour asked for with numbers obtained here: finite-difference
gradients, the hand-derived tent optimum 1/8 (README), and the exact wording a user sees.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from milpland import load_spec, spec_from_dict
from milpland.cli import main
from milpland.errors import SpecError
from milpland.instance.deep import DeepParams
from milpland.instance.params_io import load_params_for_spec
from milpland.points.certify import certify_point

ROOT = Path(__file__).resolve().parent.parent
TENT = ROOT / "models" / "tent-relu-w2.toml"
TENT_OPTIMUM = 0.125  # hand-derived in README.md


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *fragments: str) -> None:
    """Exit 2, one line on stderr, no traceback, and every fragment in it."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- 1. certify honours output_bias = false -------------------------------------------------

BIAS_FREE = {
    "name": "bias-free",
    "data": {"x": [0.75, -0.25, 0.5, -0.25, 0.75], "y": [-0.217, -0.304, -2.142, 0.895, -0.347]},
    "network": {"hidden": [2], "activation": "leaky_relu", "alpha": 0.3, "output_bias": False},
    "loss": {"kind": "squared", "reduction": "half_sum"},
}
POINT = DeepParams((np.array([[-3.0793380384521782], [-3.0793380384521782]]), np.array([[1.0, 0.0]])),
                   (np.array([-0.5313604283280604, -0.5313604283280604]), np.array([0.0])))


def half_sse(theta: np.ndarray, X, y, alpha: float) -> float:
    """½ Σ (f - y)² of the 1-2-1 leaky-ReLU network without output bias, θ = (w1, w2, b1, b2, v1, v2)."""
    w, b, v = theta[0:2], theta[2:4], theta[4:6]
    z = np.outer(X, w) + b
    f = np.where(z > 0, z, alpha * z) @ v
    return 0.5 * float(np.sum((f - y) ** 2))


def test_item1_bias_free_stationary_point_is_not_called_not_stationary():
    spec = spec_from_dict(BIAS_FREE)
    X, y = spec.X[:, 0], spec.y
    theta = np.array([-3.0793380384521782] * 2 + [-0.5313604283280604] * 2 + [1.0, 0.0])
    h = 1e-6
    grad = np.array([(half_sse(theta + h * e, X, y, 0.3) - half_sse(theta - h * e, X, y, 0.3)) / (2 * h)
                     for e in np.eye(6)])
    assert np.max(np.abs(grad)) < 1e-6  # stationary in every parameter the network has
    residual_sum = float(np.sum(POINT.forward(spec.X, spec.network.activation) - y))
    assert abs(residual_sum) > 0.2  # dL/dc would be 0.266: the old test wrongly required it to vanish

    cert = certify_point(spec, POINT, run_global=False)
    assert cert.verdict != "not_stationary" and cert.stationary is True
    assert "dL/dc" not in cert.reason

    with_bias = spec_from_dict({**BIAS_FREE, "network": {**BIAS_FREE["network"], "output_bias": True}})
    cert = certify_point(with_bias, POINT, run_global=False)  # now c is a parameter and dL/dc = Σ e ≠ 0
    assert cert.verdict == "not_stationary" and f"dL/dc = {residual_sum:.3g}" in cert.reason


# --- 2. no vacuous certificate --------------------------------------------------------------

def test_item2_rel_gap_of_one_or_more_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "solve", ROOT / "models" / "sine-leaky-w3.toml", "--method", "milp",
                           "--rel-gap", 5)
    one_line_error(code, err, "--rel-gap", "below 1")
    spec_file = tmp_path / "gap.toml"
    spec_file.write_text('name = "g"\n[data]\nx = [0.0, 1.0]\ny = [0.0, 1.0]\n[network]\nhidden = [1]\n'
                         '[solve]\nrel_gap = 1.0\n')
    code, _, err = run_cli(capsys, "solve", spec_file)
    one_line_error(code, err, "solve.rel_gap", "below 1")
    with pytest.raises(SpecError, match="solve.rel_gap"):
        load_spec(TENT).with_options(rel_gap=2.0)


def test_item2_a_loose_certificate_says_what_it_proves(capsys):
    code, out, _ = run_cli(capsys, "solve", TENT, "--rel-gap", 0.5, "--format", "json")
    assert code == 0
    obj = json.loads(out)
    assert obj["certified"]
    assert obj["lower_bound"] <= TENT_OPTIMUM + 1e-9 <= obj["risk"] + 2e-9  # the bound is a true bound
    assert obj["risk"] - obj["lower_bound"] <= 0.5 * obj["risk"]
    code, out, _ = run_cli(capsys, "solve", TENT, "--rel-gap", 0.5)
    line = next(l for l in out.splitlines() if l.startswith("certified"))
    assert "within a relative gap of 0.5" in line and "no point in the box has risk below" in line


# --- 3. a params file without c -------------------------------------------------------------

def test_item3_missing_output_bias_is_an_error_not_zero(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"W1": [[1.0], [-1.0]], "b1": [0.0, 1.0], "v": [1.0, 1.0]}))
    code, _, err = run_cli(capsys, "certify", TENT, "--params", path)
    one_line_error(code, err, "params.c", "is required", str(path))
    bias_free = spec_from_dict(BIAS_FREE)  # without an output bias, c may be left out: it is 0
    assert float(load_params_for_spec(path, bias_free).b[-1][0]) == 0.0


# --- 4. values beyond double precision ------------------------------------------------------

@pytest.mark.parametrize("where", ["x", "y", "box", "alpha"])
def test_item4_huge_spec_values_are_refused(tmp_path, capsys, where):
    table = {"name": "huge", "data": {"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0, 1.0]},
             "network": {"hidden": [2], "activation": "leaky_relu", "alpha": 0.1}}
    field = {"x": "data.x", "y": "data.y", "box": "box.weight", "alpha": "network.alpha"}[where]
    if where in ("x", "y"):
        table["data"][where][3] = 1e308
    elif where == "box":
        table["box"] = {"weight": 1e308}
    else:
        table["network"]["alpha"] = 1e300
    with pytest.raises(SpecError, match=field.replace(".", r"\.") + ".*1e\\+12"):
        spec_from_dict(table)


def test_item4_huge_box_flag_and_params_are_refused(tmp_path, capsys):
    code, _, err = run_cli(capsys, "solve", TENT, "--box", 1e308)
    one_line_error(code, err, "--box", "1e+12")
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"W1": [[1e308], [1.0]], "b1": [0.0, 1.0], "v": [1.0, 1.0], "c": 0.0}))
    code, _, err = run_cli(capsys, "certify", TENT, "--params", path)
    one_line_error(code, err, "params.W1", "1e+12")


def test_item4_a_large_box_within_the_limit_still_gives_the_true_minimum(capsys):
    code, out, _ = run_cli(capsys, "solve", TENT, "--box", 1e9, "--format", "json")
    assert code == 0
    obj = json.loads(out)
    assert obj["risk"] == pytest.approx(TENT_OPTIMUM, rel=1e-8)
    assert obj["lower_bound"] <= TENT_OPTIMUM + 1e-12
