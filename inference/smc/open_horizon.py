"""Open-horizon SMC (Zhao, Mair, Schoen and Sjoelund 2024): one particle filter over the minibatch stream.

The particles of the stochastic block ``phi`` persist across minibatches. One step on a minibatch ``B``:

1. move: ``phi^i ~ M(phi^i, .)`` (a jitter such as a random walk or the prior-preserving OU move, or none);
2. reweight: ``log w^i = log W^i + log G^i`` with ``G^i = p(y_B | phi^i; psi)``; a particle whose likelihood is
   not finite gets weight zero;
3. evidence: ``log Z += log sum_i W^i G^i`` (``W`` normalised), the Feynman-Kac normalising constant, which is
   unbiased in ``Z`` for the model defined by the moves and potentials (with no move: ``p(y; psi)``);
4. the Fisher-identity surrogate ``-(1/|B|) sum_i w^i log p(y_B | phi^i; psi)`` (new normalised weights, held
   fixed): its gradient in ``psi`` is the particle estimate of ``-(1/|B|) grad_psi log p(y_B | y_past; psi)``;
5. resample (stratified by default) when the ESS falls below ``resample_threshold * J`` (always, by default).

Moves, reweighting, evidence and resampling are the shared parts of :mod:`inference.smc.feynman_kac` (state:
its ``SMCState``).

Leading dimensions of the particles ``... x J x D`` are independent filters (e.g. many seeds at once). The
training loop around the step (Adam on ``psi``, best state by validation NLPD, checkpoints) is
:func:`inference.smc.fisher_training.train`; :func:`fit_open_horizon` runs it with this step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from inference.smc import feynman_kac, resampling
from inference.smc.feynman_kac import SMCState
from inference.smc.fisher_training import Move, resolve_move, train
from inference.smc.partial_posterior import PartialPosterior
from probnets.model import Batch, ProbModel
from probnets.validation import check_positive_float, check_positive_int


class OpenHorizonInfo(NamedTuple):
    """Attributes (each ``...``, one per filter):
        log_increment: ``log sum_i W^i G^i`` of this step (``-inf`` when the step was rejected).
        ess: Effective sample size after reweighting.
        num_nonfinite: Particles whose log-likelihood was NaN or ``+inf`` (weight zero).
        resampled: Whether the particles were resampled.
        rejected: Whether the step was rejected: some filter had no particle of positive weight left, and every
            filter kept its state.
        surrogate: The Fisher-identity surrogate, summed over filters (a scalar, differentiable in ``psi``).
    """

    log_increment: Tensor
    ess: Tensor
    num_nonfinite: Tensor
    resampled: Tensor
    rejected: Tensor
    surrogate: Tensor


def init(particles: Tensor) -> SMCState:
    """Equally weighted particles ``... x J x D`` (e.g. prior draws) with ``log Z = 0``."""
    return feynman_kac.init(particles)


def build_kernel(model: ProbModel, move: Move | None = None, *, resample: str = "stratified",
                 resample_threshold: float = 1.0) -> Callable[[SMCState, Batch, torch.Generator],
                                                              tuple[SMCState, OpenHorizonInfo]]:
    """The OHSMC step ``(state, batch, generator) -> (state, info)`` for ``model`` at its current ``psi``.

    Moving, reweighting and resampling are those of :mod:`inference.smc.feynman_kac`; this step adds the
    likelihood potential of the minibatch, keeps its graph to ``psi`` for the Fisher-identity surrogate, and rejects
    (rather than raises on) a step after which a filter has no particle of positive weight.

    Args:
        model: A ``ProbModel`` whose ``theta`` is ``phi`` (e.g. a ``PartialBNN``).
        move: ``(particles, generator) -> particles`` applied before reweighting, or ``None`` (no move).
        resample: A scheme of :mod:`inference.smc.resampling`.
        resample_threshold: Resample when ``ESS < resample_threshold * J`` (``>= 1``: at every step, as the paper).
    """
    resampling.get(resample)
    if not (isinstance(resample_threshold, (int, float)) and resample_threshold >= 0):
        raise ValueError(f"resample_threshold must be a number >= 0, got {resample_threshold!r}")

    def step(state: SMCState, batch: Batch, generator: torch.Generator):
        x, y = model.prepare_batch(batch)
        particles = state.particles if move is None else move(state.particles, generator)
        log_lik = model.log_likelihood(particles, (x, y)).sum(-1)  # ... x J, differentiable in psi
        try:
            moved, reweighted = feynman_kac.reweight(state._replace(particles=particles), log_lik.detach())
        except ValueError:  # a filter without any particle of positive weight: keep the state, skip the step
            nothing = torch.zeros(state.log_weights.shape[:-1], dtype=torch.bool, device=state.log_weights.device)
            info = OpenHorizonInfo(torch.full(nothing.shape, -torch.inf, dtype=state.log_evidence.dtype,
                                              device=nothing.device),
                                   resampling.effective_sample_size(state.log_weights),
                                   (~torch.isfinite(log_lik.detach())).sum(-1), nothing, ~nothing,
                                   log_lik.sum() * math.nan)
            return state, info
        weights = moved.log_weights.exp()
        surrogate = _surrogate(model, particles, log_lik, weights, ~torch.isfinite(log_lik.detach()), (x, y))
        new, resampled = feynman_kac.resample(moved, generator, resampling_scheme=resample,
                                              threshold=resample_threshold)
        info = OpenHorizonInfo(reweighted.log_evidence_increment, reweighted.ess, reweighted.num_invalid, resampled,
                               torch.zeros_like(resampled), surrogate)
        return new._replace(particles=new.particles.detach()), info

    return step


def _surrogate(model: ProbModel, particles: Tensor, log_lik: Tensor, weights: Tensor, bad: Tensor,
               batch: Batch) -> Tensor:
    """``-(1/|B|) sum_i w^i log p(y_B | phi^i; psi)`` summed over filters, with zero-weight particles left out.

    Particles with a non-finite likelihood are evaluated again without them: masking their value would still
    send ``0 * nan`` into the gradient.
    """
    n = batch[0].shape[0]
    if not log_lik.requires_grad:
        return -(weights * log_lik.masked_fill(bad, 0.0)).sum() / n
    if bool(bad.any()):
        keep = ~bad
        log_lik = model.log_likelihood(particles[keep], batch).sum(-1)
        return -(weights[keep] * log_lik).sum() / n
    return -(weights * log_lik).sum() / n


def fit_open_horizon(model: ProbModel, data, *, num_particles: int = 1000, num_epochs: int = 100,
                     batch_size: int | None = 50, lr: float = 1e-2, move: Move | str | None = "rw",
                     move_scale: float = 1e-2, resample: str = "stratified", resample_threshold: float = 1.0,
                     validation: Batch | None = None, eval_every: int | None = None, seed: int = 0,
                     dtype: torch.dtype | None = None, progress: bool = True,
                     checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 100,
                     callback: Callable[[int, float], None] | None = None) -> PartialPosterior:
    """Train a partial BNN by open-horizon SMC: ``phi`` by a particle filter over the minibatches, ``psi`` by Adam
    on the Fisher-identity gradient; the paper's defaults (J = 1000, RW jitter of variance 1e-2, stratified
    resampling at every step, Adam 1e-2, N(0, I) prior).

    Args:
        model: A ``PartialBNN`` (or any ``ProbModel`` with ``psi_parameters()``); its ``psi`` are trained in place
            and end at the kept state (best validation NLPD when ``validation`` is given, else the last).
        data: ``(x, y)`` tensors or a ``torch.utils.data.DataLoader`` of ``(x, y)`` minibatches.
        num_particles: ``J``.
        num_epochs: Passes over the data.
        batch_size: Minibatch size for tensors (``None``: the whole data set; a DataLoader has its own).
        lr: Adam's learning rate for ``psi``.
        move: ``"rw"`` (``phi + sqrt(move_scale) N(0, I)``), ``"ou"`` (prior-preserving Ornstein-Uhlenbeck with
            time step ``move_scale``), ``None`` (no move) or a callable ``(particles, generator) -> particles``.
        move_scale: The jitter's variance (``"rw"``) or time step (``"ou"``).
        resample, resample_threshold: See :func:`build_kernel`.
        validation: ``(x, y)`` held-out data; the state with the lowest validation NLPD of the weighted-particle
            predictive is kept, evaluated every ``eval_every`` steps (default: after every step, as the paper's
            code does) and at the end.
        seed: Seeds the generator of the initial particles, moves and resampling (and the minibatch order).
        dtype: Computation dtype (default: that of ``x``); the module is converted to it.
        progress: Show a progress bar with the live surrogate loss.
        checkpoint, checkpoint_every: Checkpoint file (written every ``checkpoint_every`` steps and at the end;
            an existing one is resumed bit for bit) and interval.
        callback: Called as ``callback(step, loss)`` after every step.

    Returns:
        A :class:`~inference.smc.partial_posterior.PartialPosterior`: the weighted particles ``1 x J x D`` and the
        trained ``psi``; ``info`` holds the settings, ``wall_time``, ``best_step``, ``best_nlpd``,
        ``skipped_steps`` and ``num_nonfinite``; ``trace`` the per-step loss, ESS and log-evidence increments.
    """
    num_particles = check_positive_int(num_particles, "num_particles")
    move_fn = resolve_move(model, move, check_positive_float(move_scale, "move_scale"))

    def make_step(generator):
        kernel = build_kernel(model, move_fn, resample=resample, resample_threshold=resample_threshold)

        def step(state, batch):
            return kernel(state, batch, generator)

        return step

    settings = {"method": "ohsmc", "num_particles": num_particles, "move": move if isinstance(move, str) or move is None
                else getattr(move, "__name__", "custom"), "move_scale": move_scale, "resample": resample,
                "resample_threshold": resample_threshold}
    return train(model, data, init=init, make_step=make_step, num_particles=num_particles, num_epochs=num_epochs,
                 batch_size=batch_size, lr=lr, validation=validation, eval_every=eval_every, seed=seed, dtype=dtype,
                 progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every, callback=callback,
                 settings=settings)


__all__ = ["OpenHorizonInfo", "build_kernel", "fit_open_horizon", "init"]
