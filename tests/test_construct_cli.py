"""`milpland construct` and `milpland certify` end to end through milpland.cli.main.

Numbers in the output are re-derived here: the written weights go through a plain numpy
forward pass, the descent path is re-evaluated point by point, and the linear fit is numpy's
least squares.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import milpland.cli as cli
from milpland import load_spec

ROOT = Path(__file__).resolve().parent.parent
PAPERS = ROOT / "models" / "papers"
ESC = PAPERS / "escape-neuron-relu.toml"
NARROW = PAPERS / "escape-narrow.json"
KEYS = {"instance", "risk", "verdict", "certificate", "stationary", "cell", "cell_min", "global_risk", "gap",
        "gap_lower_bound", "descent_path"}


@pytest.fixture(autouse=True)
def commands(monkeypatch):
    """certify and construct are registered even before cli.COMMANDS lists them."""
    names = list(cli.COMMANDS) + [c for c in ("certify", "construct") if c not in cli.COMMANDS]
    monkeypatch.setattr(cli, "COMMANDS", names)


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def relu_risk(params: dict, X, y) -> float:
    a = X
    for W, b in zip(params["W"][:-1], params["b"][:-1]):
        a = np.maximum(a @ np.asarray(W).T + np.asarray(b), 0.0)
    f = (a @ np.asarray(params["W"][-1]).T + np.asarray(params["b"][-1]))[:, 0]
    return float(np.mean((f - y) ** 2))


def test_construct_writes_a_file_that_certify_reads(tmp_path, capsys):
    out = tmp_path / "zero.json"
    code, text, _ = run(capsys, "construct", "embed", ESC, "--params", NARROW, "--how", "zero", "--unit", 0,
                        "--out", out)
    assert code == 0 and out.exists() and "written to" in text
    spec = load_spec(ESC)
    written = json.loads(out.read_text())
    assert relu_risk(written, spec.X, spec.y) == pytest.approx(0.728 / 6, rel=1e-12)
    code, text, _ = run(capsys, "certify", ESC, "--params", out, "--format", "json")
    assert code == 0
    obj = json.loads(text)
    assert KEYS <= set(obj)
    assert obj["verdict"] == "saddle" and obj["certificate"] == "escape_neuron" and obj["stationary"] is True
    assert obj["risk"] == pytest.approx(0.728 / 6, rel=1e-12)
    assert obj["global_certified"] and 0 < obj["gap"] == pytest.approx(obj["risk"] - obj["global_risk"])
    path = obj["descent_path"]
    assert len(path["points"]) >= 3
    for point in path["points"]:  # every printed point re-evaluated here
        assert relu_risk(point["params"], spec.X, spec.y) == pytest.approx(point["risk"], rel=1e-12)
        assert point["risk"] < obj["risk"]


def test_split_embedding_is_a_local_min_in_text_output(tmp_path, capsys):
    out = tmp_path / "split.json"
    assert run(capsys, "construct", "embed", ESC, "--params", NARROW, "--how", "split", "--unit", 0, "--lam", 0.3,
               "--out", out)[0] == 0
    code, text, _ = run(capsys, "certify", ESC, "--params", out, "--no-global")
    assert code == 0
    assert "LOCAL MINIMUM" in text and "boundary" in text and "not computed" in text


def test_yun_step2_prints_its_closed_form_improvement(tmp_path, capsys):
    spec_path = PAPERS / "relu-nonfittable.toml"
    spec = load_spec(spec_path)
    code, text, _ = run(capsys, "construct", "yun-step1", spec_path, "--out", tmp_path / "s1.json")
    assert code == 0
    s1 = json.loads((tmp_path / "s1.json").read_text())
    Xt = np.column_stack([spec.X, np.ones(spec.n)])
    ls = float(np.mean((Xt @ np.linalg.lstsq(Xt, spec.y, rcond=None)[0] - spec.y) ** 2))
    assert relu_risk(s1, spec.X, spec.y) == pytest.approx(ls, rel=1e-10)
    code, text, _ = run(capsys, "construct", "yun-step2", spec_path, "--format", "json")
    assert code == 0
    obj = json.loads(text)
    measured = ls - relu_risk(obj["params"], spec.X, spec.y)
    assert obj["improvement"] == pytest.approx(measured, rel=1e-8) and measured > 0
    code, text, _ = run(capsys, "construct", "yun-step2", spec_path, "--out", tmp_path / "s2.json")
    assert "improvement" in text and f"{obj['improvement']:.6g}"[:6] in text


def test_json_without_out_is_readable_by_certify(tmp_path, capsys):
    spec_path = PAPERS / "deep-relu-2x2.toml"
    code, text, _ = run(capsys, "construct", "he-deep", spec_path, "--valley", 2.5, "--format", "json")
    assert code == 0
    f = tmp_path / "valley.json"
    f.write_text(text)
    code, text, _ = run(capsys, "certify", spec_path, "--params", f, "--format", "json", "--no-global",
                        "--gd-starts", 0)
    obj = json.loads(text)
    assert code == 0 and obj["verdict"] == "local_min" and obj["certificate"] == "group_lsq"
    assert obj["gap"] is None and obj["gap_lower_bound"] is None  # nothing searched


def test_text_without_out_prints_params_on_stdout(capsys):
    code, out, err = run(capsys, "construct", "liu-groups", PAPERS / "liu-groups-relu.toml",
                         "--groups", PAPERS / "liu-groups-relu.groups")
    assert code == 0 and "liu_groups" in err
    params = json.loads(out)
    assert len(params["W"]) == 2 and np.asarray(params["W"][0]).shape == (3, 1)


def test_bad_params_files_exit_2_with_one_line(tmp_path, capsys):
    cases = {
        "shape.json": ({"W1": [[1.0, 2.0]], "b1": [0.0], "v": [1.0], "c": 0.0}, "params.W1"),
        "layers.json": ({"W": [[[1.0]], [[1.0]]], "b": [[0.0], [0.0]]}, "params.W"),
        "key.json": ({"W": [[[1.0], [1.0]], [[1.0, 1.0]]], "b": [[0.0, 0.0], [0.0]], "bias": 1}, "params.bias"),
        "notjson.json": (None, "not valid JSON"),
    }
    for name, (obj, field) in cases.items():
        f = tmp_path / name
        f.write_text("{oops" if obj is None else json.dumps(obj))
        code, out, err = run(capsys, "certify", ESC, "--params", f, "--no-global")
        assert code == 2, name
        assert out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("milpland certify: error:") and field in lines[0], (name, err)
    code, _, err = run(capsys, "certify", ESC, "--params", tmp_path / "missing.json")
    assert code == 2 and "file not found" in err


@pytest.mark.parametrize("argv,needle", [
    (["construct", "liu-groups", ESC], "--groups"),
    (["construct", "liu-groups", ESC, "--groups", "0,1"], "one label per sample"),
    (["construct", "yun-step1", PAPERS / "deep-relu-2x2.toml"], "one hidden layer"),
    (["construct", "embed", ESC, "--how", "split"], "--params"),
    (["construct", "embed", ESC, "--how", "split", "--params", NARROW, "--unit", 3, "--lam", 0.5], "--unit"),
    (["construct", "he-deep", ESC, "--groups", "0"], "does not apply"),
    (["construct", "he-deep", PAPERS / "deep-relu-2x2.toml", "--valley", -1], "--valley"),
])
def test_construct_refusals_exit_2(argv, needle, capsys):
    code, _, err = run(capsys, *argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_yun_refuses_hardtanh(tmp_path, capsys):
    spec = tmp_path / "ht.toml"
    spec.write_text('name = "ht"\n[data]\nx = [0.0, 1.0, 2.0]\ny = [0.0, 1.0, 0.0]\n'
                    '[network]\nhidden = [2]\nactivation = "hardtanh"\n')
    code, _, err = run(capsys, "construct", "yun-step1", spec)
    assert code == 2 and "two-slope" in err
