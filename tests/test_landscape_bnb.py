"""`landscape --method bnb`: every local minimum below a threshold, against independent truths.

- On random tiny instances (1-D and 2-D inputs, ReLU and leaky ReLU, the three losses, widths
  1-3) the complete enumeration of all cells is the reference list: ``risk_max`` above the worst
  level lists exactly its minima (same fitted values; for the absolute and hinge losses, whose
  cell optima are faces, the same risk levels), ``gap_max`` exactly those within G of the
  global minimum, ``levels`` the K lowest levels.  The listing's global minimum equals the
  brute-force global minimum of tests/bruteforce.py (shares no code with milpland's search).
- Every listed minimum survives random perturbations (no point nearby is lower).
- A run stopped at a random node (KeyboardInterrupt injected into a node's relaxation) still
  lists every minimum of the enumeration with risk below its ``proven_below``.
- tent (README): global 1/8, lowest spurious level 1/6, both hand-derived there: gap 1/24, proven.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from bruteforce import brute_force_global, forward

from milpland import spec_from_dict
from milpland.cli import main
from milpland.errors import MilplandError
from milpland.instance.network import OneHiddenParams
from milpland.landscape.bnb import Query
from milpland.landscape.listing import landscape
from milpland.search import pattern_bnb


def tiny_spec(seed: int, *, d: int, n: int, width: int, activation: str, loss: str):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    y = np.sign(rng.normal(size=n)) if loss == "hinge" else rng.normal(size=n)
    if loss == "hinge":
        y[0], y[1] = 1.0, -1.0
    net = {"hidden": [width], "activation": activation}
    if activation == "leaky_relu":
        net["alpha"] = 0.2
    return spec_from_dict({
        "name": f"tiny-{seed}", "data": {"x": X.tolist(), "y": y.tolist()}, "network": net,
        "loss": {"kind": loss}, "box": {"weight": 10.0}, "solve": {"time_limit": 60.0},
    })


CASES = [
    dict(seed=0, d=1, n=6, width=2, activation="relu", loss="squared"),
    dict(seed=1, d=1, n=5, width=3, activation="relu", loss="squared"),
    dict(seed=2, d=1, n=6, width=2, activation="leaky_relu", loss="squared"),
    dict(seed=3, d=2, n=5, width=2, activation="relu", loss="squared"),
    dict(seed=4, d=2, n=5, width=2, activation="leaky_relu", loss="squared"),
    dict(seed=5, d=1, n=5, width=2, activation="relu", loss="absolute"),
    dict(seed=6, d=2, n=5, width=2, activation="relu", loss="absolute"),
    dict(seed=7, d=1, n=6, width=2, activation="relu", loss="hinge"),
    dict(seed=8, d=1, n=5, width=1, activation="relu", loss="squared"),
]


def case_id(case):
    return f"{case['activation']}-{case['loss']}-d{case['d']}-w{case['width']}-s{case['seed']}"


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def reference(request):
    spec = tiny_spec(**request.param)
    enum = landscape(spec, method="enumerate")
    assert enum.complete
    return spec, enum


def same_fits(listed, expected, spec) -> bool:
    """The two lists hold the same minima.  Squared loss: a cell optimum's fitted values are unique,
    so equal size and every fitted vector matched.  Absolute and hinge losses: a cell's optimal face
    may hold many fits, and the two methods may pick other representatives (another unit order),
    so the same distinct risk levels."""
    if spec.loss.kind != "squared":
        tol = 1e-9 * (1 + max([abs(m.risk) for m in expected], default=0.0))
        return np.allclose(levels_of(listed, tol), levels_of(expected, tol), rtol=0, atol=10 * tol) \
            if len(levels_of(listed, tol)) == len(levels_of(expected, tol)) else False
    tol = 1e-6 * (1 + np.max(np.abs(spec.y)))
    if len(listed) != len(expected):
        return False
    return all(min(np.max(np.abs(m.fitted - e.fitted)) for m in listed) <= tol for e in expected)


def levels_of(minima, tol):
    out = []
    for r in sorted(m.risk for m in minima):
        if not out or r > out[-1] + tol:
            out.append(r)
    return out


def test_risk_max_above_the_worst_level_lists_the_enumeration(reference):
    spec, enum = reference
    worst = max(m.risk for m in enum.minima)
    out = landscape(spec, method="bnb", risk_max=worst + 0.1)
    assert out.complete and out.method == "bnb"
    assert same_fits(out.minima, enum.minima, spec)
    brute = brute_force_global(spec.X, spec.y, spec.network.activation, spec.loss, spec.box.weight,
                               spec.box.output, width=spec.width)
    assert out.global_risk == pytest.approx(brute.risk, rel=1e-6, abs=1e-9)


def test_gap_max_lists_the_band(reference):
    spec, enum = reference
    G = 0.5 * max(enum.global_risk, 1e-3)
    out = landscape(spec, method="bnb", gap_max=G)
    assert out.complete
    band = [m for m in enum.minima if m.risk <= enum.global_risk + G]
    assert same_fits(out.minima, band, spec)


@pytest.mark.parametrize("K", [1, 2, 4])
def test_levels_lists_the_lowest_levels(reference, K):
    spec, enum = reference
    levels = levels_of(enum.minima, enum.tolerance)
    top = levels[min(K, len(levels)) - 1]
    out = landscape(spec, method="bnb", levels=K)
    assert out.complete
    assert same_fits(out.minima, [m for m in enum.minima if m.risk <= top + enum.tolerance], spec)
    assert len(levels_of(out.minima, enum.tolerance)) == min(K, len(levels))


def test_enumerate_with_a_query_lists_the_band_of_the_full_enumeration(reference):
    """The enumeration solves every cell and certifies those below the threshold: the same minima as
    the full list cut at the threshold (gap_max, risk_max, levels)."""
    spec, enum = reference
    G = 0.5 * max(enum.global_risk, 1e-3)
    out = landscape(spec, method="enumerate", gap_max=G)
    assert out.complete and out.method == "enumerate" and out.threshold == pytest.approx(enum.global_risk + G)
    assert out.proven_below == out.threshold
    assert same_fits(out.minima, [m for m in enum.minima if m.risk <= enum.global_risk + G], spec)
    worst = max(m.risk for m in enum.minima)
    assert same_fits(landscape(spec, method="enumerate", risk_max=worst + 0.1).minima, enum.minima, spec)
    levels = levels_of(enum.minima, enum.tolerance)
    for K in (1, 2):
        top = levels[min(K, len(levels)) - 1]
        out = landscape(spec, method="enumerate", levels=K)
        assert out.complete
        assert same_fits(out.minima, [m for m in enum.minima if m.risk <= top + enum.tolerance], spec)


def test_cells_left_at_a_bound_lie_above_the_threshold():
    """With a fixed threshold, cells whose first Lagrangian bound exceeds it are not refined
    (`cell_qp.ABOVE`); their optimum, solved and verified by the full enumeration, is above T and above
    that bound, and the band is the full list cut at T."""
    from milpland.landscape.collect import Query
    from milpland.landscape.enumeration import enumerate_minima

    spec = tiny_spec(seed=11, d=1, n=9, width=3, activation="relu", loss="squared")
    full = enumerate_minima(spec, max_cells=10**6)
    band = enumerate_minima(spec, max_cells=10**6, query=Query(gap_rel=0.2))
    above = band.store.above
    assert full.complete and band.complete and above.sum() > 100
    assert full.store.verified[above].all()
    assert np.all(full.store.risk[above] > band.threshold)
    assert np.all(band.store.lower[above] <= full.store.risk[above] * (1 + 1e-12))
    assert band.counts["cells_bounded_above"] == above.sum()
    assert same_fits(band.minima, [m for m in full.minima if m.risk <= band.threshold], spec)


def test_enumeration_in_two_threads_lists_what_one_lists():
    spec = tiny_spec(seed=11, d=1, n=9, width=3, activation="relu", loss="squared")
    one = landscape(spec, method="enumerate")
    two = landscape(spec, method="enumerate", jobs=2)
    assert one.complete and two.complete and len(one.minima) > 3
    assert same_fits(two.minima, one.minima, spec)
    assert two.counts["cells"] == one.counts["cells"]


@pytest.mark.parametrize("lower_above_threshold", [False, True])
def test_an_unverified_cell_above_the_cut_keeps_the_band_incomplete_unless_its_bound_clears_it(
        monkeypatch, lower_above_threshold):
    """A cell past the threshold whose optimum was not verified may still hold a minimum below T,
    unless its lower bound lies above T."""
    from milpland.landscape import enumeration

    spec = tiny_spec(**CASES[1])
    original = enumeration._Certification.run

    def run_with_one_unverified_cell(self, say, *stop):
        st = self.store
        k = int(np.argmax(np.where(np.isfinite(st.risk), st.risk, -np.inf)))
        st.verified[k] = False
        st.lower[k] = 1e9 if lower_above_threshold else -np.inf
        return original(self, say, *stop)

    monkeypatch.setattr(enumeration._Certification, "run", run_with_one_unverified_cell)
    out = landscape(spec, method="enumerate", gap_max=1e-3)
    assert out.complete is lower_above_threshold
    assert out.counts["cell_errors"] == (0 if lower_above_threshold else 1)


def worst_relative_drop(spec, params: OneHiddenParams, *, radii=(1e-6, 1e-4), directions=60, seed=0) -> float:
    rng = np.random.default_rng(seed)
    m, d = params.W1.shape
    act = spec.network.activation
    base = spec.loss.risk(forward(params, spec.X, act), spec.y)
    vec = np.concatenate([params.W1.ravel(), params.b1, params.v, [params.c]])
    worst = -np.inf
    for r in radii:
        for _ in range(directions):
            u = rng.normal(size=vec.shape)
            z = vec + r * u / np.linalg.norm(u)
            p = OneHiddenParams(z[:m * d].reshape(m, d), z[m * d:m * d + m], z[m * d + m:m * d + 2 * m], float(z[-1]))
            worst = max(worst, (base - spec.loss.risk(forward(p, spec.X, act), spec.y)) / max(abs(base), 1e-300))
    return worst


def test_listed_minima_survive_perturbations():
    spec = tiny_spec(**CASES[1])
    out = landscape(spec, method="bnb", levels=3)
    assert out.minima
    for m in out.minima:
        assert worst_relative_drop(spec, m.params) <= 1e-7


@pytest.mark.parametrize("stop_after", [3, 17, 41])
def test_an_interrupted_run_lists_every_minimum_below_its_proven_bound(monkeypatch, stop_after):
    spec = tiny_spec(**CASES[0])
    enum = landscape(spec, method="enumerate")
    calls = {"n": 0}
    original = pattern_bnb.HullRelaxation.evaluate

    def evaluate(self, node):
        calls["n"] += 1
        if calls["n"] == stop_after:
            raise KeyboardInterrupt
        return original(self, node)

    monkeypatch.setattr(pattern_bnb.HullRelaxation, "evaluate", evaluate)
    out = landscape(spec, method="bnb", risk_max=10.0)
    below = out.proven_below
    assert not out.complete and below < 10.0
    expected = [m for m in enum.minima if m.risk < below]
    listed = [m for m in out.minima if m.risk < below]
    assert same_fits(listed, expected, spec)


@pytest.mark.parametrize("stop_at_check", [1, 3])
def test_a_run_stopped_by_the_memory_limit_lists_every_minimum_below_its_proven_bound(monkeypatch, stop_at_check):
    spec = tiny_spec(**CASES[0])
    enum = landscape(spec, method="enumerate")
    checks = {"n": 0}

    def resident_bytes():  # the process "grows" past any limit at the given check
        checks["n"] += 1
        return 1e30 if checks["n"] >= stop_at_check else 0.0

    monkeypatch.setattr(pattern_bnb, "MEMORY_CHECK_EVERY", 2)
    monkeypatch.setattr(pattern_bnb.memory, "resident_bytes", resident_bytes)
    out = landscape(spec, method="bnb", risk_max=10.0)
    assert checks["n"] >= stop_at_check
    assert not out.complete and out.proven_below < 10.0
    assert "memory limit" in out.message
    expected = [m for m in enum.minima if m.risk < out.proven_below]
    assert same_fits([m for m in out.minima if m.risk < out.proven_below], expected, spec)


def test_tent_spurious_gap_is_one_24th_and_proven(tmp_path, capsys):
    spec_file = tmp_path / "tent.toml"
    spec_file.write_text('name = "tent"\n[data]\nx = [0.0, 1.0, 2.0, 3.0]\ny = [0.0, 1.0, 0.0, 1.0]\n'
                         '[network]\nhidden = [2]\n[box]\nweight = 10.0\n')
    assert main(["landscape", str(spec_file), "--method", "bnb", "--levels", "2", "--format", "json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    head = obj["spurious_gap"]
    assert head["global_risk"] == pytest.approx(1 / 8, rel=1e-9)
    assert head["lowest_spurious_risk"] == pytest.approx(1 / 6, rel=1e-9)
    assert head["gap"] == pytest.approx(1 / 24, rel=1e-7) and head["proven"]
    assert obj["complete"] and obj["method"] == "bnb"
    assert main(["landscape", str(spec_file), "--method", "bnb", "--levels", "2"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("spurious gap") and "proven" in first


def test_auto_enumerates_small_instances_and_lists_large_ones_by_bnb():
    spec = tiny_spec(**CASES[0])
    assert landscape(spec, method="auto").method == "enumerate"
    out = landscape(spec, method="auto", max_cells=5)
    assert out.method == "bnb" and out.requested == "auto" and "bnb" in out.message


def test_queries_are_checked(tmp_path, capsys):
    with pytest.raises(MilplandError, match="exactly one"):
        Query(risk_max=1.0, levels=2)
    with pytest.raises(MilplandError, match="--levels"):
        Query(levels=0)
    spec_file = tmp_path / "t.toml"
    spec_file.write_text('name = "t"\n[data]\nx = [0.0, 1.0, 2.0]\ny = [0.0, 1.0, 0.0]\n[network]\nhidden = [1]\n')
    assert main(["landscape", str(spec_file), "--method", "sample", "--levels", "2"]) == 2
    assert "only for --method bnb, enumerate or auto" in capsys.readouterr().err
    assert main(["landscape", str(spec_file), "--method", "bnb", "--gap-max", "-1"]) == 2
    assert "--gap-max" in capsys.readouterr().err


def test_batch_landscape_rows_carry_the_spurious_gap():
    """The landscape task (auto: tent enumerates completely) puts the headline into both tables."""
    from milpland.runs.batch import landscape_task

    spec = spec_from_dict({"name": "tent", "data": {"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0, 1.0]},
                           "network": {"hidden": [2]}, "box": {"weight": 10.0}})
    rows = landscape_task(spec, {})
    solve, minima = rows["solves"][0], rows["minima"]
    assert solve["landscape_method"] == "enumerate" and solve["landscape_complete"]
    assert solve["spurious_gap"] == pytest.approx(1 / 24, rel=1e-7) and solve["spurious_gap_proven"]
    assert all(r["spurious_gap"] == pytest.approx(1 / 24, rel=1e-7) for r in minima)


def test_gap_rel_is_a_band_relative_to_the_global_minimum(reference):
    spec, enum = reference
    if enum.global_risk <= enum.tolerance:
        pytest.skip("the global risk is zero (interpolation): a relative band around it is empty")
    out = landscape(spec, method="bnb", gap_rel=0.5)
    assert out.complete and out.threshold == pytest.approx(1.5 * enum.global_risk, rel=1e-6)
    assert same_fits(out.minima, [m for m in enum.minima if m.risk <= 1.5 * enum.global_risk], spec)


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[5], CASES[7]], ids=case_id)
def test_listings_of_the_sign_classes_together_are_the_enumeration(case):
    """The split of --jobs: each sign class listed on its own (in this process), merged."""
    from milpland.landscape.bnb import Query, leaf_run, merge_minima
    from milpland.search.solve import sign_class_order

    spec = tiny_spec(**case)
    enum = landscape(spec, method="enumerate")
    band = Query(risk_max=max(m.risk for m in enum.minima) + 0.1)
    runs = [leaf_run(spec, band, classes=(k,)) for k in sign_class_order(spec)]
    assert all(np.isinf(run.open_bound) for run in runs)  # every class's tree exhausted
    assert same_fits(merge_minima(spec, [m for run in runs for m in run.minima]), enum.minima, spec)


@pytest.mark.parametrize("case", [CASES[1], CASES[6]], ids=case_id)
def test_two_processes_list_what_one_lists(case):
    spec = tiny_spec(**case)
    enum = landscape(spec, method="enumerate")
    if enum.global_risk <= enum.tolerance:
        worst = max(m.risk for m in enum.minima)
        out, query = landscape(spec, method="bnb", risk_max=worst + 0.1, jobs=2), worst + 0.1
    else:
        out, query = landscape(spec, method="bnb", gap_rel=0.5, jobs=2), 1.5 * enum.global_risk
    assert out.complete and "--jobs 2" in out.message
    assert same_fits(out.minima, [m for m in enum.minima if m.risk <= query * (1 + 1e-9)], spec)
    assert out.global_risk == pytest.approx(enum.global_risk, rel=1e-7, abs=1e-12)


def test_levels_with_jobs_run_in_one_process_and_say_so():
    spec = tiny_spec(**CASES[0])
    out = landscape(spec, method="bnb", levels=2, jobs=2)
    assert out.complete and "one process" in out.message
    assert len(landscape(spec, method="bnb", levels=2).minima) == len(out.minima)
    with pytest.raises(MilplandError, match="--jobs"):
        landscape(spec, method="bnb", levels=2, jobs=0)


def process_start_seconds() -> float:
    """Wall seconds to start a Python process that imports the listing, under the machine's current load."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import milpland.landscape.bnb"], check=True)
    return time.perf_counter() - started


