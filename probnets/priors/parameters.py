"""Priors over named parameters: one distribution, patterns -> distributions, or per-layer scales.

Priors are pyro (torch) distributions with scalar event shape, applied elementwise to a parameter, or
callables ``(name, shape) -> Distribution`` for priors that depend on the layer (e.g. its fan-in).

Also here: scale priors of scale-mixture models (:class:`BurrXII`, :func:`variance_prior`) and
:func:`rsample`, reparameterised draws from common distributions through an explicit ``torch.Generator``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.transforms import PowerTransform
from torch.distributions.utils import broadcast_all

from probnets.validation import check_positive_float

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


_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def log_prob(prior: torch.distributions.Distribution, value: Tensor, event_dims: int) -> Tensor:
    """Sum of the elementwise log prior over the last ``event_dims`` dimensions of ``value``.

    Non-finite entries give NaN (never a validation error), so a sampler sees numerical trouble as a
    divergence.
    """
    if type(prior).log_prob is torch.distributions.Normal.log_prob:
        # Normal priors (every BNN minibatch step evaluates them) skip the argument validation and the masking;
        # a non-finite entry makes the sum -inf or NaN, turned into NaN after the sum.
        dims = tuple(range(-event_dims, 0))
        if prior.batch_shape == () and event_dims:  # one scalar prior: the constants leave the sum
            count = math.prod(value.shape[-event_dims:])
            if prior.loc.requires_grad or prior.scale.requires_grad or prior.loc.device.type != "cpu":
                squares = ((value - prior.loc) ** 2).sum(dims)
                lp = (-squares / (2 * prior.scale**2)
                      - count * (prior.scale.log().to(squares.dtype) + _LOG_SQRT_2PI))
            else:  # Python constants, formed in the parameters' dtype as torch's Normal does: fewer graph nodes
                # (in numpy, not torch: probnets.compiled traces every torch operation, and could not read them)
                scale = np.asarray(float(prior.scale), getattr(np, str(prior.scale.dtype)[6:], np.float64))
                loc, two_variance, log_scale = float(prior.loc), float(2 * scale**2), float(np.log(scale))
                squares = (value.square() if loc == 0.0 else (value - loc).square()).sum(dims)
                lp = squares / -two_variance - count * (log_scale + _LOG_SQRT_2PI)
        else:
            lp = -((value - prior.loc) ** 2) / (2 * prior.scale**2) - prior.scale.log() - _LOG_SQRT_2PI
            lp = lp.sum(dims) if event_dims else lp
        return torch.where(torch.isfinite(lp), lp, torch.nan)
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


def rsample(d: torch.distributions.Distribution, sample_shape: Sequence[int] = (), *,
            generator: torch.Generator | None = None) -> Tensor:
    """Draws ``sample_shape x batch_shape x event_shape`` of ``d`` through an explicit generator.

    torch's ``Distribution.sample`` takes no generator; this draws Normal (``loc + scale * eps``) and Gamma
    (including Chi2) directly, transformed distributions (LogNormal, HalfNormal, HalfCauchy, InverseGamma,
    :func:`variance_prior`) by drawing their base and applying the transforms, ``Independent`` through its
    base, and everything else by the inverse CDF. The draws are reparameterised: gradients flow to the
    distribution's parameters (for Gamma through implicit reparameterisation).

    Args:
        d: A torch/pyro distribution.
        sample_shape: Leading shape of the draws.
        generator: Source of randomness.

    Raises:
        TypeError: When ``d`` is none of the above and has no ``icdf``.
    """
    sample_shape = torch.Size(sample_shape)
    if isinstance(d, torch.distributions.Independent):
        return rsample(d.base_dist, sample_shape, generator=generator)
    if isinstance(d, torch.distributions.TransformedDistribution):
        x = rsample(d.base_dist, sample_shape, generator=generator)
        for transform in d.transforms:
            x = transform(x)
        return x
    shape = sample_shape + d.batch_shape + d.event_shape
    if isinstance(d, torch.distributions.Normal):
        eps = torch.randn(shape, generator=generator, dtype=d.loc.dtype, device=d.loc.device)
        return d.loc + d.scale * eps
    if isinstance(d, torch.distributions.Gamma):
        # torch._standard_gamma is the generator-aware sampler behind Gamma.rsample (with its gradient).
        return torch._standard_gamma(d.concentration.expand(shape), generator=generator) / d.rate
    dtype = _dtype_of(d)
    u = torch.rand(shape, generator=generator, dtype=dtype)
    u = u.clamp(torch.finfo(dtype).tiny, 1 - torch.finfo(dtype).eps)
    try:
        return d.icdf(u)
    except NotImplementedError:
        raise TypeError(f"cannot draw from {type(d).__name__} with a torch.Generator: it is not Normal, Gamma "
                        "or a transform of one, and has no icdf") from None


class BurrXII(TorchDistribution):
    """Burr type XII distribution on ``(0, inf)`` (Singh-Maddala), a heavy-tailed scale prior.

    ``F(x) = 1 - (1 + (x / scale)^c)^(-d)``; the density decays like ``x^(-c d - 1)``, so moments of order
    below ``c d`` exist. Draws are by the inverse CDF (reparameterised).

    Args:
        c: First shape parameter (positive).
        d: Second shape parameter (positive).
        scale: Scale (positive).

    Example:
        >>> BurrXII(2.0, 1.0).icdf(torch.tensor(0.5))  # the median, sqrt(2^(1/d) - 1)
        tensor(1.)
    """

    arg_constraints = {"c": constraints.positive, "d": constraints.positive, "scale": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, c: float | Tensor, d: float | Tensor, scale: float | Tensor = 1.0, validate_args=None):
        for name, value in (("c", c), ("d", d), ("scale", scale)):
            check_positive_float(value, name)
        self.c, self.d, self.scale = broadcast_all(c, d, scale)
        super().__init__(self.c.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(BurrXII, _instance)
        batch_shape = torch.Size(batch_shape)
        new.c, new.d, new.scale = (v.expand(batch_shape) for v in (self.c, self.d, self.scale))
        super(BurrXII, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_z = torch.log(value / self.scale)
        return (self.c.log() + self.d.log() - self.scale.log() + (self.c - 1) * log_z
                - (self.d + 1) * torch.nn.functional.softplus(self.c * log_z))

    def cdf(self, value: Tensor) -> Tensor:
        return -torch.expm1(-self.d * torch.log1p((value / self.scale) ** self.c))

    def icdf(self, value: Tensor) -> Tensor:
        return self.scale * torch.expm1(-torch.log1p(-value) / self.d) ** (1 / self.c)

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, dtype=self.c.dtype, device=self.c.device)
        return self.icdf(u.clamp(torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps))

    def _moment(self, k: int) -> Tensor:
        """``E[X^k] = scale^k d B(d - k/c, 1 + k/c)`` where ``c d > k``, else ``inf``."""
        a, b = self.d - k / self.c, 1 + k / self.c
        log_beta = torch.lgamma(a.clamp_min(1e-300)) + torch.lgamma(b) - torch.lgamma(a + b)
        value = self.scale**k * self.d * log_beta.exp()
        return torch.where(self.c * self.d > k, value, torch.full_like(value, float("inf")))

    @property
    def mean(self) -> Tensor:
        return self._moment(1)

    @property
    def variance(self) -> Tensor:
        return self._moment(2) - self.mean**2


def variance_prior(scale_prior: torch.distributions.Distribution) -> torch.distributions.Distribution:
    """The prior on ``sigma^2`` implied by a prior on ``sigma`` (e.g. ``HalfCauchy``), for scale mixtures
    whose prior is stated on the standard deviation.

    Args:
        scale_prior: A distribution on the positive reals over ``sigma``.

    Returns:
        The push-forward by ``sigma -> sigma^2`` (log density with its Jacobian; drawable with :func:`rsample`).
    """
    if not isinstance(scale_prior, torch.distributions.Distribution):
        raise TypeError(f"scale_prior must be a torch/pyro Distribution, got {type(scale_prior).__name__}")
    if scale_prior.support not in (constraints.positive, constraints.nonnegative):
        raise ValueError(f"scale_prior must have positive support, got {scale_prior.support}")
    return dist.TransformedDistribution(scale_prior, [PowerTransform(torch.tensor(2.0))])


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
