"""Gram triples: the quantity deep kernel machines pass from layer to layer, and the KL that regularises them.

A sparse DKM layer holds the Gram (or kernel) matrix among ``P`` inducing points and, for every test/train
point, its cross-covariances with the inducing points and its own variance. Convolutional DKMs carry one such
triple per pixel (``ti``: ``B x P x H x W``, ``t``: ``B x H x W``); fully connected DKMs and pooled convolutional
layers carry ``ti``: ``B x P`` and ``t``: ``B``. The triple also carries ``penalty``, the sum of ``nu * KL`` of the
Gram layers it went through (a scalar), so the regulariser travels with the data through ``nn.Sequential``
stacks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor


class Grams(NamedTuple):
    """Gram/kernel matrices of one layer over inducing points ``i`` and test/train points ``t``.

    Attributes:
        ii: Among the inducing points, ``P x P``.
        ti: Between every test point (pixel) and the inducing points, ``B x P`` (or ``B x P x H x W``).
        t: Variance at every test point (pixel), ``B`` (or ``B x H x W``).
        penalty: Sum of ``nu * KL`` over the Gram layers passed so far, a scalar tensor.
    """

    ii: Tensor
    ti: Tensor
    t: Tensor
    penalty: Tensor

    @property
    def spatial(self) -> bool:
        return self.ti.dim() == 4

    def flat(self) -> tuple[Tensor, Tensor]:
        """``ti`` as ``(B H W) x P`` and ``t`` as ``(B H W)``: every pixel one test point."""
        ti = self.ti.movedim(1, -1) if self.spatial else self.ti
        return ti.reshape(-1, ti.shape[-1]), self.t.reshape(-1)

    def unflat(self, ti: Tensor, t: Tensor, ii: Tensor, penalty: Tensor) -> Grams:
        """Inverse of :meth:`flat`: a triple of this one's shapes from flat ``ti`` and ``t``."""
        if self.spatial:
            batch, _, height, width = self.ti.shape
            ti = ti.reshape(batch, height, width, -1).movedim(-1, 1)
        return Grams(ii, ti, t.reshape(self.t.shape), penalty)


def check_grams(grams, name: str = "grams", *, spatial: bool | None = None) -> Grams:
    """Check the shapes of a :class:`Grams` triple; raises TypeError/ValueError naming ``name``."""
    if not isinstance(grams, Grams):
        raise TypeError(f"{name} must be a Grams triple, got {type(grams).__name__}")
    ii, ti, t = grams.ii, grams.ti, grams.t
    if ii.dim() != 2 or ii.shape[0] != ii.shape[1]:
        raise ValueError(f"{name}.ii must be a square P x P matrix, got {tuple(ii.shape)}")
    if ti.dim() not in (2, 4) or ti.shape[1] != ii.shape[0] or t.shape != ti.shape[:1] + ti.shape[2:]:
        raise ValueError(f"{name} must have ti: B x P x H x W and t: B x H x W (or B x P and B) with P = "
                         f"{ii.shape[0]}, got ti {tuple(ti.shape)} and t {tuple(t.shape)}")
    if spatial is not None and grams.spatial != spatial:
        raise ValueError(f"{name} must be {'spatial (B x P x H x W)' if spatial else 'pooled (B x P)'}, "
                         f"got ti of shape {tuple(ti.shape)}")
    return grams


def sum_grams(weighted: Sequence[tuple[float, Grams]], penalty: Tensor) -> Grams:
    """``sum_k w_k G_k`` over triples of equal shapes, with the given total ``penalty``."""
    ii = sum(w * g.ii for w, g in weighted)
    ti = sum(w * g.ti for w, g in weighted)
    t = sum(w * g.t for w, g in weighted)
    return Grams(ii, ti, t, penalty)


def check_nu(nu) -> float:
    """``nu`` in ``(0, inf]``; ``math.inf`` pins the Grams to the kernel."""
    if isinstance(nu, bool) or not isinstance(nu, (int, float)) or math.isnan(nu) or nu <= 0:
        raise ValueError(f"nu must be a positive number or math.inf, got {nu!r}")
    return float(nu)


def kl_gram(G: Tensor, K: Tensor) -> Tensor:
    """``KL(N(0, G) || N(0, K)) = (tr(K^-1 G) - P + log|K| - log|G|) / 2`` for ``P x P`` SPD matrices."""
    return kl_gram_factor(torch.linalg.cholesky(G), K)


def kl_gram_factor(R: Tensor, K: Tensor) -> Tensor:
    """``KL(N(0, R R^T) || N(0, K))`` from any nonsingular square root ``R`` (``P x P``) of the Gram matrix.

    Learned Grams are parameterised as ``R R^T``; working with ``R`` (``log|G| = 2 log|det R|``) needs no
    Cholesky factor of ``G``, which fails in float32 once ``G`` is nearly singular although the KL is finite.
    """
    chol_k = torch.linalg.cholesky(K)
    half = torch.linalg.solve_triangular(chol_k, R, upper=False)
    logdet_k = 2 * chol_k.diagonal().log().sum()
    logdet_g = 2 * torch.linalg.slogdet(R).logabsdet
    return 0.5 * (half.square().sum() - R.shape[-1] + logdet_k - logdet_g)
