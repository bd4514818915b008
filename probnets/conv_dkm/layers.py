"""Layers of the convolutional deep kernel machine (Milsom, Anson and Aitchison, ICLR 2024).

Every layer maps a spatial :class:`~probnets.dkm.Grams` triple (``ti``: ``B x P x H x W``, ``t``: ``B x H x W``) to
another; global average pooling gives a flat one (``B x P`` and ``B``). The kernels, the Gram layer and the output
layer are the fully connected DKM's (:mod:`probnets.dkm`), which work on both shapes.

Differences to the reference code (``edwardmilsom/convdkmpaper``, ``dkm/dkm``): pixel variances are averaged over
zero-padded 3x3 neighbourhoods counting the padding (``count_include_pad=True``), the same convention as the
cross-covariances ``conv2d(., padding=1) / 9``, so every triple is the restriction of one positive semi-definite
covariance over pixels and inducing points (and ``nu = inf`` reproduces :func:`probnets.kernels.conv_nngp_covariance`
exactly); the reference divides border pixels by the number of in-image pixels instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probnets.dkm.grams import Grams, check_grams
from probnets.validation import check_finite, check_positive_int


def _check_filter_size(filter_size: int) -> int:
    filter_size = check_positive_int(filter_size, "filter_size")
    if filter_size % 2 == 0:
        raise ValueError(f"filter_size must be odd (same padding), got {filter_size}")
    return filter_size


def box_mean(t: Tensor, filter_size: int, stride: int = 1) -> Tensor:
    """Mean over the zero-padded ``filter_size x filter_size`` neighbourhood of every output pixel
    (padding counted), ``B x H x W -> B x H' x W'`` (the output grid of a same-padded strided conv2d)."""
    return F.avg_pool2d(t.unsqueeze(1), filter_size, stride=stride, padding=filter_size // 2,
                        count_include_pad=True).squeeze(1)


def sample_patches(images: Tensor, num_patches: int, filter_size: int = 3, *,
                   generator: torch.Generator | None = None) -> Tensor:
    """Random distinct ``filter_size x filter_size`` patches lying inside the images, to initialise inducing inputs.

    Args:
        images: ``N x C x H x W``.
        num_patches: Number of patches ``P`` (at most the number of interior patches).
        filter_size: Odd patch side.
        generator: Source of randomness.

    Returns:
        ``P x C x filter_size x filter_size``.
    """
    if not isinstance(images, Tensor) or not torch.is_floating_point(images):
        raise TypeError(f"images must be a floating-point tensor, got "
                        f"{images.dtype if isinstance(images, Tensor) else type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must have shape N x C x H x W, got {tuple(images.shape)}")
    num_patches = check_positive_int(num_patches, "num_patches")
    filter_size = _check_filter_size(filter_size)
    channels = images.shape[1]
    patches = images.unfold(2, filter_size, 1).unfold(3, filter_size, 1)  # N x C x H' x W' x f x f
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels, filter_size, filter_size)
    if num_patches > patches.shape[0]:
        raise ValueError(f"num_patches ({num_patches}) exceeds the {patches.shape[0]} patches in images")
    index = torch.randperm(patches.shape[0], generator=generator)[:num_patches]
    return patches[index].clone()


class Input(nn.Module):
    """Inducing inputs: ``P`` learned image patches, passed on with the images.

    Args:
        patches: Initial inducing patches, ``P x C x f x f`` with odd ``f`` (e.g. from :func:`sample_patches`).
        learned: Whether the patches are trained.
    """

    def __init__(self, patches: Tensor, learned: bool = True):
        super().__init__()
        if not isinstance(patches, Tensor) or not torch.is_floating_point(patches):
            raise TypeError(f"patches must be a floating-point tensor, got "
                            f"{patches.dtype if isinstance(patches, Tensor) else type(patches).__name__}")
        if patches.dim() != 4 or patches.shape[-1] != patches.shape[-2] or patches.shape[-1] % 2 == 0:
            raise ValueError(f"patches must have shape P x C x f x f with odd f, got {tuple(patches.shape)}")
        check_finite(patches, "patches")
        data = patches.detach().clone()
        if learned:
            self.patches = nn.Parameter(data)
        else:
            self.register_buffer("patches", data)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x``: images ``B x C x H x W`` -> (inducing patches ``P x C x f x f``, ``x``)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != self.patches.shape[1] or x.shape[0] == 0:
            raise ValueError(f"x must have shape B x {self.patches.shape[1]} x H x W with B >= 1, "
                             f"got {tuple(x.shape)}")
        if x.dtype != self.patches.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the model is {self.patches.dtype}")
        check_finite(x, "x")
        return self.patches, x


class ConvF2G(nn.Module):
    """Features to Grams: the input layer's Gram of zero-padded patches, scaled by ``1 / (C f^2)``.

    ``G_ii = Z Z^T / (C f^2)`` with the flattened inducing patches ``Z``; ``G_ti = conv2d(x, Z) / (C f^2)``
    (same padding); ``g_t`` = the mean of ``|x(p)|^2 / C`` over the ``f x f`` neighbourhood of every pixel.
    """

    def forward(self, inputs: tuple[Tensor, Tensor]) -> Grams:
        """``(patches P x C x f x f, x B x C x H x W)`` -> spatial Grams (``ti``: ``B x P x H x W``)."""
        patches, x = inputs
        size = patches.shape[-1]
        scale = patches[0].numel()
        flat = patches.flatten(1)
        ii = flat @ flat.T / scale
        ti = F.conv2d(x, patches, padding=size // 2) / scale
        t = box_mean(x.square().mean(1), size)
        return Grams(ii, ti, t, ii.new_zeros(()))


class ConvMixup(nn.Module):
    """Convolution with inter-domain inducing points: ``P_out`` new inducing points, each a learned
    ``f x f`` filter ``C_j`` over the ``P_in`` old ones.

    With ``C`` scaled by ``1 / sqrt(P_in)`` (the learned latent is order 1)::

        M_ii = mean over offsets o of C_o K_ii C_o^T                 (P_out x P_out)
        M_ti = conv2d(K_ti, C, same padding, stride) / f^2           (B x P_out x H' x W')
        m_t  = mean of k_t over the zero-padded f x f neighbourhood  (B x H' x W')

    the covariance of a same-padded convolution with i.i.d. ``N(0, 1 / (f^2 width))`` weights of the features
    behind ``K``, at the test pixels and at the inducing points ``sum_o C_o phi_i``.

    Args:
        in_points: ``P_in``.
        out_points: ``P_out``.
        filter_size: Odd filter side ``f``.
        stride: Convolution stride.
        generator: Source of the initial latent filters (standard normal).
    """

    def __init__(self, in_points: int, out_points: int, filter_size: int = 3, stride: int = 1, *,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.in_points = check_positive_int(in_points, "in_points")
        out_points = check_positive_int(out_points, "out_points")
        self.filter_size = _check_filter_size(filter_size)
        self.stride = check_positive_int(stride, "stride")
        self.latent = nn.Parameter(torch.randn(out_points, self.in_points, filter_size, filter_size,
                                               generator=generator))

    def forward(self, kernels: Grams) -> Grams:
        """Spatial kernel triple over ``P_in`` inducing points -> spatial triple over ``P_out``."""
        check_grams(kernels, "kernels", spatial=True)
        if kernels.ii.shape[0] != self.in_points:
            raise ValueError(f"kernels has {kernels.ii.shape[0]} inducing points, this layer expects "
                             f"{self.in_points}")
        filters = self.latent / math.sqrt(self.in_points)
        taps = self.filter_size**2
        ii = torch.einsum("oiab,ij,pjab->op", filters, kernels.ii, filters) / taps
        ti = F.conv2d(kernels.ti, filters, padding=self.filter_size // 2, stride=self.stride) / taps
        t = box_mean(kernels.t, self.filter_size, self.stride)
        return Grams(ii, ti, t, kernels.penalty)


class NystromGAP(nn.Module):
    """Global average pooling of a spatial kernel triple, with the Nystrom approximation for the test variance.

    ``gK_ti = mean over pixels of K_ti``; the variance of the pooled test point is approximated by its Nystrom
    part plus the pixels' residual variances as if independent::

        gk_t = gK_ti K_ii^-1 gK_it + sum_p D_p / |pixels|^2,   D_p = k_t(p) - K_ti(p) K_ii^-1 K_it(p)

    which is exact when the pixels' features lie in the span of the inducing points' (D = 0).
    """

    def forward(self, kernels: Grams) -> Grams:
        """Spatial triple -> pooled triple (``ti``: ``B x P``, ``t``: ``B``)."""
        check_grams(kernels, "kernels", spatial=True)
        chol = torch.linalg.cholesky(kernels.ii)
        pooled = kernels.ti.mean((2, 3))
        pooled_var = torch.linalg.solve_triangular(chol, pooled.T, upper=False).square().sum(0)
        ti_flat, t_flat = kernels.flat()
        explained = torch.linalg.solve_triangular(chol, ti_flat.T, upper=False).square().sum(0)
        residual = (t_flat - explained).reshape(kernels.t.shape)
        num_pixels = residual.shape[1] * residual.shape[2]
        return Grams(kernels.ii, pooled, pooled_var + residual.sum((1, 2)) / num_pixels**2, kernels.penalty)


INDUCING_NORMS = ("none", "global", "local")
TEST_NORMS = ("none", "global", "local", "location", "image")


class GramBatchNorm(nn.Module):
    """Normalise a Gram triple by square roots of its diagonals, then scale by learned factors.

    The inducing points are divided by ``n_i`` and the test pixels by ``n_t``
    (``G_ii / (n_i n_i^T)``, ``G_ti / (n_t n_i)``, ``g_t / n_t^2``), then multiplied by ``exp(log_scale_i)``
    and ``exp(log_scale_t)`` in the same pattern.

    Args:
        inducing_norm: ``n_i``: ``"none"`` (1), ``"global"`` (root mean of ``diag G_ii``) or ``"local"``
            (root of each inducing point's own variance).
        test_norm: ``n_t``: ``"none"``, ``"global"`` (root mean of ``g_t`` over the batch and pixels),
            ``"local"`` (each pixel's own), ``"location"`` (per pixel position, mean over the batch) or
            ``"image"`` (per image, mean over its pixels; same as ``"local"`` without space). ``"global"`` and
            ``"location"`` make a point's output depend on the rest of its minibatch.
        learned_scales: Whether the two log-scales (initially 0) are trained.
    """

    def __init__(self, inducing_norm: str = "local", test_norm: str = "local", learned_scales: bool = True):
        super().__init__()
        if inducing_norm not in INDUCING_NORMS:
            raise ValueError(f"inducing_norm must be one of {INDUCING_NORMS}, got {inducing_norm!r}")
        if test_norm not in TEST_NORMS:
            raise ValueError(f"test_norm must be one of {TEST_NORMS}, got {test_norm!r}")
        self.inducing_norm, self.test_norm = inducing_norm, test_norm
        log_scales = torch.zeros(2)
        if learned_scales:
            self.log_scales = nn.Parameter(log_scales)
        else:
            self.register_buffer("log_scales", log_scales)

    def _test_norm_sq(self, t: Tensor) -> Tensor:
        """Squared ``n_t``, of ``t``'s shape."""
        if self.test_norm == "none":
            return torch.ones_like(t)
        if self.test_norm == "local" or (self.test_norm == "image" and t.dim() == 1):
            return t
        if self.test_norm == "global":
            return t.mean().expand_as(t)
        if t.dim() == 1:
            raise ValueError("test_norm='location' needs spatial Grams (B x P x H x W)")
        dims = 0 if self.test_norm == "location" else (1, 2)
        return t.mean(dims, keepdim=True).expand_as(t)

    def forward(self, grams: Grams) -> Grams:
        """Triple -> normalised triple of the same shapes."""
        check_grams(grams, "grams")
        diag = grams.ii.diagonal()
        if self.inducing_norm == "none":
            norm_i_sq = torch.ones_like(diag)
        else:
            norm_i_sq = diag.mean().expand_as(diag) if self.inducing_norm == "global" else diag
        scale_i, scale_t = self.log_scales.exp()
        unit_i = scale_i / norm_i_sq.sqrt()  # P
        unit_t = scale_t / self._test_norm_sq(grams.t).sqrt()  # shape of t
        unit_i_ti = unit_i.reshape(-1, 1, 1) if grams.spatial else unit_i
        return Grams(grams.ii * unit_i.unsqueeze(-1) * unit_i, grams.ti * unit_i_ti * unit_t.unsqueeze(1),
                     grams.t * unit_t**2, grams.penalty)
