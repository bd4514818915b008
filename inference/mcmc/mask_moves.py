"""Metropolis-Hastings birth/death moves on binary node masks (Kong et al. 2023), all chains at once.

One move per chain: ``u ~ Bernoulli(1/2)`` chooses death (switch active nodes off) or birth (switch inactive
nodes on); ``N ~ U{1, ..., max_flips}`` nodes are drawn without replacement from the candidates, birth
uniformly over inactive nodes, death with weights ``exp(-|d log p / d m_j| / 2)`` over active nodes (nodes
whose removal changes the fit least are proposed most). The move is accepted with probability
``min(1, p(theta') q_rev(S) / (p(theta) q_fwd(S)))``, where ``q(S)`` is the probability of drawing the node set
``S`` in any order (the sum over its orderings of the sequential without-replacement probabilities) and
``q_rev`` is the opposite move's proposal at the proposed state. ``u`` and ``N`` have the same probability in
both directions and cancel. A move needing more candidates than there are is rejected (the chain stays),
which keeps the chain reversible; so is a move whose log ratio is not finite (counted).

Candidates are pooled over all masked layers: one move may flip nodes of several layers, and the prior ratio
comes with the log density, which must hold the mask prior.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
from torch import Tensor

from probnets.model import LogDensity


class MaskMoveInfo(NamedTuple):
    """Per chain ``(C,)``: whether the move was accepted, its acceptance probability (0 for impossible
    moves), and whether its log acceptance ratio was not finite."""

    is_accepted: Tensor
    acceptance_rate: Tensor
    is_nonfinite: Tensor


def proposal_log_weights(masks: Tensor, mask_grad: Tensor, death: Tensor) -> Tensor:
    """Unnormalised log proposal weights of every node, ``-inf`` for nodes that are not candidates.

    Args:
        masks: Current masks ``C x P`` (0.0/1.0).
        mask_grad: ``d log p / d m`` at the current state, ``C x P``.
        death: Per chain ``C``: death (switch active nodes off) or birth.

    Returns:
        ``C x P``: ``-|grad| / 2`` on active nodes for death, ``0`` on inactive nodes for birth.
    """
    active = masks > 0.5
    death = death.unsqueeze(-1)
    log_weights = torch.where(death, -0.5 * mask_grad.abs(), torch.zeros_like(mask_grad))
    candidate = torch.where(death, active, ~active)
    return torch.where(candidate, log_weights, torch.full_like(log_weights, float("-inf")))


def set_log_probability(log_weights: Tensor, chosen: Tensor, size: Tensor) -> Tensor:
    """Log probability that sequential sampling without replacement draws the set ``chosen[:, :size]``.

    ``q(S) = sum over orderings (j_1, ..., j_k) of prod_i w_{j_i} / (sum of the weights not yet drawn)``. Each
    remaining total is summed directly (in log space) rather than taken as one minus the drawn mass, and is
    computed once per subset of ``S`` drawn so far (orderings share them).

    Args:
        log_weights: Unnormalised log weights ``C x P`` (``-inf``: not drawable).
        chosen: Drawn node indices ``C x K`` (only the first ``size`` of each row count).
        size: Set sizes ``C``, each in ``1..K``.

    Returns:
        ``log q(S)`` per chain, ``C``.
    """
    out = torch.full(size.shape, float("nan"), dtype=log_weights.dtype, device=log_weights.device)
    chosen_log_weights = log_weights.gather(-1, chosen)
    for k in range(1, chosen.shape[-1] + 1):
        if not bool((size == k).any()):
            continue
        drawn = [subset for r in range(k) for subset in itertools.combinations(range(k), r)]
        log_totals = torch.logsumexp(torch.stack([
            log_weights.scatter(-1, chosen[:, list(subset)], float("-inf")) if subset else log_weights
            for subset in drawn]), -1)
        total_after = {subset: log_totals[i] for i, subset in enumerate(drawn)}
        per_order = []
        for order in itertools.permutations(range(k)):
            per_order.append(sum(chosen_log_weights[:, j] - total_after[tuple(sorted(order[:i]))]
                                 for i, j in enumerate(order)))
        out = torch.where(size == k, torch.logsumexp(torch.stack(per_order), 0), out)
    return out


def birth_death_move(position: Tensor, logdensity_value: Tensor, logdensity_grad: Tensor, logdensity: LogDensity,
                     mask_slice: slice, generator: torch.Generator,
                     max_flips: int) -> tuple[tuple[Tensor, Tensor, Tensor], MaskMoveInfo]:
    """One birth/death move per chain on the masks ``position[:, mask_slice]``.

    Args:
        position: Current states ``C x D`` (masks 0.0/1.0 in ``mask_slice``).
        logdensity_value, logdensity_grad: The log density ``C`` and its gradient ``C x D`` at ``position``.
        logdensity: The joint log density (mask prior included).
        mask_slice: Where the masks sit in ``position``.
        generator: Source of every draw.
        max_flips: ``N_max``, the most nodes one move flips.

    Returns:
        The new ``(position, value, grad)`` and the move's info.
    """
    masks = position[:, mask_slice]
    num_chains, num_nodes = masks.shape
    dtype, device = position.dtype, position.device
    death = torch.rand(num_chains, generator=generator, dtype=dtype, device=device) < 0.5
    size = torch.randint(1, max_flips + 1, (num_chains,), generator=generator, device=device)
    log_weights = proposal_log_weights(masks, logdensity_grad[:, mask_slice], death)
    # Gumbel top-k: the order of the k largest perturbed log weights is a sequential draw without replacement.
    uniform = torch.rand(masks.shape, generator=generator, dtype=dtype, device=device)
    uniform = uniform.clamp(torch.finfo(dtype).tiny, 1.0 - torch.finfo(dtype).eps)
    keys = log_weights - torch.log(-torch.log(uniform))
    chosen = keys.topk(min(max_flips, num_nodes), -1).indices
    size = size.clamp(max=chosen.shape[-1])
    feasible = torch.isfinite(log_weights).sum(-1) >= size
    in_set = torch.arange(chosen.shape[-1], device=device) < size.unsqueeze(-1)
    flip = torch.zeros_like(masks, dtype=torch.bool).scatter(-1, chosen, in_set)
    proposed = position.clone()
    proposed[:, mask_slice] = torch.where(flip & feasible.unsqueeze(-1), 1.0 - masks, masks)

    value, grad = logdensity.value_and_grad(proposed)
    reverse_log_weights = proposal_log_weights(proposed[:, mask_slice], grad[:, mask_slice], ~death)
    log_ratio = (value - logdensity_value + set_log_probability(reverse_log_weights, chosen, size)
                 - set_log_probability(log_weights, chosen, size))
    finite = torch.isfinite(log_ratio)
    log_u = torch.log(torch.rand(num_chains, generator=generator, dtype=dtype, device=device))
    accepted = feasible & finite & (log_u < log_ratio)
    acceptance = torch.where(feasible & finite, log_ratio.clamp(max=0.0).exp(), torch.zeros_like(log_ratio))
    new = (torch.where(accepted.unsqueeze(-1), proposed, position), torch.where(accepted, value, logdensity_value),
           torch.where(accepted.unsqueeze(-1), grad, logdensity_grad))
    return new, MaskMoveInfo(accepted, acceptance, feasible & ~finite)


__all__ = ["MaskMoveInfo", "birth_death_move", "proposal_log_weights", "set_log_probability"]
