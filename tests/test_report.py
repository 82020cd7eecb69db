"""`milpland report`: summary numbers on hand-made tables, and the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from milpland.runs import report, tables

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)
RELU = json.dumps({"name": "relu", "breakpoints": [0.0], "slopes": [0.0, 1.0], "intercepts": [0.0, 0.0]})
# f(x) = 2 relu(x) + 0.5 and a spurious g(x) = -1 relu(-x) + 1
GLOBAL = {"W1": [[1.0]], "b1": [0.0], "v": [2.0], "c": 0.5}
SPURIOUS = {"W1": [[-1.0]], "b1": [0.0], "v": [-1.0], "c": 1.0}
X1 = [-1.0, -0.5, 0.0, 0.5, 1.0]


def job(name, group, *, status="done", n=10, d=2, data=None):
    row = {"job_key": name, "attempt": f"at-{name}", "run_id": "r", "suite": "s", "group": group, "instance": name,
           "status": status, "error": "boom" if status == "error" else "", "finished": NOW, "n": n, "d": d,
           "width": 2, "activation_json": RELU}
    if data is not None:
        row["data_json"] = json.dumps(data)
    return row


def solve(name, group, *, status, certified, verified, seconds, loss="squared", params=None):
    return {"job_key": name, "attempt": f"at-{name}", "suite": "s", "group": group, "instance": name, "status": status,
            "certified": certified, "verified": verified, "seconds_total": seconds, "loss": loss,
            "params": json.dumps(params) if params else None}


def minimum(name, group, gap, spurious, params):
    return {"job_key": name, "attempt": f"at-{name}", "suite": "s", "group": group, "instance": name, "gap": gap,
            "risk": 1.0 + gap, "spurious": spurious, "params": json.dumps(params)}


@pytest.fixture
def results(tmp_path):
    out = tmp_path / "out"
    data = {"X": [[x] for x in X1], "y": [0.0, 0.5, 0.5, 1.5, 2.5]}
    tables.write_rows(out, "jobs", [job("a1", "A"), job("a2", "A"), job("a3", "A"), job("a4", "A", status="error"),
                                    job("b1", "B", n=5, d=1, data=data)])
    tables.write_rows(out, "solves", [
        solve("a1", "A", status="optimal", certified=True, verified=True, seconds=1.0),
        solve("a2", "A", status="optimal", certified=False, verified=False, seconds=2.0, loss="absolute"),
        solve("a3", "A", status="time_limit", certified=False, verified=True, seconds=10.0),
        solve("a4", "A", status="error", certified=False, verified=False, seconds=np.nan),
        solve("b1", "B", status="optimal", certified=True, verified=True, seconds=3.0, params=GLOBAL),
    ])
    tables.write_rows(out, "minima", [
        minimum("b1", "B", 0.0, False, GLOBAL), minimum("b1", "B", 0.1, True, SPURIOUS),
        minimum("b1", "B", 0.5, True, SPURIOUS),
    ])
    tables.write_rows(out, "runs", [{"run_id": "r", "status": "finished", "started": NOW, "updated": NOW}])
    return out


def test_summary_numbers(results):
    table = report.report(results)["summary"]
    a, b = table.loc[("s", "A")], table.loc[("s", "B")]
    assert (a["instances"], a["failed"], a["solved"], a["certified"], a["unverified"], a["time_limit"]) == (4, 1, 2, 1, 1, 1)
    assert a["median_s"] == pytest.approx(2.0) and a["max_s"] == pytest.approx(10.0)  # median of 1, 2, 10
    assert (b["instances"], b["solved"], b["certified"], b["local_minima"], b["spurious"]) == (1, 1, 1, 3, 2)
    assert b["spurious_per_instance"] == pytest.approx(2.0) and b["largest_gap"] == pytest.approx(0.5)
    assert b["with_spurious"] == 1 and a["local_minima"] == 0
    failures = report.report(results)["failures"]
    assert failures["instance"].tolist() == ["a4"] and failures["error"].tolist() == ["boom"]


def test_figures_are_written_and_draw_the_stored_networks(results, tmp_path, monkeypatch):
    captured = {}
    real_save = report._save

    def keep(fig, path):
        captured[path.name] = [(line.get_label(), line.get_xdata(), line.get_ydata()) for ax in fig.axes
                               for line in ax.get_lines()]
        return real_save(fig, path)

    monkeypatch.setattr(report, "_save", keep)
    paths = report.write_figures(tables.load(results), tmp_path / "fig")
    assert sorted(p.name for p in paths) == ["fits_1d.png", "minima_risk.png", "solve_time.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        h, w = mpimg.imread(p).shape[:2]
        assert h >= 300 and w >= 500
    lines = {label: (x, y) for label, x, y in captured["fits_1d.png"]}
    x, y = lines["global minimum (certified)"]
    assert np.allclose(y, 2.0 * np.maximum(x, 0.0) + 0.5)  # f(x) = 2 relu(x) + 0.5, by hand
    x, y = lines["spurious minimum"]
    assert np.allclose(y, -np.maximum(-x, 0.0) + 1.0)
    assert x.min() < -1.0 and x.max() > 1.0  # the plot covers the data range with a margin


def test_without_one_dimensional_data_there_is_no_fit_figure(tmp_path):
    out = tmp_path / "out"
    tables.write_rows(out, "jobs", [job("a1", "A")])
    tables.write_rows(out, "solves", [solve("a1", "A", status="optimal", certified=True, verified=True, seconds=1.0,
                                            params=GLOBAL)])
    names = sorted(p.name for p in report.write_figures(tables.load(out), tmp_path / "fig"))
    assert names == ["solve_time.png"]


def _driver():
    return ("import sys; from milpland import cli; cli.COMMANDS[:] = ['report']; "
            "sys.exit(cli.main(sys.argv[1:]))")


def test_report_command(results, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": ""}
    res = subprocess.run([sys.executable, "-c", _driver(), "report", str(results)], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Summary per suite and group" in res.stdout and "Failures" in res.stdout
    assert (results / "figures" / "solve_time.png").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = subprocess.run([sys.executable, "-c", _driver(), "report", str(empty)], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=120)
    assert res.returncode == 2 and "holds no result tables" in res.stderr and "Traceback" not in res.stderr
