"""The model contract every inference engine works with.

Engines see a flat parameter tensor ``theta`` of shape ``(..., D)`` (leading dimensions: chains, particles
or draws). A model supplies the log prior, per-datum log-likelihoods, latent predictions for any number
of draws in one vectorised call, and an initialiser.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

from probnets.likelihoods import Likelihood
from probnets.log_density import LogDensity
from probnets.predictive import Predictive
from probnets.spec import ParamSpec
from probnets.validation import check_theta, validate_batch

Batch = tuple[Tensor, Tensor]


class ProbModel(ABC):
    """Base class of parametric probabilistic models (BNNs and friends).

    Subclasses define ``spec`` (all stochastic parameters, the likelihood's last), ``likelihood``,
    ``log_prior``, ``predict_f`` and ``init_theta``. Everything else is derived here.
    """

    spec: ParamSpec
    likelihood: Likelihood

    @abstractmethod
    def log_prior(self, theta: Tensor) -> Tensor:
        """Log prior density of ``theta`` ``(..., D)``, shape ``(...)``."""

    @abstractmethod
    def predict_f(self, theta: Tensor, x: Tensor, *, chunk_size: int | None = None) -> Tensor:
        """Latent outputs ``(..., n, m)`` for inputs ``x`` ``(n, ...)`` under every draw in ``theta``."""

    @abstractmethod
    def init_theta(self, num: int, *, generator: torch.Generator | None = None,
                   dtype: torch.dtype | None = None) -> Tensor:
        """Starting points for ``num`` chains, ``(num, D)``, in ``dtype`` (default: torch's default dtype)."""

    @property
    def likelihood_spec(self) -> ParamSpec:
        return self.likelihood.spec

    def likelihood_params(self, theta: Tensor) -> dict[str, Tensor]:
        """The likelihood's parameters (views into the tail of ``theta``)."""
        k = self.likelihood.spec.dim
        return self.likelihood.spec.unflatten(theta[..., theta.shape[-1] - k:]) if k else {}

    def log_likelihood(self, theta: Tensor, batch: Batch) -> Tensor:
        """Per-datum log-likelihood ``(..., n)``."""
        x, y = batch
        f = self.predict_f(theta, x)
        return self.likelihood.log_prob(f, y, self.likelihood_params(theta))

    def prepare_batch(self, batch: Batch) -> Batch:
        """Validate ``(x, y)`` and convert ``y`` into the likelihood's target format."""
        x, y = validate_batch(batch, self.likelihood)
        return x, self.likelihood.prepare_targets(y)

    def logdensity(self, batch: Batch, *, temperature: float = 1.0, compile: bool = False) -> LogDensity:
        """Unnormalised log posterior ``log p(theta) + sum_i log p(y_i | x_i, theta) / temperature``.

        ``compile=True``: its gradient through a compiled graph (``probnets.compiled.CompiledLogDensity``; traced
        and compiled at the first ``value_and_grad`` of each ``theta`` shape, several seconds, cached on disk by
        inductor), else eager autograd.
        """
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        batch = self.prepare_batch(batch)

        def fn(theta: Tensor) -> Tensor:
            return self.log_prior(theta) + self.log_likelihood(theta, batch).sum(-1) / temperature

        return self._compiled_if(LogDensity(fn, self.spec.dim), compile)

    def _compiled_if(self, logdensity: LogDensity, compile: bool) -> LogDensity:
        """``logdensity`` wrapped in a ``CompiledLogDensity`` when ``compile``."""
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be True or False, got {compile!r}")
        if not compile:
            return logdensity
        from probnets.compiled import CompiledLogDensity

        return CompiledLogDensity(logdensity, name=repr(self))

    def predictive(self, theta: Tensor, x: Tensor, *, log_weights: Tensor | None = None,
                   chunk_size: int | None = None) -> Predictive:
        """Mixture predictive over the draws ``theta`` ``(S, D)`` at inputs ``x``."""
        theta = check_theta(theta, self.spec.dim).reshape(-1, self.spec.dim)
        f = self.predict_f(theta, x, chunk_size=chunk_size)
        return Predictive(f, self.likelihood, self.likelihood_params(theta), log_weights)
