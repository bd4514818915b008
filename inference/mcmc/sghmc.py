"""Scale-adapted stochastic-gradient HMC (Chen, Fox and Guestrin 2014; the preconditioner of Springenberg,
Klein, Falkner and Hutter 2016, used by the BNN-surrogate study's SGHMC baseline); all chains in one tensor.

One step, with ``g`` the (possibly stochastic) gradient of the log density, ``m = 1 / sqrt(v)`` the inverse
mass from a running estimate ``v`` of ``g**2``, step size ``eps`` and friction ``alpha``::

    momentum <- (1 - alpha) * momentum + eps**2 * m * g + sqrt(2 * alpha * eps**2 * m) * N(0, I)
    position <- position + momentum

The gradient-noise estimate of the original method is taken as zero, which is exact for full-batch gradients.
The running moments ``v`` (and their adaptive averaging window ``tau``) adapt during burn-in only: with a fixed
preconditioner the dynamics leave the target invariant up to an ``O(eps)`` discretisation bias, and there is no
Metropolis correction. A step that lands where the gradient (or the position) is not finite is a divergence: the
chain stays where it was, with its momentum reset to zero.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from inference.base import Algorithm
from inference.minibatch import at_batch
from probnets.model import LogDensity
from probnets.validation import check_positive_float


class SGHMCState(NamedTuple):
    """Per chain ``(C, D)``: position, the log density's gradient there, momentum, the running mean
    ``grad_mean`` and second moment ``grad_sq`` of the gradient, and the adaptive window ``tau`` of those
    running averages; ``logdensity`` ``(C,)`` is the (minibatch estimate of the) log density at ``position``
    and ``iteration`` ``()`` counts steps (the preconditioner adapts while it is below ``num_warmup``)."""

    position: Tensor
    logdensity: Tensor
    logdensity_grad: Tensor
    momentum: Tensor
    grad_mean: Tensor
    grad_sq: Tensor
    tau: Tensor
    iteration: Tensor


class SGHMCInfo(NamedTuple):
    """``is_divergent`` ``(C,)``: the step was rejected for a non-finite gradient or position."""

    is_divergent: Tensor


def init(position: Tensor, logdensity: LogDensity) -> SGHMCState:
    """Zero momentum; gradient moments seeded from the gradient at ``position`` (``(C, D)``), which must be
    finite."""
    value, grad = logdensity.value_and_grad(position)
    if not bool(torch.isfinite(grad).all()):
        raise ValueError("the log density's gradient is not finite at the initial position")
    return SGHMCState(position, value, grad, torch.zeros_like(position), grad, grad.square() + 1e-8,
                      torch.ones_like(position), torch.zeros((), dtype=torch.long))


def build_kernel():
    """Returns ``kernel(state, generator, logdensity, step_size, friction, adapt) -> (state, info)``."""

    def kernel(state: SGHMCState, generator: torch.Generator | None, logdensity: LogDensity, step_size: float,
               friction: float, adapt: bool) -> tuple[SGHMCState, SGHMCInfo]:
        grad, grad_mean, grad_sq, tau = state.logdensity_grad, state.grad_mean, state.grad_sq, state.tau
        if adapt:
            rate = 1.0 / (tau + 1.0)
            grad_mean = (1 - rate) * grad_mean + rate * grad
            grad_sq = (1 - rate) * grad_sq + rate * grad.square()
            tau = (1 - grad_mean.square() / grad_sq) * tau + 1.0
        inv_mass = grad_sq.clamp_min(1e-16).rsqrt()
        noise = torch.randn(grad.shape, generator=generator, dtype=grad.dtype, device=grad.device)
        scaled = step_size**2 * inv_mass
        momentum = (1 - friction) * state.momentum + scaled * grad + (2 * friction * scaled).sqrt() * noise
        position = state.position + momentum
        value, new_grad = logdensity.value_and_grad(position)
        ok = torch.isfinite(new_grad).all(-1) & torch.isfinite(position).all(-1)
        column = ok.unsqueeze(-1)
        new = SGHMCState(torch.where(column, position, state.position), torch.where(ok, value, state.logdensity),
                         torch.where(column, new_grad, grad), torch.where(column, momentum, 0.0), grad_mean,
                         grad_sq, tau, state.iteration + 1)
        return new, SGHMCInfo(~ok)

    return kernel


def sghmc(logdensity: LogDensity, num_warmup: int, *, step_size: float = 1e-2, friction: float = 0.05) -> Algorithm:
    """Scale-adapted SGHMC as an ``Algorithm``: the preconditioner adapts during the first ``num_warmup`` steps.

    ``step(state, batch, generator)`` uses the minibatch estimate ``logdensity.at(batch)`` of a
    ``MinibatchLogDensity``, or ``logdensity`` itself when ``batch`` is ``None`` (full-batch gradients).
    Its info holds ``lp`` (the log density, a minibatch estimate with minibatches) and ``diverging``.

    Args:
        logdensity: The target.
        num_warmup: Adapting steps.
        step_size: ``eps`` in the module docstring (the study's "lr", 1e-2). friction: ``alpha`` (0.05).
    """
    step_size = check_positive_float(step_size, "step_size")
    if isinstance(friction, bool) or not isinstance(friction, (int, float)) or not 0 < friction <= 1:
        raise ValueError(f"friction must be in (0, 1], got {friction!r}")
    kernel = build_kernel()

    def step(state: SGHMCState, batch, generator) -> tuple[SGHMCState, dict[str, Tensor]]:
        adapt = int(state.iteration) < num_warmup
        state, info = kernel(state, generator, at_batch(logdensity, batch), step_size, friction, adapt)
        return state, {"lp": state.logdensity, "diverging": info.is_divergent}

    return Algorithm(lambda position: init(position, logdensity), step)
