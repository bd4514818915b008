"""The Riemann ("bar") distribution of PFNs, with half-normal tails (full support), in closed form.

``K`` buckets between borders ``b_0 < ... < b_K`` (equal-mass quantiles of prior draws of ``y``) carry
probabilities ``p_k`` (a softmax of the network's logits). Inner buckets spread their mass uniformly; the two
outer buckets are replaced by half-normals that start at the inner borders ``b_1`` and ``b_{K-1}`` and whose
medians lie at ``b_0`` and ``b_K``, so every real ``y`` has a positive density. Mean, variance, CDF, quantiles
and expected improvement are exact.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from probnets.likelihoods import Likelihood

HALF_NORMAL_MEDIAN = 0.6744897501960817  # Phi^-1(0.75): the median of |z|, z ~ N(0, 1)
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def borders_from_samples(y: Tensor, num_buckets: int) -> Tensor:
    """``num_buckets + 1`` borders at equal-mass quantiles of prior draws ``y`` (any shape), float64."""
    if not isinstance(num_buckets, int) or num_buckets < 3:
        raise ValueError(f"num_buckets must be an integer >= 3, got {num_buckets!r}")
    y = y.detach().reshape(-1).double()
    if y.numel() < num_buckets * 10 or not bool(torch.isfinite(y).all()):
        raise ValueError(f"y must hold at least {num_buckets * 10} finite draws, got {y.numel()}")
    borders = torch.quantile(y, torch.linspace(0, 1, num_buckets + 1, dtype=torch.float64))
    if not bool((borders.diff() > 0).all()):
        raise ValueError("the draws y have ties at bucket borders; use fewer buckets or continuous draws")
    return borders


def _normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def _normal_pdf(x: Tensor) -> Tensor:
    return torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


class BarDistribution(Distribution):
    """Bar distribution with half-normal tails.

    Args:
        borders: Bucket borders ``K + 1``, increasing.
        logits: Unnormalised log probabilities of the buckets, ``batch_shape x K``.
    """

    arg_constraints = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, borders: Tensor, logits: Tensor, validate_args=None):
        if borders.dim() != 1 or logits.shape[-1] != borders.shape[0] - 1:
            raise ValueError(f"logits must end in {borders.shape[0] - 1} buckets (borders has {borders.shape[0]} "
                             f"entries), got {tuple(logits.shape)}")
        self.borders = borders.to(logits.dtype)
        self.logits = logits
        self.log_probs = torch.log_softmax(logits, -1)
        self.probs = self.log_probs.exp()
        widths = self.borders.diff()
        self.widths = widths
        self.left_scale = widths[0] / HALF_NORMAL_MEDIAN
        self.right_scale = widths[-1] / HALF_NORMAL_MEDIAN
        super().__init__(batch_shape=logits.shape[:-1], validate_args=validate_args)

    @property
    def num_buckets(self) -> int:
        return self.widths.shape[0]

    def _bucket(self, value: Tensor) -> Tensor:
        """Bucket index of ``value`` (the tails own everything beyond the inner borders)."""
        inner = self.borders[1:-1].contiguous()
        return torch.searchsorted(inner, value.contiguous(), right=True)

    def _broadcast(self, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``value`` and the per-bucket probabilities broadcast together, as views: (value ``...``, log p
        ``... x K``, p)."""
        shape = torch.broadcast_shapes(value.shape, self.batch_shape)
        return (value.expand(shape), self.log_probs.expand(*shape, self.num_buckets),
                self.probs.expand(*shape, self.num_buckets))

    def log_prob(self, value: Tensor) -> Tensor:
        value, log_p, _ = self._broadcast(value.to(self.logits.dtype))
        k = self._bucket(value)
        log_bucket = log_p.gather(-1, k.unsqueeze(-1)).squeeze(-1)
        inner = log_bucket - self.widths.log()[k]
        b1, bk = self.borders[1], self.borders[-2]
        left = (log_bucket + math.log(2) - self.left_scale.log()
                + torch.distributions.Normal(0.0, 1.0).log_prob((b1 - value) / self.left_scale))
        right = (log_bucket + math.log(2) - self.right_scale.log()
                 + torch.distributions.Normal(0.0, 1.0).log_prob((value - bk) / self.right_scale))
        return torch.where(k == 0, left, torch.where(k == self.num_buckets - 1, right, inner))

    def cdf(self, value: Tensor) -> Tensor:
        value, _, p = self._broadcast(value.to(self.logits.dtype))
        k = self._bucket(value)
        mass_before = (self.probs.cumsum(-1) - self.probs).expand_as(p)
        below = mass_before.gather(-1, k.unsqueeze(-1)).squeeze(-1)  # mass of the buckets before k
        p_k = p.gather(-1, k.unsqueeze(-1)).squeeze(-1)
        inner = below + p_k * ((value - self.borders[k]) / self.widths[k]).clamp(0, 1)
        left = p_k * 2 * (1 - _normal_cdf((self.borders[1] - value) / self.left_scale))
        right = below + p_k * (2 * _normal_cdf((value - self.borders[-2]) / self.right_scale) - 1)
        return torch.where(k == 0, left, torch.where(k == self.num_buckets - 1, right, inner)).clamp(0, 1)

    def icdf(self, value: Tensor) -> Tensor:
        q, _, p = self._broadcast(value.to(self.logits.dtype))
        cum = p.cumsum(-1)
        k = torch.searchsorted(cum.contiguous(), q.unsqueeze(-1).contiguous(), right=True).squeeze(-1)
        k = k.clamp(0, self.num_buckets - 1)
        below = (cum - p).gather(-1, k.unsqueeze(-1)).squeeze(-1)
        p_k = p.gather(-1, k.unsqueeze(-1)).squeeze(-1).clamp_min(torch.finfo(p.dtype).tiny)
        inner = self.borders[k] + (q - below) / p_k * self.widths[k]
        normal = torch.distributions.Normal(0.0, 1.0)
        eps = torch.finfo(p.dtype).eps
        left_t = normal.icdf((1 - q / (2 * p_k)).clamp(0.5, 1 - eps))
        right_t = normal.icdf(((1 + (q - below) / p_k) / 2).clamp(0.5, 1 - eps))
        left = self.borders[1] - self.left_scale * left_t
        right = self.borders[-2] + self.right_scale * right_t
        return torch.where(k == 0, left, torch.where(k == self.num_buckets - 1, right, inner))

    def negated_logits(self) -> Tensor:
        """Log probabilities, on the same borders, of the buckets of ``-y``: ``batch_shape x K``, the exact mass of
        ``-y`` in every bucket (within a bucket the result is again uniform, in the outer buckets half-normal)."""
        points = -self.borders[1:-1]
        at = self.cdf(points.reshape((-1,) + (1,) * len(self.batch_shape))).movedim(0, -1)  # P(y <= -b_k)
        zeros = at.new_zeros(at.shape[:-1] + (1,))
        upper = torch.cat([zeros, 1 - at, zeros + 1], -1)  # P(-y <= b_k), k = 0..K
        return upper.diff(dim=-1).clamp_min(torch.finfo(upper.dtype).tiny).log()

    def _bucket_moments(self) -> tuple[Tensor, Tensor]:
        """First and second moments of ``y`` within every bucket, ``K`` each."""
        mids = (self.borders[:-1] + self.borders[1:]) / 2
        first = mids.clone()
        second = mids**2 + self.widths**2 / 12
        b1, bk, sl, sr = self.borders[1], self.borders[-2], self.left_scale, self.right_scale
        first[0], first[-1] = b1 - sl * SQRT_2_OVER_PI, bk + sr * SQRT_2_OVER_PI
        second[0] = b1**2 - 2 * b1 * sl * SQRT_2_OVER_PI + sl**2
        second[-1] = bk**2 + 2 * bk * sr * SQRT_2_OVER_PI + sr**2
        return first, second

    @property
    def mean(self) -> Tensor:
        return self.probs @ self._bucket_moments()[0]

    @property
    def variance(self) -> Tensor:
        first, second = self._bucket_moments()
        return (self.probs @ second - (self.probs @ first) ** 2).clamp_min(0)

    def expected_improvement(self, best_f: Tensor | float) -> Tensor:
        """``E[max(y - best_f, 0)]``, of the batch shape (``best_f`` broadcasts against it)."""
        best = torch.as_tensor(best_f, dtype=self.logits.dtype, device=self.logits.device)
        best = best.expand(torch.broadcast_shapes(best.shape, self.batch_shape)).unsqueeze(-1)  # ... x 1
        lo, hi = self.borders[:-1], self.borders[1:]
        inner = torch.where(best <= lo, (lo + hi) / 2 - best,
                            torch.where(best >= hi, torch.zeros_like(best), (hi - best).clamp_min(0) ** 2 / (2 * (hi - lo))))
        b1, bk, sl, sr = self.borders[1], self.borders[-2], self.left_scale, self.right_scale
        c = (b1 - best[..., 0]).clamp_min(0)  # left tail: y = b1 - sl |z|
        t = c / sl
        left = 2 * (c * (_normal_cdf(t) - 0.5) - sl * (_normal_pdf(torch.zeros_like(t)) - _normal_pdf(t)))
        u = (best[..., 0] - bk) / sr  # right tail: y = bk + sr |z|
        right_above = 2 * sr * (_normal_pdf(u) - u * (1 - _normal_cdf(u)))
        right = torch.where(u <= 0, (bk - best[..., 0]) + sr * SQRT_2_OVER_PI, right_above)
        per_bucket = inner.expand(*best.shape[:-1], self.num_buckets).clone()
        per_bucket[..., 0], per_bucket[..., -1] = left, right
        return (self.probs.expand_as(per_bucket) * per_bucket).sum(-1)


