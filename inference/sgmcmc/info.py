"""The per-step info every SG-MCMC sampler reports, with ArviZ ``sample_stats`` names."""

from __future__ import annotations

from torch import Tensor


def step_info(logdensity: Tensor, step_size: float, diverging: Tensor) -> dict[str, Tensor]:
    """``lp`` (the log density at the new position, a minibatch estimate with minibatches), ``step_size`` and
    ``diverging`` (the step was rejected by the non-finite guard), each ``C``."""
    return {"lp": logdensity, "step_size": logdensity.new_full(logdensity.shape, step_size),
            "diverging": diverging}
