"""Kernels of infinitely wide networks (NNGP) as GPyTorch kernels, and the dual activations they share
with deep kernel machines."""

from probnets.kernels import dual_activations
from probnets.kernels.base import NetworkKernel
from probnets.kernels.conv_nngp import ConvNNGPKernel, conv_nngp_covariance
from probnets.kernels.nngp import ACTIVATIONS, NNGPCovariance, NNGPKernel, nngp_covariance

__all__ = [
    "ACTIVATIONS",
    "ConvNNGPKernel",
    "NNGPCovariance",
    "NNGPKernel",
    "NetworkKernel",
    "conv_nngp_covariance",
    "dual_activations",
    "nngp_covariance",
]
