"""Modules of the engine's packages read without importing torch, for ``--help`` and argument choices.

Importing ``inference.registry`` or ``surrogates.names`` runs their package's ``__init__``, which imports torch
(about 1.5 s) or BoTorch (about 6 s). Both modules import nothing heavy themselves, so when their package is not
imported yet, the module's file is executed on its own under another module name: the names and defaults then
cost a few milliseconds. Running a command uses the package's own module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def light_module(package: str, name: str) -> ModuleType:
    """``package.name``, or a standalone copy of its module when ``package`` is not imported yet."""
    standalone = f"probnets_app._standalone_{package}_{name}"
    if package in sys.modules:
        return importlib.import_module(f"{package}.{name}")
    if standalone in sys.modules:
        return sys.modules[standalone]
    spec = importlib.util.find_spec(package)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return importlib.import_module(f"{package}.{name}")
    path = Path(next(iter(spec.submodule_search_locations))) / f"{name}.py"
    module_spec = importlib.util.spec_from_file_location(standalone, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[standalone] = module
    module_spec.loader.exec_module(module)
    return module
