"""Fault injection: bad input, broken promises and limits (issue 14), one test per item.

Each test asserts the behaviour asked for with numbers obtained here: finite-difference
gradients, the hand-derived tent optimum 1/8 (README), and the exact wording a user sees.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fault_inputs import FAULTS, clean_error, materialise

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


# --- 5. time limits honoured in every phase ---------------------------------------------------

def teacher(n: int, d: int = 1, width: int = 2, **solve) -> dict:
    return {"name": f"teacher-n{n}-d{d}", "data": {"generator": "teacher", "n": n, "d": d, "noise": 0.1},
            "network": {"hidden": [width]}, "solve": solve}


def risk_of(obj_params: dict, spec) -> float:
    """Risk of a params JSON, recomputed here: f(x) = sum_j v_j relu(W1_j . x + b1_j) + c, mean squared error."""
    W1, b1, v, c = (np.asarray(obj_params[k], dtype=float) for k in ("W1", "b1", "v", "c"))
    f = np.maximum(spec.X @ W1.T + b1, 0.0) @ v + c
    return float(np.mean((f - spec.y) ** 2))


@pytest.mark.parametrize("table, limit", [
    (teacher(3000, method="auto"), 8.0),  # auto: one bnb node would take ~25 s; milp, build then HiGHS
    (teacher(1000, method="milp"), 6.0),  # the MILP is built and HiGHS runs into the deadline
    (teacher(80, d=2, width=3, method="bnb"), 4.0),  # bnb: lower bound still 0 after 20 s (49,240 nodes)
    (teacher(10, d=1000), 5.0),  # a cell problem of 2003 weights takes tens of seconds: skipped
], ids=["auto-n3000", "milp-n1000", "bnb-d2", "d1000"])
def test_item5_a_solve_returns_within_its_time_limit(table, limit):
    from milpland.search.solve import solve_global

    spec = spec_from_dict({**table, "solve": {**table["solve"], "time_limit": limit}})
    started = time.perf_counter()
    result = solve_global(spec)
    elapsed = time.perf_counter() - started
    assert elapsed <= limit + max(5.0, 0.1 * limit), elapsed
    assert result.status == "time_limit" and not result.certified  # the limit was binding
    assert result.verification.ok and result.risk == pytest.approx(risk_of(result.params.to_json(), spec), rel=1e-9)
    assert 0.0 <= result.lower_bound <= result.risk


# --- 6. memory: estimated before building, refused or fallen back from ---------------------------

def test_item6_a_search_beyond_the_memory_limit_is_refused_with_its_estimate(capsys, tmp_path):
    path = tmp_path / "big.toml"
    path.write_text('name = "big"\n[data]\ngenerator = "teacher"\nn = 5000\n[network]\nhidden = [2]\n'
                    '[solve]\nmethod = "bnb"\nmemory_limit = 2.0\n')
    started = time.perf_counter()
    code, _, err = run_cli(capsys, "solve", path)
    one_line_error(code, err, "solve.memory_limit", "needs about", "GB", "more than the limit of 2 GB",
                   "method = \"milp\"")
    assert time.perf_counter() - started < 5  # refused before anything large was built
    code, _, err = run_cli(capsys, "solve", path, "--method", "bnb", "--memory-limit", "1000", "--time-limit", "2")
    assert code == 0 and "memory_limit" not in err  # within a large limit the same search runs (and times out)


def test_item6_a_cell_problem_that_cannot_fit_is_refused_at_once(capsys, tmp_path):
    path = tmp_path / "wide.toml"  # d = 100000: the cell problem's 200003 x 200003 matrices (issue: 298 GiB)
    path.write_text('name = "wide"\n[data]\ngenerator = "teacher"\nn = 10\nd = 100000\n[network]\nhidden = [2]\n')
    code, _, err = run_cli(capsys, "solve", path)
    one_line_error(code, err, "solve.memory_limit", "200003 weights")


def test_item6_auto_falls_back_to_milp_and_says_so():
    from milpland.search.solve import choose_method_within_limits

    spec = spec_from_dict(teacher(3000, memory_limit=1.2))
    method, notes = choose_method_within_limits(spec)
    assert method == "milp" and len(notes) == 1
    assert "more than the memory limit of 1.2 GB" in notes[0] and "used milp (about" in notes[0]


def test_item6_a_search_that_outgrows_the_limit_stops_with_its_best_point_and_bound(monkeypatch):
    """The tree's open nodes grow while it runs: past [solve] memory_limit it stops as at a time limit."""
    from milpland.search import memory, pattern_bnb
    from milpland.search.solve import solve_global

    spec = spec_from_dict(teacher(40, method="bnb", memory_limit=1.0))
    spec = spec.with_options(time_limit=60.0)
    monkeypatch.setattr(pattern_bnb, "MEMORY_CHECK_EVERY", 5)
    monkeypatch.setattr(memory, "resident_bytes", lambda: 2e9)  # 2 GB held, limit 1 GB
    result = solve_global(spec)
    assert result.status == "memory_limit" and not result.certified
    assert "memory limit" in result.message and "1 GB" in result.message
    assert result.verification.ok and result.risk == pytest.approx(risk_of(result.params.to_json(), spec), rel=1e-9)
    assert 0.0 <= result.lower_bound <= result.risk


