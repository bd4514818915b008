"""Per-chain ring buffers of past iterates: the empirical distribution ``q_hat`` that structured SG-MCMC draws the
non-live parameter groups from.

One buffer holds ``length`` whole parameter vectors per chain (``C x length x D``); group ``k``'s history is
its columns, and every group draws its own stored iterate independently (``draw``), so this is one ring buffer
per group with a common length and thinning. The buffer starts filled with one position (``init``, or ``refill``
when the structured steps begin: ``q_hat`` a point mass there, as when Alexos et al. start from a MAP estimate);
every ``thin``-th iterate then overwrites the oldest slot, so after ``length * thin`` iterations the buffer covers
exactly the last ``length * thin`` iterations. Its memory is ``C * length * D * itemsize`` bytes, allocated at ``init`` (8 chains of a 10-50-1 BNN, D = 603, length 1000:
38.6 MB in float64); ``init`` refuses buffers above ``max_bytes``. The buffer is part of the sampler state, so a
checkpoint holds it and a resumed run continues bit-identically.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from probnets.validation import check_positive_int


class History(NamedTuple):
    """``draws`` ``C x length x D``: the stored iterates (slot ``count % length`` is written next); ``count``
    ``()``: iterates stored so far (not counting the initial fill); ``iteration`` ``()``: iterates offered so far
    (drives the thinning)."""

    draws: Tensor
    count: Tensor
    iteration: Tensor


def nbytes(num_chains: int, length: int, dim: int, dtype: torch.dtype) -> int:
    """Bytes of the buffers of ``num_chains`` chains."""
    return num_chains * length * dim * torch.empty((), dtype=dtype).element_size()


def init(position: Tensor, length: int, max_bytes: int) -> History:
    """Buffers filled with ``position`` ``C x D``; a ``ValueError`` when they would exceed ``max_bytes``."""
    length = check_positive_int(length, "history_length")
    num_chains, dim = position.shape
    size = nbytes(num_chains, length, dim, position.dtype)
    if size > max_bytes:
        raise ValueError(f"the history buffers need {size / 2**20:.1f} MiB ({num_chains} chains x history_length "
                         f"{length} x D {dim} x {position.element_size()} bytes), above max_history_bytes="
                         f"{max_bytes} ({max_bytes / 2**20:.1f} MiB); lower history_length (thin with "
                         "history_thin to keep the time span) or num_chains, or raise max_history_bytes")
    zero = torch.zeros((), dtype=torch.long, device=position.device)
    return History(position[:, None, :].repeat(1, length, 1), zero, zero)


def refill(history: History, position: Tensor) -> History:
    """Every slot set to ``position`` ``C x D`` (``q_hat`` a point mass there), counters reset; in place."""
    history.draws.copy_(position[:, None, :].expand_as(history.draws))
    zero = torch.zeros_like(history.count)
    return History(history.draws, zero, zero)


def push(history: History, position: Tensor, thin: int) -> History:
    """Offer the iterate ``position`` ``C x D``; it is stored when it is the ``thin``-th since the last stored.

    The buffer is written in place (copying it every step would cost ``C x length x D``): the returned state
    shares ``draws`` with ``history``.
    """
    iteration = history.iteration + 1
    if int(iteration) % thin:
        return history._replace(iteration=iteration)
    history.draws[:, int(history.count) % history.draws.shape[1]] = position
    return History(history.draws, history.count + 1, iteration)


def draw(history: History, index: Tensor) -> Tensor:
    """Stored values picked per coordinate: ``out[p, c, d] = draws[c, index[p, c, d], d]``.

    Args:
        history: The buffers.
        index: ``P x C x D`` slots in ``0 .. length - 1``.

    Returns:
        ``P x C x D``.
    """
    draws = history.draws
    return draws.expand(index.shape[0], *draws.shape).gather(2, index.unsqueeze(2)).squeeze(2)
