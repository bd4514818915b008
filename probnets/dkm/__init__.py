"""Deep kernel machines (Yang et al., ICML 2023): Gram-matrix layers, Gram-form kernels, full-rank and sparse
fully connected models, fitted by ``inference.fit``. The convolutional DKM (:mod:`probnets.conv_dkm`) is built from
the same parts."""

from probnets.dkm.grams import Grams, check_grams, check_nu, kl_gram, kl_gram_factor, sum_grams
from probnets.dkm.kernels import GramKernel, ReluKernel, SquaredExponentialKernel, make_kernel
from probnets.dkm.layers import FeatureToGram, GramLayer, Output
from probnets.dkm.model import DKMObjective, FullRankDKM, MinibatchDKM, SparseDKM

__all__ = [
    "DKMObjective", "FeatureToGram", "FullRankDKM", "GramKernel", "GramLayer", "Grams", "MinibatchDKM", "Output",
    "ReluKernel", "SparseDKM", "SquaredExponentialKernel", "check_grams", "check_nu", "kl_gram", "kl_gram_factor",
    "make_kernel", "sum_grams",
]
