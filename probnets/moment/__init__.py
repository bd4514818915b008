"""Moment propagation: Gaussian-weight networks whose output mean and variance are computed analytically
(MP-GELU, the exact GELU rule and the ReLU rules of deterministic variational inference)."""

from probnets.moment.functional import exact_gelu_moments, gelu_moments, linear_moments, relu_covariance, relu_moments
from probnets.moment.likelihood import (OutputMoments, draw_log_likelihood, expected_log_likelihood,
                                        gaussian_predictive, output_moments, predictive_moments)
from probnets.moment.network import ACTIVATIONS, COVARIANCES, MomentActivation, MomentLinear, MomentNetwork, Moments

__all__ = [
    "ACTIVATIONS", "COVARIANCES", "MomentActivation", "MomentLinear", "MomentNetwork", "Moments", "OutputMoments",
    "draw_log_likelihood", "exact_gelu_moments", "expected_log_likelihood", "gaussian_predictive", "gelu_moments",
    "linear_moments", "output_moments", "predictive_moments", "relu_covariance", "relu_moments",
]
