"""The No-U-Turn Sampler: multinomial, iterative, all chains advanced in lockstep.

Each chain builds its own trajectory by repeated doubling (Hoffman & Gelman 2014; Betancourt 2017 for
multinomial sampling and the generalised U-turn criterion). Every doubling of depth ``j`` runs ``2**j``
leapfrog steps for all chains at once; a chain whose trajectory has terminated is held fixed (masked)
while the others continue, so one gradient call serves every chain. Sub-trajectory U-turn checks use
``O(max_tree_depth)`` momentum checkpoints instead of recursion (as in NumPyro's iterative NUTS).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from inference.base import Algorithm
from inference.mcmc import integrators, proposal, trajectory, tree_util
from inference.mcmc.hmc import HMCState, init
from inference.mcmc.integrators import Integrator, IntegratorState
from inference.mcmc.mass_matrix import MassMatrix
from probnets.model import LogDensity


class NUTSInfo(NamedTuple):
    """Per-chain diagnostics of one NUTS transition (``(C,)`` each).

    ``acceptance_rate`` is the mean over all leaves of ``min(1, exp(-dH))`` (Stan's adaptation statistic);
    ``num_integration_steps`` counts integration steps (leaves) including rejected subtrees, and
    ``num_grad_evals`` their gradient evaluations.
    """

    acceptance_rate: Tensor
    is_divergent: Tensor
    energy: Tensor
    num_integration_steps: Tensor
    num_grad_evals: Tensor
    tree_depth: Tensor
    reached_max_tree_depth: Tensor


def _is_turning(mass_matrix: MassMatrix, p_left: Tensor, p_right: Tensor, p_sum: Tensor) -> Tensor:
    """Generalised no-U-turn criterion on a sub-trajectory with end momenta and momentum sum ``(C, D)``."""
    rho = p_sum - 0.5 * (p_left + p_right)
    return ((mass_matrix.velocity(p_left) * rho).sum(-1) <= 0) | ((mass_matrix.velocity(p_right) * rho).sum(-1) <= 0)


def _checkpoint_range(leaf: int) -> tuple[int, int]:
    """Checkpoint slots ``[lo, hi]`` holding the starts of the sub-trees that end at odd ``leaf``.

    The sub-trees ending at ``leaf`` have sizes ``2, 4, ..., 2**t`` where ``t`` is the number of trailing
    one bits of ``leaf``; an even leaf ``m`` is stored in slot ``popcount(m >> 1)``.
    """
    hi = bin(leaf >> 1).count("1")
    trailing_ones = (leaf ^ (leaf + 1)).bit_length() - 1
    return hi - trailing_ones + 1, hi


class _Tree(NamedTuple):
    """The trajectory built so far per chain: its two ends, the point sampled from it, the log of its
    total multinomial weight ``C`` and the sum of its momenta ``C x D``."""

    left: IntegratorState
    right: IntegratorState
    proposal: IntegratorState
    log_weight: Tensor
    momentum_sum: Tensor


class _SubTree(NamedTuple):
    """A doubling: its far end, sampled point, log weight, momentum sum and whether a sub-trajectory of it
    made a U-turn."""

    end: IntegratorState
    proposal: IntegratorState
    log_weight: Tensor
    momentum_sum: Tensor
    turning: Tensor


class _Totals(NamedTuple):
    """Per-chain totals over every leaf built, rejected sub-trees included."""

    num_steps: Tensor
    sum_accept: Tensor
    diverging: Tensor


class _Checkpoints(NamedTuple):
    """Momenta and momentum sums ``max_tree_depth x C x D`` at the starts of the open sub-trees."""

    momentum: Tensor
    momentum_sum: Tensor


def _sample_leaf(proposal_point: IntegratorState, log_weight: Tensor, point: IntegratorState, delta: Tensor,
                 building: Tensor, generator) -> tuple[IntegratorState, Tensor]:
    """Uniform progressive multinomial sampling inside a sub-tree: add the leaf ``point`` of energy error
    ``delta`` ``C`` for the chains still ``building``."""
    leaf_log_weight = torch.where(torch.isfinite(delta), -delta, -torch.inf)
    new_log_weight = torch.logaddexp(log_weight, leaf_log_weight)
    u = torch.rand(delta.shape, generator=generator, dtype=delta.dtype, device=delta.device)
    take = building & (torch.log(u) < leaf_log_weight - new_log_weight)
    return tree_util.where(take, point, proposal_point), torch.where(building, new_log_weight, log_weight)


def _store_checkpoint(checkpoints: _Checkpoints, leaf: int, momentum: Tensor, momentum_sum: Tensor) -> None:
    """At an even ``leaf``, which starts sub-trees, keep its momentum ``C x D`` and the running momentum sum."""
    slot = bin(leaf >> 1).count("1")
    checkpoints.momentum[slot] = momentum
    checkpoints.momentum_sum[slot] = momentum_sum


def _subtree_turning(checkpoints: _Checkpoints, leaf: int, momentum: Tensor, momentum_sum: Tensor,
                     mass_matrix: MassMatrix) -> Tensor:
    """At an odd ``leaf``, whether any sub-tree ending there makes a U-turn ``C``."""
    lo, hi = _checkpoint_range(leaf)
    p_start = checkpoints.momentum[lo : hi + 1]
    rho = momentum_sum - checkpoints.momentum_sum[lo : hi + 1] + p_start
    return _is_turning(mass_matrix, p_start, momentum.expand_as(p_start), rho).any(0)


def _merge(tree: _Tree, sub: _SubTree, forward: Tensor, merge: Tensor, generator) -> _Tree:
    """Append the sub-tree on the side it was built for the chains that ``merge`` (biased progressive
    sampling of the proposal)."""
    u = torch.rand(merge.shape, generator=generator, dtype=tree.log_weight.dtype, device=merge.device)
    take = merge & (torch.log(u) < sub.log_weight - tree.log_weight)
    return _Tree(
        tree_util.where(merge & ~forward, sub.end, tree.left),
        tree_util.where(merge & forward, sub.end, tree.right),
        tree_util.where(take, sub.proposal, tree.proposal),
        torch.where(merge, torch.logaddexp(tree.log_weight, sub.log_weight), tree.log_weight),
        torch.where(merge[:, None], tree.momentum_sum + sub.momentum_sum, tree.momentum_sum),
    )


def build_kernel(max_tree_depth: int = 10, divergence_threshold: float = proposal.DIVERGENCE_THRESHOLD, *,
                 integrator: str | Integrator = "velocity_verlet"):
    """Returns ``kernel(state, generator, logdensity, step_size, mass_matrix) -> (state, NUTSInfo)``.

    Args:
        max_tree_depth: Maximum number of trajectory doublings (at most ``2**max_tree_depth`` steps).
        divergence_threshold: Energy error above which a leaf counts as divergent.
        integrator: An ``Integrator`` or the name of one in ``integrators.INTEGRATORS``.
    """
    if not (isinstance(max_tree_depth, int) and 1 <= max_tree_depth <= 16):
        raise ValueError(f"max_tree_depth must be an integer in [1, 16], got {max_tree_depth!r}")
    integrator = integrators.resolve(integrator)

    def build_subtree(one_step, mass_matrix: MassMatrix, point: IntegratorState, signed_step: Tensor,
                      num_leaves: int, active: Tensor, initial_energy: Tensor, totals: _Totals,
                      checkpoints: _Checkpoints, generator) -> tuple[_SubTree, _Totals]:
        """``num_leaves`` steps from ``point`` for the ``active`` chains, each stopping at a U-turn or a
        divergence."""
        building = active.clone()
        turning_any = torch.zeros_like(active)
        log_weight = torch.full(active.shape, -torch.inf, dtype=point.position.dtype, device=active.device)
        momentum_sum = torch.zeros_like(point.momentum)
        sampled = point
        num_steps, sum_accept, diverging = totals
        for leaf in range(num_leaves):
            point = one_step(point, signed_step)
            delta = proposal.energy_error(initial_energy, trajectory.hamiltonian(point, mass_matrix))
            divergent = building & proposal.is_divergent(delta, divergence_threshold)
            num_steps = num_steps + building
            sum_accept = sum_accept + torch.where(building, proposal.acceptance_probability(delta), 0.0)
            sampled, log_weight = _sample_leaf(sampled, log_weight, point, delta, building, generator)
            momentum_sum = torch.where(building[:, None], momentum_sum + point.momentum, momentum_sum)
            if leaf % 2 == 0:
                _store_checkpoint(checkpoints, leaf, point.momentum, momentum_sum)
                stop = divergent
            else:
                turning = building & _subtree_turning(checkpoints, leaf, point.momentum, momentum_sum, mass_matrix)
                turning_any = turning_any | turning
                stop = turning | divergent
            diverging = diverging | divergent
            building = building & ~stop
            if not bool(building.any()):
                break
        sub = _SubTree(point, sampled, log_weight, momentum_sum, turning_any)
        return sub, _Totals(num_steps, sum_accept, diverging)

    def kernel(state: HMCState, generator, logdensity: LogDensity, step_size: Tensor,
               mass_matrix: MassMatrix) -> tuple[HMCState, NUTSInfo]:
        position = state.position
        num_chains, dim = position.shape
        dtype, device = position.dtype, position.device
        step_size = torch.as_tensor(step_size, dtype=dtype, device=device).expand(num_chains)
        one_step = integrator(logdensity, mass_matrix)

        start, initial_energy = trajectory.start(state, mass_matrix, generator)
        tree = _Tree(start, start, start, torch.zeros(num_chains, dtype=dtype, device=device), start.momentum)
        active = torch.ones(num_chains, dtype=torch.bool, device=device)
        depth = torch.zeros(num_chains, dtype=torch.long, device=device)
        totals = _Totals(torch.zeros(num_chains, dtype=torch.long, device=device),
                         torch.zeros(num_chains, dtype=dtype, device=device), torch.zeros_like(active))
        checkpoints = _Checkpoints(torch.zeros((max_tree_depth, num_chains, dim), dtype=dtype, device=device),
                                   torch.zeros((max_tree_depth, num_chains, dim), dtype=dtype, device=device))

        for j in range(max_tree_depth):
            if not bool(active.any()):
                break
            forward = torch.rand(num_chains, generator=generator, device=device) < 0.5
            sub, totals = build_subtree(one_step, mass_matrix, tree_util.where(forward, tree.right, tree.left),
                                        torch.where(forward, step_size, -step_size), 2**j, active, initial_energy,
                                        totals, checkpoints, generator)
            merge = active & ~sub.turning & ~totals.diverging
            tree = _merge(tree, sub, forward, merge, generator)
            depth = torch.where(active, j + 1, depth)
            active = merge & ~_is_turning(mass_matrix, tree.left.momentum, tree.right.momentum, tree.momentum_sum)

        chosen = tree.proposal
        new_state = HMCState(chosen.position, chosen.logdensity, chosen.logdensity_grad)
        info = NUTSInfo(
            acceptance_rate=totals.sum_accept / totals.num_steps.clamp_min(1).to(dtype),
            is_divergent=totals.diverging,
            energy=trajectory.hamiltonian(chosen, mass_matrix),
            num_integration_steps=totals.num_steps,
            num_grad_evals=totals.num_steps * integrator.num_grad_evals,
            tree_depth=depth,
            reached_max_tree_depth=active,
        )
        return new_state, info

    return kernel


def nuts(logdensity: LogDensity, step_size: float | Tensor, mass_matrix: MassMatrix, *, max_tree_depth: int = 10,
         divergence_threshold: float = proposal.DIVERGENCE_THRESHOLD,
         integrator: str | Integrator = "velocity_verlet") -> Algorithm:
    """NUTS with fixed step size and mass matrix, as an ``Algorithm``."""
    kernel = build_kernel(max_tree_depth, divergence_threshold, integrator=integrator)

    def step(state, batch, generator):
        return kernel(state, generator, logdensity, step_size, mass_matrix)

    return Algorithm(lambda position: init(position, logdensity), step)
