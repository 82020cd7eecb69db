"""Local-minimum certificates checked against independent truths.

- Every certified local minimum of several tiny instances survives random perturbations of its
  ORIGINAL-space weights (radii 1e-6 ... 1e-3, many directions), evaluated with the test
  suite's own CPWL forward pass (bruteforce.forward): the risk never drops by more than 1e-9
  (relative).
- Hand-derived cells: a boundary optimum whose neighbouring cell is strictly better (rejected,
  and a plain numpy step confirms the descent), a boundary optimum that is a minimum, an
  interior optimum with its closed-form risk and valley dimension, a box-limited optimum, and
  the tent data's constant fit, a spurious minimum whose units sit exactly on samples.
"""

import numpy as np
import pytest
from bruteforce import forward

from milpland import spec_from_dict
from milpland.cells.certificates import Certifier, null_dim
from milpland.cells.problem import Cell
from milpland.instance.network import OneHiddenParams
from milpland.landscape.enumeration import enumerate_minima

RADII = (1e-6, 1e-5, 1e-4, 1e-3)


def make_spec(x, y, *, activation="relu", width=2, loss="squared", output_bias=True, box=10.0, **net):
    x = np.asarray(x, dtype=float)
    data_x = x.tolist() if x.ndim == 1 else [list(r) for r in x]
    return spec_from_dict({
        "name": "t", "data": {"x": data_x, "y": list(map(float, y))},
        "network": {"hidden": [width], "activation": activation, "output_bias": output_bias, **net},
        "loss": {"kind": loss}, "box": {"weight": box},
    })


def risk(spec, params):
    return spec.loss.risk(forward(params, spec.X, spec.network.activation), spec.y)


def worst_relative_drop(spec, params, *, directions=150, seed=0):
    """max over radii and random unit directions of (R(theta) - R(theta + r u)) / R(theta)."""
    rng = np.random.default_rng(seed)
    m, d = params.W1.shape
    base = risk(spec, params)
    vec = np.concatenate([params.W1.ravel(), params.b1, params.v, [params.c]])
    worst = -np.inf
    for r in RADII:
        for _ in range(directions):
            u = rng.normal(size=vec.shape)
            if not spec.network.output_bias:
                u[-1] = 0.0
            z = vec + r * u / np.linalg.norm(u)
            p = OneHiddenParams(z[: m * d].reshape(m, d), z[m * d: m * d + m], z[m * d + m: m * d + 2 * m],
                                float(z[-1]))
            worst = max(worst, (base - risk(spec, p)) / max(abs(base), 1e-300))
    return worst


X1 = np.linspace(-1, 1, 5)
X2 = np.array([[-0.9, -0.2], [0.1, 0.8], [0.7, -0.5], [-0.3, 0.4]])
INSTANCES = {
    "relu-sq-d1": lambda: make_spec(X1, [0.3, -0.5, 0.9, 0.1, 0.6]),
    "leaky-abs-d1": lambda: make_spec(X1, [0.3, -0.5, 0.9, 0.1, 0.6], activation="leaky_relu", alpha=0.1,
                                      loss="absolute"),
    "relu-sq-d2": lambda: make_spec(X2, [0.5, -0.4, 1.0, 0.2]),
    "hardtanh-sq-d1": lambda: make_spec(X1[:4], [0.3, -0.5, 0.9, 0.1], activation="hardtanh"),
    "relu-nobias-w3": lambda: make_spec(X1[:4], [0.2, 0.9, -0.3, 0.4], width=3, output_bias=False),
}


@pytest.fixture(scope="module", params=sorted(INSTANCES))
def enumerated(request):
    spec = INSTANCES[request.param]()
    return spec, enumerate_minima(spec, max_cells=5000)


def test_every_certified_minimum_survives_perturbations(enumerated):
    spec, out = enumerated
    assert out.complete
    assert out.minima
    for m in out.minima:
        assert abs(risk(spec, m.params) - m.risk) <= 1e-9 * max(1.0, m.risk)  # the record's risk is real
        assert worst_relative_drop(spec, m.params) <= 1e-9, (m.risk, m.certificate, m.cell)


def test_interior_minima_have_positive_margin(enumerated):
    _, out = enumerated
    for m in out.minima:
        assert (m.margin > 0) == (m.certificate == "interior")


# --- hand-derived cells ------------------------------------------------------------------------


