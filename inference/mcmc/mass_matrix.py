"""Mass matrices (metrics) for Hamiltonian dynamics: diagonal or dense, per chain or shared."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class MassMatrix(NamedTuple):
    """Kinetic energy ``K(p) = 0.5 p^T M^{-1} p`` for a diagonal or dense inverse mass matrix.

    Attributes:
        inverse: ``M^{-1}``: diagonal ``(..., D)`` or dense ``(..., D, D)``; leading dims broadcast against
            chains (``(C, D)`` per-chain, ``(D,)`` shared).
        mass_cholesky: Cholesky factor of ``M`` (dense only) used to draw momenta ``p ~ N(0, M)``.
        dense: Whether ``inverse`` is a full matrix.
    """

    inverse: Tensor
    mass_cholesky: Tensor | None
    dense: bool

    def kinetic_energy(self, momentum: Tensor) -> Tensor:
        """``(C, D) -> (C,)``."""
        return 0.5 * (momentum * self.velocity(momentum)).sum(-1)

    def velocity(self, momentum: Tensor) -> Tensor:
        """``M^{-1} p``, ``(C, D)``."""
        if self.dense:
            return torch.einsum("...ij,...j->...i", self.inverse, momentum)
        return self.inverse * momentum

    def sample_momentum(self, shape: torch.Size, generator: torch.Generator | None, dtype, device) -> Tensor:
        """Momenta ``p ~ N(0, M)`` of shape ``shape = (C, D)``."""
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        if self.dense:
            return torch.einsum("...ij,...j->...i", self.mass_cholesky, z)
        return z * self.inverse.rsqrt()


def diagonal(inverse: Tensor) -> MassMatrix:
    """A diagonal mass matrix from its inverse (the variances), ``(..., D)``."""
    if not bool((inverse > 0).all()):
        raise ValueError("inverse mass matrix entries must be positive")
    return MassMatrix(inverse, None, False)


def dense(inverse: Tensor) -> MassMatrix:
    """A dense mass matrix from its inverse (a covariance), ``(..., D, D)``."""
    if inverse.shape[-1] != inverse.shape[-2]:
        raise ValueError(f"dense inverse mass matrix must be square, got {tuple(inverse.shape)}")
    inverse = 0.5 * (inverse + inverse.transpose(-1, -2))
    mass = torch.cholesky_inverse(torch.linalg.cholesky(inverse))
    return MassMatrix(inverse, torch.linalg.cholesky(mass), True)


def identity(dim: int, *, dtype=None, device=None) -> MassMatrix:
    return diagonal(torch.ones(dim, dtype=dtype, device=device))
