"""Symplectic integrators for Hamiltonian dynamics, batched over chains."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor

from inference.mcmc.mass_matrix import MassMatrix
from probnets.model import LogDensity


class IntegratorState(NamedTuple):
    """Phase-space point per chain: position and momentum ``(C, D)``, log density ``(C,)`` and its gradient."""

    position: Tensor
    momentum: Tensor
    logdensity: Tensor
    logdensity_grad: Tensor


Integrator = Callable[[IntegratorState, Tensor], IntegratorState]


def velocity_verlet(logdensity: LogDensity, mass_matrix: MassMatrix) -> Integrator:
    """One leapfrog step ``(state, step_size) -> state``; ``step_size`` is a scalar or per-chain ``(C,)``
    tensor and may be negative (integration backwards in time). One gradient evaluation per step."""

    def one_step(state: IntegratorState, step_size: Tensor) -> IntegratorState:
        eps = step_size.unsqueeze(-1) if step_size.dim() else step_size
        momentum = state.momentum + 0.5 * eps * state.logdensity_grad
        position = state.position + eps * mass_matrix.velocity(momentum)
        value, grad = logdensity.value_and_grad(position)
        momentum = momentum + 0.5 * eps * grad
        return IntegratorState(position, momentum, value, grad)

    return one_step
