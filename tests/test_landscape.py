"""`landscape` and `milpland landscape` against independent truths.

- Linear data (y = 2x - 0.5): a linear fit is exact, so the minimum that fits y has gap 0.
- y = x^2 with leaky ReLU (Yun, Sra & Jadbabaie 2019, Thm 1): the least-squares line, computed
  here with numpy.linalg.lstsq, is a local minimum, and it is spurious (positive gap).
- `sample` never reports a minimum that `enumerate` does not have (same fitted values).
- The best minimum of the complete enumeration equals the MILP global minimum `solve_global`
  (a different algorithm) to 1e-6 relative.
- The command: one JSON object on stdout, a Parquet table with one row per minimum, the
  --max-cells refusal (exit 2, with the count), and a clear error when milp is unavailable.
"""

import json
import sys

import numpy as np
import pandas as pd
import pytest
from bruteforce import forward

from milpland import spec_from_dict
from milpland.cli import build_parser
from milpland.commands import landscape as landscape_command
from milpland.errors import MilplandError
from milpland.instance.network import OneHiddenParams
from milpland.landscape.listing import landscape
from milpland.search.solve import solve_global

X1 = np.linspace(-1, 1, 5)
X2 = np.array([[-0.9, -0.2], [0.1, 0.8], [0.7, -0.5], [-0.3, 0.4]])


def make_spec(x, y, *, name="t", activation="relu", width=2, loss="squared", **net):
    x = np.asarray(x, dtype=float)
    data_x = x.tolist() if x.ndim == 1 else [list(r) for r in x]
    return spec_from_dict({
        "name": name, "data": {"x": data_x, "y": list(map(float, y))},
        "network": {"hidden": [width], "activation": activation, **net},
        "loss": {"kind": loss}, "box": {"weight": 10.0}, "solve": {"time_limit": 60.0},
    })


SPECS = {
    "linear": lambda: make_spec(X1, 2 * X1 - 0.5, name="linear"),
    "square-leaky": lambda: make_spec(X1, X1**2, name="square-leaky", activation="leaky_relu", alpha=0.2),
    "relu-abs": lambda: make_spec(X1, [0.3, -0.5, 0.9, 0.1, 0.6], name="relu-abs", loss="absolute"),
    "leaky-abs": lambda: make_spec(X1, [0.3, -0.5, 0.9, 0.1, 0.6], name="leaky-abs", activation="leaky_relu",
                                   alpha=0.1, loss="absolute"),
    "relu-d2": lambda: make_spec(X2, [0.5, -0.4, 1.0, 0.2], name="relu-d2"),
}


@pytest.fixture(scope="module")
def runs():
    cache = {}

    def get(name, method="enumerate"):
        if (name, method) not in cache:
            spec = SPECS[name]()
            cache[name, method] = (spec, landscape(spec, method=method, starts=40, seed=1))
        return cache[name, method]

    return get


def numpy_risk(spec, m):
    return spec.loss.risk(forward(m.params, spec.X, spec.network.activation), spec.y)


def test_linear_data_the_linear_minimum_has_gap_zero(runs):
    spec, res = runs("linear")
    assert res.complete and res.global_source == "enumerate"
    line = 2 * X1 - 0.5
    exact = [m for m in res.minima if np.max(np.abs(m.fitted - line)) < 1e-7]
    assert exact, "the exact linear fit must be a listed local minimum"
    assert exact[0].gap == pytest.approx(0.0, abs=1e-12)
    assert not exact[0].spurious
    assert numpy_risk(spec, exact[0]) == pytest.approx(0.0, abs=1e-12)


def test_nonlinear_data_lists_the_spurious_linear_minimum(runs):
    spec, res = runs("square-leaky")
    A = np.column_stack([X1, np.ones_like(X1)])
    coef = np.linalg.lstsq(A, X1**2, rcond=None)[0]
    line = A @ coef
    line_risk = float(np.mean((line - X1**2) ** 2))
    found = [m for m in res.minima if np.max(np.abs(m.fitted - line)) < 1e-7]
    assert found, "the least-squares line must be a listed local minimum (Yun et al. 2019, Thm 1)"
    m = found[0]
    assert m.risk == pytest.approx(line_risk, rel=1e-9)
    assert m.spurious and m.gap > 1e-3
    assert m.gap == pytest.approx(line_risk - res.global_risk, rel=1e-9)
    assert numpy_risk(spec, m) == pytest.approx(line_risk, rel=1e-9)


@pytest.mark.parametrize("name", ["square-leaky", "relu-abs", "relu-d2"])
def test_sample_minima_are_enumerated(runs, name):
    spec, enum = runs(name)
    _, samp = runs(name, "sample")
    assert samp.minima and not samp.complete
    fits = np.array([m.fitted for m in enum.minima])
    for m in samp.minima:
        dist = np.max(np.abs(fits - m.fitted[None, :]), axis=1)
        k = int(np.argmin(dist))
        assert dist[k] <= 1e-6, f"sample minimum {m.risk} not among the enumerated minima"
        assert enum.minima[k].risk == pytest.approx(m.risk, rel=1e-9, abs=1e-12)
        assert 0.0 < m.basin_fraction <= 1.0
    assert sum(m.basin_fraction for m in samp.minima) <= 1.0 + 1e-12


