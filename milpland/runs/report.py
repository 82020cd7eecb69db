"""Summaries and figures of a results folder (`milpland report OUT`).

Tables (pandas DataFrames, one row per suite and group):

- instances, failed (jobs whose latest attempt raised), and from ``solves``: solved
  (status optimal), certified, unverified (a returned point whose numpy re-check failed),
  time_limit, median and largest solve time;
- from ``minima`` when present: local minima, spurious minima, spurious minima per
  instance, instances with a spurious minimum, and the largest risk gap.

Figures (PNG, matplotlib's Agg backend, no display needed):

- ``solve_time.png``: solve time against n (exact n, log axes), one panel per input dimension d,
  one marker per loss, one colour per width, hollow markers for solves that are not certified;
- ``minima_risk.png`` (with minima): the risk of every local minimum above the global minimum,
  per instance (symlog axis; the global minimum sits at 0); minima of equal risk share a mark
  labelled with their number, and each instance's label gives its number of minima;
- ``landscape_levels.png`` (landscape task rows): per landscape job, the risk levels above the
  global minimum (symlog): the listing's certified minima filled, the census's minima above it
  hollow with area ~ basin fraction, the proven band (every local minimum below its top is listed)
  shaded, the query's threshold and, for a stopped listing, the open bound as ticks;
- ``fits_1d.png`` (one-dimensional data): the data, the fitted function of the global minimum
  (named "not certified" with the reason when the solve is not certified; from the minima table
  when there is no solve) and of the spurious local minima with the smallest gaps.
"""

from __future__ import annotations

import json
import re
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
        written.append(_minima_risk(minima, folder / "minima_risk.png", certified=_certified_instances(solves)))
    levels = _landscape_levels(frames.get("solves"), frames.get("minima"), folder / "landscape_levels.png")
    if levels is not None:
        written.append(levels)
    fits = _fits_1d(solves, minima, frames.get("jobs"), folder / "fits_1d.png")
    if fits is not None:
        written.append(fits)
    return written


LOSS_MARKERS = {"squared": "o", "absolute": "s", "hinge": "^", "logistic": "D"}
HOLLOW_MEANS = "hollow: not certified (time limit, gap, box bound active or failed check)"


