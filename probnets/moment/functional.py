"""Analytic moment rules: mean and (co)variance out of a layer from mean and (co)variance in.

Every rule maps a Gaussian input summarised by its mean ``n x d`` and its variance ``n x d`` (diagonal) or
covariance ``n x d x d`` (full) to the mean and (co)variance of the layer's output. The elementwise rules are
evaluated in float64 and returned in the input's dtype, so float32 inputs get float64-accurate moments (the
formulas subtract nearly equal terms in the tails).

- :func:`linear_moments`: ``y = x W + b`` with independent Gaussian weights ``W ~ N(M, V)`` (``d x k``,
  elementwise) and bias ``b ~ N(m_b, v_b)``, independent of ``x``. Exact for any input distribution with the
  given first two moments.
- :func:`gelu_moments` (MP-GELU): the stochastic-gate GELU ``y = x u``, ``u | x ~ Bernoulli(Phi(x))``, whose mean
  is the GELU ``x Phi(x)`` of a Gaussian input and whose second moment is ``E[x^2 Phi(x)]``. Both are closed forms
  in ``Phi`` and ``phi``. Exact for a Gaussian input.
- :func:`exact_gelu_moments`: the deterministic GELU ``y = x Phi(x)``; its second moment ``E[x^2 Phi(x)^2]`` needs
  the bivariate normal orthant probability ``E[Phi(x)^2]``, i.e. Owen's T function. Exact for a Gaussian input.
- :func:`relu_moments` and :func:`relu_covariance`: Wu et al. (2019), deterministic variational inference. The
  variances are exact for Gaussian inputs; the off-diagonal covariances use their closed-form approximation of
  the bivariate integral.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Gauss-Legendre rule on [0, 1] for E[Phi(x)^2]: with 32 nodes its relative error was at most 4e-11 over h = 0..-37
# (beyond, it underflows) and variances 0..1e8, against 40-digit mpmath quadrature.
_NODES, _WEIGHTS = (torch.from_numpy(v) for v in np.polynomial.legendre.leggauss(32))
_NODES, _WEIGHTS = (_NODES + 1) / 2, _WEIGHTS / 2
# Below this input variance the deterministic GELU's variance is its second-order Taylor expansion: the exact
# difference E[y^2] - E[y]^2 has an error of 1e-16 E[y^2], large relative to a tiny variance; the expansion's
# relative error is O(variance).
_TAYLOR_VARIANCE = 1e-6


def _phi(t: Tensor) -> Tensor:
    return _INV_SQRT_2PI * torch.exp(-0.5 * t * t)


def _cdf(t: Tensor) -> Tensor:
    # torch.special.ndtr computes 1 + erf and loses the left tail (0 below -8.3); erfc keeps it
    return 0.5 * torch.special.erfc(-_SQRT_HALF * t)


def _cdf_and_survival(t: Tensor) -> tuple[Tensor, Tensor]:
    """``Phi(t)`` and ``Phi(-t)``, both accurate in their tails, from one ``erfc`` (the costly op here)."""
    tail = _cdf(-t.abs())
    negative = t < 0
    return torch.where(negative, tail, 1.0 - tail), torch.where(negative, 1.0 - tail, tail)


def _float64(mean: Tensor, variance: Tensor) -> tuple[Tensor, Tensor]:
    """float64 ``mean`` and ``variance`` (clamped at 0)."""
    return mean.double(), variance.double().clamp_min(0)


def _standard_deviation(variance: Tensor) -> Tensor:
    """``sqrt(variance)`` with a zero gradient where ``variance`` is 0 (sqrt's own is infinite there)."""
    return torch.where(variance > 0, variance, 1.0).sqrt() * (variance > 0)


def linear_moments(mean: Tensor, variance: Tensor | None, weight_mean: Tensor, weight_variance: Tensor,
                   bias_mean: Tensor | None = None, bias_variance: Tensor | None = None, *,
                   full_output: bool = False) -> tuple[Tensor, Tensor]:
    """Moments of ``y = x W + b``.

    Args:
        mean: ``E[x]``, ``n x d``.
        variance: ``Var[x]``, ``n x d``, or ``Cov[x]``, ``n x d x d``; ``None`` for a deterministic ``x``.
        weight_mean, weight_variance: ``M``, ``V``, ``d x k``.
        bias_mean, bias_variance: ``m_b``, ``v_b``, ``k`` (``None``: no bias).
        full_output: Return ``Cov[y]`` for a diagonal ``variance`` too (without forming ``diag(Var[x])``).

    Returns:
        ``E[y]`` (``n x k``) and ``Var[y]`` (``n x k``) or ``Cov[y]`` (``n x k x k``), matching ``variance`` or
        ``full_output``: ``Cov[y] = M^T Cov[x] M + diag((diag Cov[x] + E[x]^2) V + v_b)``.
    """
    out_mean = mean @ weight_mean
    full = variance is not None and variance.dim() == mean.dim() + 1
    second = mean.square() if variance is None else (
        (torch.diagonal(variance, dim1=-2, dim2=-1) if full else variance) + mean.square())
    weight_noise = second @ weight_variance
    if bias_mean is not None:
        out_mean = out_mean + bias_mean
        weight_noise = weight_noise + bias_variance
    if variance is None:
        return out_mean, torch.diag_embed(weight_noise) if full_output else weight_noise
    if full:
        covariance = weight_mean.transpose(-2, -1) @ variance @ weight_mean
    elif full_output:  # M^T diag(v_n) M for every row n, as one batched product (n x k x d @ d x k)
        covariance = (variance.unsqueeze(-2) * weight_mean.transpose(-2, -1)) @ weight_mean
    else:
        return out_mean, variance @ weight_mean.square() + weight_noise
    torch.diagonal(covariance, dim1=-2, dim2=-1).add_(weight_noise)  # a fresh product: safe to add in place
    return out_mean, covariance


def gelu_moments(mean: Tensor, variance: Tensor) -> tuple[Tensor, Tensor]:
    """MP-GELU: moments of the stochastic-gate GELU of ``x ~ N(mean, variance)`` (elementwise, any shape).

    With ``s = sqrt(1 + variance)`` and ``t = mean / s``::

        E[y]   = mean Phi(t) + variance phi(t) / s
        Var[y] = mean^2 Phi(t) Phi(-t) + variance Phi(t) + mean variance phi(t) (1 + 1/s^2 - 2 Phi(t)) / s
                 - variance^2 phi(t)^2 / s^2

    (``E[y^2] = (mean^2 + variance) Phi(t) + mean variance phi(t) (1/s + 1/s^3)``, rearranged so that no two
    large terms cancel when ``mean >> 1``).
    """
    mu, var = _float64(mean, variance)
    s2 = 1.0 + var
    s = s2.sqrt()
    t = mu / s
    cdf, sf = _cdf_and_survival(t)
    pdf = _phi(t)
    out_mean = mu * cdf + var * pdf / s
    out_var = (mu.square() * cdf * sf + var * cdf + mu * var * pdf * (1.0 + 1.0 / s2 - 2.0 * cdf) / s
               - (var * pdf).square() / s2)
    return out_mean.to(mean.dtype), out_var.clamp_min(0).to(mean.dtype)


def _normal_cdf_squared_mean(h: Tensor, a: Tensor) -> Tensor:
    """``E[Phi(x)^2] = Phi_2(h, h; rho)`` for ``h <= 0`` in terms of ``a = sqrt((1 - rho) / (1 + rho))`` in (0, 1]
    (float64, elementwise, differentiable).

    Owen's ``T(h, 1) = Phi(h) Phi(-h) / 2`` turns ``Phi(h) - 2 T(h, a)`` into a sum of positive terms,
    ``Phi(h)^2 + (1 / pi) int_a^1 exp(-h^2 (1 + x^2) / 2) / (1 + x^2) dx``, accurate relative to the (tiny) value in
    the left tail, where the difference would cancel. The integral is truncated where the exponent has dropped by
    40 below its value at ``a`` and evaluated by Gauss-Legendre quadrature.
    """
    h2 = h.square()
    upper = (a.square() + 80.0 / h2.clamp_min(80.0)).clamp_max(1.0).sqrt()
    x = a[..., None] + (upper - a)[..., None] * _NODES.to(h.device)
    q = 1.0 + x.square()
    integral = (upper - a) * (torch.exp(-0.5 * h2[..., None] * q) / q * _WEIGHTS.to(h.device)).sum(-1)
    return _cdf(h).square() + integral / math.pi


def exact_gelu_moments(mean: Tensor, variance: Tensor) -> tuple[Tensor, Tensor]:
    """Moments of the deterministic GELU ``y = x Phi(x)``, ``x ~ N(mean, variance)`` (elementwise, any shape; exact).

    With ``s = sqrt(1 + variance)``, ``t = mean / s`` and ``a = 1 / sqrt(1 + 2 variance)``, Gaussian integration by
    parts (``E[x^2 g] = (mean^2 + variance) E[g] + 2 mean variance E[g'] + variance^2 E[g'']``, ``g = Phi^2``) gives::

        E[y]   = mean Phi(t) + variance phi(t) / s
        E[y^2] = (mean^2 + variance) A + 4 mean variance B + 2 variance^2 (C - D)
        A = E[Phi(x)^2]        = Phi(t) - 2 T(t, a)   (T: Owen's T; Phi_2(t, t; variance / s^2))
        B = E[Phi(x) phi(x)]   = phi(t) Phi(a t) / s
        C = E[phi(x)^2]        = a exp(-a^2 mean^2) / (2 pi)
        D = E[x Phi(x) phi(x)] = phi(t) (mean Phi(a t) + variance a s phi(a t)) / s^3

    The variance is evaluated at ``m = -|mean|``, where no two large terms cancel, and reflected: ``y = x -
    x Phi(-x)`` gives ``Var(mean) = Var(-mean) + variance (erf(t / sqrt 2) + 2 mean phi(t) / s^3)``, the last term
    odd in ``mean``. Below an input variance of 1e-6 the variance at ``m`` is the Taylor
    expansion ``variance f1^2 + variance^2 (f2^2 / 2 + f1 f3)`` in the derivatives ``f1, f2, f3`` of ``x Phi(x)``.
    ``A`` is evaluated without cancellation (see :func:`_normal_cdf_squared_mean`), so the moments stay accurate
    relative to their size deep in the left tail; the four terms of ``E[y^2]`` there cancel by about a factor
    ``(1 + 2 variance)^2`` (the ratio of ``mean^2`` to the square of where ``x^2 Phi(x)^2`` peaks).
    """
    mu, var = _float64(mean, variance)
    s2 = 1.0 + var
    s = s2.sqrt()
    a = (1.0 + 2.0 * var).rsqrt()
    t = mu / s
    out_mean = mu * _cdf(t) + var * _phi(t) / s
    m = -mu.abs()  # abs's zero gradient at 0 is made up by the odd term below
    tm = m / s
    pdf, cdf_a = _phi(tm), _cdf(a * tm)
    first = m * _cdf(tm) + var * pdf / s
    second = ((m.square() + var) * _normal_cdf_squared_mean(tm, a) + 4.0 * m * var * pdf * cdf_a / s
              + 2.0 * var.square() * (a * torch.exp(-(a * m).square()) / (2 * math.pi)
                                      - pdf * (m * cdf_a + var * a * s * _phi(a * tm)) / (s * s2)))
    pdf_m = _phi(m)
    f1 = _cdf(m) + m * pdf_m
    f2 = pdf_m * (2.0 - m.square())
    f3 = m * pdf_m * (m.square() - 4.0)
    taylor = var * f1.square() + var.square() * (0.5 * f2.square() + f1 * f3)
    left = torch.where(var < _TAYLOR_VARIANCE, taylor, second - first.square()).clamp_min(0)

    def odd(x: Tensor) -> Tensor:
        return var * (torch.erf(x / s * _SQRT_HALF) + 2.0 * x * _phi(x / s) / (s * s2))

    # Var(mean) = Var(-|mean|) + odd(mean) for mean > 0, written so that it is smooth (gradient included) at 0
    out_var = left + 0.5 * (odd(mu) + odd(mu.abs()))
    return out_mean.to(mean.dtype), out_var.to(mean.dtype)


def relu_moments(mean: Tensor, variance: Tensor) -> tuple[Tensor, Tensor]:
    """Moments of ``relu(x)``, ``x ~ N(mean, variance)`` (elementwise, any shape; exact).

    With ``r = mean / sd`` and ``SR(r) = phi(r) + r Phi(r)``: ``E = sd SR(r)``,
    ``Var = variance (Phi(r) + r SR(r) - SR(r)^2)``; a zero variance gives ``relu(mean)`` and 0.
    """
    mu, var = _float64(mean, variance)
    sd = _standard_deviation(var)
    positive = sd > 0
    r = torch.where(positive, mu / torch.where(positive, sd, 1.0), 0.0)
    cdf, pdf = _cdf(r), _phi(r)
    soft = pdf + r * cdf
    # Var / variance = Phi(r) + r SR - SR^2, written as Phi^2 + Phi(r) Phi(-r) (1 + r^2) + r phi(r) (1 - 2 Phi(r))
    # - phi(r)^2 so that it does not cancel for r >> 1 (where it tends to 1).
    scaled_var = (cdf.square() + cdf * _cdf(-r) * (1.0 + r * r) + r * pdf * (1.0 - 2.0 * cdf) - pdf.square())
    out_mean = torch.where(positive, sd * soft, mu.clamp_min(0))
    out_var = torch.where(positive, var * scaled_var.clamp_min(0), 0.0)
    return out_mean.to(mean.dtype), out_var.to(mean.dtype)


def relu_covariance(mean: Tensor, covariance: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``n x d`` and covariance ``n x d x d`` of ``relu(x)``, ``x ~ N(mean, covariance)`` (Wu et al. 2019).

    The diagonal is exact (:func:`relu_moments`). Off the diagonal, with ``r_i = mean_i / sd_i`` and correlation
    ``rho``, ``Cov_ij = covariance_ij (Phi(r_i) Phi(r_j) + g(rho, r_i, r_j))``, where
    ``g = A exp(-(r_i^2 + r_j^2) / (2 s_xx) + r_i r_j / s_xy)``, ``A = (asin rho - rho / (1 + sqrt(1 - rho^2))) / (2 pi)``,
    ``s_xx = |2 pi A| (1 + sqrt(1 - rho^2)) / |rho|`` and ``1 / s_xy = (asin rho - rho) / (2 pi |A| |rho|)``:
    their closed-form approximation of the remainder ``(1/rho) int_0^rho (rho - u) phi_2(r_i, r_j; u) du``
    (exact at ``rho -> 0`` and at ``r = 0``).
    """
    variance = torch.diagonal(covariance, dim1=-2, dim2=-1)
    out_mean, out_var = relu_moments(mean, variance)
    mu, var = _float64(mean, variance)
    sd = _standard_deviation(var)
    cov = covariance.double()
    positive = sd > 0
    safe_sd = torch.where(positive, sd, 1.0)
    r = torch.where(positive, mu / safe_sd, 0.0)
    rho = (cov / (safe_sd[..., :, None] * safe_sd[..., None, :])).clamp(-1 + 1e-9, 1 - 1e-9)
    ri, rj = r[..., :, None], r[..., None, :]
    # Near rho = 0, g = rho / (4 pi) exp(-(r_i^2 + r_j^2) / 2) + O(rho^2); the closed form divides 0 by 0 there,
    # so it is evaluated at a safe rho and replaced by the limit (a double where keeps the gradients finite).
    small = rho.abs() < 1e-4
    safe_rho = torch.where(small, 0.5, rho)
    root = (1.0 - safe_rho.square()).sqrt()
    asin = torch.asin(safe_rho)
    a = asin - safe_rho / (1.0 + root)
    inv_sxx = safe_rho.abs() / (a.abs() * (1.0 + root))
    inv_sxy = (asin - safe_rho) / (a.abs() * safe_rho.abs())
    closed = a / (2 * math.pi) * torch.exp(-0.5 * (ri.square() + rj.square()) * inv_sxx + ri * rj * inv_sxy)
    limit = rho / (4 * math.pi) * torch.exp(-0.5 * (ri.square() + rj.square()))
    g = torch.where(small, limit, closed)
    out_cov = cov * (_cdf(ri) * _cdf(rj) + g)
    out_cov = out_cov.to(covariance.dtype)
    return out_mean, torch.diagonal_scatter(out_cov, out_var, dim1=-2, dim2=-1)
