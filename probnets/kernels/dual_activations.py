"""Dual activations: E[phi(u) phi(v)] for (u, v) ~ N(0, [[k_xx, k_xy], [k_xy, k_yy]]).

These are the layer maps of infinitely wide networks: the NNGP recursion applies one per hidden layer,
``K_next = weight_var * dual(K) + bias_var``, and deep kernel machines apply the same maps to learned Gram
matrices. Every function takes the cross-covariance ``k_xy`` (``... x n x p``) and the variances of the two
sets of points (``k_xx``: ``... x n``, ``k_yy``: ``... x p``) and returns ``... x n x p``; on the diagonal
of a square Gram matrix pass the same diagonal twice.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _normalised(k_xy: Tensor, k_xx: Tensor, k_yy: Tensor) -> tuple[Tensor, Tensor]:
    """sqrt(k_xx k_yy) and the correlation, clamped to [-1, 1] (round-off can push it outside)."""
    norm = (k_xx.unsqueeze(-1) * k_yy.unsqueeze(-2)).clamp_min(0).sqrt()
    tiny = torch.finfo(k_xy.dtype).tiny
    cos = (k_xy / norm.clamp_min(tiny)).clamp(-1.0, 1.0)
    return norm, cos


def relu(k_xy: Tensor, k_xx: Tensor, k_yy: Tensor) -> Tensor:
    """ReLU: the arc-cosine kernel of degree 1 (Cho and Saul 2009),
    ``sqrt(k_xx k_yy) (sin t + (pi - t) cos t) / (2 pi)`` with ``cos t = k_xy / sqrt(k_xx k_yy)``."""
    norm, cos = _normalised(k_xy, k_xx, k_yy)
    # sin t from 1 - cos^2 keeps the gradient finite at cos = +-1 (acos' is infinite there).
    sin = (1 - cos * cos).clamp_min(0).sqrt()
    theta = torch.acos(cos)
    return norm * (sin + (math.pi - theta) * cos) / (2 * math.pi)


def erf(k_xy: Tensor, k_xx: Tensor, k_yy: Tensor) -> Tensor:
    """erf: ``(2 / pi) asin(2 k_xy / sqrt((1 + 2 k_xx)(1 + 2 k_yy)))`` (Williams 1997)."""
    denom = ((1 + 2 * k_xx).unsqueeze(-1) * (1 + 2 * k_yy).unsqueeze(-2)).sqrt()
    return (2 / math.pi) * torch.asin((2 * k_xy / denom).clamp(-1.0, 1.0))
