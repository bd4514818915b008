"""Neural processes: amortized regression models that map a context set to a predictive over target inputs.

* :class:`CNP`, the conditional neural process (Garnelo et al., 2018): a deterministic, mean-pooled encoding of
  the context and a Gaussian decoder per target point. Its loss on a :class:`~probnets.priors.TaskBatch` is the
  mean negative log-likelihood of all points of every task (context and targets, as in the NPF benchmark code),
  and its predictive is a :class:`~probnets.Predictive` with one closed-form normal per point.

The latent NP, attentive NP and martingale-posterior NPs of issue 4 build on this module (not yet written).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probnets.likelihoods import NormalMarginal
from probnets.predictive import Predictive
from probnets.validation import check_context_query, check_positive_int


def mlp(sizes: list[int]) -> nn.Sequential:
    """ReLU MLP through the given widths (no activation after the last layer)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CNP(nn.Module):
    """Conditional neural process.

    Args:
        dim: Input dimension ``d``.
        width: Hidden and representation width.
        encoder_layers, decoder_layers: Hidden layers of the encoder ``(x, y) -> r_i`` and the decoder
            ``(x, r) -> (mean, scale)``.
        min_scale: Lower bound of the predictive standard deviation (``min_scale + (1 - min_scale)
            softplus(.)``, the NPF convention).
    """

    def __init__(self, dim: int = 1, *, width: int = 128, encoder_layers: int = 3, decoder_layers: int = 3,
                 min_scale: float = 0.1):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        width = check_positive_int(width, "width")
        if not 0 <= min_scale < 1:
            raise ValueError(f"min_scale must lie in [0, 1), got {min_scale!r}")
        self.min_scale = float(min_scale)
        self.encoder = mlp([dim + 1] + [width] * check_positive_int(encoder_layers, "encoder_layers"))
        self.decoder = mlp([dim + width] + [width] * check_positive_int(decoder_layers, "decoder_layers") + [2])

    def represent(self, context_x: Tensor, context_y: Tensor) -> Tensor:
        """Mean-pooled context representation ``B x width`` (zeros for an empty context)."""
        r = self.encoder(torch.cat([context_x, context_y], -1))  # B x n x width
        return r.mean(1) if context_x.shape[1] else r.new_zeros(r.shape[0], r.shape[-1])

    def forward(self, context_x: Tensor, context_y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Predictive means and standard deviations ``B x m x 1`` at ``x`` (``B x m x d``) given a context
        (``B x n x d``, ``B x n x 1``)."""
        r = self.represent(context_x, context_y)
        out = self.decoder(torch.cat([x, r.unsqueeze(1).expand(-1, x.shape[1], -1)], -1))
        mean, raw_scale = out.chunk(2, -1)
        return mean, self.min_scale + (1 - self.min_scale) * F.softplus(raw_scale)

    def loss(self, batch) -> Tensor:
        """Mean negative log-likelihood of every point of every task given the task's context."""
        mean, scale = self(batch.context_x, batch.context_y, batch.x)
        return -torch.distributions.Normal(mean, scale).log_prob(batch.y).mean()

    @torch.no_grad()
    def predict(self, context_x: Tensor, context_y: Tensor, x: Tensor) -> Predictive:
        """Predictive at ``x`` (``m x d``) given a context (``n x d`` and ``n`` or ``n x 1``; ``n`` may be 0)."""
        context_x, context_y, x = check_context_query(context_x, context_y, x, self.dim,
                                                      next(self.parameters()).dtype)
        mean, scale = self(context_x[None], context_y[None], x[None])
        return Predictive(mean, NormalMarginal(), {"scale": scale})
