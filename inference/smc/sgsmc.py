"""Stochastic-gradient SMC for partial BNNs (Zhao et al. 2024, SGSMC), followed by HMC on ``phi`` with ``psi`` fixed.

Every minibatch ``B`` (``M`` points) gets a fresh sampler: particles from the prior, then for ``k = 1..M`` an
open-horizon step on the single datum ``y_k`` whose move is ``num_mh_steps`` random-walk Metropolis-Hastings
steps leaving ``pi(phi) prod_{j<k} p(y_j | phi; psi)`` invariant (none before the first datum), with stratified
resampling after every datum. The resampled particles then target ``p(phi | y_B; psi)`` and the Fisher identity
gives ``grad_psi log p(y_B; psi) ~= (1/J) sum_i grad_psi log p(y_B | phi^i; psi)``, on which Adam trains ``psi``
(:func:`inference.smc.fisher_training.train`). After training, ``phi`` is sampled by HMC with ``psi`` fixed
(``inference.sample``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch

from inference.sample import sample
from inference.smc import moves, open_horizon
from inference.smc.fisher_training import prepared_data, train
from inference.smc.feynman_kac import SMCState
from inference.smc.open_horizon import OpenHorizonInfo, _surrogate
from inference.smc.partial_posterior import PartialPosterior
from probnets.model import Batch, LogDensity, ProbModel
from probnets.validation import check_positive_float, check_positive_int


def build_kernel(model: ProbModel, *, num_mh_steps: int = 10, mh_variance: float = 5e-2,
                 resample: str = "stratified") -> Callable[[SMCState, Batch, torch.Generator],
                                                          tuple[SMCState, OpenHorizonInfo]]:
    """The SGSMC step ``(state, batch, generator) -> (state, info)``: a fresh sampler on ``batch``.

    ``state.particles`` (``... x J x D``) only fix the number and layout of the particles; the new state holds the
    particles targeting ``p(phi | y_B; psi)`` and ``log p(y_B; psi)``'s estimate in ``log_evidence``. ``info`` sums
    the datum steps: ``log_increment`` is the minibatch's log evidence, ``ess`` the smallest ESS, ``num_nonfinite``
    the zero-weight particles over all data, and ``surrogate`` ``-(1/M) sum_i W^i log p(y_B | phi^i; psi)``.
    """
    num_mh_steps = check_positive_int(num_mh_steps, "num_mh_steps", minimum=0)
    std = math.sqrt(check_positive_float(mh_variance, "mh_variance"))

    def step(state: SMCState, batch: Batch, generator: torch.Generator):
        x, y = model.prepare_batch(batch)
        shape = state.particles.shape
        prior = model.init_theta(shape[:-1].numel(), generator=generator, dtype=state.particles.dtype)
        inner = open_horizon.init(prior.to(state.particles.device).reshape(shape))
        ess = torch.full(shape[:-2], math.inf, dtype=state.particles.dtype, device=state.particles.device)
        nonfinite = torch.zeros(shape[:-2], dtype=torch.long, device=state.particles.device)
        rejected = torch.zeros(shape[:-2], dtype=torch.bool, device=state.particles.device)
        with torch.no_grad():
            for k in range(x.shape[0]):
                kernel = open_horizon.build_kernel(model, _mh_move(model, (x[:k], y[:k]), num_mh_steps, std) if k
                                                   else None, resample=resample)
                inner, info = kernel(inner, (x[k:k + 1], y[k:k + 1]), generator)
                ess, nonfinite = torch.minimum(ess, info.ess), nonfinite + info.num_nonfinite
                rejected = rejected | info.rejected
        log_lik = model.log_likelihood(inner.particles, (x, y)).sum(-1)  # with the graph to psi
        bad = ~torch.isfinite(log_lik.detach())
        surrogate = _surrogate(model, inner.particles, log_lik, inner.log_weights.exp(), bad, (x, y))
        info = OpenHorizonInfo(inner.log_evidence, ess, nonfinite, torch.ones_like(rejected), rejected, surrogate)
        return inner, info

    return step


def _mh_move(model: ProbModel, seen: Batch, num_steps: int, std: float):
    """``num_steps`` random-walk MH steps leaving ``pi(phi) prod_{seen} p(y | phi; psi)`` invariant."""
    target = LogDensity(lambda theta: model.log_prior(theta) + model.log_likelihood(theta, seen).sum(-1),
                        model.spec.dim)

    def move(particles, generator):
        state = moves.init(particles, target)
        for _ in range(num_steps):
            state, _ = moves.random_walk_metropolis(state, generator, target, std)
        return state.position

    return move


def fit_sgsmc(model: ProbModel, data, *, num_particles: int = 1000, num_epochs: int = 100,
              batch_size: int | None = 50, lr: float = 1e-2, num_mh_steps: int = 10, mh_variance: float = 5e-2,
              resample: str = "stratified", validation: Batch | None = None, eval_every: int | None = None,
              hmc_chains: int = 4, hmc_warmup: int = 2000, hmc_samples: int = 1000, hmc_step_size: float = 1e-2,
              hmc_num_steps: int = 100, seed: int = 0, dtype: torch.dtype | None = None, progress: bool = True,
              checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 100,
              callback: Callable[[int, float], None] | None = None) -> PartialPosterior:
    """Train ``psi`` by SGSMC, then sample ``phi`` by HMC with ``psi`` fixed (the paper's SGSMC-HMC).

    Args:
        model, data, num_particles, num_epochs, batch_size, lr, validation, eval_every, seed, dtype, progress,
            callback: As for :func:`inference.smc.open_horizon.fit_open_horizon` (the validation NLPD is that of the
            particles of the latest minibatch; ``psi`` ends at the best one).
        num_mh_steps, mh_variance: Random-walk MH steps per datum and their proposal variance (paper: 10, 5e-2).
        resample: Resampling scheme of the inner samplers.
        hmc_chains, hmc_warmup, hmc_samples: HMC chains, warm-up (step-size adaptation) and kept draws per chain
            (``hmc_samples=0`` skips HMC and returns the last minibatch's particles).
        hmc_step_size, hmc_num_steps: Initial leapfrog step and leapfrog steps per trajectory (paper: 1e-2, 100).
        checkpoint, checkpoint_every: Checkpoint of the SGSMC phase (HMC has its own: ``checkpoint + ".hmc"``).

    Returns:
        A :class:`~inference.smc.partial_posterior.PartialPosterior` with the HMC draws ``C x S x D`` (unweighted)
        and the trained ``psi``; ``info["hmc"]`` says whether HMC ran.
    """
    hmc_samples = check_positive_int(hmc_samples, "hmc_samples", minimum=0)
    kernel_options = {"num_mh_steps": num_mh_steps, "mh_variance": mh_variance, "resample": resample}

    def make_step(generator):
        kernel = build_kernel(model, **kernel_options)
        return lambda state, batch: kernel(state, batch, generator)

    trained = train(model, data, init=open_horizon.init, make_step=make_step, num_particles=num_particles,
                    num_epochs=num_epochs, batch_size=batch_size, lr=lr, validation=validation,
                    eval_every=eval_every, seed=seed, dtype=dtype, progress=progress, checkpoint=checkpoint,
                    checkpoint_every=checkpoint_every, callback=callback,
                    settings={"method": "sgsmc", "num_particles": num_particles, **kernel_options})
    if hmc_samples == 0:
        trained.info["hmc"] = False
        return trained
    full, dtype = prepared_data(model, data, dtype)
    if isinstance(full, torch.utils.data.DataLoader):
        parts = [model.prepare_batch(b) for b in full]
        full = (torch.cat([p[0] for p in parts]).to(dtype), torch.cat([p[1] for p in parts]))
    generator = torch.Generator().manual_seed(int(seed) + 1)
    start = trained.sample((hmc_chains,), generator=generator)
    for p in model.psi_parameters():
        p.requires_grad_(False)
    try:
        draws = sample(model, full, method="hmc", num_chains=hmc_chains, num_warmup=hmc_warmup,
                       num_samples=hmc_samples, seed=seed, init=start, dtype=dtype, progress=progress,
                       print_summary=False, check_convergence=False, step_size=hmc_step_size,
                       num_steps=hmc_num_steps,
                       checkpoint=None if checkpoint is None else f"{os.fspath(checkpoint)}.hmc")
    finally:
        for p in model.psi_parameters():
            p.requires_grad_(True)
    hmc_info = {k: v for k, v in draws.info.items() if k in ("num_warmup", "num_samples", "num_chains", "grad_evals")}
    info = {**trained.info, **hmc_info, "sgsmc_wall_time": trained.info["wall_time"],
            "wall_time": trained.info["wall_time"] + draws.info["wall_time"], "hmc": True, "method": "sgsmc-hmc"}
    return PartialPosterior(draws.samples, draws.sample_stats, warmup_stats=draws.warmup_stats, spec=model.spec,
                            info=info, psi=model.state_dict(), trace=trained.trace)


__all__ = ["build_kernel", "fit_sgsmc"]
