"""Partial Bayesian neural networks: a stochastic block ``phi`` inside a network of deterministic weights ``psi``.

Following Zhao, Mair, Schoen and Sjoelund (2024), ``f(x; phi, psi)`` has a prior only on ``phi`` (the flat
``theta`` that samplers and SMC engines see); ``psi`` lives on the module and is trained by the engine
(``inference.smc.open_horizon``: the Fisher-identity gradient of the log marginal likelihood). The paper's
``psi | phi | psi`` MLPs are built by :func:`partial_mlp` / :func:`paper_mlp`; any other module (conv nets
included) is made partial by naming its stochastic parameters (glob patterns) or layers (indices).

Example:
    >>> model = paper_mlp("moons", in_features=2)          # 2-100-20 | 20-5 | 5-1, Bernoulli likelihood
    >>> model.spec.dim, sum(p.numel() for p in model.psi_parameters())
    (105, 2326)
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import Tensor, nn

from probnets import priors as priors_lib
from probnets.activations import get_activation
from probnets.likelihoods import Bernoulli, Gaussian, Likelihood
from probnets.module_model import ModuleModel
from probnets.validation import as_tensor, check_positive_int, check_theta

Stochastic = str | int | Sequence[str] | Sequence[int]


class PartialBNN(ModuleModel):
    """A network whose parameters ``phi`` (chosen by name or layer) are stochastic and the rest (``psi``) not.

    ``theta`` holds ``phi`` only (in the module's parameter order); the likelihood has no sampled parameters
    (the paper's Gaussian with fixed variance on standardised targets, or Bernoulli/Categorical). ``psi`` are
    the module's remaining parameters, read at every evaluation: :meth:`psi_parameters` are what an engine
    optimises, and :meth:`state_dict` / :meth:`load_state_dict` save and restore them (with the buffers).

    For an ``nn.Sequential`` the layers before the first stochastic one are evaluated once for all draws and
    only the rest per draw, so many particles cost little more than the stochastic block and what follows.

    Args:
        module: The network, called as ``module(x)`` with ``n x m`` (or ``n``) outputs.
        stochastic: Which parameters form ``phi``: a glob pattern or patterns over ``module.named_parameters()``
            names (``"4.*"``, ``"conv1.weight"``), or a layer index or indices: positions (negative allowed) in
            the list of submodules that own parameters, in registration order (for an MLP built by
            :func:`partial_mlp`, the linear layers).
        prior: Prior of every ``phi`` parameter (a distribution or a factory ``(name, shape) -> Distribution``);
            default ``Normal(0, 1)`` as in the paper.
        likelihood: Default ``Gaussian(noise_scale=1.0)``; must have no sampled parameters.
    """

    def __init__(self, module: nn.Module, stochastic: Stochastic, *, prior: priors_lib.PriorLike | None = None,
                 likelihood: Likelihood | None = None):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        likelihood = likelihood if likelihood is not None else Gaussian(noise_scale=1.0)
        if not isinstance(likelihood, Likelihood):
            raise TypeError(f"likelihood must be a probnets Likelihood, got {type(likelihood).__name__}")
        if likelihood.spec.dim:
            raise ValueError("likelihood of a PartialBNN must have no sampled parameters (e.g. Gaussian(noise_scale="
                             f"1.0) on standardised targets), got one with {list(likelihood.spec.names)}")
        prior = prior if prior is not None else dist.Normal(0.0, 1.0)
        super().__init__(module, {p: prior for p in stochastic_patterns(module, stochastic)}, likelihood)
        if not self.deterministic_parameters():
            raise ValueError("stochastic selects every parameter of the module; a partial BNN needs deterministic "
                             "parameters psi (use probnets.BNN or from_module for a fully stochastic network)")
        self._split = _shared_prefix(module, set(self.priors))

    def __repr__(self) -> str:
        psi = sum(p.numel() for p in self.psi_parameters())
        return (f"PartialBNN({type(self.module).__name__}, phi={list(self.priors)} (D={self.spec.dim}), "
                f"psi={psi} parameters, likelihood={type(self.likelihood).__name__})")

    @property
    def num_latent(self) -> int | None:
        """Latent outputs ``m``: the last layer's ``out_features`` when it has one, else known after the first
        ``predict_f`` (``None`` before)."""
        last = [m for m in self.module.modules() if isinstance(m, nn.Linear)]
        return getattr(self, "_num_latent", last[-1].out_features if last else None)

    def psi_parameters(self) -> list[nn.Parameter]:
        """The deterministic parameters ``psi`` (an engine's optimiser trains these in place)."""
        return list(self.deterministic_parameters().values())

    def state_dict(self) -> dict[str, Tensor]:
        """``psi`` and the module's buffers (the stochastic ``phi`` entries are left out: they are ``theta``)."""
        return {k: v.detach().clone() for k, v in self.module.state_dict().items() if k not in self.priors}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore ``psi`` and buffers saved by :meth:`state_dict`."""
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(f"state must hold exactly the entries {sorted(expected)}, got {sorted(state)}")
        self.module.load_state_dict(state, strict=False)

    def prior_moments(self) -> tuple[Tensor, Tensor]:
        """Mean and variance ``D`` of the Gaussian prior on ``theta`` (for prior-preserving moves).

        Raises:
            ValueError: When some prior is not a Normal distribution.
        """
        means, variances = [], []
        for name, shape in zip(self.net_spec.names, self.net_spec.shapes):
            prior = self.priors[name]
            if not isinstance(prior, torch.distributions.Normal):
                raise ValueError(f"the prior of {name!r} is {type(prior).__name__}, not Normal; prior moments "
                                 "exist only for Gaussian priors")
            size = torch.Size(shape).numel()
            means.append(prior.loc.detach().double().expand(size))
            variances.append(prior.scale.detach().double().square().expand(size))
        return torch.cat(means), torch.cat(variances)

    def predict_f(self, theta: Tensor, x: Tensor, *, chunk_size: int | None = None) -> Tensor:
        """Latent outputs ``(..., n, m)`` for every draw of ``phi`` in ``theta`` ``(..., D)`` at the current ``psi``."""
        if self._split is None:
            out = super().predict_f(theta, x, chunk_size=chunk_size)
        else:
            out = self._predict_split(theta, x, chunk_size)
        self._num_latent = out.shape[-1]
        return out

    def _predict_split(self, theta: Tensor, x: Tensor, chunk_size: int | None) -> Tensor:
        check_theta(theta, self.spec.dim)
        x = as_tensor(x, "x")
        if x.dim() < 2:
            raise ValueError(f"x must have shape (n, ...) with a batch dimension, got {tuple(x.shape)}")
        x = x.to(device=theta.device, dtype=theta.dtype if torch.is_floating_point(x) else x.dtype)
        prefix, suffix = self._split
        hidden = prefix(x) if len(prefix) else x  # shared by every draw
        hidden = hidden.to(theta.dtype) if torch.is_floating_point(hidden) else hidden
        names = {k for k, _ in suffix.named_parameters()} | {k for k, _ in suffix.named_buffers()}
        fixed = {k: v for k, v in {**dict(self.module.named_buffers()), **self.deterministic_parameters()}.items()
                 if k in names}
        fixed = {k: v.to(theta.dtype) if torch.is_floating_point(v) else v for k, v in fixed.items()}

        def one_draw(t: Tensor) -> Tensor:
            out = torch.func.functional_call(suffix, {**fixed, **self.net_spec.unflatten(t)}, (hidden,))
            return out.unsqueeze(-1) if out.dim() == 1 else out

        batch = theta.shape[:-1]
        flat = theta.reshape(-1, self.spec.dim)
        vmapped = torch.func.vmap(one_draw, randomness="different")
        if chunk_size is not None:
            check_positive_int(chunk_size, "chunk_size")
        out = vmapped(flat) if not chunk_size else torch.cat([vmapped(c) for c in flat.split(chunk_size)])
        return out.reshape(*batch, *out.shape[1:])

    def init_theta(self, num: int, *, generator: torch.Generator | None = None,
                   dtype: torch.dtype | None = None) -> Tensor:
        """Draws ``(num, D)`` from the prior of ``phi`` (an SMC engine's initial particles)."""
        num = check_positive_int(num, "num")
        dtype = dtype or torch.get_default_dtype()
        parts = []
        for name, shape in zip(self.net_spec.names, self.net_spec.shapes):
            draw = priors_lib.rsample(self.priors[name], (num, *shape), generator=generator)
            parts.append(draw.to(dtype).reshape(num, -1))
        return torch.cat(parts, -1)


def stochastic_patterns(module: nn.Module, stochastic: Stochastic) -> list[str]:
    """Glob patterns over parameter names for ``stochastic`` (patterns as given; layer indices resolved)."""
    items = [stochastic] if isinstance(stochastic, (str, int)) else list(stochastic)
    if not items:
        raise ValueError("stochastic must name at least one parameter pattern or layer index")
    if all(isinstance(s, str) for s in items):
        return items
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in items):
        raise TypeError(f"stochastic must be glob patterns (str) or layer indices (int), not a mix, got {items!r}")
    layers = [name for name, m in module.named_modules() if any(True for _ in m.parameters(recurse=False))]
    patterns = []
    for index in items:
        if not -len(layers) <= index < len(layers):
            raise ValueError(f"stochastic layer index {index} is out of range: the module has {len(layers)} layers "
                             f"with parameters {layers}")
        patterns.append(f"{layers[index]}.*" if layers[index] else "*")
    return patterns


def _shared_prefix(module: nn.Module, stochastic: set[str]) -> tuple[nn.Sequential, nn.Sequential] | None:
    """``(prefix, suffix)`` of an ``nn.Sequential`` split before its first child with a stochastic parameter."""
    if not isinstance(module, nn.Sequential):
        return None
    for k, (key, child) in enumerate(module._modules.items()):
        if any(f"{key}.{name}" in stochastic for name, _ in child.named_parameters()):
            return (module[:k], module[k:]) if k else None
    return None


class _Activation(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.fn = get_activation(name)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def partial_mlp(sizes: Sequence[int], stochastic: int | Sequence[int], *, activation: str = "gelu",
                prior: priors_lib.PriorLike | None = None, likelihood: Likelihood | None = None,
                generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> PartialBNN:
    """An MLP ``sizes[0] -> ... -> sizes[-1]`` with the linear layers ``stochastic`` (indices) Bayesian.

    Weights start Xavier-normal and biases at zero, as in the paper; ``psi`` is everything but the chosen
    layers.

    Args:
        sizes: Layer widths, input first and latent output last (e.g. ``(2, 100, 20, 5, 1)``).
        stochastic: Index or indices of the stochastic linear layers (``0`` is the first).
        activation: Hidden activation by name (default GELU, as in the paper).
        prior, likelihood: See :class:`PartialBNN`.
        generator: Source of the initial weights.
        dtype: Parameter dtype (default: torch's default).
    """
    sizes = [check_positive_int(s, f"sizes[{i}]") for i, s in enumerate(sizes)]
    if len(sizes) < 3:
        raise ValueError(f"sizes must list at least input, one hidden and output width, got {sizes}")
    get_activation(activation)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(fan_in, fan_out, dtype=dtype)
        with torch.no_grad():
            nn.init.xavier_normal_(linear.weight, generator=generator)
            linear.bias.zero_()
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(_Activation(activation))
    return PartialBNN(nn.Sequential(*layers), stochastic, prior=prior, likelihood=likelihood)


#: The paper's ``psi | phi | psi`` architectures: hidden widths and the index of the stochastic linear layer.
PAPER_ARCHITECTURES: dict[str, tuple[tuple[int, ...], int]] = {
    "uci": ((50, 20, 5), 2),        # d -> 50 -> 20 | 20 -> 5 (105 parameters) | 5 -> out
    "synthetic": ((20, 10), 1),     # 1 -> 20 | 20 -> 10 | 10 -> 1
    "moons": ((100, 20, 5), 2),     # 2 -> 100 -> 20 | 20 -> 5 | 5 -> 1
}


def paper_mlp(problem: str, in_features: int, out_features: int = 1, *, likelihood: Likelihood | None = None,
              generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> PartialBNN:
    """One of the paper's partial-BNN MLPs (``PAPER_ARCHITECTURES``), GELU, N(0, 1) prior on ``phi``.

    The likelihood defaults to Bernoulli for ``"moons"`` and to Gaussian with unit variance otherwise.
    """
    if problem not in PAPER_ARCHITECTURES:
        raise ValueError(f"problem must be one of {tuple(PAPER_ARCHITECTURES)}, got {problem!r}")
    widths, layer = PAPER_ARCHITECTURES[problem]
    if likelihood is None:
        likelihood = Bernoulli() if problem == "moons" else Gaussian(noise_scale=1.0)
    return partial_mlp((check_positive_int(in_features, "in_features"), *widths,
                        check_positive_int(out_features, "out_features")), layer, likelihood=likelihood,
                       generator=generator, dtype=dtype)


__all__ = ["PAPER_ARCHITECTURES", "PartialBNN", "paper_mlp", "partial_mlp", "stochastic_patterns"]
