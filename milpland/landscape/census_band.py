"""The census next to a certified listing: proofs below the threshold, estimates above it (DESIGN §5d).

A listing (``enumerate``, or ``bnb`` up to a threshold T) proves that every local minimum with risk
<= T is in its list (`LandscapeResult.proven_below`).  The census (`run_census`) proves only that each
minimum it reached is a local minimum, and estimates how often random starts end in each.  Put
together:

- each census minimum is matched to a listed minimum by its fitted values (`match_minimum`: the risk
  is a function of the fitted values, so equal fits are the same minimum); for the absolute and hinge
  losses, whose cell optima are faces holding many fits, also by its cell;
- matched: the listed minimum (its proof stays the listing's) gets the starts that ended in it;
  listed minima no start reached get 0 starts, and a Wilson interval [0, hi] all the same;
- not matched, risk above the proven threshold: a certified minimum of the tail, added with
  found_by "sample" (the list above T is not complete: nothing proves it);
- not matched, risk below the proven threshold: the listing claims to hold every such minimum, so
  this contradicts a proof.  It is a bug of one of the two, never an expected outcome: it is added
  (it is certified) and reported as a ``conflict``, which the command prints loudly and exits 1 on.
  Absolute and hinge losses: a census minimum at the risk level of a listed one with another fit is
  another representative of a listed level (the listing's proof is about levels there), not a conflict.

The per-minimum counts are re-keyed to the merged list's cells, so `LandscapeResult.basin_columns`
finds every minimum; the unseen mass is recomputed from the merged counts (N1 / N, unchanged unless
two census minima matched one listed minimum).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from milpland.cells.certificates import match_minimum
from milpland.cells.minima import LocalMinimum
from milpland.instance.spec import InstanceSpec
from milpland.landscape.census import Basin, Census, good_turing_unseen, wilson_interval


@dataclass(frozen=True)
class CensusBand:
    """How the census's minima sit against the listing's proven threshold."""

    listing: str  # the listing's method: enumerate | bnb
    proven_below: float  # every local minimum with risk <= this is listed (inf: all; -inf: nothing proven)
    threshold: float  # bnb: the query's final T (inf for enumerate)
    open_bound: float  # bnb stopped early: the least bound of the open nodes (inf otherwise)
    census_minima: int  # distinct minima the census reached
    matched: int  # of them, minima of the listing
    above: int  # of them, minima above the proven threshold, added with found_by "sample"
    other_representatives: int  # absolute/hinge: other fits at a listed level below the threshold
    starts_in_band: int  # starts that ended in a listed minimum
    starts: int
    conflicts: list = field(default_factory=list)  # census minima below the threshold the listing lacks

    def to_json(self) -> dict:
        lo, hi = wilson_interval(self.starts_in_band, self.starts)
        return {
            "listing": self.listing, "proven_below": _number(self.proven_below), "threshold": _number(self.threshold),
            "open_bound": _number(self.open_bound), "census_minima": self.census_minima, "matched": self.matched,
            "above": self.above, "other_representatives": self.other_representatives,
            "starts_in_band": self.starts_in_band, "band_basin_fraction": self.starts_in_band / self.starts,
            "band_basin_ci": [lo, hi], "conflicts": list(self.conflicts),
            "proofs": self.proofs, "estimates": self.estimates,
        }

    @property
    def proofs(self) -> list[str]:
        """What the listing proves, in words."""
        below = self.proven_below
        if self.listing == "enumerate" and np.isposinf(below):
            first = "every local minimum in the box is listed (complete enumeration of every cell)"
        elif np.isfinite(below) and below >= self.threshold:
            first = (f"every local minimum in the box with risk <= {below:.10g} is listed (branch-and-bound "
                     "exhausted below the threshold)")
        elif np.isfinite(below):
            first = (f"every local minimum in the box with risk < {below:.10g} is listed (stopped early: open "
                     f"bound {self.open_bound:.10g}, threshold {self.threshold:.10g})")
        else:
            first = "nothing about completeness: the listing stopped before it proved a threshold"
        return [first, "each listed minimum, the census's included, is a certified local minimum of the risk over "
                       "the box (interior or boundary certificate of its cell, re-checked with a numpy forward pass)"]

    @property
    def estimates(self) -> list[str]:
        """What the census estimates, and what nothing proves, in words."""
        share = self.starts_in_band / self.starts
        lo, hi = wilson_interval(self.starts_in_band, self.starts)
        where = "above the proven threshold" if np.isfinite(self.proven_below) else "outside the listing"
        return [
            (f"basin fractions from {self.starts} starts: {self.starts_in_band} ended in a minimum of the "
             f"{self.listing} listing ({share:.3g}, 95 % Wilson [{lo:.3g}, {hi:.3g}]); of the {self.census_minima} "
             "minima the census "
             f"reached, {self.matched} are listed by the {self.listing} listing and {self.above} lie {where} "
             "(found_by sample)"),
            ("nothing more: the listing is complete, the census adds estimates only" if np.isposinf(self.proven_below)
             else "not proven: that the minima above the threshold are all of them (the census misses minima with "
                  "small basins in any number)"),
        ]


def merge_census(spec: InstanceSpec, minima: list[LocalMinimum], census: Census, census_minima: list[LocalMinimum],
                 *, listing: str, proven_below: float, threshold: float, open_bound: float,
                 tol: float) -> tuple[list[LocalMinimum], Census, CensusBand]:
    """The listing's minima with the census's counts, plus the census minima it lacks (module docstring).
    ``tol``: the spurious tolerance; a census minimum counts as below the threshold when its risk is
    below ``proven_below - tol`` (the listing keeps leaves up to T + tol, so the edge is not a claim)."""
    listed = list(minima)
    fits = np.array([m.fitted for m in listed]).reshape(len(listed), spec.n)
    counts = [0] * len(listed)
    extra: list[LocalMinimum] = []
    extra_counts: list[int] = []
    matched = above = others = 0
    conflicts = []
    faces = spec.loss.kind != "squared"
    cells = {m.cell: k for k, m in enumerate(listed)}
    for cm in census_minima:
        k = census.basins[cm.cell].count
        at = match_minimum(cm.fitted, fits, spec)
        if at < 0 and faces:
            at = cells.get(cm.cell, -1)
        if at >= 0:
            counts[at] += k
            matched += 1
            continue
        extra.append(replace(cm, found_by="sample"))
        extra_counts.append(k)
        if cm.risk >= proven_below - tol:
            above += 1
        elif faces and any(abs(cm.risk - m.risk) <= tol for m in listed):
            others += 1
        else:
            conflicts.append({"risk": float(cm.risk), "cell": cm.cell, "starts": int(k),
                              "proven_below": float(proven_below)})
    merged = [replace(m, basin_fraction=c / census.starts) for m, c in zip(listed, counts)] + extra
    basins = {m.cell: _basin(c, census) for m, c in zip(merged, counts + extra_counts)}
    reached = [b.count for b in basins.values() if b.count > 0]
    singletons = sum(1 for c in reached if c == 1)
    census = replace(census, basins=basins, singletons=singletons,
                     unseen_mass=good_turing_unseen(reached, census.starts) if reached else 0.0)
    band = CensusBand(listing=listing, proven_below=proven_below, threshold=threshold, open_bound=open_bound,
                      census_minima=len(census_minima), matched=matched, above=above, other_representatives=others,
                      starts_in_band=int(sum(counts)), starts=census.starts, conflicts=conflicts)
    return merged, census, band


def _basin(count: int, census: Census) -> Basin:
    lo, hi = wilson_interval(int(count), census.starts, census.confidence)
    return Basin(count=int(count), fraction=count / census.starts, ci_low=lo, ci_high=hi)


def _number(value: float):
    """JSON: finite numbers as they are, +inf as "inf" (no limit), -inf as null (nothing proven)."""
    if np.isfinite(value):
        return float(value)
    return "inf" if value > 0 else None
