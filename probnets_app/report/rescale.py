"""Predictives of standardised regression fits mapped back to the targets' original units."""

from __future__ import annotations

import math

from probnets.likelihoods import Gaussian, NormalMarginal
from probnets.predictive import Predictive


def rescaled_predictive(pred: Predictive, shift: float, scale: float) -> Predictive:
    """The predictive of ``shift + scale * y`` for a Gaussian-likelihood predictive of ``y``.

    Exact for a Gaussian (or closed-form ``NormalMarginal``) likelihood: every mixture component
    ``N(f, sigma^2)`` becomes ``N(shift + scale f, (scale sigma)^2)``. Used to plot and report standardised fits in original units.

    Args:
        pred: Regression predictive with a :class:`~probnets.likelihoods.Gaussian` likelihood.
        shift, scale: The affine map back to original units (``scale > 0``).

    Raises:
        NotImplementedError: For other likelihoods.
    """
    lik = pred.likelihood
    if isinstance(lik, NormalMarginal) and math.isfinite(scale) and scale > 0 and math.isfinite(shift):
        return Predictive(shift + scale * pred.f, lik, {"scale": scale * pred.phi["scale"]}, pred.log_weights)
    if not isinstance(lik, Gaussian):
        raise NotImplementedError(f"rescaling is exact for Gaussian likelihoods only, got {type(lik).__name__}")
    if not (math.isfinite(scale) and scale > 0 and math.isfinite(shift)):
        raise ValueError(f"need a finite shift and a positive finite scale, got {shift!r} and {scale!r}")
    f = shift + scale * pred.f
    if lik.learned:
        phi = {Gaussian.PARAM: pred.phi[Gaussian.PARAM] + math.log(scale)}
        return Predictive(f, lik, phi, pred.log_weights)
    return Predictive(f, Gaussian(noise_scale=lik.noise_scale * scale), {}, pred.log_weights)


def in_original_units(pred: Predictive, shift: float, scale: float) -> Predictive:
    """``pred`` in original units where that is exact (Gaussian likelihood), else ``pred`` itself."""
    if (shift, scale) == (0.0, 1.0):
        return pred
    try:
        return rescaled_predictive(pred, shift, scale)
    except NotImplementedError:
        return pred
