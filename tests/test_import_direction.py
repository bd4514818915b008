"""Imports flow one way: ``probnets_app -> surrogates -> inference -> probnets``.

Every ``.py`` file of the four packages is parsed (not imported), so imports inside functions count as well
as module-level ones: ``import x``, ``from x import y`` and ``importlib.import_module("x")`` /
``__import__("x")`` with a string literal.
"""

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]

#: The packages each package must not import.
FORBIDDEN = {
    "probnets": {"inference", "surrogates", "probnets_app"},
    "inference": {"surrogates", "probnets_app"},
    "surrogates": {"probnets_app"},
    "probnets_app": set(),
}

class Import(NamedTuple):
    path: str  # relative to the repository, e.g. "probnets/bnn.py"
    line: int
    module: str  # as written, e.g. "inference.importance"

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.module}"


def imported_modules(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in ``source``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:  # relative imports stay in their package
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and _is_import_call(node.func) and node.args:
            name = node.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                found.append((node.lineno, name.value))
    return sorted(found)


def _is_import_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def violations() -> list[Import]:
    """Imports of a forbidden package, over every ``.py`` file of the four packages."""
    found = []
    for package, forbidden in FORBIDDEN.items():
        for file in sorted((REPO / package).rglob("*.py")):
            for line, module in imported_modules(file.read_text(encoding="utf-8")):
                if module.split(".")[0] in forbidden:
                    found.append(Import(file.relative_to(REPO).as_posix(), line, module))
    return found


def test_checker_finds_every_import_form():
    source = '''
import os, inference.mcmc
from inference.importance import importance_sample
from . import sibling


def lazy():
    from surrogates import fit
    import importlib
    importlib.import_module("probnets_app.cli")
    return __import__("inference")
'''
    assert imported_modules(source) == [(2, "inference.mcmc"), (2, "os"), (3, "inference.importance"),
                                        (8, "surrogates"), (9, "importlib"), (10, "probnets_app.cli"),
                                        (11, "inference")]


def test_every_package_is_checked():
    assert all(any((REPO / package).rglob("*.py")) for package in FORBIDDEN)


def test_imports_flow_one_way():
    found = violations()
    assert not found, ("imports against the direction probnets_app -> surrogates -> inference -> probnets:\n"
                       + "\n".join(map(str, found)))
