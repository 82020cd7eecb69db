"""Suites and the batch runner: expansion, error rows, skip/rerun, kill and resume, signals, dask."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from milpland.errors import MilplandError
from milpland.runs import batch, tables
from milpland.runs.suites import resolve

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SUITES = REPO / "models" / "suites"
HAVE_SOLVE = importlib.util.find_spec("milpland.search.solve") is not None

# Runs milpland's CLI; lists batch/report until cli.py does, and drops commands whose module is missing.
DRIVER = textwrap.dedent("""
    import importlib.util, sys
    from milpland import cli
    cli.COMMANDS[:] = [c for c in dict.fromkeys([*cli.COMMANDS, "batch", "report"])
                       if importlib.util.find_spec(f"milpland.commands.{c}")]
    sys.exit(cli.main(sys.argv[1:]))
""")


# --- test-only tasks (module level: workers import them by name) --------------------------------


def lsq_task(spec, options):
    """Mean squared residual of the least-squares affine fit, by numpy's lstsq."""
    time.sleep(float(options.get("sleep", 0.0)))
    A = np.column_stack([spec.X, np.ones(spec.n)])
    coef, *_ = np.linalg.lstsq(A, spec.y, rcond=None)
    r = A @ coef - spec.y
    return {"fits": [{"risk": float(np.mean(r**2)), "n": spec.n, "pid": os.getpid()}]}


def slow_lsq_task(spec, options):
    return lsq_task(spec, {"sleep": 0.15})


def very_slow_task(spec, options):
    return lsq_task(spec, {"sleep": 1.0})


def failing_task(spec, options):
    if spec.n == 5:
        raise ValueError("this task refuses n = 5")
    return lsq_task(spec, options)


assert batch.LEDGER_TABLES == tables.LEDGER_TABLES
batch.register_task("test-lsq", lsq_task, tables=("fits",), error_table="fits")
batch.register_task("test-failing", failing_task, tables=("fits",), error_table="fits")


def closed_form_lsq_risk(x: np.ndarray, y: np.ndarray) -> float:
    """1-D least squares by the textbook formulas: slope = cov(x, y) / var(x)."""
    xm, ym = x.mean(), y.mean()
    slope = np.sum((x - xm) * (y - ym)) / np.sum((x - xm) ** 2)
    r = ym + slope * (x - xm) - y
    return float(np.mean(r**2))


def write_suite(folder: Path, text: str, name: str = "suite.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


SMALL_GRID = """
    [suite]
    name = "small"
    [[grid]]
    group = "g"
    [grid.base]
    data = { generator = "teacher", d = 1, noise = 0.1 }
    network = { hidden = [2] }
    [grid.vary]
    "data.n" = [4, 5, 6]
    "data.seed" = [0, 1]
"""


def run_cli(*args, timeout=120, **kw):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}"}
    return subprocess.run([sys.executable, "-c", DRIVER, *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=timeout, **kw)


def start_cli(*args, stderr_path: Path):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}"}
    err = open(stderr_path, "w")
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, *args], stdout=subprocess.DEVNULL, stderr=err, cwd=REPO,
                            env=env, start_new_session=True)
    err.close()
    return proc


def committed_jobs(out: Path) -> int:
    return len(list((out / "jobs").glob("part-*.parquet"))) if (out / "jobs").exists() else 0


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def session_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_session(pgid: int) -> None:
    if session_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)


# --- suites -------------------------------------------------------------------------------------


def test_grid_is_the_cartesian_product_with_values_applied(tmp_path):
    path = write_suite(tmp_path, SMALL_GRID)
    instances = resolve([str(path)])
    assert len(instances) == 6
    assert [i.name for i in instances[:2]] == ["g-n4-s0", "g-n4-s1"]
    pairs = {(i.spec.n, i.name.split("-s")[1]) for i in instances}
    assert pairs == {(n, s) for n in (4, 5, 6) for s in ("0", "1")}
    assert all(i.ok and i.suite == "small" and i.group == "g" and i.spec.width == 2 for i in instances)
    # different seeds must give different data (the seed reached the generator)
    a, b = instances[0].spec, instances[1].spec
    assert not np.allclose(a.y, b.y)


