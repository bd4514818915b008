"""The non-finite guard: a step that lands where the log density, its gradient or the position is not finite
is rejected (the chain stays where it was) and counted as ``diverging``; NaNs never enter the chain."""

from __future__ import annotations

import torch
from torch import Tensor


def finite_step(position: Tensor, logdensity: Tensor, logdensity_grad: Tensor) -> Tensor:
    """``C`` booleans: the proposed ``position`` ``C x D``, its ``logdensity`` ``C`` and gradient ``C x D`` are
    all finite."""
    return (torch.isfinite(position).all(-1) & torch.isfinite(logdensity)
            & torch.isfinite(logdensity_grad).all(-1))


def keep_where(ok: Tensor, new: Tensor, old: Tensor | float) -> Tensor:
    """Per chain, ``new`` where ``ok`` ``C`` holds and ``old`` otherwise (``new`` is ``C`` or ``C x D``)."""
    return torch.where(ok.reshape(ok.shape + (1,) * (new.dim() - ok.dim())), new, old)
