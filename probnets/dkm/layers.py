"""Layers of sparse deep kernel machines on :class:`~probnets.dkm.grams.Grams` triples: inputs to Grams, the
learned Gram layer, and the variational output layer (Yang et al., ICML 2023; Milsom et al., ICLR 2024)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from probnets.dkm.grams import Grams, check_grams, check_nu, kl_gram_factor
from probnets.validation import check_finite, check_positive_int


class FeatureToGram(nn.Module):
    """Inducing inputs and the input layer's Grams ``G_0 = X X^T / d``.

    Args:
        inducing: Initial inducing inputs ``P x d``.
        learned: Whether the inducing inputs are trained.
    """

    def __init__(self, inducing: Tensor, learned: bool = True):
        super().__init__()
        if not isinstance(inducing, Tensor) or not torch.is_floating_point(inducing):
            raise TypeError(f"inducing must be a floating-point tensor, got "
                            f"{inducing.dtype if isinstance(inducing, Tensor) else type(inducing).__name__}")
        if inducing.dim() != 2 or inducing.shape[0] == 0 or inducing.shape[1] == 0:
            raise ValueError(f"inducing must have shape P x d with P, d >= 1, got {tuple(inducing.shape)}")
        check_finite(inducing, "inducing")
        data = inducing.detach().clone()
        if learned:
            self.inducing = nn.Parameter(data)
        else:
            self.register_buffer("inducing", data)

    def forward(self, x: Tensor) -> Grams:
        """``x``: ``B x d`` (``B`` may be 0) -> Grams with ``ti``: ``B x P`` and ``t``: ``B``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a tensor, got {type(x).__name__}")
        dim = self.inducing.shape[1]
        if x.dim() != 2 or x.shape[1] != dim:
            raise ValueError(f"x must have shape B x {dim}, got {tuple(x.shape)}")
        if x.dtype != self.inducing.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the model is {self.inducing.dtype}")
        check_finite(x, "x")
        z = self.inducing
        return Grams(z @ z.T / dim, x @ z.T / dim, x.square().sum(-1) / dim, z.new_zeros(()))


class GramLayer(nn.Module):
    """Sparse DKM Gram layer: learned ``G_ii``; the rest follows by conditioning.

    ``G_ii = R R^T`` with ``R = V exp(s / 2) / sqrt(P)`` (``V`` set to ``chol(K_ii) sqrt(P)`` at the first call, so
    ``G = K`` initially) or, whitened, ``R = chol(K_ii) V exp(s / 2) / sqrt(P)`` (``V`` set to ``sqrt(P) I``):
    the same family of Grams, but the KL no longer depends on ``K`` through ``V``, which conditions the
    optimisation when ``nu`` is large. At every test point ``G_ti = K_ti K_ii^-1 G_ii`` and
    ``g_t = k_t - K_ti K_ii^-1 K_it + K_ti K_ii^-1 G_ii K_ii^-1 K_it``; the triple's ``penalty`` grows by
    ``nu KL(N(0, G_ii) || N(0, K_ii))`` (the layer objective is ``-nu KL``). With ``nu = inf`` the layer
    returns its input unchanged. Works on flat (``B x P``) and spatial (``B x P x H x W``) triples.

    Args:
        num_points: Number of inducing points ``P``.
        nu: Regularisation strength in ``(0, inf]`` (proportional to the layer width).
        whitened: Parameterise ``G_ii`` relative to ``chol(K_ii)``.
    """

    def __init__(self, num_points: int, nu: float, *, whitened: bool = False):
        super().__init__()
        self.num_points = check_positive_int(num_points, "num_points")
        self.nu = check_nu(nu)
        self.whitened = bool(whitened)
        if math.isfinite(self.nu):
            self.V = nn.Parameter(torch.eye(self.num_points))
            self.log_scale = nn.Parameter(torch.zeros(()))
            self.register_buffer("initialised", torch.tensor(False))

    def root(self, chol_k: Tensor | None) -> Tensor:
        """``R`` with ``G_ii = R R^T`` (``P x P``), given ``chol(K_ii)`` (needed only when whitened)."""
        root = self.V * (0.5 * self.log_scale).exp() / math.sqrt(self.num_points)
        return chol_k @ root if self.whitened else root

    def gram(self, kernel_ii: Tensor) -> Tensor:
        """``G_ii`` (``P x P``) given this layer's input kernel ``K_ii``."""
        root = self.root(torch.linalg.cholesky(kernel_ii) if self.whitened else None)
        return root @ root.T

    def forward(self, kernels: Grams) -> Grams:
        """Kernel triple -> Gram triple of the same shapes."""
        check_grams(kernels, "kernels")
        if kernels.ii.shape[0] != self.num_points:
            raise ValueError(f"kernels has {kernels.ii.shape[0]} inducing points, this layer expects "
                             f"{self.num_points}")
        if math.isinf(self.nu):
            return kernels
        chol = torch.linalg.cholesky(kernels.ii)
        if not self.initialised:  # in the input's dtype, so that G = K to round-off
            with torch.no_grad():
                start = torch.eye(self.num_points, dtype=chol.dtype, device=chol.device) if self.whitened else chol
                self.V.copy_(start * math.sqrt(self.num_points))
                self.initialised.fill_(True)
        ti, t = kernels.flat()
        proj = torch.cholesky_solve(ti.T, chol).T  # K_ti K_ii^-1, (B H W) x P
        root = self.root(chol)
        gram = root @ root.T
        gram_ti = proj @ gram
        g_t = t - (proj * ti).sum(-1) + (gram_ti * proj).sum(-1)
        penalty = kernels.penalty + self.nu * kl_gram_factor(root, kernels.ii)
        return kernels.unflat(gram_ti, g_t, gram, penalty)