def test_name_template_and_listed_specs(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "one.toml").write_text(
        'name = "one"\n[data]\nx = [0.0, 1.0, 2.0]\ny = [0.0, 1.0, 0.0]\n[network]\nhidden = [1]\n'
    )
    path = write_suite(tmp_path, """
        [suite]
        name = "mixed"
        specs = ["specs/*.toml"]
        [[grid]]
        name = "{group}_{data.n}_{loss.kind}"
        [grid.base]
        data = { generator = "sine", n = 5 }
        network = { hidden = [1] }
        [grid.vary]
        "loss.kind" = ["squared", "absolute"]
    """)
    names = [i.name for i in resolve([str(path)])]
    assert names == ["one", "mixed_5_squared", "mixed_5_absolute"]


@pytest.mark.parametrize("text, needle", [
    ("[suite]\nname = 'x'\n", "lists no instances"),
    ("[suite]\nname = 'x'\nspecs = ['nothing-*.toml']\n", "no file matches"),
    ("[suite]\nname = 'x'\nbogus = 1\n[[grid]]\nbase = {}\n", "bogus"),
    ("[suite]\nname = 'x'\n[[grid]]\n[grid.base]\nnetwork = {hidden=[1]}\n[grid.vary]\n'data.n' = 5\n", "non-empty list"),
    ("[suite]\nname = 'x'\n[[grid]]\n[grid.base]\nnetwork = {hidden=[1]}\n[grid.vary]\n'n' = [5]\n", "'<table>.<key>'"),
    ("[suite]\nname = 'x'\n[[grid]]\ngroup = 'a'\n[grid.base]\ndata = {generator='sine', n=4}\nnetwork = {hidden=[1]}\n"
     "[[grid]]\ngroup = 'a'\n[grid.base]\ndata = {generator='sine', n=5}\nnetwork = {hidden=[1]}\n", "two instances"),
    ("[suite]\nname = 'x\n", "not valid TOML"),
])
def test_malformed_suite_raises_up_front(tmp_path, text, needle):
    path = write_suite(tmp_path, text)
    with pytest.raises(MilplandError, match=None) as info:
        resolve([str(path)])
    assert needle in str(info.value)


def test_shipped_suites_resolve_cleanly():
    sizes = {}
    for path in sorted(SUITES.glob("*.toml")):
        instances = resolve([str(path)])
        assert all(i.ok for i in instances), [i.error for i in instances if not i.ok]
        sizes[path.stem] = instances
    assert {"smoke", "standard", "scaling", "tiny60"} <= set(sizes)
    assert len(sizes["tiny60"]) >= 50 and max(i.spec.n for i in sizes["tiny60"]) <= 6
    assert len(sizes["smoke"]) <= 8 and max(i.spec.n for i in sizes["smoke"]) <= 8
    std = sizes["standard"]
    assert {i.spec.width for i in std} == {2, 3} and {i.spec.d for i in std} == {1, 2}
    assert min(i.spec.n for i in std) == 10 and max(i.spec.n for i in std) == 40
    assert {i.spec.loss.kind for i in std} == {"squared", "absolute"}
    assert {i.spec.network.activation.name for i in std} == {"relu", "leaky_relu"}


# --- the batch, in process ------------------------------------------------------------------------


