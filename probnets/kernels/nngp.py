"""The NNGP kernel of a fully connected network of any depth (Neal 1996; Lee et al. 2018; Matthews et al. 2018).

The network: ``h_1 = W_0 x + b_0``, ``h_{l+1} = W_l phi(h_l) + b_l`` for ``l = 1..depth``, output ``h_{depth+1}``,
with weights ``N(0, sigma_w^2 / fan_in)`` (per input dimension ``N(0, sigma_{w,k}^2 / d)`` in the first layer
with ARD) and biases ``N(0, sigma_b^2)``. As the hidden widths go to infinity the output is a GP with

    K_0(x, x') = sigma_b^2 + sum_k sigma_{w,k}^2 x_k x'_k / d
    K_l(x, x') = sigma_b^2 + sigma_w^2 E[phi(u) phi(v)],  (u, v) ~ N(0, K_{l-1} on {x, x'})

and kernel ``K_depth``; ``E[phi(u) phi(v)]`` is the activation's dual (``probnets.kernels.dual_activations``):
the arc-cosine recursion for ReLU, Williams' arcsine kernel for erf, and a closed form for GELU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from gpytorch.constraints import Interval
from gpytorch.priors import Prior
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from probnets.kernels import dual_activations
from probnets.kernels.base import NetworkKernel, batch_numel, check_inputs, expand_right
from probnets.validation import check_positive_float, check_positive_int

DualActivation = Callable[[Tensor, Tensor, Tensor], Tensor]
_BLOCK_ELEMENTS = 2**17

ACTIVATIONS: dict[str, DualActivation] = {
    "relu": dual_activations.relu,
    "erf": dual_activations.erf,
    "gelu": dual_activations.gelu,
}


def dual_activation(name: str) -> DualActivation:
    """The dual activation registered under ``name`` (one of ``ACTIVATIONS``)."""
    if not isinstance(name, str):
        raise TypeError(f"activation must be a string, got {type(name).__name__}")
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def pointwise_dual(dual: DualActivation, k_xy: Tensor, k_xx: Tensor, k_yy: Tensor) -> Tensor:
    """Apply a dual activation entry by entry to broadcastable ``k_xy``, ``k_xx``, ``k_yy`` (no outer product)."""
    return dual(k_xy[..., None, None], k_xx[..., None], k_yy[..., None])[..., 0, 0]


class NNGPCovariance(NamedTuple):
    """Output covariances of an NNGP.

    Attributes:
        cross: ``K(x1, x2)``, ``... x n x m`` (``... x n``, entries ``K(x1_i, x2_i)``, for ``diag=True``).
        var1: ``K(x1_i, x1_i)``, ``... x n``.
        var2: ``K(x2_j, x2_j)``, ``... x m``.
    """

    cross: Tensor
    var1: Tensor
    var2: Tensor


def nngp_covariance(
    x1: Tensor,
    x2: Tensor | None,
    depth: int,
    weight_var: float | Tensor,
    bias_var: float | Tensor,
    activation: str = "relu",
    *,
    input_weight_var: Tensor | None = None,
    diag: bool = False,
) -> NNGPCovariance:
    """NNGP covariance of a fully connected network with ``depth`` hidden layers.

    Vectorised torch, ``O(n m (d + depth))`` time, computed in blocks of rows of ``x1`` (all layers per block).

    Args:
        x1: Inputs ``... x n x d``.
        x2: Inputs ``... x m x d``; ``None`` (or ``x1`` itself) for ``K(x1, x1)``.
        depth: Number of hidden layers, ``>= 0`` (0 gives the linear kernel ``K_0``).
        weight_var: ``sigma_w^2 > 0``, a float or a tensor of the batch shape ``...`` (broadcastable).
        bias_var: ``sigma_b^2 > 0``, same shapes as ``weight_var``.
        activation: ``"relu"``, ``"erf"`` or ``"gelu"``.
        input_weight_var: Per-input-dimension first-layer weight variances (ARD), ``... x d``; ``None`` uses
            ``weight_var`` for every dimension.
        diag: If True, only ``K(x1_i, x2_i)`` for ``n == m`` paired inputs.

    Returns:
        ``NNGPCovariance(cross, var1, var2)``.

    Raises:
        ValueError: NaN/inf in the inputs, mismatched feature counts or point counts (``diag``), ``depth < 0``,
            non-positive variances, or an unknown activation.
    """
    dual = dual_activation(activation)
    depth = check_positive_int(depth, "depth", minimum=0)
    weight_var = check_positive_float(weight_var, "weight_var")
    bias_var = check_positive_float(bias_var, "bias_var")
    same = x2 is None or x2 is x1
    x2 = x1 if x2 is None else x2
    check_inputs(x1, x2)
    d = x1.shape[-1]
    if input_weight_var is None:
        scale = expand_right(weight_var, 2) / d
    else:
        check_positive_float(input_weight_var, "input_weight_var")
        if input_weight_var.shape[-1:] != (d,):
            raise ValueError(f"input_weight_var must have shape (..., {d}) to match x1, "
                             f"got {tuple(input_weight_var.shape)}")
        scale = input_weight_var.unsqueeze(-2) / d
    if diag and x1.shape[-2] != x2.shape[-2]:
        raise ValueError(f"diag=True needs as many points in x2 as in x1, got {x2.shape[-2]} and {x1.shape[-2]}")

    b_vec, w_vec = expand_right(bias_var, 1), expand_right(weight_var, 1)
    variances1 = _layer_variances(b_vec + (x1 * x1 * scale).sum(-1), depth, w_vec, b_vec, dual)
    variances2 = variances1 if same else _layer_variances(b_vec + (x2 * x2 * scale).sum(-1), depth, w_vec, b_vec,
                                                          dual)
    if diag:
        cross = b_vec + (x1 * x2 * scale).sum(-1)
        for layer in range(depth):
            cross = b_vec + w_vec * pointwise_dual(dual, cross, variances1[layer], variances2[layer])
        return NNGPCovariance(cross, variances1[-1], variances2[-1])

    b_mat, w_mat = expand_right(bias_var, 2), expand_right(weight_var, 2)

    def rows_of_cross(x1_rows: Tensor, *var1_rows: Tensor) -> Tensor:
        cross = b_mat + (x1_rows * scale) @ x2.transpose(-1, -2)
        for layer in range(depth):
            cross = b_mat + w_mat * dual(cross, var1_rows[layer], variances2[layer])
        return cross

    # All layers run on one block of rows at a time: the block's temporaries stay in cache and are reused by
    # the allocator (about twice as fast as whole-matrix passes at n = m = 2000). With gradients, each block is
    # recomputed in the backward pass instead of keeping every layer's temporaries for the whole matrix.
    rows = max(1, _BLOCK_ELEMENTS // max(1, x2.shape[-2] * batch_numel(x1, x2, weight_var, bias_var)))
    use_checkpoint = torch.is_grad_enabled() and any(
        isinstance(t, Tensor) and t.requires_grad for t in (x1, x2, weight_var, bias_var, input_weight_var))
    # split, not slicing in the loop: the backward of each slice would fill a zero gradient of all of x1.
    x1_blocks = x1.split(rows, dim=-2)
    variance_blocks = [v.split(rows, dim=-1) for v in variances1[:depth]]
    blocks = []
    for i, x1_block in enumerate(x1_blocks):
        args = (x1_block, *(v[i] for v in variance_blocks))
        blocks.append(checkpoint(rows_of_cross, *args, use_reentrant=False) if use_checkpoint
                      else rows_of_cross(*args))
    return NNGPCovariance(torch.cat(blocks, dim=-2), variances1[-1], variances2[-1])


def _layer_variances(var: Tensor, depth: int, weight_var, bias_var, dual: DualActivation) -> list[Tensor]:
    """``K_l(x, x)`` for ``l = 0..depth`` from ``K_0(x, x)`` (``... x n`` each)."""
    variances = [var]
    for _ in range(depth):
        variances.append(bias_var + weight_var * pointwise_dual(dual, variances[-1], variances[-1], variances[-1]))
    return variances


class NNGPKernel(NetworkKernel):
    """GPyTorch kernel of an infinitely wide fully connected network (see the module docstring).

    Hyperparameters ``weight_var`` and ``bias_var`` (``batch_shape``) are shared by all layers; with
    ``ard_num_dims`` the first layer has its own per-dimension weight variances ``input_weight_var``
    (``batch_shape x 1 x ard_num_dims``, like GPyTorch's ARD lengthscale) instead of ``weight_var``.

    Args:
        depth: Number of hidden layers, ``>= 0``.
        activation: ``"relu"``, ``"erf"`` or ``"gelu"``.
        ard_num_dims: Input dimension ``d`` for per-dimension first-layer weight variances, or ``None``.
        weight_var, bias_var: Initial variances (positive).
        input_weight_var_prior, input_weight_var_constraint: Prior and constraint of the ARD variances.
        **kwargs: ``batch_shape``, ``active_dims``, priors and constraints of ``NetworkKernel``.

    Example:
        >>> kernel = NNGPKernel(depth=3, activation="relu", weight_var=2.0)
        >>> K = kernel(torch.randn(5, 2)).to_dense()  # 5 x 5
    """

    def __init__(
        self,
        depth: int = 3,
        activation: str = "relu",
        *,
        ard_num_dims: int | None = None,
        weight_var: float = 1.0,
        bias_var: float = 0.1,
        input_weight_var_prior: Prior | None = None,
        input_weight_var_constraint: Interval | None = None,
        **kwargs,
    ):
        dual_activation(activation)
        if ard_num_dims is not None:
            check_positive_int(ard_num_dims, "ard_num_dims")
        super().__init__(depth, activation, num_features=ard_num_dims, weight_var=weight_var, bias_var=bias_var,
                         ard_num_dims=ard_num_dims, **kwargs)
        if ard_num_dims is not None:
            self.register_variance("input_weight_var", weight_var, (1, ard_num_dims), input_weight_var_prior,
                                   input_weight_var_constraint)

    @property
    def input_weight_var(self) -> Tensor | None:
        """Per-dimension first-layer weight variances, ``batch_shape x 1 x d`` (``None`` without ARD)."""
        return self.get_variance("input_weight_var") if self.ard_num_dims is not None else None

    @input_weight_var.setter
    def input_weight_var(self, value: float | Tensor) -> None:
        if self.ard_num_dims is None:
            raise ValueError("input_weight_var exists only with ard_num_dims")
        self.set_variance("input_weight_var", value)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False,
                **params) -> Tensor:
        if last_dim_is_batch:
            raise ValueError("last_dim_is_batch is not supported by network kernels")
        input_weight_var = self.input_weight_var
        return nngp_covariance(
            x1, x2, self.depth, self.weight_var, self.bias_var, self.activation,
            input_weight_var=None if input_weight_var is None else input_weight_var.squeeze(-2), diag=diag,
        ).cross
