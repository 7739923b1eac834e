"""What freehub imports is what it declares, at versions that keep its safety promises."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> dict[str, str]:
    """Normalised distribution name -> its version specifier, from the installed package's metadata."""
    declared = {}
    for requirement in requires("freehub") or []:
        if "extra ==" in requirement:
            continue
        match = re.match(r"^([A-Za-z0-9._-]+)\s*(.*)$", requirement.split(";")[0])
        declared[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return declared


def _imported_top_level_modules() -> set[str]:
    modules = set()
    for path in [*ROOT.joinpath("freehub").rglob("*.py"), *ROOT.joinpath("cli").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"freehub", "__future__"}


def test_every_directly_imported_package_is_declared() -> None:
    declared = _declared()
    owners = packages_distributions()
    undeclared = sorted(
        module for module in _imported_top_level_modules()
        if not any(re.sub(r"[-_.]+", "-", dist).lower() in declared for dist in owners.get(module, [module]))
    )
    assert undeclared == []


def test_torch_floor_makes_weights_only_loading_safe() -> None:
    floor = re.search(r">=\s*([0-9]+)\.([0-9]+)", _declared()["torch"])
    assert floor is not None and (int(floor.group(1)), int(floor.group(2))) >= (2, 6)