def test_item6_the_bnb_estimate_matches_the_memory_a_node_takes():
    """The estimate against numpy's own allocations (tracemalloc) while one root node is bounded."""
    import itertools
    import tracemalloc

    from milpland.search import memory
    from milpland.search.pattern_bnb import Relaxation, root_nodes

    spec = spec_from_dict(teacher(700))
    relaxation = Relaxation(spec)
    node = root_nodes(spec, [2], itertools.count())[0]
    tracemalloc.start()
    relaxation.evaluate(node)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    estimate = memory.convexity_phase(spec)[1]
    assert 0.5 * peak <= estimate <= 3.0 * peak, (estimate, peak)


# --- 7. Ctrl-C: a real SIGINT, the best point and bound printed, exit 130 ------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def interrupt_cli(argv, ready: str, *, after: float = 1.5) -> tuple[float, int, str, str, float]:
    """Start `milpland argv`, wait until its stderr shows `ready`, then `after` seconds, send SIGINT.

    Returns (work, exit code, stdout, stderr, wall delay), where `work` is the CPU time the process spent
    between the signal and its exit (its own rusage at exit minus /proc before the signal).  On a
    shared machine the wall-clock delay is that work stretched by the machine's load (a 0.5 s stop
    took 3-5 s while the test suite kept both cores busy); the CPU time is what the program
    controls, so it is the measure, and the wall delay gets a bound that only catches a process
    that ignores the signal (the issue's milp waited 23 s for its time limit)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "milpland.cli", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    lines: list[str] = []
    out: list[str] = []
    readers = [threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True),
               threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        end = time.monotonic() + 120
        while not any(ready in line for line in list(lines)):
            assert proc.poll() is None, "".join(lines)[-2000:]
            assert time.monotonic() < end, f"never saw {ready!r}"
            time.sleep(0.05)
        time.sleep(after)
        assert proc.poll() is None, "finished before the signal: make the instance harder"
        before = cpu_seconds(proc.pid)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(proc.pid, 0)
        delay = time.monotonic() - signalled
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    for reader in readers:
        reader.join(timeout=10)
    work = usage.ru_utime + usage.ru_stime - before
    assert delay < SIGINT_WALL_BOUND, (delay, work)
    return work, proc.returncode, "".join(out), "".join(lines), delay


SIGINT_WORK = 2.0  # "within about 2 s": CPU seconds from the signal to the exit (measured 0.1-0.8 s of wall time
#                    on a machine at load 4.5; see interrupt_cli)
SIGINT_WALL_BOUND = 20.0  # wall seconds: only a process that ignores the signal takes this long
HARD_D1 = {"generator": "teacher", "teacher_width": 3, "noise": 0.1, "n": 200, "d": 1}
HARD_D2 = {"generator": "teacher", "teacher_width": 3, "noise": 0.1, "n": 40, "d": 2}


def write_spec(tmp_path, data: dict, **solve) -> Path:
    lines = ['name = "hard"', "[data]"] + [f"{k} = {json.dumps(v)}" for k, v in data.items()]
    lines += ["[network]", "hidden = [3]", "[solve]", "time_limit = 200"] + [f"{k} = {json.dumps(v)}"
                                                                              for k, v in solve.items()]
    path = tmp_path / "hard.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# bnb: n = 80 (orbital branching certifies n = 40 in about 2 s, before the signal)
@pytest.mark.parametrize("method, data", [("milp", HARD_D2), ("bnb", {**HARD_D2, "n": 80}),
                                          pytest.param("milp", HARD_D1, marks=pytest.mark.slow)],
                         ids=["milp", "bnb", "milp-1d"])
def test_item7_sigint_stops_solve_with_the_best_point_and_bound(tmp_path, method, data):
    path = write_spec(tmp_path, data)
    work, code, out, err, _ = interrupt_cli(["solve", path, "--method", method, "--format", "json", "--verbose"],
                                          "first incumbent")
    assert code == 130 and work < SIGINT_WORK, (code, work, err[-500:])
    obj = json.loads(out)  # one JSON object on stdout, as without the interruption
    spec = load_spec(path)
    assert obj["status"] == "interrupted" and obj["method"] == method and not obj["certified"]
    assert obj["risk"] == pytest.approx(risk_of(obj["params"], spec), rel=1e-9)  # the point is the reported one
    assert 0.0 <= obj["lower_bound"] <= obj["risk"]
    assert obj["risk"] < float(np.var(spec.y))  # better than the best constant: the search had found something
    assert "interrupted" in err.strip().splitlines()[-1] and "Traceback" not in err


@pytest.mark.slow
def test_item7_sigint_stops_solve_as_text_too(tmp_path):
    path = write_spec(tmp_path, HARD_D1)
    work, code, out, err, _ = interrupt_cli(["solve", path, "--verbose"], "first incumbent")
    assert code == 130 and work < SIGINT_WORK
    status = next(line for line in out.splitlines() if line.startswith("status"))
    assert status.split()[1] == "interrupted" and "lower bound" in out and "minimiser" in out


@pytest.mark.parametrize("method", ["enumerate", pytest.param("sample", marks=pytest.mark.slow),
                                    pytest.param("milp", marks=pytest.mark.slow)])
def test_item7_sigint_stops_landscape(tmp_path, method):
    # enumerate: 10,746,800 cells at n = 100 (about 2.7 GB of arrays, under the default memory limit; the
    # 85,653,600 cells of n = 200 are refused before anything is built)
    path = write_spec(tmp_path, {**HARD_D1, "n": 100} if method == "enumerate" else HARD_D1)
    extra = {"enumerate": ["--max-cells", "20000000"], "sample": ["--starts", "5000"], "milp": []}[method]
    work, code, out, err, _ = interrupt_cli(["landscape", path, "--method", method, "--format", "json", "--verbose",
                                           *extra], " on hard (n = ", after=3.0)
    assert code == 130 and work < SIGINT_WORK, (code, work, err[-500:])
    obj = json.loads(out)
    assert obj["status"] == "interrupted" and obj["method"] == method
    assert obj["n_minima"] == len(obj["minima"])  # what was certified before the signal (here: nothing yet)
    assert "Traceback" not in err


def test_item7_sigint_stops_certify_during_the_global_solve(tmp_path, capsys):
    # d = 2, n = 80: about 20 s of global solve (HARD_D1 became a 2.4 s bnb solve with the 1-D hull
    # relaxation at every n, and certify finished before the signal)
    path = write_spec(tmp_path, {**HARD_D2, "n": 80})
    params = tmp_path / "p.json"
    code, _, _ = run_cli(capsys, "solve", path, "--time-limit", 3, "--params-out", params)
    assert code == 0
    work, code, out, err, _ = interrupt_cli(["certify", path, "--params", params, "--format", "json", "--verbose"],
                                          "certifying", after=4.0)
    assert code == 130 and work < SIGINT_WORK, (code, work, err[-500:])
    obj = json.loads(out)
    assert obj["status"] == "interrupted" and obj["verdict"] in ("local_min", "saddle", "not_stationary",
                                                                 "inconclusive")
    spec = load_spec(path)
    assert obj["risk"] == pytest.approx(risk_of(json.loads(params.read_text()), spec), rel=1e-9)


def test_item7_sigint_stops_bench_and_keeps_the_finished_rows(tmp_path):
    out_dir = tmp_path / "bench"
    work, code, out, err, _ = interrupt_cli(["bench", TENT, "--methods", "milp,gd", "--starts", "300000",
                                           "--out", out_dir, "--name", "t"], "tent-relu-w2 milp:", after=1.5)
    assert code == 130 and work < SIGINT_WORK, (code, work, err[-500:])
    table = pd.read_csv(out_dir / "bench-t.csv")
    assert table["method"].tolist() == ["milp", "gd"]
    assert table["status"].tolist() == ["optimal", "interrupted"]
    assert table["risk"].iloc[0] == pytest.approx(TENT_OPTIMUM, rel=1e-8)
    assert "interrupted" in (out_dir / "bench-t.md").read_text() and not (out_dir / "bench-t.partial.csv").exists()
    assert "leaked semaphore" not in err and "Traceback" not in err


# --- 8. no tracebacks: the cases of the issue, and the catalogue tests/fault_inputs.py ---------------

@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_item8_9_every_bad_input_gives_one_clean_line(fault, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = materialise(fault, tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits itself
        code = exc.code
    _, err = capsys.readouterr()
    assert clean_error(code, err, fault) == "", err


def test_item8_a_closed_stdout_ends_quietly(tmp_path):
    """`milpland solve ... | head -1`: the reader leaves; no BrokenPipeError, exit 141 like Unix tools."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "milpland.cli", "solve", TENT],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == "", err


