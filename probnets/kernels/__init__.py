"""Kernels of infinitely wide networks (NNGP) as GPyTorch kernels, and the dual activations they share
with deep kernel machines."""

from probnets.kernels import dual_activations

__all__ = ["dual_activations"]
