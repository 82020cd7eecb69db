"""Spec validation: every mistake is a one-line SpecError naming the field."""

import copy
import math
from pathlib import Path

import numpy as np
import pytest

from milpland import load_spec, spec_from_dict
from milpland.errors import SpecError
from milpland.instance.spec import DEFAULT_BOX

MODELS = Path(__file__).resolve().parent.parent / "models"

BASE = {
    "name": "t",
    "data": {"x": [[0.0], [1.0], [2.0]], "y": [0.0, 1.0, 0.0]},
    "network": {"hidden": [2], "activation": "relu"},
}


def with_(path: str, value, base=BASE) -> dict:
    """A copy of base with the dotted key set (value None deletes it)."""
    table = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = table
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return table


def spec_error(table: dict) -> SpecError:
    with pytest.raises(SpecError) as info:
        spec_from_dict(table)
    exc = info.value
    assert "\n" not in str(exc), "error messages are one line"
    assert str(exc).startswith(exc.field), "the message names the field first"
    return exc


def test_minimal_spec_and_defaults():
    spec = spec_from_dict(BASE)
    assert spec.name == "t"
    assert spec.X.shape == (3, 1) and spec.y.shape == (3,)
    assert (spec.n, spec.d, spec.width) == (3, 1, 2)
    assert spec.network.activation.name == "relu" and spec.network.output_bias
    assert (spec.loss.kind, spec.loss.reduction) == ("squared", "mean")
    assert spec.box.weight == DEFAULT_BOX == spec.box.output
    assert spec.solve.time_limit > 0 and spec.solve.rel_gap > 0 and spec.solve.threads >= 1
    assert spec.architecture() == "1-2-1 relu"


def test_flat_x_is_a_column():
    spec = spec_from_dict(with_("data.x", [0.0, 1.0, 2.0]))
    assert spec.X.shape == (3, 1)


def test_box_output_defaults_to_weight():
    spec = spec_from_dict(with_("box", {"weight": 7.0}))
    assert (spec.box.weight, spec.box.output) == (7.0, 7.0)
    spec = spec_from_dict(with_("box", {"weight": 7.0, "output": 2}))
    assert spec.box.output == 2.0


@pytest.mark.parametrize(
    "key, value, field",
    [
        ("colour", "red", "colour"),
        ("data.z", [1, 2, 3], "data.z"),
        ("network.widths", [2], "network.widths"),
        ("loss.type", "l2", "loss.type"),
        ("box.size", 3.0, "box.size"),
        ("solve.timelimit", 3.0, "solve.timelimit"),
    ],
)
def test_unknown_keys(key, value, field):
    exc = spec_error(with_(key, value))
    assert exc.field == field
    assert "unknown key" in exc.problem and "allowed" in exc.problem


def test_unknown_keys_in_path_and_generator_tables():
    assert spec_error(with_("data", {"path": "a.csv", "y": [1.0]})).field == "data.y"
    assert spec_error(with_("data", {"generator": "sine", "n": 4, "width": 2})).field == "data.width"


@pytest.mark.parametrize(
    "key, value, field",
    [
        ("name", 3, "name"),
        ("name", "  ", "name"),
        ("name", None, "name"),
        ("description", 3, "description"),
        ("data", 3, "data"),
        ("network", "relu", "network"),
        ("network.hidden", 2, "network.hidden"),
        ("network.hidden", [], "network.hidden"),
        ("network.activation", 3, "network.activation"),
        ("network.activation", "tanh", "network.activation"),
        ("network.output_bias", "yes", "network.output_bias"),
        ("loss.kind", "l2", "loss.kind"),
        ("loss.reduction", "sum", "loss.reduction"),
        ("box.weight", "10", "box.weight"),
        ("box.weight", True, "box.weight"),
        ("box.weight", 0.0, "box.weight"),
        ("box.output", -1.0, "box.output"),
        ("solve.time_limit", "5", "solve.time_limit"),
        ("solve.rel_gap", 0, "solve.rel_gap"),
        ("solve.seed", 1.5, "solve.seed"),
        ("solve.seed", -1, "solve.seed"),
        ("solve.threads", 0, "solve.threads"),
        ("solve.verbose", 1, "solve.verbose"),
        ("data.x", "abc", "data.x"),
        ("data.x", [[0.0], [True], [2.0]], "data.x"),
        ("data.x", [[0.0], ["1"], [2.0]], "data.x"),
        ("data.y", [0.0, "1", 0.0], "data.y"),
        ("data.y", 1.0, "data.y"),
        ("data.y", [[0.0], [1.0], [0.0]], "data.y"),
        ("data.y", None, "data.y"),
    ],
)
def test_wrong_types_and_values(key, value, field):
    assert spec_error(with_(key, value)).field == field


