"""What every neural process shares: a Gaussian decoder per target point, the mixture predictive over draws,
and per-task context and target log-likelihoods."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probnets.conditioned import ContextConditioned
from probnets.likelihoods import NormalMarginal
from probnets.neural_process.parts import AttentivePath, MeanPoolPath, mlp
from probnets.predictive import Predictive
from probnets.validation import check_context_query, check_positive_int


class NeuralProcess(nn.Module, ContextConditioned):
    """Base class: a deterministic path (``"mean"``: the CNP's mean pooling; ``"attention"``: the attentive NP's
    self- and cross-attention), a decoder ``(x, features) -> (mean, scale)``, and the predictive.

    Subclasses implement ``forward(context_x, context_y, x, *, num_samples=None, generator=None)``, returning
    predictive means and standard deviations ``S x B x m x 1`` (``S`` draws of the model's randomness; ``S = 1``
    for conditional models) for contexts ``B x n x d``, ``B x n x 1`` and targets ``B x m x d``, and
    ``loss(batch, generator=None)``, minimised by :func:`~inference.amortized.train_amortized`.

    A trained model predicts given a context: ``model.predict(context_x, context_y, x)``, or, in the vocabulary
    of every conditioned model (:class:`~probnets.conditioned.ContextConditioned`),
    ``inference.fit(model, (context_x, context_y)).predict(x)``, which conditions without gradient steps.

    Args:
        dim: Input dimension ``d``.
        path: ``"mean"`` or ``"attention"``.
        width: Hidden and representation width.
        encoder_layers, decoder_layers: Hidden layers of the encoders and of the decoder.
        num_heads: Attention heads (attentive path and pseudo-context generator).
        feature_width: Decoder input features beyond the path's ``width`` (a latent variable's width).
        min_scale: Lower bound of the predictive standard deviation, ``min_scale + (1 - min_scale) softplus(.)``
            (the NPF convention).
    """

    num_predictive_samples = 1

    def __init__(self, dim: int = 1, *, path: str = "mean", width: int = 128, encoder_layers: int = 3,
                 decoder_layers: int = 3, num_heads: int = 4, feature_width: int = 0, min_scale: float = 0.1):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.width = check_positive_int(width, "width")
        self.encoder_layers = check_positive_int(encoder_layers, "encoder_layers")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if not 0 <= min_scale < 1:
            raise ValueError(f"min_scale must lie in [0, 1), got {min_scale!r}")
        self.min_scale = float(min_scale)
        if path == "mean":
            self.path = MeanPoolPath(dim, width, self.encoder_layers)
        elif path == "attention":
            self.path = AttentivePath(dim, width, self.encoder_layers, self.num_heads)
        else:
            raise ValueError(f"path must be 'mean' or 'attention', got {path!r}")
        self.decoder = mlp([dim + width + feature_width]
                           + [width] * check_positive_int(decoder_layers, "decoder_layers") + [2])

    def decode(self, x: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        """Means and standard deviations ``... x B x m x 1`` from targets ``B x m x d`` and features
        ``... x B x m x f``."""
        out = self.decoder(torch.cat([x.expand(features.shape[:-1] + x.shape[-1:]), features], -1))
        mean, raw_scale = out.chunk(2, -1)
        return mean, self.min_scale + (1 - self.min_scale) * F.softplus(raw_scale)

    def log_likelihood(self, batch, *, num_samples: int | None = None,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Per-task context and target log-likelihoods, each ``B``: the mean over the task's points of the log
        predictive density (for models with ``S > 1`` draws, of the mixture ``(1/S) sum_s N(y | mu_s, s_s^2)``,
        the same per-point predictive :meth:`predict` returns). The context value is NaN for an empty context."""
        mean, scale = self(batch.context_x, batch.context_y, batch.x, num_samples=num_samples, generator=generator)
        log_p = torch.distributions.Normal(mean, scale).log_prob(batch.y)  # S x B x N x 1
        log_p = (torch.logsumexp(log_p, 0) - math.log(log_p.shape[0]))[..., 0]
        n = batch.num_context
        return log_p[:, :n].mean(1), log_p[:, n:].mean(1)

    @property
    def input_dim(self) -> int:
        return self.dim

    @property
    def context_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @torch.no_grad()
    def _predict(self, context_x: Tensor, context_y: Tensor, x: Tensor, *, num_samples: int | None = None,
                 generator: torch.Generator | None = None) -> Predictive:
        """Predictive at ``x`` (``m x d``) given a context (``n x d`` and ``n`` or ``n x 1``; ``n`` may be 0): a
        :class:`~probnets.Predictive` mixing ``S`` normals per point (``S = num_samples``, by default the model's
        ``num_predictive_samples``; 1 for conditional models)."""
        context_x, context_y, x = check_context_query(context_x, context_y, x, self.dim,
                                                      next(self.parameters()).dtype)
        if num_samples is not None:
            check_positive_int(num_samples, "num_samples")
        mean, scale = self(context_x[None], context_y[None], x[None], num_samples=num_samples, generator=generator)
        return Predictive(mean[:, 0], NormalMarginal(), {"scale": scale[:, 0]})
