"""Result tables: schema and types, atomic parts, superseded and uncommitted rows, CSV export."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from milpland.errors import MilplandError
from milpland.runs import tables

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def commit(out, key, attempt, risks, finished, table="fits"):
    """What the batch does for one job: task rows, then the jobs row."""
    tables.write_rows(out, table, [{"job_key": key, "attempt": attempt, "instance": key, "risk": r} for r in risks])
    tables.write_rows(out, "jobs", [{"job_key": key, "attempt": attempt, "instance": key, "status": "done",
                                     "finished": finished}])


def test_schema_types_survive_a_round_trip(tmp_path):
    rows = [
        {"instance": "a", "risk": np.float64(0.25), "nodes": np.int64(3), "certified": np.bool_(True),
         "status": "optimal", "extra_column": "kept"},
        {"instance": "b", "risk": 1, "nodes": 4, "certified": False, "status": "time_limit"},
    ]
    tables.write_rows(tmp_path, "solves", rows)
    frame = tables.load(tmp_path)["solves"]
    assert frame["risk"].dtype == np.float64 and frame["risk"].tolist() == [0.25, 1.0]
    assert frame["nodes"].dtype == np.int64 and frame["nodes"].tolist() == [3, 4]
    assert frame["certified"].dtype == bool and frame["certified"].tolist() == [True, False]
    assert frame["extra_column"].iloc[0] == "kept" and pd.isna(frame["extra_column"].iloc[1])
    # every schema column is present, in schema order, the missing ones as nulls
    assert list(frame.columns[: len(tables.SCHEMAS["solves"])]) == list(tables.SCHEMAS["solves"])
    assert frame["lower_bound"].isna().all()


def test_a_value_of_the_wrong_type_names_the_column(tmp_path):
    with pytest.raises(ValueError, match="column risk"):
        tables.write_rows(tmp_path, "solves", [{"risk": "not a number"}])
    assert not list(tmp_path.rglob("*.parquet"))


def test_latest_attempt_wins_and_uncommitted_rows_are_dropped(tmp_path):
    commit(tmp_path, "k1", "a1", [1.0, 2.0], T0)
    commit(tmp_path, "k2", "b1", [5.0], T0)
    commit(tmp_path, "k1", "a2", [3.0], T0 + timedelta(seconds=5))  # a rerun of k1
    # a job killed between its task rows and its jobs row
    tables.write_rows(tmp_path, "fits", [{"job_key": "k3", "attempt": "c1", "risk": 9.0}])
    frames = tables.load(tmp_path)
    assert sorted(frames["fits"]["risk"]) == [3.0, 5.0]
    assert sorted(frames["jobs"]["attempt"]) == ["a2", "b1"]
    raw = tables.load(tmp_path, raw=True)
    assert sorted(raw["fits"]["risk"]) == [1.0, 2.0, 3.0, 5.0, 9.0] and len(raw["jobs"]) == 3


def test_runs_keep_their_latest_version(tmp_path):
    tables.write_rows(tmp_path, "runs", [{"run_id": "r", "status": "running", "updated": T0}])
    tables.write_rows(tmp_path, "runs", [{"run_id": "r", "status": "finished", "updated": T0 + timedelta(1)}])
    assert tables.load(tmp_path)["runs"]["status"].tolist() == ["finished"]


def test_a_crash_while_writing_leaves_no_part(tmp_path, monkeypatch):
    commit(tmp_path, "k1", "a1", [1.0], T0)

    def half_written(table, where, **kw):
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", half_written)
    with pytest.raises(OSError, match="disk full"):
        tables.write_rows(tmp_path, "fits", [{"job_key": "k2", "attempt": "b1", "risk": 2.0}])
    monkeypatch.undo()
    assert len(list((tmp_path / "fits").iterdir())) == 1  # the first part only: no temp file, no torn part
    assert tables.load(tmp_path)["fits"]["risk"].tolist() == [1.0]


def test_leftover_temporary_files_are_ignored_and_cleaned(tmp_path):
    commit(tmp_path, "k1", "a1", [1.0], T0)
    stale = tmp_path / "fits" / ".tmp-dead.parquet"
    fresh = tmp_path / "fits" / ".tmp-live.parquet"
    for f in (stale, fresh):
        f.write_bytes(b"garbage from a killed process")
    old = time.time() - 2 * tables.STALE_TEMP_SECONDS
    os.utime(stale, (old, old))
    assert tables.load(tmp_path)["fits"]["risk"].tolist() == [1.0]
    assert pd.read_parquet(tmp_path / "fits")["risk"].tolist() == [1.0]  # pandas skips dot files too
    tables.prepare(tmp_path)
    assert not stale.exists() and fresh.exists()  # a fresh one may belong to a live process


def test_parts_from_a_newer_schema_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "SCHEMA_VERSION", tables.SCHEMA_VERSION + 1)
    tables.write_rows(tmp_path, "fits", [{"risk": 1.0}])
    monkeypatch.undo()
    with pytest.raises(MilplandError, match="upgrade"):
        tables.load(tmp_path)


def test_prepare_rejects_an_unwritable_place(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MilplandError, match="cannot write there"):
        tables.prepare(blocker / "out")
    with pytest.raises(MilplandError, match="no such results folder"):
        tables.load(tmp_path / "missing")


def test_csv_export_reads_back(tmp_path):
    commit(tmp_path, "k1", "a1", [0.5, 1.5], T0)
    frames = tables.load(tmp_path)
    paths = tables.export_csv(tmp_path, frames)
    assert sorted(p.name for p in paths) == ["fits.csv", "jobs.csv"]
    back = pd.read_csv(tmp_path / "fits.csv")
    assert back["risk"].tolist() == [0.5, 1.5] and back["job_key"].tolist() == ["k1", "k1"]


def test_docstring_documents_every_column():
    doc = tables.__doc__
    for name, columns in tables.SCHEMAS.items():
        start = doc.index(f"\n{name} -- ")
        section = doc[start: doc.find("\n\n", start + 1)]
        if name in ("solves", "minima"):
            section += doc[doc.index("Columns of every task table"):]
        missing = [c for c in columns if not re.search(rf"\b{c}\b", section)]
        assert not missing, f"{name}: undocumented columns {missing}"
