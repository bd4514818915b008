"""Self-normalised importance sampling: proposal draws, log weights, Kish ESS and the log normaliser.

Given an unnormalised log target ``log p~(x)`` and a proposal ``q``, draw ``x_k ~ q`` (``k = 1..K``) and weigh
them by ``log w_k = log p~(x_k) - log q(x_k)``. Then ``Z = int p~ ~ mean_k w_k`` (unbiased; its log is returned
as ``log_normalizer``) and ``E_p[g] ~ sum_k wbar_k g(x_k)`` with ``wbar = softmax(log w)``. The Kish effective
sample size ``1 / sum_k wbar_k^2`` says how many equally weighted draws the weights are worth; when it falls
below ``ess_threshold * K`` an :class:`ImportanceSamplingWarning` is issued, since the estimates then rest on
a handful of draws (a proposal much narrower than the target, or misplaced).

Example:
    >>> target = lambda x: -0.5 * ((x - 1.0) / 0.5) ** 2          # N(1, 0.5^2) up to a constant
    >>> result = importance_sample(target, dist.Normal(0.0, 2.0), 10_000, generator=g)
    >>> (result.weights * result.samples).sum(), result.ess
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from inference.diagnostics import ConvergenceWarning
from probnets.priors import rsample
from probnets.validation import check_positive_int

__all__ = ["ImportanceSamples", "ImportanceSamplingWarning", "importance_sample", "sample_scale_mixture"]

#: A torch/pyro distribution, or a pair ``(sample_fn(num, generator) -> K x ..., log_prob_fn(x) -> K)``.
Proposal = torch.distributions.Distribution | tuple[Callable[[int, torch.Generator | None], Tensor],
                                                    Callable[[Tensor], Tensor]]


class ImportanceSamplingWarning(ConvergenceWarning):
    """Issued when the effective sample size of importance weights is below a fraction of the draws."""


@dataclass(frozen=True)
class ImportanceSamples:
    """Weighted draws of a self-normalised importance sampler.

    Attributes:
        samples: Proposal draws, ``K x ...``.
        log_weights: Unnormalised log weights ``log p~(x_k) - log q(x_k)``, ``K``; they keep the gradient of
            the log target with respect to its parameters.
    """

    samples: Tensor
    log_weights: Tensor

    @property
    def num_samples(self) -> int:
        return self.log_weights.shape[0]

    @property
    def weights(self) -> Tensor:
        """Normalised weights ``softmax(log_weights)``, ``K``."""
        return torch.softmax(self.log_weights, 0)

    @property
    def ess(self) -> float:
        """Kish effective sample size ``1 / sum_k wbar_k^2`` (between 1 and ``K``)."""
        return float(1.0 / self.weights.detach().square().sum())

    @property
    def log_normalizer(self) -> Tensor:
        """``log mean_k w_k``, the log of the unbiased estimate of the target's normalising constant."""
        return torch.logsumexp(self.log_weights, 0) - math.log(self.num_samples)