def test_missing_tables():
    assert spec_error(with_("data", None)).field == "data"
    assert spec_error(with_("network", None)).field == "network"


@pytest.mark.parametrize(
    "key, value, field",
    [
        ("box.weight", math.inf, "box.weight"),
        ("box.output", math.nan, "box.output"),
        ("solve.time_limit", math.inf, "solve.time_limit"),
        ("solve.rel_gap", math.nan, "solve.rel_gap"),
        ("data.x", [[0.0], [math.nan], [2.0]], "data"),
        ("data.y", [0.0, math.inf, 0.0], "data"),
    ],
)
def test_non_finite_numbers(key, value, field):
    exc = spec_error(with_(key, value))
    assert exc.field == field
    assert "finite" in exc.problem


def test_non_finite_activation_parameters():
    table = with_("network", {"hidden": [2], "activation": "leaky_relu", "alpha": math.inf})
    assert spec_error(table).field == "network.alpha"
    table = with_("network", {"hidden": [2], "activation": "pwl", "breakpoints": [0.0, math.nan], "slopes": [0, 1, 2]})
    assert spec_error(table).field == "network.breakpoints"


def test_duplicate_samples():
    exc = spec_error(with_("data", {"x": [[0.0], [1.0], [0.0]], "y": [2.0, 1.0, 2.0]}))
    assert exc.field == "data" and "duplicate" in exc.problem and "1 duplicate" in exc.problem
    # the same input with different targets is contradictory data, not a duplicate: allowed
    spec = spec_from_dict(with_("data", {"x": [[0.0], [1.0], [0.0]], "y": [2.0, 1.0, 3.0]}))
    assert spec.n == 3


def test_duplicate_rows_in_two_dimensions():
    data = {"x": [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], "y": [1.0, 1.0, 1.0]}
    assert spec_error(with_("data", data)).field == "data"
    data = {"x": [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], "y": [1.0, 1.0, 1.0]}
    assert spec_from_dict(with_("data", data)).X.shape == (3, 2)


def test_mismatched_shapes():
    exc = spec_error(with_("data.y", [0.0, 1.0]))
    assert exc.field == "data" and "3 samples" in exc.problem and "2" in exc.problem
    exc = spec_error(with_("data.x", [[0.0, 1.0], [1.0], [2.0, 3.0]]))
    assert exc.field == "data.x" and "equally long" in exc.problem
    assert spec_error(with_("data.x", [[0.0], 1.0, [2.0]])).field == "data.x"


@pytest.mark.parametrize("data", [{"x": [], "y": []}, {"x": [[], [], []], "y": [0.0, 1.0, 2.0]}])
def test_empty_data(data):
    exc = spec_error(with_("data", data))
    assert exc.field == "data" and "empty" in exc.problem


@pytest.mark.parametrize("hidden", [[0], [-1], [2.5], [2.0], [True], [2, 0], ["2"]])
def test_bad_widths(hidden):
    exc = spec_error(with_("network.hidden", hidden))
    assert exc.field == "network.hidden" and "positive integers" in exc.problem


def test_deep_widths_are_accepted():
    assert spec_from_dict(with_("network.hidden", [3, 2])).network.hidden == (3, 2)


def pwl(**keys) -> dict:
    return with_("network", {"hidden": [2], "activation": "pwl", **keys})


