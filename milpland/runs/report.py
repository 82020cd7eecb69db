"""Summaries and figures of a results folder (`milpland report OUT`).

Tables (pandas DataFrames, one row per suite and group):

- instances, failed (jobs whose latest attempt raised), and from ``solves``: solved
  (status optimal), certified, unverified (a returned point whose numpy re-check failed),
  time_limit, median and largest solve time;
- from ``minima`` when present: local minima, spurious minima, spurious minima per
  instance, instances with a spurious minimum, and the largest risk gap.

Figures (PNG, matplotlib's Agg backend, no display needed):

- ``solve_time.png``: solve time against n, one marker per loss, one colour per width,
  hollow markers for solves that are not certified;
- ``minima_risk.png`` (with minima): the risk level of every local minimum above the
  global minimum, per instance (symlog axis; the global minimum sits at 0);
- ``fits_1d.png`` (one-dimensional data): the data, the fitted function of the global
  minimum and of each spurious local minimum.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from milpland.errors import MilplandError
from milpland.instance.activations import Activation
from milpland.instance.network import OneHiddenParams
from milpland.runs.tables import load

GROUP_KEYS = ["suite", "group"]
MAX_FIT_PANELS = 12
MAX_RISK_INSTANCES = 60


def summary(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (suite, group): counts, solve times and, with minima, spurious minima and gaps."""
    parts = []
    jobs = frames.get("jobs")
    if jobs is not None and len(jobs):
        g = _keyed(jobs).groupby(GROUP_KEYS, dropna=False)
        parts.append(pd.DataFrame({
            "instances": g["instance"].nunique(),
            "failed": g["status"].apply(lambda s: int((s == "error").sum())),
        }))
    solves = frames.get("solves")
    if solves is not None and len(solves):
        s = _keyed(solves)
        s["_ok"] = s["status"] == "optimal"
        s["_cert"] = s["certified"].fillna(False).astype(bool)
        s["_unverified"] = s["_ok"] & ~s["verified"].fillna(False).astype(bool)
        s["_tl"] = s["status"] == "time_limit"
        g = s.groupby(GROUP_KEYS, dropna=False)
        parts.append(pd.DataFrame({
            "solved": g["_ok"].sum().astype(int),
            "certified": g["_cert"].sum().astype(int),
            "unverified": g["_unverified"].sum().astype(int),
            "time_limit": g["_tl"].sum().astype(int),
            "median_s": g["seconds_total"].median(),
            "max_s": g["seconds_total"].max(),
        }))
    minima = frames.get("minima")
    if minima is not None and len(minima):
        m = _keyed(minima)
        m["_spurious"] = m["spurious"].fillna(False).astype(bool)
        m["_gap"] = m["gap"].where(m["_spurious"])
        g = m.groupby(GROUP_KEYS, dropna=False)
        counted = g["instance"].nunique()
        spurious = g["_spurious"].sum().astype(int)
        parts.append(pd.DataFrame({
            "local_minima": g.size(),
            "spurious": spurious,
            "spurious_per_instance": spurious / counted,
            "with_spurious": g.apply(lambda t: t.loc[t["_spurious"], "instance"].nunique(), include_groups=False),
            "largest_gap": g["_gap"].max(),
        }))
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, axis=1)
    for col in ("instances", "failed", "solved", "certified", "unverified", "time_limit", "local_minima", "spurious",
                "with_spurious"):
        if col in table:
            table[col] = table[col].fillna(0).astype(int)
    return table.sort_index()


def failures(frames: dict[str, pd.DataFrame], *, limit: int = 20) -> pd.DataFrame:
    jobs = frames.get("jobs")
    if jobs is None or not len(jobs):
        return pd.DataFrame()
    failed = jobs[jobs["status"] == "error"]
    return failed[["suite", "group", "instance", "error"]].head(limit).reset_index(drop=True)


