"""Suites: many instances from one file, and resolving command-line targets into instances.

A suite file (``models/suites/*.toml``) has a ``[suite]`` table and lists spec files,
generates a grid of specs, or both::

    [suite]
    name = "smoke"
    description = "a handful of tiny instances"
    specs = ["../specs/*.toml"]          # paths or globs, relative to the suite file

    [[grid]]
    group = "sine"                        # default: the suite name
    name = "{group}-n{data.n}-s{data.seed}"   # optional; default built from the varied keys
    [grid.base]                           # an ordinary spec table, without `name`
    data = { generator = "sine", n = 6 }
    network = { hidden = [2] }
    [grid.vary]                           # dotted spec keys -> lists of values (Cartesian product)
    "data.n" = [6, 8]
    "network.activation" = ["relu", "leaky_relu"]

A grid point's name is ``group`` followed by one label per varied key
(``n6``, ``d1``, ``s0``, ``w2``, the activation and loss names, ``key<value>`` otherwise).

Errors: a malformed suite file (bad TOML, unknown keys, a glob that matches nothing,
a `vary` value that is not a list, duplicate instance names) raises `MilplandError`
up front.  A spec that does not parse (a broken spec file, or a grid point that
`spec_from_dict` rejects) becomes an `Instance` with ``error`` set: the batch turns it
into an error row and goes on.
"""

from __future__ import annotations

import copy
import glob
import itertools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from milpland.errors import MilplandError, SpecError
from milpland.instance.spec import InstanceSpec, load_spec, spec_from_dict

SUITE_KEYS = {"name", "description", "specs"}
GRID_KEYS = {"group", "name", "base", "vary"}
VARY_TABLES = {"data", "network", "loss", "box", "solve"}
# Short labels for the keys that grids usually vary; other keys are labelled by their last part.
LABELS = {"data.n": "n", "data.d": "d", "data.seed": "s", "data.noise": "noise", "network.hidden": "w"}
VALUE_ONLY = {"network.activation", "loss.kind", "data.generator", "loss.reduction"}
GLOB_CHARS = set("*?[")


@dataclass(frozen=True, eq=False)
class Instance:
    """One instance to run: its spec, or the one-line reason why it has none."""

    name: str
    suite: str  # suite name, "" for a spec file given directly
    group: str
    source: str  # the file, and for grid points the grid coordinates
    spec: InstanceSpec | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.spec is not None


def resolve(targets: list[str] | tuple[str, ...]) -> list[Instance]:
    """Spec files, suite files, directories (their *.toml) and globs -> instances, in order."""
    if not targets:
        raise MilplandError("give at least one spec file, suite file, directory or glob")
    instances: list[Instance] = []
    for target in targets:
        for path in _expand(target, base=Path(".")):
            instances.extend(load_file(path))
    return instances


def load_file(path: Path) -> list[Instance]:
    """A suite file -> its instances; any other file -> one instance (or one error instance)."""
    text, table, problem = _read_toml(path)
    if _is_suite(text, table):
        if problem:
            raise MilplandError(f"suite {path}: {problem}")
        return load_suite(path, table=table)
    if problem:
        return [Instance(path.stem, "", "", str(path), None, f"{path}: spec: {problem}")]
    return [_spec_instance(path, suite="", group="")]


def load_suite(path: str | Path, *, table: dict | None = None) -> list[Instance]:
    """All instances of a suite file: its listed specs, then its grids."""
    path = Path(path)
    if table is None:
        _, table, problem = _read_toml(path)
        if problem:
            raise MilplandError(f"suite {path}: {problem}")
    where = f"suite {path}"
    head = table.get("suite")
    if not isinstance(head, dict):
        raise MilplandError(f"{where}: needs a [suite] table with at least a name")
    unknown = set(table) - {"suite", "grid"}
    if unknown:
        raise MilplandError(f"{where}: unknown top-level key(s) {', '.join(sorted(unknown))}; allowed: [suite], [[grid]]")
    _reject(head, SUITE_KEYS, f"{where}: [suite]")
    name = head.get("name")
    if not isinstance(name, str) or not name.strip():
        raise MilplandError(f"{where}: suite.name is required: a non-empty string")
    specs = head.get("specs", [])
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise MilplandError(f"{where}: suite.specs must be a list of paths or globs (strings)")
    grids = table.get("grid", [])
    if isinstance(grids, dict):
        grids = [grids]
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise MilplandError(f"{where}: grid must be [[grid]] tables")
    if not specs and not grids:
        raise MilplandError(f"{where}: lists no instances: give suite.specs or at least one [[grid]]")
    instances = []
    for pattern in specs:
        for spec_path in _expand(pattern, base=path.parent, where=where):
            text, sub, problem = _read_toml(spec_path)
            if _is_suite(text, sub):
                raise MilplandError(f"{where}: {spec_path} is a suite; suites list spec files, not suites")
            if problem:
                instances.append(Instance(spec_path.stem, name, name, str(spec_path), None, f"{spec_path}: spec: {problem}"))
            else:
                instances.append(_spec_instance(spec_path, suite=name, group=name))
    for k, grid in enumerate(grids):
        instances.extend(_grid_instances(grid, suite=name, path=path, where=f"{where}: grid {k + 1}"))
    _check_unique(instances, where)
    return instances


def grid_points(vary: dict) -> list[dict]:
    """The Cartesian product of the varied values, as {dotted key: value} in file order."""
    keys = list(vary)
    return [dict(zip(keys, values)) for values in itertools.product(*(vary[k] for k in keys))]


