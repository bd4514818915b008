"""Chain-wise selection on NamedTuples of tensors whose leading dimension is the chain."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


def where(mask: Tensor, a: T, b: T) -> T:
    """Per chain, fields of ``a`` where ``mask`` (C,) is true, else of ``b`` (fields are (C,) or (C, ...))."""
    column = mask.unsqueeze(-1)
    return type(a)(*(torch.where(mask if x.dim() == 1 else column if x.dim() == 2 else
                                 mask.reshape(mask.shape + (1,) * (x.dim() - 1)), x, y) for x, y in zip(a, b)))
