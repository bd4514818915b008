"""Streaming mean and (co)variance estimates (Welford), batched over independent estimators."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class WelfordState(NamedTuple):
    mean: Tensor  # (..., D)
    m2: Tensor  # (..., D) sums of squared deviations, or (..., D, D) co-moments when dense
    count: Tensor  # () number of observations


def init(shape: torch.Size, *, dense: bool = False, dtype=None, device=None) -> WelfordState:
    mean = torch.zeros(shape, dtype=dtype, device=device)
    m2 = torch.zeros((*shape, shape[-1]) if dense else shape, dtype=dtype, device=device)
    return WelfordState(mean, m2, torch.zeros((), dtype=dtype, device=device))


def update(state: WelfordState, x: Tensor) -> WelfordState:
    """Add one observation ``x`` ``(..., D)`` to every estimator."""
    count = state.count + 1
    delta = x - state.mean
    mean = state.mean + delta / count
    if state.m2.dim() == state.mean.dim() + 1:
        m2 = state.m2 + delta.unsqueeze(-1) * (x - mean).unsqueeze(-2)
    else:
        m2 = state.m2 + delta * (x - mean)
    return WelfordState(mean, m2, count)


def update_many(state: WelfordState, xs: Tensor) -> WelfordState:
    """Add a batch of observations ``xs`` ``(B, D)`` to a single pooled estimator (Chan et al. merge)."""
    n_b = xs.shape[0]
    mean_b = xs.mean(0)
    centred = xs - mean_b
    dense = state.m2.dim() == state.mean.dim() + 1
    m2_b = centred.T @ centred if dense else (centred * centred).sum(0)
    count = state.count + n_b
    delta = mean_b - state.mean
    mean = state.mean + delta * (n_b / count)
    correction = delta.unsqueeze(-1) * delta.unsqueeze(-2) if dense else delta * delta
    m2 = state.m2 + m2_b + correction * (state.count * n_b / count)
    return WelfordState(mean, m2, count)


def regularized_covariance(state: WelfordState) -> Tensor:
    """Stan's shrunk estimate: ``n/(n+5) * S + 1e-3 * 5/(n+5) * I`` (variances, or a matrix when dense)."""
    n = state.count
    cov = state.m2 / (n - 1).clamp_min(1)
    shrink = n / (n + 5.0)
    if state.m2.dim() == state.mean.dim() + 1:
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        return shrink * cov + 1e-3 * (5.0 / (n + 5.0)) * eye
    return shrink * cov + 1e-3 * (5.0 / (n + 5.0))