def test_two_processes_honour_the_time_limit_and_keep_a_valid_open_bound():
    """A band far from done at its limit: the classes share one deadline (a class reached after it
    is not searched, and proves nothing); the run returns within the limit plus the usual slack."""
    spec = spec_from_dict({"name": "band", "data": {"generator": "teacher", "teacher_width": 3, "n": 40, "d": 2,
                                                    "noise": 0.1, "seed": 0},
                           "network": {"hidden": [3]}, "solve": {"time_limit": 8.0}})
    started = time.perf_counter()
    out = landscape(spec, method="bnb", gap_rel=0.5, jobs=2)
    elapsed = time.perf_counter() - started
    # + the processes' start (spawn, imports), measured now: on the shared machine it grows with the load
    assert elapsed <= 8.0 + 5.0 + 3.0 * max(1.0, process_start_seconds()), elapsed
    assert not out.complete and out.proven_below < out.threshold
    assert "stopped before the tree was exhausted" in out.message
    assert all(m.risk <= out.threshold * (1 + 1e-9) for m in out.minima)


def test_enumeration_beyond_the_memory_limit_is_refused_with_the_estimate():
    from dataclasses import replace

    from milpland.landscape.enumeration import enumeration_bytes

    spec = tiny_spec(**CASES[1])
    small = replace(spec, solve=replace(spec.solve, memory_limit=0.2))
    assert enumeration_bytes(spec, 1) > 0.2e9  # the interpreter alone is above 0.2 GB
    with pytest.raises(MilplandError, match=r"--max-cells: enumerating \d+ cells takes about .* memory_limit"):
        landscape(small, method="enumerate")


