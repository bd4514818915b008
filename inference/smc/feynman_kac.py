"""The Feynman-Kac particle loop: move, reweight by a potential, accumulate the evidence, resample.

A Feynman-Kac model is a sequence of targets ``pi_k(theta) ~ pi_{k-1}(theta) G_k(theta)`` with Markov moves
``M_k``. One step of the particle approximation (Del Moral 2004; Chopin and Papaspiliopoulos 2020) is

- move: ``theta_i ~ M_k(theta_i, .)`` (a kernel leaving ``pi_{k-1}`` invariant, or a jitter);
- reweight: ``log W_i += log G_k(theta_i)``, normalised;
- evidence: ``log Z += log sum_i W_i^{old} G_k(theta_i)`` (an unbiased estimate of ``Z`` in product form);
- resample when the effective sample size falls below ``threshold * P`` (any ``inference.smc.resampling``
  scheme, chosen by name).

Particles live in one batched structure: a tensor ``... x P x D`` or a NamedTuple of tensors that all lead
with ``... x P`` (a move state such as ``moves.HMCState``); leading dims ``...`` are independent populations.
A NaN (or ``+inf``) log potential makes its particle a zero-weight particle; they are counted in
``ReweightInfo.num_invalid``. A population left without any particle of positive weight is a ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from inference.smc import resampling

__all__ = ["ReweightInfo", "SMCInfo", "SMCState", "gather", "init", "positions", "reweight", "resample", "step"]


class SMCState(NamedTuple):
    """A weighted particle population.

    Attributes:
        particles: A tensor ``... x P x D`` or a NamedTuple of tensors leading with ``... x P``.
        log_weights: Normalised log weights ``... x P`` (``logsumexp`` 0 per population).
        log_evidence: Running log-evidence estimate ``...``.
    """

    particles: Any
    log_weights: Tensor
    log_evidence: Tensor


class ReweightInfo(NamedTuple):
    """``log_evidence_increment``, ``ess`` (after reweighting, before resampling) and ``num_invalid`` (particles
    whose log potential was NaN or ``+inf``), each ``...``."""

    log_evidence_increment: Tensor
    ess: Tensor
    num_invalid: Tensor


class SMCInfo(NamedTuple):
    """One Feynman-Kac step: the move's info (``None`` without a move), the reweighting, and ``resampled``
    ``...`` (which populations were resampled)."""

    move: Any
    reweight: ReweightInfo
    resampled: Tensor


def positions(particles: Any) -> Tensor:
    """The positions ``... x P x D`` of a particle structure (the tensor itself or its ``position`` field)."""
    return particles if isinstance(particles, Tensor) else particles.position


def init(particles: Any) -> SMCState:
    """Uniform weights and zero log evidence for the particles ``... x P x D`` (or a state holding them)."""
    position = positions(particles)
    if position.dim() < 2 or position.shape[-2] == 0:
        raise ValueError(f"particle positions must have shape (..., P, D) with P >= 1, got {tuple(position.shape)}")
    shape = position.shape[:-1]
    log_weights = torch.full(shape, -math.log(shape[-1]), dtype=position.dtype, device=position.device)
    return SMCState(particles, log_weights, position.new_zeros(shape[:-1]))


def reweight(state: SMCState, log_potential: Tensor) -> tuple[SMCState, ReweightInfo]:
    """Multiply the weights by ``exp(log_potential)`` ``... x P`` and add the log normaliser to the evidence.

    Raises:
        ValueError: if a population has no particle with a positive weight afterwards (e.g. every log
            potential NaN), naming the populations.
    """
    if log_potential.shape != state.log_weights.shape:
        raise ValueError(f"log_potential must have the weights' shape {tuple(state.log_weights.shape)}, got "
                         f"{tuple(log_potential.shape)}")
    invalid = torch.isnan(log_potential) | (log_potential == torch.inf)
    log_potential = log_potential.masked_fill(invalid, -torch.inf)
    unnormalised = state.log_weights + log_potential
    increment = torch.logsumexp(unnormalised, dim=-1)
    dead = ~torch.isfinite(increment)
    if bool(dead.any()):
        where = dead.nonzero().tolist()
        raise ValueError(f"every particle of population(s) {where[:10]} has zero weight after reweighting "
                         f"({int(invalid[dead].sum())} NaN log potentials among them): the potential is NaN or "
                         "-inf wherever the particles are")
    log_weights = unnormalised - increment.unsqueeze(-1)
    info = ReweightInfo(increment, resampling.effective_sample_size(log_weights), invalid.sum(-1))
    return SMCState(state.particles, log_weights, state.log_evidence + increment), info


def gather(particles: Any, ancestors: Tensor) -> Any:
    """Select particles by ``ancestors`` ``... x P`` (indices along the particle dim) in every tensor field."""
    dim = ancestors.dim() - 1

    def take(leaf):
        if not isinstance(leaf, Tensor):
            return leaf
        index = ancestors.reshape(*ancestors.shape, *(1,) * (leaf.dim() - ancestors.dim()))
        return torch.take_along_dim(leaf, index, dim=dim)

    return pytree.tree_map(take, particles)


def resample(state: SMCState, generator: torch.Generator | None, *, resampling_scheme: str = "systematic",
             threshold: float = 0.5) -> tuple[SMCState, Tensor]:
    """Resample the populations whose ESS is below ``threshold * P`` (all of them when ``threshold >= 1``).

    Args:
        resampling_scheme: A name in ``inference.smc.resampling.RESAMPLERS``.
        threshold: ESS fraction below which a population is resampled; 0 never resamples.

    Returns:
        The state (resampled populations get uniform weights) and ``resampled`` ``...``.
    """
    resampler = resampling.get(resampling_scheme)
    num = state.log_weights.shape[-1]
    if threshold >= 1:
        chosen = torch.ones(state.log_weights.shape[:-1], dtype=torch.bool, device=state.log_weights.device)
    else:
        chosen = resampling.effective_sample_size(state.log_weights) < threshold * num
    if not bool(chosen.any()):
        return state, chosen
    ancestors = resampler(resampling.normalise(state.log_weights), generator=generator)
    ancestors = torch.where(chosen.unsqueeze(-1), ancestors, torch.arange(num, device=ancestors.device))
    log_weights = torch.where(chosen.unsqueeze(-1), torch.full_like(state.log_weights, -math.log(num)),
                              state.log_weights)
    return SMCState(gather(state.particles, ancestors), log_weights, state.log_evidence), chosen


def step(state: SMCState, generator: torch.Generator | None, *, log_potential: Callable[[Any], Tensor],
         move: Callable[[Any, torch.Generator | None], tuple[Any, Any]] | None = None,
         resampling_scheme: str = "systematic", threshold: float = 0.5) -> tuple[SMCState, SMCInfo]:
    """One Feynman-Kac step: move, reweight by ``log_potential(particles)`` ``... x P``, maybe resample.

    Args:
        log_potential: ``particles -> log G_k`` at the moved particles, ``... x P``.
        move: ``(particles, generator) -> (particles, info)``, e.g. a jitter or an MCMC move of
            ``inference.smc.moves`` bound to its target; ``None`` skips the move (the first step from exact
            draws of ``pi_0``).
        resampling_scheme, threshold: As in ``resample``.
    """
    move_info = None
    if move is not None:
        particles, move_info = move(state.particles, generator)
        state = state._replace(particles=particles)
    state, reweight_info = reweight(state, log_potential(state.particles))
    state, resampled = resample(state, generator, resampling_scheme=resampling_scheme, threshold=threshold)
    return state, SMCInfo(move_info, reweight_info, resampled)
