"""Energy bookkeeping and the Metropolis correction shared by every HMC-type kernel."""

from __future__ import annotations

import torch
from torch import Tensor

#: Energy error above which a transition counts as divergent (Stan, NumPyro and Pyro all use 1000).
DIVERGENCE_THRESHOLD = 1000.0


def energy_error(initial_energy: Tensor, new_energy: Tensor) -> Tensor:
    """``H_new - H_initial`` with NaN mapped to ``+inf``: a NaN energy is a divergence, never an exception."""
    return (new_energy - initial_energy).nan_to_num_(torch.inf, torch.inf, -torch.inf)


def is_divergent(delta_energy: Tensor, threshold: float = DIVERGENCE_THRESHOLD) -> Tensor:
    return delta_energy > threshold


def acceptance_probability(delta_energy: Tensor) -> Tensor:
    """``min(1, exp(-dH))`` per chain."""
    return torch.exp(-delta_energy.clamp_min(0.0))


def metropolis_accept(delta_energy: Tensor, generator: torch.Generator | None) -> Tensor:
    """Accept with probability ``min(1, exp(-dH))``; divergent/NaN proposals are always rejected."""
    u = torch.rand(delta_energy.shape, generator=generator, dtype=delta_energy.dtype, device=delta_energy.device)
    return (torch.log(u) < -delta_energy) & torch.isfinite(delta_energy)
