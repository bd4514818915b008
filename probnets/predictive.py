"""The posterior predictive every model and engine returns: a weighted mixture over draws."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from probnets.likelihoods import Likelihood


@dataclass(frozen=True)
class Predictive:
    """Mixture predictive ``p(y | x) = sum_s w_s p(y | f_s(x), phi_s)``.

    Args:
        f: Latent function draws, ``S x n x m``.
        likelihood: The observation model turning each draw into a distribution over ``y``.
        phi: Likelihood parameters: each entry holds one value per draw (shape ``S``, e.g. an unconstrained
            noise scale) or one per draw and point (shape ``S x n x ...``, e.g. the predictive scale of a
            closed-form GP predictive under :class:`~probnets.likelihoods.NormalMarginal`).
        log_weights: Optional (unnormalised) log importance weights, ``S``; uniform when ``None``.

    Regression shapes: ``mean``, ``variance``, ``cdf`` are ``n x m``; ``quantile(q)`` is
    ``len(q) x n x m``. Classification: ``probs`` is ``n x K``; ``mean`` is ``n x m`` (for Bernoulli
    the probability of class 1). ``log_prob(y)`` is ``n`` in both cases.

    Regression moments are those of ``y``, from the per-draw distribution's own mean and variance (for a
    Student-t per draw: a ``ValueError`` when they are undefined, ``df <= 1``, and an ``inf`` variance for
    ``1 < df <= 2``).
    """

    f: Tensor
    likelihood: Likelihood
    phi: dict[str, Tensor] = field(default_factory=dict)
    log_weights: Tensor | None = None

    def __post_init__(self):
        if self.f.dim() != 3:
            raise ValueError(f"f must have shape (S, n, m), got {tuple(self.f.shape)}")
        if self.f.shape[0] == 0:
            raise ValueError("f must hold at least one draw")
        if not torch.is_floating_point(self.f):
            raise TypeError(f"f must be a floating-point tensor, got {self.f.dtype}")
        if self.log_weights is not None:
            if self.log_weights.shape != self.f.shape[:1]:
                raise ValueError(f"log_weights must have shape ({self.f.shape[0]},), got {tuple(self.log_weights.shape)}")
            if bool(torch.isnan(self.log_weights).any()) or not bool(torch.isfinite(self.log_weights).any()):
                raise ValueError("log_weights must not contain NaN and must have at least one finite entry")
        for name, value in self.phi.items():
            if value.shape[:1] != self.f.shape[:1]:
                raise ValueError(f"phi[{name!r}] must have one entry per draw ({self.f.shape[0]}), got {tuple(value.shape)}")
            if value.dim() >= 2 and value.shape[1] != self.f.shape[1]:
                raise ValueError(f"phi[{name!r}] has per-point entries, so its shape must start with "
                                 f"({self.f.shape[0]}, {self.f.shape[1]}), got {tuple(value.shape)}")
        self.likelihood.validate_phi(self.phi, self.f.shape)

    @property
    def num_draws(self) -> int:
        return self.f.shape[0]

    @property
    def weights(self) -> Tensor:
        """Normalised mixture weights, ``S``."""
        if self.log_weights is None:
            return torch.full((self.num_draws,), 1.0 / self.num_draws, dtype=self.f.dtype, device=self.f.device)
        return torch.softmax(self.log_weights.to(self.f.dtype), 0)

    def _log_w(self) -> Tensor:
        return torch.log_softmax(self.log_weights.to(self.f.dtype), 0) if self.log_weights is not None else \
            torch.full((self.num_draws,), -math.log(self.num_draws), dtype=self.f.dtype, device=self.f.device)

    def distribution(self) -> torch.distributions.Distribution:
        """Per-draw distribution over ``y`` (batch ``S x n x m`` or ``S x n``)."""
        return self.likelihood.distribution(self.f, self.phi)

    def _wsum(self, values: Tensor) -> Tensor:
        w = self.weights
        if not bool((w > 0).all()):  # drop zero-weight draws, so that their inf moments give no 0 * inf
            values, w = values[w > 0], w[w > 0]
        return torch.tensordot(w, values, dims=([0], [0]))

    def _component_moment(self, name: str) -> Tensor:
        """Per-draw mean or variance of ``y``, ``S x n x m``; a ``ValueError`` where it is undefined (NaN)."""
        value = getattr(self.distribution(), name).expand_as(self.f)
        undefined = torch.isnan(value) & ~torch.isnan(self.f)
        if bool(undefined.any()):
            raise ValueError(f"the predictive {name} is undefined: {int(undefined.sum())} per-draw "
                             f"{type(self.distribution()).__name__} distributions have no finite {name} "
                             "(a Student-t needs df > 1 for its mean and df > 2 for a finite variance)")
        return value

    @property
    def is_classification(self) -> bool:
        return self.likelihood.task == "classification"

    @property
    def probs(self) -> Tensor:
        """Class probabilities ``n x K`` (classification only)."""
        if not self.is_classification:
            raise AttributeError("probs is defined for classification likelihoods only")
        if self.f.shape[-1] == 1:  # Bernoulli
            p1 = self._wsum(torch.sigmoid(self.f[..., 0]))
            return torch.stack([1 - p1, p1], -1)
        return self._wsum(torch.softmax(self.f, -1))

    @property
    def mean(self) -> Tensor:
        if self.is_classification:
            if self.f.shape[-1] == 1:
                return self.probs[:, 1:]
            return self.probs
        return self._wsum(self._component_moment("mean"))

    @property
    def variance(self) -> Tensor:
        """Predictive variance of ``y`` (law of total variance over the mixture)."""
        if self.is_classification:
            p = self.mean
            return p * (1 - p)
        means = self._component_moment("mean")
        second = self._wsum(self._component_moment("variance") + means**2)
        return (second - self._wsum(means) ** 2).clamp_min(0)

    @property
    def stddev(self) -> Tensor:
        return self.variance.sqrt()

    @property
    def f_mean(self) -> Tensor:
        """Mean of the latent function, ``n x m``."""
        return self._wsum(self.f)

    @property
    def f_variance(self) -> Tensor:
        """Variance of the latent function, ``n x m``."""
        return (self._wsum(self.f**2) - self.f_mean**2).clamp_min(0)

    def log_prob(self, y: Tensor) -> Tensor:
        """Log predictive density of observed ``y`` under the mixture, ``n``."""
        y = self.likelihood.prepare_targets(torch.as_tensor(y, device=self.f.device))
        if torch.is_floating_point(y):
            y = y.to(self.f.dtype)
        per_draw = self.likelihood.log_prob(self.f, y, self.phi)  # S x n
        return torch.logsumexp(per_draw + self._log_w()[:, None], 0)

    def cdf(self, y: Tensor) -> Tensor:
        """Mixture CDF at ``y`` (``n`` or ``n x m``), regression only; returns ``n x m``."""
        self._require_regression("cdf")
        y = self.likelihood.prepare_targets(torch.as_tensor(y, dtype=self.f.dtype, device=self.f.device))
        return self._wsum(self.distribution().cdf(y.expand_as(self.f)))

    def quantile(self, q: float | Sequence[float] | Tensor, *, rtol: float = 1e-7, chunk_size: int = 256) -> Tensor:
        """Quantiles of the mixture by bisection on its CDF, ``len(q) x n x m`` (regression only).

        The mixture's ``q``-quantile lies between the smallest and the largest ``q``-quantile of its
        components (the per-draw distributions' ``icdf``), which brackets the bisection; the bracket is
        halved until its width is below ``rtol`` times the initial width (at most 64 halvings). Points are
        processed in chunks of ``chunk_size`` to bound memory (``len(q) x S x chunk_size x m``); per-point
        entries of ``phi`` are sliced with them.
        """
        self._require_regression("quantile")
        q = torch.as_tensor(q, dtype=self.f.dtype, device=self.f.device).reshape(-1)
        if bool(((q <= 0) | (q >= 1)).any()):
            raise ValueError(f"q must lie strictly inside (0, 1), got {q.tolist()}")
        w = self.weights
        qq = q[:, None, None]
        out = []
        for rows in torch.arange(self.f.shape[1], device=self.f.device).split(chunk_size):
            d = self.likelihood.distribution(self.f[:, rows], self._phi_at(rows))
            component_q = d.icdf(q.reshape(-1, 1, 1, 1).expand(-1, *d.batch_shape))  # q x S x chunk x m
            lo, hi = component_q.min(1).values, component_q.max(1).values
            width = (hi - lo).clamp_min(torch.finfo(self.f.dtype).tiny)
            for _ in range(64):
                mid = 0.5 * (lo + hi)
                below = torch.einsum("s,qsnm->qnm", w, d.cdf(mid[:, None])) < qq
                lo = torch.where(below, mid, lo)
                hi = torch.where(below, hi, mid)
                if bool(((hi - lo) <= rtol * width).all()):
                    break
            out.append(0.5 * (lo + hi))
        return torch.cat(out, 1)

    def _phi_at(self, rows: Tensor) -> dict[str, Tensor]:
        """``phi`` restricted to the points ``rows`` (per-draw entries are kept whole)."""
        return {k: v[:, rows] if v.dim() >= 2 else v for k, v in self.phi.items()}

    def interval(self, level: float = 0.9) -> tuple[Tensor, Tensor]:
        """Central predictive interval with probability ``level``: (lower, upper), each ``n x m``."""
        if not 0 < level < 1:
            raise ValueError(f"level must lie in (0, 1), got {level}")
        qs = self.quantile([(1 - level) / 2, (1 + level) / 2])
        return qs[0], qs[1]

    def sample(self, num_samples: int = 1, *, generator: torch.Generator | None = None) -> Tensor:
        """Joint draws of ``y`` at all points: ``num_samples x n x m`` (regression) or ``num_samples x n``
        (classification). Each sample picks one mixture component (one function draw) for all points,
        so values within a sample are correlated across points, as under the posterior."""
        idx = torch.multinomial(self.weights, num_samples, replacement=True, generator=generator)
        sub = Predictive(self.f[idx], self.likelihood, {k: v[idx] for k, v in self.phi.items()})
        d = sub.distribution()
        if isinstance(d, torch.distributions.Normal):
            eps = torch.randn(d.loc.shape, generator=generator, dtype=d.loc.dtype, device=d.loc.device)
            return d.loc + d.scale * eps
        u = torch.rand(d.batch_shape, generator=generator, dtype=self.f.dtype, device=self.f.device)
        if not isinstance(d, (torch.distributions.Bernoulli, torch.distributions.Categorical)):
            try:  # inverse CDF, e.g. Student-t (u = 0 would map to -inf)
                return d.icdf(u.clamp_min(torch.finfo(u.dtype).tiny))
            except NotImplementedError:
                raise NotImplementedError(f"sampling from a {type(d).__name__} likelihood needs its icdf, "
                                          "which it does not implement") from None
        if isinstance(d, torch.distributions.Bernoulli):
            return (u < d.probs).to(self.f.dtype)
        cum = d.probs.cumsum(-1)
        return (u.unsqueeze(-1) > cum).sum(-1).clamp_max(cum.shape[-1] - 1)

    def _require_regression(self, what: str) -> None:
        if self.is_classification:
            raise ValueError(f"{what} is defined for regression likelihoods only")
