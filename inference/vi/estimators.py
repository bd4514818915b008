"""Monte Carlo estimators of the expected log-likelihood ``E_q[sum_i log p(y_i | x_i, theta)]`` and its gradient.

- ``reparam``: evaluates the model at reparameterised draws of ``theta`` (any ``ProbModel``, any family).
- ``local`` (local reparameterisation, Kingma et al. 2015): for a linear layer with independent Gaussian
  weights the pre-activations are Gaussian given the layer input, with mean ``h mean^T`` and variance
  ``h^2 (scale^2)^T``, independent across units; they are drawn independently for every datum (unbiased, since
  the log-likelihood is a sum over data). A convolution's outputs share its kernel, so they are not independent
  across positions: drawing them independently is the common approximation, biased, and not offered here.
- ``flipout`` (Wen et al. 2018): one weight perturbation ``dW = W - mean`` per draw, decorrelated across the data
  by random signs, ``layer(h; mean) + layer(h * s_in; dW) * s_out``.

``local`` and ``flipout`` need a mean-field family and a model whose structure they know: a ``BNN``, or a
``from_module`` network whose stochastic ``nn.Linear`` (``local``, ``flipout``) and ``nn.Conv*`` (``flipout``)
weights they perturb inside the layers (forward hooks) on the ``S`` copies of a batch stacked into one call;
there flipout's ``dW`` and the network's other stochastic parameters take one reparameterised draw per restart and
step, and the restarts are evaluated one after the other. Both are unbiased for the same expectation as
``reparam``, with less variance on minibatches.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from inference.vi.family import GaussianFamily
from probnets.bnn import BNN
from probnets.model import Batch, ProbModel
from probnets.module_model import ModuleModel

ESTIMATORS = ("auto", "reparam", "local", "flipout")
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def resolve_estimator(model: ProbModel, estimator: str, rank: int) -> str:
    """The estimator to use: ``auto`` is ``local`` where it applies (a mean-field family, a model whose stochastic
    layers are all linear), ``flipout`` for such models with convolutions, ``reparam`` otherwise; an explicit
    choice that cannot apply is a ``ValueError``."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    layers = stochastic_layers(model) if isinstance(model, ModuleModel) else {}
    structured = isinstance(model, BNN) or bool(layers)
    convolutional = any(kind != "linear" for kind in layers.values())
    if estimator == "auto":
        return "reparam" if not structured or rank else ("flipout" if convolutional else "local")
    if estimator == "local" and convolutional:
        raise ValueError("estimator='local' is exact for linear layers only (a convolution's outputs share its "
                         "kernel); use estimator='flipout' for networks with stochastic convolutions")
    if estimator != "reparam":
        if rank:
            raise ValueError(f"estimator={estimator!r} needs a mean-field family (rank=0), got rank={rank}")
        if not structured:
            raise ValueError(f"estimator={estimator!r} needs a BNN or a from_module network with stochastic "
                             f"nn.Linear/nn.Conv layers, got {type(model).__name__}")
    return estimator


def stochastic_layers(model: ModuleModel) -> dict[str, str]:
    """Linear/conv submodules whose weight is stochastic: ``{module name: "linear" or "conv"}``."""
    return {name: "linear" if isinstance(module, nn.Linear) else "conv"
            for name, module in model.module.named_modules()
            if isinstance(module, _LAYERS) and _names(name)[0] in model.priors}


def _names(module_name: str) -> tuple[str, str]:
    prefix = f"{module_name}." if module_name else ""
    return f"{prefix}weight", f"{prefix}bias"


def expected_log_likelihood(model: ProbModel, family: GaussianFamily, theta: Tensor, batch: Batch, estimator: str,
                            generator: torch.Generator | None) -> Tensor:
    """One-sample-per-draw estimates of ``sum_i log p(y_i | x_i, theta)`` over ``batch``, ``R x S``.

    Args:
        model: The model.
        family: The variational parameters (``local``/``flipout`` read the mean and scale of every layer).
        theta: Reparameterised draws ``R x S x D`` of ``family`` (``flipout`` perturbs by ``theta - mean``; the
            likelihood's own parameters are always taken from ``theta``).
        batch: Prepared ``(x, y)``.
        estimator: ``reparam``, ``local`` or ``flipout`` (see :func:`resolve_estimator`).
        generator: Source of the per-datum noise.
    """
    x, y = batch
    if estimator == "reparam":
        return model.log_likelihood(theta, batch).sum(-1)
    if isinstance(model, BNN):
        f = _bnn_forward(model, family, theta, x.to(theta.dtype), estimator, generator)
    else:
        f = torch.stack([_module_forward(model, family, theta, r, x, estimator, generator)
                         for r in range(theta.shape[0])])
    return model.likelihood.log_prob(f, y, model.likelihood_params(theta)).sum(-1)


def _rademacher(shape, like: Tensor, generator) -> Tensor:
    return (torch.randint(0, 2, shape, generator=generator, dtype=like.dtype).to(like.device) * 2 - 1)


def _noise(shape, like: Tensor, generator) -> Tensor:
    return torch.randn(shape, generator=generator, dtype=like.dtype).to(like.device)