def test_boundary_optimum_with_a_better_neighbour_is_rejected():
    """x = (0, 1, 2), y = (1, 1, 2), f = relu(u x + a), no output bias.  Cell 'inactive at 0':
    a <= 0, f = (0, u + a, 2u + a): the optimum fits samples 1, 2 exactly, u = 1, a = 0, risk 1/3,
    on the wall a = 0.  Across it (all active) the least-squares line has risk 1/18."""
    spec = make_spec([0.0, 1.0, 2.0], [1.0, 1.0, 2.0], width=1, output_bias=False)
    cert = Certifier(spec)
    verdict = cert.certify(Cell(np.array([[0], [1], [1]]), np.array([1.0])), found_by="enumerate")
    assert verdict.status == "not_local_minimum"
    assert verdict.risk == pytest.approx(1 / 3, rel=1e-9)
    assert verdict.better_risk == pytest.approx(1 / 18, rel=1e-7)
    # independent confirmation: raising the bias of w = 1, b = 0, v = 1 lowers the risk
    point = OneHiddenParams(np.array([[1.0]]), np.array([0.0]), np.array([1.0]), 0.0)
    moved = OneHiddenParams(np.array([[1.0]]), np.array([1e-4]), np.array([1.0]), 0.0)
    assert risk(spec, point) == pytest.approx(1 / 3, rel=1e-12)
    assert risk(spec, moved) < risk(spec, point) - 1e-5


def test_boundary_optimum_that_is_a_minimum():
    """Same cell with y = (0, 1, 2): u = 1, a = 0 fits exactly (risk 0) on the wall a = 0;
    the valley is the point itself: rank [Phi; wall] = 2 = number of parameters."""
    spec = make_spec([0.0, 1.0, 2.0], [0.0, 1.0, 2.0], width=1, output_bias=False)
    verdict = Certifier(spec).certify(Cell(np.array([[0], [1], [1]]), np.array([1.0])), found_by="enumerate")
    assert verdict.status == "local_minimum"
    assert verdict.minimum.certificate == "boundary"
    assert verdict.minimum.risk == pytest.approx(0.0, abs=1e-20)
    assert verdict.minimum.valley_dim == 0


def test_interior_optimum_closed_form():
    """All samples active: f = c + u x + a, the least-squares line through (0,0), (1,1), (2,3):
    slope 3/2, intercept -1/6, residuals (1/6, -1/3, 1/6): risk 1/18; c + a is one direction
    (valley dimension 3 - rank [x, 1, 1] = 1) and a large a keeps every sample strictly active."""
    spec = make_spec([0.0, 1.0, 2.0], [0.0, 1.0, 3.0], width=1)
    verdict = Certifier(spec).certify(Cell(np.array([[1], [1], [1]]), np.array([1.0])), found_by="sample")
    m = verdict.minimum
    assert verdict.status == "local_minimum" and m.certificate == "interior" and m.found_by == "sample"
    assert m.risk == pytest.approx(1 / 18, rel=1e-9)
    assert m.valley_dim == 1
    assert m.margin > 0.1
    assert np.allclose(m.fitted, [-1 / 6, 4 / 3, 17 / 6], atol=1e-9)
    assert null_dim(np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])) == 1


def test_box_limited_optimum_is_not_a_local_minimum():
    """x = (0, 1), y = (0, 10) and |u~|, |a~| <= 0.5: the best the cell can do is f_1 = u + a with
    a <= 0, i.e. u = 0.5 on the box."""
    spec = make_spec([0.0, 1.0], [0.0, 10.0], width=1, output_bias=False, box=0.5)
    verdict = Certifier(spec).certify(Cell(np.array([[0], [1]]), np.array([1.0])), found_by="enumerate")
    assert verdict.status == "box_limited"
    assert verdict.minimum is None


def test_tent_constant_fit_is_a_spurious_boundary_minimum():
    """x = 0..3, y = (0, 1, 0, 1), two ReLU units: a negative unit active only at x = 3 and a
    positive one active only at x = 0 cannot help (wrong signs), so the best point of this cell
    is the constant 1/2 (risk 1/4) with both kinks on samples; small moves cannot flip a
    non-zero unit's sign, so it is a local minimum although the global minimum is 1/8."""
    spec = make_spec([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 0.0, 1.0])
    cert = Certifier(spec)
    verdict = cert.certify(Cell(np.array([[0, 1], [0, 0], [0, 0], [1, 0]]), np.array([-1.0, 1.0])),
                           found_by="enumerate")
    assert verdict.status == "local_minimum"
    assert verdict.minimum.certificate == "boundary"
    assert verdict.minimum.risk == pytest.approx(0.25, rel=1e-12)
    assert np.allclose(verdict.minimum.fitted, 0.5, atol=1e-9)
    assert worst_relative_drop(spec, verdict.minimum.params) <= 1e-9
    # certify_params maps ordinary weights to their cell and certifies its optimum
    again = cert.certify_params(verdict.minimum.params, found_by="sample")
    assert again.status == "local_minimum" and again.minimum.risk == pytest.approx(0.25, rel=1e-12)
