"""Langevin noise injection with an explicit temperature, shared by every SG-MCMC sampler.

Convention: a step that moves by ``h * G * grad log p`` (drift, with step size ``h`` and ``G`` a diagonal
preconditioner or inverse mass) injects Gaussian noise of variance ``2 * h * G * T``. The discretised Langevin
diffusion then leaves ``p(theta)**(1 / T)`` invariant (up to the ``O(h)`` discretisation bias), so ``T = 1``
samples the target itself and ``T < 1`` a cold posterior.

The reference code of the structured SG-MCMC paper (and several SGLD/pSGLD implementations) injects variance
``h`` with drift ``h * grad log p``: that is this convention at ``T = 1/2``, which samples ``p**2``.
Reproduce it with ``posterior_temperature=0.5``. Papers written as ``eps / 2 * grad log p + N(0, eps)``
(Welling and Teh 2011; Li et al. 2016) use ``T = 1`` with our ``h`` equal to half their ``eps``.

Posterior temperature versus ``inference.sample(temperature=...)``: the latter tempers a ``ProbModel``'s
likelihood only, ``p(theta) p(D | theta)**(1 / T_lik)``, and is part of the target density for every sampler.
The SG-MCMC option ``posterior_temperature`` ``T`` scales the injected noise, so the stationary density is the
whole target to the power ``1 / T`` (prior included; the "cold posterior" of Wenzel et al. 2020). Both can
be combined: ``[p(theta) p(D | theta)**(1 / T_lik)]**(1 / T)``. The option is not called ``temperature`` because
``inference.sample`` already owns that name for the likelihood tempering.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from probnets.validation import check_positive_float


def check_temperature(temperature, name: str = "posterior_temperature") -> float:
    """A positive finite temperature, else a ``ValueError`` naming ``name``."""
    return check_positive_float(temperature, name)


def langevin_noise(variance: Tensor | float, temperature: float, generator: torch.Generator | None,
                   like: Tensor | None = None) -> Tensor:
    """``sqrt(2 * T * variance) * N(0, I)``: the noise that pairs with a drift ``variance * grad log p``.

    Args:
        variance: ``C x D``: ``h * G``; or a number ``h`` (``G = I``), with ``like`` giving the shape.
        temperature: ``T``.
        generator: The source of randomness.
        like: ``C x D``: shape, dtype and device of the noise when ``variance`` is a number.

    Returns:
        ``C x D`` noise.
    """
    if isinstance(variance, Tensor):
        noise = torch.randn(variance.shape, generator=generator, dtype=variance.dtype, device=variance.device)
        return (2 * temperature * variance).sqrt() * noise
    noise = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    return noise.mul_(math.sqrt(2 * temperature * variance))