@pytest.mark.parametrize("name", sorted(SPECS))
def test_best_enumerated_minimum_equals_solve_global(runs, name):
    spec, res = runs(name)
    assert res.complete and res.global_source == "enumerate"
    glob = solve_global(spec)
    assert glob.certified
    assert res.minima[0].risk == pytest.approx(glob.risk, rel=1e-6, abs=1e-12)
    assert res.global_risk == pytest.approx(glob.risk, rel=1e-6, abs=1e-12)
    assert numpy_risk(spec, res.minima[0]) == pytest.approx(glob.risk, rel=1e-6, abs=1e-12)
    assert [m.risk for m in res.minima] == sorted(m.risk for m in res.minima)
    for m in res.minima:
        assert m.spurious == (m.risk - glob.risk > res.tolerance + 1e-6 * glob.risk)


# --- the command ---------------------------------------------------------------------------------


TENT = """name = "tent"
[data]
x = [0.0, 1.0, 2.0, 3.0]
y = [0.0, 1.0, 0.0, 1.0]
[network]
hidden = [2]
activation = "relu"
[box]
weight = 10.0
"""


def run_cli(argv):
    parser = build_parser() if "landscape" in _commands() else _own_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MilplandError as exc:
        print(f"milpland landscape: error: {exc}", file=sys.stderr)
        return 2


def _commands():
    from milpland import cli

    return cli.COMMANDS


def _own_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="milpland")
    landscape_command.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_json_and_parquet(tmp_path, capsys):
    spec_path = tmp_path / "tent.toml"
    spec_path.write_text(TENT)
    out = tmp_path / "out"
    assert run_cli(["landscape", str(spec_path), "--format", "json", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    obj = json.loads(stdout)  # exactly one JSON object
    assert obj["global"]["risk"] == pytest.approx(0.125, rel=1e-9)  # hand-derived (README)
    assert obj["global_source"] == "enumerate" and obj["complete"]
    frame = pd.read_parquet(out / "minima.parquet")
    assert len(frame) == obj["n_minima"] == len(obj["minima"])
    assert frame["risk"].tolist() == sorted(frame["risk"])
    assert frame["risk"].iloc[0] == pytest.approx(0.125, rel=1e-9)
    assert set(frame["certificate"]) <= {"interior", "boundary"}
    assert frame["spurious"].tolist() == [m["spurious"] for m in obj["minima"]]


def test_cli_text_table(tmp_path, capsys):
    spec_path = tmp_path / "tent.toml"
    spec_path.write_text(TENT)
    assert run_cli(["landscape", str(spec_path), "--method", "sample", "--starts", "20", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "basin" in text and "spurious" in text and "from solve_global" in text


def test_cli_refuses_too_many_cells(tmp_path, capsys):
    spec_path = tmp_path / "tent.toml"
    spec_path.write_text(TENT)
    assert run_cli(["landscape", str(spec_path), "--method", "enumerate", "--max-cells", "10"]) == 2
    err = capsys.readouterr().err
    assert "136 cells" in err  # 8 threshold patterns: 2 C(9, 2) + 8 * 8 = 136
    assert "--max-cells" in err


def test_milp_method_refuses_what_it_cannot_certify(tmp_path):
    """The local-minima MILP is written for homogeneous activations only (DESIGN §5)."""
    spec = spec_from_dict({"name": "t", "data": {"x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 0.0]},
                           "network": {"hidden": [1], "activation": "hardtanh"}})
    with pytest.raises(MilplandError, match="network.activation"):
        landscape(spec, method="milp")


# --- the descent behind `sample` -----------------------------------------------------------------


@pytest.mark.parametrize("loss", ["squared", "absolute", "hinge"])
def test_descent_gradient_matches_central_differences(loss):
    from milpland.landscape.sampling import _gradient, _kernel_args, _risk

    y = [1.0, -1.0, 1.0, -1.0, 1.0] if loss == "hinge" else [0.3, -0.5, 0.9, 0.1, 0.6]
    spec = make_spec(X1, y, activation="leaky_relu", alpha=0.2, width=3, loss=loss)
    m, d, t, slopes, icepts, code, w, bias = _kernel_args(spec)
    rng = np.random.default_rng(5)
    for _ in range(2):
        vec = rng.normal(size=10)

        def R(theta):
            p = OneHiddenParams(theta[:3].reshape(3, 1), theta[3:6], theta[6:9], float(theta[9]))
            return spec.loss.risk(forward(p, spec.X, spec.network.activation), spec.y)

        A, Sl, gf, g = np.empty((5, 3)), np.empty((5, 3)), np.empty(5), np.empty(10)
        risk = _risk(spec.X, spec.y, vec, m, d, t, slopes, icepts, code, w, A, Sl, gf)
        g2 = _gradient(spec.X, vec, m, d, bias, A, Sl, gf, g)
        assert risk == pytest.approx(R(vec), rel=1e-12)
        assert g2 == pytest.approx(float(g @ g), rel=1e-12)
        h = 1e-6
        fd = np.array([(R(vec + h * e) - R(vec - h * e)) / (2 * h) for e in np.eye(10)])
        assert np.allclose(g, fd, atol=1e-6)  # random points: no sample on a kink


def test_descent_is_seeded_and_descends():
    from milpland.landscape.sampling import descend

    spec = SPECS["square-leaky"]()
    a = descend(spec, starts=8, seed=4, max_iter=200)
    b = descend(spec, starts=8, seed=4, max_iter=200)
    assert np.array_equal(a.W1, b.W1) and np.array_equal(a.risk, b.risk)
    start = descend(spec, starts=8, seed=4, max_iter=0)
    assert np.all(a.risk <= start.risk)
