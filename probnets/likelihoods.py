"""Observation models p(y | f, phi) for latent outputs f of shape (..., n, m).

A likelihood may carry stochastic parameters ``phi`` of its own (the Gaussian noise scale under a prior).
They live in the unconstrained flat vector ``theta`` next to the network's parameters, under the names of
``Likelihood.spec``; ``log_prior`` includes the Jacobian of the constraining transform.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import pyro.distributions as dist
import torch
from scipy import special
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.transforms import ExpTransform

from probnets.spec import ParamSpec

_EMPTY = ParamSpec((), ())


class Likelihood(ABC):
    """Base class: per-datum log-likelihoods and the per-draw predictive distribution."""

    #: ``"regression"`` or ``"classification"``.
    task: str = "regression"
    #: Unconstrained stochastic parameters of the likelihood (may be empty).
    spec: ParamSpec = _EMPTY

    @abstractmethod
    def distribution(self, f: Tensor, phi: dict[str, Tensor]) -> torch.distributions.Distribution:
        """Distribution of y given latent ``f`` ``(..., n, m)``; its batch shape is ``(..., n, m)`` for
        regression and ``(..., n)`` for classification."""

    @abstractmethod
    def num_latent(self, num_outputs: int) -> int:
        """Number of latent outputs ``m`` the network must produce for ``num_outputs`` targets/classes."""

    def log_prior(self, phi: dict[str, Tensor]) -> Tensor:
        """Log prior density of the unconstrained likelihood parameters (with Jacobian), shape (...)."""
        return torch.zeros(())

    def init_phi(self, num: int, *, dtype=None, generator=None) -> dict[str, Tensor]:
        return {}

    def prepare_targets(self, y: Tensor) -> Tensor:
        """Validate ``y`` and bring it into the shape ``log_prob`` expects."""
        return y

    def validate_phi(self, phi: dict[str, Tensor], f_shape: torch.Size) -> None:
        """Check the likelihood parameters of a predictive with latent draws of shape ``f_shape``
        (``S x n x m``); raises ``ValueError`` naming the entry. Nothing to check by default."""

    def log_prob(self, f: Tensor, y: Tensor, phi: dict[str, Tensor]) -> Tensor:
        """Per-datum log-likelihood ``(..., n)`` of prepared targets ``y`` under latent ``f`` ``(..., n, m)``."""
        lp = self.distribution(f, phi).log_prob(y)
        return lp.sum(-1) if self.task == "regression" else lp


def log_prior_of_log(prior: torch.distributions.Distribution, u: Tensor) -> Tensor:
    """``log p(exp(u)) + u``: the density of ``u = log(scale)`` when ``scale ~ prior``, finite wherever it is.

    For a log-normal prior (an ``ExpTransform`` of a base distribution) this is the base density at ``u``, exact
    for any ``u``; otherwise ``exp(u)`` is kept at least the dtype's smallest positive number, so that a chain far
    out in the left tail gets a finite (very low) log density, i.e. a rejected proposal, instead of a support error
    from the prior's argument validation.
    """
    transforms = getattr(prior, "transforms", None)
    if transforms is not None and len(transforms) == 1 and isinstance(transforms[0], ExpTransform):
        return prior.base_dist.log_prob(u)
    return prior.log_prob(u.exp().clamp_min(torch.finfo(u.dtype).tiny)) + u


class Gaussian(Likelihood):
    """Gaussian noise, either with a fixed scale or with the scale as a parameter under its own prior.

    Args:
        noise_scale: Fixed standard deviation of the noise (ignored when ``noise_prior`` is given).
        noise_prior: A pyro distribution on the positive reals (e.g. ``LogNormal(-1, 1)``) for the noise
            standard deviation; the sampler then works on ``log sigma`` under the parameter name
            ``"likelihood.log_noise_scale"``.

    Example:
        >>> lik = Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0))
        >>> lik.spec.names
        ('likelihood.log_noise_scale',)
    """

    task = "regression"
    PARAM = "likelihood.log_noise_scale"

    def __init__(self, noise_scale: float | None = None, noise_prior: dist.Distribution | None = None):
        if noise_prior is None:
            if noise_scale is None:
                raise ValueError("Gaussian needs noise_scale (fixed) or noise_prior (learned)")
            if not (isinstance(noise_scale, (int, float)) and math.isfinite(noise_scale) and noise_scale > 0):
                raise ValueError(f"noise_scale must be a positive finite number, got {noise_scale!r}")
            self.noise_scale = float(noise_scale)
            self.noise_prior = None
            self.spec = _EMPTY
        else:
            if not isinstance(noise_prior, torch.distributions.Distribution):
                raise TypeError(f"noise_prior must be a torch/pyro Distribution, got {type(noise_prior).__name__}")
            support = noise_prior.support
            if not (support is constraints.positive or support is constraints.nonnegative):
                raise ValueError(f"noise_prior must have positive support, got support {support}")
            self.noise_scale = None
            self.noise_prior = noise_prior
            self.spec = ParamSpec((self.PARAM,), (torch.Size(),))

    @property
    def learned(self) -> bool:
        return self.noise_prior is not None

    def num_latent(self, num_outputs: int) -> int:
        return num_outputs

    def scale(self, phi: dict[str, Tensor]) -> Tensor | float:
        """Noise standard deviation: a float when fixed, else a tensor of the batch shape of ``phi``."""
        return phi[self.PARAM].exp() if self.learned else self.noise_scale

    def log_prior(self, phi):
        if not self.learned:
            return torch.zeros(())
        u = phi[self.PARAM]
        finite = torch.isfinite(u)
        lp = log_prior_of_log(self.noise_prior, torch.where(finite, u, torch.zeros_like(u)))
        return torch.where(finite, lp, torch.full_like(lp, float("nan")))

    def init_phi(self, num, *, dtype=None, generator=None):
        if not self.learned:
            return {}
        # Start at the prior median (log scale), which is finite for every positive prior.
        start = torch.log(_typical_value(self.noise_prior)).to(dtype or torch.get_default_dtype())
        return {self.PARAM: start.expand(num).clone()}

    def prepare_targets(self, y):
        return _regression_targets(y)

    def distribution(self, f, phi):
        scale = self.scale(phi)
        if isinstance(scale, Tensor):
            scale = scale[..., None, None].to(f.dtype)
        return dist.Normal(f, scale, validate_args=False)

    def log_prob(self, f, y, phi):
        scale = self.scale(phi)
        if isinstance(scale, Tensor):
            scale = scale[..., None, None].to(f.dtype)
            log_scale = scale.log()
        else:
            log_scale = math.log(scale)
        z = (y - f) / scale
        return (-0.5 * z * z - log_scale - 0.5 * math.log(2 * math.pi)).sum(-1)


class NormalMarginal(Likelihood):
    """Closed-form Gaussian predictive per draw: ``y ~ Normal(f, scale)`` with a scale per draw, point and output.

    The per-draw predictive of GP-type models (exact GPs, scale mixtures of NNGPs): ``f`` is the predictive
    mean and ``phi["scale"]`` (``S x n x m``, positive, already constrained) the predictive standard deviation
    of ``y``, latent variance and observation noise together. The scales are not sampled parameters
    (``spec`` is empty): this likelihood describes predictives, not a model to sample.

    Example:
        >>> pred = Predictive(mu.expand(1, n, 1), NormalMarginal(), {"scale": sd.expand(1, n, 1)})
    """

    task = "regression"

    def num_latent(self, num_outputs):
        return num_outputs

    def prepare_targets(self, y):
        return _regression_targets(y)

    def validate_phi(self, phi, f_shape):
        _check_scale(phi, f_shape)

    def distribution(self, f, phi):
        return dist.Normal(f, phi["scale"].to(f.dtype), validate_args=False)


class StudentTMarginal(Likelihood):
    """Closed-form Student-t predictive per draw: ``y ~ StudentT(df, f, scale)``.

    The per-draw predictive of Student-t processes: ``f`` is the location, ``phi["scale"]`` (``S x n x m``,
    positive) the scale and ``phi["df"]`` (``S``, positive) the degrees of freedom of each draw. Like
    :class:`NormalMarginal` it describes predictives only (``spec`` is empty). The predictive mean needs
    ``df > 1`` and the variance ``df > 2`` (``Predictive`` raises, resp. returns ``inf``, otherwise); ``cdf``,
    quantiles and sampling work for every ``df``.
    """

    task = "regression"

    def num_latent(self, num_outputs):
        return num_outputs

    def prepare_targets(self, y):
        return _regression_targets(y)

    def validate_phi(self, phi, f_shape):
        _check_scale(phi, f_shape)
        df = phi.get("df")
        if df is None or df.shape != f_shape[:1]:
            raise ValueError(f"phi['df'] must have shape ({f_shape[0]},) (one value per draw), got "
                             f"{None if df is None else tuple(df.shape)}")
        if not bool(((df > 0) & ~torch.isnan(df)).all()):
            raise ValueError("phi['df'] must be positive (the degrees of freedom of every draw)")

    def distribution(self, f, phi):
        df = phi["df"].to(f.dtype)[..., None, None]
        return StudentTWithCDF(df, f, phi["scale"].to(f.dtype), validate_args=False)


class StudentTWithCDF(dist.StudentT):
    """Student-t distribution with ``cdf`` and ``icdf`` (torch's has neither) and a ``log_prob`` that stays
    accurate for huge degrees of freedom (torch's loses all digits by ``df ~ 1e16``).

    ``cdf`` and ``icdf`` are evaluated by scipy's ``stdtr``/``stdtrit`` in float64 on the CPU and returned in
    the dtype and device of ``value``; they carry no gradient (they serve CDFs, quantiles and inverse-CDF
    sampling). ``value`` broadcasts against the batch shape as in ``log_prob``.
    """

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        z = (value - self.loc) / self.scale
        half_df = 0.5 * self.df
        return (lgamma_difference(half_df, 0.5) - 0.5 * torch.log(math.pi * self.df) - self.scale.log()
                - (half_df + 0.5) * torch.log1p(z * z / self.df))

    def cdf(self, value: Tensor) -> Tensor:
        t = (value - self.loc) / self.scale
        return _from_numpy(special.stdtr(_to_numpy(self.df.expand(t.shape)), _to_numpy(t)), t)

    def icdf(self, value: Tensor) -> Tensor:
        shape = torch.broadcast_shapes(value.shape, self.batch_shape)
        z = _from_numpy(special.stdtrit(_to_numpy(self.df.expand(shape)), _to_numpy(value.expand(shape))), self.loc)
        return self.loc + self.scale * z


class Bernoulli(Likelihood):
    """Binary classification with logits ``f`` of shape ``(..., n, 1)``; targets in {0, 1}."""

    task = "classification"
    num_classes = 2

    def num_latent(self, num_outputs):
        return 1

    def prepare_targets(self, y):
        if y.dim() == 2 and y.shape[-1] == 1:
            y = y.squeeze(-1)
        if y.dim() != 1:
            raise ValueError(f"y must have shape (n,) for Bernoulli, got {tuple(y.shape)}")
        if not bool(((y == 0) | (y == 1)).all()):
            raise ValueError("y must contain only 0 and 1 for a Bernoulli likelihood")
        return y.to(torch.get_default_dtype() if not torch.is_floating_point(y) else y.dtype)

    def distribution(self, f, phi):
        return dist.Bernoulli(logits=f.squeeze(-1), validate_args=False)

    def log_prob(self, f, y, phi):
        return self.distribution(f, phi).log_prob(y.to(f.dtype))


class Categorical(Likelihood):
    """Multi-class classification with logits ``f`` of shape ``(..., n, K)``; integer targets in [0, K)."""

    task = "classification"

    def __init__(self, num_classes: int):
        if not (isinstance(num_classes, int) and num_classes >= 2):
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_classes = num_classes

    def num_latent(self, num_outputs):
        return self.num_classes

    def prepare_targets(self, y):
        if y.dim() != 1:
            raise ValueError(f"y must have shape (n,) for Categorical, got {tuple(y.shape)}")
        if torch.is_floating_point(y):
            if not bool((y == y.round()).all()):
                raise ValueError("y must contain integer class labels for a Categorical likelihood")
            y = y.long()
        if bool((y < 0).any()) or bool((y >= self.num_classes).any()):
            raise ValueError(f"y must contain class labels in [0, {self.num_classes}), got range "
                             f"[{int(y.min())}, {int(y.max())}]")
        return y

    def distribution(self, f, phi):
        return dist.Categorical(logits=f, validate_args=False)

    def log_prob(self, f, y, phi):
        # one exp pass instead of log_softmax's full output: 1.6x faster on 1000 x 540 x 10 logits
        return f.gather(-1, y.expand(*f.shape[:-1]).unsqueeze(-1)).squeeze(-1) - torch.logsumexp(f, -1)


def lgamma_difference(z: Tensor, h: float) -> Tensor:
    """``lgamma(z + h) - lgamma(z)`` without the cancellation of two huge terms when ``z`` is large.

    Student-t densities with huge degrees of freedom (the Gaussian limit, where empirical Bayes on data with
    light tails drives a Student-t process) need it: there the difference of the Stirling series,
    ``(z - 1/2) log1p(h / z) + h log(z + h) - h`` plus its ``1/z``-corrections, is exact to 1e-10 for
    ``z >= 10``; below, ``lgamma`` itself.

    Args:
        z: Positive tensor.
        h: Non-negative shift.
    """
    large = z >= 10
    zl = torch.where(large, z, torch.full_like(z, 10.0))  # keep the unused branch finite for autograd
    w = zl + h
    stirling = ((zl - 0.5) * torch.log1p(h / zl) + h * torch.log(w) - h
                + (1 / w - 1 / zl) / 12 - (w**-3 - zl**-3) / 360 + (w**-5 - zl**-5) / 1260)
    return torch.where(large, stirling, torch.lgamma(z + h) - torch.lgamma(z))


def _regression_targets(y: Tensor) -> Tensor:
    """Regression targets as ``n x m`` floats."""
    if y.dim() == 1:
        y = y.unsqueeze(-1)
    if y.dim() != 2:
        raise ValueError(f"y must have shape (n,) or (n, m), got {tuple(y.shape)}")
    if not torch.is_floating_point(y):
        y = y.to(torch.get_default_dtype())
    return y


def _check_scale(phi: dict[str, Tensor], f_shape: torch.Size) -> None:
    """``phi["scale"]`` must be positive and of shape ``S x n x m`` (or broadcast to it along the outputs)."""
    scale = phi.get("scale")
    if scale is None or scale.dim() != 3 or scale.shape[:2] != f_shape[:2] or scale.shape[2] not in (1, f_shape[2]):
        raise ValueError(f"phi['scale'] must have shape {tuple(f_shape)} (one scale per draw, point and output), "
                         f"got {None if scale is None else tuple(scale.shape)}")
    if not bool((scale > 0).all()):
        raise ValueError("phi['scale'] must be positive (NaN and non-positive scales are not allowed)")


def _to_numpy(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _from_numpy(a: np.ndarray, like: Tensor) -> Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(like.device, like.dtype)


def _typical_value(d: torch.distributions.Distribution) -> Tensor:
    """The median where the distribution provides it, else a finite mean, else 1."""
    for value in (lambda: d.icdf(torch.tensor(0.5)), lambda: d.mean):
        try:
            v = torch.as_tensor(value(), dtype=torch.float64)
        except (NotImplementedError, AttributeError):
            continue
        if bool(torch.isfinite(v).all()) and bool((v > 0).all()):
            return v
    return torch.tensor(1.0, dtype=torch.float64)
