"""Moment-propagation networks: an MLP with mean-field Gaussian weights whose output moments are computed
analytically in one deterministic pass (deterministic variational inference; Wu et al. 2019, and MP-GELU,
Hirayama and Takamaeda-Yamazaki 2022).

The network ``d -> widths... -> 2m`` carries ``q(W) = prod N(M, V)`` on every weight and bias. A forward pass
maps a data batch to the mean ``n x 2m`` and the covariance of the last layer's outputs; the first ``m`` outputs
are the regression means ``l``, the last ``m`` the log noise variances ``s`` of a heteroscedastic Gaussian
``y ~ N(l, exp(s))`` (:mod:`probnets.moment.likelihood`).

Activations: ``"gelu"`` (MP-GELU, the stochastic-gate GELU, diagonal), ``"exact-gelu"`` (the deterministic GELU
``x Phi(x)`` with its exact moments, diagonal), ``"relu"`` with ``covariance="diagonal"`` (ReLU-DVI, diagonal) or
``covariance="full"`` (ReLU-DVI with the full hidden covariance). Moments are exact through the first hidden
layer; deeper layers treat their (correlated, non-Gaussian) inputs as Gaussian, diagonal or full.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from probnets.moment import functional as F
from probnets.spec import ParamSpec
from probnets.validation import check_positive_int, check_theta, validate_batch

ACTIVATIONS = ("gelu", "exact-gelu", "relu")
_RULES = {"gelu": F.gelu_moments, "exact-gelu": F.exact_gelu_moments, "relu": F.relu_moments}
COVARIANCES = ("diagonal", "full")


class Moments(NamedTuple):
    """A Gaussian summary: ``mean`` ``n x k`` and ``variance`` ``n x k`` (diagonal), ``n x k x k`` (full) or ``None``
    (deterministic, e.g. the network's inputs)."""

    mean: Tensor
    variance: Tensor | None


class MomentLinear(nn.Module):
    """A linear layer with mean-field Gaussian weights ``N(weight_mean, exp(weight_log_variance))`` (``in x out``)
    and bias, propagating moments with :func:`~probnets.moment.functional.linear_moments`.

    Initialisation: means ``N(0, 1 / in)`` (bias 0), variances ``init_variance / in`` (bias ``init_variance``).
    """

    def __init__(self, in_features: int, out_features: int, *, init_variance: float = 1e-3,
                 dtype: torch.dtype | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        if not init_variance > 0:
            raise ValueError(f"init_variance must be > 0, got {init_variance!r}")
        dtype = dtype or torch.get_default_dtype()
        mean = torch.randn(in_features, out_features, generator=generator, dtype=dtype) / math.sqrt(in_features)
        self.weight_mean = nn.Parameter(mean)
        self.weight_log_variance = nn.Parameter(torch.full_like(mean, math.log(init_variance / in_features)))
        self.bias_mean = nn.Parameter(torch.zeros(out_features, dtype=dtype))
        self.bias_log_variance = nn.Parameter(torch.full((out_features,), math.log(init_variance), dtype=dtype))

    def forward(self, moments: Moments, *, full_output: bool = False) -> Moments:
        return Moments(*F.linear_moments(moments.mean, moments.variance, self.weight_mean,
                                         self.weight_log_variance.exp(), self.bias_mean,
                                         self.bias_log_variance.exp(), full_output=full_output))

    def sample_forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x W + b`` with one weight draw per leading index of ``x`` (``S x n x in -> S x n x out``)."""
        num = x.shape[0]
        eps_w = torch.randn((num, *self.weight_mean.shape), generator=generator, dtype=x.dtype, device=x.device)
        eps_b = torch.randn((num, 1, self.out_features), generator=generator, dtype=x.dtype, device=x.device)
        weight = self.weight_mean + (0.5 * self.weight_log_variance).exp() * eps_w
        bias = self.bias_mean + (0.5 * self.bias_log_variance).exp() * eps_b
        return torch.baddbmm(bias, x, weight)


class MomentActivation(nn.Module):
    """MP-GELU (``"gelu"``, diagonal), the exact GELU rule (``"exact-gelu"``, diagonal) or the ReLU rule
    (``"relu"``, diagonal or full covariance)."""

    def __init__(self, activation: str = "gelu", covariance: str = "diagonal"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        if activation != "relu" and covariance == "full":
            raise ValueError(f"activation={activation!r} propagates diagonal moments; covariance='full' needs "
                             "activation='relu'")
        self.activation, self.covariance = activation, covariance

    def forward(self, moments: Moments) -> Moments:
        if self.covariance == "full":
            if moments.variance.dim() == moments.mean.dim():  # a diagonal input (the first layer's)
                moments = Moments(moments.mean, torch.diag_embed(moments.variance))
            return Moments(*F.relu_covariance(*moments))
        return Moments(*_RULES[self.activation](*moments))

    def sample_forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The activation of sampled pre-activations; MP-GELU draws its gates ``u ~ Bernoulli(Phi(x))``."""
        if self.activation == "relu":
            return x.clamp_min(0)
        if self.activation == "exact-gelu":
            return x * torch.special.ndtr(x)
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return torch.where(u < torch.special.ndtr(x), x, torch.zeros_like(x))


class MomentNetwork(nn.Module):
    """A mean-field Gaussian MLP with a heteroscedastic Gaussian output, propagated by moments.

    Args:
        in_features: Input dimension ``d``.
        widths: Hidden widths, e.g. ``(50,)``.
        out_features: Number of regression targets ``m`` (the last layer has ``2m`` units: means and log
            noise variances).
        activation: ``"gelu"`` (MP-GELU), ``"exact-gelu"`` (GELU with exact moments) or ``"relu"``.
        covariance: ``"diagonal"`` or ``"full"`` (ReLU only): the hidden covariance kept between layers.
        init_variance: Initial weight variance times fan-in (see :class:`MomentLinear`).
        init_log_noise: Initial bias of the log-variance outputs.
        dtype: Parameter dtype.
        generator: Draws the initial means.

    Example:
        >>> net = MomentNetwork(3, (50,), activation="gelu")
        >>> out = net(torch.randn(10, 3, dtype=torch.float64))   # Moments: mean 10 x 2, covariance 10 x 2 x 2
    """

    def __init__(self, in_features: int, widths: Sequence[int] = (50,), out_features: int = 1, *,
                 activation: str = "gelu", covariance: str = "diagonal", init_variance: float = 1e-3,
                 init_log_noise: float = -2.0, dtype: torch.dtype | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.widths = tuple(check_positive_int(w, f"widths[{i}]") for i, w in enumerate(widths))
        self.out_features = check_positive_int(out_features, "out_features")
        sizes = (self.in_features, *self.widths, 2 * self.out_features)
        self.linears = nn.ModuleList(MomentLinear(a, b, init_variance=init_variance, dtype=dtype, generator=generator)
                                     for a, b in zip(sizes[:-1], sizes[1:]))
        self.activation = MomentActivation(activation, covariance)
        with torch.no_grad():
            self.linears[-1].bias_mean[self.out_features:] = init_log_noise

    @property
    def dtype(self) -> torch.dtype:
        return self.linears[0].weight_mean.dtype

    @property
    def method(self) -> str:
        """``"mp-gelu"``, ``"gelu-mp"`` (exact GELU), ``"relu-mp"`` (diagonal) or ``"relu-mp-full"``."""
        if self.activation.activation == "gelu":
            return "mp-gelu"
        if self.activation.activation == "exact-gelu":
            return "gelu-mp"
        return "relu-mp-full" if self.activation.covariance == "full" else "relu-mp"

    def config(self) -> dict:
        """The constructor arguments that rebuild this architecture (for ``save``/``load``)."""
        return {"in_features": self.in_features, "widths": list(self.widths), "out_features": self.out_features,
                "activation": self.activation.activation, "covariance": self.activation.covariance}

    def check_inputs(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape (n, {self.in_features}), got {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            raise TypeError(f"x must be floating point, got {x.dtype}")
        return x.to(self.dtype)

    def check_data(self, data) -> tuple[Tensor, Tensor]:
        """Validate regression data ``(x, y)`` for this network: ``x`` ``n x d``, ``y`` ``n`` or ``n x m``
        (returned as ``n x m``), both in the network's dtype."""
        x, y = validate_batch(data)
        x = self.check_inputs(x)
        if not torch.is_floating_point(y):
            raise TypeError(f"y must be floating point (regression targets), got {y.dtype}")
        y = y.to(self.dtype)
        if y.dim() == 1:
            y = y.unsqueeze(-1)
        if y.dim() != 2 or y.shape[1] != self.out_features:
            raise ValueError(f"y must have shape (n,) or (n, {self.out_features}) for this network, got "
                             f"{tuple(y.shape)}")
        return x, y

    def forward(self, x: Tensor) -> Moments:
        """Output moments at deterministic inputs ``x`` (``n x d``): mean ``n x 2m`` and the full covariance
        ``n x 2m x 2m`` of the last layer (its cross terms couple each mean with its log-variance)."""
        x = self.check_inputs(x)
        moments = Moments(x, None)  # deterministic inputs
        last = len(self.linears) - 1
        for index, linear in enumerate(self.linears):
            moments = linear(moments, full_output=index == last)
            if index < last:
                moments = self.activation(moments)
        return moments

    def sample_forward(self, x: Tensor, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Outputs of ``num_samples`` networks drawn from ``q`` (with fresh MP-GELU gates), ``S x n x 2m``: the
        Monte Carlo counterpart of :meth:`forward`."""
        x = self.check_inputs(x)
        h = x.expand(check_positive_int(num_samples, "num_samples"), *x.shape)
        last = len(self.linears) - 1
        for index, linear in enumerate(self.linears):
            h = linear.sample_forward(h, generator)
            if index < last:
                h = self.activation.sample_forward(h, generator)
        return h

    def forward_draws(self, theta: Tensor, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Outputs of the networks whose weights are the draws ``theta`` (``S x D``, in :attr:`spec` order) at
        ``x`` (``n x d``), ``S x n x 2m``; MP-GELU draws its gates afresh per draw, point and unit."""
        theta = check_theta(theta, self.spec.dim)
        if theta.dim() != 2:
            raise ValueError(f"theta must have shape (S, {self.spec.dim}), got {tuple(theta.shape)}")
        params = self.spec.unflatten(theta.to(self.dtype))
        h = self.check_inputs(x).expand(theta.shape[0], *x.shape)
        last = len(self.linears) - 1
        for index in range(last + 1):
            h = torch.baddbmm(params[f"layers.{index}.bias"].unsqueeze(-2), h, params[f"layers.{index}.weight"])
            if index < last:
                h = self.activation.sample_forward(h, generator)
        return h

    @property
    def spec(self) -> ParamSpec:
        """Names and shapes of the weights (``layers.{l}.weight`` ``in x out``, ``layers.{l}.bias``)."""
        shapes = {}
        for index, linear in enumerate(self.linears):
            shapes[f"layers.{index}.weight"] = tuple(linear.weight_mean.shape)
            shapes[f"layers.{index}.bias"] = tuple(linear.bias_mean.shape)
        return ParamSpec.from_shapes(shapes)

    def variational_parameters(self) -> tuple[Tensor, Tensor]:
        """Flat means and variances of ``q``, both ``D`` (in :attr:`spec` order)."""
        means, variances = [], []
        for linear in self.linears:
            means += [linear.weight_mean.reshape(-1), linear.bias_mean]
            variances += [linear.weight_log_variance.exp().reshape(-1), linear.bias_log_variance.exp()]
        return torch.cat(means), torch.cat(variances)