def test_results_match_closed_form_and_second_run_skips(tmp_path):
    suite = write_suite(tmp_path, SMALL_GRID)
    out = tmp_path / "out"
    log = tmp_path / "log.txt"
    with open(log, "w") as stream:
        first = batch.run_batch([str(suite)], out=out, task="test-lsq", jobs=2, stream=stream)
    assert (first.done, first.failed, first.skipped, first.exit_code) == (6, 0, 0, 0)
    lines = log.read_text().splitlines()
    assert len(lines) == 6 and lines[-1].startswith("[6/6] 6 done, 0 failed")  # plain lines: not a TTY
    frames = tables.load(out)
    by_name = {i.name: i.spec for i in resolve([str(suite)])}
    fits = frames["fits"].set_index("instance")
    for name, spec in by_name.items():
        assert fits.loc[name, "risk"] == pytest.approx(closed_form_lsq_risk(spec.X[:, 0], spec.y), rel=1e-9, abs=1e-12)
    assert set(frames["jobs"]["status"]) == {"done"} and set(frames["jobs"]["n"]) == {4, 5, 6}

    second = batch.run_batch([str(suite)], out=out, task="test-lsq", jobs=2, stream=open(os.devnull, "w"))
    assert (second.done, second.failed, second.skipped) == (0, 0, 6)
    raw = tables.load(out, raw=True)
    assert len(raw["jobs"]) == 6 and len(raw["fits"]) == 6
    assert len(tables.load(out)["runs"]) == 2


def test_rerun_replaces_previous_rows(tmp_path):
    suite = write_suite(tmp_path, SMALL_GRID)
    out = tmp_path / "out"
    quiet = open(os.devnull, "w")
    batch.run_batch([str(suite)], out=out, task="test-lsq", jobs=2, stream=quiet)
    again = batch.run_batch([str(suite)], out=out, task="test-lsq", jobs=2, rerun=True, stream=quiet)
    assert again.done == 6 and again.skipped == 0
    raw, frames = tables.load(out, raw=True), tables.load(out)
    assert len(raw["fits"]) == 12 and len(frames["fits"]) == 6
    assert set(frames["fits"]["run_id"]) == {again.run_id} and set(frames["jobs"]["run_id"]) == {again.run_id}
    # how an interrupted --rerun resumes: what finished since its start is kept, the rest redone
    since = datetime.now(timezone.utc)  # a --rerun that started now and was interrupted at once
    resumed = batch.run_batch([str(suite)], out=out, task="test-lsq", jobs=2, rerun_since=since, stream=quiet)
    assert (resumed.done, resumed.skipped) == (6, 0)
    resumed = batch.run_batch([str(suite)], out=out, task="test-lsq", jobs=2, rerun_since=since, stream=quiet)
    assert (resumed.done, resumed.skipped) == (0, 6)


def test_resume_command_drops_rerun_and_keeps_the_rest():
    import argparse

    from milpland.commands.batch import command_line

    args = argparse.Namespace(targets=["a b.toml", "s/*.toml"], out="res", task="solve", jobs=2, time_limit=5.0,
                              csv=True, executor="local", scheduler=None, rerun=True, rerun_since=None)
    since = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert command_line(args) == "milpland batch 'a b.toml' 's/*.toml' --out res --jobs 2 --time-limit 5 --csv --rerun"
    assert command_line(args, resume_since=since).endswith("--csv --rerun-since 2025-01-02T03:04:05+00:00")


def test_time_limit_option_is_part_of_the_key(tmp_path):
    suite = write_suite(tmp_path, SMALL_GRID)
    out = tmp_path / "out"
    quiet = open(os.devnull, "w")
    batch.run_batch([str(suite)], out=out, task="test-lsq", jobs=2, stream=quiet)
    other = batch.run_batch([str(suite)], out=out, task="test-lsq", jobs=2, time_limit=7, stream=quiet)
    assert other.done == 6 and other.skipped == 0
    jobs = tables.load(out)["jobs"]
    assert sorted(jobs["time_limit"]) == [7.0] * 6 + [60.0] * 6


