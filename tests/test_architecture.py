"""The package layout is the pipeline: stages import only lower stages, and no module imports
itself back through others (docs/ARCHITECTURE.md).  Imports are read with `ast`, those inside
functions included: a late import that closes a cycle is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "milpland"

# Lower number = lower stage.  landscape and points are siblings: neither may import the other.
STAGES = {
    "errors": 0, "records": 0, "interrupt": 0,
    "instance": 1, "cells": 2, "search": 3, "landscape": 4, "points": 4, "runs": 5, "commands": 6,
    "cli": 7, "__init__": 7, "interop": 7,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(path: Path, known: set[str]) -> set[str]:
    """The milpland modules (or packages) that the file imports anywhere in its body."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "milpland"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "milpland":
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known}
    return {m for m in out if m in known}


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported(path, set(mods)) - {name} for name, path in mods.items()}


def test_every_module_has_a_stage():
    assert {stage(m) for m in modules()} <= set(STAGES), "a new top-level module or folder: give it a stage"


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                  if stage(a) != stage(b) and STAGES[stage(b)] >= STAGES[stage(a)])


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Cycles found by a depth-first search (at least one per strongly connected component)."""
    edges = {k: set(v) for k, v in edges.items()}
    # a package's __init__ runs at every import of a module inside it
    for importer in list(edges):
        for target in list(edges[importer]):
            parent = target.rsplit(".", 1)[0]
            if parent in edges and parent != importer and not importer.startswith(parent + "."):
                edges[importer].add(parent)
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return cycles


def test_stages_import_only_lower_stages():
    found = upward_imports(graph())
    assert not found, "imports of a stage that is not lower:\n" + "\n".join(found)


def test_no_import_cycles():
    found = import_cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_checks_see_what_they_forbid(tmp_path):
    """An upward late import (written to a file and read back) and cycles are reported."""
    path = tmp_path / "m.py"
    path.write_text("import os\n\ndef f():\n    from milpland.search.solve import solve_global\n")
    edges = graph()
    edges["milpland.cells.problem"] = edges["milpland.cells.problem"] | imported(path, set(modules()))
    assert upward_imports(edges) == ["milpland.cells.problem -> milpland.search.solve"]
    assert import_cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
