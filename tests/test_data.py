"""Data files (CSV, .npz) and the seeded generators."""

import numpy as np
import pytest

from milpland import load_spec, spec_from_dict
from milpland.errors import SpecError
from milpland.instance.data import generate, load_file


def gen(**options):
    return generate(options)


def data_error(fn, *args) -> SpecError:
    with pytest.raises(SpecError) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return info.value


# --- CSV ---------------------------------------------------------------------------------

def test_csv_with_and_without_header(tmp_path):
    (tmp_path / "h.csv").write_text("x1,x2,target\n0,1,2\n3,4,5\n")
    (tmp_path / "n.csv").write_text("0,1,2\n3,4,5\n")
    for name in ("h.csv", "n.csv"):
        X, y = load_file(tmp_path / name)
        assert X.tolist() == [[0.0, 1.0], [3.0, 4.0]] and y.tolist() == [2.0, 5.0]


def test_csv_single_row_is_a_matrix(tmp_path):
    (tmp_path / "one.csv").write_text("1.5,2.5\n")
    X, y = load_file(tmp_path / "one.csv")
    assert X.shape == (1, 1) and y.tolist() == [2.5]


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "empty"),
        ("x,y\n", "no data rows"),
        ("1\n2\n3\n", "two columns"),
        ("x,y\n1,a\n2,3\n", "not a numeric CSV"),
        ("1,2\n3\n", "not a numeric CSV"),
    ],
)
def test_bad_csv(tmp_path, text, words):
    (tmp_path / "d.csv").write_text(text)
    exc = data_error(load_file, tmp_path / "d.csv")
    assert exc.field == "data.path" and words in exc.problem


def test_csv_with_nan_is_rejected_by_the_spec(tmp_path):
    (tmp_path / "d.csv").write_text("0,1\n1,nan\n")
    (tmp_path / "s.toml").write_text('name = "s"\n[data]\npath = "d.csv"\n[network]\nhidden = [1]\n')
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "s.toml")
    assert info.value.field == "data" and "non-finite" in info.value.problem


# --- npz ---------------------------------------------------------------------------------

def test_npz(tmp_path):
    X = np.arange(6.0).reshape(3, 2)
    np.savez(tmp_path / "d.npz", X=X, y=np.array([1.0, 2.0, 3.0]))
    X2, y2 = load_file(tmp_path / "d.npz")
    assert np.array_equal(X2, X) and y2.tolist() == [1.0, 2.0, 3.0]


def test_npz_flat_x_is_a_column(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.array([0, 1, 2]), y=np.array([1, 0, 1]))
    X, y = load_file(tmp_path / "d.npz")
    assert X.shape == (3, 1) and X.dtype == float and y.dtype == float


