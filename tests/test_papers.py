"""models/papers: every instance loads, its construction is what the paper says, and certify
reproduces the phenomenon documented in models/papers/README.md.

Truths computed here: least-squares fits (numpy), hand-written forward passes, the data's own
linear fittability.  The global gaps of the larger instances are in the slow test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from milpland import load_spec
from milpland.instance.params_io import load_params
from milpland.points.certify import certify_point
from milpland.points.constructions import (
    embed,
    he_deep,
    liu_groups,
    valley,
    yun_step1,
    yun_step2,
)

PAPERS = Path(__file__).resolve().parent.parent / "models" / "papers"
SPECS = sorted(PAPERS.glob("*.toml"))
YUN = ["relu-nonfittable", "leaky-nonfittable", "slightest-two-slope", "linear-control"]


def ls_risk(spec) -> float:
    Xt = np.column_stack([spec.X, np.ones(spec.n)])
    return float(np.mean((Xt @ np.linalg.lstsq(Xt, spec.y, rcond=None)[0] - spec.y) ** 2))


def slopes(spec):
    act = spec.network.activation
    return float(act.slopes[1]), float(act.slopes[0])  # s_plus, s_minus


def test_every_instance_loads_and_is_documented():
    readme = (PAPERS / "README.md").read_text()
    assert len(SPECS) == 8
    for path in SPECS:
        spec = load_spec(path)
        assert spec.n <= 10 and max(spec.network.hidden) <= 3
        assert f"`{path.name}`" in readme, path.name


@pytest.mark.parametrize("name", YUN)
def test_yun_step1_is_a_certified_local_min(name):
    spec = load_spec(PAPERS / f"{name}.toml")
    sp, sm = slopes(spec)
    s1 = yun_step1(spec.X, spec.y, sp, sm, spec.width)
    cert = certify_point(spec, s1.params, run_global=False)
    assert cert.verdict == "local_min"
    assert cert.risk == pytest.approx(ls_risk(spec), rel=1e-9, abs=1e-25)
    fittable = ls_risk(spec) < 1e-20
    assert fittable == (name == "linear-control")
    s2 = yun_step2(spec.X, spec.y, sp, sm, spec.width)
    if fittable:
        assert s2.details["improvement"] == 0.0
    else:
        assert s2.details["improvement"] > 0
        assert certify_point(spec, s2.params, run_global=False).verdict == "not_stationary"


def test_he_deep_and_valley_points():
    spec = load_spec(PAPERS / "deep-relu-2x2.toml")
    c = he_deep(spec.X, spec.y, spec.network.activation, list(spec.network.hidden))
    cert = certify_point(spec, c.params, run_global=False, gd_starts=0)
    assert cert.verdict == "local_min" and cert.certificate == "group_lsq"
    assert cert.risk == pytest.approx(ls_risk(spec), rel=1e-10)
    for t in (0.5, 3.0):
        p = valley(c.params, spec.X, spec.network.activation, t)
        cv = certify_point(spec, p, run_global=False, gd_starts=0)
        assert cv.verdict == "local_min" and cv.cell == cert.cell and abs(cv.risk - cert.risk) <= 1e-12


def test_liu_groups_file():
    spec = load_spec(PAPERS / "liu-groups-relu.toml")
    labels = np.array([int(v) for v in (PAPERS / "liu-groups-relu.groups").read_text().strip().split(",")])
    L = liu_groups(spec.X, spec.y, spec.network.activation, list(spec.network.hidden), labels)
    Xt = np.column_stack([spec.X, np.ones(spec.n)])
    sse = 0.0
    for g in np.unique(labels):
        idx = labels == g
        coef = np.linalg.lstsq(Xt[idx], spec.y[idx], rcond=None)[0]
        sse += float(np.sum((Xt[idx] @ coef - spec.y[idx]) ** 2))
    cert = certify_point(spec, L.params, run_global=False)
    assert cert.verdict == "local_min" and cert.certificate == "interior"
    assert cert.risk == pytest.approx(sse / spec.n, rel=1e-9)


def test_escape_neuron_example_with_its_gap():
    spec = load_spec(PAPERS / "escape-neuron-relu.toml")
    narrow = load_params(PAPERS / "escape-narrow.json", d=1, hidden=[1], outputs=1)
    split = embed(narrow, "split", unit=0, lam=0.3).params
    zero = embed(narrow, "zero", weights=narrow.W[0][0], bias=float(narrow.b[0][0])).params
    cs = certify_point(spec, split)
    assert cs.verdict == "local_min" and cs.certificate == "boundary"
    assert cs.global_certified and cs.gap > 0
    cz = certify_point(spec, zero, run_global=False)
    assert cz.verdict == "saddle" and cz.descent_path.descends
    f = lambda p: (np.maximum(spec.X @ p.W[0].T + p.b[0], 0) @ p.W[1].T + p.b[1])[:, 0]  # noqa: E731
    start = float(np.mean((f(zero) - spec.y) ** 2))
    assert all(float(np.mean((f(q) - spec.y) ** 2)) < start for q in cz.descent_path.params)


@pytest.mark.slow
@pytest.mark.parametrize("name", YUN)
def test_readme_gaps(name):
    """The README's gap figures: step 1's gap is > 0 and >= step 2's improvement (0 for the control)."""
    spec = load_spec(PAPERS / f"{name}.toml")
    sp, sm = slopes(spec)
    s1 = yun_step1(spec.X, spec.y, sp, sm, spec.width)
    s2 = yun_step2(spec.X, spec.y, sp, sm, spec.width)
    cert = certify_point(spec, s1.params)
    assert cert.global_status == "optimal" and cert.point_in_box
    if name == "linear-control":
        assert abs(cert.gap) <= 1e-12
    else:
        assert cert.gap > 0 and cert.gap >= s2.details["improvement"]
    readme = (PAPERS / "README.md").read_text()
    row = next(line for line in readme.splitlines() if f"`{name}.toml`" in line)
    figures = [float(v) for v in re.findall(r"gap (\d\.\d+)", row)]
    if figures:
        assert cert.gap == pytest.approx(figures[0], abs=1e-3)


@pytest.mark.slow
def test_readme_deep_gap_bound():
    spec = load_spec(PAPERS / "deep-relu-2x2.toml")
    c = he_deep(spec.X, spec.y, spec.network.activation, list(spec.network.hidden))
    cert = certify_point(spec, c.params)
    assert cert.gap_lower_bound > 0.2
    # the README's figure: the two-layer solve certifies a fit (risk 0 to tolerance), so the gap is exact
    assert cert.global_certified and cert.gap == pytest.approx(0.2719680822, abs=1e-6)
    assert json.dumps(cert.to_json(), allow_nan=False)


@pytest.mark.slow
def test_readme_deep_tent_gap():
    spec = load_spec(PAPERS / "deep-tent-relu-2x2.toml")
    c = he_deep(spec.X, spec.y, spec.network.activation, list(spec.network.hidden))
    cert = certify_point(spec, c.params)
    assert cert.global_certified and cert.gap == pytest.approx(0.4, abs=1e-9)
