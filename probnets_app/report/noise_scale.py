"""The learned Gaussian noise scale in reports: identifiable, part of every predictive interval, so it is
both checked for convergence with ``f(x_test)`` and listed first in the parameter summary."""

from __future__ import annotations

from torch import Tensor

from inference.posterior import SamplePosterior
from probnets.likelihoods import Gaussian
from probnets.model import ProbModel

NOISE_NAME = "noise_scale"


def noise_scale_draws(model: ProbModel, posterior: SamplePosterior, y_scale: float) -> Tensor | None:
    """Draws ``C x S`` of the Gaussian noise scale in original units, or ``None`` if the model learns none.

    Args:
        model: The sampled model.
        posterior: Its posterior draws.
        y_scale: Standard deviation of the targets (the noise scale is learned on standardised targets).
    """
    lik = model.likelihood
    if not (isinstance(lik, Gaussian) and lik.learned):
        return None
    return posterior.samples[..., model.spec.slice(Gaussian.PARAM)][..., 0].exp() * y_scale
