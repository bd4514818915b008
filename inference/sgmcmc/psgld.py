"""Preconditioned SGLD (Li, Chen, Carlson and Carin 2016): the SGLD kernel with the RMSprop preconditioner
(``preconditioner``), adapted during warm-up and frozen afterwards."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from inference.base import Algorithm
from inference.minibatch import at_batch
from inference.sgmcmc import preconditioner, sgld
from inference.sgmcmc.info import step_info
from inference.sgmcmc.langevin import check_temperature
from inference.sgmcmc.schedules import Schedule, as_schedule
from probnets.model import LogDensity
from probnets.validation import check_positive_float


class PSGLDState(NamedTuple):
    """The SGLD state of the chains and the RMSprop state of their preconditioner."""

    chain: sgld.SGLDState
    rmsprop: preconditioner.RMSprop


def psgld(logdensity: LogDensity, num_warmup: int, *, step_size: float | Schedule = 1e-3, alpha: float = 0.99,
          eps: float = 1e-5, posterior_temperature: float = 1.0) -> Algorithm:
    """pSGLD as an ``Algorithm``; ``step(state, batch, generator)`` takes minibatches as ``sgld`` does and
    reports ``lp``, ``step_size`` and ``diverging``.

    Args:
        logdensity: The target.
        num_warmup: Steps during which the preconditioner adapts (frozen afterwards, so that it leaves the
            target invariant without the ``Gamma`` correction term).
        step_size: ``h`` (half of Li et al.'s ``epsilon``), or a ``Schedule``. The preconditioner makes the
            step roughly ``h`` per coordinate in parameter units, whatever the number of data.
        alpha: RMSprop decay of the squared-gradient average, in ``(0, 1)``.
        eps: RMSprop damping (Li et al.'s ``lambda``): ``G <= 1 / eps``.
        posterior_temperature: ``T`` of the noise (``inference.sgmcmc.langevin``).
    """
    schedule = as_schedule(step_size)
    temperature = check_temperature(posterior_temperature)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    eps = check_positive_float(eps, "eps")
    kernel = sgld.build_kernel()

    def init(position: Tensor) -> PSGLDState:
        chain = sgld.init(position, logdensity)
        return PSGLDState(chain, preconditioner.init(chain.logdensity_grad))

    def step(state: PSGLDState, batch, generator) -> tuple[PSGLDState, dict[str, Tensor]]:
        iteration = int(state.chain.iteration)
        rmsprop = state.rmsprop
        if iteration < num_warmup:
            rmsprop = preconditioner.update(rmsprop, state.chain.logdensity_grad, alpha)
        h = schedule(iteration)
        chain, info = kernel(state.chain, generator, at_batch(logdensity, batch), h, temperature,
                             preconditioner.inverse_mass(rmsprop, eps))
        return PSGLDState(chain, rmsprop), step_info(chain.logdensity, h, info.is_divergent)

    return Algorithm(init, step, schedule.is_sampling)