def test_broken_specs_and_failing_instances_become_error_rows(tmp_path):
    (tmp_path / "broken.toml").write_text('name = "broken"\n[data]\nx = [0.0, 1.0]\ny = [0.0, 1.0]\n[network]\nhidden = [0]\n')
    (tmp_path / "garbled.toml").write_text('name = "garbled\n')
    suite = write_suite(tmp_path, """
        [suite]
        name = "errs"
        specs = ["broken.toml", "garbled.toml"]
        [[grid]]
        [grid.base]
        data = { generator = "sine", n = 5 }
        network = { hidden = [1] }
        [grid.vary]
        "data.d" = [1, 2]
        "data.n" = [4, 5]
    """)
    out = tmp_path / "out"
    summary = batch.run_batch([str(suite)], out=out, task="test-failing", jobs=2, stream=open(os.devnull, "w"))
    # broken.toml, garbled.toml, two d = 2 sine points (rejected by the generator), n = 5 raises
    assert (summary.done, summary.failed, summary.exit_code) == (1, 5, 1)
    jobs = tables.load(out)["jobs"].set_index("instance")
    assert jobs.loc["errs-d1-n4", "status"] == "done"
    assert "network.hidden" in jobs.loc["broken", "error"]
    assert "not valid TOML" in jobs.loc["garbled", "error"]
    assert "data.d" in jobs.loc["errs-d2-n4", "error"] and "data.d" in jobs.loc["errs-d2-n5", "error"]
    assert "refuses n = 5" in jobs.loc["errs-d1-n5", "error"] and "ValueError" in jobs.loc["errs-d1-n5", "traceback"]
    fits = tables.load(out)["fits"].set_index("instance")
    assert fits.loc["errs-d1-n5", "status"] == "error" and np.isnan(fits.loc["errs-d1-n5", "risk"])
    assert len(fits) == 6
    # failed jobs are retried, the finished one is not
    again = batch.run_batch([str(suite)], out=out, task="test-failing", jobs=1, stream=open(os.devnull, "w"))
    assert (again.skipped, again.done, again.failed) == (1, 0, 5)


def test_unknown_task_and_missing_dask_are_clear_errors(tmp_path, monkeypatch):
    suite = write_suite(tmp_path, SMALL_GRID)
    with pytest.raises(MilplandError, match="unknown task"):
        batch.run_batch([str(suite)], out=tmp_path / "o", task="nope")
    with pytest.raises(MilplandError, match="cannot import"):
        batch.run_batch([str(suite)], out=tmp_path / "o", task="no_such_module:f")
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(MilplandError, match="pip install 'milpland\\[dask\\]'"):
        batch.run_batch([str(suite)], out=tmp_path / "o", task="test-lsq", executor="dask", stream=open(os.devnull, "w"))


# --- the command line, in subprocesses ------------------------------------------------------------


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(MilplandError, match="cannot write there"):
        batch.run_batch([str(SUITES / "smoke.toml")], out=blocker, task="test-lsq")
    res = run_cli("batch", str(SUITES / "smoke.toml"), "--out", str(blocker / "out"), "--task", "test_batch:lsq_task")
    assert res.returncode == 2
    assert "cannot write there" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_malformed_suite_on_the_command_line(tmp_path):
    bad = write_suite(tmp_path, "[suite]\nname = 'bad'\n[[grid]]\n[grid.base]\nnetwork={hidden=[1]}\n[grid.vary]\n'x.y'=[1]\n")
    res = run_cli("batch", str(bad), "--out", str(tmp_path / "out"), "--task", "test_batch:lsq_task")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "'x.y'" in res.stderr


