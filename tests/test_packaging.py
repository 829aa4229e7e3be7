"""Every third-party package the library imports is declared in pyproject.toml, so a fresh
install never meets an ImportError that only a package's own dependencies happened to hide."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions

import pytest
from conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def imported_modules() -> set[str]:
    """The top-level names of every module imported anywhere under src/seq2seq."""
    names = set()
    for path in (ROOT / "src" / "seq2seq").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"seq2seq"}


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_every_imported_package_is_declared():
    distributions = packages_distributions()
    missing = {
        module: distributions.get(module, [module])
        for module in imported_modules()
        if not {name.lower() for name in distributions.get(module, [module])} & declared()
    }
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
