"""Cyclical SG-MCMC (Zhang, Li, Zhang, Chen and Wilson 2020): SGLD or scale-adapted SGHMC driven by the cyclical
cosine step-size schedule (``schedules.CyclicalCosine``), keeping draws only in each cycle's sampling phase.

Every cycle restarts at a large step that moves the chains between modes (exploration) and decays towards zero;
the last ``1 - exploration`` of the cycle samples. Zhang et al.'s Algorithm 1 explores with noise-free
gradient steps; here every step injects the Langevin noise, so each iteration is an SG-MCMC step of the same
target and only the bookkeeping differs. Cycles count from the first iteration, warm-up included: a warm-up of
whole cycles discards their draws. With ``thin``, the runner keeps the last state of every ``thin`` sampling
iterations; a cycle keeps about ``(1 - exploration) * cycle_length / thin`` draws.
"""

from __future__ import annotations

from inference.base import Algorithm
from inference.sgmcmc.schedules import CyclicalCosine
from inference.sgmcmc.sghmc import sghmc
from inference.sgmcmc.sgld import sgld
from probnets.model import LogDensity


def csgld(logdensity: LogDensity, num_warmup: int, *, step_size: float = 1e-4, cycle_length: int = 1000,
          exploration: float = 0.8, posterior_temperature: float = 1.0) -> Algorithm:
    """Cyclical SGLD: ``sgld`` with ``CyclicalCosine(step_size, cycle_length, exploration)``.

    Args:
        logdensity: The target.
        num_warmup: Iterations whose draws are discarded (nothing adapts).
        step_size: The largest step ``h`` of every cycle (its start).
        cycle_length: Iterations per cycle.
        exploration: Fraction of every cycle before its sampling phase, in ``[0, 1)``.
        posterior_temperature: ``T`` of the noise (``inference.sgmcmc.langevin``).
    """
    return sgld(logdensity, num_warmup, step_size=CyclicalCosine(step_size, cycle_length, exploration),
                posterior_temperature=posterior_temperature)


def csghmc(logdensity: LogDensity, num_warmup: int, *, step_size: float = 1e-2, cycle_length: int = 1000,
           exploration: float = 0.8, friction: float = 0.05, posterior_temperature: float = 1.0) -> Algorithm:
    """Cyclical scale-adapted SGHMC: ``sghmc`` with ``CyclicalCosine(step_size, cycle_length, exploration)``;
    the preconditioner adapts during the first ``num_warmup`` iterations.

    Args:
        logdensity: The target.
        num_warmup: Adapting iterations, whose draws are discarded.
        step_size: The largest step ``eps`` of every cycle (its start).
        cycle_length: Iterations per cycle.
        exploration: Fraction of every cycle before its sampling phase, in ``[0, 1)``.
        friction: ``alpha`` of ``sghmc``, in ``(0, 1]``.
        posterior_temperature: ``T`` of the noise (``inference.sgmcmc.langevin``).
    """
    return sghmc(logdensity, num_warmup, step_size=CyclicalCosine(step_size, cycle_length, exploration),
                 friction=friction, posterior_temperature=posterior_temperature)
