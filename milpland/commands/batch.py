"""``milpland batch``: run a task over specs and suites, in parallel, resumable."""

from __future__ import annotations

import argparse
import shlex
import sys
import tomllib
from datetime import datetime

from milpland.errors import MilplandError
from milpland.runs.batch import EXECUTORS, TASKS, BatchWriteError, run_batch

EPILOG = """\
Results are appended to OUT as each instance finishes (Parquet parts; --csv also exports CSV).
Rerunning the same command skips what is done and retries what failed. Load the tables with
milpland.runs.tables.load(OUT); summarise them with `milpland report OUT`.
Exit codes: 0 all done, 1 some instances failed, 2 usage error, 130/143 interrupted (SIGINT/SIGTERM)."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch", help="run a task over many specs or suites, in parallel, resumable",
        description="Run a task over spec files, suite files, directories and globs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("targets", nargs="+", metavar="SPEC_OR_SUITE", help="spec or suite TOML files, folders, globs")
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (created; resumed when it exists)")
    p.add_argument("--task", default="solve", help=f"one of {', '.join(sorted(TASKS))}, or module:function")
    p.add_argument("--jobs", type=int, default=None, metavar="N", help="parallel workers (default: CPU count)")
    p.add_argument("--time-limit", type=float, default=None, metavar="S", help="solver time limit per instance")
    p.add_argument("--csv", action="store_true", help="also write OUT/<table>.csv at the end")
    p.add_argument("--rerun", action="store_true", help="recompute instances that are already done")
    p.add_argument("--rerun-since", default=None, metavar="TIME",
                   help="recompute what finished before TIME (ISO 8601; how an interrupted --rerun resumes)")
    p.add_argument("--executor", default="local", choices=EXECUTORS, help="local process pool or dask")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="dask scheduler (default: a local cluster)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a task option, repeatable; VALUE is a TOML scalar (1000, 0.5, true, \"text\") or a bare "
                        "word (bnb); e.g. --task landscape --option method=bnb --option gap_rel=0.5 --option "
                        "census=1000")
    p.set_defaults(func=run)


def run(args) -> int:
    since = _parse_time(args.rerun_since) if args.rerun_since else None
    if args.rerun and since is not None:
        raise MilplandError("give --rerun or --rerun-since, not both")
    options = parse_options(args.option)
    try:
        summary = run_batch(
            args.targets, out=args.out, task=args.task, jobs=args.jobs, time_limit=args.time_limit, csv=args.csv,
            rerun=args.rerun, rerun_since=since, executor=args.executor, scheduler=args.scheduler,
            task_options=options, command=command_line(args),
        )
    except BatchWriteError as exc:  # the disk, not the user: exit 1
        print(f"milpland batch: error: {exc}", file=sys.stderr)
        return 1
    where = summary.out
    if summary.interrupted:
        print(
            f"milpland batch: stopped by {summary.stop_signal or 'interrupt'}: {summary.done} done and "
            f"{summary.failed} failed are saved in {where}; {summary.not_run} not run.",
            file=sys.stderr,
        )
        if summary.not_run:
            print(f"resume with: {command_line(args, resume_since=summary.rerun_since)}", file=sys.stderr)
        return summary.exit_code
    tail = f", {summary.skipped} skipped as already done" if summary.skipped else ""
    print(
        f"milpland batch: {summary.done} done, {summary.failed} failed{tail} in {summary.seconds:.1f} s; "
        f"results in {where}",
        file=sys.stderr,
    )
    if summary.failed:
        print("failed instances are retried when the same command is run again", file=sys.stderr)
    return summary.exit_code


def parse_options(texts: list[str]) -> dict:
    """``KEY=VALUE`` strings -> {key: value}: VALUE read as a TOML scalar, else kept as the bare word."""
    options = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key.isidentifier():
            raise MilplandError(f"--option {text!r}: expected KEY=VALUE, e.g. --option census=1000")
        if key in options:
            raise MilplandError(f"--option {key}: given twice")
        options[key] = _scalar(key, raw)
    return options


def _scalar(key: str, raw: str):
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if not raw or any(c.isspace() or c in "[]{}=\"'" for c in raw):
            raise MilplandError(f"--option {key}={raw}: not a TOML scalar (a number, true/false, \"text\") "
                                "or a bare word") from None
        return raw  # a bare word: method=bnb
    if isinstance(value, (list, dict)) or not isinstance(value, (int, float, str, bool)):
        raise MilplandError(f"--option {key}={raw}: must be a single value (a number, true/false or text)")
    return value


def command_line(args, *, resume_since: datetime | None = None) -> str:
    """The command as typed (for the runs table), or the command that resumes it."""
    parts = ["milpland", "batch", *args.targets, "--out", args.out]
    if args.task != "solve":
        parts += ["--task", args.task]
    if args.jobs is not None:
        parts += ["--jobs", str(args.jobs)]
    if args.time_limit is not None:
        parts += ["--time-limit", f"{args.time_limit:g}"]
    if args.csv:
        parts.append("--csv")
    if args.executor != "local":
        parts += ["--executor", args.executor]
    if args.scheduler:
        parts += ["--scheduler", args.scheduler]
    for option in getattr(args, "option", None) or []:  # a Namespace built without --option
        parts += ["--option", option]
    if resume_since is not None:
        parts += ["--rerun-since", resume_since.isoformat()]
    elif args.rerun:
        parts.append("--rerun")
    elif args.rerun_since:
        parts += ["--rerun-since", args.rerun_since]
    return shlex.join(parts)


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise MilplandError(f"--rerun-since {text!r}: not an ISO 8601 time such as 2025-01-31T12:00:00+00:00") from None
    if value.tzinfo is None:
        value = value.astimezone()  # a local time as typed
    return value

