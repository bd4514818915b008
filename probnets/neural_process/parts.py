"""The parts neural processes are built from: the deterministic paths (mean pooling, attention), the latent path,
the attention block they share, and Gaussian noise that follows an optional CPU generator.

Every deterministic path has ``encode(context_x, context_y) -> (keys, values)`` (each ``B x n x width``) and
``aggregate(keys, values, x) -> B x m x width`` for target inputs ``x`` (``B x m x d``). ``aggregate`` takes any
leading dimensions in front of ``B`` (e.g. ``K x B x n x width`` for ``K`` pseudo-context draws), so that a set of
extra (pseudo) keys and values can be joined to the real ones before aggregation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from probnets.validation import check_positive_int


def mlp(sizes: list[int]) -> nn.Sequential:
    """ReLU MLP through the given widths (no activation after the last layer)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def normal_noise(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal draws with ``like``'s dtype and device; from ``generator`` (a CPU generator) when given,
    so that a seeded run gives the same draws on any device."""
    if generator is None:
        return torch.randn(shape, dtype=like.dtype, device=like.device)
    return torch.randn(shape, generator=generator, dtype=like.dtype).to(like.device)


class AttentionBlock(nn.Module):
    """Multihead attention block of the Set Transformer, ``MAB(Q, S) = LN(H + FF(H))`` with
    ``H = LN(Q + Attention(Q, S, S))``; ``queries`` ``L x m x width``, ``items`` ``L x n x width`` (``n >= 1``)."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.attention = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.norm_attention = nn.LayerNorm(width)
        self.feed_forward = mlp([width, width, width])
        self.norm_feed_forward = nn.LayerNorm(width)

    def forward(self, queries: Tensor, items: Tensor) -> Tensor:
        h = self.norm_attention(queries + self.attention(queries, items, items, need_weights=False)[0])
        return self.norm_feed_forward(h + self.feed_forward(h))


class MeanPoolPath(nn.Module):
    """CNP path: ``r_i = MLP(x_i, y_i)``, aggregated by the mean (zeros for an empty set). Keys are unused."""

    uses_keys = False

    def __init__(self, dim: int, width: int, layers: int):
        super().__init__()
        self.encoder = mlp([dim + 1] + [width] * layers)

    def encode(self, context_x: Tensor, context_y: Tensor) -> tuple[Tensor, Tensor]:
        values = self.encoder(torch.cat([context_x, context_y], -1))
        return values, values

    def aggregate(self, keys: Tensor, values: Tensor, x: Tensor) -> Tensor:
        shape = values.shape[:-2] + (x.shape[-2], values.shape[-1])
        if values.shape[-2] == 0:
            return values.new_zeros(shape)
        return values.mean(-2, keepdim=True).expand(shape)


class AttentivePath(nn.Module):
    """Attentive (C)NP path (Kim et al., 2019): self-attention over ``r_i = MLP(x_i, y_i)``, then cross-attention
    from each target input to the context with keys and queries from a shared input embedding ``MLP(x)``."""

    uses_keys = True

    def __init__(self, dim: int, width: int, layers: int, num_heads: int):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width ({width}) must be divisible by num_heads ({num_heads})")
        self.encoder = mlp([dim + 1] + [width] * layers)
        self.self_attention = AttentionBlock(width, num_heads)
        self.embed_x = mlp([dim, width, width])
        self.cross_attention = nn.MultiheadAttention(width, num_heads, batch_first=True)

    def encode(self, context_x: Tensor, context_y: Tensor) -> tuple[Tensor, Tensor]:
        values = self.encoder(torch.cat([context_x, context_y], -1))
        if values.shape[1]:
            values = self.self_attention(values, values)
        return self.embed_x(context_x), values

    def aggregate(self, keys: Tensor, values: Tensor, x: Tensor) -> Tensor:
        lead, (n, width), m = values.shape[:-2], values.shape[-2:], x.shape[-2]
        if n == 0:
            return values.new_zeros(lead + (m, width))
        queries = self.embed_x(x).expand(lead + (m, width)).reshape(-1, m, width)
        out = self.cross_attention(queries, keys.reshape(-1, n, width), values.reshape(-1, n, width),
                                   need_weights=False)[0]
        return out.reshape(lead + (m, width))


class LatentPath(nn.Module):
    """Latent path of the NP: ``s = mean_i MLP(x_i, y_i)`` (zeros for an empty set) and ``q(z | s) =
    N(mu(s), (0.1 + 0.9 sigmoid(.))^2)``, the NPF convention that keeps the latent scale away from 0."""

    def __init__(self, dim: int, width: int, layers: int, latent_width: int):
        super().__init__()
        self.encoder = mlp([dim + 1] + [width] * layers)
        self.head = mlp([width, width, 2 * latent_width])

    def forward(self, context_x: Tensor, context_y: Tensor) -> torch.distributions.Normal:
        s = self.encoder(torch.cat([context_x, context_y], -1))
        s = s.mean(1) if s.shape[1] else s.new_zeros(s.shape[0], s.shape[-1])
        loc, raw_scale = self.head(s).chunk(2, -1)
        return torch.distributions.Normal(loc, 0.1 + 0.9 * torch.sigmoid(raw_scale))


class PseudoContextGenerator(nn.Module):
    """The MPNP's pseudo-context generator: an induced set attention block (Set Transformer ISAB) that turns noise
    tokens ``eps ~ N(0, I)`` into pseudo-context representations, conditioned on the real context's.

    ``H = MAB(I, [e; R])`` summarises the noise tokens ``e = W eps`` and the context representations ``R`` through
    ``num_inducing`` learned inducing points ``I``; the output is ``W_out MAB(e, H)``, one item per noise token (so
    it is invariant to the order of the context and equivariant to the order of the noise tokens).
    """

    def __init__(self, width: int, out_width: int, num_heads: int, num_inducing: int = 16):
        super().__init__()
        num_inducing = check_positive_int(num_inducing, "num_inducing")
        self.embed_noise = nn.Linear(width, width)
        self.inducing = nn.Parameter(torch.randn(num_inducing, width) / math.sqrt(width))
        self.summarise = AttentionBlock(width, num_heads)
        self.broadcast = AttentionBlock(width, num_heads)
        self.out = nn.Linear(width, out_width)

    def forward(self, values: Tensor, num_draws: int, num_pseudo: int,
                generator: torch.Generator | None = None) -> Tensor:
        """Pseudo contexts ``K x B x M x out_width`` for context representations ``values`` (``B x n x width``),
        ``K = num_draws`` independent draws of ``M = num_pseudo`` items each."""
        batch, n, width = values.shape
        if num_pseudo == 0:
            return values.new_zeros(num_draws, batch, 0, self.out.out_features)
        noise = self.embed_noise(normal_noise((num_draws * batch, num_pseudo, width), values, generator))
        context = values.unsqueeze(0).expand(num_draws, batch, n, width).reshape(num_draws * batch, n, width)
        summary = self.summarise(self.inducing.expand(noise.shape[0], -1, -1), torch.cat([noise, context], 1))
        return self.out(self.broadcast(noise, summary)).reshape(num_draws, batch, num_pseudo, -1)
