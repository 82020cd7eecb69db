"""`landscape --method enumerate` stopped early (time limit or Ctrl-C) keeps what it has proven.

A stop is injected after a chosen number of stop checks (the run checks between chunks of cells
and between certificates), so every phase is hit deterministically:

- stopped while the cells are solved: nothing listed, nothing proven below (``proven_below`` is
  -inf), the global point is an upper bound only (not certified) and not below the brute-force
  global minimum of tests/bruteforce.py (shares no code with milpland's search);
- stopped in the certification walk: the listed minima are exactly the complete enumeration's
  minima with risk below ``proven_below``, and the global minimum is certified and equals the
  brute-force one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from bruteforce import brute_force_global

from milpland import spec_from_dict
from milpland.cli import main
from milpland.landscape import enumeration
from milpland.landscape.listing import landscape


def spec_of(seed: int, *, d: int, n: int, width: int, activation: str = "relu"):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    y = rng.normal(size=n)
    net = {"hidden": [width], "activation": activation} | ({"alpha": 0.2} if activation == "leaky_relu" else {})
    return spec_from_dict({"name": f"stop-{seed}", "data": {"x": X.tolist(), "y": y.tolist()}, "network": net,
                           "box": {"weight": 100.0}, "solve": {"time_limit": 600.0}})


WALK = enumeration._Certification.run  # the walk itself, before any test wraps it
CASES = [dict(seed=0, d=1, n=9, width=3), dict(seed=1, d=2, n=7, width=2),
         dict(seed=2, d=1, n=8, width=3, activation="leaky_relu")]


def stop_after(monkeypatch, checks: int, reason: str = "interrupted") -> None:
    """Make the run's stop test answer ``reason`` from its ``checks``-th call on."""
    calls = [0]

    def stop(self) -> bool:
        calls[0] += 1
        if calls[0] >= checks and not self.reason:
            self.reason = reason
        return bool(self.reason)

    monkeypatch.setattr(enumeration._Stop, "__call__", stop)
    monkeypatch.setattr(enumeration, "SOLVE_CHUNK", 40)


def stop_in_walk(monkeypatch, checks: int, reason: str = "interrupted") -> None:
    """Stop the certification walk at its ``checks``-th stop test (every cell solved by then)."""
    def run(self, say, stop):
        calls = [0]

        def counted() -> bool:
            calls[0] += 1
            if calls[0] >= checks and not stop.reason:
                stop.reason = reason
            return bool(stop.reason)

        return WALK(self, say, counted)

    monkeypatch.setattr(enumeration._Certification, "run", run)
    monkeypatch.setattr(enumeration, "CERTIFY_CHUNK", 25)


@pytest.fixture(scope="module", params=range(len(CASES)))
def reference(request):
    spec = spec_of(**CASES[request.param])
    full = landscape(spec, method="enumerate")
    assert full.complete
    brute = brute_force_global(spec.X, spec.y, spec.network.activation, spec.loss, spec.box.weight,
                               spec.box.output, width=spec.width)
    return spec, full, brute.risk


def test_stopped_in_the_certification_lists_every_minimum_below_its_bound(reference, monkeypatch):
    spec, full, brute_risk = reference
    seen_partial = 0
    for checks in (1, 3, 10, 40):
        stop_in_walk(monkeypatch, checks)
        out = landscape(spec, method="enumerate")
        if out.complete:  # the walk ended before the stop
            continue
        seen_partial += 1
        below = out.proven_below
        assert np.isfinite(below) and out.open_bound == below
        assert out.global_result.certified == full.global_result.certified  # False only with the box active
        assert out.global_result.lower_bound == pytest.approx(full.global_result.lower_bound, rel=1e-9, abs=1e-12)
        assert out.global_risk == pytest.approx(brute_risk, rel=1e-6, abs=1e-9)
        expected = sorted(m.risk for m in full.minima if m.risk < below)
        got = sorted(m.risk for m in out.minima)
        assert len(got) >= len(expected)
        assert np.allclose(got[: len(expected)], expected, rtol=1e-9, atol=1e-12)
        assert all(m.risk >= below * (1 - 1e-9) for m in out.minima[len(expected):])
        assert "stopped by the Ctrl-C in the certification" in out.message
    assert seen_partial >= 2


def test_stopped_while_solving_proves_nothing_below_and_keeps_an_upper_bound(reference, monkeypatch):
    spec, full, brute_risk = reference
    stop_after(monkeypatch, 2)  # after the first chunk of cells
    enum = enumeration.enumerate_minima(spec, max_cells=10**6)
    assert enum.stopped == "interrupted" and not enum.complete and enum.counts["cells_unsolved"] > 0
    assert enum.minima == [] and enum.open_bound == float("-inf")
    stop_after(monkeypatch, 2)
    out = landscape(spec, method="enumerate")
    assert out.minima == [] and out.proven_below == float("-inf") and not out.complete
    assert out.global_result.status == "interrupted" and not out.global_result.certified
    assert out.global_risk >= brute_risk * (1 - 1e-9) - 1e-12


def test_the_command_reports_a_time_limit_stop_in_the_certification(tmp_path, capsys, monkeypatch):
    """End to end: a time-limit stop in the walk exits 0 and the JSON says what is proven."""
    spec = spec_of(**CASES[0])
    path = tmp_path / "s.toml"
    path.write_text(f'name = "s"\n[data]\nx = {spec.X[:, 0].tolist()}\ny = {spec.y.tolist()}\n'
                    '[network]\nhidden = [3]\n[box]\nweight = 100.0\n')
    full = landscape(spec, method="enumerate")
    stop_in_walk(monkeypatch, 4, reason="time_limit")
    assert main(["landscape", str(path), "--method", "enumerate", "--format", "json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["complete"] is False and obj["status"] == "done"
    assert obj["global"]["certified"] == full.global_result.certified and obj["global_risk"] == pytest.approx(full.global_risk, rel=1e-9)
    assert "stopped by the time limit in the certification" in obj["message"]
    listed = sorted(m["risk"] for m in obj["minima"])
    expected = sorted(m.risk for m in full.minima if m.risk < obj["proven_below"])
    assert np.allclose(listed[: len(expected)], expected, rtol=1e-9)
