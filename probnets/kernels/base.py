"""Shared parts of the kernels of infinitely wide networks: the weight and bias variances as positive GPyTorch
hyperparameters, and the input checks every such kernel runs."""

from __future__ import annotations

import torch
from gpytorch.constraints import GreaterThan, Interval
from gpytorch.kernels import Kernel
from gpytorch.priors import Prior
from torch import Tensor

from probnets.validation import check_finite, check_positive_float, check_positive_int


def check_inputs(x1: Tensor, x2: Tensor, num_features: int | None = None) -> None:
    """Check kernel inputs ``x1`` (``... x n x d``) and ``x2`` (``... x m x d``).

    Raises:
        TypeError: If an input is not a floating-point tensor.
        ValueError: If an input has fewer than 2 dimensions, contains NaN/inf, the feature counts of ``x1`` and
            ``x2`` differ, or differ from ``num_features``.
    """
    for name, x in (("x1", x1), ("x2", x2)):
        if not isinstance(x, Tensor) or not torch.is_floating_point(x):
            raise TypeError(f"{name} must be a floating-point tensor, got "
                            f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"{name} must have shape (..., n, d), got {tuple(x.shape)}")
        check_finite(x, name)
    if x2.shape[-1] != x1.shape[-1]:
        raise ValueError(f"x2 has {x2.shape[-1]} features but x1 has {x1.shape[-1]}")
    if num_features is not None and x1.shape[-1] != num_features:
        raise ValueError(f"x1 has {x1.shape[-1]} features but the kernel expects {num_features}")


def expand_right(value: float | Tensor, num_dims: int) -> float | Tensor:
    """Append ``num_dims`` singleton dimensions to a batched hyperparameter so it broadcasts against a
    ``batch x ...`` tensor; floats pass through."""
    return value.reshape(*value.shape, *(1,) * num_dims) if isinstance(value, Tensor) else value


def batch_numel(x1: Tensor, x2: Tensor, *hyperparameters: float | Tensor) -> int:
    """Number of matrices in a batch: the broadcast batch shape of ``x1``, ``x2`` and the hyperparameters."""
    shapes = [h.shape for h in hyperparameters if isinstance(h, Tensor)]
    return torch.broadcast_shapes(x1.shape[:-2], x2.shape[:-2], *shapes).numel()


class NetworkKernel(Kernel):
    """Base of NNGP-type kernels: ``depth`` hidden layers with an activation, and positive hyperparameters
    ``weight_var`` and ``bias_var`` (each of shape ``batch_shape``) shared by all layers.

    Args:
        depth: Number of hidden layers (each an affine map followed by the activation), ``>= 0``.
        activation: Name of the activation (see the subclass).
        num_features: Input feature count the kernel requires (checked on every call), or ``None``.
        weight_var: Initial weight variance ``sigma_w^2`` (weights are ``N(0, sigma_w^2 / fan_in)``).
        bias_var: Initial bias variance ``sigma_b^2``.
        weight_var_prior, bias_var_prior: Optional GPyTorch priors on the variances.
        weight_var_constraint, bias_var_constraint: Constraints on the raw parameters (default
            ``GreaterThan(1e-6)``: a plain softplus underflows to exactly 0 when an optimiser pushes a variance
            down, and the recursion rejects a zero variance).
        **kwargs: Passed to ``gpytorch.kernels.Kernel`` (``batch_shape``, ``active_dims``, ``ard_num_dims``).
    """

    has_lengthscale = False

    def __init__(
        self,
        depth: int,
        activation: str,
        *,
        num_features: int | None = None,
        weight_var: float = 1.0,
        bias_var: float = 0.1,
        weight_var_prior: Prior | None = None,
        bias_var_prior: Prior | None = None,
        weight_var_constraint: Interval | None = None,
        bias_var_constraint: Interval | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.depth = check_positive_int(depth, "depth", minimum=0)
        self.activation = activation
        self.num_features = num_features
        self.register_variance("weight_var", weight_var, (), weight_var_prior, weight_var_constraint)
        self.register_variance("bias_var", bias_var, (), bias_var_prior, bias_var_constraint)

    def register_variance(self, name: str, value: float, event_shape: tuple[int, ...], prior: Prior | None,
                          constraint: Interval | None) -> None:
        """Register ``raw_<name>`` of shape ``batch_shape x event_shape`` with a positive constraint, an optional
        prior, and initialise it to ``value``."""
        check_positive_float(value, name)
        raw = torch.nn.Parameter(torch.zeros(torch.Size((*self.batch_shape, *event_shape))))
        self.register_parameter(f"raw_{name}", raw)
        self.register_constraint(f"raw_{name}", GreaterThan(1e-6) if constraint is None else constraint)
        if prior is not None:
            if not isinstance(prior, Prior):
                raise TypeError(f"{name}_prior must be a gpytorch.priors.Prior, got {type(prior).__name__}")
            self.register_prior(f"{name}_prior", prior, _VarianceGetter(name), _VarianceSetter(name))
        self.set_variance(name, value)

    def get_variance(self, name: str) -> Tensor:
        raw = getattr(self, f"raw_{name}")
        return getattr(self, f"raw_{name}_constraint").transform(raw)

    def set_variance(self, name: str, value: float | Tensor) -> None:
        check_positive_float(value, name)
        raw = getattr(self, f"raw_{name}")
        value = torch.as_tensor(value, dtype=raw.dtype, device=raw.device)
        self.initialize(**{f"raw_{name}": getattr(self, f"raw_{name}_constraint").inverse_transform(value)})

    @property
    def weight_var(self) -> Tensor:
        """Weight variance ``sigma_w^2``, ``batch_shape``."""
        return self.get_variance("weight_var")

    @weight_var.setter
    def weight_var(self, value: float | Tensor) -> None:
        self.set_variance("weight_var", value)

    @property
    def bias_var(self) -> Tensor:
        """Bias variance ``sigma_b^2``, ``batch_shape``."""
        return self.get_variance("bias_var")

    @bias_var.setter
    def bias_var(self, value: float | Tensor) -> None:
        self.set_variance("bias_var", value)

    def __call__(self, x1: Tensor, x2: Tensor | None = None, diag: bool = False, last_dim_is_batch: bool = False,
                 **params):
        # GPyTorch evaluates lazily and raises RuntimeError on mismatched widths; check eagerly, with ValueErrors.
        if last_dim_is_batch:
            raise ValueError("last_dim_is_batch is not supported by network kernels")
        check_inputs(*(self._selected(x) for x in (x1, x1 if x2 is None else x2)), num_features=self.num_features)
        return super().__call__(x1, x2, diag=diag, **params)

    def _selected(self, x):
        """The columns GPyTorch passes to ``forward`` (1-D inputs become ``n x 1``; ``active_dims`` applied)."""
        if isinstance(x, Tensor) and x.dim() == 1:
            x = x.unsqueeze(-1)
        if isinstance(x, Tensor) and self.active_dims is not None:
            x = x.index_select(-1, self.active_dims)
        return x


class _VarianceGetter:
    """Picklable prior closure reading a variance hyperparameter."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, module: NetworkKernel) -> Tensor:
        return module.get_variance(self.name)


class _VarianceSetter:
    """Picklable prior closure writing a variance hyperparameter."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, module: NetworkKernel, value: Tensor) -> None:
        module.set_variance(self.name, value)
