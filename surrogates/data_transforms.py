"""The input and outcome transforms every surrogate kind is fitted under."""

from __future__ import annotations

from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from torch import Tensor


def fitted_transforms(X: Tensor, Y: Tensor, bounds):
    """Fitted Normalize/Standardize transforms (in eval mode) and the transformed data."""
    input_tf = Normalize(X.shape[-1], bounds=bounds)
    input_tf.train()
    input_tf(X)  # learns the data range when bounds is None
    input_tf.eval()
    outcome_tf = Standardize(Y.shape[-1])
    Yn, _ = outcome_tf(Y)
    outcome_tf.eval()
    return input_tf, outcome_tf, input_tf(X), Yn