def test_kill_and_resume(tmp_path):
    """Acceptance: kill -9 a 60-instance batch mid-way; the rerun finishes the rest only."""
    out = tmp_path / "out"
    args = ["batch", str(SUITES / "tiny60.toml"), "--out", str(out), "--task", "test_batch:slow_lsq_task",
            "--jobs", "2"]
    proc = start_cli(*args, stderr_path=tmp_path / "first.err")
    try:
        wait_for(lambda: committed_jobs(out) >= 8, 60, "8 finished jobs")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # the workers notice that their parent is gone and exit: nothing of the session survives
        wait_for(lambda: not session_alive(proc.pid), 10, "orphaned workers to exit")
    finally:
        kill_session(proc.pid)
    first = tables.load(out)
    n_first = len(first["jobs"])
    assert 8 <= n_first < 60
    assert len(pd.read_parquet(out / "jobs")) == n_first  # plain pandas reads the folder too
    before = dict(zip(first["jobs"]["job_key"], first["jobs"]["attempt"]))

    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    assert f"{n_first} skipped as already done" in res.stderr
    assert f"{60 - n_first} done, 0 failed" in res.stderr
    final = tables.load(out)
    jobs, fits = final["jobs"], final["fits"]
    assert len(jobs) == 60 and jobs["job_key"].is_unique and set(jobs["status"]) == {"done"}
    assert len(tables.load(out, raw=True)["jobs"]) == 60  # nothing finished was computed twice
    assert all(dict(zip(jobs["job_key"], jobs["attempt"]))[k] == a for k, a in before.items())
    assert len(fits) == 60 and set(fits["attempt"]) == set(jobs["attempt"])
    specs = {i.name: i.spec for i in resolve([str(SUITES / "tiny60.toml")])}
    for name, risk in zip(fits["instance"], fits["risk"]):
        spec = specs[name]
        assert risk == pytest.approx(closed_form_lsq_risk(spec.X[:, 0], spec.y), rel=1e-9, abs=1e-12)
    runs = final["runs"].set_index("run_id")
    assert sorted(runs["status"]) == ["finished", "interrupted"]  # the killed run never finished: its process is gone
    assert set(runs["cpu_count"]) == {os.cpu_count()} and all(runs["solver_version"].str.len() > 0)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_and_says_how_to_resume(tmp_path, signum, code):
    out = tmp_path / "out"
    err = tmp_path / "err.txt"
    proc = start_cli("batch", str(SUITES / "tiny60.toml"), "--out", str(out), "--task",
                     "test_batch:very_slow_task", "--jobs", "2", stderr_path=err)
    try:
        wait_for(lambda: committed_jobs(out) >= 1, 60, "a finished job")
        started = time.monotonic()
        os.kill(proc.pid, signum)
        assert proc.wait(timeout=20) == code
        stop_seconds = time.monotonic() - started
        wait_for(lambda: not session_alive(proc.pid), 10, "workers to exit")
    finally:
        kill_session(proc.pid)
    assert stop_seconds < 10  # running jobs are stopped, not waited for
    text = err.read_text()
    assert "Traceback" not in text
    name = signal.Signals(signum).name
    assert f"stopped by {name}" in text
    resume = [line for line in text.splitlines() if line.startswith("resume with: ")]
    assert resume and f"--out {out}" in resume[0] and "tiny60.toml" in resume[0]
    frames = tables.load(out)
    assert frames["runs"]["status"].tolist() == ["interrupted"]
    assert len(frames["fits"]) == len(frames["jobs"]) == int(frames["runs"]["done"].iloc[0]) >= 1


# --- other executors and the real solver ----------------------------------------------------------


TIMING = {"attempt", "run_id", "seconds", "started", "finished", "worker", "pid", "seconds_build", "seconds_solve",
          "seconds_total", "nodes"}


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in frame.columns if c not in TIMING]
    return frame[keep].sort_values("job_key").reset_index(drop=True)


def test_dask_executor_gives_the_same_tables(tmp_path):
    distributed = pytest.importorskip("distributed")
    suite = write_suite(tmp_path, SMALL_GRID)
    quiet = open(os.devnull, "w")
    local = batch.run_batch([str(suite)], out=tmp_path / "local", task="test-lsq", jobs=2, stream=quiet)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        remote = batch.run_batch([str(suite)], out=tmp_path / "dask", task="test-lsq", executor="dask",
                                 scheduler=cl.scheduler_address, stream=quiet)
    assert local.done == remote.done == 6
    a, b = tables.load(tmp_path / "local"), tables.load(tmp_path / "dask")
    for name in ("fits", "jobs"):
        pd.testing.assert_frame_equal(comparable(a[name]), comparable(b[name]))
    assert set(b["runs"]["executor"]) == {"dask"}
    assert b["jobs"]["worker"].nunique() >= 1 and set(b["fits"]["pid"]).isdisjoint({os.getpid()})


