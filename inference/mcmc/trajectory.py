"""The Hamiltonian and the start of a trajectory, shared by every HMC-type kernel."""

from __future__ import annotations

import torch
from torch import Tensor

from inference.mcmc.integrators import IntegratorState
from inference.mcmc.mass_matrix import MassMatrix


def hamiltonian(point: IntegratorState, mass_matrix: MassMatrix) -> Tensor:
    """Total energy ``H = -log p(q) + K(p)`` per chain.

    Args:
        point: Phase-space points, position and momentum ``C x D``.
        mass_matrix: The metric of the kinetic energy ``K``.

    Returns:
        Energies ``C``.
    """
    return -point.logdensity + mass_matrix.kinetic_energy(point.momentum)


def start(state, mass_matrix: MassMatrix, generator: torch.Generator | None) -> tuple[IntegratorState, Tensor]:
    """Draw fresh momenta ``p ~ N(0, M)`` at the chains' positions.

    Args:
        state: Chain states with ``position`` ``C x D`` and its cached ``logdensity`` ``C`` and
            ``logdensity_grad`` ``C x D``.
        mass_matrix: The metric the momenta are drawn from.
        generator: Source of the momentum draw (one ``C x D`` normal draw).

    Returns:
        The trajectory's first point and its energy ``C``.
    """
    position = state.position
    momentum = mass_matrix.sample_momentum(position.shape, generator, position.dtype, position.device)
    point = IntegratorState(position, momentum, state.logdensity, state.logdensity_grad)
    return point, hamiltonian(point, mass_matrix)