def machines(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    runs = frames.get("runs")
    if runs is None or not len(runs):
        return pd.DataFrame()
    cols = ["run_id", "status", "started", "done", "failed", "jobs", "cpu_model", "solver_version", "milpland_version"]
    return runs.sort_values("started")[[c for c in cols if c in runs]].reset_index(drop=True)


# --- figures ----------------------------------------------------------------------------------


def write_figures(frames: dict[str, pd.DataFrame], folder: str | Path) -> list[Path]:
    """Every figure the tables allow; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in CI
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    solves = _with_sizes(frames.get("solves"), frames.get("jobs"))
    minima = _with_sizes(frames.get("minima"), frames.get("jobs"))
    if solves is not None and len(solves):
        written.append(_solve_time(solves, folder / "solve_time.png"))
    if minima is not None and len(minima):
        written.append(_minima_risk(minima, folder / "minima_risk.png"))
    fits = _fits_1d(solves, minima, frames.get("jobs"), folder / "fits_1d.png")
    if fits is not None:
        written.append(fits)
    return written


def _solve_time(solves: pd.DataFrame, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    markers = {"squared": "o", "absolute": "s", "hinge": "^"}
    widths = sorted(solves["width"].dropna().unique())
    colours = plt.get_cmap("viridis")(np.linspace(0.1, 0.85, max(1, len(widths))))
    rng = np.random.default_rng(0)  # jitter only: overlapping points at equal n stay visible
    for loss, by_loss in solves.groupby("loss"):
        for colour, width in zip(colours, widths):
            sub = by_loss[by_loss["width"] == width]
            if not len(sub):
                continue
            x = sub["n"].to_numpy(float) * np.exp(rng.uniform(-0.04, 0.04, len(sub)))
            y = np.maximum(sub["seconds_total"].to_numpy(float), 1e-3)
            cert = sub["certified"].fillna(False).to_numpy(bool)
            m = markers.get(loss, "D")
            ax.scatter(x[cert], y[cert], marker=m, color=colour, s=30, label=f"{loss}, width {int(width)}")
            ax.scatter(x[~cert], y[~cert], marker=m, facecolors="none", edgecolors=colour, s=30)
    from matplotlib.ticker import (
        FixedLocator,
        NullFormatter,
        NullLocator,
        ScalarFormatter,
    )

    ax.set_xscale("log")
    ax.set_yscale("log")
    ns = sorted(solves["n"].dropna().unique())
    ax.xaxis.set_major_locator(FixedLocator(ns if len(ns) <= 12 else ns[:: -(-len(ns) // 12)]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(min(ns) / 1.15, max(ns) * 1.15)
    ax.set_xlabel("number of samples n")
    ax.set_ylabel("solve time (s)")
    ax.set_title("Global solve time (hollow: not certified)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _minima_risk(minima: pd.DataFrame, path: Path) -> Path:
    import matplotlib.pyplot as plt

    names = sorted(minima["instance"].unique())[:MAX_RISK_INSTANCES]
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(names) + 2), 4.5))
    for k, name in enumerate(names):
        sub = minima[minima["instance"] == name]
        gap = sub["gap"].to_numpy(float)
        spur = sub["spurious"].fillna(False).to_numpy(bool)
        ax.scatter(np.full(int((~spur).sum()), k), gap[~spur], color="tab:green", marker="_", s=120)
        ax.scatter(np.full(int(spur.sum()), k), gap[spur], color="tab:red", s=18)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel("risk - global minimum")
    ax.set_title("Local minimum risk levels (green: global, red: spurious)")
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def _fits_1d(solves, minima, jobs, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    if jobs is None or not len(jobs) or "d" not in jobs:
        return None
    one_d = jobs[(jobs["d"] == 1) & (jobs["status"] == "done") & jobs["data_json"].notna()]
    panels = []
    for name in sorted(one_d["instance"].unique()):
        glob = _params_of(solves, name, certified_first=True)
        spurious = []
        if minima is not None and len(minima):
            sub = minima[(minima["instance"] == name) & minima["spurious"].fillna(False).astype(bool)]
            spurious = [p for p in (_parse_params(t) for t in sub["params"]) if p is not None]
        if glob is None and not spurious:
            continue
        panels.append((name, one_d[one_d["instance"] == name].iloc[-1], glob, spurious))
        if len(panels) == MAX_FIT_PANELS:
            break
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, job, glob, spurious) in zip(axes.flat, panels):
        data = json.loads(job["data_json"])
        X, y = np.asarray(data["X"], float), np.asarray(data["y"], float)
        act = _activation(job["activation_json"])
        lo, hi = X.min(), X.max()
        grid = np.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 400)[:, None]
        ax.scatter(X[:, 0], y, color="black", s=14, zorder=3, label="data")
        for k, p in enumerate(spurious):
            ax.plot(grid[:, 0], p.forward(grid, act), color="tab:red", lw=1, ls="--", alpha=0.8,
                    label="spurious minimum" if k == 0 else None)
        if glob is not None:
            ax.plot(grid[:, 0], glob.forward(grid, act), color="tab:blue", lw=2, label="global minimum")
        span = float(np.ptp(y)) or 1.0
        # Fits may leave the data's range far (hinge loss: only the sign matters): keep the data readable.
        ax.set_ylim(y.min() - 0.5 * span, y.max() + 0.5 * span)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Fitted functions on one-dimensional data")
    return _save(fig, path)


def _params_of(solves, name: str, *, certified_first: bool) -> OneHiddenParams | None:
    if solves is None or not len(solves) or "params" not in solves:
        return None
    sub = solves[(solves["instance"] == name) & solves["params"].notna()]
    if certified_first:
        sub = sub.sort_values("certified", key=lambda c: c.fillna(False).astype(bool))
    for text in reversed(list(sub["params"])):
        p = _parse_params(text)
        if p is not None:
            return p
    return None


def _parse_params(text) -> OneHiddenParams | None:
    # Deeper networks store other parameter shapes: they are not drawn.
    if not isinstance(text, str):
        return None
    try:
        return OneHiddenParams.from_json(json.loads(text))
    except (KeyError, ValueError, TypeError):
        return None


def _activation(text: str) -> Activation:
    a = json.loads(text)
    return Activation(a["name"], tuple(a["breakpoints"]), tuple(a["slopes"]), tuple(a["intercepts"]))


def _with_sizes(table, jobs) -> pd.DataFrame | None:
    """A task table with n, d and width from its job rows (joined on attempt)."""
    if table is None or jobs is None or not len(table):
        return table
    sizes = jobs[["attempt", "n", "d", "width"]]
    return table.drop(columns=[c for c in ("n", "d", "width") if c in table]).merge(sizes, on="attempt", how="left")


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for key in GROUP_KEYS:
        if key not in frame:
            frame[key] = ""
        frame[key] = frame[key].fillna("").replace("", "-")
    return frame


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The report's tables: summary, failures, runs."""
    frames = load(out_dir)
    if not frames:
        raise MilplandError(f"{out_dir}: holds no result tables (run `milpland batch ... --out {out_dir}` first)")
    return {"summary": summary(frames), "failures": failures(frames), "runs": machines(frames)}
