"""Batches: run a task over many instances in parallel, append results as they finish, resume.

A **task** is a function ``(spec, options) -> {table name: [row dict, ...]}`` run in a
worker process.  Tasks are registered by name with the import path of their function
(``"module:function"``), so that spawned or remote workers can import them; a target
string ``"module:function"`` can also be given directly as ``--task``.  Registered:

- ``solve``: `milpland.search.solve.solve_global` -> one ``solves`` row (params as JSON, plus
  the batch's own numpy re-evaluation of the returned point's risk).
- ``landscape``: `milpland.landscape.listing.landscape` -> ``minima`` rows and one ``solves`` row
  (the global reference, the spurious gap, the listing's threshold and the census's numbers).

**Task options** (``--option KEY=VALUE``): each registered task names the keys it takes and their
types (`Task.options`); `check_task_options` refuses others in the main process, before any job
starts.  Ad-hoc ``module:function`` tasks take any keys.

A **job** is (instance, task, options).  Its ``job_key`` hashes the instance name, the
instance hash (data, network, loss, box), the task and the effective options (solve
options of the spec after ``--time-limit``, task options).  A batch skips every job whose
latest ``jobs`` row in the output folder says ``done``; failed jobs are retried;
``--rerun`` recomputes everything (``rerun_since`` recomputes what finished before a time,
which is how an interrupted ``--rerun`` resumes).

Only the main process writes: task rows first, then the ``jobs`` row that commits them
(see `milpland.runs.tables`).  SIGINT and SIGTERM are deferred while a job is being written,
then stop the batch: nothing new starts, running workers are stopped, finished results
stay, and the way to resume is printed.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from milpland.errors import MilplandError
from milpland.runs.suites import Instance, resolve

# milpland.runs.tables (pandas, pyarrow) is imported only where the main process needs it, so that
# worker processes, which only run `execute`, start faster.
LEDGER_TABLES = ("jobs", "runs")

EXECUTORS = ("local", "dask")


# --- tasks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    name: str
    target: str  # "module:function", importable in every worker
    tables: tuple[str, ...] = ()
    error_table: str | None = None  # where a failing job also gets a row (status "error")
    description: str = ""
    options: dict | None = None  # option key -> int, float, str or a tuple of allowed words; None: any key


TASKS: dict[str, Task] = {}


def register_task(
    name: str, fn: Callable | str, *, tables: tuple[str, ...] = (), error_table: str | None = None,
    description: str = "", options: dict | None = None,
) -> Task:
    """Register a task under a name.  ``fn`` is a module-level function or its "module:function";
    ``options``: the option keys it takes with their types (None: any key, unchecked)."""
    target = fn if isinstance(fn, str) else f"{fn.__module__}:{fn.__qualname__}"
    if ":" not in target or "<" in target:
        raise ValueError(f"task {name}: {target!r} is not an importable module-level function")
    task = Task(name, target, tuple(tables), error_table, description, None if options is None else dict(options))
    TASKS[name] = task
    return task


def get_task(name: str) -> Task:
    """A registered task, or an ad-hoc one from "module:function"."""
    if name in TASKS:
        return TASKS[name]
    if ":" in name:
        _import_target(name)  # fail here, in the main process, with a clear message
        return Task(name, name)
    raise MilplandError(f"--task {name}: unknown task; use one of {', '.join(sorted(TASKS))} or module:function")


TYPE_NAMES = {int: "an integer", float: "a number", str: "a string"}


def check_task_options(task: Task, options: dict) -> dict:
    """The options with their declared types (an integer where a number is asked becomes a float), or
    a one-line MilplandError naming the key and what the task takes."""
    if task.options is None:
        return dict(options)
    out = {}
    for key, value in options.items():
        if key not in task.options:
            known = ", ".join(sorted(task.options)) or "none"
            raise MilplandError(f"--option {key}: task {task.name} has no option {key!r}; its options: {known}")
        kind = task.options[key]
        if isinstance(kind, tuple):  # a word out of a fixed list
            if value not in kind:
                raise MilplandError(f"--option {key}={value!r}: must be one of {', '.join(kind)} for task {task.name}")
            out[key] = value
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise MilplandError(f"--option {key}={value!r}: must be {TYPE_NAMES[kind]} for task {task.name}")
        out[key] = value
    return out


def _import_target(target: str) -> Callable:
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise MilplandError(f"--task {target}: cannot import ({exc})") from None
    if not callable(obj):
        raise MilplandError(f"--task {target}: not a function")
    return obj


def solve_task(spec, options: dict) -> dict[str, list[dict]]:
    """The certified global minimum (`solve_global`) as one ``solves`` row.

    The returned point is re-evaluated here with a plain numpy forward pass:
    risk_numpy = weight * sum_i loss(f(x_i), y_i) (+ the weight decay, `Loss.objective`), independent of
    the solver's claim.
    """
    # imported in the worker: the solver is heavy
    from milpland.search.solve import solve_global

    return {"solves": [solve_row(spec, solve_global(spec))]}


def solve_row(spec, result) -> dict:
    """A ``solves`` row of a SolveResult, with the point re-evaluated in numpy."""
    row = result.to_row()
    row["params"] = json.dumps(result.params.to_json()) if result.params is not None else None
    row["signs"] = json.dumps([int(s) for s in result.signs]) if result.signs is not None else None
    if result.params is not None:
        risk = float(spec.loss.objective(result.params, spec.X, spec.y, spec.network.activation))
        row["risk_numpy"] = risk
        row["risk_numpy_difference"] = abs(risk - float(result.risk)) / max(1.0, abs(float(result.risk)))
    return row


# the keyword arguments of `milpland.landscape.listing.landscape` a batch may set (--option KEY=VALUE)
LANDSCAPE_OPTIONS = {"method": ("auto", "enumerate", "bnb", "sample", "milp"), "levels": int, "gap_max": float, "gap_rel": float, "risk_max": float,
                     "census": int, "starts": int, "seed": int, "max_cells": int, "jobs": int}


def landscape_task(spec, options: dict) -> dict[str, list[dict]]:
    """The local minima (`landscape` with the task options; method default auto): their ``minima``
    rows, and the global minimum they are compared with as a ``solves`` row; both carry the spurious
    gap (the headline of `LandscapeResult.spurious_gap`), the solves row also the listing's threshold
    and the census's numbers (`landscape_columns`)."""
    from milpland.landscape.listing import headline_columns, landscape

    kwargs = {"method": "auto", **options}
    result = landscape(spec, **kwargs)
    row = solve_row(spec, result.global_result)
    row.update(headline_columns(result.spurious_gap()), **landscape_columns(result))
    return {"solves": [row], "minima": result.to_rows()}


