"""ChEES-HMC: many-chain HMC whose trajectory length is adapted across chains.

Hoffman, Radul and Sountsov (2021), "An Adaptive MCMC Scheme for Setting Trajectory Lengths in
Hamiltonian Monte Carlo". Every chain uses the same step size and the same (jittered) number of leapfrog
steps, so all chains advance in lockstep with one batched gradient call per step, which is what makes it
fast on vectorised hardware. During warm-up:

- the step size follows dual averaging on the mean of the chains' acceptance probabilities (arithmetic
  with target 0.8 by default; the paper's harmonic mean with target 0.651 is available);
- the trajectory length ``T`` follows an RMSProp-style ascent on the ChEES criterion
  ``1/4 E[(||x' - E x'||^2 - ||x - E x||^2)^2]`` (expectations estimated across chains, in the coordinates
  preconditioned by the mass matrix), with the update clipped to ``+-0.35`` in log space and iterate
  averaging with weight ``t^-1/2``;
- a diagonal (or dense) mass matrix is estimated from all chains pooled, on Stan's window schedule
  (``inference.mcmc.adaptation``, shared with Stan's window adaptation).

The number of leapfrog steps of iteration ``t`` is ``ceil(h_t T / step_size)`` with ``h_t`` from a Halton
sequence (jitter), also after warm-up.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from inference.base import Algorithm
from inference.mcmc import adaptation, integrators
from inference.mcmc import hmc as hmc_lib
from inference.mcmc.adaptation import AdaptationState, build_schedule
from inference.mcmc.integrators import Integrator
from inference.mcmc.sample_stats import sample_stats
from inference.mcmc.step_size import find_reasonable_step_size
from probnets.model import LogDensity

#: Default step-size targets per cross-chain mean of the acceptance probabilities. The paper's harmonic
#: mean with 0.651 (the optimal acceptance rate of HMC in high dimensions, Beskos et al. 2013) lets the
#: worst chain set everyone's step size; on BNN posteriors (protocol H1) the arithmetic mean with 0.8
#: gave 1.2-1.5x the ESS per second at the same R-hat, so it is the default.
TARGET_ACCEPT = {"arithmetic": 0.8, "harmonic": 0.651}
_LOG_UPDATE_CLIP = 0.35
_SQ_GRAD_RATE = 0.05
#: During warm-up the adapted trajectory length may exceed ``max_leapfrog_steps`` steps by this factor.
_WARMUP_CAP_SLACK = 100


class CheesState(NamedTuple):
    chain: hmc_lib.HMCState
    adaptation: AdaptationState  # step size () and mass matrix (D,) or (D, D), shared by all chains
    trajectory_length: Tensor  # () maximum integration time before jitter
    log_trajectory_length_avg: Tensor  # ()
    sq_grad_avg: Tensor  # () running mean of squared criterion gradients
    iteration: Tensor  # () int64


def halton(index: int, base: int = 2) -> float:
    """The ``index``-th (1-based) element of the van der Corput sequence in base ``base``, in (0, 1)."""
    result, fraction = 0.0, 1.0 / base
    while index > 0:
        index, digit = divmod(index, base)
        result += digit * fraction
        fraction /= base
    return result


def chees_gradient(position: Tensor, proposal_position: Tensor, proposal_momentum: Tensor, acceptance: Tensor,
                   is_divergent: Tensor, inverse_mass: Tensor, jitter: float) -> Tensor:
    """Acceptance-weighted cross-chain estimate of ``d ChEES / d log T`` (up to the factor ``T``).

    Args:
        position: Chain states before the transition, ``C x D``.
        proposal_position, proposal_momentum: Trajectory end points before the Metropolis step, ``C x D``.
        acceptance: Metropolis acceptance probabilities, ``C``.
        inverse_mass: Diagonal ``D`` (or dense ``D x D``, whose diagonal is used) inverse mass matrix.
        jitter: The fraction ``h`` of ``T`` integrated this iteration.
    """
    var = inverse_mass.diagonal() if inverse_mass.dim() == 2 else inverse_mass
    finite = torch.isfinite(proposal_position).all(-1) & torch.isfinite(proposal_momentum).all(-1) & ~is_divergent
    weight = torch.where(finite, acceptance, torch.zeros_like(acceptance))
    safe_x = torch.where(finite[:, None], proposal_position, torch.zeros_like(proposal_position))
    safe_p = torch.where(finite[:, None], proposal_momentum, torch.zeros_like(proposal_momentum))
    centre_new = (weight[:, None] * safe_x).sum(0) / (weight.sum() + 1e-20)
    centre_old = position.mean(0)
    dx_new = safe_x - centre_new
    dx_old = position - centre_old
    change = (dx_new * dx_new / var).sum(-1) - (dx_old * dx_old / var).sum(-1)
    per_chain = jitter * change * (dx_new * safe_p).sum(-1)
    per_chain = torch.where(torch.isfinite(per_chain), per_chain, torch.zeros_like(per_chain))
    return (weight * per_chain).sum() / (weight.sum() + 1e-20)


def chees(logdensity: LogDensity, num_warmup: int, *, target_accept: float | None = None,
          acceptance_mean: str = "arithmetic",
          initial_step_size: float = 0.1, learning_rate: float = 0.025, jitter_amount: float = 1.0,
          max_leapfrog_steps: int = 1000, dense: bool = False, adapt_mass_matrix: bool = True,
          divergence_threshold: float = 1000.0, integrator: str | Integrator = "velocity_verlet") -> Algorithm:
    """ChEES-HMC with its warm-up, as an ``Algorithm`` whose info is a dict of ArviZ-named statistics.

    Args:
        logdensity: Target log density over ``C x D`` positions (needs ``C >= 2`` chains).
        num_warmup: Adaptation iterations; afterwards step size and trajectory length are frozen at their
            averaged values.
        target_accept: Target of the pooled acceptance probability (default ``TARGET_ACCEPT[acceptance_mean]``).
        acceptance_mean: How the chains' acceptance probabilities are pooled for the step size:
            ``"arithmetic"`` or ``"harmonic"`` (as in the paper; robust to, but slowed by, stuck chains).
        learning_rate: Adaptation rate of ``log T``.
        jitter_amount: The integration time is drawn from ``[(1 - jitter_amount) T, T]``.
        max_leapfrog_steps: Upper bound on integration steps per iteration.
        dense: Adapt a dense mass matrix (pooled over chains) instead of a diagonal one.
        adapt_mass_matrix: Whether to adapt the mass matrix at all (identity otherwise).
        integrator: An ``Integrator`` or the name of one in ``integrators.INTEGRATORS``.
    """
    if acceptance_mean not in TARGET_ACCEPT:
        raise ValueError(f"acceptance_mean must be one of {tuple(TARGET_ACCEPT)}, got {acceptance_mean!r}")
    target_accept = TARGET_ACCEPT[acceptance_mean] if target_accept is None else target_accept
    if not 0 < jitter_amount <= 1:
        raise ValueError(f"jitter_amount must lie in (0, 1], got {jitter_amount!r}")
    if not (isinstance(max_leapfrog_steps, int) and max_leapfrog_steps >= 1):
        raise ValueError(f"max_leapfrog_steps must be a positive integer, got {max_leapfrog_steps!r}")
    schedule = build_schedule(num_warmup)
    integrator = integrators.resolve(integrator)
    kernel = hmc_lib.build_kernel(divergence_threshold, integrator=integrator)

    def init(position: Tensor) -> CheesState:
        num_chains, dim = position.shape
        if num_chains < 2:
            raise ValueError(f"ChEES-HMC needs at least 2 chains (it adapts across chains), got {num_chains}")
        dtype, device = position.dtype, position.device
        step_size = torch.tensor(initial_step_size, dtype=dtype, device=device)
        return CheesState(
            chain=hmc_lib.init(position, logdensity),
            adaptation=adaptation.init(step_size, (dim,), dense=dense),
            trajectory_length=step_size.clone(),
            log_trajectory_length_avg=torch.zeros((), dtype=dtype, device=device),
            sq_grad_avg=torch.zeros((), dtype=dtype, device=device),
            iteration=torch.zeros((), dtype=torch.long),
        )

    def heuristic(chain, metric, step_size, generator) -> Tensor:
        """One step size for all chains: the geometric mean of the per-chain heuristic values."""
        per_chain = find_reasonable_step_size(chain, logdensity, metric, step_size, generator, integrator=integrator)
        return per_chain.log().mean().exp()

    def step(state: CheesState, batch, generator) -> tuple[CheesState, dict[str, Tensor]]:
        i = int(state.iteration)
        adapted = state.adaptation
        if i == 0 and num_warmup > 0:
            adapted = adaptation.restart_step_size(adapted, state.chain, generator, heuristic)
        step_size, metric = adapted.step_size, adapted.mass_matrix
        jitter = (1.0 - jitter_amount) + jitter_amount * halton(i + 1)
        num_steps = min(max_leapfrog_steps, max(1, math.ceil(jitter * float(state.trajectory_length) / float(step_size))))
        chain, info = kernel(state.chain, generator, logdensity, step_size, metric, num_steps)
        stats = sample_stats(chain, info, step_size)
        if i >= num_warmup:
            return state._replace(chain=chain, iteration=state.iteration + 1), stats

        adapted = adaptation.update_step_size(
            adapted, _pooled_acceptance(info.acceptance_rate, info.is_divergent, acceptance_mean), target=target_accept)
        grad = chees_gradient(state.chain.position, info.proposal_position, info.proposal_momentum,
                              info.acceptance_rate, info.is_divergent, metric.inverse, jitter)
        sq_grad_avg = (1 - _SQ_GRAD_RATE) * state.sq_grad_avg + _SQ_GRAD_RATE * grad**2
        corrected = sq_grad_avg / (1 - (1 - _SQ_GRAD_RATE) ** (i + 1))
        log_update = (learning_rate * grad / (corrected + 1e-20).sqrt()).clamp(-_LOG_UPDATE_CLIP, _LOG_UPDATE_CLIP)
        trajectory_length = state.trajectory_length * log_update.exp()
        weight = (i + 1) ** -0.5
        log_t_avg = weight * trajectory_length.log() + (1 - weight) * state.log_trajectory_length_avg
        # The cap bounds the steps each iteration takes, not the adapted length: clamping the length to the cap
        # times the current (early, often small) step size collapsed the adaptation (a correlated Gaussian: 1.6
        # steps per draw with a cap of 16 against 9.3 uncapped); the loose bound only keeps it finite.
        trajectory_length = _clamp_trajectory_length(trajectory_length, adapted.step_size,
                                                     _WARMUP_CAP_SLACK * max_leapfrog_steps)

        if adapt_mass_matrix:
            adapted = adaptation.update_mass_matrix(adapted, schedule, i, chain, generator, heuristic)
        if i == num_warmup - 1:
            adapted = adaptation.finalize(adapted)
            trajectory_length = _clamp_trajectory_length(log_t_avg.exp(), adapted.step_size, max_leapfrog_steps)
        new_state = CheesState(chain, adapted, trajectory_length, log_t_avg, sq_grad_avg, state.iteration + 1)
        return new_state, stats

    return Algorithm(init, step)


def _pooled_acceptance(acceptance: Tensor, is_divergent: Tensor, kind: str) -> Tensor:
    """Cross-chain acceptance statistic for the step size: the arithmetic or harmonic mean over the
    non-divergent chains (0 when every chain diverged)."""
    ok = ~is_divergent
    if not bool(ok.any()):
        return torch.zeros((), dtype=acceptance.dtype, device=acceptance.device)
    a = acceptance[ok]
    return 1.0 / (1.0 / a.clamp_min(1e-10)).mean() if kind == "harmonic" else a.mean()


def _clamp_trajectory_length(trajectory_length: Tensor, step_size: Tensor, max_leapfrog_steps: int) -> Tensor:
    """Between one and ``max_leapfrog_steps`` steps of ``step_size``."""
    return trajectory_length.clamp(step_size, step_size * max_leapfrog_steps)