class Output(nn.Module):
    """Output layer: ``q(F_ii) = N(mu, A)`` per output column, ``A`` shared; predictive marginals at test points.

    ``A = L L^T / P``; at a test point
    ``f ~ N(K_ti K_ii^-1 mu, k_t - K_ti K_ii^-1 K_it + K_ti K_ii^-1 A K_ii^-1 K_it)``.

    Args:
        num_points: ``P``.
        num_outputs: ``m``.
        sum_kl: Whether :meth:`kl` sums the KL over the ``m`` output columns (the evidence lower bound's term)
            or averages it (the convolutional DKM reference's scaling for classification).
        generator: Source of the initial ``mu`` and ``L`` (standard normal, as in the reference).
    """

    def __init__(self, num_points: int, num_outputs: int, *, sum_kl: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.mu = nn.Parameter(torch.randn(num_points, num_outputs, generator=generator))
        self.L = nn.Parameter(torch.randn(num_points, num_points, generator=generator))
        self.sum_kl = bool(sum_kl)

    def covariance(self) -> Tensor:
        return self.L @ self.L.T / self.L.shape[-1]

    def kl(self, kernel_ii: Tensor) -> Tensor:
        """``KL(q(F_ii) || p(F_ii))`` summed or averaged over the output columns."""
        chol = torch.linalg.cholesky(kernel_ii)
        mahalanobis = torch.linalg.solve_triangular(chol, self.mu, upper=False).square().sum()
        columns = self.mu.shape[1] if self.sum_kl else 1
        kl_covariance = kl_gram_factor(self.L / math.sqrt(self.L.shape[-1]), kernel_ii)
        return columns * kl_covariance + 0.5 * mahalanobis * columns / self.mu.shape[1]

    def forward(self, kernels: Grams) -> tuple[Tensor, Tensor]:
        """Flat kernel triple -> (mean ``B x m``, variance ``B x 1``)."""
        check_grams(kernels, "kernels", spatial=False)
        chol = torch.linalg.cholesky(kernels.ii)
        proj = torch.cholesky_solve(kernels.ti.T, chol).T  # B x P
        var = kernels.t - (proj * kernels.ti).sum(-1) + ((proj @ self.covariance()) * proj).sum(-1)
        return proj @ self.mu, var.unsqueeze(-1)
