"""Stochastic-gradient Langevin dynamics (Welling and Teh 2011), optionally preconditioned; all chains in one
tensor.

One step with step size ``h``, a diagonal preconditioner ``G`` (identity for plain SGLD) and the (minibatch
estimate of the) gradient ``g`` of the log density, at posterior temperature ``T`` (``langevin``)::

    position <- position + h * G * g + sqrt(2 * h * G * T) * N(0, I)

There is no Metropolis correction: the chain carries an ``O(h)`` discretisation bias. A step that lands where
the log density or its gradient is not finite is rejected and counted (``guard``).
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


class SGLDState(NamedTuple):
    """``position`` and ``logdensity_grad`` ``C x D``, ``logdensity`` ``C`` (a minibatch estimate with
    minibatches) and the step counter ``iteration`` ``()``, which drives step-size schedules."""

    position: Tensor
    logdensity: Tensor
    logdensity_grad: Tensor
    iteration: Tensor


class SGLDInfo(NamedTuple):
    """``is_divergent`` ``C``: the step was rejected by the non-finite guard."""

    is_divergent: Tensor


def init(position: Tensor, logdensity: LogDensity) -> SGLDState:
    """The state at ``position`` ``C x D``, where the gradient must be finite."""
    value, grad = logdensity.value_and_grad(position)
    if not bool(torch.isfinite(grad).all()):
        raise ValueError("the log density's gradient is not finite at the initial position")
    return SGLDState(position, value, grad, torch.zeros((), dtype=torch.long))


def build_kernel():
    """Returns ``kernel(state, generator, logdensity, step_size, temperature, inverse_mass=None) -> (state,
    info)``; ``inverse_mass`` is the preconditioner ``G``, ``C x D`` or ``1 x D`` (``None``: identity)."""

    def kernel(state: SGLDState, generator: torch.Generator | None, logdensity: LogDensity, step_size: float,
               temperature: float, inverse_mass: Tensor | None = None) -> tuple[SGLDState, SGLDInfo]:
        variance = step_size if inverse_mass is None else (step_size * inverse_mass).expand_as(state.position)
        drift = (torch.mul(state.logdensity_grad, step_size) if inverse_mass is None
                 else variance * state.logdensity_grad)
        position = state.position + drift.add_(langevin_noise(variance, temperature, generator, like=state.position))
        value, grad = logdensity.value_and_grad(position)
        ok = finite_step(position, value, grad)
        kept = keep_where(ok, (position, value, grad), (state.position, state.logdensity, state.logdensity_grad))
        new = SGLDState(*kept, state.iteration + 1)
        return new, SGLDInfo(~ok)

    return kernel


def sgld(logdensity: LogDensity, num_warmup: int, *, step_size: float | Schedule = 1e-4,
         posterior_temperature: float = 1.0) -> Algorithm:
    """SGLD as an ``Algorithm``; ``step(state, batch, generator)`` uses the minibatch estimate
    ``logdensity.at(batch)`` of a ``MinibatchLogDensity``, or ``logdensity`` itself when ``batch`` is ``None``.
    Its info holds ``lp``, ``step_size`` and ``diverging``.

    Args:
        logdensity: The target.
        num_warmup: Unused (nothing adapts); warm-up draws are discarded by the runner.
        step_size: ``h``, or a ``Schedule`` (e.g. ``PolynomialDecay``). Stability needs ``h`` below
            ``2 / L`` with ``L`` the largest curvature of ``-log p``, which grows with the number of data; the
            default ``1e-4`` suits a BNN on a few hundred standardised data.
        posterior_temperature: ``T`` of the noise (``inference.sgmcmc.langevin``); 1 samples the target.
    """
    del num_warmup
    schedule = as_schedule(step_size)
    temperature = check_temperature(posterior_temperature)
    kernel = build_kernel()

    def step(state: SGLDState, batch, generator) -> tuple[SGLDState, dict[str, Tensor]]:
        h = schedule(int(state.iteration))
        state, info = kernel(state, generator, at_batch(logdensity, batch), h, temperature)
        return state, step_info(state.logdensity, h, info.is_divergent)

    return Algorithm(lambda position: init(position, logdensity), step, schedule.is_sampling)
