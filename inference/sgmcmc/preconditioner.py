"""The RMSprop preconditioner of preconditioned SGLD (Li, Chen, Carlson and Carin 2016).

A running average ``V`` of the squared gradient gives the diagonal preconditioner ``G = 1 / (eps + sqrt(V))``::

    V <- alpha * V + (1 - alpha) * mean over chains of grad**2

``alpha`` is the averaging decay (0.99) and ``eps`` (Li et al.'s ``lambda``) bounds ``G`` by ``1 / eps`` where
gradients vanish. A position-dependent ``G`` needs the correction drift ``Gamma(theta) = sum_j d G_ij / d
theta_j`` to leave the target invariant; Li et al. drop it in practice. Here ``V`` adapts during warm-up only
and is frozen afterwards, so while draws are kept ``G`` is constant and ``Gamma`` is exactly zero: dropping it
costs nothing. ``V`` starts at the squared gradient at the initial positions (not at zero, which would inflate
the first steps by ``1 / sqrt(1 - alpha)``).

The chains share one ``V`` (Li et al. run one chain). A per-chain ``V`` of a vectorised run is an average over
a window shorter than the chain's own correlation time, so each chain's step follows its own excursions: on a
1-D standard normal at ``T = 2`` (2000 chains, ``h = 0.005``, 500 adapting steps) the chains ended warm-up at
``E theta**2 = 3.1`` instead of 2, with frozen ``G`` spread over a factor 20, and the kept draws still had a 5%
variance bias. Pooled over ``C`` chains, one chain's influence on its own step is ``1 / C``; after warm-up the
chains are independent again, each with the same fixed ``G``.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class RMSprop(NamedTuple):
    """``square_avg`` ``1 x D``: the running average ``V`` of the squared gradient, shared by the chains."""

    square_avg: Tensor


def init(logdensity_grad: Tensor) -> RMSprop:
    """``V`` from the gradients ``C x D`` at the initial positions."""
    return RMSprop(logdensity_grad.square().mean(0, keepdim=True))


def update(state: RMSprop, logdensity_grad: Tensor, alpha: float) -> RMSprop:
    """One averaging step with the gradients ``C x D``."""
    return RMSprop(alpha * state.square_avg + (1 - alpha) * logdensity_grad.square().mean(0, keepdim=True))


def inverse_mass(state: RMSprop, eps: float) -> Tensor:
    """``G = 1 / (eps + sqrt(V))``, ``1 x D``."""
    return 1 / (eps + state.square_avg.sqrt())
