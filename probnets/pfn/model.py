"""Prior-data fitted network (Mueller et al., ICLR 2022): a transformer that maps a training set and query inputs
to a bar-distribution predictive of the query outputs, trained on tasks drawn from a prior.

Attention rule: training tokens attend to all training tokens; each query attends to the training tokens and to
itself, never to another query, so queries are predicted independently and a batch of queries costs no more than
their number. There is no positional encoding, so the predictive is invariant to the order of the training set.
Each block is post-layer-norm (attention, then a GELU feed-forward layer), and its attention output projection and
second feed-forward linear start at zero, so every block starts as the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probnets.conditioned import ContextConditioned
from probnets.pfn.bar_distribution import BarDistribution, BarMarginal
from probnets.predictive import Predictive
from probnets.validation import check_context_query, check_positive_int


class PFNAttention(nn.Module):
    """Multi-head attention under the PFN rule; one set of projections for training tokens and queries."""

    def __init__(self, emsize: int, num_heads: int):
        super().__init__()
        if emsize % num_heads:
            raise ValueError(f"emsize ({emsize}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.qkv = nn.Linear(emsize, 3 * emsize)
        self.out = nn.Linear(emsize, emsize)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _split(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``B x T x E`` -> query, key, value, each ``B x H x T x E/H``."""
        batch, tokens, width = h.shape
        q, k, v = self.qkv(h).chunk(3, -1)
        return tuple(t.reshape(batch, tokens, self.num_heads, width // self.num_heads).transpose(1, 2)
                     for t in (q, k, v))

    def _merge(self, h: Tensor) -> Tensor:
        batch, heads, tokens, width = h.shape
        return self.out(h.transpose(1, 2).reshape(batch, tokens, heads * width))

    def forward(self, train: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
        """``train``: ``B x n x E`` (``n`` may be 0), ``query``: ``B x M x E`` -> attention outputs of both."""
        qt, kt, vt = self._split(train)
        qq, kq, vq = self._split(query)
        scale = 1 / math.sqrt(qq.shape[-1])
        train_out = F.scaled_dot_product_attention(qt, kt, vt) if train.shape[1] else qt
        scores_train = qq @ kt.transpose(-1, -2) * scale  # B x H x M x n
        score_self = (qq * kq).sum(-1, keepdim=True) * scale  # B x H x M x 1
        weights = torch.softmax(torch.cat([scores_train, score_self], -1), -1)
        query_out = weights[..., :-1] @ vt + weights[..., -1:] * vq
        return self._merge(train_out), self._merge(query_out)


class PFNLayer(nn.Module):
    """Post-LN transformer block under the PFN attention rule."""

    def __init__(self, emsize: int, num_heads: int, hidden: int, dropout: float):
        super().__init__()
        self.attention = PFNAttention(emsize, num_heads)
        self.norm1 = nn.LayerNorm(emsize)
        self.norm2 = nn.LayerNorm(emsize)
        self.linear1 = nn.Linear(emsize, hidden)
        self.linear2 = nn.Linear(hidden, emsize)
        nn.init.zeros_(self.linear2.weight)
        nn.init.zeros_(self.linear2.bias)
        self.dropout = nn.Dropout(dropout)

    def _feed_forward(self, h: Tensor) -> Tensor:
        return self.norm2(h + self.dropout(self.linear2(self.dropout(F.gelu(self.linear1(h))))))

    def forward(self, train: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
        a_train, a_query = self.attention(train, query)
        train = self.norm1(train + self.dropout(a_train))
        query = self.norm1(query + self.dropout(a_query))
        return self._feed_forward(train), self._feed_forward(query)


class PFN(nn.Module, ContextConditioned):
    """Transformer PFN for regression with a bar-distribution output.

    Args:
        borders: Bucket borders of the output distribution, ``K + 1`` (e.g.
            :func:`~probnets.pfn.bar_distribution.borders_from_samples` of prior draws of ``y``).
        dim: Input dimension ``d``.
        emsize: Token width.
        num_layers: Transformer blocks.
        num_heads: Attention heads.
        hidden: Feed-forward width.
        dropout: Dropout probability.
        symmetries: Invariances of the task prior the PFN was trained on, used by :meth:`predict` and
            :meth:`symmetric_logits` to average the predictive over them: ``{"x_range": (low, high)}`` (the prior
            is unchanged by reflecting inputs ``x -> low + high - x``) and/or ``{"negate_y": True}`` (unchanged by
            ``y -> -y``, e.g. a zero-mean GP). The exact posterior predictive is invariant under the prior's
            symmetries, so the average is an equally valid approximation whose log score is, by Jensen's inequality,
            at least the members' average.
    """

    def __init__(self, borders: Tensor, *, dim: int = 1, emsize: int = 128, num_layers: int = 4,
                 num_heads: int = 4, hidden: int = 256, dropout: float = 0.0, symmetries: dict | None = None):
        super().__init__()
        self.config = dict(dim=check_positive_int(dim, "dim"), emsize=check_positive_int(emsize, "emsize"),
                           num_layers=check_positive_int(num_layers, "num_layers"),
                           num_heads=check_positive_int(num_heads, "num_heads"),
                           hidden=check_positive_int(hidden, "hidden"), dropout=float(dropout),
                           symmetries=_check_symmetries(symmetries))
        BarMarginal(borders)  # validates the borders
        self.register_buffer("borders", borders.detach().clone())
        self.x_encoder = nn.Linear(dim, emsize)
        self.y_encoder = nn.Linear(1, emsize)
        self.layers = nn.ModuleList(PFNLayer(emsize, num_heads, hidden, dropout) for _ in range(num_layers))
        self.decoder = nn.Sequential(nn.Linear(emsize, hidden), nn.GELU(), nn.Linear(hidden, borders.shape[0] - 1))

    @property
    def num_buckets(self) -> int:
        return self.borders.shape[0] - 1

    def forward(self, context_x: Tensor, context_y: Tensor, x: Tensor) -> Tensor:
        """Bucket logits ``B x M x K`` of the outputs at ``x`` (``B x M x d``) given ``B x n x d`` inputs and
        ``B x n x 1`` outputs (``n`` may be 0)."""
        train = self.x_encoder(context_x) + self.y_encoder(context_y)
        query = self.x_encoder(x)
        for layer in self.layers:
            train, query = layer(train, query)
        return self.decoder(query)

    def symmetric_logits(self, context_x: Tensor, context_y: Tensor, x: Tensor) -> Tensor:
        """Bucket logits ``S x B x M x K`` of the predictive under each of the ``S`` symmetry transforms of the
        prior (the identity first; ``S = 1`` without symmetries), all on ``self.borders``: the data are transformed,
        and the predictive of a negated ``y`` is mapped back exactly bucket by bucket
        (:meth:`~probnets.pfn.BarDistribution.negated_logits`). Inputs as :meth:`forward`."""
        symmetries = self.config["symmetries"] or {}
        reflections = [False, True] if "x_range" in symmetries else [False]
        negations = [False, True] if symmetries.get("negate_y") else [False]
        transforms = [(r, n) for r in reflections for n in negations]
        if len(transforms) == 1:
            return self(context_x, context_y, x)[None]
        low, high = symmetries.get("x_range", (0.0, 0.0))
        logits = self(torch.cat([low + high - context_x if r else context_x for r, _ in transforms]),
                      torch.cat([-context_y if n else context_y for _, n in transforms]),
                      torch.cat([low + high - x if r else x for r, _ in transforms]))
        logits = logits.reshape(len(transforms), *x.shape[:-1], -1)
        negated = torch.tensor([n for _, n in transforms], device=logits.device)
        return torch.where(negated[:, None, None, None], BarDistribution(self.borders, logits).negated_logits(),
                           logits)

    def loss(self, batch) -> Tensor:
        """Mean negative log predictive density of the targets of a :class:`~probnets.priors.TaskBatch`."""
        logits = self(batch.context_x, batch.context_y, batch.target_x)
        dist = BarDistribution(self.borders, logits)
        return -dist.log_prob(batch.target_y[..., 0]).mean()

    @property
    def input_dim(self) -> int:
        return self.config["dim"]

    @property
    def context_dtype(self) -> torch.dtype:
        return self.borders.dtype

    @torch.no_grad()
    def _predict(self, context_x: Tensor, context_y: Tensor, x: Tensor, *,
                 generator: torch.Generator | None = None) -> Predictive:
        """Predictive at ``x`` (``m x d``) given a training set (``n x d``, ``n`` or ``n x 1``; ``n`` may be 0):
        ``predict(context_x, context_y, x)``, or ``predict(x)`` after ``inference.fit(model, (context_x,
        context_y))`` (:class:`~probnets.conditioned.ContextConditioned`). Deterministic: ``generator`` is unused.

        Returns:
            A :class:`~probnets.Predictive` whose per-point distribution is the bar distribution (``mean``,
            ``variance``, ``quantile``, ``log_prob``, ``cdf``), averaged over the prior's symmetries (one draw per
            symmetry transform, see :meth:`symmetric_logits`); ``f`` holds each draw's predictive mean.
        """
        was_training = self.training
        self.eval()
        context_x, context_y, x = check_context_query(context_x, context_y, x, self.config["dim"],
                                                      self.borders.dtype)
        logits = self.symmetric_logits(context_x[None], context_y[None], x[None])[:, 0]  # S x m x K
        self.train(was_training)
        mean = BarDistribution(self.borders, logits).mean.unsqueeze(-1)  # S x m x 1
        return Predictive(mean, BarMarginal(self.borders), {"logits": logits})

    @torch.no_grad()
    def expected_improvement(self, context_x: Tensor, context_y: Tensor, x: Tensor, best_f: float) -> Tensor:
        """Closed-form expected improvement over ``best_f`` at ``x`` (``m x d``), ``m``."""
        context_x, context_y, x = check_context_query(context_x, context_y, x, self.config["dim"],
                                                      self.borders.dtype)
        logits = self.symmetric_logits(context_x[None], context_y[None], x[None])[:, 0]
        return BarDistribution(self.borders, logits).expected_improvement(best_f).mean(0)


def _check_symmetries(symmetries: dict | None) -> dict | None:
    if symmetries is None:
        return None
    if not isinstance(symmetries, dict) or not set(symmetries) <= {"x_range", "negate_y"}:
        raise ValueError(f"symmetries must be None or a dict with keys 'x_range' and/or 'negate_y', got {symmetries!r}")
    if "x_range" in symmetries:
        low, high = symmetries["x_range"]
        if not float(low) < float(high):
            raise ValueError(f"symmetries['x_range'] must be a pair low < high, got {symmetries['x_range']!r}")
        symmetries = {**symmetries, "x_range": (float(low), float(high))}
    return symmetries