def point_name(group: str, point: dict, template: str | None = None, spec_table: dict | None = None) -> str:
    """``group-n6-w2-relu`` from the varied values, or the template with {dotted.key} fields filled."""
    if template:
        return _fill(template, group, point, spec_table or {})
    labels = [_label(key, value) for key, value in point.items()]
    return "-".join([group, *labels]) if labels else group


def _grid_instances(grid: dict, *, suite: str, path: Path, where: str) -> list[Instance]:
    _reject(grid, GRID_KEYS, where)
    group = grid.get("group", suite)
    if not isinstance(group, str) or not group.strip():
        raise MilplandError(f"{where}: group must be a non-empty string")
    base = grid.get("base")
    if not isinstance(base, dict):
        raise MilplandError(f"{where}: needs a [grid.base] table (an instance spec without name)")
    if "name" in base:
        raise MilplandError(f"{where}: grid.base.name is not allowed: names come from grid.name or the grid point")
    vary = grid.get("vary", {})
    if not isinstance(vary, dict):
        raise MilplandError(f"{where}: grid.vary must be a table of dotted keys -> lists of values")
    for key, values in vary.items():
        parts = key.split(".")
        if len(parts) != 2 or parts[0] not in VARY_TABLES:
            raise MilplandError(
                f"{where}: vary key {key!r} must be '<table>.<key>' with table one of {', '.join(sorted(VARY_TABLES))}"
            )
        if not isinstance(values, list) or not values:
            raise MilplandError(f"{where}: vary.{key} must be a non-empty list of values")
    template = grid.get("name")
    if template is not None and not isinstance(template, str):
        raise MilplandError(f"{where}: grid.name must be a template string such as '{{group}}-n{{data.n}}'")
    out = []
    for point in grid_points(vary):
        table = copy.deepcopy(base)
        for key, value in point.items():
            section, leaf = key.split(".")
            sub = table.setdefault(section, {})
            if not isinstance(sub, dict):
                raise MilplandError(f"{where}: grid.base.{section} must be a table")
            sub[leaf] = copy.deepcopy(value)
        name = point_name(group, point, template, table)
        table["name"] = name
        coords = ", ".join(f"{k}={v!r}" for k, v in point.items())
        source = f"{path} [{group}: {coords}]" if coords else f"{path} [{group}]"
        try:
            spec = spec_from_dict(table, base_dir=path.parent, source=source)
        except SpecError as exc:
            out.append(Instance(name, suite, group, source, None, f"{name}: {exc}"))
            continue
        out.append(Instance(name, suite, group, source, spec))
    return out


def _spec_instance(path: Path, *, suite: str, group: str) -> Instance:
    try:
        spec = load_spec(path)
    except SpecError as exc:
        return Instance(path.stem, suite, group, str(path), None, str(exc))
    return Instance(spec.name, suite, group or "", str(path), spec)


def _expand(pattern: str, *, base: Path, where: str = "") -> list[Path]:
    """A path, a directory (its *.toml, sorted) or a glob (sorted matches), relative to base."""
    prefix = f"{where}: " if where else ""
    full = Path(pattern) if Path(pattern).is_absolute() else base / pattern
    if GLOB_CHARS & set(pattern):
        matches = sorted(Path(p) for p in glob.glob(str(full), recursive=True) if Path(p).is_file())
        if not matches:
            raise MilplandError(f"{prefix}no file matches {pattern!r}")
        return matches
    if full.is_dir():
        matches = sorted(full.glob("*.toml"))
        if not matches:
            raise MilplandError(f"{prefix}directory {full} holds no .toml files")
        return matches
    if not full.exists():
        raise MilplandError(f"{prefix}file not found: {full}")
    return [full]


def _read_toml(path: Path) -> tuple[str, dict, str]:
    """(text, table, problem): problem is "" when the file is readable TOML."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return "", {}, f"cannot read: {exc}"
    try:
        return text, tomllib.loads(text), ""
    except tomllib.TOMLDecodeError as exc:
        return text, {}, f"not valid TOML: {exc}"


def _is_suite(text: str, table: dict) -> bool:
    # A file that does not parse is still a suite when it says so, so that its error stops the batch.
    return "suite" in table or re.search(r"^\s*\[suite\]", text, flags=re.MULTILINE) is not None


def _reject(table: dict, allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise MilplandError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")


def _check_unique(instances: list[Instance], where: str) -> None:
    seen: dict[str, str] = {}
    for inst in instances:
        if inst.name in seen:
            raise MilplandError(
                f"{where}: two instances are named {inst.name!r} ({seen[inst.name]} and {inst.source}); "
                "give the grids different groups or name templates"
            )
        seen[inst.name] = inst.source


def _label(key: str, value) -> str:
    if key in VALUE_ONLY:
        return str(value)
    short = LABELS.get(key, key.split(".")[-1])
    return f"{short}{_compact(value)}"


def _compact(value) -> str:
    if isinstance(value, list):
        return "x".join(_compact(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _fill(template: str, group: str, point: dict, table: dict) -> str:
    def value(match: re.Match) -> str:
        key = match.group(1)
        if key == "group":
            return group
        if key in point:
            return _compact(point[key])
        section, _, leaf = key.partition(".")
        sub = table.get(section)
        if isinstance(sub, dict) and leaf in sub:
            return _compact(sub[leaf])
        raise MilplandError(f"grid.name: template field {{{key}}} is neither 'group' nor a key of the grid point")

    return re.sub(r"\{([A-Za-z0-9_.]+)\}", value, template)
