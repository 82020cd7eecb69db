"""A catalogue of bad inputs (issue 14): what a new user or a hostile tester types, and what
milpland must answer -- one clean line on stderr naming the field or option and the fix, exit
code 2 (user mistake) or 1 (an environment failure such as a full disk), never a traceback.

Each `Fault` is a command line plus the files it needs (written into a fresh folder first) and a
fragment the one-line message must contain.  `tests/test_faults.py` runs every case in process
(`milpland.cli.main`); ``python tests/fault_inputs.py`` runs them all and prints a summary: how
many give a clean one-line error, and the message of each.

The issue's 163 inputs are not listed in it; these are reconstructed from its text (spec fields,
data files, parameter files, options of every command, output folders) and extended.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TENT = str(ROOT / "models" / "tent-relu-w2.toml")

DATA = '[data]\nx = [0.0, 1.0, 2.0, 3.0]\ny = [0.0, 1.0, 0.0, 1.0]\n'
NETWORK = '[network]\nhidden = [2]\n'
GOOD_PARAMS = {"W1": [[1.0], [-1.0]], "b1": [0.0, 1.0], "v": [1.0, 1.0], "c": 0.0}


def spec(*, top: str = 'name = "t"\n', data: str = DATA, network: str = NETWORK, rest: str = "") -> str:
    """A spec whose parts can be replaced one at a time (each fault breaks one thing)."""
    return top + data + network + rest


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def pickled_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, X=np.array([{"a": 1}], dtype=object), y=np.array([1.0]))
    return buffer.getvalue()


def npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


def not_a_zip_npz() -> bytes:
    """A file named .npz that numpy reads as pickled data (the garbage case of the issue)."""
    return b"\x80\x04garbage that is no zip archive" * 4


def empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w"):
        pass
    return buffer.getvalue()


@dataclass(frozen=True)
class Fault:
    name: str
    argv: tuple[str, ...]  # "{dir}" is replaced by the case's folder
    files: dict = field(default_factory=dict)  # relative name -> str or bytes (a trailing "/" makes a folder)
    expect: str = ""  # a fragment of the one-line message
    code: int = 2


def solve_spec(name: str, text: str | bytes, expect: str, *extra: str, code: int = 2) -> Fault:
    return Fault(name, ("solve", "{dir}/s.toml", *extra), {"s.toml": text}, expect, code)


def with_data_file(name: str, filename: str, content, expect: str) -> Fault:
    text = spec(data=f'[data]\npath = "{filename}"\n')
    return Fault(name, ("solve", "{dir}/s.toml"), {"s.toml": text, filename: content}, expect)


def certify_params(name: str, content, expect: str, *, filename: str = "p.json", spec_file: str = TENT,
                   files: dict | None = None) -> Fault:
    if isinstance(content, dict):
        content = json.dumps(content)
    return Fault(name, ("certify", spec_file, "--params", f"{{dir}}/{filename}", "--no-global"),
                 {filename: content, **(files or {})}, expect)


def params(**changes) -> dict:
    out = dict(GOOD_PARAMS)
    for key, value in changes.items():
        if value is None:
            out.pop(key)
        else:
            out[key] = value
    return out


SPEC_FAULTS = [
    Fault("spec-missing", ("solve", "{dir}/nope.toml"), {}, "file not found"),
    Fault("spec-is-folder", ("solve", "{dir}/d"), {"d/": ""}, "not a file"),
    solve_spec("spec-binary", bytes(range(256)) * 4, "not a text file"),
    solve_spec("spec-empty", "", "name: is required"),
    solve_spec("spec-bad-toml", "name = \n[data", "not valid TOML"),
    solve_spec("spec-unknown-top-key", spec(top='name = "t"\ncolour = "red"\n'), "colour: unknown key"),
    solve_spec("spec-name-missing", spec(top=""), "name: is required"),
    solve_spec("spec-name-number", spec(top="name = 5\n"), "name: must be a non-empty string"),
    solve_spec("spec-name-empty", spec(top='name = "  "\n'), "name: must be a non-empty string"),
    solve_spec("spec-description-number", spec(top='name = "t"\ndescription = 5\n'), "description: must be a string"),
    # [data]
    solve_spec("data-missing", spec(data=""), "[data] table is required"),
    solve_spec("data-not-table", 'name = "t"\ndata = 5\n' + NETWORK, "data: must be a table"),
    solve_spec("data-two-sources", spec(data='[data]\nx = [1.0]\ny = [1.0]\ngenerator = "sine"\nn = 3\n'),
               "give exactly one of"),
    solve_spec("data-no-source", spec(data='[data]\nn = 3\n'), "give exactly one of"),
    solve_spec("data-x-without-y", spec(data='[data]\nx = [1.0, 2.0]\n'), "data.y: is required"),
    solve_spec("data-x-string", spec(data='[data]\nx = "abc"\ny = [1.0]\n'), "data.x: must be a list"),
    solve_spec("data-x-mixed", spec(data='[data]\nx = [1.0, "a"]\ny = [1.0, 2.0]\n'), "data.x: must hold numbers"),
    solve_spec("data-x-ragged", spec(data='[data]\nx = [[1.0, 2.0], [3.0]]\ny = [1.0, 2.0]\n'),
               "rows must be equally long"),
    solve_spec("data-y-length", spec(data='[data]\nx = [1.0, 2.0, 3.0]\ny = [1.0, 2.0]\n'), "but y has 2"),
    solve_spec("data-x-empty", spec(data='[data]\nx = []\ny = []\n'), "is empty"),
    solve_spec("data-y-bool", spec(data='[data]\nx = [1.0]\ny = [true]\n'), "data.y: must hold numbers"),
    solve_spec("data-x-nan", spec(data='[data]\nx = [1.0, nan]\ny = [1.0, 2.0]\n'), "non-finite"),
    solve_spec("data-y-inf", spec(data='[data]\nx = [1.0, 2.0]\ny = [1.0, inf]\n'), "non-finite"),
    solve_spec("data-x-huge", spec(data='[data]\nx = [1.0, 1e308]\ny = [1.0, 2.0]\n'), "1e+12"),
    solve_spec("data-y-huge", spec(data='[data]\nx = [1.0, 2.0]\ny = [1.0, -1e300]\n'), "1e+12"),
    solve_spec("data-duplicates", spec(data='[data]\nx = [1.0, 1.0]\ny = [2.0, 2.0]\n'), "duplicate samples"),
    solve_spec("data-hinge-labels", spec(rest='[loss]\nkind = "hinge"\n'), "labels -1 and +1"),
    solve_spec("data-unknown-key", spec(data='[data]\nx = [1.0]\ny = [1.0]\nz = [1.0]\n'), "data.z: unknown key"),
    solve_spec("data-path-number", spec(data='[data]\npath = 5\n'), "data.path: must be a file name"),
    solve_spec("data-path-empty", spec(data='[data]\npath = ""\n'), "data.path: must be a file name"),
    solve_spec("data-path-missing", spec(data='[data]\npath = "nope.csv"\n'), "file not found"),
    Fault("data-path-folder", ("solve", "{dir}/s.toml"), {"s.toml": spec(data='[data]\npath = "d.csv"\n'),
                                                          "d.csv/": ""}, "not a file"),
    with_data_file("data-txt", "d.txt", "1,2\n", "unsupported file type"),
    with_data_file("csv-empty", "d.csv", "", "is empty"),
    with_data_file("csv-header-only", "d.csv", "x,y\n", "header but no data rows"),
    with_data_file("csv-one-column", "d.csv", "1\n2\n3\n", "at least two columns"),
    with_data_file("csv-ragged", "d.csv", "1,2,3\n4,5,6\n7,8\n", "line 3: 2 values"),
    with_data_file("csv-semicolons", "d.csv", "1;2\n3;4\n", "CSV: line 1: values separated by ';'"),
    with_data_file("csv-header-semicolons", "d.csv", "x;y\n1;2\n3;4\n", "CSV: line 2: values separated by ';'"),
    with_data_file("csv-word", "d.csv", "x,y\n1,2\n3,abc\n", "line 3: 'abc' is not a number"),
    with_data_file("csv-binary", "d.csv", bytes(range(256)), "not a text file"),
    with_data_file("csv-nan", "d.csv", "1,2\nnan,3\n", "non-finite"),
    with_data_file("csv-duplicates", "d.csv", "1,2\n1,2\n", "duplicate samples"),
    with_data_file("csv-huge", "d.csv", "1,2\n3,1e300\n", "1e+12"),
    with_data_file("npz-garbage", "d.npz", not_a_zip_npz(), "not an .npz archive (numpy.savez"),
    with_data_file("npz-random-bytes", "d.npz", bytes(range(200)), "not an .npz archive (numpy.savez"),
    with_data_file("npz-empty-zip", "d.npz", empty_zip(), "must hold arrays named X and y"),
    with_data_file("npz-missing-y", "d.npz", npz_bytes(X=np.arange(3.0)), "must hold arrays named X and y"),
    with_data_file("npz-pickled", "d.npz", pickled_npz(), "holds object arrays"),
    with_data_file("npz-strings", "d.npz", npz_bytes(X=np.array(["a", "b"]), y=np.array([1.0, 2.0])),
                   "must be numeric"),
    with_data_file("npz-length", "d.npz", npz_bytes(X=np.arange(3.0), y=np.arange(2.0)), "but y has 2"),
    with_data_file("npz-3d", "d.npz", npz_bytes(X=np.zeros((2, 2, 2)), y=np.arange(2.0)), "must be a matrix"),
    # generators
    solve_spec("gen-unknown", spec(data='[data]\ngenerator = "spiral"\nn = 5\n'), "unknown generator"),
    solve_spec("gen-no-n", spec(data='[data]\ngenerator = "sine"\n'), "data.n: is required"),
    solve_spec("gen-n-zero", spec(data='[data]\ngenerator = "sine"\nn = 0\n'), "data.n: must be a positive integer"),
    solve_spec("gen-n-negative", spec(data='[data]\ngenerator = "sine"\nn = -5\n'), "data.n: must be a positive"),
    solve_spec("gen-n-float", spec(data='[data]\ngenerator = "sine"\nn = 2.5\n'), "data.n: must be a positive"),
    solve_spec("gen-n-string", spec(data='[data]\ngenerator = "sine"\nn = "10"\n'), "data.n: must be a positive"),
    solve_spec("gen-n-huge", spec(data='[data]\ngenerator = "teacher"\nn = 100000000000\n'),
               "data.n: n = 100000000000"),
    solve_spec("gen-nd-huge", spec(data='[data]\ngenerator = "linear"\nn = 100000\nd = 100000\n'), "more than the"),
    solve_spec("gen-d-zero", spec(data='[data]\ngenerator = "teacher"\nn = 5\nd = 0\n'), "data.d: must be a positive"),
    solve_spec("gen-seed-negative", spec(data='[data]\ngenerator = "teacher"\nn = 5\nseed = -1\n'), "data.seed"),
    solve_spec("gen-seed-float", spec(data='[data]\ngenerator = "teacher"\nn = 5\nseed = 1.5\n'), "data.seed"),
    solve_spec("gen-noise-negative", spec(data='[data]\ngenerator = "sine"\nn = 5\nnoise = -1\n'), "data.noise"),
    solve_spec("gen-noise-string", spec(data='[data]\ngenerator = "sine"\nn = 5\nnoise = "x"\n'), "data.noise"),
    solve_spec("gen-noise-nan", spec(data='[data]\ngenerator = "sine"\nn = 5\nnoise = nan\n'), "data.noise"),
    solve_spec("gen-teacher-width-zero", spec(data='[data]\ngenerator = "teacher"\nn = 5\nteacher_width = 0\n'),
               "data.teacher_width"),
    solve_spec("gen-teacher-width-huge",
               spec(data='[data]\ngenerator = "teacher"\nn = 100000\nteacher_width = 100000\n'), "data.teacher_width"),
    solve_spec("gen-labels-unknown", spec(data='[data]\ngenerator = "random_labels"\nn = 5\nlabels = "foo"\n'),
               "data.labels"),
    solve_spec("gen-labels-teacher", spec(data='[data]\ngenerator = "teacher"\nn = 5\nlabels = "pm1"\n'),
               "data.labels: does not apply"),
    solve_spec("gen-sine-2d", spec(data='[data]\ngenerator = "sine"\nn = 5\nd = 2\n'), "one-dimensional"),
    solve_spec("gen-width-sine", spec(data='[data]\ngenerator = "sine"\nn = 5\nteacher_width = 3\n'),
               "data.teacher_width: does not apply"),
    solve_spec("gen-noise-labels", spec(data='[data]\ngenerator = "random_labels"\nn = 5\nnoise = 0.1\n'),
               "data.noise: does not apply"),
    solve_spec("gen-unknown-key", spec(data='[data]\ngenerator = "sine"\nn = 5\nsize = 3\n'), "data.size: unknown"),
    # [network]
    solve_spec("net-missing", spec(network=""), "[network] table is required"),
    solve_spec("net-hidden-missing", spec(network='[network]\nactivation = "relu"\n'), "network.hidden"),
    solve_spec("net-hidden-empty", spec(network='[network]\nhidden = []\n'), "network.hidden"),
    solve_spec("net-hidden-zero", spec(network='[network]\nhidden = [0]\n'), "positive integers, got 0"),
    solve_spec("net-hidden-negative", spec(network='[network]\nhidden = [-1]\n'), "positive integers"),
    solve_spec("net-hidden-float", spec(network='[network]\nhidden = [2.5]\n'), "positive integers"),
    solve_spec("net-hidden-string", spec(network='[network]\nhidden = "2"\n'), "network.hidden"),
    solve_spec("net-hidden-bool", spec(network='[network]\nhidden = [true]\n'), "positive integers"),
    solve_spec("net-activation-unknown", spec(network='[network]\nhidden = [2]\nactivation = "gelu"\n'),
               "unknown activation"),
    solve_spec("net-activation-number", spec(network='[network]\nhidden = [2]\nactivation = 5\n'),
               "unknown activation"),
    solve_spec("net-alpha-relu", spec(network='[network]\nhidden = [2]\nalpha = 0.1\n'), "does not apply"),
    solve_spec("net-alpha-one", spec(network='[network]\nhidden = [2]\nactivation = "leaky_relu"\nalpha = 1.0\n'),
               "linear"),
    solve_spec("net-alpha-string", spec(network='[network]\nhidden = [2]\nactivation = "leaky_relu"\nalpha = "x"\n'),
               "network.alpha: must be a number"),
    solve_spec("net-alpha-nan", spec(network='[network]\nhidden = [2]\nactivation = "leaky_relu"\nalpha = nan\n'),
               "network.alpha: must be finite"),
    solve_spec("net-alpha-huge", spec(network='[network]\nhidden = [2]\nactivation = "leaky_relu"\nalpha = 1e300\n'),
               "1e+12"),
    solve_spec("net-two-slope-missing", spec(network='[network]\nhidden = [2]\nactivation = "two_slope"\n'),
               "network.s_plus: is required"),
    solve_spec("net-two-slope-equal",
               spec(network='[network]\nhidden = [2]\nactivation = "two_slope"\ns_plus = 1.0\ns_minus = 1.0\n'),
               "linear"),
    solve_spec("net-pwl-missing", spec(network='[network]\nhidden = [2]\nactivation = "pwl"\n'),
               "network.breakpoints"),
    solve_spec("net-pwl-order",
               spec(network='[network]\nhidden = [2]\nactivation = "pwl"\nbreakpoints = [1.0, 0.0]\n'
                            'slopes = [0.0, 1.0, 0.0]\n'), "increasing"),
    solve_spec("net-pwl-count",
               spec(network='[network]\nhidden = [2]\nactivation = "pwl"\nbreakpoints = [0.0]\nslopes = [1.0]\n'),
               "slopes"),
    solve_spec("net-pwl-equal-neighbours",
               spec(network='[network]\nhidden = [2]\nactivation = "pwl"\nbreakpoints = [0.0]\nslopes = [1.0, 1.0]\n'),
               "network"),
    solve_spec("net-pwl-both-offsets",
               spec(network='[network]\nhidden = [2]\nactivation = "pwl"\nbreakpoints = [0.0]\nslopes = [0.0, 1.0]\n'
                            'intercepts = [0.0, 0.0]\nvalue_at_first_breakpoint = 0.0\n'), "not both"),
    solve_spec("net-pwl-discontinuous",
               spec(network='[network]\nhidden = [2]\nactivation = "pwl"\nbreakpoints = [0.0]\nslopes = [0.0, 1.0]\n'
                            'intercepts = [0.0, 1.0]\n'), "network.intercepts"),
    solve_spec("net-output-bias-string", spec(network='[network]\nhidden = [2]\noutput_bias = "yes"\n'),
               "network.output_bias: must be true or false"),
    solve_spec("net-unknown-key", spec(network='[network]\nhidden = [2]\ndropout = 0.5\n'), "network.dropout"),
    solve_spec("net-deep-solve", spec(network='[network]\nhidden = [2, 2, 2]\n'), "network.hidden"),
    # [loss], [box], [solve]
    solve_spec("loss-kind", spec(rest='[loss]\nkind = "huber"\n'), "unknown loss"),
    solve_spec("loss-reduction", spec(rest='[loss]\nreduction = "max"\n'), "unknown reduction"),
    solve_spec("loss-unknown-key", spec(rest='[loss]\ndelta = 1.0\n'), "loss.delta"),
    solve_spec("loss-not-table", spec(rest='loss = 5\n').replace("loss = 5\n", "") .replace(
        'name = "t"\n', 'name = "t"\nloss = 5\n'), "loss: must be a table"),
    solve_spec("box-zero", spec(rest='[box]\nweight = 0.0\n'), "box.weight: must be positive"),
    solve_spec("box-negative", spec(rest='[box]\nweight = -1.0\n'), "box.weight: must be positive"),
    solve_spec("box-string", spec(rest='[box]\nweight = "big"\n'), "box.weight: must be a number"),
    solve_spec("box-inf", spec(rest='[box]\nweight = inf\n'), "box.weight: must be finite"),
    solve_spec("box-huge", spec(rest='[box]\nweight = 1e308\n'), "1e+12"),
    solve_spec("box-output-zero", spec(rest='[box]\noutput = 0.0\n'), "box.output: must be positive"),
    solve_spec("box-unknown-key", spec(rest='[box]\nbias = 1.0\n'), "box.bias"),
    solve_spec("solve-time-zero", spec(rest='[solve]\ntime_limit = 0\n'), "solve.time_limit: must be positive"),
    solve_spec("solve-time-negative", spec(rest='[solve]\ntime_limit = -1\n'), "solve.time_limit"),
    solve_spec("solve-time-string", spec(rest='[solve]\ntime_limit = "60"\n'), "solve.time_limit: must be a number"),
    solve_spec("solve-time-inf", spec(rest='[solve]\ntime_limit = inf\n'), "solve.time_limit: must be finite"),
    solve_spec("solve-gap-zero", spec(rest='[solve]\nrel_gap = 0\n'), "solve.rel_gap"),
    solve_spec("solve-gap-one", spec(rest='[solve]\nrel_gap = 1\n'), "solve.rel_gap"),
    solve_spec("solve-gap-five", spec(rest='[solve]\nrel_gap = 5.0\n'), "solve.rel_gap"),
    solve_spec("solve-seed-negative", spec(rest='[solve]\nseed = -1\n'), "solve.seed"),
    solve_spec("solve-threads-zero", spec(rest='[solve]\nthreads = 0\n'), "solve.threads"),
    solve_spec("solve-threads-float", spec(rest='[solve]\nthreads = 1.5\n'), "solve.threads"),
    solve_spec("solve-verbose-string", spec(rest='[solve]\nverbose = "yes"\n'), "solve.verbose"),
    solve_spec("solve-method-unknown", spec(rest='[solve]\nmethod = "fast"\n'), "solve.method"),
    solve_spec("solve-bnb-hardtanh", spec(network='[network]\nhidden = [2]\nactivation = "hardtanh"\n',
                                          rest='[solve]\nmethod = "bnb"\n'), "solve.method = \"bnb\""),
    solve_spec("solve-memory-zero", spec(rest='[solve]\nmemory_limit = 0\n'), "solve.memory_limit"),
    solve_spec("solve-memory-string", spec(rest='[solve]\nmemory_limit = "4G"\n'), "solve.memory_limit"),
    solve_spec("solve-memory-exceeded", spec(rest='[solve]\nmemory_limit = 0.001\n'),
               "solve.memory_limit: the bnb search of t needs about"),
    solve_spec("solve-unknown-key", spec(rest='[solve]\nnodes = 5\n'), "solve.nodes"),
]

SOLVE_OPTION_FAULTS = [
    Fault(f"solve-option{flag}-{value}", ("solve", TENT, flag, value), {}, expect)
    for flag, value, expect in [
        ("--time-limit", "0", "--time-limit"), ("--time-limit", "-1", "--time-limit"),
        ("--time-limit", "nan", "--time-limit"), ("--time-limit", "abc", "invalid float value"),
        ("--time-limit", "inf", "--time-limit"), ("--rel-gap", "0", "--rel-gap"), ("--rel-gap", "1", "below 1"),
        ("--rel-gap", "5", "below 1"), ("--box", "0", "--box"), ("--box", "-1", "--box"),
        ("--box", "1e308", "1e+12"), ("--box", "inf", "--box"), ("--method", "fast", "invalid choice"),
        ("--format", "xml", "invalid choice"), ("--memory-limit", "0", "--memory-limit"),
        ("--memory-limit", "-2", "--memory-limit"), ("--foo", "1", "unrecognized arguments"),
    ]
] + [
    Fault("solve-params-out-folder", ("solve", TENT, "--params-out", "{dir}"), {}, "is a directory"),
    Fault("solve-params-out-no-folder", ("solve", TENT, "--params-out", "{dir}/no/such/p.json"), {}, "does not exist"),
    Fault("solve-no-spec", ("solve",), {}, "required: SPEC"),
    Fault("no-command-typo", ("solv", TENT), {}, "invalid choice"),
]

CERTIFY_FAULTS = [
    Fault("params-missing", ("certify", TENT, "--params", "{dir}/nope.json"), {}, "file not found"),
    Fault("params-folder", ("certify", TENT, "--params", "{dir}/p.json"), {"p.json/": ""}, "not a file"),
    certify_params("params-binary", bytes(range(256)) * 3, "not a text file"),
    certify_params("params-bad-json", "{W1: [1]", "not valid JSON"),
    certify_params("params-list", "[1, 2, 3]", "must be a JSON object"),
    certify_params("params-mixed-forms", params(W=[[1.0]], b=[0.0]), "not both"),
    certify_params("params-unknown-key", params(extra=1), "params.extra: unknown key"),
    certify_params("params-no-keys", {"weights": 1}, "needs W and b"),
    certify_params("params-missing-c", params(c=None), "params.c: is required"),
    certify_params("params-missing-v", params(v=None), "params.v: is required"),
    certify_params("params-c-string", params(c="zero"), "params.c: must be a number"),
    certify_params("params-c-list", params(c=[1.0, 2.0]), "params.c: expected 1"),
    certify_params("params-c-nan", '{"W1": [[1.0], [-1.0]], "b1": [0.0, 1.0], "v": [1.0, 1.0], "c": NaN}',
                   "params.c"),
    certify_params("params-v-short", params(v=[0.5]), "params.v: expected shape (2,): one output weight per "
                                                      "hidden unit, got 1 number"),
    certify_params("params-v-string", params(v="big"), "params.v: must be a list of numbers"),
    certify_params("params-W1-shape", params(W1=[[1.0, 2.0], [3.0, 4.0]]), "params.W1: expected shape (2, 1)"),
    certify_params("params-W1-ragged", params(W1=[[1.0], [2.0, 3.0]]), "params.W1: must be a matrix"),
    certify_params("params-W1-string", params(W1=[["a"], ["b"]]), "params.W1: must be a matrix"),
    certify_params("params-W1-huge", params(W1=[[1e308], [1.0]]), "1e+12"),
    certify_params("params-W1-inf", '{"W1": [[Infinity], [1.0]], "b1": [0.0, 1.0], "v": [1.0, 1.0], "c": 0}',
                   "non-finite"),
    certify_params("params-b1-length", params(b1=[0.0]), "params.b1: expected shape (2,)"),
    certify_params("params-width", {"W1": [[1.0]], "b1": [0.0], "v": [1.0], "c": 0.0}, "hidden width 2"),
    certify_params("params-deep-layers", {"W": [[[1.0], [1.0]]], "b": [[0.0, 0.0]]}, "params"),
    certify_params("params-deep-bias-count", {"W": [[[1.0], [1.0]], [[1.0, 1.0]]], "b": [[0.0, 0.0]]},
                   "params.b: needs one bias per layer"),
    certify_params("params-deep-shape", {"W": [[[1.0, 2.0]], [[1.0]]], "b": [[0.0], [0.0]]}, "params.W[0]"),
    certify_params("params-wrapped-not-object", {"params": 5}, "params"),
    certify_params("params-txt", "W1 = 1", "unsupported file type", filename="p.txt"),
    certify_params("params-npz-garbage", not_a_zip_npz(), "not an .npz archive", filename="p.npz"),
    certify_params("params-npz-random", bytes(range(200)), "not an .npz archive", filename="p.npz"),
    certify_params("params-npz-pickled", pickled_npz(), "holds object arrays", filename="p.npz"),
    certify_params("params-npy", npy_bytes(), "holds a single array", filename="p.npz"),
    certify_params("params-npz-names", npz_bytes(A=np.zeros(2)), "an .npz needs arrays", filename="p.npz"),
    certify_params("params-output-bias-mismatch", params(c=0.5), "params.c: the spec has network.output_bias = false",
                   spec_file="{dir}/nb.toml",
                   files={"nb.toml": spec(network='[network]\nhidden = [2]\noutput_bias = false\n')}),
    Fault("certify-time-zero", ("certify", TENT, "--params", "{dir}/p.json", "--time-limit", "0"),
          {"p.json": json.dumps(GOOD_PARAMS)}, "--time-limit"),
    Fault("certify-gd-negative", ("certify", TENT, "--params", "{dir}/p.json", "--gd-starts", "-1"),
          {"p.json": json.dumps(GOOD_PARAMS)}, "--gd-starts"),
    Fault("certify-no-params", ("certify", TENT), {}, "--params"),
]

LANDSCAPE_FAULTS = [
    Fault(f"landscape{flag}-{value}", ("landscape", TENT, flag, value), {}, expect)
    for flag, value, expect in [
        ("--method", "foo", "invalid choice"), ("--max-cells", "0", "--max-cells"), ("--starts", "0", "--starts"),
        ("--seed", "-1", "--seed"), ("--epsilon", "0", "--epsilon"), ("--max-levels", "0", "--max-levels"),
        ("--time-limit", "0", "--time-limit"), ("--time-limit", "nan", "--time-limit"),
        ("--starts", "x", "invalid int value"),
    ]
] + [
    Fault("landscape-out-file", ("landscape", TENT, "--out", "{dir}/f"), {"f": "x"}, "is not a folder"),
    Fault("landscape-deep", ("landscape", "{dir}/s.toml"), {"s.toml": spec(network='[network]\nhidden = [2, 2]\n')},
          "one hidden layer"),
    Fault("landscape-milp-hardtanh", ("landscape", "{dir}/s.toml", "--method", "milp"),
          {"s.toml": spec(network='[network]\nhidden = [2]\nactivation = "hardtanh"\n')}, "hardtanh"),
    Fault("landscape-too-many-cells", ("landscape", TENT, "--method", "enumerate", "--max-cells", "3"), {}, "--max-cells"),
]

BATCH_FAULTS = [
    Fault("batch-jobs-zero", ("batch", TENT, "--out", "{dir}/o", "--jobs", "0"), {}, "--jobs: must be a positive"),
    Fault("batch-jobs-negative", ("batch", TENT, "--out", "{dir}/o", "--jobs", "-1"), {}, "--jobs"),
    Fault("batch-out-file", ("batch", TENT, "--out", "{dir}/f"), {"f": "x"}, "exists and is not a folder"),
    Fault("batch-task-unknown", ("batch", TENT, "--out", "{dir}/o", "--task", "train"), {}, "unknown task"),
    Fault("batch-task-import", ("batch", TENT, "--out", "{dir}/o", "--task", "nosuchmodule:f"), {}, "cannot import"),
    Fault("batch-time-zero", ("batch", TENT, "--out", "{dir}/o", "--time-limit", "0"), {}, "--time-limit"),
    Fault("batch-time-nan", ("batch", TENT, "--out", "{dir}/o", "--time-limit", "nan"), {}, "--time-limit"),
    Fault("batch-rerun-both", ("batch", TENT, "--out", "{dir}/o", "--rerun", "--rerun-since", "2025-01-01"), {},
          "not both"),
    Fault("batch-rerun-since-garbage", ("batch", TENT, "--out", "{dir}/o", "--rerun-since", "yesterday"), {},
          "not an ISO 8601 time"),
    Fault("batch-scheduler-local", ("batch", TENT, "--out", "{dir}/o", "--scheduler", "tcp://x:1"), {},
          "--scheduler needs --executor dask"),
    Fault("batch-executor", ("batch", TENT, "--out", "{dir}/o", "--executor", "slurm"), {}, "invalid choice"),
    Fault("batch-target-missing", ("batch", "{dir}/nope.toml", "--out", "{dir}/o"), {}, "nope.toml"),
    Fault("batch-suite-bad", ("batch", "{dir}/suite.toml", "--out", "{dir}/o"),
          {"suite.toml": '[suite]\nname = "x"\n[[grid]]\nbase = 5\n'}, "suite"),
]

REPORT_FAULTS = [
    Fault("report-missing", ("report", "{dir}/nope"), {}, "is not a folder"),
    Fault("report-file", ("report", "{dir}/f"), {"f": "x"}, "is not a folder"),
    Fault("report-empty", ("report", "{dir}/e"), {"e/": ""}, "holds no result tables"),
    Fault("report-figures-file", ("report", "{dir}/e", "--figures", "{dir}/f.png"), {"e/": "", "f.png": "x"},
          "exists and is not a folder"),
]

BENCH_FAULTS = [
    Fault("bench-methods-unknown", ("bench", TENT, "--methods", "foo", "--out", "{dir}/o"), {}, "unknown method"),
    Fault("bench-methods-empty", ("bench", TENT, "--methods", ",", "--out", "{dir}/o"), {}, "--methods"),
    Fault("bench-starts-zero", ("bench", TENT, "--methods", "gd", "--starts", "0", "--out", "{dir}/o"), {},
          "--starts: must be a positive integer"),
    Fault("bench-max-cells-zero", ("bench", TENT, "--max-cells", "0", "--out", "{dir}/o"), {}, "--max-cells"),
    Fault("bench-time-zero", ("bench", TENT, "--time-limit", "0", "--out", "{dir}/o"), {}, "--time-limit"),
    Fault("bench-name-path", ("bench", TENT, "--name", "../../x", "--out", "{dir}/o"), {}, "--name: must be a plain"),
    Fault("bench-name-slash", ("bench", TENT, "--name", "a/b", "--out", "{dir}/o"), {}, "--name"),
    Fault("bench-out-file", ("bench", TENT, "--out", "{dir}/f"), {"f": "x"}, "exists and is not a folder"),
    Fault("bench-target-missing", ("bench", "{dir}/nope.toml", "--out", "{dir}/o"), {}, "nope.toml"),
]

OTHER_FAULTS = [
    Fault("export-format", ("export", TENT, "--format", "xml", "--out", "{dir}/e"), {}, "xml"),
    Fault("export-cuts", ("export", TENT, "--cuts", "1", "--out", "{dir}/e"), {}, "--cuts"),
    Fault("export-out-under-a-file", ("export", TENT, "--out", "{dir}/f/e"), {"f": "x"}, "cannot create"),
    Fault("export-out-folder", ("export", TENT, "--out", "{dir}"), {}, "is a folder"),
    Fault("construct-kind", ("construct", "yun-step3", TENT), {}, "invalid choice"),
    Fault("construct-groups", ("construct", "liu-groups", TENT, "--groups", "a,b"), {}, "--groups"),
    Fault("construct-groups-count", ("construct", "liu-groups", TENT, "--groups", "0,1"), {}, "--groups"),
    Fault("construct-embed-no-params", ("construct", "embed", TENT, "--how", "zero"), {}, "--params"),
    Fault("construct-out-folder", ("construct", "yun-step1", TENT, "--out", "{dir}"), {}, "is a directory"),
    Fault("construct-valley", ("construct", "he-deep", TENT, "--valley", "-1"), {}, "--valley"),
]

FAULTS = (SPEC_FAULTS + SOLVE_OPTION_FAULTS + CERTIFY_FAULTS + LANDSCAPE_FAULTS + BATCH_FAULTS + REPORT_FAULTS
          + BENCH_FAULTS + OTHER_FAULTS)


def materialise(fault: Fault, folder: Path) -> list[str]:
    """Write the case's files into `folder`; its argv with {dir} replaced."""
    for name, content in fault.files.items():
        path = folder / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return [a.replace("{dir}", str(folder)) for a in fault.argv]


def clean_error(code: int, err: str, fault: Fault) -> str:
    """'' when the answer is a clean one-line error of the expected kind, else what is wrong."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    if "Traceback" in err:
        return "traceback"
    if code != fault.code:
        return f"exit code {code}, expected {fault.code}"
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr"
    if fault.expect not in lines[0]:
        return f"message lacks {fault.expect!r}"
    return ""


def run_all() -> int:
    """Run every case in process and print a table: case, verdict, message."""
    import contextlib
    import tempfile

    from milpland.cli import main

    clean = 0
    for fault in FAULTS:
        with tempfile.TemporaryDirectory() as tmp:
            argv = materialise(fault, Path(tmp))
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = main(argv)
                except SystemExit as exc:  # argparse
                    code = exc.code
        problem = clean_error(code, err.getvalue(), fault)
        clean += not problem
        first = (err.getvalue().strip().splitlines() or [""])[0].replace(tmp, "<dir>")
        print(f"{'ok ' if not problem else 'BAD'} {fault.name:34s} {problem or first}")
    print(f"{clean} of {len(FAULTS)} bad inputs give a clean one-line error")
    return 0 if clean == len(FAULTS) else 1


if __name__ == "__main__":
    sys.exit(run_all())