@pytest.mark.skipif(not HAVE_SOLVE, reason="milpland.search.solve is not there yet")
def test_solve_task_end_to_end_against_brute_force(tmp_path):
    bruteforce = pytest.importorskip("bruteforce")
    suite = write_suite(tmp_path, """
        [suite]
        name = "e2e"
        [[grid]]
        group = "t"
        [grid.base]
        data = { generator = "teacher", n = 7, d = 1, noise = 0.2, seed = 4 }
        network = { hidden = [2] }
        [grid.vary]
        "loss.kind" = ["absolute", "squared"]
    """)
    out = tmp_path / "out"
    summary = batch.run_batch([str(suite)], out=out, task="solve", jobs=2, time_limit=30,
                              stream=open(os.devnull, "w"))
    assert (summary.done, summary.failed) == (2, 0)
    solves = tables.load(out)["solves"].set_index("instance")
    for inst in resolve([str(suite)]):
        spec, row = inst.spec, solves.loc[inst.name]
        ref = bruteforce.brute_force_global(spec.X, spec.y, spec.network.activation, spec.loss, spec.box.weight,
                                            spec.box.output, spec.network.output_bias, width=spec.width)
        assert row["status"] == "optimal" and bool(row["certified"])
        assert row["risk"] == pytest.approx(ref.risk, rel=1e-5, abs=1e-7)
        assert row["risk_numpy_difference"] < 1e-6
        assert json.loads(row["params"])["W1"] and row["suite"] == "e2e"


def test_progress_rewrites_one_line_on_a_terminal():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    progress = batch.Progress(3, term)
    ok = batch.Job("k1", "a", "r", resolve([str(SUITES / "smoke.toml")])[0], batch.get_task("solve"))
    counts = {"done": 1, "failed": 0}
    progress.finished(ok, "done", "", counts, running=1)
    counts["failed"] = 1
    progress.finished(ok, "error", "it broke", counts, running=0)
    progress.close()
    text = term.getvalue()
    assert text.count("\n") == 2  # the failure is printed on its own line, and the final newline
    assert "\r[1/3] 1 done, 0 failed, 1 running" in text
    assert re.search(r"\rFAILED sine-squared: it broke *\n\r\[2/3\] 1 done, 1 failed", text)
    assert text.rstrip().endswith("sine-squared FAILED")


def test_landscape_task_writes_minima_whose_best_is_the_brute_force_minimum(tmp_path):
    bruteforce = pytest.importorskip("bruteforce")
    suite = write_suite(tmp_path, """
        [suite]
        name = "land"
        [[grid]]
        group = "tent"
        [grid.base]
        data = { x = [[0.0], [1.0], [2.0], [3.0]], y = [0.0, 1.0, 0.0, 1.0] }
        network = { hidden = [2] }
        box = { weight = 10.0 }
        [grid.vary]
        "loss.kind" = ["squared", "absolute"]
    """)
    out = tmp_path / "out"
    summary = batch.run_batch([str(suite)], out=out, task="landscape", jobs=1, time_limit=30,
                              stream=open(os.devnull, "w"))
    assert (summary.done, summary.failed) == (2, 0)
    loaded = tables.load(out)
    for inst in resolve([str(suite)]):
        spec = inst.spec
        ref = bruteforce.brute_force_global(spec.X, spec.y, spec.network.activation, spec.loss, spec.box.weight,
                                            spec.box.output, spec.network.output_bias, width=spec.width)
        minima = loaded["minima"][loaded["minima"]["instance"] == inst.name]
        assert minima["risk"].min() == pytest.approx(ref.risk, rel=1e-6, abs=1e-9)
        assert (minima["gap"] >= -1e-9).all() and minima["spurious"].any()  # tent: linear/constant fits
        assert loaded["solves"].set_index("instance").loc[inst.name, "risk"] == pytest.approx(ref.risk, rel=1e-6)
