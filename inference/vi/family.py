"""The Gaussian variational family over ``theta``: mean-field, optionally plus a low-rank factor.

``q_r(theta) = N(mean_r, diag(softplus(rho_r)^2) + factor_r factor_r^T)`` for every restart ``r`` (a leading
dimension ``R``, optimised side by side). Draws are reparameterised, so gradients reach every parameter.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class GaussianFamily(NamedTuple):
    """Variational parameters.

    Attributes:
        mean: ``R x D``.
        rho: ``R x D``; the diagonal scale is ``softplus(rho)``.
        factor: ``R x D x K`` low-rank factor, or ``None`` (mean-field).
    """

    mean: Tensor
    rho: Tensor
    factor: Tensor | None = None

    @property
    def scale(self) -> Tensor:
        return F.softplus(self.rho)

    def draw(self, num_samples: int, generator: torch.Generator | None) -> Tensor:
        """Reparameterised draws ``R x S x D``."""
        r, d = self.mean.shape
        eps = torch.randn((r, num_samples, d), generator=generator, dtype=self.mean.dtype).to(self.mean.device)
        theta = self.mean.unsqueeze(1) + self.scale.unsqueeze(1) * eps
        if self.factor is not None:
            z = torch.randn((r, num_samples, self.factor.shape[-1]), generator=generator,
                            dtype=self.mean.dtype).to(self.mean.device)
            theta = theta + z @ self.factor.transpose(-1, -2)
        return theta

    def entropy(self) -> Tensor:
        """Differential entropy of every restart's Gaussian, ``R``."""
        d = self.mean.shape[-1]
        log_scale = torch.log(self.scale)
        h = log_scale.sum(-1) + 0.5 * d * (1.0 + math.log(2 * math.pi))
        if self.factor is not None:
            # det(diag(s^2) + F F^T) = det(diag(s^2)) det(I + F^T diag(s^-2) F)
            scaled = self.factor / self.scale.unsqueeze(-1)
            k = self.factor.shape[-1]
            eye = torch.eye(k, dtype=self.factor.dtype, device=self.factor.device)
            h = h + 0.5 * torch.logdet(eye + scaled.transpose(-1, -2) @ scaled)
        return h


def inverse_softplus(scale: Tensor) -> Tensor:
    """``rho`` with ``softplus(rho) = scale`` (stable for small and large scales)."""
    return scale + torch.log(-torch.expm1(-scale))
