"""Atomic checkpoints of a sampling run that load without unpickling arbitrary objects.

A run's state (NamedTuples of tensors) is flattened into its tensor leaves; on resume the leaves are
poured back into the structure of a freshly initialised state, so ``torch.load(weights_only=True)``
suffices and a resumed run continues bit-for-bit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.utils import _pytree as pytree


def save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically: a reader sees the previous checkpoint or this one, never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def flatten_state(state: Any) -> list:
    leaves, _ = pytree.tree_flatten(state)
    return leaves


def unflatten_like(template: Any, leaves: list) -> Any:
    """Rebuild a state with ``template``'s structure from saved ``leaves`` (moved to the template's device)."""
    template_leaves, spec = pytree.tree_flatten(template)
    if len(template_leaves) != len(leaves):
        raise ValueError("checkpoint does not match this run's sampler state (different algorithm or settings)")
    restored = []
    for t, saved in zip(template_leaves, leaves):
        if isinstance(t, torch.Tensor):
            if not isinstance(saved, torch.Tensor) or saved.shape != t.shape:
                raise ValueError("checkpoint does not match this run's sampler state (shape mismatch)")
            saved = saved.to(device=t.device)
        restored.append(saved)
    return pytree.tree_unflatten(restored, spec)
