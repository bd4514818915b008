"""The No-U-Turn Sampler: multinomial, iterative, all chains advanced in lockstep.

Each chain builds its own trajectory by repeated doubling (Hoffman & Gelman 2014; Betancourt 2017 for
multinomial sampling and the generalised U-turn criterion). Every doubling of depth ``j`` runs ``2**j``
leapfrog steps for all chains at once; a chain whose trajectory has terminated is held fixed (masked)
while the others continue, so one gradient call serves every chain. Sub-trajectory U-turn checks use
``O(max_tree_depth)`` momentum checkpoints instead of recursion (as in NumPyro's iterative NUTS).

A transition draws all its random numbers up front (momenta, then ``draw_uniforms``). When the log density
has a compiled gradient (``LogDensity.compiled_gradient``: the fused BNN kernels) and the mass matrix is
diagonal, the whole transition runs in one numba call instead (``nuts_compiled``; each chain stops at its own
U-turn there), with the same random numbers and the same result up to floating-point rounding.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from inference.base import Algorithm
from inference.mcmc import integrators, proposal, trajectory, tree_util
from inference.mcmc.hmc import HMCState, init
from inference.mcmc.integrators import Integrator, IntegratorState
from inference.mcmc.mass_matrix import MassMatrix
from probnets.log_density import CompiledGradient, LogDensity


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


#: A doubling extends the trajectory forwards when the log of its uniform is below this.
LOG_HALF = math.log(0.5)


def draw_uniforms(num_chains: int, max_tree_depth: int, generator, dtype: torch.dtype, device) -> Tensor:
    """All the uniforms one transition may use, as logs ``C x (2 max_tree_depth + 2**max_tree_depth - 1)``:
    the direction of each doubling, the merge of each doubling, then one per leaf in trajectory order.

    Drawn in one call, so that the torch and the compiled kernel consume the same random numbers and a leaf
    costs no random-number call of its own.
    """
    size = 2 * max_tree_depth + 2**max_tree_depth - 1
    return torch.rand((num_chains, size), generator=generator, dtype=dtype, device=device).log_()


def _is_turning(mass_matrix: MassMatrix, p_left: Tensor, p_right: Tensor, p_sum: Tensor) -> Tensor:
    """Generalised no-U-turn criterion on a sub-trajectory with end momenta and momentum sum ``(..., C, D)``."""
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
    """Per-chain totals over every leaf built, rejected sub-trees included (updated in place)."""

    num_steps: Tensor
    sum_accept: Tensor
    diverging: Tensor


class _Checkpoints(NamedTuple):
    """Momenta and momentum sums ``max_tree_depth x C x D`` at the starts of the open sub-trees."""

    momentum: Tensor
    momentum_sum: Tensor


def _subtree_turning(checkpoints: _Checkpoints, leaf: int, momentum: Tensor, momentum_sum: Tensor,
                     mass_matrix: MassMatrix) -> Tensor:
    """At an odd ``leaf``, whether any sub-tree ending there makes a U-turn ``C``."""
    lo, hi = _checkpoint_range(leaf)
    p_start = checkpoints.momentum[lo : hi + 1]
    rho = momentum_sum - checkpoints.momentum_sum[lo : hi + 1] + p_start
    return _is_turning(mass_matrix, p_start, momentum, rho).any(0)


def _merge(tree: _Tree, sub: _SubTree, forward: Tensor, merge: Tensor, log_u: Tensor) -> _Tree:
    """Append the sub-tree on the side it was built for the chains that ``merge`` (biased progressive
    sampling of the proposal with the log-uniforms ``log_u`` ``C``)."""
    take = merge & (log_u < sub.log_weight - tree.log_weight)
    return _Tree(
        tree_util.where(merge & ~forward, sub.end, tree.left),
        tree_util.where(merge & forward, sub.end, tree.right),
        tree_util.where(take, sub.proposal, tree.proposal),
        torch.where(merge, torch.logaddexp(tree.log_weight, sub.log_weight), tree.log_weight),
        torch.where(merge[:, None], tree.momentum_sum + sub.momentum_sum, tree.momentum_sum),
    )


def build_kernel(max_tree_depth: int = 10, divergence_threshold: float = proposal.DIVERGENCE_THRESHOLD, *,
                 integrator: str | Integrator = "velocity_verlet", compiled: bool = True):
    """Returns ``kernel(state, generator, logdensity, step_size, mass_matrix) -> (state, NUTSInfo)``.

    Args:
        max_tree_depth: Maximum number of trajectory doublings (at most ``2**max_tree_depth`` steps).
        divergence_threshold: Energy error above which a leaf counts as divergent.
        integrator: An ``Integrator`` or the name of one in ``integrators.INTEGRATORS``.
        compiled: Run the whole transition in one compiled call (``nuts_compiled``) when the log density
            has a ``compiled_gradient``, the tensors are on the CPU and the mass matrix is diagonal. Both
            kernels use the same random numbers; they agree up to floating-point rounding.
    """
    if not (isinstance(max_tree_depth, int) and 1 <= max_tree_depth <= 16):
        raise ValueError(f"max_tree_depth must be an integer in [1, 16], got {max_tree_depth!r}")
    integrator = integrators.resolve(integrator)
    threshold = float(divergence_threshold)

    def build_subtree(one_step, mass_matrix: MassMatrix, point: IntegratorState, signed_step: Tensor,
                      depth: int, active: Tensor, initial_energy: Tensor, totals: _Totals,
                      checkpoints: _Checkpoints, log_u: Tensor) -> _SubTree:
        """``2**depth`` steps from ``point`` for the ``active`` chains, each stopping at a U-turn or a
        divergence; ``totals`` are updated in place."""
        building = active.clone()
        building_column = building.unsqueeze(-1)
        turning_any = torch.zeros_like(active)
        log_weight = torch.full(active.shape, -torch.inf, dtype=point.position.dtype, device=active.device)
        momentum_sum = torch.zeros_like(point.momentum)
        sampled = point
        first_leaf = 2 * max_tree_depth + 2**depth - 1
        for leaf in range(2**depth):
            point = one_step(point, signed_step)
            delta = proposal.energy_error(initial_energy, trajectory.hamiltonian(point, mass_matrix))
            divergent = proposal.is_divergent(delta, threshold).logical_and_(building)
            totals.num_steps.add_(building)
            totals.sum_accept.add_(torch.where(building, proposal.acceptance_probability(delta), 0.0))
            # a leaf of infinite energy error has zero weight
            leaf_log_weight = delta.neg().nan_to_num_(-torch.inf, -torch.inf, -torch.inf)
            new_log_weight = torch.logaddexp(log_weight, leaf_log_weight)
            take = (log_u[:, first_leaf + leaf] < leaf_log_weight - new_log_weight).logical_and_(building)
            sampled = tree_util.where(take, point, sampled)
            log_weight = torch.where(building, new_log_weight, log_weight)
            momentum_sum.add_(torch.where(building_column, point.momentum, 0.0))
            if leaf % 2 == 0:
                slot = bin(leaf >> 1).count("1")
                checkpoints.momentum[slot] = point.momentum
                checkpoints.momentum_sum[slot] = momentum_sum
                stop = divergent
            else:
                turning = _subtree_turning(checkpoints, leaf, point.momentum, momentum_sum,
                                           mass_matrix).logical_and_(building)
                turning_any.logical_or_(turning)
                stop = turning.logical_or_(divergent)
            totals.diverging.logical_or_(divergent)
            building.logical_and_(stop.logical_not_())
            if not bool(building.any()):
                break
        return _SubTree(point, sampled, log_weight, momentum_sum, turning_any)

    def torch_kernel(start: IntegratorState, initial_energy: Tensor, log_u: Tensor, logdensity: LogDensity,
                     step_size: Tensor, mass_matrix: MassMatrix) -> tuple[HMCState, NUTSInfo]:
        num_chains, dim = start.position.shape
        dtype, device = start.position.dtype, start.position.device
        one_step = integrator(logdensity, mass_matrix)
        tree = _Tree(start, start, start, torch.zeros(num_chains, dtype=dtype, device=device), start.momentum)
        active = torch.ones(num_chains, dtype=torch.bool, device=device)
        depth = torch.zeros(num_chains, dtype=torch.long, device=device)
        totals = _Totals(torch.zeros(num_chains, dtype=torch.long, device=device),
                         torch.zeros(num_chains, dtype=dtype, device=device), torch.zeros_like(active))
        checkpoints = _Checkpoints(torch.zeros((max_tree_depth, num_chains, dim), dtype=dtype, device=device),
                                   torch.zeros((max_tree_depth, num_chains, dim), dtype=dtype, device=device))
        forwards = log_u[:, :max_tree_depth] < LOG_HALF
        for j in range(max_tree_depth):
            if not bool(active.any()):
                break
            forward = forwards[:, j]
            sub = build_subtree(one_step, mass_matrix, tree_util.where(forward, tree.right, tree.left),
                                torch.where(forward, step_size, -step_size), j, active, initial_energy,
                                totals, checkpoints, log_u)
            merge = active & ~sub.turning & ~totals.diverging
            tree = _merge(tree, sub, forward, merge, log_u[:, max_tree_depth + j])
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

    def compiled_kernel(gradient: CompiledGradient, start: IntegratorState, log_u: Tensor, logdensity: LogDensity,
                        step_size: Tensor, mass_matrix: MassMatrix) -> tuple[HMCState, NUTSInfo]:
        from inference.mcmc import nuts_compiled

        position = start.position
        num_chains, dim = position.shape
        dtype = position.dtype

        def array(x: Tensor, shape=None):
            x = x.detach().to(dtype)
            return (x if shape is None else x.expand(shape)).contiguous().numpy()

        out = [torch.empty((num_chains, dim), dtype=dtype), torch.empty(num_chains, dtype=dtype),
               torch.empty((num_chains, dim), dtype=dtype), torch.empty((num_chains, dim), dtype=dtype)]
        stats = torch.empty((num_chains, 6), dtype=torch.float64)
        nuts_compiled.transition(
            gradient.kernel, gradient.args, array(position), array(start.logdensity), array(start.logdensity_grad),
            array(start.momentum), array(mass_matrix.inverse, (num_chains, dim)), array(step_size), array(log_u),
            np.asarray(integrator.coefficients, dtype=np.float64), max_tree_depth, threshold,
            *(t.numpy() for t in out), stats.numpy())
        new_position, new_logdensity, new_grad, new_momentum = out
        num_steps = stats[:, 2].long()
        logdensity.count_grad_evals(int(num_steps.sum()) * integrator.num_grad_evals)
        info = NUTSInfo(
            acceptance_rate=(stats[:, 0] / num_steps.clamp_min(1)).to(dtype),
            is_divergent=stats[:, 1] > 0,
            energy=stats[:, 5].to(dtype),
            num_integration_steps=num_steps,
            num_grad_evals=num_steps * integrator.num_grad_evals,
            tree_depth=stats[:, 3].long(),
            reached_max_tree_depth=stats[:, 4] > 0,
        )
        return HMCState(new_position, new_logdensity, new_grad), info

    def kernel(state: HMCState, generator, logdensity: LogDensity, step_size: Tensor,
               mass_matrix: MassMatrix) -> tuple[HMCState, NUTSInfo]:
        position = state.position
        num_chains = position.shape[0]
        step_size = torch.as_tensor(step_size, dtype=position.dtype, device=position.device).expand(num_chains)
        start, initial_energy = trajectory.start(state, mass_matrix, generator)
        log_u = draw_uniforms(num_chains, max_tree_depth, generator, position.dtype, position.device)
        gradient = None
        if compiled and not mass_matrix.dense and position.device.type == "cpu":
            gradient = logdensity.compiled_gradient(position.dtype)
        if gradient is not None:
            return compiled_kernel(gradient, start, log_u, logdensity, step_size, mass_matrix)
        return torch_kernel(start, initial_energy, log_u, logdensity, step_size, mass_matrix)

    return kernel


def nuts(logdensity: LogDensity, step_size: float | Tensor, mass_matrix: MassMatrix, *, max_tree_depth: int = 10,
         divergence_threshold: float = proposal.DIVERGENCE_THRESHOLD,
         integrator: str | Integrator = "velocity_verlet") -> Algorithm:
    """NUTS with fixed step size and mass matrix, as an ``Algorithm``."""
    kernel = build_kernel(max_tree_depth, divergence_threshold, integrator=integrator)

    def step(state, batch, generator):
        return kernel(state, generator, logdensity, step_size, mass_matrix)

    return Algorithm(lambda position: init(position, logdensity), step)
