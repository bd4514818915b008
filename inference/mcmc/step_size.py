"""Initial step-size heuristic (Hoffman & Gelman 2014, Algorithm 4), per chain."""

from __future__ import annotations

import torch
from torch import Tensor

from inference.mcmc import hmc, integrators, proposal, trajectory
from inference.mcmc.integrators import Integrator
from inference.mcmc.mass_matrix import MassMatrix
from probnets.model import LogDensity


def find_reasonable_step_size(state, logdensity: LogDensity, mass_matrix: MassMatrix, step_size: Tensor,
                              generator: torch.Generator | None, *, target: float = 0.8,
                              max_iterations: int = 100, integrator: str | Integrator = "velocity_verlet") -> Tensor:
    """Double or halve each chain's step size until one integrator step's acceptance crosses ``target``.

    Args:
        state: Current chain states: ``position`` ``C x D``, with its ``logdensity`` and ``logdensity_grad``
            when the state caches them (else they are evaluated).
        step_size: Starting step sizes, ``C`` (or a scalar, broadcast).
        integrator: The sampler's integrator (an ``Integrator`` or its name).

    Returns:
        Step sizes ``C``; a chain whose acceptance never crosses ``target`` keeps its last value.
    """
    if not hasattr(state, "logdensity_grad"):
        state = hmc.init(state.position, logdensity)
    position = state.position
    num_chains = position.shape[0]
    eps = torch.as_tensor(step_size, dtype=position.dtype, device=position.device).expand(num_chains).clone()
    start, initial_energy = trajectory.start(state, mass_matrix, generator)
    one_step = integrators.resolve(integrator)(logdensity, mass_matrix)
    log_target = torch.log(torch.tensor(target, dtype=position.dtype))
    direction = None
    active = torch.ones(num_chains, dtype=torch.bool, device=position.device)
    for _ in range(max_iterations):
        end = one_step(start, eps)
        delta = proposal.energy_error(initial_energy, trajectory.hamiltonian(end, mass_matrix))
        above = -delta > log_target
        if direction is None:
            direction = torch.where(above, 1.0, -1.0).to(position.dtype)
        active &= (above == (direction > 0))
        if not bool(active.any()):
            break
        eps = torch.where(active, eps * torch.pow(2.0, direction), eps)
        eps = eps.clamp(1e-10, 1e4)
    return eps
