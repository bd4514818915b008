"""Targets with known answers for testing samplers (analytic gradients, no autograd overhead)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from probnets.model import LogDensity


class GaussianTarget(LogDensity):
    """Unnormalised ``N(mean, cov)`` log density with its analytic gradient.

    Args:
        mean: ``D``.
        cov: ``D x D`` covariance.
    """

    def __init__(self, mean: Tensor, cov: Tensor):
        self.mean = mean
        self.cov = cov
        self.precision = torch.linalg.inv(cov)
        super().__init__(self._value, mean.shape[-1])

    def _value(self, theta: Tensor) -> Tensor:
        d = theta - self.mean
        return -0.5 * ((d @ self.precision) * d).sum(-1)

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        d = theta - self.mean
        grad = -(d @ self.precision)
        return 0.5 * (grad * d).sum(-1), grad


def correlated_gaussian_2d(rho: float = 0.9, scales: tuple[float, float] = (1.0, 10.0), *, dtype=torch.float64) -> GaussianTarget:
    """The 2-D Gaussian with correlation ``rho`` and standard deviations ``scales``."""
    s = torch.tensor(scales, dtype=dtype)
    corr = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=dtype)
    return GaussianTarget(torch.zeros(2, dtype=dtype), corr * s[:, None] * s[None, :])


def ill_conditioned_gaussian(dim: int = 50, condition_number: float = 1e4, *, rotate: bool = False,
                             seed: int = 0, dtype=torch.float64) -> GaussianTarget:
    """Zero-mean Gaussian whose variances are log-spaced over ``condition_number``; optionally rotated by a
    random orthogonal matrix (so that a diagonal mass matrix cannot remove the ill-conditioning)."""
    variances = torch.logspace(-math.log10(condition_number) / 2, math.log10(condition_number) / 2, dim, dtype=dtype)
    cov = torch.diag(variances)
    if rotate:
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=dtype))
        cov = q @ cov @ q.T
        cov = 0.5 * (cov + cov.T)
    return GaussianTarget(torch.zeros(dim, dtype=dtype), cov)
