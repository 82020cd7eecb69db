"""`milpland solve` end to end: in process through milpland.cli.main and as a subprocess.

Every reported number is re-derived here without milpland's MILP: the weights are run
through a plain numpy forward pass, and the optimum of the small 1-D examples is
compared with a brute-force enumeration of all cells solved with clarabel.
"""

import importlib.metadata
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import clarabel
import numpy as np
import pytest
import scipy.sparse as sp

import milpland.search.solve
from milpland import load_spec
from milpland.cli import main
from milpland.instance.network import OneHiddenParams

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
TENT = MODELS / "tent-relu-w2.toml"
REQUIRED = {
    "instance", "status", "risk", "lower_bound", "gap", "certified", "box_active",
    "params", "pattern", "seconds", "solver",
}
TENT_OPTIMUM = 0.125  # hand-derived in README.md: f = (0, 1/2, 1/2, 1) on y = (0, 1, 0, 1)


# --- independent references ----------------------------------------------------------------

def numpy_risk(spec, params: dict) -> float:
    p = OneHiddenParams.from_json(params)
    f = p.forward(spec.X, spec.network.activation)
    return spec.loss.risk(f, spec.y)


def enumerate_cells_1d(spec) -> float:
    """Global minimum over the box of a width-2 network with a homogeneous two-piece activation
    on 1-D data, by solving the convex problem of every cell with clarabel.

    In 1-D the samples on which a unit is on its right piece form a prefix or a suffix of the
    sorted samples, so the cells are few.  In scaled coordinates (DESIGN §3) unit j adds
    s_j alpha_k (u_j x_i + a_j) on piece k, with u_j x_i + a_j >= 0 on the right piece and
    <= 0 on the left; |u_j|, |a_j| <= B; c is free.
    """
    act, loss = spec.network.activation, spec.loss
    assert spec.width == 2 and spec.d == 1 and act.homogeneous
    x, y, n, B = spec.X[:, 0], spec.y, spec.n, spec.box.weight
    order = np.argsort(x)
    masks = set()
    for k in range(n + 1):
        on = np.zeros(n, bool)
        on[order[k:]] = True
        masks.add(tuple(on))
        masks.add(tuple(~on))
    best = np.inf
    for m1, m2 in itertools.product(sorted(masks), repeat=2):
        for s1, s2 in ((1, 1), (1, -1), (-1, -1)):
            best = min(best, _cell_value(x, y, (np.array(m1), np.array(m2)), (s1, s2), act, loss, B))
    return best


def _cell_value(x, y, masks, signs, act, loss, B) -> float:
    n = len(x)
    w = loss.weight(n)
    # theta = (u1, a1, u2, a2, c) followed, for LP losses, by epigraph variables t_i
    A = np.zeros((n, 5))
    A[:, 4] = 1.0
    rows, rhs = [], []
    for j, (mask, s) in enumerate(zip(masks, signs)):
        slope = np.where(mask, act.slopes[1], act.slopes[0])
        A[:, 2 * j] = s * slope * x
        A[:, 2 * j + 1] = s * slope
        for i in range(n):
            g = np.zeros(5)
            g[2 * j], g[2 * j + 1] = x[i], 1.0
            rows.append(-g if mask[i] else g)  # right piece: g >= 0; left piece: g <= 0
            rhs.append(0.0)
    for col in range(4):  # the box
        e = np.zeros(5)
        e[col] = 1.0
        rows += [e, -e]
        rhs += [B, B]
    G = np.array(rows)
    if loss.kind == "squared":
        P = sp.csc_matrix(2 * w * A.T @ A)
        q = -2 * w * A.T @ y
        const = w * y @ y
        Gfull, h = G, np.array(rhs)
    else:
        nv = 5 + n
        P = sp.csc_matrix((nv, nv))
        q = np.concatenate([np.zeros(5), np.full(n, w)])
        const = 0.0
        Gfull = np.hstack([G, np.zeros((len(G), n))])
        h = list(rhs)
        extra = []
        for i in range(n):
            ti = np.zeros(n)
            ti[i] = -1.0
            if loss.kind == "absolute":  # t_i >= +-(f_i - y_i)
                extra += [(np.concatenate([A[i], ti]), y[i]), (np.concatenate([-A[i], ti]), -y[i])]
            else:  # hinge: t_i >= 1 - y_i f_i, t_i >= 0
                extra += [(np.concatenate([-y[i] * A[i], ti]), -1.0), (np.concatenate([np.zeros(5), ti]), 0.0)]
        Gfull = np.vstack([Gfull] + [r for r, _ in extra])
        h = np.array(h + [b for _, b in extra])
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = 1e-10
    solver = clarabel.DefaultSolver(P, q, sp.csc_matrix(Gfull), h, [clarabel.NonnegativeConeT(len(h))], settings)
    sol = solver.solve()
    if str(sol.status) not in ("Solved", "AlmostSolved"):
        return np.inf
    return float(sol.obj_val + const)