def test_item8_a_full_disk_during_a_batch_is_one_line_and_keeps_what_finished(tmp_path, capsys, monkeypatch):
    from milpland.runs import tables

    real_write = tables.write_rows
    jobs_written = []

    def write_rows(out_dir, table, rows):
        if table == "jobs" and len(jobs_written) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        if table == "jobs":
            jobs_written.append(rows[0]["instance"])
        return real_write(out_dir, table, rows)

    monkeypatch.setattr(tables, "write_rows", write_rows)
    out_dir = tmp_path / "out"
    suite = ROOT / "models" / "suites" / "smoke.toml"
    code, _, err = run_cli(capsys, "batch", suite, "--out", out_dir, "--jobs", 1)
    lines = [line for line in err.splitlines() if line.startswith("milpland batch")]
    assert code == 1 and "Traceback" not in err
    assert len(lines) == 1 and "No space left on device" in lines[0]
    assert "2 job(s) written before are intact" in lines[0]
    monkeypatch.setattr(tables, "write_rows", real_write)
    frames = tables.load(out_dir)
    assert sorted(frames["jobs"]["instance"]) == sorted(jobs_written)  # both committed jobs, whole
    assert len(frames["solves"]) == 2 and frames["solves"]["verified"].all()
    assert frames["runs"]["status"].tolist() == ["interrupted"]


