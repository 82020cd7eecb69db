"""The census next to the certified band, batch task options, the landscape_levels figure (issue 13, 4-5).

Independent truths:

- the complete enumeration of every cell (`landscape --method enumerate`) is the reference list:
  the band's minima are exactly its minima up to the threshold, every census minimum is one of its
  minima, and the census minima the band does not hold lie above the threshold;
- the raw census (`run_census`, same seed: deterministic) gives the starts per minimum; the merged
  table must carry them on the matching rows;
- tent (README, hand-derived there): global 1/8, lowest spurious level 1/6, so `--levels 2` has
  threshold exactly 1/6, in the CLI's JSON and in the batch's solves row;
- a listing with one minimum removed by hand must produce a conflict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from test_landscape import TENT, run_cli
from test_landscape_bnb import tiny_spec

from milpland.commands.batch import parse_options
from milpland.errors import MilplandError
from milpland.landscape.census import run_census
from milpland.landscape.census_band import merge_census
from milpland.landscape.listing import landscape
from milpland.runs import batch, report, tables

REPO = Path(__file__).resolve().parents[1]
STARTS = 150

CASES = [
    dict(seed=0, d=1, n=6, width=2, activation="relu", loss="squared"),
    dict(seed=1, d=1, n=5, width=3, activation="relu", loss="squared"),
    dict(seed=3, d=2, n=5, width=2, activation="relu", loss="squared"),
    dict(seed=2, d=1, n=6, width=2, activation="leaky_relu", loss="squared"),
]


def fit_index(fitted, minima, spec) -> int:
    """Index of the minimum of ``minima`` with the same fitted values (max norm), or -1."""
    tol = 1e-6 * (1 + np.max(np.abs(spec.y)))
    dist = [np.max(np.abs(np.asarray(fitted) - m.fitted)) for m in minima]
    k = int(np.argmin(dist)) if dist else -1
    return k if k >= 0 and dist[k] <= tol else -1


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c['activation']}-d{c['d']}-w{c['width']}-s{c['seed']}")
def merged(request):
    spec = tiny_spec(**request.param)
    enum = landscape(spec, method="enumerate")
    assert enum.complete
    raw = run_census(spec, starts=STARTS, seed=7)
    G = 0.3 * max(enum.global_risk, 1e-3)
    band = landscape(spec, method="bnb", gap_max=G, census=STARTS, seed=7)
    return spec, enum, raw, band


def test_the_band_is_the_enumeration_up_to_the_threshold(merged):
    spec, enum, _, band = merged
    assert band.complete and band.census_band is not None and band.census_band.conflicts == []
    T, tol = band.proven_below, band.tolerance
    listed = [m for m in band.minima if m.found_by == "bnb"]
    expected = [m for m in enum.minima if m.risk <= T + tol]
    assert len(listed) == len(expected)
    assert all(fit_index(e.fitted, listed, spec) >= 0 for e in expected)


def test_every_census_minimum_below_the_threshold_is_in_the_band(merged):
    spec, enum, raw, band = merged
    T, tol = band.proven_below, band.tolerance
    listed = [m for m in band.minima if m.found_by == "bnb"]
    tail = [m for m in band.minima if m.found_by == "sample"]
    for cm in raw.minima:
        at = fit_index(cm.fitted, enum.minima, spec)
        assert at >= 0, "a census minimum the complete enumeration does not list"
        if enum.minima[at].risk < T - tol:
            assert fit_index(cm.fitted, listed, spec) >= 0
        else:
            assert fit_index(cm.fitted, listed, spec) >= 0 or fit_index(cm.fitted, tail, spec) >= 0
    for m in tail:  # the rows the census adds lie above the band and are minima of the enumeration
        assert m.risk >= T - tol and fit_index(m.fitted, enum.minima, spec) >= 0
        assert fit_index(m.fitted, listed, spec) < 0
    assert band.census_band.matched + band.census_band.above == len(raw.minima)


def test_basin_counts_follow_the_raw_census(merged):
    spec, _, raw, band = merged
    rows = band.to_rows()
    assert sum(r["basin_count"] for r in rows) == raw.census.ends["minimum"]
    for cm in raw.minima:
        k = fit_index(cm.fitted, band.minima, spec)
        row = rows[k]
        assert row["basin_count"] == raw.census.basins[cm.cell].count
        assert row["basin_fraction"] == pytest.approx(row["basin_count"] / STARTS)
        assert row["basin_ci_low"] <= row["basin_fraction"] <= row["basin_ci_high"]
    reached = {fit_index(cm.fitted, band.minima, spec) for cm in raw.minima}
    for k, row in enumerate(rows):
        if k not in reached:  # a listed minimum no start reached: 0 starts, Wilson [0, hi] with hi > 0
            assert row["basin_count"] == 0 and row["basin_ci_low"] == 0.0 < row["basin_ci_high"]


def test_a_listing_missing_a_minimum_below_the_threshold_is_a_conflict():
    spec = tiny_spec(**CASES[1])
    enum = landscape(spec, method="enumerate")
    raw = run_census(spec, starts=STARTS, seed=7)
    top = max(raw.minima, key=lambda m: raw.census.basins[m.cell].count)  # the census surely reached it
    k = fit_index(top.fitted, enum.minima, spec)
    listed = [m for j, m in enumerate(enum.minima) if j != k]
    _, _, band = merge_census(spec, listed, raw.census, raw.minima, listing="enumerate", proven_below=float("inf"),
                              threshold=float("inf"), open_bound=float("inf"), tol=enum.tolerance)
    assert len(band.conflicts) == 1 and band.conflicts[0]["risk"] == pytest.approx(enum.minima[k].risk)
    _, _, fine = merge_census(spec, enum.minima, raw.census, raw.minima, listing="enumerate",
                              proven_below=float("inf"), threshold=float("inf"), open_bound=float("inf"),
                              tol=enum.tolerance)
    assert fine.conflicts == [] and fine.matched == len(raw.minima)


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tent_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tent") / "tent.toml"
    path.write_text(TENT)
    return path


def test_command_prints_the_band_then_the_census(tent_path, capsys):
    assert run_cli(["landscape", str(tent_path), "--method", "bnb", "--levels", "2", "--census", "300",
                    "--seed", "1"]) == 0
    text = capsys.readouterr().out
    proof = text.index("proof         every local minimum in the box with risk <= 0.1666666667 is listed")
    assert proof < text.index("estimate      basin fractions from 300 starts") < text.index("not proven")
    assert "-- proven threshold 0.1666666667" in text
    assert run_cli(["landscape", str(tent_path), "--method", "bnb", "--levels", "2", "--census", "300", "--seed", "1",
                    "--format", "json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["threshold"] == pytest.approx(1 / 6, rel=1e-9)  # the second level, hand-derived (README)
    band = obj["census"]["band"]
    assert band["proven_below"] == pytest.approx(1 / 6, rel=1e-9) and band["conflicts"] == []
    # rows above 1/6 come from the census only, rows at or below it from the listing
    for m in obj["minima"]:
        assert (m["found_by"] == "sample") == (m["risk"] > 1 / 6 + 1e-9)
    assert sum(m["basin_count"] for m in obj["minima"]) == obj["census"]["ends"]["minimum"]


def test_census_with_the_wrong_method_is_a_one_line_error(tent_path, capsys):
    assert run_cli(["landscape", str(tent_path), "--method", "sample", "--census", "10"]) == 2
    err = capsys.readouterr().err
    assert "--census" in err and "--starts" in err and err.count("\n") == 1
    assert run_cli(["landscape", str(tent_path), "--census", "0"]) == 2
    assert "--census: must be an integer >= 1" in capsys.readouterr().err


# --- batch --option ------------------------------------------------------------------------------


def test_options_are_toml_scalars_or_bare_words():
    got = parse_options(["method=bnb", "gap_rel=0.5", "census=1000", 'seed = 3', 'method2="enumerate"'])
    assert got == {"method": "bnb", "gap_rel": 0.5, "census": 1000, "seed": 3, "method2": "enumerate"}
    assert isinstance(got["census"], int) and isinstance(got["gap_rel"], float)
    for bad in ("census", "=3", "levels=[1, 2]", "a={b=1}", "x=two words"):
        with pytest.raises(MilplandError, match="--option"):
            parse_options([bad])
    with pytest.raises(MilplandError, match="given twice"):
        parse_options(["census=1", "census=2"])


def test_task_options_are_checked_against_the_task():
    task = batch.get_task("landscape")
    assert batch.check_task_options(task, {"gap_rel": 1, "levels": 2}) == {"gap_rel": 1.0, "levels": 2}
    with pytest.raises(MilplandError, match="no option 'colour'; its options: census, gap_max"):
        batch.check_task_options(task, {"colour": 3})
    with pytest.raises(MilplandError, match="levels='two': must be an integer"):
        batch.check_task_options(task, {"levels": "two"})
    with pytest.raises(MilplandError, match="must be one of auto, enumerate, bnb, sample, milp"):
        batch.check_task_options(task, {"method": "bfs"})
    with pytest.raises(MilplandError, match="its options: none"):
        batch.check_task_options(batch.get_task("solve"), {"levels": 2})


def run_milpland(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "milpland.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)


@pytest.mark.parametrize("option,says", [
    ("colour=red", "task landscape has no option 'colour'; its options: census, gap_max, gap_rel, jobs, levels"),
    ("levels=two", "--option levels='two': must be an integer"),
    ("levels", "expected KEY=VALUE"),
])
def test_batch_option_mistakes_are_one_line(tmp_path, tent_path, option, says):
    res = run_milpland("batch", str(tent_path), "--out", str(tmp_path / "out"), "--task", "landscape",
                       "--option", option)
    assert res.returncode == 2 and says in res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "out" / "jobs").exists()  # refused before any job ran


def test_solves_rows_hold_the_threshold_the_command_printed(tmp_path, tent_path):
    res = run_milpland("landscape", str(tent_path), "--method", "bnb", "--levels", "2", "--format", "json")
    assert res.returncode == 0, res.stderr
    printed = json.loads(res.stdout)["threshold"]
    assert printed == pytest.approx(1 / 6, rel=1e-9)
    out = tmp_path / "out"
    res = run_milpland("batch", str(tent_path), "--out", str(out), "--task", "landscape", "--jobs", "1",
                       "--option", "method=bnb", "--option", "levels=2", "--option", "census=200",
                       "--option", "seed=1")
    assert res.returncode == 0, res.stderr
    loaded = tables.load(out)
    row = loaded["solves"].iloc[0]
    assert row["threshold"] == pytest.approx(printed, rel=1e-12) and row["proven_below"] == pytest.approx(printed)
    assert row["open_bound"] == np.inf and bool(row["landscape_complete"]) and row["landscape_method"] == "bnb"
    assert row["census_starts"] == 200 and 0.0 <= row["unseen_mass"] <= 1.0
    assert row["spurious_gap"] == pytest.approx(1 / 6 - 1 / 8, rel=1e-6) and bool(row["spurious_gap_proven"])
    minima = loaded["minima"]
    assert set(minima["found_by"]) <= {"bnb", "sample"} and minima["basin_count"].notna().all()
    assert (minima.loc[minima["found_by"] == "sample", "risk"] > 1 / 6 + 1e-9).all()
    assert json.loads(loaded["jobs"].iloc[0]["options_json"])["task"] == {"method": "bnb", "levels": 2,
                                                                          "census": 200, "seed": 1}
    # the figure of this folder: the tent's band and its census tail
    figure = report.write_figures(loaded, tmp_path / "fig")
    assert any(p.name == "landscape_levels.png" for p in figure)


# --- the figure ----------------------------------------------------------------------------------


def _landscape_tables(tmp_path):
    """Two landscape jobs by hand: a complete bnb band with a census tail, and a stopped listing whose
    reference point is not certified."""
    out = tmp_path / "out"
    solves = [
        {"job_key": "a", "attempt": "A", "instance": "band", "risk": 1.0, "certified": True, "status": "optimal",
         "landscape_method": "bnb", "threshold": 1.5, "open_bound": np.inf, "proven_below": 1.5,
         "landscape_complete": True, "unseen_mass": 0.02},
        {"job_key": "b", "attempt": "B", "instance": "stopped", "risk": 2.0, "certified": False,
         "status": "time_limit", "landscape_method": "bnb", "threshold": 3.0, "open_bound": 2.5, "proven_below": 2.5,
         "landscape_complete": False, "unseen_mass": np.nan},
    ]

    def minimum(attempt, name, risk, ref, found_by, fraction=np.nan):
        return {"job_key": attempt.lower(), "attempt": attempt, "instance": name, "risk": risk, "gap": risk - ref,
                "spurious": risk - ref > 1e-9, "found_by": found_by, "basin_fraction": fraction}

    minima = [minimum("A", "band", 1.0, 1.0, "bnb", 0.1), minimum("A", "band", 1.2, 1.0, "bnb", 0.3),
              minimum("A", "band", 1.2, 1.0, "bnb", 0.0), minimum("A", "band", 2.0, 1.0, "sample", 0.4),
              minimum("A", "band", 3.0, 1.0, "sample", 0.05),
              minimum("B", "stopped", 2.0, 2.0, "bnb"), minimum("B", "stopped", 2.2, 2.0, "bnb")]
    jobs = [{"job_key": k, "attempt": k.upper(), "instance": n, "status": "done", "finished": pd.Timestamp.now("UTC"),
             "n": 4, "d": 2, "width": 2} for k, n in (("a", "band"), ("b", "stopped"))]
    tables.write_rows(out, "jobs", jobs)
    tables.write_rows(out, "solves", solves)
    tables.write_rows(out, "minima", minima)
    return tables.load(out)


def test_the_levels_figure_draws_band_tail_and_legend(tmp_path, monkeypatch):
    captured = {}
    real_save = report._save

    def keep(fig, path):
        if path.name != "landscape_levels.png":
            return real_save(fig, path)
        ax = fig.axes[0]
        captured[path.name] = {
            "legend": [t.get_text() for t in ax.get_legend().get_texts()],
            "points": [(np.asarray(c.get_offsets()), c.get_facecolors().copy(), c.get_sizes().copy())
                       for c in ax.collections if isinstance(c, PathCollection)],
            "hlines": [seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()],
            "ticks": [t.get_text() for t in ax.get_xticklabels()],
        }
        return real_save(fig, path)

    monkeypatch.setattr(report, "_save", keep)
    paths = report.write_figures(_landscape_tables(tmp_path), tmp_path / "fig")
    assert "landscape_levels.png" in [p.name for p in paths]
    got = captured["landscape_levels.png"]
    legend = "\n".join(got["legend"])
    for words in ("every local minimum below the band's top", "open bound", "global minimum (certified)",
                  "NOT certified", "listed spurious minimum", "census-only minimum", "basin fraction 0.1"):
        assert words in legend
    # filled markers: the listed minima (2 levels in "band", of them one shared by 2 minima; 2 in "stopped");
    # hollow ones: the 2 census-only minima, area ~ basin fraction
    filled = [(xy, size) for xy, face, size in got["points"] if len(face) and face[0][3] > 0]
    hollow = [(xy, size) for xy, face, size in got["points"] if not len(face) or face[0][3] == 0]
    assert sum(len(xy) for xy, _ in filled) == 4
    tail_xy, tail_size = hollow[0]
    assert len(hollow) == 1 and np.allclose(tail_xy[:, 1], [1.0, 2.0])
    assert tail_size[0] / tail_size[1] == pytest.approx(report.tail_area(0.4) / report.tail_area(0.05))
    # the band's top at 1.5 - 1 = 0.5 (job 0); the stopped job's open bound at 2.5 - 2 = 0.5 and its
    # threshold at 1.0 (job 1)
    tops = {(round(seg[0][0] + 0.38, 6), round(seg[0][1], 6)) for seg in got["hlines"]}
    assert (0.0, 0.5) in tops and (1.0, 0.5) in tops and (1.0, 1.0) in tops
    assert got["ticks"] == ["band (3 + 2; unseen 0.02)", "stopped (2 + 0)"]


def test_no_levels_figure_without_landscape_rows(tmp_path):
    out = tmp_path / "out"
    tables.write_rows(out, "minima", [{"job_key": "a", "attempt": "A", "instance": "x", "risk": 1.0, "gap": 0.0,
                                       "spurious": False}])
    names = [p.name for p in report.write_figures(tables.load(out), tmp_path / "fig")]
    assert "landscape_levels.png" not in names
