"""Markov moves of a particle population: kernels that leave a given target invariant, and the jitters of
open-horizon SMC.

Every move acts on a batched population ``... x D`` (e.g. ``P x D`` particles, or ``R x P x D`` for ``R``
independent populations): particles move independently, all in one tensor. The Metropolis-corrected moves
take a state (``init`` or ``init_with_gradient``), a ``torch.Generator`` and the log density the particles
should keep invariant, and return the new state with a ``MoveInfo``:

- ``random_walk_metropolis``: Gaussian random walk with a Metropolis-Hastings correction (no gradients).
- ``mala``: the Metropolis-adjusted Langevin algorithm, which is HMC with one leapfrog step.
- ``hmc``: the engine's HMC transition (``inference.mcmc.hmc``: integrators, trajectory, NaN-safe energy).
- ``preconditioned_crank_nicolson``: the Ornstein-Uhlenbeck proposal that leaves a Gaussian prior
  ``N(prior_mean, prior_variance)`` invariant, with a Metropolis-Hastings correction on the rest of the
  target only (the likelihood part): its acceptance does not degrade with the dimension of the prior.

The jitters move positions without any correction (``open-horizon SMC``: the next reweighting corrects them):

- ``random_walk_jitter``: ``theta + step_size * scale * N(0, I)``.
- ``ou_jitter``: one exact Ornstein-Uhlenbeck step, which preserves ``N(prior_mean, prior_variance)``.

``step_size`` is a number or a tensor that broadcasts against the leading dims ``...`` (one per particle,
``R x 1`` one per population). A proposal whose log density is NaN (or whose energy is) is rejected and
counted in ``MoveInfo.is_divergent``, never propagated.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from inference.mcmc import hmc as hmc_lib
from inference.mcmc import mass_matrix as metrics
from inference.mcmc import proposal
from inference.mcmc.hmc import HMCState
from inference.mcmc.integrators import Integrator
from inference.mcmc.mass_matrix import MassMatrix
from probnets.model import LogDensity

__all__ = ["HMCState", "MoveInfo", "PositionState", "hmc", "init", "init_with_gradient", "mala", "ou_jitter",
           "preconditioned_crank_nicolson", "random_walk_jitter", "random_walk_metropolis"]


class PositionState(NamedTuple):
    """Particles of gradient-free moves: ``position`` ``... x D`` and its ``logdensity`` ``...``."""

    position: Tensor
    logdensity: Tensor


class MoveInfo(NamedTuple):
    """Per-particle diagnostics of one move, each ``...``.

    Attributes:
        acceptance_rate: Metropolis-Hastings acceptance probability ``min(1, ratio)`` (0 for a NaN proposal).
        is_accepted: Whether the particle moved.
        is_divergent: The proposal's log density was NaN (or ``+inf``) or, for HMC, its energy error was NaN
            or above the divergence threshold.
        num_grad_evals: Gradient evaluations spent on the particle.
    """

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_divergent: Tensor
    num_grad_evals: Tensor


def init(position: Tensor, logdensity: LogDensity) -> PositionState:
    """State of gradient-free moves (``random_walk_metropolis``, ``preconditioned_crank_nicolson``)."""
    with torch.no_grad():
        return PositionState(position, logdensity(position))


def init_with_gradient(position: Tensor, logdensity: LogDensity) -> HMCState:
    """State of gradient moves (``mala``, ``hmc``): position, log density and its gradient."""
    return hmc_lib.init(position, logdensity)


def _per_particle(value: float | Tensor, batch_shape: torch.Size, like: Tensor) -> Tensor:
    """``value`` (a number or a tensor broadcasting against ``batch_shape``) as a ``batch_shape`` tensor."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device).expand(batch_shape)


