"""Write the global MILP of an instance as MPS or LP files, for other solvers.

The global problem is the minimum over the m + 1 sign classes (DESIGN §3), so one
file is written per class; the instance's global minimum is the smallest optimum
among them.  Absolute and hinge losses are exact MILPs.  For the squared loss the
file holds the piecewise-linear outer-approximation master (DESIGN §4): every
per-sample loss is bounded below by tangents of (f_i - y_i)^2 at `cuts` residual
values evenly spaced on [-R, R], R = 2 max_i |y_i - mean(y)| (plus 0).  Its optimum
is therefore a LOWER BOUND on the squared-loss minimum, exact only in the limit of
many cuts; the header comment of each file says so (and names the sign class and box).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyomo.environ as pyo

from milpland.cells.scaled import sign_class
from milpland.errors import MilplandError
from milpland.instance.spec import InstanceSpec
from milpland.search.formulation import FormulationOptions, build_master
from milpland.search.solve import sign_class_order

FORMATS = ("mps", "lp")


def tangent_points(spec: InstanceSpec, cuts: int) -> np.ndarray:
    """Residual values at which (f - y)^2 is replaced by its tangents."""
    radius = 2.0 * float(np.max(np.abs(spec.y - spec.y.mean()))) or 1.0
    return np.unique(np.concatenate([np.linspace(-radius, radius, cuts), [0.0]]))


def add_squared_tangents(model: pyo.ConcreteModel, spec: InstanceSpec, points: np.ndarray) -> None:
    """e_i >= 2 r (f_i - y_i) - r^2 for every sample i and tangent point r."""
    model.tangents = pyo.ConstraintList()
    for i in model.I:
        for r in points:
            r = float(r)
            model.tangents.add(model.e[i] >= 2.0 * r * (model.f[i] - float(spec.y[i])) - r * r)


def export_model(spec: InstanceSpec, *, out_prefix: str | Path, fmt: str = "mps", cuts: int = 41,
                 formulation: FormulationOptions = FormulationOptions()) -> list[Path]:
    """Write one file per sign class, named <prefix>-pos<k>.<fmt>; returns the paths."""
    if fmt not in FORMATS:
        raise MilplandError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if spec.network.depth != 1:
        raise MilplandError("export handles one hidden layer (the exact MILP of DESIGN §3)")
    if spec.loss.kind == "logistic":  # exponential cones: neither an MPS/LP MILP nor a finite set of tangents
        raise MilplandError("loss.kind: export writes MILPs, which cannot hold the logistic loss; use milpland solve")
    if spec.loss.decayed:  # the penalty is a sum of norms (second-order cones, DESIGN §4d): not in the MILP
        raise MilplandError("loss.weight_decay: export writes the MILP of the risk, which has no weight-decay term; "
                            "use weight_decay = 0")
    if cuts < 2:
        raise MilplandError(f"--cuts must be at least 2, got {cuts}")
    prefix = Path(out_prefix)
    try:
        prefix.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MilplandError(f"cannot create {prefix.parent}: {exc.strerror}") from None
    paths = []
    for n_positive in sign_class_order(spec):
        model = build_master(spec, sign_class(n_positive, spec.width), formulation)
        if spec.loss.kind == "squared":
            add_squared_tangents(model, spec, tangent_points(spec, cuts))
        path = prefix.parent / f"{prefix.name}-pos{n_positive}.{fmt}"
        model.write(str(path), io_options={"symbolic_solver_labels": True})  # format from the suffix
        prepend_comment(path, fmt, header(spec, n_positive, cuts))
        paths.append(path)
    return paths


def header(spec: InstanceSpec, n_positive: int, cuts: int) -> list[str]:
    lines = [f"milpland export of {spec.name} (instance hash {spec.instance_hash()}), {spec.architecture()}",
             f"sign class: the first {n_positive} of {spec.width} output weights positive; the global minimum "
             f"over the box is the smallest optimum over the {len(sign_class_order(spec))} class files",
             f"box: |u~|, |a~| <= {spec.box.weight}; loss {spec.loss.kind} ({spec.loss.reduction})"]
    if spec.loss.kind == "squared":
        lines.append(f"squared loss replaced by {cuts} tangents per sample: the optimum is a LOWER BOUND")
    return lines


def prepend_comment(path: Path, fmt: str, lines: list[str]) -> None:
    marked = [f"\\* {line} *\\" if fmt == "lp" else f"* {line}" for line in lines]
    path.write_text("\n".join(marked) + "\n" + path.read_text())
