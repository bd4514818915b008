"""Resampling schemes and the effective sample size of importance weights.

Every scheme maps normalised weights ``... x N`` to ancestor indices ``... x M`` (``M = N`` by default) and is
unbiased: the expected number of copies of particle ``i`` is ``M w_i``. They differ in variance: multinomial
draws ``M`` independent indices; stratified draws one uniform per stratum ``[(k + u_k) / M]``; systematic uses
one uniform shifted over all strata; residual keeps ``floor(M w_i)`` copies deterministically and resamples the
remainder multinomially. Leading dimensions are independent populations (e.g. several SMC runs at once).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Resampler = Callable[..., Tensor]


def normalise(log_weights: Tensor) -> Tensor:
    """Normalised weights from log weights ``... x N``; ``-inf`` entries get weight 0.

    Raises:
        ValueError: if a population has no finite log weight (nothing left to resample).
    """
    if bool((~torch.isfinite(log_weights).any(-1)).any()):
        raise ValueError("every particle of a population has zero weight (all log weights are -inf or NaN)")
    return torch.softmax(torch.nan_to_num(log_weights, nan=-torch.inf), dim=-1)


def effective_sample_size(log_weights: Tensor) -> Tensor:
    """Kish's ESS ``1 / sum w_i^2`` of normalised weights, ``...`` (between 1 and ``N``)."""
    return 1.0 / normalise(log_weights).square().sum(-1)


def _check(weights: Tensor, num: int | None) -> int:
    if weights.dim() < 1 or weights.shape[-1] == 0:
        raise ValueError(f"weights must have shape (..., N) with N >= 1, got {tuple(weights.shape)}")
    num = weights.shape[-1] if num is None else num
    if num < 1:
        raise ValueError(f"num must be a positive integer, got {num}")
    return num


def _inverse_cdf(weights: Tensor, positions: Tensor) -> Tensor:
    """Indices ``i`` with ``cdf[i-1] <= position < cdf[i]`` for ``positions`` in [0, 1)."""
    cdf = weights.cumsum(-1)
    cdf = cdf / cdf[..., -1:]  # exact 1 at the end despite rounding
    idx = torch.searchsorted(cdf.contiguous(), positions.contiguous(), right=True)
    return idx.clamp_(max=weights.shape[-1] - 1)


def multinomial(weights: Tensor, num: int | None = None, *, generator: torch.Generator | None = None) -> Tensor:
    """``num`` independent draws from the categorical distribution ``weights`` (``... x N -> ... x num``)."""
    num = _check(weights, num)
    u = torch.rand(*weights.shape[:-1], num, generator=generator, dtype=weights.dtype, device=weights.device)
    return _inverse_cdf(weights, u.sort(-1).values)


def stratified(weights: Tensor, num: int | None = None, *, generator: torch.Generator | None = None) -> Tensor:
    """One uniform draw in each of ``num`` equal strata of [0, 1)."""
    num = _check(weights, num)
    u = torch.rand(*weights.shape[:-1], num, generator=generator, dtype=weights.dtype, device=weights.device)
    k = torch.arange(num, dtype=weights.dtype, device=weights.device)
    return _inverse_cdf(weights, (k + u) / num)


def systematic(weights: Tensor, num: int | None = None, *, generator: torch.Generator | None = None) -> Tensor:
    """One uniform draw shifted over all ``num`` strata (each particle gets ``floor`` or ``ceil`` of ``num w``)."""
    num = _check(weights, num)
    u = torch.rand(*weights.shape[:-1], 1, generator=generator, dtype=weights.dtype, device=weights.device)
    k = torch.arange(num, dtype=weights.dtype, device=weights.device)
    return _inverse_cdf(weights, (k + u) / num)


def residual(weights: Tensor, num: int | None = None, *, generator: torch.Generator | None = None) -> Tensor:
    """``floor(num w_i)`` copies of each particle, the remaining slots drawn multinomially from the residuals."""
    num = _check(weights, num)
    w = weights / weights.sum(-1, keepdim=True)
    copies = torch.floor(num * w)
    rest = num - copies.sum(-1, keepdim=True)  # ... x 1, the same count is not guaranteed across populations
    residuals = num * w - copies
    n = weights.shape[-1]
    # Each population fills its ``rest`` remaining slots with the first ``rest`` of ``num`` i.i.d. (unsorted) draws.
    u = torch.rand(*weights.shape[:-1], num, generator=generator, dtype=weights.dtype, device=weights.device)
    extra = _inverse_cdf(torch.where(residuals.sum(-1, keepdim=True) > 0, residuals, w), u)
    keep = torch.arange(num, device=weights.device) < rest
    counts = copies.long().clone()
    counts.scatter_add_(-1, extra, keep.long())
    idx = torch.repeat_interleave(torch.arange(n, device=weights.device).expand_as(counts).reshape(-1),
                                  counts.reshape(-1))
    return idx.reshape(*weights.shape[:-1], num)


RESAMPLERS: dict[str, Resampler] = {"multinomial": multinomial, "stratified": stratified,
                                    "systematic": systematic, "residual": residual}


def get(name: str) -> Resampler:
    """The resampling scheme ``name``; a ``ValueError`` listing the schemes otherwise."""
    if name not in RESAMPLERS:
        raise ValueError(f"resampling must be one of {tuple(RESAMPLERS)}, got {name!r}")
    return RESAMPLERS[name]