def _metropolis(log_ratio: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Accept with probability ``min(1, exp(log_ratio))``; a NaN ratio is a rejection (``proposal``)."""
    delta = proposal.energy_error(log_ratio.new_zeros(()), -log_ratio)
    return proposal.metropolis_accept(delta, generator), proposal.acceptance_probability(delta)


def random_walk_jitter(position: Tensor, generator: torch.Generator | None, step_size: float | Tensor,
                       scale: Tensor | None = None) -> Tensor:
    """``position + step_size * scale * N(0, I)``, ``... x D`` (no correction).

    Args:
        step_size: Standard deviation of the jitter (times ``scale``), broadcasting against ``...``.
        scale: Optional per-coordinate scales broadcasting against ``... x D`` (e.g. posterior standard
            deviations).
    """
    std = _per_particle(step_size, position.shape[:-1], position).unsqueeze(-1)
    if scale is not None:
        std = std * scale
    noise = torch.randn(position.shape, generator=generator, dtype=position.dtype, device=position.device)
    return position + std * noise


def ou_jitter(position: Tensor, generator: torch.Generator | None, step_size: float | Tensor,
              prior_mean: float | Tensor = 0.0, prior_variance: float | Tensor = 1.0) -> Tensor:
    """One exact Ornstein-Uhlenbeck step ``m + z (theta - m) + sqrt(v (1 - z^2)) N(0, I)`` with
    ``z = exp(-step_size / (2 v))``, ``... x D``; it leaves ``N(m, diag(v))`` invariant.

    Args:
        step_size: Time step ``dt`` (0: no move; large: a fresh prior draw), broadcasting against ``...``.
        prior_mean, prior_variance: ``m`` and ``v``, numbers or tensors broadcasting against ``... x D``.
    """
    dt = _per_particle(step_size, position.shape[:-1], position).unsqueeze(-1)
    mean = torch.as_tensor(prior_mean, dtype=position.dtype, device=position.device)
    variance = torch.as_tensor(prior_variance, dtype=position.dtype, device=position.device)
    z = torch.exp(-dt / (2 * variance))
    noise = torch.randn(position.shape, generator=generator, dtype=position.dtype, device=position.device)
    return mean + z * (position - mean) + (variance * (1 - z * z)).sqrt() * noise


def _corrected(state: PositionState, candidate: Tensor, generator: torch.Generator | None,
               logdensity: LogDensity, extra_log_ratio: Tensor | None = None) -> tuple[PositionState, MoveInfo]:
    """Metropolis-Hastings step of a gradient-free proposal whose ratio is ``logdensity(candidate) -
    logdensity(position)`` (plus ``extra_log_ratio``)."""
    with torch.no_grad():
        value = logdensity(candidate)
    log_ratio = value - state.logdensity
    if extra_log_ratio is not None:
        log_ratio = log_ratio + extra_log_ratio
    accepted, rate = _metropolis(log_ratio, generator)
    mask = accepted.unsqueeze(-1)
    new = PositionState(torch.where(mask, candidate, state.position), torch.where(accepted, value, state.logdensity))
    divergent = torch.isnan(value) | (value == torch.inf)
    info = MoveInfo(rate, accepted, divergent, torch.zeros_like(accepted, dtype=torch.long))
    return new, info


def random_walk_metropolis(state: PositionState, generator: torch.Generator | None, logdensity: LogDensity,
                           step_size: float | Tensor, scale: Tensor | None = None) -> tuple[PositionState, MoveInfo]:
    """Gaussian random-walk Metropolis-Hastings; leaves ``logdensity`` invariant.

    Args:
        state: Particles ``... x D`` with their log density (``init``).
        logdensity: The invariant target ``(..., D) -> (...)``.
        step_size, scale: The proposal ``theta + step_size * scale * N(0, I)`` (``random_walk_jitter``).
    """
    return _corrected(state, random_walk_jitter(state.position, generator, step_size, scale), generator, logdensity)


def preconditioned_crank_nicolson(state: PositionState, generator: torch.Generator | None, log_likelihood: LogDensity,
                                  step_size: float | Tensor, prior_mean: float | Tensor = 0.0,
                                  prior_variance: float | Tensor = 1.0) -> tuple[PositionState, MoveInfo]:
    """The prior-preserving OU (preconditioned Crank-Nicolson) move; leaves
    ``N(theta; prior_mean, diag(prior_variance)) * exp(log_likelihood(theta))`` invariant.

    The proposal (``ou_jitter``) is reversible with respect to the Gaussian prior, so the Metropolis-Hastings
    ratio is the likelihood ratio alone.

    Args:
        state: Particles ``... x D`` with ``logdensity`` the value of ``log_likelihood`` (``init(position,
            log_likelihood)``).
        log_likelihood: The non-Gaussian part of the target (e.g. a tempered log-likelihood).
        step_size: OU time step ``dt``; the proposal keeps ``z = exp(-dt / (2 prior_variance))`` of the
            deviation from the prior mean.
        prior_mean, prior_variance: The Gaussian prior, numbers or tensors broadcasting against ``... x D``.
    """
    candidate = ou_jitter(state.position, generator, step_size, prior_mean, prior_variance)
    return _corrected(state, candidate, generator, log_likelihood)


def _flat_mass_matrix(mass_matrix: MassMatrix | None, batch_shape: torch.Size, dim: int, like: Tensor) -> MassMatrix:
    """The mass matrix for flattened particles ``N x D``: shared ones pass, per-particle ones are flattened."""
    if mass_matrix is None:
        return metrics.identity(dim, dtype=like.dtype, device=like.device)
    event = 2 if mass_matrix.dense else 1
    if mass_matrix.inverse.dim() == event:
        return mass_matrix
    tail = mass_matrix.inverse.shape[-event:]
    inverse = mass_matrix.inverse.expand(*batch_shape, *tail).reshape(-1, *tail)
    cholesky = (None if mass_matrix.mass_cholesky is None
                else mass_matrix.mass_cholesky.expand(*batch_shape, *tail).reshape(-1, *tail))
    return MassMatrix(inverse, cholesky, mass_matrix.dense)


def hmc(state: HMCState, generator: torch.Generator | None, logdensity: LogDensity, step_size: float | Tensor,
        num_integration_steps: int, mass_matrix: MassMatrix | None = None, *,
        integrator: str | Integrator = "velocity_verlet",
        divergence_threshold: float = proposal.DIVERGENCE_THRESHOLD) -> tuple[HMCState, MoveInfo]:
    """One HMC transition per particle (``inference.mcmc.hmc``); leaves ``logdensity`` invariant.

    Args:
        state: Particles ``... x D`` with log density ``...`` and gradient ``... x D`` (``init_with_gradient``).
        logdensity: The invariant target.
        step_size: Leapfrog step, broadcasting against ``...``.
        num_integration_steps: Integrator steps per trajectory.
        mass_matrix: Shared (``D`` / ``D x D`` inverse) or per particle (inverse ``... x D``, e.g. one per
            population ``R x 1 x D``); identity when ``None``.
        integrator: An ``Integrator`` or its name (``inference.mcmc.integrators``).
        divergence_threshold: Energy error counted as a divergence.
    """
    batch_shape, dim = state.position.shape[:-1], state.position.shape[-1]
    flat = HMCState(state.position.reshape(-1, dim), state.logdensity.reshape(-1),
                    state.logdensity_grad.reshape(-1, dim))
    eps = _per_particle(step_size, batch_shape, state.position).reshape(-1)
    kernel = hmc_lib.build_kernel(divergence_threshold, integrator=integrator)
    new, info = kernel(flat, generator, logdensity, eps,
                       _flat_mass_matrix(mass_matrix, batch_shape, dim, state.position), num_integration_steps)
    shaped = HMCState(new.position.reshape(state.position.shape), new.logdensity.reshape(batch_shape),
                      new.logdensity_grad.reshape(state.position.shape))
    move_info = MoveInfo(info.acceptance_rate.reshape(batch_shape), info.is_accepted.reshape(batch_shape),
                         info.is_divergent.reshape(batch_shape), info.num_grad_evals.reshape(batch_shape))
    return shaped, move_info


def mala(state: HMCState, generator: torch.Generator | None, logdensity: LogDensity, step_size: float | Tensor,
         mass_matrix: MassMatrix | None = None) -> tuple[HMCState, MoveInfo]:
    """The Metropolis-adjusted Langevin algorithm; leaves ``logdensity`` invariant.

    Its proposal ``theta + (eps^2 / 2) M^{-1} grad + eps M^{-1/2} N(0, I)`` with the Metropolis-Hastings
    ratio of the Langevin proposal is exactly one leapfrog step of HMC with fresh momentum, which is how it
    is computed (so it shares HMC's NaN-safe energy and divergence bookkeeping).

    Args:
        state: ``init_with_gradient`` state of the particles ``... x D``.
        step_size: ``eps``; the proposal variance is ``eps^2 M^{-1}``.
        mass_matrix: As in ``hmc``.
    """
    return hmc(state, generator, logdensity, step_size, 1, mass_matrix)