def _std(var: Tensor) -> Tensor:
    # clamp: a zero variance (no stochastic bias, zero input) has a zero, not a NaN, gradient
    return var.clamp_min(torch.finfo(var.dtype).tiny).sqrt()


def _bnn_forward(model: BNN, family: GaussianFamily, theta: Tensor, x: Tensor, estimator: str,
                 generator) -> Tensor:
    """Latent outputs ``R x S x n x m`` of a ``BNN`` with batched matrix products."""
    k = model.net_spec.dim
    mean = model.net_spec.unflatten(family.mean[:, :k].unsqueeze(1))   # R x 1 x ...
    scale = model.net_spec.unflatten(family.scale[:, :k].unsqueeze(1))
    drawn = model.net_spec.unflatten(theta[..., :k])                    # R x S x ...
    h = x  # n x d, shared by the draws until the first noise enters
    for layer in range(model.num_layers):
        w, b = f"layers.{layer}.weight", f"layers.{layer}.bias"
        out = h @ mean[w].transpose(-1, -2)
        shape = (*theta.shape[:2], x.shape[0], out.shape[-1])
        if estimator == "local":
            var = h.square() @ scale[w].square().transpose(-1, -2) + scale[b].square().unsqueeze(-2)
            h = out + mean[b].unsqueeze(-2) + _std(var) * _noise(shape, out, generator)
        else:
            delta = drawn[w] - mean[w]
            s_in = _rademacher((*shape[:-1], h.shape[-1]), h, generator)
            s_out = _rademacher(shape, out, generator)
            h = out + ((h * s_in) @ delta.transpose(-1, -2)) * s_out + drawn[b].unsqueeze(-2)
        if layer < model.num_layers - 1:
            h = model.activation(h)
    return h


def _layer(module: nn.Module, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if isinstance(module, nn.Linear):
        return nn.functional.linear(h, weight, bias)
    return module._conv_forward(h, weight, bias)


def _flip_shape(h: Tensor, linear: bool) -> tuple[int, ...]:
    """One sign per row and feature: the last dimension of a linear layer, the channels of a convolution."""
    if linear:
        return (h.shape[0], *(1,) * (h.dim() - 2), h.shape[-1])
    return (*h.shape[:2], *(1,) * (h.dim() - 2))


def _module_forward(model: ModuleModel, family: GaussianFamily, theta: Tensor, r: int, x: Tensor, estimator: str,
                    generator) -> Tensor:
    """Latent outputs ``S x n x m`` of restart ``r`` of a ``from_module`` network: one call on the ``S`` copies of
    ``x`` stacked, the stochastic layers perturbed by forward hooks."""
    k = model.net_spec.dim
    num_samples = theta.shape[1]
    layers = {name: (weight, bias if bias in model.priors else None)
              for name in stochastic_layers(model) for weight, bias in [_names(name)]}
    in_layers = {p for names in layers.values() for p in names if p is not None}
    mean = model.net_spec.unflatten(family.mean[r, :k])
    scale = model.net_spec.unflatten(family.scale[r, :k])
    drawn = model.net_spec.unflatten(theta[r, 0, :k])  # parameters outside the layers: one draw
    params = {n: (mean[n] if n in in_layers else drawn[n]) for n in model.net_spec.names}
    fixed = {**dict(model.module.named_buffers()), **model.deterministic_parameters()}
    fixed = {n: v.to(theta.dtype) if torch.is_floating_point(v) else v for n, v in fixed.items()}
    x = x.to(device=theta.device, dtype=theta.dtype if torch.is_floating_point(x) else x.dtype)
    stacked = x.expand(num_samples, *x.shape).reshape(num_samples * x.shape[0], *x.shape[1:])

    def perturb(weight_name: str, bias_name: str | None):
        def hook(module, inputs, out):
            h = inputs[0]
            linear = isinstance(module, nn.Linear)
            if estimator == "local":
                if h.dim() != 2:
                    raise ValueError(f"estimator='local' needs 2-D inputs to nn.Linear layers (a layer applied "
                                     f"along further dimensions shares its weights), got {tuple(h.shape)}; use "
                                     "estimator='flipout'")
                var = _layer(module, h.square(), scale[weight_name].square(),
                             None if bias_name is None else scale[bias_name].square())
                return out + _std(var) * _noise(out.shape, out, generator)
            delta = drawn[weight_name] - mean[weight_name]
            s_in = _rademacher(_flip_shape(h, linear), h, generator)
            s_out = _rademacher(_flip_shape(out, linear), out, generator)
            out = out + _layer(module, h * s_in, delta, None) * s_out
            if bias_name is not None:
                bias_delta = drawn[bias_name] - mean[bias_name]
                out = out + (bias_delta if linear else bias_delta.reshape(-1, *(1,) * (out.dim() - 2)))
            return out
        return hook

    modules = dict(model.module.named_modules())
    handles = [modules[name].register_forward_hook(perturb(*names)) for name, names in layers.items()]
    try:
        out = torch.func.functional_call(model.module, {**fixed, **params}, (stacked,))
    finally:
        for handle in handles:
            handle.remove()
    out = out.unsqueeze(-1) if out.dim() == 1 else out
    return out.reshape(num_samples, x.shape[0], *out.shape[1:])


__all__ = ["ESTIMATORS", "expected_log_likelihood", "resolve_estimator", "stochastic_layers"]