class BarMarginal(Likelihood):
    """Per-point bar-distribution predictive: ``phi["logits"]`` (``S x n x K``) with fixed ``borders``; ``f`` holds
    each draw's predictive mean (``S x n x 1``, what ``Predictive.f_mean`` reports). One output."""

    task = "regression"

    def __init__(self, borders: Tensor):
        if not isinstance(borders, Tensor) or borders.dim() != 1 or borders.shape[0] < 4:
            raise ValueError("borders must be a 1-D tensor of at least 4 increasing values")
        if not bool((borders.diff() > 0).all()):
            raise ValueError("borders must be strictly increasing")
        self.borders = borders

    def num_latent(self, num_outputs: int) -> int:
        if num_outputs != 1:
            raise ValueError(f"a bar distribution has one output, got {num_outputs}")
        return 1

    def prepare_targets(self, y):
        y = torch.as_tensor(y)
        if y.dim() == 1:
            y = y.unsqueeze(-1)
        if y.dim() != 2 or y.shape[-1] != 1:
            raise ValueError(f"y must have shape (n,) or (n, 1), got {tuple(y.shape)}")
        return y

    def validate_phi(self, phi, f_shape):
        logits = phi.get("logits")
        expected = (f_shape[0], f_shape[1], self.borders.shape[0] - 1)
        if logits is None or tuple(logits.shape) != expected:
            raise ValueError(f"phi['logits'] must have shape {expected}, got "
                             f"{None if logits is None else tuple(logits.shape)}")

    def distribution(self, f, phi):
        return BarDistribution(self.borders.to(device=f.device), phi["logits"].to(f.dtype).unsqueeze(-2))
