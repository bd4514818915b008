"""The non-finite guard: a step that lands where the log density, its gradient or the position is not finite
is rejected (the chain stays where it was) and counted as ``diverging``; NaNs never enter the chain."""

from __future__ import annotations

import torch
from torch import Tensor


def finite_step(position: Tensor, logdensity: Tensor, logdensity_grad: Tensor) -> Tensor:
    """``C`` booleans: the proposed ``position`` ``C x D``, its ``logdensity`` ``C`` and gradient ``C x D`` are
    all finite.

    One reduction: the sum is finite exactly when every term is, except when finite terms overflow it (a
    gradient near the largest float), which is numerical trouble as well."""
    return torch.isfinite(logdensity + logdensity_grad.sum(-1) + position.sum(-1))


def keep_where(ok: Tensor, new, old):
    """Per chain, ``new`` where ``ok`` ``C`` holds and ``old`` otherwise (``new`` is ``C`` or ``C x D``, or a
    tuple of such, with ``old`` the matching tuple; an ``old`` entry may be a number)."""
    if isinstance(new, tuple):
        if bool(ok.all()):
            return new
        return tuple(keep_where(ok, n, o) for n, o in zip(new, old))
    return torch.where(ok.reshape(ok.shape + (1,) * (new.dim() - ok.dim())), new, old)
