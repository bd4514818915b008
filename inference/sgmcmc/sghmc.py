"""Scale-adapted stochastic-gradient HMC (Chen, Fox and Guestrin 2014; the preconditioner of Springenberg,
Klein, Falkner and Hutter 2016, used by the BNN-surrogate study's SGHMC baseline); all chains in one tensor.

One step, with ``g`` the (possibly stochastic) gradient of the log density, ``m = 1 / sqrt(v)`` the inverse
mass from a running estimate ``v`` of ``g**2``, step size ``eps`` and friction ``alpha``::

    momentum <- (1 - alpha) * momentum + eps**2 * m * g + sqrt(2 * alpha * eps**2 * m * T) * N(0, I)
    position <- position + momentum

at posterior temperature ``T`` (``langevin``: the noise variance is ``2 T`` times the friction times the
gradient's coefficient ``eps**2 * m``, the fluctuation-dissipation balance that is exact at ``T = 1``). The
gradient-noise estimate of the original method is taken as zero, which is exact for full-batch gradients. The
running moments ``v`` (and their adaptive averaging window ``tau``) adapt during burn-in only: with a fixed
preconditioner the dynamics leave the target invariant up to an ``O(eps)`` discretisation bias, and there is no
Metropolis correction. A step that lands where the log density, its gradient or the position is not finite is a
divergence (``guard``): the chain stays where it was, with its momentum reset to zero.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from inference.base import Algorithm
from inference.minibatch import at_batch
from inference.sgmcmc.guard import finite_step, keep_where
from inference.sgmcmc.info import step_info
from inference.sgmcmc.langevin import check_temperature, langevin_noise
from inference.sgmcmc.schedules import Schedule, as_schedule
from probnets.model import LogDensity


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
    """``is_divergent`` ``(C,)``: the step was rejected by the non-finite guard."""

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
    """Returns ``kernel(state, generator, logdensity, step_size, friction, adapt, temperature=1) -> (state,
    info)``; ``adapt`` updates the preconditioner's running moments before the step."""

    def kernel(state: SGHMCState, generator: torch.Generator | None, logdensity: LogDensity, step_size: float,
               friction: float, adapt: bool, temperature: float = 1.0) -> tuple[SGHMCState, SGHMCInfo]:
        grad, grad_mean, grad_sq, tau = state.logdensity_grad, state.grad_mean, state.grad_sq, state.tau
        if adapt:
            rate = 1.0 / (tau + 1.0)
            grad_mean = (1 - rate) * grad_mean + rate * grad
            grad_sq = (1 - rate) * grad_sq + rate * grad.square()
            tau = (1 - grad_mean.square() / grad_sq) * tau + 1.0
        inv_mass = grad_sq.clamp_min(1e-16).rsqrt()
        scaled = step_size**2 * inv_mass
        momentum = ((1 - friction) * state.momentum + scaled * grad
                    + langevin_noise(friction * scaled, temperature, generator))
        position = state.position + momentum
        value, new_grad = logdensity.value_and_grad(position)
        ok = finite_step(position, value, new_grad)
        kept = keep_where(ok, (position, value, new_grad, momentum), (state.position, state.logdensity, grad, 0.0))
        new = SGHMCState(*kept, grad_mean, grad_sq, tau, state.iteration + 1)
        return new, SGHMCInfo(~ok)

    return kernel


def sghmc(logdensity: LogDensity, num_warmup: int, *, step_size: float | Schedule = 1e-2, friction: float = 0.05,
          posterior_temperature: float = 1.0) -> Algorithm:
    """Scale-adapted SGHMC as an ``Algorithm``: the preconditioner adapts during the first ``num_warmup`` steps.

    ``step(state, batch, generator)`` uses the minibatch estimate ``logdensity.at(batch)`` of a
    ``MinibatchLogDensity``, or ``logdensity`` itself when ``batch`` is ``None`` (full-batch gradients).
    Its info holds ``lp`` (the log density, a minibatch estimate with minibatches), ``step_size`` and
    ``diverging``.

    Args:
        logdensity: The target.
        num_warmup: Adapting steps.
        step_size: ``eps`` in the module docstring (the study's "lr", 1e-2), or a ``Schedule``.
        friction: ``alpha`` (0.05), in ``(0, 1]``.
        posterior_temperature: ``T`` of the noise (``inference.sgmcmc.langevin``).
    """
    schedule = as_schedule(step_size)
    temperature = check_temperature(posterior_temperature)
    if isinstance(friction, bool) or not isinstance(friction, (int, float)) or not 0 < friction <= 1:
        raise ValueError(f"friction must be in (0, 1], got {friction!r}")
    kernel = build_kernel()

    def step(state: SGHMCState, batch, generator) -> tuple[SGHMCState, dict[str, Tensor]]:
        iteration = int(state.iteration)
        eps = schedule(iteration)
        previous = schedule(iteration - 1) if iteration > 0 else eps
        if eps != previous:
            # The momentum is a displacement per step (eps times velocity): rescaling it keeps the velocity,
            # else a shrinking step leaves the chains hotter than T (cyclical schedules: ~20% wider).
            state = state._replace(momentum=state.momentum * (eps / previous))
        state, info = kernel(state, generator, at_batch(logdensity, batch), eps, friction, iteration < num_warmup,
                             temperature)
        return state, step_info(state.logdensity, eps, info.is_divergent)

    return Algorithm(lambda position: init(position, logdensity), step, schedule.is_sampling)