# --- 9. messages that said the wrong thing ---------------------------------------------------------

def test_item9_messages_name_the_real_problem(tmp_path, capsys):
    expectations = {  # fault name -> what the old message said and must not say any more
        "csv-ragged": "usecols", "npz-garbage": "allow_pickle", "params-npz-random": "allow_pickle",
        "params-v-short": "(1, 1)", "params-c-string": "list of equally long lists", "spec-name-number": "is required",
        "batch-out-file": "File exists", "bench-out-file": "File exists",
        "params-output-bias-mismatch": "params.b[1]",
    }
    by_name = {f.name: f for f in FAULTS}
    for name, stale in expectations.items():
        code = main(materialise(by_name[name], tmp_path))
        _, err = capsys.readouterr()
        assert code == 2 and stale not in err, (name, err)
    semicolon = next(f for f in FAULTS if f.name == "csv-semicolons")
    main(materialise(semicolon, tmp_path))
    assert "is not a numeric CSV: line 1:" in capsys.readouterr()[1]  # numpy counted from 0: "row 0"
    mismatch = by_name["params-output-bias-mismatch"]
    main(materialise(mismatch, tmp_path))
    assert str(tmp_path / "p.json") in capsys.readouterr()[1]  # the file is named


def test_item9_the_box_line_and_the_global_source_say_what_applies(capsys):
    code, out, _ = run_cli(capsys, "solve", TENT, "--box", 0.5)
    box = next(line for line in out.splitlines() if line.startswith("box "))
    assert "output scale <= 0.5" not in box and "not bounded" in box  # ReLU: the box does not bound |v|
    code, out, _ = run_cli(capsys, "solve", ROOT / "models" / "hardtanh-w2.toml", "--box", 0.5, "--time-limit", 5)
    assert "output scale <= 0.5" in next(line for line in out.splitlines() if line.startswith("box "))
    code, out, _ = run_cli(capsys, "landscape", TENT, "--method", "sample", "--starts", 5, "--format", "json")
    obj = json.loads(out)
    from milpland.commands.landscape import format_text

    line = next(line for line in format_text(obj).splitlines() if line.startswith("global"))
    assert obj["global"]["method"] == "bnb" and "solve_global (bnb" in line and "MILP" not in line


