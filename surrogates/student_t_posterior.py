"""A joint multivariate Student-t posterior whose Monte Carlo draws cost what a Gaussian's do."""

from __future__ import annotations

import functools

import torch
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from scipy.stats import invgamma
from torch import Tensor


class StudentTPosterior(GPyTorchPosterior):
    """``f = mu + sqrt(v) L z`` with ``v ~ InvGamma(concentration, rate)`` shared by all points and outputs of a
    draw, ``z ~ N(0, I)`` and ``L L^T = Sigma``: a joint multivariate t with ``2 * concentration`` degrees of freedom.

    ``distribution`` is the Gaussian with the t's mean and covariance ``E[v] Sigma``, so ``mean`` and
    ``variance`` are the t's (analytic acquisition functions see this moment-matched Gaussian). Draws from base
    samples (what MC acquisition functions use) pair the ``i``-th of ``S`` base samples with the ``(i + 1/2) / S``
    quantile of ``v``: deterministic, stratified over the scale, and one triangular matmul per draw, where a
    mixture over ``K`` scale quantiles costs ``K`` per draw.

    Args:
        distribution: ``MultivariateNormal`` with mean ``batch x q`` and covariance ``E[v] Sigma``,
            ``batch x q x q``.
        concentration, rate: Parameters of the inverse-gamma scale (``concentration > 1``).
    """

    def __init__(self, distribution: MultivariateNormal, concentration: float, rate: float):
        if not concentration > 1:
            raise ValueError(f"concentration must be > 1 for the t to have a variance, got {concentration}")
        super().__init__(distribution)
        self.concentration, self.rate = float(concentration), float(rate)

    @classmethod
    def from_unit_scale(cls, mean: Tensor, covariance: Tensor, concentration: float, rate: float, *,
                        jitter: float = 0.0) -> StudentTPosterior:
        """The posterior of ``N(mean, v covariance)``, ``v ~ InvGamma(concentration, rate)``; ``mean`` is
        ``batch x q``, ``covariance`` (``Sigma``) ``batch x q x q``; ``jitter`` is added to the diagonal of
        ``E[v] Sigma``."""
        mean_scale = rate / (concentration - 1)
        eye = torch.eye(covariance.shape[-1], dtype=covariance.dtype, device=covariance.device)
        return cls(MultivariateNormal(mean, mean_scale * covariance + jitter * eye), concentration, rate)

    def rsample_from_base_samples(self, sample_shape: torch.Size, base_samples: Tensor) -> Tensor:
        """``sample_shape x batch x q x 1`` draws from ``base_samples`` of ``sample_shape x batch x q x 1``."""
        gaussian = super().rsample_from_base_samples(sample_shape, base_samples)
        scales = _scale_quantiles(sample_shape.numel(), self.concentration, self.rate)
        return self._rescale(gaussian, scales.reshape(sample_shape), sample_shape)

    def rsample(self, sample_shape: torch.Size | None = None) -> Tensor:
        """Independent draws ``sample_shape x batch x q x 1``, each with its own random scale."""
        sample_shape = torch.Size([1]) if sample_shape is None else torch.Size(sample_shape)
        gaussian = super().rsample(sample_shape)
        gamma = torch.distributions.Gamma(torch.tensor(self.concentration, dtype=torch.float64),
                                          torch.tensor(self.rate, dtype=torch.float64))
        return self._rescale(gaussian, 1.0 / gamma.sample(sample_shape), sample_shape)

    def _rescale(self, gaussian: Tensor, scales: Tensor, sample_shape: torch.Size) -> Tensor:
        """Draws at scale ``E[v]`` moved to the per-draw ``scales`` (``sample_shape``)."""
        mean_scale = self.rate / (self.concentration - 1)
        ratio = (scales / mean_scale).sqrt().to(gaussian)
        ratio = ratio.reshape(*sample_shape, *([1] * (gaussian.dim() - len(sample_shape))))
        return self.mean + ratio * (gaussian - self.mean)


@functools.lru_cache(maxsize=64)
def _scale_quantiles(num: int, concentration: float, rate: float) -> Tensor:
    levels = (torch.arange(num, dtype=torch.float64) + 0.5) / num
    return torch.as_tensor(invgamma.ppf(levels.numpy(), a=concentration, scale=rate), dtype=torch.float64)