def importance_sample(log_target: Callable[[Tensor], Tensor], proposal: Proposal, num_samples: int, *,
                      generator: torch.Generator | None = None, chunk_size: int = 65536,
                      ess_threshold: float = 0.05) -> ImportanceSamples:
    """Draw ``num_samples`` proposal samples at once and weigh them by the target.

    Args:
        log_target: Unnormalised log target density, vectorised over the leading dimension: ``B x ... -> B``.
        proposal: A torch/pyro distribution (drawn through the generator with
            :func:`probnets.priors.rsample`; ``log_prob`` is summed over all but the leading dimension), or a
            pair ``(sample_fn, log_prob_fn)`` with ``sample_fn(num, generator) -> num x ...`` and
            ``log_prob_fn(x) -> B``.
        num_samples: Number of draws ``K``.
        generator: Source of randomness (same seed, same draws).
        chunk_size: The target and proposal densities are evaluated on at most this many draws at a time,
            to bound the memory of ``log_target``'s temporaries.
        ess_threshold: Warn (:class:`ImportanceSamplingWarning`) when the ESS is below this fraction of ``K``;
            0 disables the warning.

    Returns:
        The weighted draws, with ``ess``, ``weights`` and ``log_normalizer``.

    Raises:
        ValueError: On a non-positive ``num_samples`` or ``chunk_size``, an ``ess_threshold`` outside
            ``[0, 1)``, densities of the wrong shape, any NaN log weight, or when no draw has positive weight.
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, (int, float)) or not 0 <= ess_threshold < 1:
        raise ValueError(f"ess_threshold must lie in [0, 1), got {ess_threshold!r}")
    if not callable(log_target):
        raise TypeError(f"log_target must be callable, got {type(log_target).__name__}")
    sample_fn, log_prob_fn = _as_sampler(proposal)

    samples = sample_fn(num_samples, generator)
    if not isinstance(samples, Tensor) or samples.dim() == 0 or samples.shape[0] != num_samples:
        raise ValueError(f"the proposal must return {num_samples} draws along the first dimension, got "
                         f"{tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__}")
    chunks = []
    for chunk in samples.split(chunk_size):
        log_p, log_q = log_target(chunk), log_prob_fn(chunk)
        for name, value in (("log_target", log_p), ("the proposal's log_prob", log_q)):
            if not isinstance(value, Tensor) or value.shape != chunk.shape[:1]:
                raise ValueError(f"{name} must return one value per draw ({chunk.shape[0]},), got "
                                 f"{tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__}")
        chunks.append(log_p - log_q)
    log_weights = torch.cat(chunks)

    num_nan = int(torch.isnan(log_weights).sum())
    if num_nan:
        raise ValueError(f"{num_nan} of {num_samples} log weights are NaN (log_target or the proposal's log_prob "
                         "returned NaN, or inf - inf)")
    if not bool((log_weights > -math.inf).any()):
        raise ValueError("no draw has positive weight: the proposal puts no mass where the target is positive")
    result = ImportanceSamples(samples, log_weights)
    ess = result.ess
    if ess < ess_threshold * num_samples:
        warnings.warn(ImportanceSamplingWarning(
            f"importance sampling ESS is {ess:.1f} of {num_samples} draws ({100 * ess / num_samples:.2g}% < "
            f"{100 * ess_threshold:g}%): the weights rest on a few draws and the estimates may be far off; use a "
            "proposal closer to the target"), stacklevel=2)
    return result


def sample_scale_mixture(model, num_samples: int, *, generator: torch.Generator | None = None,
                         ess_threshold: float = 0.05) -> ImportanceSamples:
    """Weighted draws of the scale ``s`` of a conditioned
    :class:`~probnets.scale_mixture.ImportanceScaleMixture` from its proposal, at its current hyperparameters.

    Args:
        model: The mixture, conditioned on its data; its ``scale_target()`` gives the target and proposal.
        num_samples: Draws ``K``.
        generator: Source of randomness.
        ess_threshold: ESS warning threshold (see :func:`importance_sample`).

    Returns:
        Draws ``K`` whose log weights keep the gradient with respect to the hyperparameters (through ``A``), so
        ``-log_normalizer / n`` is a differentiable estimate of ``-(1/n) log p(y)``.
    """
    log_target, proposal = model.scale_target()
    return importance_sample(log_target, proposal, num_samples, generator=generator, chunk_size=model.chunk_size,
                             ess_threshold=ess_threshold)


def _as_sampler(proposal: Proposal) -> tuple[Callable, Callable]:
    """``(sample_fn(num, generator), log_prob_fn(x) -> B)`` of a distribution or a (sampler, log_prob) pair."""
    if isinstance(proposal, torch.distributions.Distribution):
        def log_prob(x: Tensor) -> Tensor:
            return proposal.log_prob(x).reshape(x.shape[0], -1).sum(-1)

        return (lambda num, generator: rsample(proposal, (num,), generator=generator)), log_prob
    if isinstance(proposal, tuple) and len(proposal) == 2 and all(callable(p) for p in proposal):
        return proposal
    raise TypeError("proposal must be a torch/pyro Distribution or a pair (sample_fn(num, generator), "
                    f"log_prob_fn(x)), got {type(proposal).__name__}")