# --- 10. batch: --jobs 0, one batch per folder, dead runs, no leaked semaphores -------------------

def test_item10_a_second_batch_on_the_same_folder_refuses_and_names_the_holder(tmp_path, capsys):
    from milpland.runs.tables import FolderLock, load, write_rows

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with FolderLock(out_dir, {"run_id": "r1", "command": "milpland batch first", "started": "t0"}):
        code, _, err = run_cli(capsys, "batch", TENT, "--out", out_dir)
        one_line_error(code, err, "another batch is writing there", f"pid {os.getpid()}", "milpland batch first")
        write_rows(out_dir, "runs", [{"run_id": "r1", "status": "running", "updated": pd.Timestamp.now(tz="UTC")},
                                     {"run_id": "r0", "status": "running", "updated": pd.Timestamp.now(tz="UTC")}])
        status = dict(zip(load(out_dir)["runs"]["run_id"], load(out_dir)["runs"]["status"]))
        assert status == {"r1": "running", "r0": "interrupted"}  # r0's process holds no lock: it is gone
    assert set(load(out_dir)["runs"]["status"]) == {"interrupted"}  # now nobody holds it
    code, _, err = run_cli(capsys, "batch", TENT, "--out", out_dir, "--jobs", 0)
    one_line_error(code, err, "--jobs", "positive integer")


def test_item10_sigint_on_a_batch_leaves_no_semaphore_warning(tmp_path):
    out_dir = tmp_path / "out"
    suite = ROOT / "models" / "suites" / "standard.toml"
    # the workers' CPU joins the batch's own at exit: the wall delay is the measure here
    _, code, _, err, delay = interrupt_cli(["batch", suite, "--out", out_dir, "--jobs", 2], "1 done", after=1.0)
    assert code == 130 and delay < 10, (code, delay)
    assert "leaked semaphore" not in err and "Traceback" not in err and "stopped by SIGINT" in err


# --- 11. figures that say what they show ------------------------------------------------------------

RELU_JSON = json.dumps({"name": "relu", "breakpoints": [0.0], "slopes": [0.0, 1.0], "intercepts": [0.0, 0.0]})
FIT = {"W1": [[1.0]], "b1": [0.0], "v": [2.0], "c": 0.5}  # f(x) = 2 relu(x) + 0.5
OTHER = {"W1": [[-1.0]], "b1": [0.0], "v": [-1.0], "c": 1.0}


