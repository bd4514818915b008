"""Any ``torch.nn.Module`` as a ProbModel: parameters with a prior are stochastic, the rest stay put."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from probnets import priors as priors_lib
from probnets.likelihoods import Gaussian, Likelihood
from probnets.model import ProbModel
from probnets.spec import ParamSpec
from probnets.validation import as_tensor, check_positive_int, check_theta


class ModuleModel(ProbModel):
    """A (partially) Bayesian network built from a module.

    The parameters matched by ``priors`` form ``theta`` (in the module's parameter order, then the
    likelihood's); unmatched parameters and buffers are deterministic and are read from ``module`` at
    every evaluation, so an engine (or the user) can train them. Draws are evaluated with
    ``torch.func.functional_call`` vectorised by ``torch.func.vmap``, so any architecture works, conv nets
    included.

    Args:
        module: The network; called as ``module(x)`` and returning ``n x m`` (or ``n``) outputs.
        priors: ``{glob pattern: distribution or factory}`` over parameter names (``module.named_parameters()``),
            or one distribution for every parameter. The first matching pattern wins.
        likelihood: Default Gaussian with noise scale ~ LogNormal(-1, 1).
    """

    def __init__(self, module: nn.Module, priors: priors_lib.PriorSpec, likelihood: Likelihood | None = None):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        import pyro.distributions as dist

        self.module = module
        self.likelihood = likelihood if likelihood is not None else Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0))
        named = dict(module.named_parameters())
        resolved = priors_lib.resolve(priors, list(named), [p.shape for p in named.values()])
        self.priors = {k: v for k, v in resolved.items() if v is not None}
        if not self.priors:
            raise ValueError(f"no parameter matches the priors; parameter names are {list(named)}")
        self.net_spec = ParamSpec(tuple(self.priors), tuple(named[k].shape for k in self.priors))
        self.spec = self.net_spec + self.likelihood.spec

    def __repr__(self) -> str:
        return (f"ModuleModel({type(self.module).__name__}, stochastic={len(self.priors)} tensors "
                f"(D={self.spec.dim}), deterministic={len(self.deterministic_parameters())} tensors)")

    def deterministic_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters without a prior (trained by the engine or the user, not sampled)."""
        return {k: p for k, p in self.module.named_parameters() if k not in self.priors}

    def log_prior(self, theta: Tensor) -> Tensor:
        check_theta(theta, self.spec.dim)
        params = self.net_spec.unflatten(theta[..., : self.net_spec.dim])
        lp = self.likelihood.log_prior(self.likelihood_params(theta))
        for name, shape in zip(self.net_spec.names, self.net_spec.shapes):
            lp = lp + priors_lib.log_prob(self.priors[name], params[name], len(shape))
        return lp

    def predict_f(self, theta: Tensor, x: Tensor, *, chunk_size: int | None = None) -> Tensor:
        """Latent outputs ``(..., n, m)`` for every draw in ``theta`` ``(..., D)``."""
        check_theta(theta, self.spec.dim)
        x = as_tensor(x, "x")
        if x.dim() < 2:
            raise ValueError(f"x must have shape (n, ...) with a batch dimension, got {tuple(x.shape)}")
        x = x.to(device=theta.device, dtype=theta.dtype if torch.is_floating_point(x) else x.dtype)
        batch = theta.shape[:-1]
        flat = theta.reshape(-1, self.spec.dim)[:, : self.net_spec.dim]
        fixed = {**dict(self.module.named_buffers()), **self.deterministic_parameters()}
        fixed = {k: v.to(theta.dtype) if torch.is_floating_point(v) else v for k, v in fixed.items()}

        def one_draw(t: Tensor) -> Tensor:
            out = torch.func.functional_call(self.module, {**fixed, **self.net_spec.unflatten(t)}, (x,))
            return out.unsqueeze(-1) if out.dim() == 1 else out

        vmapped = torch.func.vmap(one_draw, randomness="different")
        if chunk_size is not None:
            check_positive_int(chunk_size, "chunk_size")
        out = vmapped(flat) if not chunk_size else torch.cat([vmapped(c) for c in flat.split(chunk_size)])
        return out.reshape(*batch, *out.shape[1:])

    def init_theta(self, num: int, *, generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """Starting points ``(num, D)``: matrices/kernels ~ N(0, 1/fan_in) per chain; vectors (biases,
        normalisation scales) at the module's current values; likelihood parameters at their prior median."""
        num = check_positive_int(num, "num")
        dtype = dtype or torch.get_default_dtype()
        current = dict(self.module.named_parameters())
        parts = []
        for name, shape in zip(self.net_spec.names, self.net_spec.shapes):
            if len(shape) >= 2:
                fan_in = math.prod(shape[1:])
                z = torch.randn((num, *shape), generator=generator, dtype=dtype) / math.sqrt(fan_in)
            else:
                z = current[name].detach().to(dtype).expand(num, *shape)
            parts.append(z.reshape(num, -1))
        phi = self.likelihood.init_phi(num, dtype=dtype, generator=generator)
        parts += [phi[n].reshape(num, -1) for n in self.likelihood.spec.names]
        return torch.cat(parts, -1)


def from_module(module: nn.Module, priors: priors_lib.PriorSpec, likelihood: Likelihood | None = None) -> ModuleModel:
    """Turn a torch module into a ProbModel; parameters not matched by ``priors`` stay deterministic.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
        >>> model = from_module(net, {"2.*": dist.Normal(0, 1)})   # a partial BNN: last layer stochastic
    """
    return ModuleModel(module, priors, likelihood)