def test_npz_mistakes(tmp_path):
    np.savez(tmp_path / "names.npz", A=np.zeros(3), y=np.zeros(3))
    exc = data_error(load_file, tmp_path / "names.npz")
    assert exc.field == "data.path" and "X and y" in exc.problem
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file")
    assert "cannot read" in data_error(load_file, tmp_path / "junk.npz").problem
    np.savez(tmp_path / "obj.npz", X=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    assert data_error(load_file, tmp_path / "obj.npz").field == "data.path"  # pickles are refused
    np.savez(tmp_path / "str.npz", X=np.array(["a", "b"]), y=np.zeros(2))
    assert "numeric" in data_error(load_file, tmp_path / "str.npz").problem


def test_npz_through_a_spec(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.array([[0.0, 1.0], [1.0, 0.0]]), y=np.array([1.0, -1.0]))
    (tmp_path / "s.toml").write_text(
        'name = "s"\n[data]\npath = "d.npz"\n[network]\nhidden = [1]\n[loss]\nkind = "hinge"\n'
    )
    spec = load_spec(tmp_path / "s.toml")
    assert (spec.n, spec.d) == (2, 2) and spec.y.tolist() == [1.0, -1.0]


def test_other_file_problems(tmp_path):
    assert "file not found" in data_error(load_file, tmp_path / "missing.csv").problem
    (tmp_path / "d.txt").write_text("1,2\n")
    assert "unsupported file type" in data_error(load_file, tmp_path / "d.txt").problem
    (tmp_path / "dir.csv").mkdir()
    assert "not a file" in data_error(load_file, tmp_path / "dir.csv").problem


# --- generators --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["teacher", "linear", "random_labels"])
def test_generator_shapes_and_input_range(kind):
    X, y = gen(generator=kind, n=17, d=3, seed=5)
    assert X.shape == (17, 3) and y.shape == (17,)
    assert np.all(np.abs(X) <= 1.0) and np.all(np.isfinite(y))
    X1, y1 = gen(generator=kind, n=17, seed=5)
    assert X1.shape == (17, 1), "d defaults to 1"


@pytest.mark.parametrize("kind", ["teacher", "linear", "random_labels", "sine"])
def test_generators_are_seeded(kind):
    options = dict(generator=kind, n=9)
    if kind != "random_labels":
        options["noise"] = 0.3  # so that sine, too, depends on the seed
    a, b = gen(**options, seed=4), gen(**options, seed=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = gen(**options, seed=5)
    assert not np.array_equal(a[1], c[1])
    assert np.array_equal(gen(**options)[1], gen(**options, seed=0)[1]), "seed defaults to 0"


def test_linear_generator_is_fitted_exactly_by_least_squares():
    X, y = gen(generator="linear", n=30, d=4, seed=2)
    A = np.column_stack([X, np.ones(len(y))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    assert np.max(np.abs(A @ coef - y)) < 1e-12
    # with noise the best affine fit leaves residuals of about the noise level
    X, y = gen(generator="linear", n=4000, d=2, seed=2, noise=0.1)
    A = np.column_stack([X, np.ones(len(y))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    assert 0.09 < np.std(A @ coef - y) < 0.11


def test_teacher_noise_is_added_to_the_same_teacher():
    X0, y0 = gen(generator="teacher", n=4000, d=2, seed=1)
    X1, y1 = gen(generator="teacher", n=4000, d=2, seed=1, noise=0.2)
    assert np.array_equal(X0, X1)
    assert 0.19 < np.std(y1 - y0) < 0.21 and abs(np.mean(y1 - y0)) < 0.02


def test_teacher_is_piecewise_linear_with_few_kinks_in_1d():
    """A width-k ReLU teacher in 1-D is CPWL with at most k kinks: few non-zero second differences."""
    X, y = gen(generator="teacher", n=200, d=1, seed=3, teacher_width=2)
    order = np.argsort(X[:, 0])
    x, f = X[order, 0], y[order]
    slopes = np.diff(f) / np.diff(x)
    changes = np.sum(np.abs(np.diff(slopes)) > 1e-8)
    assert changes <= 2 * 2  # each kink can perturb the slopes of the two intervals around it


def test_sine_generator():
    X, y = gen(generator="sine", n=7)
    assert np.allclose(X[:, 0], np.linspace(-1.0, 1.0, 7))
    assert np.allclose(y, np.sin(np.pi * X[:, 0]))


def test_random_labels():
    _, y = gen(generator="random_labels", n=4000, seed=1)
    assert abs(np.mean(y)) < 0.06 and 0.95 < np.std(y) < 1.05
    _, y = gen(generator="random_labels", n=50, labels="pm1", seed=1)
    assert set(np.unique(y)) == {-1.0, 1.0}


@pytest.mark.parametrize(
    "options, field",
    [
        (dict(generator="spiral", n=3), "data.generator"),
        (dict(generator=["sine"], n=3), "data.generator"),
        (dict(generator="sine"), "data.n"),
        (dict(generator="sine", n=0), "data.n"),
        (dict(generator="sine", n=2.5), "data.n"),
        (dict(generator="sine", n=True), "data.n"),
        (dict(generator="sine", n=3, d=2), "data.d"),
        (dict(generator="linear", n=3, d=0), "data.d"),
        (dict(generator="linear", n=3, seed=-1), "data.seed"),
        (dict(generator="linear", n=3, seed="1"), "data.seed"),
        (dict(generator="linear", n=3, seed=1.5), "data.seed"),
        (dict(generator="linear", n=3, noise=float("nan")), "data.noise"),
        (dict(generator="linear", n=3, noise=-0.1), "data.noise"),
        (dict(generator="linear", n=3, noise="0.1"), "data.noise"),
        (dict(generator="sine", n=3, teacher_width=2), "data.teacher_width"),
        (dict(generator="teacher", n=3, teacher_width=0), "data.teacher_width"),
        (dict(generator="teacher", n=3, labels="pm1"), "data.labels"),
        (dict(generator="random_labels", n=3, labels="binary"), "data.labels"),
        (dict(generator="random_labels", n=3, noise=0.1), "data.noise"),
    ],
)
def test_generator_mistakes(options, field):
    assert data_error(generate, options).field == field


def test_generator_mistakes_through_a_spec():
    table = {"name": "g", "data": {"generator": "sine", "n": 4, "seed": -2}, "network": {"hidden": [1]}}
    with pytest.raises(SpecError) as info:
        spec_from_dict(table)
    assert info.value.field == "data.seed"
