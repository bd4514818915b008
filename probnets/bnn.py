"""Bayesian multilayer perceptron with batched evaluation over parameter draws."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro.distributions as dist
import torch
from torch import Tensor

from probnets import priors as priors_lib
from probnets.activations import get_activation
from probnets.likelihoods import Gaussian, Likelihood
from probnets.model import Batch, LogDensity, ProbModel
from probnets.spec import ParamSpec
from probnets.validation import as_tensor, check_positive_int, check_theta


class BNN(ProbModel):
    """A fully stochastic MLP ``in_features -> widths... -> out`` with an elementwise prior on every weight.

    Parameters are named ``layers.{l}.weight`` (``out x in``, as ``nn.Linear``) and ``layers.{l}.bias``,
    followed by the likelihood's parameters.

    Args:
        in_features: Input dimension ``d``.
        widths: Hidden layer widths, e.g. ``(50,)``; may be empty (a Bayesian GLM).
        out_features: Number of targets (regression) or classes (classification); the latent output
            dimension ``m`` follows from the likelihood.
        activation: Name (``"tanh"``, ``"relu"``, ``"gelu"``, ...) or a callable.
        prior: A distribution for every parameter, a mapping ``{glob pattern: distribution}``, or a
            factory such as ``priors.fan_in_normal(1.0)``. Default ``Normal(0, 1)``.
        likelihood: Default Gaussian with noise scale ~ LogNormal(-1, 1).

    Example:
        >>> model = BNN(10, [50], activation="tanh")
        >>> theta = model.init_theta(4)
        >>> model.predict_f(theta, torch.randn(7, 10)).shape
        torch.Size([4, 7, 1])
    """

    def __init__(
        self,
        in_features: int,
        widths: Sequence[int] = (50,),
        out_features: int = 1,
        *,
        activation: str | Callable[[Tensor], Tensor] = "tanh",
        prior: priors_lib.PriorSpec | None = None,
        likelihood: Likelihood | None = None,
    ):
        self.in_features = check_positive_int(in_features, "in_features")
        widths = tuple(widths)
        for i, w in enumerate(widths):
            check_positive_int(w, f"widths[{i}]")
        self.widths = widths
        self.out_features = check_positive_int(out_features, "out_features")
        self.activation_name = activation if isinstance(activation, str) else getattr(activation, "__name__", "custom")
        self.activation = get_activation(activation)
        self.likelihood = likelihood if likelihood is not None else Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0))
        if not isinstance(self.likelihood, Likelihood):
            raise TypeError(f"likelihood must be a probnets Likelihood, got {type(self.likelihood).__name__}")
        m = self.likelihood.num_latent(self.out_features)
        self.num_latent = m
        sizes = (self.in_features, *widths, m)
        shapes = {}
        for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes[f"layers.{layer}.weight"] = (fan_out, fan_in)
            shapes[f"layers.{layer}.bias"] = (fan_out,)
        self.net_spec = ParamSpec.from_shapes(shapes)
        self.spec = self.net_spec + self.likelihood.spec
        self.num_layers = len(sizes) - 1
        self._layer_shapes = [(sizes[i + 1], sizes[i]) for i in range(self.num_layers)]
        self._split_sizes = [math.prod(shape) for shape in self.net_spec.shapes] + [self.likelihood.spec.dim]
        self.priors = priors_lib.resolve(prior if prior is not None else dist.Normal(0.0, 1.0),
                                         self.net_spec.names, self.net_spec.shapes)
        missing = [n for n, p in self.priors.items() if p is None]
        if missing:
            raise ValueError(f"every BNN parameter needs a prior; none matched {missing} "
                             "(use from_module for partially stochastic networks)")
        first = self.priors[self.net_spec.names[0]]
        #: One scalar prior shared by every weight: evaluated once over the flat weights (fewer tensor operations
        #: per minibatch step, where the per-tensor evaluation cost more than the network's own gradient).
        self._shared_prior = (first if first.batch_shape == () and all(p is first for p in self.priors.values())
                              else None)

    def __repr__(self) -> str:
        return (f"BNN({self.in_features} -> {list(self.widths)} -> {self.num_latent}, activation="
                f"{self.activation_name!r}, D={self.spec.dim}, likelihood={type(self.likelihood).__name__})")

    def log_prior(self, theta: Tensor) -> Tensor:
        check_theta(theta, self.spec.dim)
        lp = self.likelihood.log_prior(self.likelihood_params(theta))
        if self._shared_prior is not None:
            net = theta if theta.shape[-1] == self.net_spec.dim else theta[..., : self.net_spec.dim]
            return lp + priors_lib.log_prob(self._shared_prior, net, 1)
        params = self.net_spec.unflatten(theta[..., : self.net_spec.dim])
        for name, shape in zip(self.net_spec.names, self.net_spec.shapes):
            lp = lp + priors_lib.log_prob(self.priors[name], params[name], len(shape))
        return lp

    def predict_f(self, theta: Tensor, x: Tensor, *, chunk_size: int | None = None) -> Tensor:
        """Latent outputs ``(..., n, m)`` for ``theta`` ``(..., D)`` and ``x`` ``(n, d)``.

        All draws are evaluated with batched matrix products; ``chunk_size`` bounds how many draws are
        evaluated at once (memory ``~ chunk_size x n x max(widths)``).
        """
        check_theta(theta, self.spec.dim)
        x = as_tensor(x, "x")
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape (n, {self.in_features}), got {tuple(x.shape)}")
        x = x.to(dtype=theta.dtype, device=theta.device)
        batch = theta.shape[:-1]
        flat = theta.reshape(-1, theta.shape[-1])
        if chunk_size is None or chunk_size >= flat.shape[0]:
            out = self._forward(flat, x)
        else:
            check_positive_int(chunk_size, "chunk_size")
            out = torch.cat([self._forward(c, x) for c in flat.split(chunk_size)])
        return out.reshape(*batch, x.shape[0], self.num_latent)

    def _forward(self, theta: Tensor, x: Tensor) -> Tensor:
        """``theta`` ``(S, D)``, ``x`` ``(n, d)`` -> ``(S, n, m)``.

        Few autograd nodes, as a minibatch step of a small network is dominated by per-operation overhead: one
        ``split`` of ``theta`` (its backward is one ``cat``, where slices would each fill a ``D``-vector), fused
        bias products, and one matrix product over all draws in the first layer.
        """
        num, n = theta.shape[0], x.shape[0]
        pieces = theta.split(self._split_sizes, dim=-1)
        h = x
        for layer in range(self.num_layers):
            out, fan_in = self._layer_shapes[layer]
            w, b = pieces[2 * layer], pieces[2 * layer + 1]
            if num == 1:
                h = torch.addmm(b, h.reshape(n, fan_in), w.view(out, fan_in).t())
            elif layer == 0:
                h = (x @ w.reshape(num * out, fan_in).t()).view(n, num, out).transpose(0, 1) + b.unsqueeze(1)
            else:
                h = torch.baddbmm(b.unsqueeze(1), h, w.view(num, out, fan_in).transpose(1, 2))
            if layer < self.num_layers - 1:
                h = self.activation(h)
        return h.reshape(num, n, -1)

    def init_theta(self, num: int, *, generator: torch.Generator | None = None,
                   dtype: torch.dtype | None = None) -> Tensor:
        """Chain starting points ``(num, D)``: weights ~ N(0, 1/fan_in), zero biases, likelihood
        parameters at their prior median."""
        num = check_positive_int(num, "num")
        dtype = dtype or torch.get_default_dtype()
        parts = []
        for name, shape in zip(self.net_spec.names, self.net_spec.shapes):
            if name.endswith("weight"):
                z = torch.randn((num, *shape), generator=generator, dtype=dtype) / math.sqrt(shape[1])
            else:
                z = torch.zeros((num, *shape), dtype=dtype)
            parts.append(z.reshape(num, -1))
        phi = self.likelihood.init_phi(num, dtype=dtype, generator=generator)
        parts += [phi[n].reshape(num, -1) for n in self.likelihood.spec.names]
        return torch.cat(parts, -1)

    def prepare_batch(self, batch: Batch) -> Batch:
        x, y = super().prepare_batch(batch)
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape (n, {self.in_features}), got {tuple(x.shape)}")
        return x, y

    def logdensity(self, batch: Batch, *, temperature: float = 1.0, compile: bool = False) -> LogDensity:
        """Log posterior; on CPU with a Gaussian, Bernoulli or Categorical likelihood and a fused kernel
        available for the activation (``probnets.fused_mlp.supports``), the network's gradient comes from a fused
        analytic kernel instead of autograd (whatever ``compile`` says: the kernel is faster than the compiled
        generic path); else ``compile`` as in ``ProbModel.logdensity``."""
        generic = super().logdensity(batch, temperature=temperature)
        from probnets.fused_mlp import FusedMLPLogDensity, supports

        if supports(self):
            self._compiled_if(generic, compile)  # validates compile
            return FusedMLPLogDensity(self, self.prepare_batch(batch), temperature, fallback=generic)
        return self._compiled_if(generic, compile)
