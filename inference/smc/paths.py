"""Paths of distributions for tempered SMC: from an easy reference to the target, one segment at a time.

A segment is ``log gamma_lambda(theta) = log reference(theta) + sum_j c_j(lambda) T_j(theta)`` for a path
coordinate ``lambda`` in [0, 1] (one per population) with ``K`` terms ``T_j`` and coefficients
``c_j(lambda) = clip(K lambda - j, 0, 1)``:

- ``GeometricSegment`` (``K = 1``): ``T = log target - log reference``, so ``gamma_lambda`` is the geometric
  bridge ``reference^(1 - lambda) target^lambda``; with a prior as reference and the posterior as target,
  ``lambda`` is the inverse temperature of the likelihood.
- ``DataSegment`` (``K = n``): ``T_j`` is the log-likelihood of datum ``j``, so ``lambda = k / n`` is the
  posterior given the first ``k`` data (data annealing; in between, datum ``k`` is tempered in).

With a normalised reference, the SMC evidence of a segment estimates ``log int target - log int reference``.
Coefficients broadcast over populations: a segment's log density accepts ``R x P x D`` particles or their
flattened ``(R P) x D`` view (what HMC moves see).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from probnets.model import LogDensity

__all__ = ["DataSegment", "GaussianReference", "GeometricSegment", "coefficients"]


class GaussianReference(LogDensity):
    """The normalised ``N(mean, scale^2 I)`` log density, with draws.

    Args:
        mean: ``D``, or ``R x D`` (one reference per population).
        scale: Standard deviation (a number, or a tensor broadcasting against ``mean``).
    """

    def __init__(self, mean: Tensor, scale: float | Tensor = 1.0):
        self.mean = mean
        self.scale = torch.as_tensor(scale, dtype=mean.dtype, device=mean.device)
        if not bool((self.scale > 0).all()):
            raise ValueError(f"reference_scale must be positive, got {scale!r}")
        super().__init__(self._value, mean.shape[-1])

    def _centred(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``(theta - mean) / scale`` with ``theta`` viewed per population when the mean has one."""
        if self.mean.dim() == 1:
            return (theta - self.mean) / self.scale, theta
        view = theta.reshape(self.mean.shape[0], -1, self.dim)
        return (view - self.mean.unsqueeze(-2)) / self.scale, view

    def _value(self, theta: Tensor) -> Tensor:
        z, view = self._centred(theta)
        log_norm = torch.log(self.scale).expand(self.dim).sum() + 0.5 * self.dim * math.log(2 * math.pi)
        return (-0.5 * z.square().sum(-1) - log_norm).reshape(theta.shape[:-1])

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        z, _ = self._centred(theta)
        return self._value(theta), (-z / self.scale).reshape(theta.shape)

    def sample(self, num: int, generator: torch.Generator | None) -> Tensor:
        """``R x num x D`` draws (``num x D`` for a single mean)."""
        mean = self.mean if self.mean.dim() == 1 else self.mean.unsqueeze(-2)
        shape = (*self.mean.shape[:-1], num, self.dim)
        return mean + self.scale * torch.randn(shape, generator=generator, dtype=self.mean.dtype,
                                               device=self.mean.device)


def coefficients(temperature: Tensor, num_terms: int) -> Tensor:
    """``c_j(lambda) = clip(K lambda - j, 0, 1)``, ``R x K`` for ``lambda`` ``R``."""
    j = torch.arange(num_terms, dtype=temperature.dtype, device=temperature.device)
    return (num_terms * temperature.unsqueeze(-1) - j).clamp(0.0, 1.0)


def _per_population(coefficient: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    """``theta`` viewed as ``R x P' x D`` and ``coefficient`` ``R x K`` as ``R x 1 x K``."""
    return theta.reshape(coefficient.shape[0], -1, theta.shape[-1]), coefficient.unsqueeze(-2)


class _PathPoint(LogDensity):
    """``log gamma`` at fixed coefficients (built by a segment's ``logdensity``)."""

    def __init__(self, value_and_grad: Callable[[Tensor], tuple[Tensor, Tensor]], dim: int):
        super().__init__(lambda theta: value_and_grad(theta)[0], dim)
        self._value_and_grad = value_and_grad

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        return self._value_and_grad(theta)


class GeometricSegment:
    """``reference^(1 - lambda) target^lambda`` (one term: ``log target - log reference``).

    Both densities are used through ``value_and_grad``, so a target with a fused analytic gradient keeps it.
    ``evidence=False`` marks a bridge whose normaliser is known (it is left out of the evidence estimate).
    """

    num_terms = 1

    def __init__(self, reference: LogDensity, target: LogDensity, *, evidence: bool = True):
        if reference.dim != target.dim:
            raise ValueError(f"reference and target dimensions differ: {reference.dim} != {target.dim}")
        self.reference, self.target, self.dim, self.evidence = reference, target, target.dim, evidence

    def terms(self, theta: Tensor) -> Tensor:
        """``T`` at ``theta`` ``... x D``: ``... x 1`` (through ``value_and_grad``, the one method engines call,
        so that the terms agree with what the moves see)."""
        return (self.target.value_and_grad(theta)[0] - self.reference.value_and_grad(theta)[0]).unsqueeze(-1)

    def logdensity(self, coefficient: Tensor) -> LogDensity:
        """``log gamma`` for the coefficients ``R x 1``."""
        weight = coefficient[..., 0]

        def value_and_grad(theta: Tensor) -> tuple[Tensor, Tensor]:
            if bool((weight == 0).all()):
                return self.reference.value_and_grad(theta)
            if bool((weight == 1).all()):
                return self.target.value_and_grad(theta)
            ref_value, ref_grad = self.reference.value_and_grad(theta)
            value, grad = self.target.value_and_grad(theta)
            view, w = _per_population(weight.unsqueeze(-1), theta)
            w = w[..., 0].expand(view.shape[:-1]).reshape(theta.shape[:-1])
            return (1 - w) * ref_value + w * value, (1 - w).unsqueeze(-1) * ref_grad + w.unsqueeze(-1) * grad

        return _PathPoint(value_and_grad, self.dim)


class DataSegment:
    """From a prior to the posterior one datum at a time (``K = n`` terms: per-datum log-likelihoods).

    Args:
        prior: The log prior (a normalised density, for the evidence).
        log_likelihood: ``theta (..., D) -> (..., n)`` per-datum log-likelihoods (differentiable).
        num_data: ``n``.
    """

    evidence = True

    def __init__(self, prior: LogDensity, log_likelihood: Callable[[Tensor], Tensor], num_data: int):
        self.reference, self.log_likelihood, self.num_terms, self.dim = prior, log_likelihood, num_data, prior.dim

    def terms(self, theta: Tensor) -> Tensor:
        with torch.no_grad():
            return self.log_likelihood(theta)

    def logdensity(self, coefficient: Tensor) -> LogDensity:
        """``log prior + sum_j c_j log p(y_j | theta)`` for the coefficients ``R x n``."""

        def value_and_grad(theta: Tensor) -> tuple[Tensor, Tensor]:
            prior_value, prior_grad = self.reference.value_and_grad(theta)
            with torch.enable_grad():
                leaf = theta.detach().requires_grad_(True)
                view, c = _per_population(coefficient, leaf)
                terms = self.log_likelihood(view)
                value = torch.where(c > 0, c * terms, torch.zeros_like(terms)).sum(-1).reshape(theta.shape[:-1])
                (grad,) = torch.autograd.grad(value.sum(), leaf)
            return prior_value + value.detach(), prior_grad + grad

        return _PathPoint(value_and_grad, self.dim)
