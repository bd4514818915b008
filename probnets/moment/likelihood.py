"""The heteroscedastic Gaussian output of a moment-propagation network: ``y ~ N(l, exp(s))`` with ``(l, s)``
Gaussian, summarised by the network's output moments.

With ``(l, s)`` jointly Gaussian (means ``mu_l, mu_s``, variances ``S_ll, S_ss``, covariance ``S_ls``), tilting by
``exp(-s)`` shifts ``l`` by ``-S_ls``, so the expected log-likelihood is the closed form

    E[log N(y | l, exp(s))] = -1/2 [log 2 pi + mu_s + exp(-mu_s + S_ss / 2) (S_ll + (mu_l - S_ls - y)^2)],

and the predictive of ``y`` has mean ``mu_l`` and variance ``S_ll + E[exp(s)] = S_ll + exp(mu_s + S_ss / 2)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from probnets.likelihoods import NormalMarginal
from probnets.moment.network import Moments
from probnets.predictive import Predictive

_LOG_2PI = math.log(2 * math.pi)


class OutputMoments(NamedTuple):
    """Per-output moments of ``(l, s)``, each ``n x m``."""

    mean: Tensor
    log_noise_mean: Tensor
    variance: Tensor
    log_noise_variance: Tensor
    covariance: Tensor


def output_moments(moments: Moments) -> OutputMoments:
    """Split a network's output (mean ``n x 2m``, covariance ``n x 2m x 2m``) into the ``l`` and ``s`` parts."""
    m = moments.mean.shape[-1] // 2
    cov = moments.variance
    diag = torch.diagonal(cov, dim1=-2, dim2=-1)
    cross = torch.diagonal(cov[..., :m, m:], dim1=-2, dim2=-1)
    return OutputMoments(moments.mean[..., :m], moments.mean[..., m:], diag[..., :m], diag[..., m:], cross)


def expected_log_likelihood(moments: Moments, y: Tensor) -> Tensor:
    """``E_q[log N(y | l, exp(s))]`` per datum (summed over outputs), ``n``; ``y`` is ``n x m``."""
    out = output_moments(moments)
    inverse_noise = torch.exp(-out.log_noise_mean + 0.5 * out.log_noise_variance)
    residual = out.mean - out.covariance - y
    per_output = -0.5 * (_LOG_2PI + out.log_noise_mean + inverse_noise * (out.variance + residual.square()))
    return per_output.sum(-1)


def draw_log_likelihood(outputs: Tensor, y: Tensor) -> Tensor:
    """``log N(y | l, exp(s))`` of sampled network outputs (``S x n x 2m``: ``l`` then ``s``, e.g.
    :meth:`~probnets.moment.MomentNetwork.forward_draws`), summed over outputs, ``S x n``; ``y`` is ``n x m``."""
    m = outputs.shape[-1] // 2
    log_noise = outputs[..., m:]
    per_output = -0.5 * (_LOG_2PI + log_noise + (y - outputs[..., :m]).square() * torch.exp(-log_noise))
    return per_output.sum(-1)


def predictive_moments(moments: Moments) -> tuple[Tensor, Tensor, Tensor]:
    """Predictive mean, latent variance ``S_ll`` and noise variance ``E[exp(s)]`` of ``y``, each ``n x m``."""
    out = output_moments(moments)
    return out.mean, out.variance, torch.exp(out.log_noise_mean + 0.5 * out.log_noise_variance)


def gaussian_predictive(mean: Tensor, variance: Tensor) -> Predictive:
    """The one-component ``Predictive`` ``N(mean, variance)`` per point and output (``n x m`` each)."""
    scale = variance.clamp_min(torch.finfo(variance.dtype).tiny).sqrt()
    return Predictive(mean.unsqueeze(0), NormalMarginal(), {"scale": scale.unsqueeze(0)})
