"""Symplectic integrators for Hamiltonian dynamics, batched over chains.

Every integrator here is a palindromic splitting of the flow into momentum kicks and position drifts, which
makes it reversible and volume preserving (so the Metropolis correction stays exact). Integrators differ in
their weights and in how many gradient evaluations one step costs, which they declare so that step counts
can be compared across integrators.
"""

from __future__ import annotations

import math
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


Step = Callable[[IntegratorState, Tensor], IntegratorState]


class Integrator(NamedTuple):
    """A palindromic kick-drift splitting scheme; ``integrator(logdensity, mass_matrix)`` gives its step.

    Attributes:
        name: The name it is selected by.
        coefficients: Weights of one step of size ``eps`` as alternating momentum kicks and position drifts,
            ``(b_1, a_1, b_2, ..., a_k, b_{k+1})``: ``p += b_i eps grad``, ``q += a_i eps M^{-1} p``. The
            sequence reads the same backwards (reversibility); the ``a`` and the ``b`` each sum to 1
            (consistency).
    """

    name: str
    coefficients: tuple[float, ...]

    @property
    def num_grad_evals(self) -> int:
        """Gradient evaluations per step: one after each drift."""
        return len(self.coefficients) // 2

    def __call__(self, logdensity: LogDensity, mass_matrix: MassMatrix) -> Step:
        """One step ``(state, step_size) -> state``; ``step_size`` is a scalar or per-chain ``(C,)`` tensor
        and may be negative (integration backwards in time)."""
        # Each distinct weight times the step size is computed once per step (a palindrome repeats them),
        # and a weight of 1 not at all: these small tensor operations are a visible share of a step.
        weights = tuple(dict.fromkeys(self.coefficients))
        slots = [weights.index(c) for c in self.coefficients]
        first_kick, drift_kicks = slots[0], tuple(zip(slots[1::2], slots[2::2]))

        def one_step(state: IntegratorState, step_size: Tensor) -> IntegratorState:
            eps = step_size.unsqueeze(-1) if step_size.dim() else step_size
            scaled = [eps if w == 1.0 else w * eps for w in weights]
            position, value, grad = state.position, state.logdensity, state.logdensity_grad
            momentum = state.momentum + scaled[first_kick] * grad
            for drift, kick in drift_kicks:
                position = position + scaled[drift] * mass_matrix.velocity(momentum)
                value, grad = logdensity.value_and_grad(position)
                momentum = momentum + scaled[kick] * grad
            return IntegratorState(position, momentum, value, grad)

        return one_step


#: Leapfrog (Stormer-Verlet): second order, one gradient per step.
velocity_verlet = Integrator("velocity_verlet", (0.5, 1.0, 0.5))

_MINIMAL_NORM_LAMBDA = 0.1931833275037836
#: McLachlan's (1995) two-stage minimal-norm scheme: second order like leapfrog, with a leading error term
#: about ten times smaller; two gradients per step (Blanes, Casas and Sanz-Serna 2014 for its use in HMC).
mclachlan = Integrator("mclachlan", (_MINIMAL_NORM_LAMBDA, 0.5, 1.0 - 2.0 * _MINIMAL_NORM_LAMBDA, 0.5,
                                     _MINIMAL_NORM_LAMBDA))

_YOSHIDA_W1 = 1.0 / (2.0 - math.cbrt(2.0))
_YOSHIDA_W0 = 1.0 - 2.0 * _YOSHIDA_W1
#: Yoshida's (1990) fourth-order composition of three leapfrog steps (the middle one backwards); three
#: gradients per step.
yoshida = Integrator("yoshida", (0.5 * _YOSHIDA_W1, _YOSHIDA_W1, 0.5 * (_YOSHIDA_W0 + _YOSHIDA_W1), _YOSHIDA_W0,
                                 0.5 * (_YOSHIDA_W0 + _YOSHIDA_W1), _YOSHIDA_W1, 0.5 * _YOSHIDA_W1))

INTEGRATORS = {integrator.name: integrator for integrator in (velocity_verlet, mclachlan, yoshida)}


def resolve(integrator: str | Integrator) -> Integrator:
    """The ``Integrator`` named by ``integrator`` (an ``Integrator`` is returned as is)."""
    if isinstance(integrator, Integrator):
        return integrator
    if not isinstance(integrator, str) or integrator not in INTEGRATORS:
        raise ValueError(f"integrator must be one of {tuple(INTEGRATORS)} or an Integrator, got {integrator!r}")
    return INTEGRATORS[integrator]
