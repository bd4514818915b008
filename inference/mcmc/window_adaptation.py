"""Stan's windowed warm-up for HMC-type kernels: dual-averaged step size and a (co)variance mass matrix.

The warm-up of ``num_warmup`` iterations has a fast initial buffer (step size only), a series of slow
windows of doubling length (positions accumulate into a Welford estimate; at the end of each window the
inverse mass matrix becomes the regularised (co)variance and the step size is re-initialised), and a fast
terminal buffer. After warm-up the step size is the dual-averaging average and everything is frozen.

The adapted algorithm's state carries the chain state and the adaptation state together, so that one
``step`` covers both warm-up and sampling and a checkpoint of the state resumes either bit-for-bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from inference.base import Algorithm
from inference.mcmc import dual_averaging, welford
from inference.mcmc import mass_matrix as mm
from inference.mcmc.hmc import HMCState
from inference.mcmc.hmc import init as hmc_init
from inference.mcmc.step_size import find_reasonable_step_size
from probnets.model import LogDensity

Kernel = Callable[..., tuple[HMCState, NamedTuple]]


class WindowSchedule(NamedTuple):
    """Per warm-up iteration: whether it feeds the mass-matrix estimate, and whether a window ends there."""

    slow: tuple[bool, ...]
    window_end: tuple[bool, ...]


def build_schedule(num_warmup: int, *, init_buffer: int = 75, term_buffer: int = 50, base_window: int = 25) -> WindowSchedule:
    """Stan's adaptation windows for ``num_warmup`` iterations (shrunk to 15%/75%/10% when short)."""
    slow = [False] * num_warmup
    end = [False] * num_warmup
    if num_warmup < 20:
        return WindowSchedule(tuple(slow), tuple(end))
    if init_buffer + base_window + term_buffer > num_warmup:
        init_buffer = int(0.15 * num_warmup)
        term_buffer = int(0.1 * num_warmup)
        base_window = num_warmup - init_buffer - term_buffer
    last_slow = num_warmup - term_buffer
    start, size = init_buffer, base_window
    while start < last_slow:
        stop = start + size
        if stop + 2 * size > last_slow:
            stop = last_slow
        for i in range(start, stop):
            slow[i] = True
        end[stop - 1] = True
        start, size = stop, 2 * size
    return WindowSchedule(tuple(slow), tuple(end))


class AdaptiveState(NamedTuple):
    """Chain state plus everything the warm-up adapts (per chain unless ``pool_chains``)."""

    chain: HMCState
    step_size: Tensor  # (C,)
    mass_matrix: mm.MassMatrix
    dual_averaging: dual_averaging.DualAveragingState
    welford: welford.WelfordState
    iteration: Tensor  # () int64


def window_adaptation(kernel: Kernel, logdensity: LogDensity, num_warmup: int, *, dense: bool = False,
                      target_accept: float = 0.8, initial_step_size: float = 0.1, pool_chains: bool = False,
                      initial_inverse_mass: Tensor | None = None) -> Algorithm:
    """Wrap ``kernel(state, generator, logdensity, step_size, mass_matrix) -> (state, info)`` with Stan's
    warm-up. The returned ``Algorithm``'s info is a dict of ArviZ-named sample statistics.

    Args:
        kernel: An HMC-type transition (e.g. ``nuts.build_kernel()``).
        num_warmup: Number of adaptation iterations (0 = no adaptation).
        dense: Adapt a dense instead of a diagonal mass matrix.
        target_accept: Target of the dual-averaging step-size adaptation.
        pool_chains: Estimate one mass matrix from all chains together (shared by every chain).
        initial_inverse_mass: Starting inverse mass matrix (default identity).
    """
    schedule = build_schedule(num_warmup)

    def init(position: Tensor) -> AdaptiveState:
        num_chains, dim = position.shape
        dtype, device = position.dtype, position.device
        chain = hmc_init(position, logdensity)
        shape = (dim,) if pool_chains else (num_chains, dim)
        if initial_inverse_mass is not None:
            inverse = initial_inverse_mass.to(dtype=dtype, device=device)
        else:
            inverse = torch.ones(shape, dtype=dtype, device=device)
            if dense:
                inverse = torch.diag_embed(inverse)
        metric = mm.dense(inverse) if dense else mm.diagonal(inverse)
        step_size = torch.full((num_chains,), initial_step_size, dtype=dtype, device=device)
        return AdaptiveState(chain, step_size, metric, dual_averaging.init(step_size),
                             welford.init(torch.Size(shape), dense=dense, dtype=dtype, device=device),
                             torch.zeros((), dtype=torch.long))

    def step(state: AdaptiveState, batch, generator) -> tuple[AdaptiveState, dict[str, Tensor]]:
        i = int(state.iteration)
        step_size, da, metric, estimate = state.step_size, state.dual_averaging, state.mass_matrix, state.welford
        if i == 0 and num_warmup > 0:
            step_size = find_reasonable_step_size(state.chain, logdensity, metric, step_size, generator)
            da = dual_averaging.init(step_size)
        chain, info = kernel(state.chain, generator, logdensity, step_size, metric)
        stats = _sample_stats(chain, info, step_size)
        if i < num_warmup:
            da = dual_averaging.update(da, info.acceptance_rate, target=target_accept)
            step_size = da.log_step_size.exp()
            if schedule.slow[i]:
                estimate = (welford.update_many(estimate, chain.position) if pool_chains
                            else welford.update(estimate, chain.position))
            if schedule.window_end[i]:
                inverse = welford.regularized_covariance(estimate)
                metric = mm.dense(inverse) if dense else mm.diagonal(inverse)
                estimate = welford.init(estimate.mean.shape, dense=dense, dtype=inverse.dtype, device=inverse.device)
                step_size = find_reasonable_step_size(chain, logdensity, metric, step_size, generator)
                da = dual_averaging.init(step_size)
            if i == num_warmup - 1:
                step_size = da.log_step_size_avg.exp()
        new_state = AdaptiveState(chain, step_size, metric, da, estimate, state.iteration + 1)
        return new_state, stats

    return Algorithm(init, step)


def _sample_stats(chain: HMCState, info: NamedTuple, step_size: Tensor) -> dict[str, Tensor]:
    """ArviZ-named statistics of one transition (per chain)."""
    stats = {
        "lp": chain.logdensity,
        "acceptance_rate": info.acceptance_rate,
        "step_size": step_size.expand_as(chain.logdensity),
        "n_steps": info.num_grad_evals,
        "diverging": info.is_divergent,
        "energy": info.energy,
    }
    if hasattr(info, "tree_depth"):
        stats["tree_depth"] = info.tree_depth
        stats["reached_max_tree_depth"] = info.reached_max_tree_depth
    return stats
