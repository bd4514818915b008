"""Gibbs sampler of masked node-sparse BNNs (Kong et al. 2023): HMC on the weights, birth/death moves on the
masks, the noise variance from its conjugate conditional; all chains in one tensor.

One iteration, per chain:

1. the network weights by one HMC transition (``num_steps`` leapfrog steps, identity mass matrix) on the
   joint log density with masks and noise fixed; during warm-up the step size is dual-averaged towards
   ``target_accept`` (the paper's 0.7, gamma 0.2, t0 10, kappa 0.75), afterwards it is the averaged one;
2. ``num_mask_updates`` Metropolis-Hastings birth/death moves on the masks (``inference.mcmc.mask_moves``);
3. ``sigma^2`` from ``InvGamma(1 + N/2, b + SSE/2)`` (regression with the conjugate prior only).

Each part leaves the joint posterior invariant, so the sweep does. ``sample_masked`` runs the sweep with
the shared loop (``inference.runner``: progress bar, checkpoints with bit-identical resume) and returns a
``SamplePosterior`` whose draws hold the masks, so ``posterior.predictive(model, x)`` predicts with them.
The sampler is not in ``inference.registry``: it needs the model's structure (where the masks are, the
noise conditional), not only a log density, so the registry's contract targets do not apply.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from inference import fingerprint, runner
from inference.base import Algorithm
from inference.diagnostics import ConvergenceWarning
from inference.mcmc import dual_averaging, hmc, mask_moves
from inference.mcmc.mass_matrix import identity
from inference.mcmc.step_size import find_reasonable_step_size
from inference.posterior import SamplePosterior
from inference.start import CountingLogDensity, check_init, check_initial_density
from probnets.masked_bnn import MaskedBNN
from probnets.model import Batch, LogDensity
from probnets.priors import rsample
from probnets.validation import check_positive_float, check_positive_int, check_probability

#: The paper's dual-averaging settings (``MBNN/MCMC.py``); the shrinkage point is the shared part's
#: ``log(10 * initial step size)`` (Hoffman and Gelman 2014) rather than the paper's ``log(initial step size)``.
DUAL_AVERAGING = {"gamma": 0.2, "t0": 10.0, "kappa": 0.75}


class MaskedGibbsState(NamedTuple):
    """Per chain: the full parameter vector ``C x D`` (weights, masks, noise), its joint log density ``C``
    and gradient ``C x D``, the step size ``C`` with its dual-averaging state, and the iteration ``()``."""

    position: Tensor
    logdensity: Tensor
    logdensity_grad: Tensor
    step_size: Tensor
    dual_averaging: dual_averaging.DualAveragingState
    iteration: Tensor


class _WeightBlock(LogDensity):
    """The joint log density as a function of the leading ``dim`` entries (the weights), the rest fixed."""

    def __init__(self, joint: LogDensity, rest: Tensor, dim: int):
        super().__init__(self._value, dim)
        self.joint, self.rest = joint, rest

    def _value(self, weights: Tensor) -> Tensor:
        return self.joint(torch.cat([weights, self.rest], -1))

    def value_and_grad(self, weights: Tensor) -> tuple[Tensor, Tensor]:
        value, grad = self.joint.value_and_grad(torch.cat([weights, self.rest], -1))
        return value, grad[..., : self.dim]


def masked_gibbs(model: MaskedBNN, batch: Batch, logdensity: LogDensity, num_warmup: int, *, num_steps: int = 30,
                 step_size: float | None = None, target_accept: float = 0.7, num_mask_updates: int = 10,
                 max_flips: int = 3) -> Algorithm:
    """The masked-BNN Gibbs sweep as an ``Algorithm`` (state ``MaskedGibbsState``, info a dict of ``C`` stats).

    Args:
        model: The masked BNN.
        batch: Its prepared data ``(x, y)``.
        logdensity: ``model.logdensity(batch)`` (possibly wrapped, e.g. to count gradients).
        num_warmup: Iterations of step-size adaptation.
        num_steps: Leapfrog steps per HMC transition (30 on the paper's toy, 20 on UCI).
        step_size: Initial leapfrog step; ``None`` finds one per chain by the Hoffman-Gelman heuristic.
        target_accept: Target acceptance of the dual averaging.
        num_mask_updates: Birth/death moves per iteration (``n_upd``; 2 on the paper's toy, 10 on UCI).
        max_flips: ``N_max``, the most nodes one move flips.

    The info holds ``lp``, ``acceptance_rate``, ``step_size``, ``n_steps``, ``diverging`` and ``energy`` of
    the HMC transition, ``mask_acceptance_rate`` (mean over the iteration's moves), ``mask_nonfinite``
    (moves rejected for a non-finite ratio) and ``active_fraction_{l}`` (active share of hidden layer ``l``
    after the iteration).
    """
    weight_dim = model.net_spec.dim
    mask_slice = model.mask_slice
    kernel = hmc.build_kernel()

    def init(position: Tensor) -> MaskedGibbsState:
        value, grad = logdensity.value_and_grad(position)
        initial = 0.1 if step_size is None else step_size
        eps = torch.full(position.shape[:1], initial, dtype=position.dtype, device=position.device)
        return MaskedGibbsState(position, value, grad, eps, dual_averaging.init(eps),
                                torch.zeros((), dtype=torch.long))

    def step(state: MaskedGibbsState, _batch, generator) -> tuple[MaskedGibbsState, dict[str, Tensor]]:
        i = int(state.iteration)
        position = state.position
        weights = _WeightBlock(logdensity, position[:, weight_dim:], weight_dim)
        chain = hmc.HMCState(position[:, :weight_dim], state.logdensity, state.logdensity_grad[:, :weight_dim])
        metric = identity(weight_dim, dtype=position.dtype, device=position.device)
        eps, averaging = state.step_size, state.dual_averaging
        if i == 0 and num_warmup > 0 and step_size is None:
            eps = find_reasonable_step_size(chain, weights, metric, eps, generator)
            averaging = dual_averaging.init(eps)
        chain, info = kernel(chain, generator, weights, eps, metric, num_steps)
        stats = {"acceptance_rate": info.acceptance_rate, "step_size": eps, "n_steps": info.num_grad_evals,
                 "diverging": info.is_divergent, "energy": info.energy}
        if i < num_warmup:
            averaging = dual_averaging.update(averaging, info.acceptance_rate, target=target_accept, **DUAL_AVERAGING)
            eps = averaging.log_step_size.exp() if i < num_warmup - 1 else averaging.log_step_size_avg.exp()

        position = torch.cat([chain.position, position[:, weight_dim:]], -1)
        current = (position, *logdensity.value_and_grad(position))
        accepted = torch.zeros_like(info.acceptance_rate)
        nonfinite = torch.zeros_like(info.num_grad_evals)
        for _ in range(num_mask_updates):
            current, move = mask_moves.birth_death_move(*current, logdensity, mask_slice, generator, max_flips)
            accepted = accepted + move.acceptance_rate
            nonfinite = nonfinite + move.is_nonfinite
        position = current[0]
        conditional = model.noise_variance_conditional(position, batch)
        if conditional is not None:
            variance = rsample(conditional, generator=generator)
            # An overflowing SSE (weights far out in the Cauchy tails) keeps the current noise.
            variance = torch.where(torch.isfinite(variance) & (variance > 0), variance,
                                   model.likelihood.scale(model.likelihood_params(position)).square())
            position = model.with_noise_variance(position, variance)
            current = (position, *logdensity.value_and_grad(position))

        stats["lp"] = current[1]
        stats["mask_acceptance_rate"] = accepted / max(num_mask_updates, 1)
        stats["mask_nonfinite"] = nonfinite
        for layer, fraction in enumerate(model.active_fraction(position).unbind(-1)):
            stats[f"active_fraction_{layer}"] = fraction
        return MaskedGibbsState(*current, eps, averaging, state.iteration + 1), stats

    return Algorithm(init, step)


def sample_masked(model: MaskedBNN, data: Batch, *, num_chains: int = 4, num_warmup: int = 1000,
                  num_samples: int = 1000, thin: int = 10, seed: int = 0, num_steps: int = 30,
                  step_size: float | None = None, target_accept: float = 0.7, num_mask_updates: int = 10,
                  max_flips: int = 3, init: Tensor | None = None, dtype: torch.dtype | None = None,
                  progress: bool = True, print_summary: bool | None = None, check_convergence: bool = True,
                  checkpoint: str | Path | None = None, checkpoint_every: int = 100) -> SamplePosterior:
    """Sample a masked BNN's posterior over weights, masks and noise (Kong et al. 2023), chains vectorised.

    Args:
        model: A :class:`~probnets.masked_bnn.MaskedBNN`.
        data: Training data ``(x, y)``.
        num_chains, num_warmup, num_samples, thin: Chains, warm-up (burn-in) iterations, post-warm-up
            iterations and thinning (``num_samples // thin`` draws kept per chain; the paper's toy keeps every
            10th iteration).
        seed: Seeds the ``torch.Generator`` that drives everything (initialisation included).
        num_steps, step_size, target_accept, num_mask_updates, max_flips: As for :func:`masked_gibbs`.
        init: Starting points ``C x D`` (masks 0.0/1.0); default ``model.init_theta``.
        dtype: Computation dtype (default: that of ``x``).
        progress: Show a live progress bar.
        print_summary: Print a summary of the noise scale and the active fractions (default: ``progress``).
        check_convergence: Warn (``ConvergenceWarning``) about divergences and about R-hat > 1.01 or low ESS of
            the noise scale and the per-layer active fractions (weights are not identifiable).
        checkpoint: Save to this file every ``checkpoint_every`` iterations; resume from it if it exists.

    Returns:
        A ``SamplePosterior`` with draws ``C x S x D`` (masks included), ``sample_stats``/``warmup_stats``
        as listed in :func:`masked_gibbs`; ``info`` holds the settings, ``wall_time`` and ``grad_evals``.

    Example:
        >>> model = MaskedBNN(1, [100, 100], num_data=20, prior_scale=0.3)
        >>> post = sample_masked(model, (x, y), num_warmup=3000, num_samples=1000, num_mask_updates=2)
        >>> post.sample_stats["active_fraction_0"].mean()
    """
    if not isinstance(model, MaskedBNN):
        raise TypeError(f"model must be a probnets.masked_bnn.MaskedBNN, got {type(model).__name__}")
    num_chains = check_positive_int(num_chains, "num_chains")
    num_warmup = check_positive_int(num_warmup, "num_warmup", minimum=0)
    num_samples = check_positive_int(num_samples, "num_samples")
    thin = check_positive_int(thin, "thin")
    num_steps = check_positive_int(num_steps, "num_steps")
    if step_size is not None:
        step_size = check_positive_float(step_size, "step_size")
    target_accept = check_probability(target_accept, "target_accept")
    num_mask_updates = check_positive_int(num_mask_updates, "num_mask_updates", minimum=0)
    max_flips = check_positive_int(max_flips, "max_flips")
    x, y = model.prepare_batch(data)
    dtype = dtype or x.dtype
    batch = (x.to(dtype), y.to(dtype) if torch.is_floating_point(y) else y)
    generator = torch.Generator().manual_seed(int(seed))
    counter = CountingLogDensity(model.logdensity(batch))
    if init is None:
        init = model.init_theta(num_chains, generator=generator, dtype=dtype)
    init = check_init(init, num_chains, model.spec.dim, dtype)
    masks = init[:, model.mask_slice]
    if not bool(((masks == 0) | (masks == 1)).all()):
        raise ValueError("init: the mask entries (model.mask_slice) must be 0.0 or 1.0")
    init, value_at_init = check_initial_density(counter, init, model)
    algorithm = masked_gibbs(model, batch, counter, num_warmup, num_steps=num_steps, step_size=step_size,
                             target_accept=target_accept, num_mask_updates=num_mask_updates, max_flips=max_flips)
    config = {"method": "masked_gibbs", "seed": int(seed), "num_steps": num_steps, "step_size": step_size,
              "target_accept": target_accept, "num_mask_updates": num_mask_updates, "max_flips": max_flips,
              "target": fingerprint.describe_target(model), "data": fingerprint.tensor_hash(*batch),
              "init": fingerprint.tensor_hash(init), "logdensity_at_init": float(value_at_init.sum())}
    posterior = runner.run(algorithm, init, num_samples, num_warmup=num_warmup, generator=generator, thin=thin,
                           progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                           config=config, spec=model.spec, description="masked_gibbs")
    posterior.info["grad_evals"] = counter.grad_evals
    if print_summary if print_summary is not None else progress:
        print(_diagnostic_draws_summary(model, posterior).to_string())
    if check_convergence:
        from inference import diagnostics

        for message in diagnostics.convergence_warnings(_diagnostic_draws(model, posterior),
                                                        diverging=posterior.sample_stats.get("diverging"),
                                                        num_chains=posterior.num_chains):
            warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return posterior


def _diagnostic_draws(model: MaskedBNN, posterior: SamplePosterior) -> dict[str, Tensor]:
    """The identifiable scalars worth diagnosing: per-layer active fractions and the noise scale, ``C x S``."""
    fractions = model.active_fraction(posterior.samples).unbind(-1)
    draws = {f"active_fraction_{layer}": f for layer, f in enumerate(fractions)}
    for name, value in model.likelihood_params(posterior.samples).items():
        draws[name] = value
    return draws


def _diagnostic_draws_summary(model: MaskedBNN, posterior: SamplePosterior):
    from inference import diagnostics

    return diagnostics.summary(_diagnostic_draws(model, posterior))


__all__ = ["DUAL_AVERAGING", "MaskedGibbsState", "masked_gibbs", "sample_masked"]
