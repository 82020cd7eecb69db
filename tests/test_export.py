"""Exported MILPs, read back from disk by HiGHS, against the independent brute force."""

from __future__ import annotations

import highspy
import pytest

from milpland.cli import main
from milpland.instance.spec import spec_from_dict
from milpland.search.export import export_model
from tests.bruteforce import brute_force_global


def tiny_spec(loss: str, seed: int):
    return spec_from_dict({
        "name": f"export-{loss}-{seed}",
        "data": {"generator": "random_labels", "n": 6, "d": 1, "seed": seed},
        "network": {"hidden": [2], "activation": "relu"},
        "loss": {"kind": loss},
        "box": {"weight": 5.0},
    })


def solve_file(path) -> tuple[float, float]:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 1e-9)
    h.readModel(str(path))
    h.run()
    info = h.getInfo()
    return info.objective_function_value, info.mip_dual_bound


def brute(spec):
    return brute_force_global(spec.X, spec.y, spec.network.activation, spec.loss, spec.box.weight,
                              spec.box.output, spec.network.output_bias, width=spec.width)


@pytest.mark.parametrize("seed", [0, 1])
def test_exported_absolute_milp_attains_the_brute_force_minimum(tmp_path, seed):
    spec = tiny_spec("absolute", seed)
    paths = export_model(spec, out_prefix=tmp_path / "m", fmt="mps")
    assert len(paths) == spec.width + 1
    best = min(solve_file(p)[0] for p in paths)
    expected = brute(spec).risk
    assert best == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_exported_squared_master_is_a_lower_bound(tmp_path):
    spec = tiny_spec("squared", 3)
    paths = export_model(spec, out_prefix=tmp_path / "m", fmt="lp", cuts=21)
    assert all("LOWER BOUND" in p.read_text().splitlines()[3] for p in paths)  # the header says what it is
    bound = min(solve_file(p)[0] for p in paths)
    expected = brute(spec).risk
    assert bound <= expected + 1e-9
    assert bound >= 0.5 * expected  # 21 tangents per sample are far from useless


def test_export_command_writes_files_and_rejects_bad_cuts(tmp_path, capsys):
    spec_path = tmp_path / "s.toml"
    spec_path.write_text('name = "s"\n[data]\nx = [[0.0], [1.0], [2.0]]\ny = [0.0, 1.0, 0.0]\n[network]\nhidden = [1]\n')
    assert main(["export", str(spec_path), "--out", str(tmp_path / "out" / "s")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s-pos0.mps", "s-pos1.mps"]
    assert main(["export", str(spec_path), "--cuts", "1"]) == 2
    assert "--cuts must be at least 2" in capsys.readouterr().err


def test_cli_method_and_format_lists_match_the_library():
    from milpland.commands.bench import METHOD_NAMES
    from milpland.runs.bench import METHODS

    assert tuple(METHODS) == METHOD_NAMES
