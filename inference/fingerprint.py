"""What determines a sampling run, as plain values a checkpoint stores and a resumed run must match.

A checkpoint is only valid for the run that wrote it: the same model (architecture, priors, likelihood), the
same data, the same starting points, sampler, options, dtype, seed and chains. Models and log densities are
arbitrary Python objects, so besides their descriptions (``repr``, a hash of the data tensors) the run
records the log density (and, for a ``ProbModel``, the log prior) summed over the starting points: any change
to the target that the descriptions miss (another activation, prior scale or noise prior) changes these
numbers. They are compared with a relative tolerance, so a resume on another thread count still matches.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

#: Relative tolerance of float entries (log densities at the starting points) when comparing configurations.
REL_TOL = 1e-6

#: How a configuration entry is named in the message of a refused checkpoint.
LABELS = {
    "target": "model or log density",
    "data": "training data (hash of the tensors)",
    "init": "starting points (hash)",
    "log_prior_at_init": "prior (log prior at the starting points)",
    "logdensity_at_init": "log density at the starting points (model, priors, likelihood or data)",
    "num_chains": "number of chains",
    "dim": "number of parameters",
}


def tensor_hash(*tensors: Tensor) -> str:
    """A short SHA-256 of the tensors' dtypes, shapes and values (16 hex digits)."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def describe_target(target: Any) -> str:
    """``repr`` of a model object, or the qualified name of a plain function."""
    if callable(target) and not hasattr(target, "dim") and hasattr(target, "__qualname__"):
        return f"{getattr(target, '__module__', '?')}.{target.__qualname__}"
    text = repr(target)
    return text if " at 0x" not in text else type(target).__qualname__


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between a checkpoint's configuration and this run's, one per entry."""
    out = []
    for key in sorted(set(saved) | set(current), key=lambda k: (k not in LABELS, k)):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if _same(a, b):
            continue
        out.append(f"{LABELS.get(key, key)}: {_short(a)} in the checkpoint, {_short(b)} now")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return a == b


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
