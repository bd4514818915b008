"""Hamiltonian Monte Carlo with a fixed number of leapfrog steps; all chains in one batched tensor."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from inference.base import Algorithm
from inference.mcmc import integrators, proposal, trajectory, tree_util
from inference.mcmc.integrators import Integrator
from inference.mcmc.mass_matrix import MassMatrix
from probnets.model import LogDensity


class HMCState(NamedTuple):
    """Position ``(C, D)`` with its log density ``(C,)`` and gradient ``(C, D)``."""

    position: Tensor
    logdensity: Tensor
    logdensity_grad: Tensor


class HMCInfo(NamedTuple):
    """Per-chain diagnostics of one transition (``(C,)`` each).

    ``num_grad_evals`` is ``num_integration_steps`` times the integrator's gradient evaluations per step.
    ``proposal_position``/``proposal_momentum`` are the end point of the trajectory before the Metropolis
    correction (used by trajectory-length adaptation).
    """

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_divergent: Tensor
    energy: Tensor
    num_integration_steps: Tensor
    num_grad_evals: Tensor
    proposal_position: Tensor
    proposal_momentum: Tensor


def init(position: Tensor, logdensity: LogDensity) -> HMCState:
    value, grad = logdensity.value_and_grad(position)
    return HMCState(position, value, grad)


def build_kernel(divergence_threshold: float = proposal.DIVERGENCE_THRESHOLD, *,
                 integrator: str | Integrator = "velocity_verlet"):
    """Returns ``kernel(state, generator, logdensity, step_size, mass_matrix, num_integration_steps)``.

    ``step_size`` is a scalar or per-chain ``(C,)``; ``num_integration_steps`` an int or per-chain ``(C,)``
    tensor (chains that finish early are held fixed while the others integrate on).

    Args:
        divergence_threshold: Energy error above which a transition counts as divergent.
        integrator: An ``Integrator`` or the name of one in ``integrators.INTEGRATORS``.
    """
    integrator = integrators.resolve(integrator)

    def kernel(state: HMCState, generator, logdensity: LogDensity, step_size: Tensor, mass_matrix: MassMatrix,
               num_integration_steps: int | Tensor) -> tuple[HMCState, HMCInfo]:
        position = state.position
        num_chains = position.shape[0]
        step_size = torch.as_tensor(step_size, dtype=position.dtype, device=position.device)
        point, initial_energy = trajectory.start(state, mass_matrix, generator)
        one_step = integrator(logdensity, mass_matrix)
        steps = torch.as_tensor(num_integration_steps, device=position.device).expand(num_chains)
        max_steps = int(steps.max())
        uniform = bool((steps == max_steps).all())
        for i in range(max_steps):
            moved = one_step(point, step_size)
            point = moved if uniform else tree_util.where(i < steps, moved, point)
        energy = trajectory.hamiltonian(point, mass_matrix)
        delta = proposal.energy_error(initial_energy, energy)
        accepted = proposal.metropolis_accept(delta, generator)
        new_state = tree_util.where(accepted, HMCState(point.position, point.logdensity, point.logdensity_grad), state)
        info = HMCInfo(
            acceptance_rate=proposal.acceptance_probability(delta),
            is_accepted=accepted,
            is_divergent=proposal.is_divergent(delta, divergence_threshold),
            energy=torch.where(accepted, energy, initial_energy),
            num_integration_steps=steps.clone(),
            num_grad_evals=steps * integrator.num_grad_evals,
            proposal_position=point.position,
            proposal_momentum=point.momentum,
        )
        return new_state, info

    return kernel


def jitter_num_steps(num_steps: int | Tensor, jitter: float, generator: torch.Generator) -> Tensor:
    """A number of integrator steps drawn uniformly from the integers in ``[(1 - jitter) L, (1 + jitter) L]``
    (at least 1) for ``L = num_steps`` (an int, or a tensor of them), with one uniform draw shared by all."""
    steps = torch.as_tensor(num_steps)
    low = torch.ceil((1 - jitter) * steps).clamp(min=1)
    high = torch.floor((1 + jitter) * steps).clamp(min=low)
    u = torch.rand((), generator=generator, dtype=torch.float64)
    return (low + torch.floor(u * (high - low + 1))).clamp(max=high).long()


def hmc(logdensity: LogDensity, step_size: float | Tensor, mass_matrix: MassMatrix,
        num_integration_steps: int | Tensor, *, divergence_threshold: float = proposal.DIVERGENCE_THRESHOLD,
        integrator: str | Integrator = "velocity_verlet") -> Algorithm:
    """HMC with fixed parameters, as an ``Algorithm``."""
    kernel = build_kernel(divergence_threshold, integrator=integrator)

    def step(state, batch, generator):
        return kernel(state, generator, logdensity, step_size, mass_matrix, num_integration_steps)

    return Algorithm(lambda position: init(position, logdensity), step)
