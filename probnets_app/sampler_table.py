"""The sampler registry for ``probnets fit --help``, read without importing torch.

``inference.registry`` itself imports nothing heavy (builders are imported on first use), but importing it
runs ``inference/__init__.py``, which imports torch (about 1.5 s). When the ``inference`` package is not
imported yet, the registry's file is executed on its own under another module name: the sampler names,
defaults and summaries for the options and the help text then cost a few milliseconds. Running a fit uses
``inference.registry`` itself.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_STANDALONE = "probnets_app._registry_standalone"


def sampler_registry() -> ModuleType:
    """``inference.registry``, or a standalone copy of its module when ``inference`` is not imported."""
    if "inference" in sys.modules or _STANDALONE in sys.modules:
        if "inference" in sys.modules:
            from inference import registry

            return registry
        return sys.modules[_STANDALONE]
    package = importlib.util.find_spec("inference")  # locates the package without running its __init__
    if package is None or not package.submodule_search_locations:
        from inference import registry

        return registry
    path = Path(next(iter(package.submodule_search_locations))) / "registry.py"
    spec = importlib.util.spec_from_file_location(_STANDALONE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_STANDALONE] = module
    spec.loader.exec_module(module)
    return module