def figure_tables(tmp_path, *, solves: bool = True) -> Path:
    """A results folder by hand: n = 6 and 40, d = 1 and 2, widths 1 and 2, two losses, one uncertified
    1-D solve, and minima of equal risk."""
    from milpland.runs import tables

    out = tmp_path / "out"
    data = json.dumps({"X": [[x] for x in (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)], "y": [0.5, 0.5, 0.5, 1.5, 2.5, 3.5]})
    rows, solve_rows = [], []
    for k, (n, d, width, loss, certified) in enumerate([(6, 1, 1, "squared", True), (6, 1, 2, "absolute", False),
                                                       (40, 1, 2, "squared", True), (6, 2, 1, "squared", True),
                                                       (40, 2, 2, "absolute", False)]):
        name = f"i{k}"
        rows.append({"job_key": name, "attempt": f"a{k}", "run_id": "r", "suite": "s", "group": "g", "instance": name,
                     "status": "done", "finished": pd.Timestamp.now(tz="UTC"), "n": n, "d": d, "width": width,
                     "activation_json": RELU_JSON, "data_json": data if d == 1 else None})
        solve_rows.append({"job_key": name, "attempt": f"a{k}", "suite": "s", "group": "g", "instance": name,
                           "status": "optimal" if certified else "time_limit", "certified": certified,
                           "verified": True, "seconds_total": 0.5 + k, "loss": loss, "box_active": False,
                           "params": json.dumps(FIT if certified else OTHER)})
    tables.write_rows(out, "jobs", rows)
    if solves:
        tables.write_rows(out, "solves", solve_rows)
    minima = [{"job_key": "i0", "attempt": "a0", "suite": "s", "group": "g", "instance": "i0", "gap": gap,
               "risk": 1.0 + gap, "spurious": gap > 0, "complete": True, "params": json.dumps(p)}
              for gap, p in [(0.0, FIT), (0.25, OTHER), (0.25, OTHER), (0.25, OTHER), (0.5, OTHER)]]
    tables.write_rows(out, "minima", minima)
    return out


def captured_figures(monkeypatch) -> dict:
    from milpland.runs import report

    figures = {}
    real_save = report._save
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.setdefault(path.name, fig) and real_save(fig, path))
    return figures


def test_item11_solve_time_draws_exact_n_one_panel_per_d_with_a_full_legend(tmp_path, monkeypatch):
    from milpland.runs import report, tables

    figures = captured_figures(monkeypatch)
    report.write_figures(tables.load(figure_tables(tmp_path)), tmp_path / "fig")
    fig = figures["solve_time.png"]
    panels = [ax for ax in fig.axes if ax.collections]
    assert [ax.get_title() for ax in panels] == ["inputs of dimension d = 1", "inputs of dimension d = 2"]
    xs = {float(x) for ax in panels for c in ax.collections for x in c.get_offsets()[:, 0]}
    assert xs == {6.0, 40.0}  # exactly the n of the data: no jitter
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert {"squared loss", "absolute loss", "width 1", "width 2", "filled: certified"} <= set(labels)
    assert any(label.startswith("hollow: not certified") for label in labels)
    colours = {tuple(np.round(c.get_facecolor()[0], 3)) for ax in panels for c in ax.collections
               if len(c.get_offsets()) and c.get_facecolor().size}
    assert len(colours) >= 2  # the widths are told apart


