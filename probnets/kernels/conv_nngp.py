"""The NNGP kernel of an infinitely wide convolutional network (Novak et al. 2019; Garriga-Alonso et al. 2019).

The network on ``C x H x W`` images: ``depth`` layers of 3x3 convolutions (stride 1, zero "same" padding, weights
``N(0, sigma_w^2 / (9 C_in))``, biases ``N(0, sigma_b^2)``), each followed by the activation, then a dense
readout (weights ``N(0, sigma_w^2 / fan_in)``) of either

* ``"gap"``: the global average of every channel over the pixels, or
* ``"flatten"``: all channels at all pixels.

As the channel counts go to infinity the output is a GP. With the pixel-pair covariance of layer ``l``,
``K_l(x, p; x', p')`` (``p``, ``p'`` pixels), ``F_l = E[phi(u) phi(v)]`` its dual and
``F_0(p, p') = x(p) . x'(p') / C``:

    K_{l+1}(p, p') = sigma_b^2 + sigma_w^2 / 9 sum_{q in 3x3 offsets} F_l(p + q, p' + q)   (F = 0 off the image)
    K_out = sigma_b^2 + sigma_w^2 mean_{p, p'} F_depth(p, p')      ("gap")
    K_out = sigma_b^2 + sigma_w^2 mean_p F_depth(p, p)              ("flatten")

Cost per image pair with ``P = H W`` pixels: the GAP readout needs the full ``P x P`` pixel covariance,
``O(P^2 (C + depth))`` time and memory; the flatten readout only its diagonal (the recursion maps diagonal
to diagonal), ``O(P (C + depth))``. Keep GAP to small images: 8x8 digits give ``P^2 = 4096`` entries per
pair, and the 200 x 200 matrix of 8x8 single-channel images at depth 2 takes about 10 s on one CPU core
(flatten: 0.2 s). Pairs are processed in chunks of rows of ``x1`` holding at most ``max_chunk_elements``
entries (at least one row), and with gradients enabled each chunk is checkpointed (recomputed in the backward
pass), so memory stays bounded by one chunk; the dual activations allocate about ten temporaries of a chunk's
size.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from probnets.kernels.base import NetworkKernel, batch_numel, check_inputs, expand_right
from probnets.kernels.nngp import DualActivation, dual_activation, pointwise_dual
from probnets.validation import check_positive_float, check_positive_int

READOUTS = ("gap", "flatten")


def check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """Validate ``image_shape = (C, H, W)``."""
    if not isinstance(image_shape, Sequence) or len(image_shape) != 3:
        raise ValueError(f"image_shape must be (channels, height, width), got {image_shape!r}")
    return tuple(check_positive_int(s, "image_shape") for s in image_shape)


def _box_sum(t: Tensor) -> Tensor:
    """Sum over the 3x3 neighbourhood of every pixel, zero outside the image: ``... x H x W``."""
    height, width = t.shape[-2:]
    flat = t.reshape(-1, 1, height, width)
    return 9 * F.avg_pool2d(flat, 3, stride=1, padding=1, count_include_pad=True).reshape(t.shape)


def _joint_shift_sum(t: Tensor, size: int, dim: int) -> Tensor:
    """Sum over shifts by -1, 0, 1 applied to both pixels of a pair along one image axis.

    Along ``dim``, ``t`` holds the pair ``(a, a')`` of a zero-padded axis flattened as ``a (size + 2) + a'``;
    moving both by one is a shift by ``size + 3``, so the sum is three contiguous slices. Returns ``dim``
    replaced by the interior pairs ``size x size``."""
    step = size + 3
    length = t.shape[dim] - 2 * step
    total = t.narrow(dim, 0, length) + t.narrow(dim, step, length) + t.narrow(dim, 2 * step, length)
    # Entry j is the interior pair (a, a') with j = a (size + 2) + a'; pad the two missing tail entries to
    # unflatten, then drop the columns a' >= size.
    total = F.pad(total, (0, 0) * (-dim - 1) + (0, 2))
    return total.unflatten(dim, (size, size + 2)).narrow(dim, 0, size)


def _pair_box_sum(t: Tensor) -> Tensor:
    """``_box_sum`` applied jointly to both pixels of the pixel pairs in ``t``: ``... x H x H x W x W`` with
    the pixel pair laid out as ``(h, h', w, w')``."""
    *batch, height, _, width, _ = t.shape
    padded = F.pad(t, (1, 1) * 4).reshape(*batch, (height + 2) ** 2, (width + 2) ** 2)
    summed = _joint_shift_sum(padded, width, -1)
    return _joint_shift_sum(summed.flatten(-2), height, -2).unflatten(-1, (width, width))


def _pixel_variances(images: Tensor, depth: int, weight_var, bias_var, dual: DualActivation) -> list[Tensor]:
    """``K_l(x, p; x, p)`` for ``l = 1..depth``: per image and pixel, ``... x n x H x W`` each."""
    w, b = expand_right(weight_var, 3), expand_right(bias_var, 3)
    feature = images.square().mean(-3)
    variances = []
    for _ in range(depth):
        if variances:
            feature = pointwise_dual(dual, variances[-1], variances[-1], variances[-1])
        variances.append(b + w / 9 * _box_sum(feature))
    return variances


def _readout(g0: Tensor, side1: list[Tensor], side2: list[Tensor], weight_var, bias_var, dual: DualActivation,
             gap: bool) -> Tensor:
    """Run the layer recursion from the input pixel covariance ``g0`` to the readout; returns ``...``.

    GAP: ``g0`` is ``... x H x H x W x W`` (pixel pairs ``(h, h', w, w')``) and the per-layer pixel variances of
    the two sides broadcast as ``... x H x 1 x W`` and ``... x 1 x H x W`` in ``dual``'s outer-product
    convention. Flatten: ``g0`` and the variances broadcast as ``... x H x W``.
    """
    spatial = 4 if gap else 2
    w, b = expand_right(weight_var, spatial), expand_right(bias_var, spatial)
    feature = g0
    for v1, v2 in zip(side1, side2):
        if gap:
            feature = dual(b + w / 9 * _pair_box_sum(feature), v1, v2)
        else:
            feature = pointwise_dual(dual, b + w / 9 * _box_sum(feature), v1, v2)
    return bias_var + weight_var * feature.flatten(-spatial).mean(-1)


def _block(images1: Tensor, images2: Tensor, *variances: Tensor, weight_var, bias_var, dual: DualActivation,
           gap: bool, diag: bool) -> Tensor:
    """Kernel entries between images ``... x n x C x H x W`` and ``... x m x C x H x W``, given their per-layer
    pixel variances (``... x n x H x W`` then ``... x m x H x W``): ``... x n x m``, or ``... x n`` (``diag``)."""
    var1, var2 = variances[: len(variances) // 2], variances[len(variances) // 2:]
    channels = images1.shape[-3]
    if gap:
        g0 = torch.einsum("...ichw,...icuv->...ihuwv" if diag else "...ichw,...jcuv->...ijhuwv", images1, images2)
        side1 = [v.unsqueeze(-2) if diag else v.unsqueeze(-2).unsqueeze(-4) for v in var1]
        side2 = [v.unsqueeze(-3) if diag else v.unsqueeze(-3).unsqueeze(-5) for v in var2]
    else:
        g0 = torch.einsum("...ichw,...ichw->...ihw" if diag else "...ichw,...jchw->...ijhw", images1, images2)
        side1 = list(var1) if diag else [v.unsqueeze(-3) for v in var1]
        side2 = list(var2) if diag else [v.unsqueeze(-4) for v in var2]
    return _readout(g0 / channels, side1, side2, weight_var, bias_var, dual, gap)


def conv_nngp_covariance(
    x1: Tensor,
    x2: Tensor | None,
    image_shape: Sequence[int],
    depth: int,
    weight_var: float | Tensor,
    bias_var: float | Tensor,
    activation: str = "relu",
    readout: str = "gap",
    *,
    diag: bool = False,
    max_chunk_elements: int = 2**18,
) -> Tensor:
    """Convolutional NNGP covariance (see the module docstring for the network and the cost).

    Args:
        x1: Flattened images ``... x n x (C H W)`` (``x1.reshape(..., n, C, H, W)`` are the images).
        x2: Flattened images ``... x m x (C H W)``, or ``None`` for ``x1``.
        image_shape: ``(C, H, W)``.
        depth: Number of convolutional layers, ``>= 0``.
        weight_var: ``sigma_w^2 > 0``, a float or a tensor of the batch shape ``...`` (broadcastable).
        bias_var: ``sigma_b^2 > 0``, same shapes as ``weight_var``.
        activation: ``"relu"``, ``"erf"`` or ``"gelu"``.
        readout: ``"gap"`` (global average pooling) or ``"flatten"``.
        diag: If True, only ``K(x1_i, x2_i)`` for ``n == m`` paired inputs.
        max_chunk_elements: Upper bound on the entries of the per-chunk pixel covariance tensor.

    Returns:
        ``K(x1, x2)``, ``... x n x m`` (``... x n`` for ``diag=True``).

    Raises:
        ValueError: NaN/inf inputs, inputs whose width is not ``C H W``, ``depth < 0``, non-positive variances,
            an unknown activation or readout.
    """
    dual = dual_activation(activation)
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    channels, height, width = check_image_shape(image_shape)
    depth = check_positive_int(depth, "depth", minimum=0)
    weight_var = check_positive_float(weight_var, "weight_var")
    bias_var = check_positive_float(bias_var, "bias_var")
    max_chunk_elements = check_positive_int(max_chunk_elements, "max_chunk_elements")
    same = x2 is None or x2 is x1
    x2 = x1 if x2 is None else x2
    check_inputs(x1, x2, num_features=channels * height * width)
    if diag and x1.shape[-2] != x2.shape[-2]:
        raise ValueError(f"diag=True needs as many points in x2 as in x1, got {x2.shape[-2]} and {x1.shape[-2]}")

    images1 = x1.reshape(*x1.shape[:-1], channels, height, width)
    images2 = x2.reshape(*x2.shape[:-1], channels, height, width)
    var1 = _pixel_variances(images1, depth, weight_var, bias_var, dual)
    var2 = var1 if same else _pixel_variances(images2, depth, weight_var, bias_var, dual)
    gap = readout == "gap"
    pair_dims = 1 if diag else 2
    block = partial(_block, weight_var=expand_right(weight_var, pair_dims),
                    bias_var=expand_right(bias_var, pair_dims), dual=dual, gap=gap, diag=diag)

    per_row = (1 if diag else x2.shape[-2]) * (height * width) ** (2 if gap else 1)
    chunk = max(1, max_chunk_elements // (per_row * batch_numel(x1, x2, weight_var, bias_var)))
    use_checkpoint = torch.is_grad_enabled() and any(
        isinstance(t, Tensor) and t.requires_grad for t in (x1, x2, weight_var, bias_var))
    out = []
    for start in range(0, x1.shape[-2], chunk):
        rows = slice(start, start + chunk)
        args = [images1[..., rows, :, :, :], images2[..., rows, :, :, :] if diag else images2,
                *(v[..., rows, :, :] for v in var1), *(v[..., rows, :, :] if diag else v for v in var2)]
        out.append(checkpoint(block, *args, use_reentrant=False) if use_checkpoint else block(*args))
    return torch.cat(out, dim=-1 if diag else -2)


class ConvNNGPKernel(NetworkKernel):
    """GPyTorch kernel of an infinitely wide convolutional network on small images (see the module docstring).

    Inputs are flattened images ``... x n x (C H W)``. Hyperparameters ``weight_var`` and ``bias_var``
    (``batch_shape``) are shared by all layers.

    Args:
        image_shape: ``(C, H, W)`` of the images.
        depth: Number of 3x3 convolutional layers, ``>= 0``.
        activation: ``"relu"``, ``"erf"`` or ``"gelu"``.
        readout: ``"gap"`` (global average pooling; ``O(n m P^2)``) or ``"flatten"`` (``O(n m P)``).
        weight_var, bias_var: Initial variances (positive).
        max_chunk_elements: Bound on the entries of one chunk's pixel covariance tensor (memory).
        **kwargs: ``batch_shape``, ``active_dims``, priors and constraints of ``NetworkKernel``.

    Example:
        >>> kernel = ConvNNGPKernel((1, 8, 8), depth=2, readout="gap", weight_var=2.0)
        >>> K = kernel(torch.rand(10, 64)).to_dense()  # 10 x 10
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        depth: int = 2,
        activation: str = "relu",
        readout: str = "gap",
        *,
        weight_var: float = 1.0,
        bias_var: float = 0.1,
        max_chunk_elements: int = 2**18,
        **kwargs,
    ):
        dual_activation(activation)
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        image_shape = check_image_shape(image_shape)
        super().__init__(depth, activation, num_features=image_shape[0] * image_shape[1] * image_shape[2],
                         weight_var=weight_var, bias_var=bias_var, **kwargs)
        self.image_shape = image_shape
        self.readout = readout
        self.max_chunk_elements = check_positive_int(max_chunk_elements, "max_chunk_elements")

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False,
                **params) -> Tensor:
        if last_dim_is_batch:
            raise ValueError("last_dim_is_batch is not supported by network kernels")
        return conv_nngp_covariance(x1, x2, self.image_shape, self.depth, self.weight_var, self.bias_var,
                                    self.activation, self.readout, diag=diag,
                                    max_chunk_elements=self.max_chunk_elements)