def landscape_columns(result) -> dict:
    """The listing's columns of a landscape task's solves row (tables.py documents them): which method
    ran, what it proves (threshold, open_bound, proven_below; null where the method proves nothing),
    and the census's starts, distinct minima and unseen-mass estimate (null without a census)."""
    nan = float("nan")
    listing = result.method in ("enumerate", "bnb")
    below = result.proven_below
    census = result.census
    return {
        "landscape_method": result.method, "landscape_complete": bool(result.complete),
        "n_minima": len(result.minima), "n_spurious": len(result.spurious),
        "landscape_query": result.query or None,
        "threshold": float(result.threshold) if listing else nan,
        "open_bound": float(result.open_bound) if result.method == "bnb" else nan,
        "proven_below": float(below) if listing and below > float("-inf") else nan,
        "census_starts": census.starts if census is not None else None,
        "census_minima": int(sum(1 for b in census.basins.values() if b.count > 0)) if census is not None else None,
        "unseen_mass": float(census.unseen_mass) if census is not None else nan,
    }


register_task(
    "solve", "milpland.runs.batch:solve_task", tables=("solves",), error_table="solves",
    description="certified global minimum over the box", options={},
)
register_task(
    "landscape", "milpland.runs.batch:landscape_task", tables=("solves", "minima"), error_table="solves",
    description="certified local minima, spurious minima and their gaps (method auto)", options=LANDSCAPE_OPTIONS,
)


# --- jobs and outcomes ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Job:
    key: str
    attempt: str
    run_id: str
    instance: Instance
    task: Task
    options: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Outcome:
    key: str
    status: str  # "done" or "error"
    tables: dict
    error: str = ""
    traceback: str = ""
    seconds: float = 0.0
    started: datetime | None = None
    finished: datetime | None = None
    worker: str = ""