# --- helpers -----------------------------------------------------------------------------------

def run_json(capfd, *args) -> tuple[int, dict, str]:
    code = main(["solve", *map(str, args), "--format", "json"])
    out, err = capfd.readouterr()
    return code, json.loads(out), err


def run_cli(*args, timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "milpland.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )


def check_result(spec, obj: dict) -> None:
    """What every successful result must satisfy, checked independently of the solver."""
    assert REQUIRED <= obj.keys()
    assert obj["instance"] == spec.name
    assert obj["status"] in ("optimal", "time_limit")
    assert set(obj["params"]) == {"W1", "b1", "v", "c"}
    assert set(obj["seconds"]) >= {"build", "solve", "total"}
    assert obj["seconds"]["total"] >= obj["seconds"]["solve"] >= 0
    if obj["method"] == "milp" or spec.loss.kind != "squared":  # absolute / hinge bnb: HiGHS node LPs
        assert obj["solver"]["name"] == "highs"
        assert obj["solver"]["version"] == importlib.metadata.version("highspy")
    else:  # the pattern branch-and-bound: hull nodes (d >= 2 or n <= 100) or Clarabel QP nodes, HiGHS cells
        assert obj["method"] == "bnb"
        node_solver = ("nnls+highs", "scipy") if spec.d >= 2 or spec.n <= 100 else ("clarabel+highs", "clarabel")
        assert obj["solver"]["name"] == node_solver[0]
        prefix = "scipy-" if node_solver[1] == "scipy" else ""
        assert obj["solver"]["version"] == (prefix + importlib.metadata.version(node_solver[1]) + "+"
                                            + importlib.metadata.version("highspy"))
    risk = numpy_risk(spec, obj["params"])
    assert risk == pytest.approx(obj["risk"], rel=1e-7, abs=1e-12), "numpy forward pass reproduces the risk"
    assert obj["lower_bound"] <= obj["risk"] + 1e-9 * max(1.0, abs(obj["risk"]))
    assert obj["gap"] >= 0
    p = OneHiddenParams.from_json(obj["params"])
    Z = p.pre_activations(spec.X)
    act = spec.network.activation
    pattern = np.array(obj["pattern"])
    assert pattern.shape == (spec.n, spec.width)
    # units with v = 0 do not change f, so their pattern is free; ties may sit on either piece
    clear = ~act.on_breakpoint(Z, 1e-7) & (p.v != 0.0)[None, :]
    assert np.array_equal(pattern[clear], act.piece(Z)[clear]), "reported pattern is the numpy pattern"
    if obj["certified"]:
        assert obj["status"] == "optimal" and not obj["box_active"] and obj["verification"]["ok"]
        slack = max(spec.solve.rel_gap * abs(obj["risk"]), obj["options"].get("abs_tol", 0.0))
        assert obj["risk"] - obj["lower_bound"] <= slack + 1e-15
    if obj["box_active"]:
        assert not obj["certified"]


# --- the README example ------------------------------------------------------------------------

def test_tent_reference_enumeration_matches_hand_derivation():
    assert enumerate_cells_1d(load_spec(TENT)) == pytest.approx(TENT_OPTIMUM, abs=1e-8)


def test_tent_json(capfd):
    code, obj, err = run_json(capfd, TENT)
    spec = load_spec(TENT)
    assert code == 0
    check_result(spec, obj)
    assert obj["status"] == "optimal" and obj["certified"] and not obj["box_active"]
    assert obj["risk"] == pytest.approx(TENT_OPTIMUM, rel=1e-9)
    assert obj["lower_bound"] >= TENT_OPTIMUM * (1 - spec.solve.rel_gap) - 1e-12
    f = OneHiddenParams.from_json(obj["params"]).forward(spec.X, spec.network.activation)
    # the optimal fitted values are not unique, but every optimum misses y = (0, 1, 0, 1)
    assert np.mean((f - spec.y) ** 2) == pytest.approx(TENT_OPTIMUM, rel=1e-9)


def test_tent_text(capfd):
    code = main(["solve", str(TENT)])
    out, _ = capfd.readouterr()
    assert code == 0
    for words in ("tent-relu-w2", "1-2-1 relu", "status        optimal", "risk          0.125",
                  "certified     yes", "box active    no", "unit 0:", "unit 1:", "verification  ok", "nnls+highs",
                  "method        bnb"):
        assert words in out, words


def test_params_out_and_overrides(tmp_path, capfd):
    out_file = tmp_path / "params.json"
    code, obj, _ = run_json(capfd, TENT, "--params-out", out_file, "--time-limit", 30, "--rel-gap", 1e-5)
    assert code == 0
    written = json.loads(out_file.read_text())
    assert written == obj["params"]
    assert numpy_risk(load_spec(TENT), written) == pytest.approx(TENT_OPTIMUM, rel=1e-9)


def test_small_box_is_reported(capfd):
    """A box too small for the optimum: the minimum over the box is worse and a bound is active."""
    code, obj, _ = run_json(capfd, TENT, "--box", 0.2)
    spec = load_spec(TENT).with_box(0.2)
    assert code == 0
    check_result(spec, obj)
    assert obj["box"] == {"weight": 0.2, "output": 0.2}
    assert obj["risk"] > TENT_OPTIMUM + 1e-3  # the box cuts the optimum off ...
    assert obj["risk"] == pytest.approx(enumerate_cells_1d(spec), rel=1e-6)  # ... and this is its minimum
    assert obj["box_active"] and not obj["certified"]


def test_time_limit_result_is_reported_but_not_certified(capfd):
    """A solve cut short still reports a verified point, exit 0.  The MILP search needs about
    2 s on sine-leaky-w3 (bnb only 0.15 s, too close to any limit to cut it short reliably)."""
    path = MODELS / "sine-leaky-w3.toml"
    code, obj, _ = run_json(capfd, path, "--time-limit", 0.3, "--method", "milp")
    assert code == 0
    check_result(load_spec(path), obj)
    assert obj["status"] == "time_limit" and not obj["certified"]
    assert obj["options"]["time_limit"] == 0.3


# --- other shipped examples --------------------------------------------------------------------

def test_hinge_example_matches_enumeration(capfd):
    path = MODELS / "hinge-relu-w2.toml"
    spec = load_spec(path)
    code, obj, _ = run_json(capfd, path)
    assert code == 0
    check_result(spec, obj)
    assert obj["certified"]
    assert obj["risk"] == pytest.approx(enumerate_cells_1d(spec), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", ["hardtanh-w2", "pwl3-w2-abs"])
def test_non_homogeneous_examples(capfd, name):
    path = MODELS / f"{name}.toml"
    spec = load_spec(path)
    code, obj, _ = run_json(capfd, path)
    assert code == 0
    check_result(spec, obj)
    assert obj["certified"]
    # an upper bound the global minimum must beat: the best affine fit, which a single unit
    # on the identity piece of either activation represents inside the box
    A = np.column_stack([spec.X, np.ones(spec.n)])
    coef, *_ = np.linalg.lstsq(A, spec.y, rcond=None)
    assert obj["risk"] <= spec.loss.risk(A @ coef, spec.y) + 1e-9


@pytest.mark.slow
def test_teacher_example_beats_the_teacher():
    path = MODELS / "teacher-relu-w2-d2.toml"
    proc = run_cli("solve", path, "--format", "json", timeout=170)
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    spec = load_spec(path)
    check_result(spec, obj)
    from milpland.instance.data import generate
    _, clean = generate({"generator": "teacher", "n": 12, "d": 2, "teacher_width": 2, "seed": 0})
    teacher_risk = float(np.mean((spec.y - clean) ** 2))  # the teacher's weights are a feasible point
    assert obj["certified"] and obj["risk"] <= teacher_risk + 1e-12


@pytest.mark.slow
def test_sine_leaky_example():
    path = MODELS / "sine-leaky-w3.toml"
    proc = run_cli("solve", path, "--format", "json", timeout=170)
    assert proc.returncode == 0, proc.stderr
    check_result(load_spec(path), json.loads(proc.stdout))


# --- subprocess and console script ---------------------------------------------------------------

def test_subprocess_json_stdout_is_one_object_even_when_verbose():
    proc = run_cli("solve", TENT, "--format", "json", "--verbose")
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)  # fails on any extra line, e.g. a solver log on stdout
    assert isinstance(obj, dict) and obj["risk"] == pytest.approx(TENT_OPTIMUM, rel=1e-9)
    assert proc.stdout.strip().count("\n") == 0
    assert "solving tent-relu-w2" in proc.stderr


def test_console_script():
    exe = shutil.which("milpland")
    if exe is None:
        pytest.skip("the milpland console script is not installed (pip install -e .)")
    proc = subprocess.run([exe, "solve", str(TENT), "--format", "json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["risk"] == pytest.approx(TENT_OPTIMUM, rel=1e-9)


# --- user errors: exit 2, one line naming the field, no traceback ---------------------------------

def write(tmp_path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


GOOD = 'name = "s"\n[data]\nx = [[0.0], [1.0], [2.0]]\ny = [0.0, 1.0, 0.0]\n[network]\nhidden = [2]\n'


@pytest.mark.parametrize(
    "text, words",
    [
        (GOOD.replace("hidden = [2]", "hidden = [0]"), "network.hidden"),
        (GOOD.replace('name = "s"\n', ""), "name"),
        (GOOD + "[box]\nweight = -1.0\n", "box.weight"),
        (GOOD + "colour = 1\n", "network.colour"),  # a key after [network] belongs to it
        (GOOD.replace("[[0.0], [1.0], [2.0]]", "[[0.0], [1.0]]"), "data"),
        ("name = \n", "spec: not valid TOML"),
    ],
)
def test_spec_errors_exit_2_in_process(tmp_path, capfd, text, words):
    code = main(["solve", str(write(tmp_path, text))])
    out, err = capfd.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("milpland solve: error: ") and words in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_spec_error_exit_2_subprocess(tmp_path):
    path = write(tmp_path, GOOD.replace('hidden = [2]', 'hidden = [2]\nactivation = "tanh"'))
    proc = run_cli("solve", path, "--format", "json")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "network.activation" in proc.stderr and "tanh" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_missing_file(tmp_path):
    proc = run_cli("solve", tmp_path / "nope.toml")
    assert proc.returncode == 2
    assert "file not found" in proc.stderr and "nope.toml" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_data_file(tmp_path, capfd):
    path = write(tmp_path, 'name = "s"\n[data]\npath = "gone.csv"\n[network]\nhidden = [2]\n')
    assert main(["solve", str(path)]) == 2
    err = capfd.readouterr().err
    assert "data.path" in err and "file not found" in err and "gone.csv" in err


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--box", "-1"], "--box"),
        (["--box", "inf"], "--box"),
        (["--time-limit", "0"], "--time-limit"),
        (["--rel-gap", "nan"], "--rel-gap"),
        (["--params-out", "/nonexistent-dir/p.json"], "--params-out"),
    ],
)
def test_bad_options_exit_2_before_solving(tmp_path, capfd, monkeypatch, flags, words):
    def must_not_run(spec, **_):
        raise AssertionError("the solver must not run")

    monkeypatch.setattr(milpland.search.solve, "solve_global", must_not_run)
    code = main(["solve", str(TENT), *flags])
    assert code == 2 and words in capfd.readouterr().err


def test_three_hidden_layers_are_a_user_error(tmp_path, capfd):
    code = main(["solve", str(write(tmp_path, GOOD.replace("hidden = [2]", "hidden = [2, 2, 2]")))])
    err = capfd.readouterr().err
    assert code == 2 and "hidden" in err and "Traceback" not in err


def test_two_hidden_layers_on_two_inputs_are_a_user_error(tmp_path, capfd):
    text = GOOD.replace("hidden = [2]", "hidden = [2, 2]").replace("[[0.0], [1.0], [2.0]]", "[[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]")
    code = main(["solve", str(write(tmp_path, text))])
    err = capfd.readouterr().err
    assert code == 2 and "d = 2" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# --- solver failures: exit 1 ---------------------------------------------------------------------

def test_solver_exception_exits_1(capfd, monkeypatch):
    def boom(spec, **_):
        raise RuntimeError("HiGHS exploded\nsecond line")

    monkeypatch.setattr(milpland.search.solve, "solve_global", boom)
    code = main(["solve", str(TENT)])
    err = capfd.readouterr().err
    assert code == 1 and "solver error" in err and "HiGHS exploded second line" in err
    assert err.count("\n") <= 2 and "Traceback" not in err


def test_failed_verification_exits_1(capfd, monkeypatch):
    real = milpland.search.solve.solve_global

    def tampered(spec, **kw):
        import dataclasses
        result = real(spec, **kw)
        return dataclasses.replace(result, verification=dataclasses.replace(result.verification, ok=False))

    monkeypatch.setattr(milpland.search.solve, "solve_global", tampered)
    code = main(["solve", str(TENT), "--format", "json"])
    out, err = capfd.readouterr()
    assert code == 1 and "verification failed" in err
    assert json.loads(out)["verification"]["ok"] is False  # the result is still printed


def test_zero_risk_is_certified_global_even_when_the_point_touches_the_box():
    """Separable +-1 labels with a box of 1.  By hand: f(x) = relu(x + 1) - 1 (u~ = 1, a~ = 1, both
    on the box) gives f = -1, -1, 1, 2, i.e. margins y f >= 1 and hinge risk 0.  Risk 0 needs
    f(1) - f(-1) >= 2, i.e. |relu(u~ + a~) - relu(a~ - u~)| >= 2, which |u~|, |a~| <= 1 allows only
    with |u~| = a~ = 1: every zero-risk point touches the box.
    Zero is the smallest risk any network has (hinge >= 0): certified although the box is active."""
    from milpland.instance.spec import spec_from_dict
    from milpland.search.solve import solve_global

    spec = spec_from_dict({
        "name": "separable", "data": {"x": [[-2.0], [-1.0], [1.0], [2.0]], "y": [-1.0, -1.0, 1.0, 1.0]},
        "network": {"hidden": [1]}, "loss": {"kind": "hinge"}, "box": {"weight": 1.0},
    })
    result = solve_global(spec)
    assert result.risk <= 1e-12
    assert result.box_active  # the case the rule is for
    assert result.certified