def test_item11_fits_have_axis_labels_and_never_call_an_uncertified_point_global(tmp_path, monkeypatch):
    from milpland.runs import report, tables

    figures = captured_figures(monkeypatch)
    report.write_figures(tables.load(figure_tables(tmp_path)), tmp_path / "fig")
    fig = figures["fits_1d.png"]
    assert fig._supxlabel.get_text() == "input x" and "network output" in fig._supylabel.get_text()
    labels = {ax.get_title(): [line.get_label() for line in ax.get_lines()] for ax in fig.axes if ax.get_visible()}
    assert "global minimum (certified)" in labels["i0"]
    assert labels["i1"] == ["best point found, NOT certified (status time_limit)"]
    # i0: five minima, one at gap 0 and three of equal gap: the spurious ones are all named
    assert labels["i0"][0] == "spurious minimum" and len(labels["i0"]) == 5


def test_item11_a_minima_only_batch_still_draws_the_global_fit(tmp_path, monkeypatch):
    from milpland.runs import report, tables

    figures = captured_figures(monkeypatch)
    report.write_figures(tables.load(figure_tables(tmp_path, solves=False)), tmp_path / "fig")
    lines = {line.get_label(): line for ax in figures["fits_1d.png"].axes for line in ax.get_lines()}
    best = lines["global minimum (best of a complete list)"]
    x = np.asarray(best.get_xdata())
    assert np.allclose(best.get_ydata(), 2.0 * np.maximum(x, 0.0) + 0.5)  # FIT, by hand


def test_item11_minima_of_equal_risk_are_counted_not_hidden(tmp_path, monkeypatch):
    from milpland.runs import report, tables

    figures = captured_figures(monkeypatch)
    report.write_figures(tables.load(figure_tables(tmp_path)), tmp_path / "fig")
    ax = figures["minima_risk.png"].axes[0]
    marks = [tuple(o) for c in ax.collections for o in c.get_offsets()]
    assert sorted(y for _, y in marks) == [0.0, 0.25, 0.5]  # three distinct levels ...
    assert [t.get_text() for t in ax.texts] == ["\u00d73"]  # ... one of them holding three minima
    assert [t.get_text() for t in ax.get_xticklabels()] == ["i0 (5 in 3 levels)"]


@pytest.mark.parametrize("with_solves", [True, False])
def test_item11_the_zero_level_is_called_global_only_where_the_solve_is_certified(tmp_path, monkeypatch, with_solves):
    from milpland.runs import report, tables

    figures = captured_figures(monkeypatch)
    report.write_figures(tables.load(figure_tables(tmp_path, solves=with_solves)), tmp_path / "fig")
    ax = figures["minima_risk.png"].axes[0]
    diamond = [c for c in ax.collections if c.get_offsets()[0][1] == 0.0][0]
    filled = diamond.get_facecolor().shape[0] > 0 and diamond.get_facecolor()[0][3] > 0
    assert filled == with_solves  # i0's solve is certified in the solves table; without it nothing is
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert ("NOT certified" in legend) == (not with_solves)


def test_item11_the_bench_figure_does_not_credit_gd_with_the_global_minimum():
    from milpland.runs.bench import times_figure

    table = pd.DataFrame([
        {"instance": "a", "method": "milp", "n": 10, "loss": "squared", "status": "optimal", "seconds": 1.0},
        {"instance": "a", "method": "gd", "n": 10, "loss": "squared", "status": "heuristic", "seconds": 0.5,
         "fraction_global": 0.0},
        {"instance": "b", "method": "gd", "n": 20, "loss": "absolute", "status": "heuristic", "seconds": 0.7,
         "fraction_global": 0.25},
    ])
    fig = times_figure(table)
    ax = fig.axes[0]
    assert "global" not in ax.get_title()
    filled, hollow = set(), set()
    for c in ax.collections:
        xs = {float(x) for x, _ in c.get_offsets()}
        face = c.get_facecolor()
        (hollow if face.size == 0 or face[0][3] == 0 else filled).update(xs)
    assert hollow == {10.0}  # gd at n = 10: no start reached the global minimum
    assert filled == {10.0, 20.0}  # milp at n = 10 (certified), gd at n = 20 (a quarter of its starts reached it)
    markers = {len(c.get_paths()[0].vertices) for c in ax.collections if len(c.get_offsets())}
    assert len(markers) == 2  # squared and absolute loss are drawn with different markers
