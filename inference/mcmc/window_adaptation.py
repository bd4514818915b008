"""Stan's windowed warm-up around any gradient-based kernel: dual-averaged step size and a (co)variance
mass matrix, adapted on Stan's window schedule (``inference.mcmc.adaptation``); afterwards both are frozen.

The adapted algorithm's state carries the chain state and the adaptation state together, so that one
``step`` covers both warm-up and sampling and a checkpoint of the state resumes either bit-for-bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from inference.base import Algorithm
from inference.mcmc import adaptation, hmc, integrators
from inference.mcmc.adaptation import AdaptationState, build_schedule
from inference.mcmc.integrators import Integrator
from inference.mcmc.mass_matrix import MassMatrix
from inference.mcmc.sample_stats import sample_stats
from inference.mcmc.step_size import find_reasonable_step_size
from probnets.model import LogDensity

#: ``kernel(state, generator, logdensity, step_size, mass_matrix) -> (state, info)``; the state has
#: ``position`` ``C x D`` and the info ``acceptance_rate`` ``C``.
Kernel = Callable[[Any, torch.Generator, LogDensity, Tensor, MassMatrix], tuple[Any, NamedTuple]]


class AdaptiveState(NamedTuple):
    """Chain state plus everything the warm-up adapts (per chain unless ``pool_chains``)."""

    chain: Any
    adaptation: AdaptationState
    iteration: Tensor  # () int64


def window_adaptation(kernel: Kernel, logdensity: LogDensity, num_warmup: int, *, dense: bool = False,
                      target_accept: float = 0.8, initial_step_size: float = 0.1, pool_chains: bool = False,
                      initial_inverse_mass: Tensor | None = None,
                      init: Callable[[Tensor, LogDensity], Any] = hmc.init,
                      integrator: str | Integrator = "velocity_verlet") -> Algorithm:
    """Wrap a kernel with Stan's warm-up. The returned ``Algorithm``'s info is a dict of ArviZ-named
    sample statistics.

    Args:
        kernel: Any transition ``kernel(state, generator, logdensity, step_size, mass_matrix) -> (state,
            info)`` whose state has ``position`` ``C x D`` and whose info has the acceptance probability
            ``acceptance_rate`` ``C`` (e.g. ``nuts.build_kernel()``, or a MALA kernel).
        num_warmup: Number of adaptation iterations (0 = no adaptation).
        dense: Adapt a dense instead of a diagonal mass matrix.
        target_accept: Target of the dual-averaging step-size adaptation.
        pool_chains: Estimate one mass matrix from all chains together (shared by every chain).
        initial_inverse_mass: Starting inverse mass matrix (default identity).
        init: The kernel's ``init(position, logdensity) -> state`` (default: that of HMC and NUTS).
        integrator: The integrator of the initial step-size heuristic (an ``Integrator`` or its name); give
            the kernel's own.
    """
    schedule = build_schedule(num_warmup)
    integrator = integrators.resolve(integrator)

    def heuristic(chain, metric: MassMatrix, step_size: Tensor, generator) -> Tensor:
        return find_reasonable_step_size(chain, logdensity, metric, step_size, generator, integrator=integrator)

    def init_state(position: Tensor) -> AdaptiveState:
        num_chains, dim = position.shape
        dtype, device = position.dtype, position.device
        inverse = None if initial_inverse_mass is None else initial_inverse_mass.to(dtype=dtype, device=device)
        step_size = torch.full((num_chains,), initial_step_size, dtype=dtype, device=device)
        shape = (dim,) if pool_chains else (num_chains, dim)
        return AdaptiveState(init(position, logdensity),
                             adaptation.init(step_size, shape, dense=dense, inverse_mass=inverse),
                             torch.zeros((), dtype=torch.long))

    def step(state: AdaptiveState, batch, generator) -> tuple[AdaptiveState, dict[str, Tensor]]:
        i = int(state.iteration)
        adapted = state.adaptation
        if i == 0 and num_warmup > 0:
            adapted = adaptation.restart_step_size(adapted, state.chain, generator, heuristic)
        chain, info = kernel(state.chain, generator, logdensity, adapted.step_size, adapted.mass_matrix)
        stats = sample_stats(chain, info, adapted.step_size)
        if i < num_warmup:
            adapted = adaptation.update_step_size(adapted, info.acceptance_rate, target=target_accept)
            adapted = adaptation.update_mass_matrix(adapted, schedule, i, chain, generator, heuristic)
            if i == num_warmup - 1:
                adapted = adaptation.finalize(adapted)
        return AdaptiveState(chain, adapted, state.iteration + 1), stats

    return Algorithm(init_state, step)


__all__ = ["AdaptiveState", "Kernel", "window_adaptation"]
