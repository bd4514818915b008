"""scikit-learn's 8x8 digits (bundled with scikit-learn, no download) for a CPU-scale convolutional DKM
experiment: the split and the reference's ZCA whitening. The experiment itself (training and evaluation) is
``examples/conv_dkm_digits.py``."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from probnets.validation import check_positive_float, check_positive_int


class ImageSplit(NamedTuple):
    """Images ``N x 1 x 8 x 8`` (ZCA-whitened) and integer labels ``N``."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def zca_whitening(train: Tensor, epsilon: float = 0.1):
    """ZCA whitening fitted on ``train`` (``N x C x H x W``), as in the reference: standardise every channel,
    multiply the flattened images by ``U (S + epsilon mean(S))^-1/2 U^T`` (``U S U^T`` the eigendecomposition of
    the pixel scatter matrix), then standardise every channel again.

    Returns:
        A function mapping images ``n x C x H x W`` to whitened images.
    """
    epsilon = check_positive_float(epsilon, "epsilon")
    mean = train.mean((0, 2, 3), keepdim=True)
    std = train.std((0, 2, 3), keepdim=True)
    flat = ((train - mean) / std).flatten(1)
    eigenvalues, eigenvectors = torch.linalg.eigh(flat.T @ flat)
    eigenvalues = eigenvalues.clamp_min(0)
    matrix = eigenvectors @ torch.diag((eigenvalues + epsilon * eigenvalues.mean()).rsqrt()) @ eigenvectors.T
    whitened = (flat @ matrix).reshape(train.shape)
    mean2 = whitened.mean((0, 2, 3), keepdim=True)
    std2 = whitened.std((0, 2, 3), keepdim=True)

    def transform(images: Tensor) -> Tensor:
        return (((images - mean) / std).flatten(1) @ matrix).reshape(images.shape).sub(mean2).div(std2)

    return transform


def digits_split(num_train: int = 1200, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> ImageSplit:
    """scikit-learn's digits (1797 images 8x8, 10 classes): a random ``num_train`` / rest split, whitened
    with :func:`zca_whitening` fitted on the training part (in float64, then cast to ``dtype``)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    num_train = check_positive_int(num_train, "num_train")
    if num_train >= len(data.target):
        raise ValueError(f"num_train must be below {len(data.target)}, got {num_train}")
    images = torch.as_tensor(data.images, dtype=torch.float64).unsqueeze(1)
    labels = torch.as_tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    train, test = order[:num_train], order[num_train:]
    whiten = zca_whitening(images[train])
    return ImageSplit(whiten(images[train]).to(dtype), labels[train], whiten(images[test]).to(dtype), labels[test])

