"""Result tables on disk: a versioned schema, crash-safe appends, and `load`.

Layout of an output folder (DESIGN §9)::

    OUT/solves/part-<uuid>.parquet   one part per finished job, per table
    OUT/minima/part-<uuid>.parquet
    OUT/jobs/part-<uuid>.parquet     the ledger: one row per finished (or failed) job
    OUT/runs/part-<uuid>.parquet     one row per batch invocation (rewritten at its end)
    OUT/<table>.csv                  optional exports of the loaded tables (--csv)
    OUT/.batch.lock                  held by the batch writing to OUT (`FolderLock`)

A part is written to a hidden temporary file in the same folder and renamed into
place (``os.replace`` is atomic on POSIX), so a process killed at any moment leaves
either a whole part or none.  A job's task rows are written before its ``jobs`` row:
the ``jobs`` row is the commit record.  `load` keeps, per ``job_key``, the latest
``jobs`` row and only the task rows of that attempt, so rows of a killed attempt and
rows superseded by ``--rerun`` disappear; ``raw=True`` returns every row.

Schema version 1.  Every part records its version in the Parquet metadata key
``milpland.schema``; `load` refuses parts written by a newer major version.  Columns
outside the schema are kept with the type pyarrow infers; schema columns missing in
a row are null.  Types: str, float64, int64, bool, timestamp (UTC, microseconds).
Adding a column keeps the version (parts written before it read back with nulls in it,
and an older milpland keeps it as an extra column); renaming, removing or retyping a
column, or changing what it means, raises SCHEMA_VERSION.

Columns of every task table (solves, minima): ``job_key`` (str, hash of instance
name + instance hash + task + options), ``attempt`` (str, uuid of one execution),
``run_id`` (str, the batch invocation), ``task`` (str), ``suite`` (str), ``group`` (str).

solves -- one row per global solve; the columns of ``SolveResult.to_row()`` plus batch columns:
  instance (str), instance_hash (str), method (str), loss (str), reduction (str),
  architecture (str), status (str: optimal, time_limit, interrupted, infeasible, error), risk (float64,
  upper bound), lower_bound (float64), gap (float64, relative), certified (bool),
  box_weight (float64), box_output (float64), box_active (bool), seconds_build (float64),
  seconds_solve (float64), seconds_total (float64), nodes (int64), iterations (int64),
  solver_name (str), solver_version (str), options (str), seed (int64), verified (bool),
  verification_risk_difference (float64), pattern_mismatches (int64), message (str),
  schema_version (int64, of the SolveResult), params (str, JSON of OneHiddenParams:
  W1, b1, v, c), signs (str, JSON list), risk_numpy (float64, the batch's own numpy re-evaluation
  of params), risk_numpy_difference (float64, |risk_numpy - risk| / max(1, |risk|)), weight_decay (float64,
  lam; with lam > 0 risk, lower_bound and risk_numpy are of risk + (lam/2)||theta||^2, DESIGN §4d),
  decay_biases (bool), limit_point (str: logistic loss without weight decay, why the infimum over all
  weights is not attained -- "" when nothing says so; DESIGN §4e).
  Rows of the landscape task also have: landscape_method (str: the method that ran, enumerate
  or bnb for auto), landscape_complete (bool), n_minima, n_spurious (int64), and the spurious
  gap: spurious_gap (float64, lowest spurious risk - global risk; null when none was found),
  lowest_spurious_risk (float64), spurious_gap_proven (bool: no local minimum lies between the
  global minimum and the lowest spurious one, proven by a complete listing; DESIGN §5b), and what
  the listing proves: landscape_query (str, bnb: the query, e.g. "the 10 lowest risk levels"),
  threshold (float64: bnb's final T; inf for enumerate; null for sample and milp), open_bound
  (float64, bnb: least bound of the unexplored nodes, inf when the tree was exhausted), proven_below
  (float64: every local minimum in the box with risk <= it is listed; inf for a complete
  enumeration; null when nothing is proven); with a census (task option census, or method sample):
  census_starts (int64), census_minima (int64, distinct minima the starts reached), unseen_mass
  (float64, Good-Turing estimate N1/N, an estimate, not a bound).

minima -- one row per distinct local minimum: the columns of ``LocalMinimum.to_row()`` plus batch columns:
  instance (str), instance_hash (str), cell (str, stable id of pattern and signs), risk (float64),
  gap (float64, risk - global minimum), spurious (bool, gap > tolerance), certificate (str:
  interior or boundary), margin (float64, interior margin), valley_dim (int64), params (str,
  JSON of OneHiddenParams), fitted (str, JSON of f(x_1..x_n)), found_by (str: enumerate, milp,
  sample; a census next to a listing adds its tail minima as sample), basin_fraction (float64,
  sample or a census: the share of all starts that ended in this minimum, an estimate),
  schema_version (int64); with a census only (null otherwise): basin_count
  (int64, the starts that ended in this minimum), basin_ci_low, basin_ci_high (float64, the 95 %
  Wilson score interval of basin_fraction, binomial over the starts); and the instance's spurious
  gap (spurious_gap, lowest_spurious_risk, spurious_gap_proven, as in solves).

jobs -- one row per executed job (the resume ledger):
  job_key (str), attempt (str), run_id (str), task (str), suite (str), group (str),
  instance (str), instance_hash (str), source (str), status (str: done or error),
  error (str), traceback (str), seconds (float64, wall time in the worker), started
  (timestamp), finished (timestamp), worker (str, host:pid), n (int64), d (int64),
  hidden (str, widths joined by '-'), width (int64), activation (str), activation_json
  (str, Activation.describe()), loss (str), reduction (str), box_weight (float64),
  weight_decay (float64), decay_biases (bool), time_limit (float64), options_json (str, solve and task options), data_json (str,
  {"X": ..., "y": ...}), rows_json (str, rows written per table).

runs -- one row per batch invocation (latest version per run_id):
  run_id (str), status (str: running, finished, interrupted; `load` reads a "running" run whose
  batch no longer holds the folder's lock, i.e. whose process is gone, as interrupted), command (str), targets_json
  (str), task (str), options_json (str), executor (str), jobs (int64, parallel workers),
  milpland_version (str), solver_name (str), solver_version (str), python_version (str),
  platform (str), cpu_count (int64), cpu_model (str), hostname (str), started (timestamp),
  finished (timestamp), updated (timestamp), instances (int64), skipped (int64), done
  (int64), failed (int64).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from milpland.errors import MilplandError

SCHEMA_VERSION = 1
META_KEY = b"milpland.schema"
TS = pa.timestamp("us", tz="UTC")
_TYPES = {"str": pa.string(), "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_(), "timestamp": TS}

BATCH_COLUMNS = {"job_key": "str", "attempt": "str", "run_id": "str", "task": "str", "suite": "str", "group": "str"}

# the spurious gap of a landscape (LandscapeResult.spurious_gap), in solves and minima rows
HEADLINE_COLUMNS = {"spurious_gap": "float64", "lowest_spurious_risk": "float64", "spurious_gap_proven": "bool"}

SCHEMAS: dict[str, dict[str, str]] = {
    "solves": {
        **BATCH_COLUMNS,
        "instance": "str", "instance_hash": "str", "method": "str", "loss": "str", "reduction": "str",
        "architecture": "str", "status": "str", "risk": "float64", "lower_bound": "float64", "gap": "float64",
        "certified": "bool", "box_weight": "float64", "box_output": "float64", "box_active": "bool",
        "seconds_build": "float64", "seconds_solve": "float64", "seconds_total": "float64",
        "nodes": "int64", "iterations": "int64", "solver_name": "str", "solver_version": "str",
        "options": "str", "seed": "int64", "verified": "bool", "verification_risk_difference": "float64",
        "pattern_mismatches": "int64", "message": "str", "schema_version": "int64",
        "params": "str", "signs": "str", "risk_numpy": "float64", "risk_numpy_difference": "float64",
        "landscape_method": "str", "landscape_complete": "bool", "n_minima": "int64", "n_spurious": "int64",
        **HEADLINE_COLUMNS, "landscape_query": "str", "threshold": "float64", "open_bound": "float64",
        "proven_below": "float64", "census_starts": "int64", "census_minima": "int64", "unseen_mass": "float64",
        "weight_decay": "float64", "decay_biases": "bool", "limit_point": "str",
    },
    "minima": {
        **BATCH_COLUMNS,
        "instance": "str", "instance_hash": "str", "cell": "str", "risk": "float64", "gap": "float64",
        "spurious": "bool", "certificate": "str", "margin": "float64", "valley_dim": "int64", "params": "str",
        "fitted": "str", "found_by": "str", "basin_fraction": "float64", "schema_version": "int64",
        "basin_count": "int64", "basin_ci_low": "float64", "basin_ci_high": "float64", **HEADLINE_COLUMNS,
    },
    "jobs": {
        **BATCH_COLUMNS,
        "instance": "str", "instance_hash": "str", "source": "str", "status": "str", "error": "str",
        "traceback": "str", "seconds": "float64", "started": "timestamp", "finished": "timestamp",
        "worker": "str", "n": "int64", "d": "int64", "hidden": "str", "width": "int64", "activation": "str",
        "activation_json": "str", "loss": "str", "reduction": "str", "box_weight": "float64",
        "weight_decay": "float64", "decay_biases": "bool",
        "time_limit": "float64", "options_json": "str", "data_json": "str", "rows_json": "str",
    },
    "runs": {
        "run_id": "str", "status": "str", "command": "str", "targets_json": "str", "task": "str",
        "options_json": "str", "executor": "str", "jobs": "int64", "milpland_version": "str",
        "solver_name": "str", "solver_version": "str", "python_version": "str", "platform": "str",
        "cpu_count": "int64", "cpu_model": "str", "hostname": "str", "started": "timestamp",
        "finished": "timestamp", "updated": "timestamp", "instances": "int64", "skipped": "int64",
        "done": "int64", "failed": "int64",
    },
}
LEDGER_TABLES = ("jobs", "runs")  # tables that are not task output (also in milpland.runs.batch)
STALE_TEMP_SECONDS = 600.0


def register_table(name: str, columns: dict[str, str]) -> None:
    """Declare a task table (later tasks: landscape, certify).  Batch columns are added."""
    for col, kind in columns.items():
        if kind not in _TYPES:
            raise ValueError(f"column {col}: unknown type {kind!r}; use one of {', '.join(_TYPES)}")
    SCHEMAS[name] = {**BATCH_COLUMNS, **columns}


LOCK_NAME = ".batch.lock"


class FolderLock:
    """The exclusive right of one batch to write a results folder: an flock on OUT/.batch.lock.

    A second batch on the same folder refuses and names the holder (pid, host, run, command);
    the operating system releases the lock when the holder's process ends in any way (also
    kill -9), so a stale lock file never blocks anything.  `lock_holder` tells a reader whether a
    batch is writing now."""

    def __init__(self, out_dir: str | Path, holder: dict):
        self.path = Path(out_dir) / LOCK_NAME
        self.holder = {**holder, "pid": os.getpid(), "host": socket.gethostname()}
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = lock_holder(self.path.parent) or {}
            raise MilplandError(
                f"--out {self.path.parent}: another batch is writing there (pid {other.get('pid', '?')} on "
                f"{other.get('host', '?')}, started {other.get('started', '?')}: {other.get('command') or '?'}); "
                "wait for it to finish or stop it, or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(self.holder, default=str).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def lock_holder(out_dir: str | Path) -> dict | None:
    """What the batch holding OUT's lock wrote about itself, or None when no batch holds it."""
    import fcntl

    path = Path(out_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def prepare(out_dir: str | Path) -> Path:
    """Create the output folder, prove it is writable, and clear stale temporary parts."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MilplandError(f"--out {out}: exists and is not a folder, cannot write there; give a folder "
                            "(it is created when missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise MilplandError(f"--out {out}: cannot write there ({exc.strerror or exc}); choose a writable folder") from None
    now = time.time()
    for tmp in [*out.glob(".tmp-*"), *out.glob("*/.tmp-*")]:
        try:
            if now - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                tmp.unlink()
        except OSError:
            pass  # another process may be finishing it
    return out


def to_arrow(table: str, rows: list[dict]) -> pa.Table:
    """Rows -> an Arrow table: schema columns first, in schema order and type, then extras."""
    schema = SCHEMAS.get(table, {})
    names = list(schema) + sorted({k for row in rows for k in row} - set(schema))
    arrays, fields = [], []
    for name in names:
        values = [_clean(row.get(name)) for row in rows]
        kind = schema.get(name)
        try:
            arr = pa.array(values, type=_TYPES[kind], from_pandas=True) if kind else pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"table {table}, column {name}: values do not fit type {kind or 'inferred'}: {exc}") from None
        arrays.append(arr)
        fields.append(pa.field(name, arr.type))
    meta = {META_KEY: str(SCHEMA_VERSION).encode()}
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))


def write_rows(out_dir: str | Path, table: str, rows: list[dict]) -> Path | None:
    """Append rows to a table as one new part, atomically (temporary file + rename)."""
    if not rows:
        return None
    folder = Path(out_dir) / table
    folder.mkdir(parents=True, exist_ok=True)
    data = to_arrow(table, rows)
    name = uuid.uuid4().hex
    tmp = folder / f".tmp-{name}.parquet"
    final = folder / f"part-{name}.parquet"
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final


def read_table(out_dir: str | Path, table: str) -> pd.DataFrame | None:
    """All parts of one table, concatenated (no deduplication); None when the table has no parts."""
    parts = sorted((Path(out_dir) / table).glob("part-*.parquet"))
    if not parts:
        return None
    pieces = []
    for part in parts:
        try:
            t = pq.read_table(part)
        except (OSError, pa.ArrowException) as exc:
            raise MilplandError(f"{part}: unreadable Parquet part ({exc}); move it away and rerun") from None
        version = int((t.schema.metadata or {}).get(META_KEY, b"1"))
        if version > SCHEMA_VERSION:
            raise MilplandError(f"{part}: written with table schema {version}, this milpland reads {SCHEMA_VERSION}: upgrade")
        pieces.append(t)
    merged = pa.concat_tables(pieces, promote_options="permissive")
    return merged.to_pandas()


def load(out_dir: str | Path, *, raw: bool = False) -> dict[str, pd.DataFrame]:
    """Every table in an output folder, as DataFrames, without superseded or uncommitted rows.

    Per job_key only the latest ``jobs`` row counts (latest ``finished``); task rows are kept
    when their ``attempt`` is that row's attempt.  ``runs`` keeps the latest row per run_id.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise MilplandError(f"{out}: no such results folder")
    names = sorted(p.name for p in out.iterdir() if p.is_dir() and any(p.glob("part-*.parquet")))
    frames = {name: read_table(out, name) for name in names}
    if raw:
        return frames
    jobs = frames.get("jobs")
    if jobs is not None:
        jobs = jobs.sort_values("finished", kind="stable").drop_duplicates("job_key", keep="last")
        frames["jobs"] = jobs.reset_index(drop=True)
    if "runs" in frames:
        runs = frames["runs"].sort_values("updated", kind="stable").drop_duplicates("run_id", keep="last")
        frames["runs"] = settle_runs(runs.reset_index(drop=True), out)
    live = set(jobs["attempt"]) if jobs is not None else None
    for name, frame in frames.items():
        if name in LEDGER_TABLES or "attempt" not in frame.columns or live is None:
            continue
        frames[name] = frame[frame["attempt"].isin(live)].reset_index(drop=True)
    return frames


def settle_runs(runs: pd.DataFrame, out: Path) -> pd.DataFrame:
    """A run still marked "running" whose batch does not hold the folder's lock has ended without
    writing its last row (killed, or the machine went down): it reads as "interrupted"."""
    holder = lock_holder(out) or {}
    gone = (runs["status"] == "running") & (runs["run_id"] != holder.get("run_id"))
    if gone.any():
        runs = runs.copy()
        runs.loc[gone, "status"] = "interrupted"
    return runs


def export_csv(out_dir: str | Path, frames: dict[str, pd.DataFrame]) -> list[Path]:
    """Write each loaded table to OUT/<table>.csv (atomically), for spreadsheets and R."""
    written = []
    for name, frame in frames.items():
        final = Path(out_dir) / f"{name}.csv"
        tmp = final.with_name(f".tmp-{uuid.uuid4().hex}.csv")
        frame.to_csv(tmp, index=False)
        os.replace(tmp, final)
        written.append(final)
    return written


def _clean(value):
    """numpy scalars -> Python scalars, so Arrow sees plain values."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return value
    return value
