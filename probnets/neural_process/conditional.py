"""Conditional neural processes: a deterministic encoding of the context and one Gaussian per target point.

* :class:`CNP` (Garnelo et al., 2018): mean-pooled context representation.
* :class:`CANP`, the conditional attentive NP (the deterministic path of Kim et al., 2019): self-attention over
  the context and cross-attention from each target input.

The loss on a :class:`~probnets.priors.TaskBatch` is the mean negative log-likelihood of all points of every task
(context and targets, as in the NPF benchmark code).
"""

from __future__ import annotations

import torch
from torch import Tensor

from probnets.neural_process.base import NeuralProcess


class ConditionalNP(NeuralProcess):
    """A conditional NP over either path (arguments: :class:`~probnets.neural_process.NeuralProcess`)."""

    def forward(self, context_x: Tensor, context_y: Tensor, x: Tensor, *, num_samples: int | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Predictive means and standard deviations ``1 x B x m x 1`` (``num_samples`` and ``generator`` are
        accepted for a uniform interface; the model has no randomness)."""
        keys, values = self.path.encode(context_x, context_y)
        return self.decode(x, self.path.aggregate(keys, values, x)[None])

    def loss(self, batch, generator: torch.Generator | None = None) -> Tensor:
        """Mean negative log-likelihood of every point of every task given the task's context."""
        mean, scale = self(batch.context_x, batch.context_y, batch.x)
        return -torch.distributions.Normal(mean[0], scale[0]).log_prob(batch.y).mean()


class CNP(ConditionalNP):
    """Conditional neural process (mean pooling). Keyword arguments as :class:`NeuralProcess` except ``path``."""

    def __init__(self, dim: int = 1, **kwargs):
        super().__init__(dim, path="mean", **kwargs)


class CANP(ConditionalNP):
    """Conditional attentive neural process. Keyword arguments as :class:`NeuralProcess` except ``path``."""

    def __init__(self, dim: int = 1, **kwargs):
        super().__init__(dim, path="attention", **kwargs)
