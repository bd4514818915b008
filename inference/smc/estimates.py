"""Estimates and their Monte Carlo errors from independent weighted particle populations.

Particles of one population are correlated through resampling, so the error of an SMC estimate is measured
across ``R`` independent populations (runs): each population gives its own weighted estimate, and their spread
gives the MCSE ``sd / sqrt(R)`` of the combined estimate. The log evidence is combined on the natural scale
(``Z = mean_r Z_r`` is unbiased), with the delta-method MCSE of its logarithm.

Shapes: particles ``R x P x ...``, normalised log weights ``R x P``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from inference.smc.resampling import effective_sample_size, normalise

__all__ = ["log_evidence", "mcse", "population_means", "rhat", "total_ess"]


def population_means(values: Tensor, log_weights: Tensor) -> Tensor:
    """Weighted mean of ``values`` ``R x P x ...`` within each population: ``R x ...``."""
    w = normalise(log_weights).to(values.dtype)
    w = w.reshape(*w.shape, *(1,) * (values.dim() - w.dim()))
    return torch.where(w > 0, w * values, torch.zeros_like(values)).sum(1)


def mcse(estimates: Tensor) -> Tensor:
    """MCSE of the mean over populations of per-population estimates ``R x ...``: ``sd / sqrt(R)`` (NaN for a
    single population)."""
    if estimates.shape[0] < 2:
        return torch.full_like(estimates[0], math.nan)
    return estimates.std(0) / math.sqrt(estimates.shape[0])


def log_evidence(log_evidences: Tensor) -> tuple[float, float]:
    """``log mean_r Z_r`` and its MCSE ``sd_r(Z_r) / (sqrt(R) mean_r Z_r)`` from per-population ``log Z_r``."""
    log_evidences = log_evidences.double()
    num = log_evidences.shape[0]
    value = float(torch.logsumexp(log_evidences, 0) - math.log(num))
    relative = torch.exp(log_evidences - value)  # Z_r / Z, mean 1
    return value, float(relative.std() / math.sqrt(num)) if num > 1 else math.nan


def total_ess(log_weights: Tensor) -> Tensor:
    """Kish's ESS summed over populations (an upper bound: resampled copies count as distinct)."""
    return effective_sample_size(log_weights).sum()


def rhat(values: Tensor, log_weights: Tensor) -> Tensor:
    """Cross-population R-hat of ``values`` ``R x P x ...``: ``sqrt((n - 1) / n + B / W)`` with ``W`` the mean
    within-population weighted variance, ``B`` the variance of the population means and ``n`` the mean Kish
    ESS; near 1 when every population represents the same distribution. NaN with fewer than 2 populations."""
    means = population_means(values, log_weights)
    within = population_means((values - means.unsqueeze(1)).square(), log_weights).mean(0)
    n = effective_sample_size(log_weights).mean()
    between = means.var(0) if values.shape[0] > 1 else torch.full_like(within, math.nan)
    return torch.sqrt((n - 1) / n + between / within)
