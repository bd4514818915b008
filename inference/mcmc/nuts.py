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
    left: IntegratorState
    right: IntegratorState
    proposal: IntegratorState
    log_weight: Tensor
    momentum_sum: Tensor


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
        diverging = torch.zeros_like(active)
        depth = torch.zeros(num_chains, dtype=torch.long, device=device)
        num_steps = torch.zeros(num_chains, dtype=torch.long, device=device)
        sum_accept = torch.zeros(num_chains, dtype=dtype, device=device)
        p_ckpt = torch.zeros((max_tree_depth, num_chains, dim), dtype=dtype, device=device)
        p_sum_ckpt = torch.zeros_like(p_ckpt)

        for j in range(max_tree_depth):
            if not bool(active.any()):
                break
            forward = torch.rand(num_chains, generator=generator, device=device) < 0.5
            signed_step = torch.where(forward, step_size, -step_size)
            point = tree_util.where(forward, tree.right, tree.left)

            # Build a sub-tree of 2**j leaves from the chosen end, for the chains still active.
            building = active.clone()
            sub_turning = torch.zeros_like(active)
            sub_log_weight = torch.full((num_chains,), -torch.inf, dtype=dtype, device=device)
            sub_p_sum = torch.zeros_like(start.momentum)
            sub_proposal = point
            for leaf in range(2**j):
                point = one_step(point, signed_step)
                delta = proposal.energy_error(initial_energy, trajectory.hamiltonian(point, mass_matrix))
                divergent = building & proposal.is_divergent(delta, divergence_threshold)
                num_steps += building
                sum_accept += torch.where(building, proposal.acceptance_probability(delta), 0.0)

                # Uniform progressive multinomial sampling inside the sub-tree.
                leaf_log_weight = torch.where(torch.isfinite(delta), -delta, -torch.inf)
                new_log_weight = torch.logaddexp(sub_log_weight, leaf_log_weight)
                u = torch.rand(num_chains, generator=generator, dtype=dtype, device=device)
                take = building & (torch.log(u) < leaf_log_weight - new_log_weight)
                sub_proposal = tree_util.where(take, point, sub_proposal)
                sub_log_weight = torch.where(building, new_log_weight, sub_log_weight)
                sub_p_sum = torch.where(building[:, None], sub_p_sum + point.momentum, sub_p_sum)

                if leaf % 2 == 0:
                    slot = bin(leaf >> 1).count("1")
                    p_ckpt[slot] = point.momentum
                    p_sum_ckpt[slot] = sub_p_sum
                    turning = torch.zeros_like(active)
                else:
                    lo, hi = _checkpoint_range(leaf)
                    p_start = p_ckpt[lo : hi + 1]
                    rho = sub_p_sum - p_sum_ckpt[lo : hi + 1] + p_start
                    turning = _is_turning(mass_matrix, p_start, point.momentum.expand_as(p_start), rho).any(0)
                turning = building & turning
                sub_turning |= turning
                diverging |= divergent
                building &= ~(turning | divergent)
                if not bool(building.any()):
                    break

            # Merge valid sub-trees (biased progressive sampling at the top level).
            merge = active & ~sub_turning & ~diverging
            u = torch.rand(num_chains, generator=generator, dtype=dtype, device=device)
            take = merge & (torch.log(u) < sub_log_weight - tree.log_weight)
            new_left = tree_util.where(merge & ~forward, point, tree.left)
            new_right = tree_util.where(merge & forward, point, tree.right)
            tree = _Tree(
                new_left,
                new_right,
                tree_util.where(take, sub_proposal, tree.proposal),
                torch.where(merge, torch.logaddexp(tree.log_weight, sub_log_weight), tree.log_weight),
                torch.where(merge[:, None], tree.momentum_sum + sub_p_sum, tree.momentum_sum),
            )
            depth = torch.where(active, j + 1, depth)
            turned = _is_turning(mass_matrix, tree.left.momentum, tree.right.momentum, tree.momentum_sum)
            active = merge & ~turned

        chosen = tree.proposal
        new_state = HMCState(chosen.position, chosen.logdensity, chosen.logdensity_grad)
        info = NUTSInfo(
            acceptance_rate=sum_accept / num_steps.clamp_min(1).to(dtype),
            is_divergent=diverging,
            energy=trajectory.hamiltonian(chosen, mass_matrix),
            num_integration_steps=num_steps,
            num_grad_evals=num_steps * integrator.num_grad_evals,
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
