"""SSVI's removal scores of a coordinate ``theta ~ N(mean, scale^2)``: the lowest-scoring active coordinates leave
the subspace (Li et al., ICLR 2024, section 4; the names of its code in brackets).

==================  =======================================================================  ==================
name                score                                                                    paper code
==================  =======================================================================  ==================
``mean``            ``|mean|``                                                               ``mean``
``snr``             ``|mean| / scale``                                                       ``snr``
``abs_mean``        ``E|theta|``                                                             ``E_mean_abs``
``abs_snr``         ``E|theta| / sd|theta|`` (the paper's default, SNR of ``q(|theta|)``)     ``SNR_mean_abs``
``exp_abs_mean``    ``E exp(lam |theta|)``                                                   ``E_exp_mean_abs``
``exp_abs_snr``     ``E exp(lam |theta|) / sd exp(lam |theta|)``                             ``SNR_exp_mean_abs``
==================  =======================================================================  ==================

With ``m = mean``, ``s = scale``: ``E|theta| = m erf(m / (sqrt(2) s)) + s sqrt(2/pi) exp(-m^2 / 2s^2)``,
``E|theta|^2 = m^2 + s^2``, and ``E exp(lam |theta|) = exp(lam^2 s^2/2 + lam m) Phi(m/s + lam s)
+ exp(lam^2 s^2/2 - lam m) Phi(-m/s + lam s)`` (evaluated in log space). Scores are computed in float64: the
variances are differences of nearly equal moments when ``scale`` is small.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

CRITERIA = ("mean", "snr", "abs_mean", "abs_snr", "exp_abs_mean", "exp_abs_snr")


def abs_mean(mean: Tensor, scale: Tensor) -> Tensor:
    """``E|theta|``, the mean of the folded normal."""
    return mean * torch.erf(mean / (math.sqrt(2) * scale)) + scale * math.sqrt(2 / math.pi) * torch.exp(
        -0.5 * (mean / scale).square())


def log_exp_abs_mean(mean: Tensor, scale: Tensor, lam: float) -> Tensor:
    """``log E exp(lam |theta|)``."""
    base = 0.5 * (lam * scale).square()
    ratio = mean / scale
    return torch.logaddexp(base + lam * mean + torch.special.log_ndtr(ratio + lam * scale),
                           base - lam * mean + torch.special.log_ndtr(-ratio + lam * scale))


def score(mean: Tensor, scale: Tensor, criterion: str = "abs_snr", *, lam: float = 1.0) -> Tensor:
    """The removal score of every coordinate (same shape as ``mean``; float64); higher is kept.

    Args:
        mean, scale: Variational means and standard deviations (``scale > 0``).
        criterion: One of ``CRITERIA``.
        lam: ``lambda`` of the exponential criteria.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    mean, scale = mean.detach().double(), scale.detach().double()
    if criterion == "mean":
        return mean.abs()
    if criterion == "snr":
        return mean.abs() / scale
    if criterion in ("abs_mean", "abs_snr"):
        first = abs_mean(mean, scale)
        if criterion == "abs_mean":
            return first
        variance = (mean.square() + scale.square() - first.square()).clamp_min(0.0)
        return first / variance.sqrt()
    log_first = log_exp_abs_mean(mean, scale, lam)
    if criterion == "exp_abs_mean":
        return log_first.exp()
    # sd / mean = sqrt(E e^{2 lam|theta|} / (E e^{lam|theta|})^2 - 1)
    log_ratio = log_exp_abs_mean(mean, scale, 2 * lam) - 2 * log_first
    return torch.expm1(log_ratio).clamp_min(0.0).rsqrt()
