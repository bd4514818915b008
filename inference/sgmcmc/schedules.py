"""Step-size schedules ``iteration -> step size``, counted from the first iteration (warm-up included).

A schedule also says which iterations are in its sampling phase (``is_sampling``); the runner keeps draws
only from those (``inference.runner.run``: after warm-up, the last state of every window of ``thin`` sampling
iterations is kept). Constant and decaying schedules sample at every iteration; the cyclical schedule only in
the last part of every cycle. Schedules are frozen dataclasses, so their ``repr`` identifies them in a
checkpoint's run configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from probnets.validation import check_positive_float, check_positive_int


@dataclass(frozen=True)
class Schedule:
    """Base class: ``schedule(iteration) -> step size``; every iteration is a sampling iteration."""

    def __call__(self, iteration: int) -> float:
        raise NotImplementedError

    def is_sampling(self, iteration: int) -> bool:
        return True


@dataclass(frozen=True)
class Constant(Schedule):
    """``step_size`` at every iteration."""

    step_size: float

    def __post_init__(self):
        check_positive_float(self.step_size, "step_size")

    def __call__(self, iteration: int) -> float:
        return self.step_size


@dataclass(frozen=True)
class PolynomialDecay(Schedule):
    """``step_size * (1 + t / steps)**(-power)`` at iteration ``t``: Welling and Teh's ``a (b + t)**(-power)``
    with ``b = steps``, normalised to start at ``step_size``; ``power`` in ``(0.5, 1]`` satisfies the
    Robbins-Monro conditions (the step decays to zero, so the bias vanishes asymptotically)."""

    step_size: float
    power: float = 0.55
    steps: float = 1000.0

    def __post_init__(self):
        check_positive_float(self.step_size, "step_size")
        check_positive_float(self.steps, "steps")
        if isinstance(self.power, bool) or not isinstance(self.power, (int, float)) or not 0 < self.power <= 1:
            raise ValueError(f"power must be in (0, 1], got {self.power!r}")

    def __call__(self, iteration: int) -> float:
        return self.step_size * (1 + iteration / self.steps) ** -self.power


@dataclass(frozen=True)
class CyclicalCosine(Schedule):
    """The cyclical cosine schedule of Zhang et al. (2020, "Cyclical stochastic gradient MCMC").

    At iteration ``t`` with ``r = (t mod cycle_length) / cycle_length`` the step size is
    ``step_size / 2 * (cos(pi * r) + 1)``: it restarts at ``step_size`` every ``cycle_length`` iterations and
    decays towards zero. Iterations with ``r < exploration`` form the exploration phase (large steps that move
    between modes; their states are not kept); the rest of the cycle is the sampling phase.

    Attributes:
        step_size: The initial (largest) step size of every cycle.
        cycle_length: Iterations per cycle (Zhang et al.'s ``ceil(K / M)``).
        exploration: Fraction ``beta`` of each cycle that explores, in ``[0, 1)``.
    """

    step_size: float
    cycle_length: int
    exploration: float = 0.8

    def __post_init__(self):
        check_positive_float(self.step_size, "step_size")
        check_positive_int(self.cycle_length, "cycle_length")
        if (isinstance(self.exploration, bool) or not isinstance(self.exploration, (int, float))
                or not 0 <= self.exploration < 1):
            raise ValueError(f"exploration must be in [0, 1), got {self.exploration!r}")
        if self.sampling_iterations == 0:
            raise ValueError(f"a cycle of cycle_length={self.cycle_length} with exploration={self.exploration} has "
                             "no sampling iteration; lengthen the cycle or lower exploration")

    @property
    def sampling_iterations(self) -> int:
        """Iterations per cycle in the sampling phase."""
        return sum(self.is_sampling(t) for t in range(self.cycle_length))

    def __call__(self, iteration: int) -> float:
        r = (iteration % self.cycle_length) / self.cycle_length
        return self.step_size / 2 * (math.cos(math.pi * r) + 1)

    def is_sampling(self, iteration: int) -> bool:
        return (iteration % self.cycle_length) / self.cycle_length >= self.exploration


def as_schedule(step_size: float | Schedule, name: str = "step_size") -> Schedule:
    """A ``Schedule`` as it is, a positive number as ``Constant``; otherwise an error naming ``name``."""
    if isinstance(step_size, Schedule):
        return step_size
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)):
        raise TypeError(f"{name} must be a positive number or an inference.sgmcmc.schedules.Schedule, "
                        f"got {type(step_size).__name__}")
    return Constant(check_positive_float(step_size, name))
