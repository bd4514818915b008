"""The engine contract: an algorithm is a pair of pure-ish functions over NamedTuples of tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from probnets.model import LogDensity


class Algorithm(NamedTuple):
    """``init(theta) -> state`` and ``step(state, batch, generator) -> (state, info)``.

    States and infos are NamedTuples of tensors with a leading chain (or particle) dimension. Full-batch
    samplers bind their data in the log density and ignore ``batch``; minibatch engines consume it.
    ``is_sampling(iteration)`` says whether the state after that iteration (counted from 0, warm-up included)
    may be kept as a draw; ``None`` means every post-warm-up iteration (a cyclical step-size schedule keeps
    only its sampling phase).
    """

    init: Callable[[Tensor], Any]
    step: Callable[[Any, Any, torch.Generator], tuple[Any, Any]]
    is_sampling: Callable[[int], bool] | None = None


def as_logdensity(target, dim: int | None = None) -> LogDensity:
    """Accept a ``LogDensity`` or a plain function ``theta (..., D) -> (...)`` (differentiated by autograd)."""
    if isinstance(target, LogDensity) or (hasattr(target, "value_and_grad") and callable(target)):
        return target
    if callable(target):
        if dim is None:
            raise ValueError("dim is required when the target is a plain function")
        return LogDensity(target, dim)
    raise TypeError(f"target must be a LogDensity or a callable theta -> log density, got {type(target).__name__}")
