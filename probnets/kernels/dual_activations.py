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
    # acos and sqrt(1 - cos^2) have infinite slopes at cos = +-1 (every diagonal entry of a Gram matrix), where
    # autograd would give inf - inf = NaN although d/dcos (sin t + (pi - t) cos t) = pi - t is finite. Evaluating
    # t slightly inside the interval keeps the gradient exact and moves the value by O(eps^1.5).
    eps = torch.finfo(cos.dtype).eps
    inner = cos.clamp(-1 + eps, 1 - eps)
    sin = (1 - inner * inner).sqrt()
    theta = torch.acos(inner)
    return norm * (sin + (math.pi - theta) * cos) / (2 * math.pi)


def erf(k_xy: Tensor, k_xx: Tensor, k_yy: Tensor) -> Tensor:
    """erf: ``(2 / pi) asin(2 k_xy / sqrt((1 + 2 k_xx)(1 + 2 k_yy)))`` (Williams 1997)."""
    denom = ((1 + 2 * k_xx).unsqueeze(-1) * (1 + 2 * k_yy).unsqueeze(-2)).sqrt()
    return (2 / math.pi) * torch.asin((2 * k_xy / denom).clamp(-1.0, 1.0))


def gelu(k_xy: Tensor, k_xx: Tensor, k_yy: Tensor) -> Tensor:
    """GELU, ``phi(u) = u Phi(u)`` (``torch.nn.functional.gelu`` with ``approximate="none"``), in closed form.

    With ``a = k_xx``, ``b = k_yy``, ``c = k_xy``, ``A = 1 + a``, ``B = 1 + b``::

        E[phi(u) phi(v)] = c/4 + c asin(c / sqrt(AB)) / (2 pi) + (ab + c^2 (1 - ab) / (AB)) / (2 pi sqrt(AB - c^2))

    Derivation: ``Phi(u) = P(z <= u)`` for an independent ``z ~ N(0, 1)``, so the expectation is
    ``E[u v 1{s > 0} 1{t > 0}]`` with ``s = u - z1``, ``t = v - z2``; Gaussian integration by parts gives the
    three terms (the same kernel as Tsuchida, Pearce et al. 2021, "Avoiding kernel fixed points"). Since
    ``AB - c^2 >= a + b + 1 > 0`` and ``|c| / sqrt(AB) < 1`` the expression and its gradients are finite
    everywhere, also on the diagonal.
    """
    a, b = k_xx.unsqueeze(-1), k_yy.unsqueeze(-2)
    ab_plus = (1 + a) * (1 + b)
    c2 = k_xy * k_xy
    return (k_xy / 4 + k_xy * torch.asin(k_xy / ab_plus.sqrt()) / (2 * math.pi)
            + (a * b + c2 * (1 - a * b) / ab_plus) / (2 * math.pi * (ab_plus - c2).sqrt()))
