"""Priors over named parameters: one distribution, patterns -> distributions, or per-layer scales.

Priors are pyro (torch) distributions with scalar event shape, applied elementwise to a parameter, or
callables ``(name, shape) -> Distribution`` for priors that depend on the layer (e.g. its fan-in).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping, Sequence

import pyro.distributions as dist
import torch
from torch import Tensor

PriorFactory = Callable[[str, torch.Size], torch.distributions.Distribution]
PriorLike = torch.distributions.Distribution | PriorFactory
PriorSpec = PriorLike | Mapping[str, PriorLike]


def fan_in_normal(scale: float = 1.0) -> PriorFactory:
    """Normal(0, scale / sqrt(fan_in)) for weights and Normal(0, scale) for biases (per-layer scale).

    Example:
        >>> prior = fan_in_normal(1.0)
        >>> prior("layers.0.weight", torch.Size([50, 10])).scale
        tensor(0.3162)
    """
    _check_scale(scale)

    def factory(name: str, shape: torch.Size) -> torch.distributions.Distribution:
        fan_in = math.prod(shape[1:]) if len(shape) >= 2 else 1
        return dist.Normal(0.0, scale / math.sqrt(fan_in))

    return factory


def student_t(df: float = 3.0, scale: float = 1.0) -> torch.distributions.Distribution:
    """A heavy-tailed weight prior: Student-t with ``df`` degrees of freedom (``df = 1`` is Cauchy)."""
    if not (df > 0 and math.isfinite(df)):
        raise ValueError(f"df must be a positive finite number, got {df!r}")
    _check_scale(scale)
    return dist.StudentT(df, 0.0, scale)


def resolve(prior: PriorSpec, names: Sequence[str], shapes: Sequence[torch.Size]) -> dict[str, torch.distributions.Distribution | None]:
    """Map every parameter name to its prior distribution (``None`` = no prior, stays deterministic).

    ``prior`` may be one distribution/factory for every parameter, or a mapping from glob patterns
    (``"layers.1.*"``) to distributions/factories; the first matching pattern wins.
    """
    out = {}
    for name, shape in zip(names, shapes):
        if isinstance(prior, Mapping):
            chosen = next((p for pat, p in prior.items() if fnmatch.fnmatchcase(name, pat)), None)
        else:
            chosen = prior
        if chosen is not None and not isinstance(chosen, torch.distributions.Distribution):
            if not callable(chosen):
                raise TypeError(f"prior for {name!r} must be a Distribution or a callable (name, shape) -> "
                                f"Distribution, got {type(chosen).__name__}")
            chosen = chosen(name, torch.Size(shape))
        if chosen is not None:
            _check_elementwise(name, chosen, torch.Size(shape))
        out[name] = chosen
    return out


def log_prob(prior: torch.distributions.Distribution, value: Tensor, event_dims: int) -> Tensor:
    """Sum of the elementwise log prior over the last ``event_dims`` dimensions of ``value``.

    Non-finite entries give NaN (never a validation error), so a sampler sees numerical trouble as a
    divergence.
    """
    finite = torch.isfinite(value)
    lp = prior.log_prob(torch.where(finite, value, torch.zeros_like(value)))
    lp = torch.where(finite, lp, torch.full_like(lp, float("nan")))
    return lp.sum(tuple(range(-event_dims, 0))) if event_dims else lp


def sample(prior: torch.distributions.Distribution, shape: torch.Size, *, generator=None, dtype=None) -> Tensor:
    """Draws of shape ``shape`` through the inverse CDF (so that a ``torch.Generator`` controls them)."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    try:
        value = prior.icdf(u.to(_dtype_of(prior)))
    except NotImplementedError:
        raise ValueError(f"cannot sample {type(prior).__name__} with a generator (no icdf); "
                         "initialise parameters explicitly") from None
    return value.to(dtype or torch.get_default_dtype())


def _dtype_of(d) -> torch.dtype:
    for v in vars(d).values():
        if isinstance(v, Tensor) and torch.is_floating_point(v):
            return v.dtype
    return torch.get_default_dtype()


def _check_scale(scale: float) -> None:
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")


def _check_elementwise(name: str, d: torch.distributions.Distribution, shape: torch.Size) -> None:
    if d.event_shape != torch.Size():
        raise ValueError(f"prior for {name!r} must have scalar event shape (an elementwise prior), "
                         f"got event shape {tuple(d.event_shape)}")
    try:
        torch.broadcast_shapes(d.batch_shape, shape)
    except RuntimeError:
        raise ValueError(f"prior for {name!r} has batch shape {tuple(d.batch_shape)} that does not "
                         f"broadcast to the parameter shape {tuple(shape)}") from None
