"""``LogDensity``: what every engine evaluates, an unnormalised log density over flat parameters with its gradient
(and, where one exists, a compiled gradient for compiled samplers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor


class CompiledGradient(NamedTuple):
    """A log density's gradient as a numba function that compiled samplers call from their own numba code.

    ``kernel(theta, *args, value, grad, start, stop)`` evaluates chains ``start..stop-1`` of ``theta``
    ``(C, D)`` into ``value[c]`` ``(C,)`` and ``grad[c]`` ``(C, D)`` (all numpy arrays of one dtype), exactly
    as ``value_and_grad`` would.
    """

    kernel: Any
    args: tuple


class LogDensity:
    """An unnormalised log density over ``theta`` ``(..., D) -> (...)``, with its gradient.

    Wraps a plain function and differentiates it with autograd; models with a known structure return
    subclasses with fused analytic gradients. Engines only call ``value_and_grad``.

    Args:
        fn: ``theta (..., D) -> log density (...)``. Must treat leading dimensions independently.
        dim: ``D``.
    """

    #: True when ``value_and_grad`` runs its own worker threads (a fused CPU kernel): the samplers then run
    #: their small per-step tensor operations single-threaded, so that torch's OpenMP threads do not compete
    #: with the kernel's threads for the cores.
    uses_own_threads: bool = False

    def __init__(self, fn: Callable[[Tensor], Tensor], dim: int):
        self.fn = fn
        self.dim = dim

    def __call__(self, theta: Tensor) -> Tensor:
        return self.fn(theta)

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Log density ``(...)`` and its gradient ``(..., D)``; one backward pass for all chains."""
        with torch.enable_grad():
            theta = theta.detach().requires_grad_(True)
            value = self.fn(theta)
            (grad,) = torch.autograd.grad(value.sum(), theta)
        return value.detach(), grad

    def compiled_gradient(self, dtype: torch.dtype) -> CompiledGradient | None:
        """The gradient for ``theta`` of ``dtype`` as a numba kernel, or None (the default: none exists)."""
        return None

    def count_grad_evals(self, num: int) -> None:
        """Samplers that evaluate ``compiled_gradient`` report their ``num`` evaluations (chain-gradients)
        here, for wrappers that count them."""
