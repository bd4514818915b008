"""Convolutional deep kernel machines (Milsom, Anson and Aitchison, ICLR 2024) on Gram triples."""

from probnets.conv_dkm.layers import (
    ConvF2G,
    ConvMixup,
    GramBatchNorm,
    Grams,
    Input,
    NystromGAP,
    ReluKernel,
    sample_patches,
)
from probnets.conv_dkm.model import ConvDKM, ConvGramLayer, Output, ResidualBlock, fit, kl_gram

__all__ = [
    "ConvDKM", "ConvF2G", "ConvGramLayer", "ConvMixup", "GramBatchNorm", "Grams", "Input", "NystromGAP", "Output",
    "ReluKernel", "ResidualBlock", "fit", "kl_gram", "sample_patches",
]