def test_pwl_with_intercepts_and_with_value():
    a = spec_from_dict(pwl(breakpoints=[-1.0, 1.0], slopes=[0.2, 1.0, 0.5], intercepts=[-0.8, 0.0, 0.5]))
    b = spec_from_dict(pwl(breakpoints=[-1.0, 1.0], slopes=[0.2, 1.0, 0.5], value_at_first_breakpoint=-1.0))
    assert a.network.activation == b.network.activation
    assert float(a.network.activation(np.array(3.0))) == pytest.approx(2.0)  # 0.5 * 3 + 0.5


def test_pwl_not_continuous():
    exc = spec_error(pwl(breakpoints=[-1.0, 1.0], slopes=[0.2, 1.0, 0.5], intercepts=[-0.8, 0.0, 0.0]))
    assert exc.field == "network.intercepts" and "continuous" in exc.problem


def test_pwl_non_increasing_breakpoints():
    exc = spec_error(pwl(breakpoints=[1.0, -1.0], slopes=[0.2, 1.0, 0.5]))
    assert exc.field == "network.breakpoints" and "increasing" in exc.problem
    # with intercepts too, the ordering is reported (not a continuity error)
    exc = spec_error(pwl(breakpoints=[1.0, 1.0], slopes=[0.2, 1.0, 0.5], intercepts=[0.0, 0.0, 0.0]))
    assert exc.field == "network.breakpoints"


def test_pwl_wrong_number_of_slopes():
    exc = spec_error(pwl(breakpoints=[-1.0, 1.0], slopes=[0.2, 1.0]))
    assert exc.field == "network.slopes" and "3 slopes" in exc.problem
    exc = spec_error(pwl(breakpoints=[-1.0, 1.0], slopes=[0.2, 1.0], intercepts=[0.0, 0.0]))
    assert exc.field == "network.slopes"


def test_pwl_other_mistakes():
    assert spec_error(pwl(breakpoints=[0.0], slopes=[0.0, 1.0], intercepts=[0.0])).field == "network.intercepts"
    both = pwl(breakpoints=[0.0], slopes=[0.0, 1.0], intercepts=[0.0, 0.0], value_at_first_breakpoint=0.0)
    assert spec_error(both).field == "network.intercepts"
    assert spec_error(pwl(slopes=[0.0, 1.0])).field == "network.breakpoints"
    assert spec_error(pwl(breakpoints=[0.0], slopes=[0.0, "1"])).field == "network.slopes"


def test_activation_parameters_must_match_the_activation():
    exc = spec_error(with_("network.alpha", 0.1))  # relu takes no alpha
    assert exc.field == "network.alpha" and "does not apply" in exc.problem
    table = with_("network", {"hidden": [2], "activation": "leaky_relu", "slopes": [0, 1]})
    assert spec_error(table).field == "network.slopes"


def test_leaky_and_two_slope():
    spec = spec_from_dict(with_("network", {"hidden": [1], "activation": "leaky_relu", "alpha": 0.2}))
    assert float(spec.network.activation(np.array(-1.0))) == pytest.approx(-0.2)
    spec = spec_from_dict(with_("network", {"hidden": [1], "activation": "leaky_relu"}))
    assert spec.network.activation.slopes == (0.01, 1.0)  # documented default alpha
    spec = spec_from_dict(with_("network", {"hidden": [1], "activation": "two_slope", "s_plus": 2, "s_minus": -1}))
    assert float(spec.network.activation(np.array(-3.0))) == pytest.approx(3.0)
    assert spec_error(with_("network", {"hidden": [1], "activation": "leaky_relu", "alpha": 1.0})).field == "network.alpha"
    table = with_("network", {"hidden": [1], "activation": "two_slope", "s_plus": 2.0})
    assert spec_error(table).field == "network.s_minus"
    table = with_("network", {"hidden": [1], "activation": "two_slope", "s_plus": 2.0, "s_minus": 2.0})
    assert spec_error(table).field == "network.s_minus"


def test_hinge_labels():
    table = with_("loss", {"kind": "hinge"})
    exc = spec_error(table)  # y = 0, 1, 0
    assert exc.field == "data.y" and "-1" in exc.problem
    ok = with_("data.y", [-1.0, 1.0, -1], base=table)
    assert spec_from_dict(ok).loss.kind == "hinge"


