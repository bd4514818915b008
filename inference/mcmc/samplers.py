"""The HMC family as registered samplers: each kernel composed with its warm-up, built from user options.

Every builder has the registry's signature ``(logdensity, num_warmup, *, **options) -> Algorithm``; its
keyword-only parameters are the options ``inference.sample`` accepts for that method.
"""

from __future__ import annotations

import torch

from inference.base import Algorithm
from inference.mcmc import chees as chees_lib
from inference.mcmc import hmc as hmc_lib
from inference.mcmc import nuts as nuts_lib
from inference.mcmc.integrators import Integrator
from inference.mcmc.window_adaptation import window_adaptation
from probnets.model import LogDensity
from probnets.validation import check_positive_float, check_positive_int, check_probability


def nuts(logdensity: LogDensity, num_warmup: int, *, max_tree_depth: int = 10, target_accept: float = 0.8,
         dense_mass: bool = False, step_size: float = 0.1, integrator: str | Integrator = "velocity_verlet",
         compiled: bool = True) -> Algorithm:
    """Multinomial NUTS with Stan's windowed warm-up.

    Args:
        max_tree_depth: Trajectories stop after ``2**max_tree_depth`` integrator steps.
        target_accept: Target of the dual-averaging step-size adaptation.
        dense_mass: Adapt a dense mass matrix instead of a diagonal one.
        step_size: Initial step size (refined by a heuristic and dual averaging during warm-up; used as is
            when ``num_warmup=0``).
        integrator: ``"velocity_verlet"`` (leapfrog), ``"mclachlan"`` (two-stage minimal-norm, 2 gradients per
            step) or ``"yoshida"`` (4th order, 3 gradients), or an ``Integrator``; ``n_steps`` counts gradients.
        compiled: Run each transition as one compiled call when the model has a compiled gradient (fused
            BNN kernels) and the mass matrix is diagonal; ``False`` forces the torch kernel (the same
            algorithm and random numbers: transitions agree up to floating-point rounding).
    """
    if not isinstance(compiled, bool):
        raise TypeError(f"compiled must be a bool, got {compiled!r}")
    kernel = nuts_lib.build_kernel(max_tree_depth, integrator=integrator, compiled=compiled)
    return window_adaptation(kernel, logdensity, num_warmup,
                             dense=dense_mass, target_accept=check_probability(target_accept, "target_accept"),
                             initial_step_size=check_positive_float(step_size, "step_size"), integrator=integrator)


def hmc(logdensity: LogDensity, num_warmup: int, *, num_steps: int | None = None,
        trajectory_length: float | None = None, max_leapfrog_steps: int = 1000, target_accept: float = 0.8,
        dense_mass: bool = False, step_size: float = 0.1, integrator: str | Integrator = "velocity_verlet",
        jitter: float = 0.5) -> Algorithm:
    """Static HMC with Stan's windowed warm-up and a jittered number of steps.

    A fixed path length resonates with the posterior when it is close to a multiple of half a period of
    the dynamics in some direction (``x -> -x`` or back to ``x``): the chain then barely moves there.
    Drawing the path length at random each iteration removes the resonance (Mackenzie 1989; Neal 2011,
    section 5.4.2.2), so by default the number of steps of each iteration is drawn uniformly from the
    integers in ``[(1 - jitter) L, (1 + jitter) L]`` (at least 1; the same draw for all chains, so they
    advance in lockstep), which keeps the mean path length ``L``.

    Args:
        num_steps / trajectory_length: Integrator steps ``L``, or an integration time (``L =
            ceil(trajectory_length / step_size)`` capped at ``max_leapfrog_steps``); default 32 steps.
        target_accept, dense_mass, step_size, integrator: As for ``nuts``.
        jitter: Relative half-width of the uniform jitter of the number of steps, in ``[0, 1)``; ``0`` gives
            fixed trajectories.
    """
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter < 1:
        raise ValueError(f"jitter must be a number in [0, 1), got {jitter!r}")
    if num_steps is not None and trajectory_length is not None:
        raise ValueError("give num_steps or trajectory_length for HMC, not both")
    if num_steps is None and trajectory_length is None:
        num_steps = 32
    if num_steps is not None:
        num_steps = check_positive_int(num_steps, "num_steps")
    else:
        trajectory_length = check_positive_float(trajectory_length, "trajectory_length")
    max_leapfrog_steps = check_positive_int(max_leapfrog_steps, "max_leapfrog_steps")
    base = hmc_lib.build_kernel(integrator=integrator)

    def kernel(state, generator, logdensity, step_size, mass_matrix):
        steps = num_steps
        if steps is None:
            steps = torch.ceil(trajectory_length / step_size).clamp(1, max_leapfrog_steps).long()
        if jitter > 0:
            steps = hmc_lib.jitter_num_steps(steps, jitter, generator)
        return base(state, generator, logdensity, step_size, mass_matrix, steps)

    return window_adaptation(kernel, logdensity, num_warmup, dense=dense_mass,
                             target_accept=check_probability(target_accept, "target_accept"),
                             initial_step_size=check_positive_float(step_size, "step_size"), integrator=integrator)


def chees(logdensity: LogDensity, num_warmup: int, *, target_accept: float | None = None,
          max_leapfrog_steps: int = 1000, dense_mass: bool = False, step_size: float = 0.1,
          integrator: str | Integrator = "velocity_verlet") -> Algorithm:
    """ChEES-HMC (needs at least 2 chains).

    Args:
        target_accept: Target of the chains' mean acceptance probability (default 0.8).
        max_leapfrog_steps: Upper bound on integrator steps per iteration.
        dense_mass, step_size, integrator: As for ``nuts``.
    """
    if target_accept is not None:
        check_probability(target_accept, "target_accept")
    return chees_lib.chees(logdensity, num_warmup, target_accept=target_accept,
                           max_leapfrog_steps=max_leapfrog_steps, dense=dense_mass,
                           initial_step_size=check_positive_float(step_size, "step_size"), integrator=integrator)
