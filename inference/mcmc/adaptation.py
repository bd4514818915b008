"""Warm-up adaptation of the step size and the mass matrix on Stan's window schedule.

The parts that Stan's window adaptation and ChEES share: a warm-up of ``num_warmup`` iterations has a fast
initial buffer (step size only), a series of slow windows of doubling length (positions accumulate into a
Welford estimate; at the end of each window the inverse mass matrix becomes the regularised (co)variance,
the estimate starts afresh and the step size is re-initialised by a heuristic, restarting dual averaging),
and a fast terminal buffer. After warm-up the step size is the dual-averaging average.

An algorithm composes them per iteration as: ``restart_step_size`` before the first transition, then after
each warm-up transition ``update_step_size``, ``update_mass_matrix`` and, after the last, ``finalize``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from inference.mcmc import dual_averaging, welford
from inference.mcmc import mass_matrix as mm


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


class AdaptationState(NamedTuple):
    """The adapted step size and metric, and the estimates they come from.

    The step size is ``C`` (per chain) or ``()`` (shared). The mass matrix and its Welford estimate are per
    chain (``C x D``, or ``C x D x D`` dense) or pooled over chains (``D``, or ``D x D``).
    """

    step_size: Tensor
    mass_matrix: mm.MassMatrix
    dual_averaging: dual_averaging.DualAveragingState
    welford: welford.WelfordState


#: ``heuristic(chain_state, mass_matrix, step_size, generator) -> step_size``: a new starting step size.
StepSizeHeuristic = Callable[[Any, mm.MassMatrix, Tensor, torch.Generator], Tensor]


def init(step_size: Tensor, shape: tuple[int, ...], *, dense: bool,
         inverse_mass: Tensor | None = None) -> AdaptationState:
    """Adaptation state at the start of warm-up.

    Args:
        step_size: Initial step size, ``C`` or ``()``; sets the dtype and device.
        shape: Shape of the mass-matrix estimate: ``D`` pooled over chains or ``C x D`` per chain.
        dense: Adapt dense metrics instead of diagonal ones.
        inverse_mass: Starting inverse mass matrix, ``shape`` (or ``shape x D`` dense); default identity.
    """
    dtype, device = step_size.dtype, step_size.device
    if inverse_mass is None:
        inverse_mass = torch.ones(shape, dtype=dtype, device=device)
        if dense:
            inverse_mass = torch.diag_embed(inverse_mass)
    return AdaptationState(step_size, _metric(inverse_mass, dense), dual_averaging.init(step_size),
                           welford.init(torch.Size(shape), dense=dense, dtype=dtype, device=device))


def restart_step_size(state: AdaptationState, chain, generator: torch.Generator | None,
                      heuristic: StepSizeHeuristic) -> AdaptationState:
    """Re-run the step-size heuristic from the current step size under the current metric and restart
    dual averaging there."""
    step_size = heuristic(chain, state.mass_matrix, state.step_size, generator)
    return state._replace(step_size=step_size, dual_averaging=dual_averaging.init(step_size))


def update_step_size(state: AdaptationState, acceptance: Tensor, *, target: float) -> AdaptationState:
    """One dual-averaging step towards ``target`` from the acceptance statistic (shaped like the step size)."""
    da = dual_averaging.update(state.dual_averaging, acceptance, target=target)
    return state._replace(step_size=da.log_step_size.exp(), dual_averaging=da)


def update_mass_matrix(state: AdaptationState, schedule: WindowSchedule, iteration: int, chain,
                       generator: torch.Generator | None, heuristic: StepSizeHeuristic) -> AdaptationState:
    """Feed the chains' positions ``C x D`` into the estimate in a slow window; at a window's end adopt the
    regularised (co)variance as the inverse mass matrix, start a fresh estimate and restart the step size."""
    estimate = state.welford
    if schedule.slow[iteration]:
        pooled = estimate.mean.dim() < chain.position.dim()
        estimate = (welford.update_many(estimate, chain.position) if pooled
                    else welford.update(estimate, chain.position))
    if not schedule.window_end[iteration]:
        return state._replace(welford=estimate)
    dense = state.mass_matrix.dense
    inverse = welford.regularized_covariance(estimate)
    fresh = welford.init(estimate.mean.shape, dense=dense, dtype=inverse.dtype, device=inverse.device)
    state = state._replace(mass_matrix=_metric(inverse, dense), welford=fresh)
    return restart_step_size(state, chain, generator, heuristic)


def finalize(state: AdaptationState) -> AdaptationState:
    """The end of warm-up: the step size becomes the dual-averaging average."""
    return state._replace(step_size=state.dual_averaging.log_step_size_avg.exp())


def _metric(inverse: Tensor, dense: bool) -> mm.MassMatrix:
    return mm.dense(inverse) if dense else mm.diagonal(inverse)