def _solve_time(solves: pd.DataFrame, path: Path) -> Path:
    """Solve time against n: one panel per input dimension d, colour = width, marker = loss, hollow =
    not certified.  Every point sits at its exact n (no jitter); overlapping points show through
    their transparency."""
    import matplotlib.pyplot as plt

    dims = sorted(int(d) for d in solves["d"].dropna().unique()) or [0]
    widths = sorted(int(w) for w in solves["width"].dropna().unique())
    colour = {w: plt.get_cmap("tab10")(k % 10) for k, w in enumerate(widths)}
    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims) + 2.6, 4.4), squeeze=False, sharey=True)
    for ax, d in zip(axes[0], dims):
        sub = solves[solves["d"] == d] if d else solves
        for (loss, width), group in sub.groupby(["loss", "width"]):
            x = group["n"].to_numpy(float)
            y = np.maximum(group["seconds_total"].to_numpy(float), 1e-3)
            cert = group["certified"].fillna(False).to_numpy(bool)
            m, c = LOSS_MARKERS.get(loss, "D"), colour[int(width)]
            ax.scatter(x[cert], y[cert], marker=m, color=c, s=38, alpha=0.75)
            ax.scatter(x[~cert], y[~cert], marker=m, facecolors="none", edgecolors=c, s=38, linewidths=1.4)
        _exact_ticks(ax, sorted(sub["n"].dropna().unique()))
        ax.set_yscale("log")
        ax.set_title(f"inputs of dimension d = {d}" if d else "all instances", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("solve time, wall clock (s, log scale)")
    fig.supxlabel("number of samples n (log scale)", fontsize=10)
    fig.suptitle("Global solve time per instance")
    handles = _legend_proxies(plt, {loss: LOSS_MARKERS.get(loss, "D") for loss in sorted(solves["loss"].unique())},
                              {f"width {w}": colour[w] for w in widths})
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    return _save(fig, path)


def _exact_ticks(ax, values) -> None:
    """A log x axis with a labelled tick at every value that occurs (thinned to at most 12)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    values = [float(v) for v in values]
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(values if len(values) <= 12 else values[:: -(-len(values) // 12)]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if values:
        ax.set_xlim(min(values) / 1.2, max(values) * 1.2)


def _legend_proxies(plt, markers: dict, colours: dict) -> list:
    """Legend entries for a figure coded by marker (loss), colour and fill (certified or not)."""
    from matplotlib.lines import Line2D

    grey = "0.35"
    handles = [Line2D([], [], ls="", marker=m, color=grey, label=f"{name} loss") for name, m in markers.items()]
    handles += [Line2D([], [], ls="", marker="o", color=c, label=name) for name, c in colours.items()]
    handles += [Line2D([], [], ls="", marker="o", color=grey, label="filled: certified"),
                Line2D([], [], ls="", marker="o", markerfacecolor="none", markeredgecolor=grey, label=HOLLOW_MEANS)]
    return handles


def risk_levels(gaps: np.ndarray, tol: float = 1e-9) -> list[tuple[float, int]]:
    """Distinct gap values (merged within tol relative to max(1, |gap|)) with how many minima share each."""
    levels: list[list] = []
    for gap in np.sort(gaps[np.isfinite(gaps)]):
        if levels and abs(gap - levels[-1][0]) <= tol * max(1.0, abs(gap)):
            levels[-1][1] += 1
        else:
            levels.append([float(gap), 1])
    return [(g, k) for g, k in levels]


MAX_ANNOTATED_LEVELS = 25  # above this many distinct levels in a column, "x k" labels would overlap


def _certified_instances(solves: pd.DataFrame | None) -> set[str]:
    """Instances whose global reference is certified (a solves row with certified = True)."""
    if solves is None or not len(solves) or "certified" not in solves:
        return set()
    return set(solves.loc[solves["certified"].fillna(False).astype(bool), "instance"].astype(str))


def _minima_risk(minima: pd.DataFrame, path: Path, *, certified: set[str]) -> Path:
    """Every local minimum's risk above the global minimum, one column per instance.  Minima of equal
    risk share a mark, labelled with their number (x 3) while the column has few levels, so that no
    minimum hides behind another.  The zero level is called the global minimum only where the
    instance's solve is certified; elsewhere it is drawn hollow as the best known point."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    names = sorted(minima["instance"].unique(), key=natural_key)[:MAX_RISK_INSTANCES]
    fig, ax = plt.subplots(figsize=(max(8.5, 0.45 * len(names) + 5), 5.2))
    labels = []
    uncertified = False
    for k, name in enumerate(names):
        sub = minima[minima["instance"] == name]
        spur = sub["spurious"].fillna(False).to_numpy(bool)
        gap = sub["gap"].to_numpy(float)
        proven = str(name) in certified
        uncertified |= not proven
        marks = [(lvl, cnt, "tab:green", "D", proven) for lvl, cnt in risk_levels(np.zeros(int((~spur).sum())))]
        marks += [(lvl, cnt, "tab:red", "o", True) for lvl, cnt in risk_levels(gap[spur])]
        for level, count, colour, marker, filled in marks:
            ax.scatter([k], [level], marker=marker, s=26 + 6 * min(count, 10), zorder=4 if marker == "D" else 3,
                       linewidths=1.4, color=colour if filled else "none", edgecolors=colour)
            if count > 1 and len(marks) <= MAX_ANNOTATED_LEVELS:
                ax.annotate(f"\u00d7{count}", (k, level), xytext=(6, -3), textcoords="offset points", fontsize=7)
        labels.append(f"{name} ({len(sub)} in {len(marks)} levels)")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xlabel("instance (local minima in distinct risk levels)")
    ax.set_ylabel("risk - global minimum\n(risk units; symlog, linear below 1e-3)")
    ax.set_title("Local minima above the global minimum\n(\u00d7k: k minima of equal risk, on columns of at most "
                 f"{MAX_ANNOTATED_LEVELS} levels)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    handles = [Line2D([], [], ls="", marker="D", color="tab:green", label="global minimum (certified; not spurious)"),
               Line2D([], [], ls="", marker="o", color="tab:red", label="spurious local minimum")]
    if uncertified:
        handles.insert(1, Line2D([], [], ls="", marker="D", markerfacecolor="none", markeredgecolor="tab:green",
                                 label="lowest listed minimum: the global minimum\n"
                                       "is NOT certified (the gaps' reference)"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _save(fig, path)


BAND_MEANS = ("certified: every local minimum below the band's top\nline is listed (no top line: complete "
              "enumeration)")
LEVEL_LABELS = {
    "global": "global minimum (certified)",
    "reference": "best known point, NOT certified\n(the reference of the gaps)",
    "listed_global": "listed minimum at the reference level (not spurious)",
    "listed": "listed spurious minimum (certified; in the band)",
    "tail": "census-only minimum (certified; above the\nband), area ~ basin fraction:",
    "threshold": "threshold asked (bnb query)",
    "open": "open bound: the listing stopped early,\ncomplete only below it",
}


def landscape_jobs(solves, minima) -> list[dict]:
    """One entry per landscape job (a solves row with landscape_method): its reference risk, whether it
    is certified, the proven band (gap units: risk - reference), the threshold asked, and its minima."""
    if solves is None or minima is None or not len(minima) or "landscape_method" not in solves:
        return []
    rows = solves[solves["landscape_method"].notna()]
    key = "attempt" if "attempt" in rows and "attempt" in minima else "instance"
    jobs = []
    for _, row in rows.iterrows():
        sub = minima[minima[key] == row[key]]
        if not len(sub):
            continue
        ref = float(row["risk"])
        jobs.append({
            "instance": row["instance"], "method": row["landscape_method"], "reference": ref,
            "certified": bool(row.get("certified")) if pd.notna(row.get("certified")) else False,
            "band_top": _gap_of(row.get("proven_below"), ref), "threshold": _gap_of(row.get("threshold"), ref),
            "open_bound": _gap_of(row.get("open_bound"), ref),
            "unseen_mass": row.get("unseen_mass"), "minima": sub,
        })
    return sorted(jobs, key=lambda j: (natural_key(j["instance"]), j["method"]))[:MAX_RISK_INSTANCES]


def _gap_of(value, ref: float) -> float:
    """A risk as a gap above the reference (nan for missing; +inf stays +inf)."""
    if value is None or pd.isna(value):
        return float("nan")
    return float(value) - ref


def _landscape_levels(solves, minima, path: Path) -> Path | None:
    """Per landscape job: the certified band (shaded up to the proven threshold), the listing's minima
    (filled), the census's minima above the band (hollow, area ~ basin fraction), the threshold asked
    and the open bound of a stopped listing.  The zero line is called global only where certified."""
    import matplotlib.pyplot as plt

    jobs = landscape_jobs(solves, minima)
    if not jobs:
        return None
    linthresh, bottom, ceiling = _level_axis(jobs)
    fig, ax = plt.subplots(figsize=(max(7.5, 0.55 * len(jobs) + 6.5), 6.4))
    used = set()
    for x, job in enumerate(jobs):
        used |= _draw_job(ax, x, job, bottom, ceiling)
    multiple = {j["instance"] for j in jobs if sum(k["instance"] == j["instance"] for k in jobs) > 1}
    ax.set_xticks(range(len(jobs)))
    ax.set_xticklabels([_job_label(j, j["instance"] in multiple) for j in jobs], rotation=90, fontsize=7)
    ax.set_xlim(-0.7, len(jobs) - 0.3)
    ax.set_yscale("symlog", linthresh=linthresh)
    ax.set_ylim(bottom, ceiling)
    ax.set_xlabel("instance (listed + census-only minima; census unseen mass)", fontsize=9)
    ax.set_ylabel(f"risk above the global minimum\n(the spec's risk units; symlog, linear below {linthresh:.0e})",
                  fontsize=9)
    ax.set_title("Local minima: the certified band (filled) and the census tail above it (hollow)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(handles=_level_legend(used), fontsize=7.5, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _save(fig, path)


def _level_axis(jobs: list[dict]) -> tuple[float, float, float]:
    """(linthresh, bottom, top) of the symlog axis.  The linear part ends at the decade of the smallest
    spurious gap (smaller gaps are one level with the global minimum), at most 6 decades below the
    largest gap; the axis goes below 0 only to show a band or open bound below the reference."""
    gaps, marks = [], []
    for job in jobs:
        sub = job["minima"]
        spurious = sub["spurious"].fillna(False).to_numpy(bool)
        gaps.append(sub["risk"].to_numpy(float)[spurious] - job["reference"])
        marks += [v for v in (job["band_top"], job["threshold"], job["open_bound"]) if np.isfinite(v)]
    gaps = np.concatenate(gaps)
    gaps = gaps[np.isfinite(gaps) & (gaps > 0)]
    top = max([float(gaps.max()) if len(gaps) else 1e-3, *[v for v in marks if v > 0]])
    decade = 10.0 ** np.floor(np.log10(top))
    linthresh = max(float(10.0 ** np.floor(np.log10(gaps.min()))) if len(gaps) else 1e-3 * decade, 1e-6 * decade)
    bottom = min([-0.3 * linthresh, *[1.5 * v for v in marks if v < 0]])
    return linthresh, bottom, 3.0 * top


def _draw_job(ax, x: float, job: dict, bottom: float, ceiling: float) -> set:
    """One column; returns the legend keys it used."""
    used = set()
    band = job["band_top"]
    if band > bottom:  # nan compares False: no band
        ax.fill_between([x - 0.38, x + 0.38], bottom, min(band, ceiling), color="tab:blue", alpha=0.13, lw=0, zorder=1)
        used.add("band")
        if np.isfinite(band) and band != job["open_bound"]:  # a stopped listing's top is its open bound
            ax.hlines(band, x - 0.38, x + 0.38, color="tab:blue", lw=2, zorder=2)
    if np.isfinite(job["threshold"]) and np.isfinite(band) and job["threshold"] > band + 1e-12 * max(1.0, abs(band)):
        ax.hlines(job["threshold"], x - 0.38, x + 0.38, color="0.35", lw=1.2, ls=":", zorder=2)
        used.add("threshold")
    if np.isfinite(job["open_bound"]):
        ax.hlines(job["open_bound"], x - 0.38, x + 0.38, color="tab:orange", lw=1.6, ls="--", zorder=2)
        used.add("open")
    ax.hlines(0.0, x - 0.38, x + 0.38, color="black" if job["certified"] else "tab:orange", lw=1.0,
              ls="-" if job["certified"] else "-.", zorder=2)
    used.add("global" if job["certified"] else "reference")
    sub = job["minima"]
    gap = sub["risk"].to_numpy(float) - job["reference"]
    tail = (sub["found_by"] == "sample").to_numpy(bool) if "found_by" in sub else np.zeros(len(sub), bool)
    spurious = sub["spurious"].fillna(False).to_numpy(bool)
    for mask, colour, marker, key in ((~tail & ~spurious, "tab:green", "D", "listed_global"),
                                      (~tail & spurious, "tab:red", "o", "listed")):
        for level, count in risk_levels(np.where(spurious, gap, 0.0)[mask]):
            ax.scatter([x], [level], color=colour, marker=marker, s=24, zorder=4, edgecolors="none")
            if count > 1:
                ax.annotate(f"×{count}", (x, level), xytext=(5, -3), textcoords="offset points", fontsize=6)
            used.add(key)
    if tail.any():
        fraction = sub["basin_fraction"].to_numpy(float)[tail] if "basin_fraction" in sub else np.full(tail.sum(), 0.0)
        level = np.where(spurious, gap, 0.0)[tail]  # not spurious: one level with the reference
        ax.scatter(np.full(tail.sum(), x + 0.12), level, s=tail_area(fraction), facecolors="none",
                   edgecolors="tab:purple", linewidths=0.9, zorder=3)
        used.add("tail")
    return used


def _job_label(job: dict, with_method: bool) -> str:
    sub = job["minima"]
    tail = int((sub["found_by"] == "sample").sum()) if "found_by" in sub else 0
    unseen = job["unseen_mass"]
    census = f"; unseen {float(unseen):.2g}" if unseen is not None and pd.notna(unseen) else ""
    name = f"{job['instance']} [{job['method']}]" if with_method else job["instance"]
    return f"{name} ({len(sub) - tail} + {tail}{census})"


def _level_legend(used: set) -> list:
    """One entry per marker the figure drew, in a fixed order."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    entries = {
        "band": Patch(facecolor="tab:blue", alpha=0.25, edgecolor="tab:blue", label=BAND_MEANS),
        "threshold": Line2D([], [], color="0.35", ls=":", label=LEVEL_LABELS["threshold"]),
        "open": Line2D([], [], color="tab:orange", ls="--", label=LEVEL_LABELS["open"]),
        "global": Line2D([], [], color="black", label=LEVEL_LABELS["global"]),
        "reference": Line2D([], [], color="tab:orange", ls="-.", label=LEVEL_LABELS["reference"]),
        "listed_global": Line2D([], [], ls="", marker="D", color="tab:green", label=LEVEL_LABELS["listed_global"]),
        "listed": Line2D([], [], ls="", marker="o", color="tab:red", label=LEVEL_LABELS["listed"]),
        "tail": Line2D([], [], ls="", marker="o", markerfacecolor="none", markeredgecolor="tab:purple",
                       markersize=9, label=LEVEL_LABELS["tail"]),
    }
    handles = [entries[k] for k in entries if k in used]
    if "tail" in used:  # the marker area's scale
        handles += [Line2D([], [], ls="", marker="o", markerfacecolor="none", markeredgecolor="tab:purple",
                           markersize=float(np.sqrt(tail_area(f))), label=f"    basin fraction {f:g}")
                    for f in (0.01, 0.1, 0.5)]
    return handles


def tail_area(fraction):
    """Marker area (points^2) of a census-only minimum with this basin fraction: area ~ fraction."""
    return 8.0 + 600.0 * np.nan_to_num(fraction)


MAX_SPURIOUS_DRAWN = 5


def _fits_1d(solves, minima, jobs, path: Path) -> Path | None:
    """The data and the fitted functions of one-dimensional instances: the global minimum (from the
    solve; else the best non-spurious minimum of the minima table) and the spurious minima with the
    smallest gaps.  A solve that is not certified is drawn and named as what it is."""
    import matplotlib.pyplot as plt

    if jobs is None or not len(jobs) or "d" not in jobs:
        return None
    one_d = jobs[(jobs["d"] == 1) & (jobs["status"] == "done") & jobs["data_json"].notna()]
    panels = []
    names = sorted(one_d["instance"].unique(), key=natural_key)
    for name in names:
        glob = _global_fit(solves, minima, name)
        spurious, total = _spurious_fits(minima, name)
        if glob is None and not spurious:
            continue
        panels.append((name, one_d[one_d["instance"] == name].iloc[-1], glob, spurious, total))
        if len(panels) == MAX_FIT_PANELS:
            break
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.3 * rows + 0.6), squeeze=False)
    for ax, (name, job, glob, spurious, total) in zip(axes.flat, panels):
        _fit_panel(ax, name, job, glob, spurious, total)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.supxlabel("input x", fontsize=10)
    fig.supylabel("target y (dots) and network output f(x) (lines)", fontsize=10)
    more = f" (the first {len(panels)} of {len(names)} instances)" if len(panels) < len(names) else ""
    fig.suptitle(f"Fitted functions on one-dimensional data{more}")
    return _save(fig, path)


def natural_key(name: str) -> list:
    """Sort key that orders numbers inside names by value: n6 before n10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name))]


def _fit_panel(ax, name: str, job, glob, spurious: list, total: int) -> None:
    data = json.loads(job["data_json"])
    X, y = np.asarray(data["X"], float), np.asarray(data["y"], float)
    act = _activation(job["activation_json"])
    lo, hi = X.min(), X.max()
    grid = np.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 400)[:, None]
    ax.scatter(X[:, 0], y, color="black", s=14, zorder=3, label="data")
    shown = f" ({len(spurious)} of {total}, smallest gaps)" if len(spurious) < total else ""
    for k, p in enumerate(spurious):
        ax.plot(grid[:, 0], p.forward(grid, act), color="tab:red", lw=1, ls="--", alpha=0.7,
                label=f"spurious minimum{shown}" if k == 0 else None)
    if glob is not None:
        params, label, certified = glob
        ax.plot(grid[:, 0], params.forward(grid, act), color="tab:blue" if certified else "tab:orange", lw=2,
                ls="-" if certified else "-.", label=label)
    span = float(np.ptp(y)) or 1.0
    # Fits may leave the data's range far (hinge loss: only the sign matters): keep the data readable.
    ax.set_ylim(y.min() - 0.5 * span, y.max() + 0.5 * span)
    ax.set_title(name, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6.5, loc="best")