def job_key(instance: Instance, task: Task, options: dict) -> str:
    """sha256 of (name, instance hash or the broken spec's source, task name, effective options)."""
    spec = instance.spec
    ident = {
        "name": instance.name,
        "instance": spec.instance_hash() if spec is not None else f"broken:{instance.source}",
        "task": task.name,
        "options": _effective_options(instance, options),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _effective_options(instance: Instance, options: dict) -> dict:
    solve = asdict(instance.spec.solve) if instance.spec is not None else {}
    return {"solve": solve, "task": dict(options)}


def execute(job: Job) -> Outcome:
    """Run one job in a worker.  Never raises: a failure becomes an error outcome."""
    started = _now()
    t0 = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        fn = _import_target(job.task.target)
        produced = fn(job.instance.spec, dict(job.options))
        _check_produced(produced)
        status, error, tb = "done", "", ""
    except MilplandError as exc:
        produced, status, error, tb = {}, "error", str(exc), ""
    except Exception as exc:  # noqa: BLE001 -- any failure of one instance must not stop the batch
        produced, status, error = {}, "error", f"{type(exc).__name__}: {exc}"
        tb = traceback.format_exc()[-4000:]
    return Outcome(job.key, status, produced, error, tb, time.perf_counter() - t0, started, _now(), worker)


def _check_produced(produced) -> None:
    if not isinstance(produced, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(r, dict) for r in v) for k, v in produced.items()
    ):
        raise TypeError("a task must return {table name: [row dict, ...]}")
    for name in produced:
        if name in LEDGER_TABLES or not name.isidentifier():
            raise ValueError(f"a task cannot write table {name!r}")


def _error_outcome(job: Job, message: str) -> Outcome:
    now = _now()
    return Outcome(job.key, "error", {}, message, "", 0.0, now, now, "")


# --- executors --------------------------------------------------------------------------------


def release_pyomo_lock() -> None:
    """Let this worker process be terminated without leaving a named semaphore behind.

    Importing pyomo creates a multiprocessing.Lock (pyomo.common.dependencies.capture_output_lock,
    used by pyomo's own test helpers).  With the spawn start method it is a named POSIX semaphore,
    registered with the resource tracker and unlinked when the process exits normally.  A worker
    terminated by a stopped batch or benchmark never unlinks it, and the tracker printed "There
    appear to be N leaked semaphore objects" at exit.  The name is unlinked now instead (the lock
    keeps working: an open POSIX semaphore outlives its name) and its exit-time cleanup dropped."""
    from multiprocessing import synchronize, util

    from pyomo.common import dependencies

    name = getattr(getattr(dependencies.capture_output_lock, "_semlock", None), "name", None)
    if name is None:  # a threading.Lock, or an already anonymous semaphore
        return
    for finalizer in list(util._finalizer_registry.values()):
        if getattr(finalizer, "_args", None) == (name,):
            finalizer.cancel()
    synchronize.SemLock._cleanup(name)


def _worker_init() -> None:
    # Ctrl-C in a terminal reaches the whole process group: only the main process decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    release_pyomo_lock()
    # A pool worker holds both ends of its task queue, so it never sees EOF when the main
    # process is killed (kill -9): it would wait forever.  Exit when the parent is gone.
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="milpland-parent-watch", daemon=True).start()