def test_bench_band_methods_list_the_enumerations_band(tmp_path):
    """bench's landscape-band (auto: the enumeration certifying only the band here) and landscape-bnb
    list exactly the full enumeration's minima up to (1 + band) x the global risk, in the same run."""
    from milpland.runs.bench import run_bench

    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 8)
    y = rng.normal(size=8)
    path = tmp_path / "tiny.toml"
    path.write_text(f'name = "tiny-band"\n[data]\nx = {x.tolist()}\ny = {y.tolist()}\n'
                    '[network]\nhidden = [2]\n[box]\nweight = 10.0\n')
    table = run_bench([str(path)], methods=["landscape-enumerate", "landscape-bnb", "landscape-band"], band=0.5)
    rows = {r["method"]: r for r in table.to_dict("records")}
    assert rows["landscape-enumerate"]["certified"]
    for method, listed_by in (("landscape-bnb", "bnb"), ("landscape-band", "enumerate")):
        row = rows[method]
        assert row["certified"] and row["matches_enumerate"] is True and row["listed_by"] == listed_by
        assert row["threshold"] == pytest.approx(1.5 * rows["landscape-enumerate"]["risk"], rel=1e-9)


def test_text_says_what_a_thresholded_enumeration_and_a_decayed_listing_claim(tmp_path, capsys):
    path = tmp_path / "t.toml"
    path.write_text('name = "t"\n[data]\nx = [0.0, 1.0, 2.0, 3.0]\ny = [0.0, 1.0, 0.0, 1.0]\n[network]\nhidden = [2]\n')
    assert main(["landscape", str(path), "--method", "enumerate", "--gap-max", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "every local minimum in the box up to the threshold: yes" in out
    assert "listing       risk <= global + 0.1: threshold" in out
    path.write_text(path.read_text() + "[loss]\nweight_decay = 0.1\n")
    assert main(["landscape", str(path)]) == 0
    out = capsys.readouterr().out
    assert "every local minimum over all weights" in out and "in the box" not in out.split("\n")[3]