def _global_fit(solves, minima, name: str):
    """(params, legend label, certified) of the instance's global minimum, or None."""
    found = _params_of(solves, name, certified_first=True)
    if found is not None:
        params, row = found
        if bool(row.get("certified")):
            return params, "global minimum (certified)", True
        return params, f"best point found, NOT certified ({_why_not_certified(row)})", False
    if minima is None or not len(minima) or "params" not in minima:
        return None
    sub = minima[(minima["instance"] == name) & ~minima["spurious"].fillna(False).astype(bool)]
    sub = sub.sort_values("risk", kind="stable")
    for _, row in sub.iterrows():
        params = _parse_params(row["params"])
        if params is not None:
            complete = bool(row.get("complete")) if "complete" in row and pd.notna(row.get("complete")) else False
            what = "global minimum (best of a complete list)" if complete else "lowest local minimum found"
            return params, what, complete
    return None


def _why_not_certified(row) -> str:
    if row.get("status") not in (None, "optimal"):
        return f"status {row.get('status')}"
    if bool(row.get("box_active")):
        return "a box bound is active"
    if not bool(row.get("verified", True)):
        return "numpy check failed"
    return "gap not closed"


def _spurious_fits(minima, name: str) -> tuple[list, int]:
    """The spurious minima's networks with the smallest gaps (at most MAX_SPURIOUS_DRAWN), and how many there are."""
    if minima is None or not len(minima):
        return [], 0
    sub = minima[(minima["instance"] == name) & minima["spurious"].fillna(False).astype(bool)]
    sub = sub.sort_values("gap", kind="stable")
    fits = [p for p in (_parse_params(t) for t in sub["params"]) if p is not None]
    return fits[:MAX_SPURIOUS_DRAWN], len(fits)


def _params_of(solves, name: str, *, certified_first: bool):
    """(params, its solves row) of the instance's latest solve with parameters (certified ones first)."""
    if solves is None or not len(solves) or "params" not in solves:
        return None
    sub = solves[(solves["instance"] == name) & solves["params"].notna()]
    if certified_first:
        sub = sub.sort_values("certified", key=lambda c: c.fillna(False).astype(bool), kind="stable")
    for _, row in reversed(list(sub.iterrows())):
        p = _parse_params(row["params"])
        if p is not None:
            return p, row
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
    fig.savefig(path, dpi=120, bbox_inches="tight")  # "tight": legends placed beside the axes are kept
    plt.close(fig)
    return path


def report(out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The report's tables: summary, failures, runs."""
    frames = load(out_dir)
    if not frames:
        raise MilplandError(f"{out_dir}: holds no result tables (run `milpland batch ... --out {out_dir}` first)")
    return {"summary": summary(frames), "failures": failures(frames), "runs": machines(frames)}
