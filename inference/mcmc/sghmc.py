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

from probnets.model import LogDensity


class SGHMCState(NamedTuple):
    """Per chain ``(C, D)``: position, the log density's gradient there, momentum, the running mean
    ``grad_mean`` and second moment ``grad_sq`` of the gradient, and the adaptive window ``tau`` of those
    running averages."""

    position: Tensor
    logdensity_grad: Tensor
    momentum: Tensor
    grad_mean: Tensor
    grad_sq: Tensor
    tau: Tensor


class SGHMCInfo(NamedTuple):
    """``is_divergent`` ``(C,)``: the step was rejected for a non-finite gradient or position."""

    is_divergent: Tensor


def init(position: Tensor, logdensity: LogDensity) -> SGHMCState:
    """Zero momentum; gradient moments seeded from the gradient at ``position`` (``(C, D)``), which must be
    finite."""
    _, grad = logdensity.value_and_grad(position)
    if not bool(torch.isfinite(grad).all()):
        raise ValueError("the log density's gradient is not finite at init_position")
    return SGHMCState(position, grad, torch.zeros_like(position), grad, grad.square() + 1e-8,
                      torch.ones_like(position))


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
        _, new_grad = logdensity.value_and_grad(position)
        ok = (torch.isfinite(new_grad).all(-1) & torch.isfinite(position).all(-1)).unsqueeze(-1)
        new = SGHMCState(torch.where(ok, position, state.position), torch.where(ok, new_grad, grad),
                         torch.where(ok, momentum, 0.0), grad_mean, grad_sq, tau)
        return new, SGHMCInfo(~ok.squeeze(-1))

    return kernel


def sample(logdensity: LogDensity, init_position: Tensor, *, num_burnin: int = 1000, num_samples: int = 100,
           thin: int = 5, step_size: float = 1e-2, friction: float = 0.05,
           generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Run every chain for ``num_burnin`` adapting steps, then keep every ``thin``-th of ``num_samples * thin``.

    Args:
        logdensity: The target.
        init_position: Starting points ``(C, D)``.
        num_burnin, num_samples, thin: Schedule (see above).
        step_size: ``eps`` in the module docstring (the study's "lr", 1e-2). friction: ``alpha`` (0.05).
        generator: Seeds the injected noise.

    Returns:
        Draws ``(C, num_samples, D)`` and the number of divergent steps per chain ``(C,)``.
    """
    for name, value, low in (("num_burnin", num_burnin, 0), ("num_samples", num_samples, 1), ("thin", thin, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size!r}")
    if not 0 < friction <= 1:
        raise ValueError(f"friction must be in (0, 1], got {friction!r}")
    if init_position.dim() != 2 or init_position.shape[-1] != logdensity.dim:
        raise ValueError(f"init_position must have shape (C, {logdensity.dim}), got {tuple(init_position.shape)}")
    kernel = build_kernel()
    state = init(init_position, logdensity)
    divergences = torch.zeros(init_position.shape[0], dtype=torch.long, device=init_position.device)
    draws = []
    for step in range(num_burnin + num_samples * thin):
        state, info = kernel(state, generator, logdensity, step_size, friction, step < num_burnin)
        divergences += info.is_divergent
        if step >= num_burnin and (step - num_burnin + 1) % thin == 0:
            draws.append(state.position)
    return torch.stack(draws, 1), divergences
