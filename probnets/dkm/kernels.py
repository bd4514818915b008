"""Kernels written in terms of Gram matrices only: ``K = k(G)`` for every part of a :class:`Grams` triple.

A DKM layer never sees features, only the Gram matrix ``G`` of the previous layer, so a kernel must be a function
of ``G``'s entries: the ReLU arc-cosine kernel depends on ``G_ab`` and the two variances ``G_aa``, ``G_bb``; the
squared exponential on the squared distance ``G_aa + G_bb - 2 G_ab``.

Both kernels apply the same diagonal jitter (the reference's input noise): Gram diagonals enter as
``g (1 + jitter) + jitter`` and kernel diagonals leave the same way, so Cholesky factors and conditional
variances stay positive. ``jitter = 0`` gives the exact maps (for comparisons against closed forms).
"""

from __future__ import annotations


import torch
from torch import Tensor, nn

from probnets.dkm.grams import Grams, check_grams
from probnets.kernels import dual_activations
from probnets.validation import check_positive_float


class GramKernel(nn.Module):
    """Base class: two log-hyperparameters (learned or fixed), the jitter, and the map over a triple.

    Subclasses implement :meth:`cross` (off-diagonal entries from ``G_ab`` and the jittered variances) and
    :meth:`diagonal` (``k(g, g)`` before jitter).
    """

    def __init__(self, first: float, second: float, names: tuple[str, str], learned: bool, jitter: float,
                 dtype: torch.dtype | None):
        super().__init__()
        log_hypers = torch.tensor([check_positive_float(first, names[0]),
                                   check_positive_float(second, names[1])], dtype=dtype).log()
        if learned:
            self.log_hypers = nn.Parameter(log_hypers)
        else:
            self.register_buffer("log_hypers", log_hypers)
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter < 1:
            raise ValueError(f"jitter must be a number in [0, 1), got {jitter!r}")
        self.jitter = float(jitter)

    def _noisy(self, diag: Tensor) -> Tensor:
        return diag * (1 + self.jitter) + self.jitter

    def cross(self, g_ab: Tensor, d_a: Tensor, d_b: Tensor) -> Tensor:
        """``k`` at ``G_ab`` (``... x n x p``) with variances ``d_a`` (``... x n``) and ``d_b`` (``... x p``)."""
        raise NotImplementedError

    def diagonal(self, d: Tensor) -> Tensor:
        """``k(g, g)`` at variances ``d``."""
        raise NotImplementedError

    def matrix(self, G: Tensor) -> Tensor:
        """Kernel of a square Gram matrix ``P x P`` (jittered diagonal), ``P x P``."""
        d = self._noisy(G.diagonal())
        return torch.diagonal_scatter(self.cross(G, d, d), self._noisy(self.diagonal(d)))

    def forward(self, grams: Grams) -> Grams:
        """Grams ``(G_ii, G_ti, g_t)`` -> kernel matrices of the same shapes."""
        check_grams(grams, "grams")
        d_i = self._noisy(grams.ii.diagonal())
        d_t = self._noisy(grams.t)
        ti_last = grams.ti.movedim(1, -1) if grams.spatial else grams.ti
        ti = self.cross(ti_last, d_t, d_i)
        ti = ti.movedim(-1, 1) if grams.spatial else ti
        return Grams(self.matrix(grams.ii), ti, self._noisy(self.diagonal(d_t)), grams.penalty)


class ReluKernel(GramKernel):
    """ReLU arc-cosine kernel: ``K = weight_var * 2 E[relu(u) relu(v)] + bias_var``, i.e.
    ``weight_var (sqrt(G_aa G_bb - G_ab^2) + (pi - theta) G_ab) / pi + bias_var`` with
    ``cos theta = G_ab / sqrt(G_aa G_bb)``.

    The factor 2 makes ``weight_var = 1`` preserve variances (``k(x, x) = g(x, x) + bias_var``).

    Args:
        weight_var: Initial ``sigma_w^2 > 0``.
        bias_var: Initial ``sigma_b^2 > 0``.
        learned: Whether the two variances are trained (on the log scale).
        jitter: Relative and absolute diagonal jitter, ``>= 0`` (0 for exact comparisons).
        dtype: Of the hyperparameters (default: torch's default dtype).
    """

    def __init__(self, weight_var: float = 1.0, bias_var: float = 0.1, learned: bool = True,
                 jitter: float = 1e-4, dtype: torch.dtype | None = None):
        super().__init__(weight_var, bias_var, ("weight_var", "bias_var"), learned, jitter, dtype)

    def cross(self, g_ab, d_a, d_b):
        weight_var, bias_var = self.log_hypers.exp()
        return 2 * weight_var * dual_activations.relu(g_ab, d_a, d_b) + bias_var

    def diagonal(self, d):
        weight_var, bias_var = self.log_hypers.exp()
        return weight_var * d + bias_var


class SquaredExponentialKernel(GramKernel):
    """Squared exponential: ``K = variance * exp(-(G_aa + G_bb - 2 G_ab) / (2 lengthscale^2))``.

    Args:
        lengthscale: Initial lengthscale ``> 0``.
        variance: Initial output variance ``> 0``.
        learned: Whether the two are trained (on the log scale).
        jitter: Relative and absolute diagonal jitter, ``>= 0`` (0 for exact comparisons).
        dtype: Of the hyperparameters (default: torch's default dtype).
    """

    def __init__(self, lengthscale: float = 1.0, variance: float = 1.0, learned: bool = True,
                 jitter: float = 1e-4, dtype: torch.dtype | None = None):
        super().__init__(lengthscale, variance, ("lengthscale", "variance"), learned, jitter, dtype)

    def cross(self, g_ab, d_a, d_b):
        lengthscale, variance = self.log_hypers.exp()
        sq_dist = (d_a.unsqueeze(-1) + d_b.unsqueeze(-2) - 2 * g_ab).clamp_min(0)
        return variance * torch.exp(-sq_dist / (2 * lengthscale**2))

    def diagonal(self, d):
        return self.log_hypers[1].exp().expand_as(d)


KERNELS = {"relu": ReluKernel, "se": SquaredExponentialKernel}


def make_kernel(kernel, *, jitter: float, dtype: torch.dtype | None = None) -> GramKernel:
    """A fresh kernel: by name (``"relu"``, ``"se"``, default hyperparameters, the given ``jitter``) or from a
    zero-argument factory returning a :class:`GramKernel` (e.g. ``functools.partial(ReluKernel, jitter=0)``),
    so that every layer gets its own hyperparameters. ``dtype`` applies to named kernels."""
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {tuple(KERNELS)} or a GramKernel factory, got {kernel!r}")
        return KERNELS[kernel](jitter=jitter, dtype=dtype)
    made = kernel() if callable(kernel) and not isinstance(kernel, nn.Module) else None
    if not isinstance(made, GramKernel):
        raise TypeError(f"kernel must be a name in {tuple(KERNELS)} or a zero-argument factory returning a "
                        f"GramKernel, got {kernel!r}")
    return made