class LocalExecutor:
    """A spawn-based process pool on this machine."""

    name = "local"

    def __init__(self, *, jobs: int):
        self.capacity = max(1, jobs)
        self._pool = self._new_pool()
        self._broken = False

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")  # fork would copy HiGHS threads and open files
        return cf.ProcessPoolExecutor(max_workers=self.capacity, mp_context=ctx, initializer=_worker_init)

    def submit(self, job: Job):
        if self._broken:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool, self._broken = self._new_pool(), False
        return self._pool.submit(execute, job)

    def wait(self, handles, timeout: float) -> set:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return set(done)

    def outcome(self, handle, job: Job) -> Outcome:
        try:
            return handle.result()
        except cf.process.BrokenProcessPool:
            # The pool cannot say which worker died: every job in flight is marked failed
            # (failed jobs are retried by the next batch) and a fresh pool is started.
            self._broken = True
            return _error_outcome(job, "worker process died (crash, out of memory or killed) while this job was running")
        except Exception as exc:  # noqa: BLE001 -- e.g. an unpicklable result
            return _error_outcome(job, f"{type(exc).__name__}: {exc}")

    def close(self, *, kill: bool) -> None:
        if kill:
            # Python 3.11 has no public way to stop a running task: terminate the workers.
            for proc in list((getattr(self._pool, "_processes", None) or {}).values()):
                if proc.is_alive():
                    proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """dask.distributed: a scheduler address, or a LocalCluster of ``jobs`` single-threaded workers."""

    name = "dask"

    def __init__(self, *, jobs: int, scheduler: str | None):
        try:
            import distributed
        except ImportError:
            raise MilplandError(
                "--executor dask needs dask.distributed, which is not installed: pip install 'milpland[dask]'"
            ) from None
        self._distributed = distributed
        self._cluster = None
        try:
            if scheduler:
                self._client = distributed.Client(scheduler, timeout="10s")
            else:
                self._cluster = distributed.LocalCluster(
                    n_workers=max(1, jobs), threads_per_worker=1, processes=True, dashboard_address=None
                )
                self._client = distributed.Client(self._cluster)
        except (OSError, TimeoutError) as exc:
            raise MilplandError(f"--scheduler {scheduler}: cannot connect to the dask scheduler ({exc})") from None
        threads = sum(self._client.nthreads().values())
        self.capacity = max(1, threads)
        self._handles: set = set()

    def submit(self, job: Job):
        fut = self._client.submit(execute, job, pure=False, key=f"milpland-{job.attempt}")
        self._handles.add(fut)
        return fut

    def wait(self, handles, timeout: float) -> set:
        try:
            done, _ = self._distributed.wait(list(handles), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set()
        return set(done)

    def outcome(self, handle, job: Job) -> Outcome:
        self._handles.discard(handle)
        try:
            return handle.result()
        except Exception as exc:  # noqa: BLE001 -- KilledWorker, lost connection, ...
            return _error_outcome(job, f"dask: {type(exc).__name__}: {exc}")

    def close(self, *, kill: bool) -> None:
        if kill and self._handles:
            self._client.cancel(list(self._handles), force=True)
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def check_executor(name: str, scheduler: str | None) -> None:
    """Fail before any work starts when the executor cannot be made."""
    if name not in EXECUTORS:
        raise MilplandError(f"--executor {name}: unknown; use one of {', '.join(EXECUTORS)}")
    if name == "local" and scheduler:
        raise MilplandError("--scheduler needs --executor dask")
    if name == "dask" and importlib.util.find_spec("distributed") is None:
        raise MilplandError("--executor dask needs dask.distributed, which is not installed: pip install 'milpland[dask]'")


def make_executor(name: str, *, jobs: int, scheduler: str | None = None):
    check_executor(name, scheduler)
    if name == "dask":
        return DaskExecutor(jobs=jobs, scheduler=scheduler)
    return LocalExecutor(jobs=jobs)


# --- the batch --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSummary:
    run_id: str
    out: Path
    instances: int  # jobs after deduplication
    skipped: int  # done before this batch
    done: int
    failed: int
    not_run: int
    interrupted: bool
    stop_signal: str  # "SIGINT", "SIGTERM" or ""
    seconds: float
    rerun_since: datetime | None  # what a resume must pass as --rerun-since (None: a plain resume)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 143 if self.stop_signal == "SIGTERM" else 130
        return 1 if self.failed else 0


class BatchWriteError(MilplandError):
    """The results folder could not be written (full disk, lost mount): not a user mistake (exit 1)."""


def run_batch(
    targets: list[str], *, out: str | Path, task: str = "solve", jobs: int | None = None,
    time_limit: float | None = None, csv: bool = False, rerun: bool = False, rerun_since: datetime | None = None,
    executor: str = "local", scheduler: str | None = None, task_options: dict | None = None,
    command: str = "", stream=None, progress_every: float = 30.0,
) -> BatchSummary:
    """Resolve targets, skip finished jobs, run the rest in parallel, write each result as it finishes.

    The folder is locked for the whole batch (`tables.FolderLock`): a second batch on it refuses."""
    from milpland.runs import tables

    stream = stream if stream is not None else sys.stderr
    if jobs is None:
        jobs = os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise MilplandError(f"--jobs: must be a positive integer (parallel workers), got {jobs!r}")
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise MilplandError(f"--time-limit: must be a positive finite number of seconds, got {time_limit!r}")
    the_task = get_task(task)
    task_options = check_task_options(the_task, dict(task_options or {}))
    check_executor(executor, scheduler)
    out = tables.prepare(out)
    run_id = uuid.uuid4().hex[:12]
    started = _now()
    with tables.FolderLock(out, {"run_id": run_id, "command": command, "started": started.isoformat()}):
        return _run_locked(targets, out, the_task, jobs, time_limit, csv, rerun, rerun_since, executor, scheduler,
                           dict(task_options or {}), command, stream, progress_every, run_id, started)


def _run_locked(targets, out: Path, the_task: Task, jobs: int, time_limit, csv: bool, rerun: bool, rerun_since,
                executor: str, scheduler, options: dict, command: str, stream, progress_every: float, run_id: str,
                started: datetime) -> BatchSummary:
    from milpland.runs import tables

    instances = resolve(targets)
    if time_limit is not None:
        instances = [_with_time_limit(inst, time_limit) for inst in instances]
    if rerun:
        rerun_since = started
    todo, broken, skipped, duplicates = _plan(instances, the_task, options, out, run_id, rerun_since)
    settings = {"task_options": options, "time_limit": time_limit, "rerun": rerun,
                "rerun_since": rerun_since.isoformat() if rerun_since else None, "csv": csv, "scheduler": scheduler}
    run = _run_row(run_id, "running", command, targets, the_task, settings, executor, jobs, started, len(instances))
    _write_or_explain(out, "runs", [run], done=0)
    if duplicates:
        print(f"milpland batch: {duplicates} duplicate instance(s) given more than once: run once", file=stream)
    if skipped:
        print(f"milpland batch: {skipped} job(s) already done in {out}: skipped (--rerun recomputes them)", file=stream)

    counts = {"done": 0, "failed": 0}
    stop = _StopSignals()
    progress = Progress(len(todo) + len(broken), stream)
    interrupted = False
    write_error: OSError | None = None
    running_pool = None
    with stop.installed():
        try:
            for job in broken:
                with stop.deferred():
                    _commit(out, job, _error_outcome(job, job.instance.error))
                    counts["failed"] += 1
                    progress.finished(job, "error", job.instance.error, counts, running=0)
            if todo:
                running_pool = make_executor(executor, jobs=jobs, scheduler=scheduler)
                _drive(running_pool, todo, out, stop, progress, counts, progress_every)
        except KeyboardInterrupt:
            interrupted = True
        except OSError as exc:  # the folder cannot be written any more (full disk): stop, say so once
            write_error = exc
        finally:
            if running_pool is not None:
                try:
                    running_pool.close(kill=interrupted or write_error is not None)
                except KeyboardInterrupt:  # a second Ctrl-C while stopping: stop harder
                    interrupted = True
                    running_pool.close(kill=True)
    progress.close()
    not_run = len(todo) + len(broken) - counts["done"] - counts["failed"]
    status = "interrupted" if interrupted or write_error is not None else "finished"
    end = _now()
    run = _run_row(run_id, status, command, targets, the_task, settings, executor, jobs, started, len(instances),
                   finished=end, skipped=skipped, done=counts["done"], failed=counts["failed"])
    if write_error is not None:
        try:
            tables.write_rows(out, "runs", [run])
        except OSError:
            pass  # the run then reads as interrupted (tables.settle_runs)
        raise _write_failure(out, write_error, counts["done"] + counts["failed"])
    _write_or_explain(out, "runs", [run], done=counts["done"] + counts["failed"])
    if csv:
        try:
            tables.export_csv(out, tables.load(out))
        except OSError as exc:
            raise _write_failure(out, exc, counts["done"] + counts["failed"]) from None
    return BatchSummary(
        run_id, out, len(todo) + len(broken), skipped, counts["done"], counts["failed"], not_run, interrupted,
        stop.name, (end - started).total_seconds(), rerun_since,
    )


def _write_or_explain(out: Path, table: str, rows: list[dict], *, done: int) -> None:
    from milpland.runs import tables

    try:
        tables.write_rows(out, table, rows)
    except OSError as exc:
        raise _write_failure(out, exc, done) from None


def _write_failure(out: Path, exc: OSError, done: int) -> BatchWriteError:
    """One line for a folder that cannot be written any more; what is on disk is intact, because
    every part is written whole or not at all and a job counts only once its jobs row is written."""
    return BatchWriteError(
        f"cannot write to {out}: {exc.strerror or exc}. The {done} job(s) written before are intact; "
        "free space (or fix the folder) and run the same command again to resume")


def _drive(pool, todo: list[Job], out: Path, stop: "_StopSignals", progress: "Progress", counts: dict,
           progress_every: float) -> None:
    """Keep at most `capacity` jobs in flight, so that stopping never has a queue to drain."""
    pending = deque(todo)
    inflight: dict = {}
    last_report = time.monotonic()
    while pending or inflight:
        while pending and len(inflight) < pool.capacity:
            job = pending.popleft()
            inflight[pool.submit(job)] = job
        done = pool.wait(set(inflight), timeout=1.0)
        for handle in done:
            job = inflight.pop(handle)
            outcome = pool.outcome(handle, job)
            with stop.deferred():
                _commit(out, job, outcome)
                counts["done" if outcome.status == "done" else "failed"] += 1
                progress.finished(job, outcome.status, outcome.error, counts, running=len(inflight),
                                  seconds=outcome.seconds)
            last_report = time.monotonic()
        if not done and time.monotonic() - last_report >= progress_every:
            progress.heartbeat(counts, running=len(inflight))
            last_report = time.monotonic()


def _plan(instances: list[Instance], task: Task, options: dict, out: Path, run_id: str,
          rerun_since: datetime | None) -> tuple[list[Job], list[Job], int, int]:
    """(jobs to run, broken-spec jobs, number skipped as done, number of duplicates)."""
    done = _done_keys(out, rerun_since)
    todo, broken, seen = [], [], set()
    skipped = duplicates = 0
    for inst in instances:
        key = job_key(inst, task, options)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        if key in done:
            skipped += 1
            continue
        job = Job(key, uuid.uuid4().hex, run_id, inst, task, options)
        (todo if inst.ok else broken).append(job)
    return todo, broken, skipped, duplicates


def _done_keys(out: Path, since: datetime | None) -> set[str]:
    from milpland.runs import tables

    frame = tables.read_table(out, "jobs")
    if frame is None:
        return set()
    latest = frame.sort_values("finished", kind="stable").drop_duplicates("job_key", keep="last")
    latest = latest[latest["status"] == "done"]
    if since is not None:
        latest = latest[latest["finished"] >= since]
    return set(latest["job_key"])


def _commit(out: Path, job: Job, outcome: Outcome) -> None:
    """Task rows first, then the jobs row that makes them count."""
    from milpland.runs import tables

    batch = {
        "job_key": job.key, "attempt": job.attempt, "run_id": job.run_id, "task": job.task.name,
        "suite": job.instance.suite, "group": job.instance.group,
    }
    spec = job.instance.spec
    ident = {"instance": job.instance.name, "instance_hash": spec.instance_hash() if spec is not None else None}
    written = {}
    produced = dict(outcome.tables)
    if outcome.status == "error" and job.task.error_table:
        produced = {job.task.error_table: [_error_row(job, outcome)]}
    for name, rows in produced.items():
        full = [{**ident, **row, **batch} for row in rows]
        tables.write_rows(out, name, full)
        written[name] = len(full)
    tables.write_rows(out, "jobs", [_job_row(job, outcome, batch, ident, written)])


def _error_row(job: Job, outcome: Outcome) -> dict:
    spec = job.instance.spec
    row = {"status": "error", "message": outcome.error, "certified": False}
    if spec is not None:
        row.update(loss=spec.loss.kind, reduction=spec.loss.reduction, architecture=spec.architecture(),
                   box_weight=spec.box.weight, box_output=spec.box.output, seed=spec.solve.seed,
                   weight_decay=spec.loss.weight_decay, decay_biases=spec.loss.decay_biases)
    return row


def _job_row(job: Job, outcome: Outcome, batch: dict, ident: dict, written: dict) -> dict:
    spec = job.instance.spec
    row = {
        **batch, **ident, "source": job.instance.source, "status": outcome.status, "error": outcome.error,
        "traceback": outcome.traceback, "seconds": outcome.seconds, "started": outcome.started,
        "finished": outcome.finished, "worker": outcome.worker,
        "options_json": json.dumps(_effective_options(job.instance, job.options), sort_keys=True, default=str),
        "rows_json": json.dumps(written, sort_keys=True),
    }
    if spec is not None:
        row.update(
            n=spec.n, d=spec.d, hidden="-".join(str(w) for w in spec.network.hidden), width=spec.width,
            activation=spec.network.activation.name, activation_json=json.dumps(spec.network.activation.describe()),
            loss=spec.loss.kind, reduction=spec.loss.reduction, box_weight=spec.box.weight,
            weight_decay=spec.loss.weight_decay, decay_biases=spec.loss.decay_biases,
            time_limit=spec.solve.time_limit,
            data_json=json.dumps({"X": spec.X.tolist(), "y": spec.y.tolist()}),
        )
    return row


def _with_time_limit(inst: Instance, seconds: float) -> Instance:
    if inst.spec is None:
        return inst
    return Instance(inst.name, inst.suite, inst.group, inst.source, inst.spec.with_options(time_limit=float(seconds)))


# --- machine, signals, progress ---------------------------------------------------------------


def machine_info() -> dict:
    """Where and with what a batch ran (for the runs table)."""
    from importlib.metadata import PackageNotFoundError, version

    from milpland.records import __version__

    try:
        highs = version("highspy")
    except PackageNotFoundError:
        highs = ""
    return {
        "milpland_version": __version__, "solver_name": "highs", "solver_version": highs,
        "python_version": platform.python_version(), "platform": platform.platform(),
        "cpu_count": os.cpu_count() or 0, "cpu_model": _cpu_model(), "hostname": socket.gethostname(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run_row(run_id, status, command, targets, task, options, executor, jobs, started, instances, *,
             finished=None, skipped=None, done=None, failed=None) -> dict:
    return {
        "run_id": run_id, "status": status, "command": command, "targets_json": json.dumps(list(targets)),
        "task": task.name, "options_json": json.dumps(options, sort_keys=True, default=str), "executor": executor,
        "jobs": jobs, **machine_info(), "started": started, "finished": finished, "updated": _now(),
        "instances": instances, "skipped": skipped, "done": done, "failed": failed,
    }


class _StopSignals:
    """SIGINT/SIGTERM -> KeyboardInterrupt, but never in the middle of writing a job."""

    def __init__(self):
        self.name = ""
        self._deferring = 0
        self._pending = False

    def _handler(self, signum, frame):
        self.name = signal.Signals(signum).name
        if self._deferring:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    @contextmanager
    def deferred(self):
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if self._pending and not self._deferring:
            self._pending = False
            raise KeyboardInterrupt


class Progress:
    """One status line rewritten in place on a terminal; one plain line per finished job otherwise."""

    def __init__(self, total: int, stream):
        self.total = total
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self._width = 0

    def _status(self, counts: dict, running: int) -> str:
        n = counts["done"] + counts["failed"]
        elapsed = _clock(time.monotonic() - self.start)
        return f"[{n}/{self.total}] {counts['done']} done, {counts['failed']} failed, {running} running, {elapsed}"

    def finished(self, job: Job, status: str, error: str, counts: dict, *, running: int, seconds: float = 0.0):
        line = self._status(counts, running)
        if self.tty:
            if status != "done":  # failures stay on screen, above the status line
                self._print_above(f"FAILED {job.instance.name}: {error}")
            last = f"{job.instance.name} {'ok' if status == 'done' else 'FAILED'}"
            self._rewrite(f"{line} | {last}")
        elif status == "done":
            self._line(f"{line} | done {job.instance.name} ({seconds:.2f} s)")
        else:
            self._line(f"{line} | FAILED {job.instance.name}: {error}")

    def heartbeat(self, counts: dict, *, running: int):
        line = self._status(counts, running)
        if self.tty:
            self._rewrite(line)
        else:
            self._line(line)

    def close(self):
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()

    def _line(self, text: str):
        self.stream.write(text + "\n")
        self.stream.flush()

    def _rewrite(self, text: str):
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def _print_above(self, text: str):
        self.stream.write("\r" + text + " " * max(0, self._width - len(text)) + "\n")
        self._width = 0
        self.stream.flush()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _now() -> datetime:
    return datetime.now(timezone.utc)
