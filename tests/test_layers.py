"""Layers point down only: every import inside ``src/serialrepro`` (module level or inside a
function) goes to a module of the same layer or a lower one.

0. the base: families, spaces, schedules and the small shared helpers;
1. grid and particles (plus data sets and sample metrics);
2. chains and models;
3. experiments and the top-level command line.

A package's ``cli.py`` belongs to its package's layer (``grid/cli.py`` is grid: it may not
reach into experiments).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

BASE = 0
#: module (or package prefix) → layer; the longest matching prefix wins
LAYERS: dict[str, int] = {
    "serialrepro": BASE,  # the package itself (its __init__), errors, atomic, budget, …
    "serialrepro.grid.space": BASE,
    "serialrepro.grid": 1,
    "serialrepro.particles": 1,
    "serialrepro.data": 1,
    "serialrepro.metrics": 1,
    "serialrepro.chains": 2,
    "serialrepro.models": 2,
    "serialrepro.experiments": 3,
    "serialrepro.cli": 3,
    "serialrepro.__main__": 3,
}
#: modules of the base layer (anything else directly under serialrepro/ is refused, so a
#: new top-level module gets a layer on purpose)
BASE_MODULES = {"serialrepro", "serialrepro.atomic", "serialrepro.budget",
                "serialrepro.circular", "serialrepro.configio", "serialrepro.densities",
                "serialrepro.devices", "serialrepro.errors", "serialrepro.families",
                "serialrepro.html", "serialrepro.store",
                "serialrepro.loaders", "serialrepro.reconstruction", "serialrepro.schedules"}


def module_names(root: Path = SRC) -> dict[str, Path]:
    """Dotted module name → file, for every module under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, imported module) for every ``serialrepro`` import in the file, at any depth
    (function-level imports included); ``from pkg import mod`` counts as importing
    ``pkg.mod`` when that is a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                found.append((node.lineno, sub if sub in modules else target))
    return [(line, m) for line, m in found if m == "serialrepro" or m.startswith("serialrepro.")]


def layer_of(name: str) -> int:
    """The layer of a module: the longest prefix in :data:`LAYERS`; top-level modules must
    be listed in :data:`BASE_MODULES`."""
    if name.count(".") <= 1 and name not in LAYERS:
        if name not in BASE_MODULES:
            raise KeyError(f"{name} has no layer: add it to BASE_MODULES or LAYERS in "
                           "tests/test_layers.py")
        return BASE
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return LAYERS[best]


def violations(root: Path = SRC) -> list[str]:
    """One line per import of a higher layer: 'module (layer a) line n imports x (layer b)'."""
    modules = module_names(root)
    out = []
    for name, path in modules.items():
        mine = layer_of(name)
        for line, target in imports_of(name, path, modules):
            theirs = layer_of(target)
            if theirs > mine:
                out.append(f"{name} (layer {mine}) line {line} imports {target} "
                           f"(layer {theirs})")
    return out


def test_every_module_has_a_layer():
    for name in module_names():
        layer_of(name)


def test_imports_point_down_only():
    bad = violations()
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad)


def test_the_check_sees_a_function_level_import_of_a_higher_layer(tmp_path):
    """A copy of the package with one bad import (inside a function) is caught, named."""
    pkg = tmp_path / "serialrepro"
    for path in (SRC / "serialrepro").rglob("*.py"):
        dest = pkg / path.relative_to(SRC / "serialrepro")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(path.read_text())
    assert violations(tmp_path) == []
    fam = pkg / "families.py"
    fam.write_text(fam.read_text() + "\n\ndef _bad():\n"
                   "    from serialrepro.grid.priors import three_modes\n\n"
                   "    return three_modes\n")
    (bad,) = violations(tmp_path)
    assert bad.startswith("serialrepro.families (layer 0) line ")
    assert bad.endswith("imports serialrepro.grid.priors (layer 1)")
    (pkg / "grid" / "cli.py").write_text("from serialrepro.experiments import config\n")
    assert any(v.startswith("serialrepro.grid.cli (layer 1) line 1 imports "
                            "serialrepro.experiments.config (layer 3)")
               for v in violations(tmp_path))


def test_a_new_top_level_module_needs_a_layer(tmp_path):
    pkg = tmp_path / "serialrepro"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "newthing.py").write_text("")
    with pytest.raises(KeyError, match="serialrepro.newthing has no layer"):
        violations(tmp_path)
