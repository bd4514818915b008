"""Generated kernel modules: written once to a cache directory and imported from there (so numba's
``cache=True`` keeps their machine code on disk), or compiled in memory when no directory is writable."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import types

from probnets.fused_mlp import codegen


def _kernel_dir() -> str | None:
    """A writable directory for generated kernel modules (numba caches their machine code next to them),
    or None (then kernels are compiled in memory for this process only)."""
    candidates = [os.environ.get("PROBNETS_KERNEL_DIR")]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates.append(os.path.join(base, "probnets", "fused_mlp"))
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(os.path.join(tempfile.gettempdir(), f"probnets-fused-mlp-{uid}"))
    for path in candidates:
        if not path:
            continue
        try:
            os.makedirs(path, exist_ok=True)
            if os.access(path, os.W_OK | os.X_OK):
                return path
        except OSError:
            continue
    return None


_MODULES: dict[tuple, object] = {}
_MODULES_LOCK = threading.Lock()


def kernel_module(sizes: tuple[int, ...], act: str, dtype: str, likelihood: str = "gaussian"):
    """The (imported, lazily compiled) generated kernel module for an architecture, likelihood and dtype."""
    tuning = (codegen.UNROLL, codegen.BLOCK, codegen.FUSE_OUT, codegen.UNITS)
    key = (sizes, act, dtype, tuning, likelihood)
    with _MODULES_LOCK:
        module = _MODULES.get(key)
        if module is not None:
            return module
        directory = _kernel_dir()
        source = codegen.kernel_source(sizes, act, dtype, cache=directory is not None, tuning=tuning,
                                       likelihood=likelihood)
        digest = hashlib.sha1(source.encode()).hexdigest()[:20]
        name = f"pnfused_{digest}"
        module = None
        if directory is not None:
            path = os.path.join(directory, name + ".py")
            try:
                if not os.path.exists(path):
                    # Atomic and never rewritten: numba's cache index is keyed on the file's timestamp.
                    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
                    try:
                        with os.fdopen(fd, "w") as fh:
                            fh.write(source)
                        os.replace(tmp, path)
                    finally:
                        if os.path.exists(tmp):
                            os.unlink(tmp)
                with open(path) as fh:
                    if fh.read() != source:  # pragma: no cover - digest collision or tampering
                        raise OSError("unexpected kernel file content")
                # Registered in sys.modules under a top-level name: numba looks the module up by name when
                # it loads cached machine code.
                modname = f"_probnets_fused_{digest}"
                spec = importlib.util.spec_from_file_location(modname, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[modname] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(modname, None)
                    raise
            except OSError:
                module = None
        if module is None:  # no usable cache directory: compile in memory
            source = codegen.kernel_source(sizes, act, dtype, cache=False, tuning=tuning, likelihood=likelihood)
            module = types.ModuleType(f"_probnets_fused_{digest}")
            exec(compile(source, f"<probnets fused kernel {name}>", "exec"), module.__dict__)
        _MODULES[key] = module
        return module
