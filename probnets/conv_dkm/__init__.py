"""Convolutional deep kernel machines (Milsom, Anson and Aitchison, ICLR 2024) on Gram triples.

Built from the fully connected DKM's parts (:mod:`probnets.dkm`: ``Grams``, ``ReluKernel``, ``GramLayer``,
``Output``, ``MinibatchDKM``) plus the convolutional layers here."""

from probnets.conv_dkm.layers import ConvF2G, ConvMixup, GramBatchNorm, Input, NystromGAP, sample_patches
from probnets.conv_dkm.model import ConvDKM, ResidualBlock

__all__ = ["ConvDKM", "ConvF2G", "ConvMixup", "GramBatchNorm", "Input", "NystromGAP", "ResidualBlock", "sample_patches"]