@pytest.mark.parametrize(
    "data",
    [
        {"x": [[0.0]], "y": [1.0], "path": "a.csv"},
        {"x": [[0.0]], "y": [1.0], "generator": "sine", "n": 3},
        {"path": "a.csv", "generator": "sine", "n": 3},
        {"y": [1.0]},
        {},
    ],
)
def test_exactly_one_data_source(data):
    exc = spec_error(with_("data", data))
    assert exc.field == "data" and "exactly one" in exc.problem


def test_data_path_must_be_a_string():
    assert spec_error(with_("data", {"path": 3})).field == "data.path"


def test_generator_spec():
    spec = spec_from_dict(with_("data", {"generator": "sine", "n": 5}))
    assert np.allclose(spec.X[:, 0], np.linspace(-1, 1, 5))
    assert np.allclose(spec.y, np.sin(np.pi * np.linspace(-1, 1, 5)))


def test_with_options_with_box_and_hash():
    spec = spec_from_dict(BASE)
    fast = spec.with_options(time_limit=5.0, rel_gap=1e-3)
    assert (fast.solve.time_limit, fast.solve.rel_gap) == (5.0, 1e-3)
    assert spec.solve.time_limit != 5.0  # the original is unchanged (frozen)
    assert fast.instance_hash() == spec.instance_hash()  # options are not part of the problem
    boxed = spec.with_box(3.0)
    assert (boxed.box.weight, boxed.box.output) == (3.0, 3.0)
    assert spec.with_box(3.0, 4.0).box.output == 4.0
    assert boxed.instance_hash() != spec.instance_hash()  # the box is
    assert spec_from_dict(with_("data.y", [0.0, 1.0, 0.5])).instance_hash() != spec.instance_hash()
    assert spec_from_dict(copy.deepcopy(BASE)).instance_hash() == spec.instance_hash()


# --- files ---------------------------------------------------------------------------------

def test_load_spec_from_file(tmp_path):
    (tmp_path / "s.toml").write_text(
        'name = "f"\n[data]\nx = [[0.0], [1.0]]\ny = [1.0, 2.0]\n[network]\nhidden = [1]\n'
    )
    spec = load_spec(tmp_path / "s.toml")
    assert spec.name == "f" and spec.source == str(tmp_path / "s.toml")


def test_load_spec_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "f"\n[data]\nx = [[0.0], [1.0]]\ny = [1.0, 2.0]\n[network]\nhidden = [0]\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "network.hidden" and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_load_spec_missing_invalid_or_directory(tmp_path):
    for target, words in [
        (tmp_path / "nope.toml", "file not found"),
        (tmp_path, "not a file"),
    ]:
        with pytest.raises(SpecError) as info:
            load_spec(target)
        assert info.value.field == "spec" and words in info.value.problem
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert info.value.field == "spec" and "TOML" in info.value.problem and "\n" not in str(info.value)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(SpecError) as info:
        load_spec(binary)
    assert info.value.field == "spec"


def test_data_path_is_relative_to_the_spec_file(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.csv").write_text("x,y\n0,1\n1,3\n2,5\n")
    (sub / "s.toml").write_text('name = "p"\n[data]\npath = "d.csv"\n[network]\nhidden = [1]\n')
    spec = load_spec(sub / "s.toml")
    assert spec.X.tolist() == [[0.0], [1.0], [2.0]] and spec.y.tolist() == [1.0, 3.0, 5.0]


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_models_are_valid(path):
    spec = load_spec(path)
    assert spec.name == path.stem, "a model's name is its file name"
    assert spec.n <= 12 and spec.width <= 3, "shipped examples stay small"


def test_shipped_models_exist():
    names = {p.stem for p in MODELS.glob("*.toml")}
    assert {"tent-relu-w2", "teacher-relu-w2-d2", "sine-leaky-w3", "hinge-relu-w2", "hardtanh-w2", "pwl3-w2-abs"} <= names
